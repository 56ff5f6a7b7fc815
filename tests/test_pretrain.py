"""Pretraining end to end at the smoke profile (synthetic world, real region extractor, tiny preset)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vilbert_lite import ViLBertConfig, ViLBertForPreTraining
from vilbert_lite.data.collate import collate_examples, pad_text
from vilbert_lite.data.items import Caption
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.errors import UserError
from vilbert_lite.pretrain.captions import alignment_score, sample_best_caption, sample_caption
from vilbert_lite.pretrain.data import CaptionImageDataset
from vilbert_lite.pretrain.evaluate import shape_name_groups
from vilbert_lite.pretrain.run import cli, load_pretrained, plan_pretrain, pretrain, reevaluate


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("VILBERT_LITE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield tmp_path_factory.mktemp("runs")
    mp.undo()


@pytest.fixture(scope="module")
def smoke_run(env):
    return pretrain("smoke", 0, out=env, progress=False, train_overrides={"log_every": 1})


def _visual(config, R=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    boxes = torch.rand(R, 4, generator=g).sort(-1).values
    return {
        "visual_feats": torch.rand(R, config.v_feature_size, generator=g),
        "visual_pos": torch.cat([boxes, torch.rand(R, 1, generator=g)], 1),
        "cls_prob": torch.rand(R, config.v_target_size, generator=g).softmax(-1),
        "boxes": boxes,
        "num_regions": torch.tensor(R),
    }


def test_smoke_pretraining_loss_falls(smoke_run):
    rows = [json.loads(x) for x in (smoke_run / "metrics.jsonl").read_text().splitlines()]
    loss = [r["loss"] for r in rows if r["kind"] == "train"]
    assert len(loss) >= 10
    first, last = sum(loss[:3]) / 3, sum(loss[-3:]) / 3
    assert first - last > 0.1 * first, loss  # falls clearly within the run


def test_run_folder_eval_and_reuse(smoke_run, env):
    ev = json.loads((smoke_run / "eval.json").read_text())
    for key in ("alignment_acc", "mlm_acc", "color_acc", "shape_acc", "color_shape_acc", "shape_name_acc"):
        assert 0.0 <= ev[key] <= 1.0
    assert ev["shape_name_acc"] >= ev["shape_acc"]  # any name of the right shape counts, the exact one too
    # the final evaluation is reproducible: re-scoring the saved model gives the same numbers
    again = reevaluate(smoke_run)
    assert {k: again[k] for k in ev if k.endswith("_acc")} == {k: ev[k] for k in ev if k.endswith("_acc")}
    assert (smoke_run / "model" / "model.safetensors").exists() and (smoke_run / "run_config.json").exists()
    stamp = (smoke_run / "DONE").stat().st_mtime_ns
    again = pretrain("smoke", 0, out=env, progress=False, train_overrides={"log_every": 1})
    assert again == smoke_run and (smoke_run / "DONE").stat().st_mtime_ns == stamp  # reused, not rerun
    other = pretrain("smoke", 0, out=env, progress=False, corpus_fraction=0.0)  # 0% = no pretraining
    assert other != smoke_run and json.loads((other / "DONE").read_text())["steps"] == 0
    # the planned folders (no training, no extraction) are the ones the runs made
    assert plan_pretrain("smoke", 0, out=env, train_overrides={"log_every": 1})[0] == smoke_run
    assert plan_pretrain("smoke", 0, out=env, corpus_fraction=0.0)[0] == other
    assert (other / "eval.json").exists() and load_pretrained(other).config.v_feature_size == 112


def test_bad_overrides_fail_before_training(env):
    with pytest.raises(ValueError, match="hiden_size"):
        pretrain("smoke", out=env, config_overrides={"hiden_size": 64})
    with pytest.raises(ValueError, match="hidden_size"):
        pretrain("smoke", out=env, config_overrides={"hidden_size": "64"})
    with pytest.raises(ValueError, match="epoch"):
        pretrain("smoke", out=env, train_overrides={"epoch": 2})
    with pytest.raises(UserError, match="bogus"):  # `vilbert-lite pretrain` prints it as one line, exit 2
        cli(["--profile", "smoke", "--out", str(env), "--config", '{"bogus": 1}'])
    assert not list(env.glob("pretrain-*/checkpoint.pt.tmp"))


def test_shape_name_groups():
    from vilbert_lite.data.scene import SHAPES

    tok = get_tokenizer()
    g = shape_name_groups(tok, tok.vocab_size)
    idx = tok.convert_tokens_to_ids
    assert g[idx("ball")] == g[idx("circle")] == g[idx("circles")] == SHAPES.index("circle")
    assert g[idx("block")] == g[idx("square")] == SHAPES.index("square") != g[idx("circle")]
    assert g[idx("red")] == g[idx("the")] == -1
    assert g[idx("##bus")] == -1  # a piece of a multi-piece name ("rhombus") is scored as an exact token
    # every shape has a one-piece name except the hexagon ("he ##xa ##gon")
    assert set(g.unique().tolist()) == {-1, *(k for k, s in enumerate(SHAPES) if s != "hexagon")}


def test_sample_caption_valid_and_deterministic(smoke_run):
    tok = get_tokenizer()
    model = load_pretrained(smoke_run)
    v = _visual(model.config)
    texts, ids = sample_caption(model, tok, v, length=8, steps=6, generator=torch.Generator().manual_seed(0),
                                return_ids=True)  # fmt: skip
    assert ids.shape == (1, 10) and ids[0, 0] == tok.cls_token_id and ids[0, -1] == tok.sep_token_id
    body = tok.convert_ids_to_tokens(ids[0, 1:-1].tolist())
    assert not any(t.startswith("[") and t.endswith("]") for t in body) and isinstance(texts[0], str)
    again = sample_caption(model, tok, v, length=8, steps=6, generator=torch.Generator().manual_seed(0))
    assert again == texts


def test_best_of_n_keeps_the_sample_the_alignment_head_scores_highest():
    torch.manual_seed(0)
    model = ViLBertForPreTraining(ViLBertConfig.preset("tiny")).eval()
    tok = get_tokenizer()
    v = _visual(model.config)
    best, drawn = sample_best_caption(model, tok, v, 5, length=6, steps=4, temperature=0.5,
                                      generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert len(drawn) == 5 and best in drawn
    scores = alignment_score(model, tok, v, drawn)
    assert scores[drawn.index(best)] == scores.max()


def test_alignment_score_shapes():
    torch.manual_seed(0)
    model = ViLBertForPreTraining(ViLBertConfig.preset("tiny"))
    tok = get_tokenizer()
    v = _visual(model.config)
    p = alignment_score(model, tok, v, ["a red circle", "two blue stars", "abstract art"])
    assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()
    batch = collate_examples([_visual(model.config, R, s) for s, R in enumerate((3, 6))])
    assert alignment_score(model, tok, batch, ["a", "b"]).shape == (2,)


def test_dataset_kinds_blanking_and_collate():
    tok = get_tokenizer()
    cfg = ViLBertConfig.preset("tiny")
    caps = [Caption("a", "a red hexagon near a blue ball"), Caption("b", "two stars")]
    visual = {"a": _visual(cfg, 4), "b": _visual(cfg, 6)}
    ds = CaptionImageDataset(caps, visual, tok)
    toks = tok.convert_ids_to_tokens(ds.ids[0].tolist())
    kinds = dict(zip(toks, ds.kinds[0].tolist()))
    assert kinds["red"] == 1 and kinds["blue"] == 1 and kinds["ball"] == 2 and kinds["near"] == 0
    assert kinds["##gon"] == 2  # every piece of "hexagon"
    batch = collate_examples([ds[0], ds[1]])
    assert batch["input_ids"].shape[0] == 2 and batch["visual_attention_mask"].sum(1).tolist() == [4, 6]
    assert batch["image_index"].tolist() == [0, 1]
    blank = CaptionImageDataset(caps, visual, tok, blank_images=True)
    assert (
        blank[0]["visual_feats"].shape == (1, visual[caps[0].image_id]["visual_feats"].shape[1])
        and blank[0]["visual_feats"].abs().sum() == 0
    )
    padded = pad_text([[101, 5, 102], [101, 102]], max_length=4)
    assert padded["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]


def test_coco_captions_and_image_folder(env):
    root = Path(__file__).resolve().parents[1] / "data_samples"
    run = pretrain("smoke", 0, out=env, progress=False, data="coco", captions=root / "coco" / "captions_val2014.json",
                   images=root / "images", train_overrides={"max_steps": 2})  # fmt: skip
    cfg = json.loads((run / "run_config.json").read_text())
    assert cfg["data"]["kind"] == "coco" and json.loads((run / "DONE").read_text())["steps"] == 2
    assert "alignment_acc" in json.loads((run / "eval.json").read_text())


def test_single_stream_pretraining_run(env):
    import json

    from vilbert_lite.model.single_stream import SingleStreamForPreTraining, load_any

    run = pretrain("smoke", 0, out=env, progress=False, model_kind="single_stream")
    assert run.name.startswith("pretrain_single_stream-")
    assert json.loads((run / "model" / "config.json").read_text())["architectures"] == [
        "SingleStreamForPreTraining"
    ]
    assert isinstance(load_any(run / "model"), SingleStreamForPreTraining)
    with pytest.raises(ValueError, match="model_kind"):
        pretrain("smoke", 0, out=env, progress=False, model_kind="three_stream")
