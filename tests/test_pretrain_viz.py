"""The tables and figures of notebook 04 (vilbert_lite.pretrain_viz), on hand-made batches and run folders."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from vilbert_lite.data.collate import make_collate
from vilbert_lite.data.items import Caption
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.pretrain.data import CaptionImageDataset
from vilbert_lite.pretrain.objectives import make_pretraining_batch
from vilbert_lite.viz import pretrain as pv

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer()


def _visual(n_regions: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0]] + [[2.0 * i, 2.0 * i, 2.0 * i + 8, 2.0 * i + 8]
                                                     for i in range(1, n_regions)])  # fmt: skip
    return {
        "visual_feats": torch.rand(n_regions, 12, generator=g) + 0.1,  # never all zero
        "visual_pos": torch.rand(n_regions, 5, generator=g),
        "cls_prob": torch.rand(n_regions, 7, generator=g).softmax(-1),
        "boxes": boxes,
        "num_regions": torch.tensor(n_regions),
    }


@pytest.fixture(scope="module")
def dataset(tok):
    words = ["red circle", "blue square", "green star", "black cross", "cyan hexagon", "purple diamond"]
    caps = [Caption(f"img{i}", f"a {w} near a small {words[(i + 1) % 6]}") for i, w in enumerate(words)]
    caps += [Caption(f"img{i}", f"photo of a {w}") for i, w in enumerate(words)]
    visual = {f"img{i}": _visual(5 + i % 3, i) for i in range(6)}
    return CaptionImageDataset(caps, visual, tok)


def _batch(dataset, tok, seed=0, n=8):
    before = make_collate(tok.pad_token_id)([dataset[i] for i in range(n)])
    g = torch.Generator().manual_seed(seed)
    return before, make_pretraining_batch(before, g, tok, tok.vocab_size, mask_prob=0.5, region_prob=0.5)


def test_token_outcomes_reads_the_rule_back():
    orig = torch.tensor([101, 10, 11, 12, 13, 102])
    masked = torch.tensor([101, 103, 999, 12, 13, 102])
    labels = torch.tensor([-1, 10, 11, 12, -1, -1])
    assert list(pv.token_outcomes(orig, masked, labels, 103)) == ["", "[MASK]", "random", "unchanged", "", ""]


def test_masking_table_rows_and_outcomes(dataset, tok):
    before, after = _batch(dataset, tok)
    table = pv.masking_table(tok, before, after, rows=[0, 3])
    assert list(table.index) == [(0, "caption"), (0, "input"), (3, "caption"), (3, "input")]
    outcomes = np.array(table.attrs["outcomes"], dtype=object)
    assert outcomes.shape == table.shape
    assert (outcomes[0::2] == "").all()  # the caption rows are never coloured
    n0 = int(after["attention_mask"][0].sum())
    assert (outcomes[1, :n0] != "").sum() == int((after["lm_labels"][0] != -1).sum())
    for j in np.flatnonzero(outcomes[1] == "[MASK]"):
        assert table.iloc[1, j] == "[MASK]"
    # the caption row holds the caption the item carries after swapping
    assert table.iloc[0, 0] == "[CLS]"
    html = pv.style_masking(table).to_html()
    assert "T_masking" in html and pv.OUTCOME_COLORS["[MASK]"] in html


def test_swap_table_matches_the_labels(dataset, tok):
    before, after = _batch(dataset, tok, seed=3)
    table = pv.swap_table(dataset, before, after)
    assert len(table) == 8
    same = table["its caption"] == table["caption the model reads"]
    assert (table["alignment_label"] == 1).eq(same).all()


def test_masking_statistics_close_to_the_rules(dataset, tok):
    stats = pv.masking_statistics(dataset, tok, tok.vocab_size, n_batches=60, batch_size=12, seed=0)
    m = stats["measured"].droplevel(0)
    assert m["[CLS] / [SEP] chosen"] == 0 and m["IMG region chosen"] == 0
    assert abs(m["token chosen (of real, non-special tokens)"] - 0.15) < 0.04
    assert abs(m["  chosen → [MASK]"] - 0.8) < 0.1
    assert abs(m["region chosen (of real regions, IMG excluded)"] - 0.15) < 0.04
    assert abs(m["  chosen → zeroed"] - 0.9) < 0.1
    shares = stats.loc["text"]["count"]
    assert shares.iloc[1:4].sum() == shares.iloc[0]  # every chosen token has exactly one outcome
    again = pv.masking_statistics(dataset, tok, tok.vocab_size, n_batches=60, batch_size=12, seed=0)
    pd.testing.assert_frame_equal(stats, again)  # deterministic for a seed


def test_plot_region_masking(dataset, tok):
    before, after = _batch(dataset, tok)
    fig = pv.plot_region_masking(np.zeros((32, 32, 3), np.uint8), before, after, item=1, n_dims=8)
    assert isinstance(fig, Figure) and len(fig.axes) == 3


def _fake_run(path, steps=(10, 20, 30), text_only=False):
    path.mkdir()
    rows = [{"kind": "train", "step": s, "loss": 10.0 / s, "mlm": 8.0 / s, "region": 1.0 / s, "align": 1.0 / s,
             "align_acc": 0.5 + s / 100, "mlm_acc": s / 100} for s in steps]  # fmt: skip
    rows.append({"kind": "eval", "step": steps[-1], "x": 1})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ev = {"alignment_acc": 0.5 if text_only else 0.9, "mlm_acc": 0.4, "color_acc": 0.1 if text_only else 0.8,
          "shape_acc": 0.2 if text_only else 0.7, "color_shape_acc": 0.15 if text_only else 0.75,
          "n_mlm_acc": 50, "n_color_acc": 20, "n_shape_acc": 30, "n_val_captions": 40}  # fmt: skip
    (path / "eval.json").write_text(json.dumps(ev))
    return path


def test_metrics_curves_and_eval_table(tmp_path):
    run = _fake_run(tmp_path / "run")
    text = _fake_run(tmp_path / "text", text_only=True)
    m = pv.load_metrics(run)
    assert list(m.index) == [10, 20, 30] and "kind" not in m
    assert isinstance(pv.plot_pretraining_curves(m, title="t"), Figure)
    with pytest.raises(ValueError, match="no 'nope' rows"):
        pv.load_metrics(run, kind="nope")
    t = pv.eval_table(run, text)
    assert np.isnan(t.iloc[0]["text-only"])  # the text-only model has no alignment task
    assert t.iloc[2]["ViLBERT − text-only"] == pytest.approx(0.7)
    assert list(t["scored"]) == [80, 50, 20, 30, 50]
    assert list(pv.eval_table(run).columns) == ["ViLBERT", "scored"]


def test_alignment_summary():
    rows = []
    for i, (pt, ph, po) in enumerate([(0.9, 0.6, 0.1), (0.4, 0.7, 0.2)]):
        rows += [{"image_id": f"i{i}", "kind": "true caption", "caption": "", "P(aligned)": pt},
                 {"image_id": f"i{i}", "kind": "hard negative", "caption": "", "P(aligned)": ph},
                 {"image_id": f"i{i}", "kind": "other image's caption", "caption": "", "P(aligned)": po}]  # fmt: skip
    s = pv.alignment_summary(pd.DataFrame(rows))
    assert s.loc["hard negative", "true caption scores higher"] == 0.5
    assert s.loc["other image's caption", "true caption scores higher"] == 1.0
    assert s.loc["true caption", "judged aligned (P > 0.5)"] == 0.5
    assert s.loc["hard negative", "mean P(aligned)"] == pytest.approx(0.65)


def test_plot_captions_checks_lengths():
    img = np.zeros((8, 8, 3), np.uint8)
    assert isinstance(pv.plot_captions([img, img], [["a"], ["b", "c"]], titles=["x", "y"]), Figure)
    with pytest.raises(ValueError, match="2 images but 1 caption lists"):
        pv.plot_captions([img, img], [["a"]])


def test_alignment_scores_on_a_tiny_model(tok):
    from vilbert_lite import ViLBertConfig, ViLBertForPreTraining
    from vilbert_lite.data.items import RetrievalItem

    class World:
        def retrieval(self, split):
            return [RetrievalItem(f"img{i}", f"a red circle {i}", f"a blue circle {i}") for i in range(3)]

    torch.manual_seed(0)
    model = ViLBertForPreTraining(ViLBertConfig.preset("tiny").replace(v_feature_size=12, v_target_size=7))
    visual = {f"img{i}": _visual(5, i) for i in range(3)}
    scores = pv.alignment_scores(model, tok, World(), "val", visual, n_other=2)
    assert len(scores) == 3 * 4
    assert list(scores["kind"][:4]) == ["true caption", "hard negative"] + ["other image's caption"] * 2
    assert scores.loc[3, "caption"] == "a red circle 2"  # the next images' captions, wrapping around
    assert scores["P(aligned)"].between(0, 1).all()
    assert list(pv.alignment_summary(scores)["pairs"]) == [3, 3, 6]
