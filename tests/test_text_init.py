"""Where the text stream starts (`--text-init`): the bundled MiniLM, a BERT folder, a hub name, or random;
checked against the model before any data work, recorded in the run folder, keyed only when chosen."""

import json
from types import SimpleNamespace

import pytest
import torch

from vilbert_lite import runs
from vilbert_lite.errors import UserError
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.heads import ViLBertForPreTraining
from vilbert_lite.pretrain.run import pretrain
from vilbert_lite.pretrain.text_init import apply_text_init, check_text_init, resolve_text_init, text_init_key

# run keys of default calls, computed on the fake data below before text init existed (world version 3)
PINNED = {
    "pretrain-smoke": "a5ddaee3de0a",
    "pretrain-cpu": "55d469f3f277",
    "finetune-vqa-smoke": "ded35feaf9ef",
}


def _save_bert(folder, hidden: int, heads: int, layers: int, seed: int = 0):
    """A small random BERT saved as a Hugging Face folder (config.json + model.safetensors)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(hidden_size=hidden, num_attention_heads=heads, intermediate_size=2 * hidden,
                     num_hidden_layers=layers, max_position_embeddings=64)  # fmt: skip
    BertModel(cfg).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def berts(tmp_path_factory):
    """Two BERT folders of width 64, other weights: they fit the `tiny` preset (64), not `mini` (128)."""
    root = tmp_path_factory.mktemp("berts")
    return SimpleNamespace(
        tiny=_save_bert(root / "tiny", 64, 2, 3), tiny_other=_save_bert(root / "tiny-other", 64, 2, 3, seed=1)
    )


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("VILBERT_LITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


class _Stop(Exception):
    pass


def _fake_synthetic(profile, world_seed=0, progress=True, corpus_fraction=1.0, sizes=None):
    """Stand-in for `pretrain.synthetic_data`: 10 captions, 1280-d features, 1000 classes, a fake store."""
    caps = [SimpleNamespace(image_id=f"i{k}", text="a red circle") for k in range(10)]
    visual = {"i0": {"visual_feats": torch.zeros(2, 1280), "cls_prob": torch.zeros(2, 1000)}}
    return caps, caps[:2], visual, SimpleNamespace(key="fakestore"), {"seconds": 0.0}


def _pretrain_run_cfg(monkeypatch, tmp_path, profile, **kw) -> dict:
    """The run_cfg a pretraining call would key its folder by, on fake data, without training."""
    import vilbert_lite.pretrain.run as P

    got = {}

    def prepare(path, cfg):
        got["cfg"] = cfg
        raise _Stop

    with monkeypatch.context() as m:
        m.setattr(P, "synthetic_data", _fake_synthetic)
        m.setattr(P, "WORLD_VERSION", 3)
        m.setattr(runs, "prepare_run", prepare)
        with pytest.raises(_Stop):
            pretrain(profile, 0, out=tmp_path / "runs", progress=False, **kw)
    return got["cfg"]


def _finetune_run_cfg(monkeypatch, tmp_path, task, profile, **kw) -> dict:
    """The run_cfg a ViLBERT† fine-tuning call would key its folder by, on a fake store, without training."""
    import vilbert_lite.tasks as T

    region = SimpleNamespace(features=torch.zeros(2, 1280), cls_prob=torch.zeros(2, 1000))

    class Store:
        key = "fakestore"

        def ids(self):
            return ["i0"]

        def __getitem__(self, image_id):
            return region

    got = {}

    def run_task(spec, source, config, init, tcfg, run_cfg, *a, **k):
        got["cfg"] = run_cfg
        raise _Stop

    with monkeypatch.context() as m:
        m.setattr(T, "world_features", lambda *a, **k: (Store(), None))
        m.setattr(T, "run_task", run_task)
        m.setattr(T, "WORLD_VERSION", 3, raising=False)
        m.setattr(T, "make_world", lambda profile, seed=0, **k: SimpleNamespace())
        with pytest.raises(_Stop):
            T.finetune(task, None, profile, 0, out=tmp_path / "ft", progress=False, **kw)
    return got["cfg"]


# ------------------------------------------------------------------------------------------------ resolution
def test_bundled_minilm_fills_the_small_text_stream():
    from safetensors.torch import load_file

    text = resolve_text_init("bundled")
    assert text.kind == "bundled" and text.sizes["hidden_size"] == 384 and text.digest.startswith("sha256:")
    config = ViLBertConfig.preset("small")
    check_text_init(text, config, "model preset 'small'")
    model = ViLBertForPreTraining(config)
    record = apply_text_init(model, text)
    assert record["kind"] == "bundled" and record["hidden_size"] == 384 and record["tensors"] > 50
    minilm = load_file(text.path / "model.safetensors")
    for key in ("embeddings.word_embeddings.weight", "encoder.layer.5.attention.self.query.weight"):
        torch.testing.assert_close(model.bert.state_dict()[key], minilm[key])
    assert text_init_key(text) is None  # the bundled BERT keys runs as init_text_from_bert=True did


def test_bert_folder_of_the_right_width_loads_and_keys_the_run_by_its_weights(berts):
    text = resolve_text_init(str(berts.tiny))
    assert text.kind == "folder" and text.sizes["hidden_size"] == 64
    config = ViLBertConfig.preset("tiny")
    check_text_init(text, config, "model preset 'tiny'")
    model = ViLBertForPreTraining(config)
    record = apply_text_init(model, text)
    assert record["tensors"] > 0 and record["path"] == str(berts.tiny.resolve())
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(berts.tiny), local_files_only=True)
    key = "encoder.layer.2.output.dense.weight"
    torch.testing.assert_close(model.bert.state_dict()[key], bert.state_dict()[key])
    other = resolve_text_init(str(berts.tiny_other))
    assert text_init_key(text)["digest"] != text_init_key(other)["digest"]


def test_random_records_random():
    text = resolve_text_init("random", profile_wants_bert=True)
    assert text.kind == "random" and text_init_key(text) is None
    check_text_init(text, ViLBertConfig.preset("base"), "model preset 'base'", "gpu")  # random fits anything
    assert apply_text_init(ViLBertForPreTraining(ViLBertConfig.preset("tiny")), text) == {
        "asked": "random", "kind": "random", "tensors": 0
    }  # fmt: skip
    assert resolve_text_init(None).kind == "random"  # smoke / cpu: the profile's choice


def test_a_bert_of_another_width_is_one_line_naming_both(berts):
    text = resolve_text_init(str(berts.tiny))
    with pytest.raises(UserError) as e:
        check_text_init(text, ViLBertConfig.preset("mini"), "model preset 'mini'", "cpu")
    msg = str(e.value)
    assert "\n" not in msg and f"--text-init {berts.tiny}" in msg
    assert "its hidden size 64 does not fit the text stream's 128 (model preset 'mini')" in msg


def test_gpu_profile_refuses_a_random_text_stream_it_was_not_asked_for(env):
    text = resolve_text_init(None, profile_wants_bert=True)  # what the gpu profile asks for
    assert text.kind == "bundled"
    with pytest.raises(UserError) as e:
        check_text_init(text, ViLBertConfig.preset("base"), "model preset 'base'", "gpu")
    msg = str(e.value)
    assert "\n" not in msg and "profile 'gpu'" in msg and "384" in msg and "768" in msg
    assert "--text-init PATH" in msg and "bert-base-uncased" in msg and "--text-init random" in msg
    # before any data: no world, no features
    with pytest.raises(UserError, match="--text-init random"):
        pretrain("gpu", 0, out=env / "runs", progress=False)
    from vilbert_lite.tasks import finetune

    with pytest.raises(UserError, match="--text-init random"):
        finetune("vqa", None, "gpu", 0, out=env / "ft", progress=False)
    assert not (env / "cache").exists()


def test_hub_names_offline_and_missing_folders_are_one_line_errors(env):
    with pytest.raises(UserError, match="cannot be downloaded offline") as e:
        resolve_text_init("vilbert-lite-test/no-such-bert")
    assert "\n" not in str(e.value) and "--text-init /path/to/bert" in str(e.value)
    with pytest.raises(UserError, match="no such folder"):
        resolve_text_init(str(env / "nowhere"))


# ----------------------------------------------------------------------------------------------- command line
def test_command_line_wrong_width_fails_before_any_data(berts, env, capsys):
    from vilbert_lite.cli import main

    assert main(["pretrain", "--profile", "cpu", "--text-init", str(berts.tiny), "--out", str(env / "runs"),
                 "--no-progress"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "its hidden size 64 does not fit the text stream's 128 (model preset 'mini')" in err
    assert main(["finetune", "vqa", "--init", "none", "--profile", "cpu", "--text-init", str(berts.tiny),
                 "--out", str(env / "ft"), "--no-progress"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not fit the text stream's 128" in err
    assert not (env / "cache").exists() and not (env / "runs").exists()


def test_text_init_with_a_pretraining_run_as_init_is_refused(env):
    from vilbert_lite.tasks import finetune

    ViLBertForPreTraining(ViLBertConfig.preset("tiny")).save_pretrained(env / "run" / "model")
    with pytest.raises(UserError, match="--init none"):
        finetune("vqa", env / "run", "smoke", 0, out=env / "ft", progress=False, text_init="random")


# ------------------------------------------------------------------------------------------------ run keys
def test_default_run_keys_are_unchanged(monkeypatch, tmp_path):
    def key(cfg):
        return runs.config_hash(cfg)

    assert key(_pretrain_run_cfg(monkeypatch, tmp_path, "smoke")) == PINNED["pretrain-smoke"]
    assert key(_pretrain_run_cfg(monkeypatch, tmp_path, "cpu")) == PINNED["pretrain-cpu"]
    random = _pretrain_run_cfg(monkeypatch, tmp_path, "smoke", text_init="random")  # the profile's own choice
    assert key(random) == PINNED["pretrain-smoke"] and "text_init" not in random
    assert key(_finetune_run_cfg(monkeypatch, tmp_path, "vqa", "smoke")) == PINNED["finetune-vqa-smoke"]
    assert (
        key(_finetune_run_cfg(monkeypatch, tmp_path, "vqa", "smoke", text_init="random"))
        == (PINNED["finetune-vqa-smoke"])
    )


def test_a_chosen_bert_folder_keys_pretraining_and_finetuning_runs(berts, monkeypatch, tmp_path):
    cfg = _pretrain_run_cfg(monkeypatch, tmp_path, "smoke", text_init=str(berts.tiny))
    assert cfg["text_init"]["path"] == str(berts.tiny.resolve()) and cfg["init_text_from_bert"] is True
    other = _pretrain_run_cfg(monkeypatch, tmp_path, "smoke", text_init=str(berts.tiny_other))
    assert runs.config_hash(cfg) != runs.config_hash(other) != PINNED["pretrain-smoke"]
    ft = _finetune_run_cfg(monkeypatch, tmp_path, "vqa", "smoke", text_init=str(berts.tiny))
    assert ft["text_init"]["digest"] == cfg["text_init"]["digest"]


def test_pretraining_records_where_the_text_stream_started(berts, env):
    """corpus_fraction 0: the run folder holds the initial model, its eval.json and text_init.json."""
    run = pretrain(
        "smoke", 0, out=env / "runs", progress=False, corpus_fraction=0.0, text_init=str(berts.tiny)
    )
    record = json.loads((run / "text_init.json").read_text())
    assert record["kind"] == "folder" and record["tensors"] > 0 and record["hidden_size"] == 64
    assert json.loads((run / "run_config.json").read_text())["text_init"]["digest"] == record["digest"]
    assert json.loads((run / "eval.json").read_text())["text_init"].startswith(
        f"bert ({record['tensors']} tensors"
    )
    run = pretrain("smoke", 0, out=env / "runs", progress=False, corpus_fraction=0.0, text_init="random")
    assert json.loads((run / "text_init.json").read_text())["kind"] == "random"
    assert json.loads((run / "eval.json").read_text())["text_init"] == "random"


def test_dagger_fine_tuning_records_where_the_text_stream_started(berts, env):
    """ViLBERT† zero-shot retrieval (no training) from a chosen BERT: text_init.json and run key name it."""
    from test_tasks import FakeExtractor

    from vilbert_lite.tasks import finetune

    out = env / "ft"
    finetune("zeroshot", None, "smoke", 0, out=out, extractor=FakeExtractor(), progress=False,
             text_init=str(berts.tiny))  # fmt: skip
    record = json.loads((out / "text_init.json").read_text())
    assert record["kind"] == "folder" and record["tensors"] > 0 and record["asked"] == str(berts.tiny)
    assert json.loads((out / "run_config.json").read_text())["text_init"]["digest"] == record["digest"]
