"""12-in-1 multi-task training at smoke scale (tiny model, smoke world, fake region features, CPU, seconds):
clean splits, round-robin sampling, Dynamic Stop-and-Go, task tokens, exact resume, bad input, CLI, table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_tasks import FakeExtractor

from vilbert_lite.cli import COMMANDS, main
from vilbert_lite.data.world import make_world
from vilbert_lite.errors import UserError
from vilbert_lite.model.config import NUM_TASK_TOKENS, ViLBertConfig
from vilbert_lite.multitask import data as md
from vilbert_lite.multitask import train as M
from vilbert_lite.repro import multitask_table as T


class GridExtractor(FakeExtractor):
    """FakeExtractor with a 4 x 4 grid of boxes (+ 3 larger ones) as "proposals": no segmentation, faster."""

    def __init__(self):
        super().__init__(dim=32, classes=4)
        self.settings = {**self.settings, "grid_proposals": 1}

    def extract_many(self, items, **kw):
        def grid(image):
            H, W = image.shape[:2]
            xs = [(x / 4, y / 4, (x + 1) / 4, (y + 1) / 4) for x in range(4) for y in range(4)]
            xs += [(0, 0, 0.5, 1), (0.5, 0, 1, 1), (0.25, 0.25, 0.75, 0.75)]
            return np.array(xs, np.float32) * np.array([W, H, W, H], np.float32)

        return super().extract_many(((i, im, grid(im) if b is None else b) for i, im, b in items), **kw)


FAKE = GridExtractor()


@pytest.fixture(scope="module", autouse=True)
def setup(tmp_path_factory):
    """One torch thread, a private feature cache, and the smoke data sets built once (cached by load_data)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("VILBERT_LITE_CACHE", str(tmp_path_factory.mktemp("cache")))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    M.load_data("smoke", M.SIZES["smoke"], extractor=FAKE, progress=False)
    yield
    torch.set_num_threads(n)
    mp.undo()


def data():
    return M.load_data("smoke", M.SIZES["smoke"], extractor=FAKE, progress=False)[0]


def run(tmp_path, tasks=("vqa", "coco", "refcoco+", "snli_ve"), iters=3, **kw):
    train = {"max_steps": iters, **kw.pop("train_overrides", {})}
    return M.multitask("smoke", 0, tasks, init="none", out=tmp_path, extractor=FAKE, progress=False,
                       train_overrides=train, **kw)  # fmt: skip


def tiny(tokens: str = "none") -> ViLBertConfig:
    return ViLBertConfig.preset("tiny", v_feature_size=32, task_specific_tokens=tokens != "none")


# ------------------------------------------------------------------------------------------------- data
def test_no_test_image_of_any_data_set_is_in_any_train_split(monkeypatch):
    world = make_world("smoke")
    recs = {n: {s: md.records(world, n, s) for s in md.SPLITS} for n in md.DATASETS}
    assert all(len(by["train"]) for by in recs.values()), "every data set has train records"
    clean, removed = md.clean_splits(recs)
    held = {i for by in clean.values() for s in ("val", "test") for r in by[s] for i in md.image_ids(r)}
    train = {i for by in clean.values() for r in by["train"] for i in md.image_ids(r)}
    assert not held & train
    # a test image smuggled into another data set's train split is removed, there and when the tasks are built
    leak = md.records(world, "refcocog", "test")[0]
    recs["vqa"]["train"].append(md.VQAItem("leak", leak.image_id, "what color is it?", ["red"] * 10, "color"))
    assert md.clean_splits(recs)[1]["vqa"] == {"train": 1, "val": 0, "test": 0}
    real = md.records
    monkeypatch.setattr(
        md,
        "records",
        lambda w, n, s: real(w, n, s) + ([recs["vqa"]["train"][-1]] if (n, s) == ("vqa", "train") else []),
    )
    banks = {"gt": _Banks(), "proposals": _Banks()}
    built = md.build_tasks(world, ["vqa"], banks)
    assert len(built["vqa"].train) == len(real(world, "vqa", "train"))


class _Banks(dict):
    """Stand-in image bank: the same tiny visual input for every image id."""

    def __missing__(self, key):
        return {"visual_feats": torch.zeros(2, 4), "visual_pos": torch.tensor([[0, 0, 1, 1, 1.0]] * 2),
                "cls_prob": torch.zeros(2, 0), "boxes": torch.tensor([[0, 0, 9, 9.0]] * 2),
                "num_regions": torch.tensor(2)}  # fmt: skip


def test_every_group_has_two_data_sets_with_their_labels():
    d = data()
    groups = {g: sorted(t for t in md.DATASETS if md.DATASETS[t][0] == g) for g in md.GROUPS}
    assert groups == {"G1": ["gqa", "vqa"], "G2": ["coco", "flickr"], "G3": ["refcoco+", "refcocog"],
                      "G4": ["nlvr2", "snli_ve"]}  # fmt: skip
    labels = [it["label"] for it in d["snli_ve"].train]
    assert sorted(set(labels)) == [0, 1, 2] and labels.count(0) == labels.count(1) == labels.count(2)
    world = make_world("smoke")
    assert all(r.hypothesis and r.template for r in md.records(world, "snli_ve", "train"))
    assert not any(" of the " in r.text or "most " in r.text for r in md.records(world, "refcoco+", "train"))
    assert all(" of the " in r.text or " above " in r.text or " below " in r.text
               for r in md.records(world, "refcocog", "train"))  # fmt: skip
    mask = d["vqa"].extra["answer_mask"]
    assert mask.shape == d["gqa"].extra["answer_mask"].shape and mask.any()  # one G1 vocabulary, own answers


# ---------------------------------------------------------------------------------------------- training
def test_round_robin_one_batch_per_data_set_per_iteration_at_its_own_size(tmp_path, monkeypatch):
    seen = []
    real = M.loss_fn

    def spy(net, batch):
        mask = batch["attention_mask"]
        seen.append((batch["task"], len(batch["input_ids"]), mask.shape[1], int(mask.sum(1).max())))
        return real(net, batch)

    monkeypatch.setattr(M, "loss_fn", spy)
    tasks = ("vqa", "coco", "refcoco+", "nlvr2")
    r = run(tmp_path, tasks, iters=3)
    assert [s[0] for s in seen] == list(tasks) * 3
    rows_per_item = {"vqa": 1, "coco": 4, "refcoco+": 1, "nlvr2": 2}
    for t, rows, width, longest in seen:
        assert rows == r["batch_sizes"][t] * rows_per_item[t] or rows < r["batch_sizes"][t] * rows_per_item[t]
        assert width == longest  # padded to its own longest text only, never to another data set's
    assert r["batch_sizes"] == {
        t: max(1, round(M.SIZES["smoke"].batch_size * M.BATCH_SCALE[t])) for t in tasks
    }
    assert r["updates"] == {t: 3 for t in tasks}


def test_a_non_finite_loss_names_the_data_set_and_iteration(tmp_path, monkeypatch):
    real, calls = M.loss_fn, []

    def nan_on_third(net, batch):
        calls.append(batch["task"])
        loss = real(net, batch)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(M, "loss_fn", nan_on_third)
    with pytest.raises(FloatingPointError, match=r"non-finite loss \(nan\) at data set 'vqa' at iteration 2; "
                                                 r"the checkpoint of iter 1 is kept"):  # fmt: skip
        run(tmp_path, ("vqa", "coco"), iters=3, train_overrides={"ckpt_every": 1})
    assert calls == ["vqa", "coco", "vqa"]


def test_an_update_touches_the_shared_model_and_its_own_head_only():
    d = data()
    model = M.build_model(tiny(), set(md.GROUPS), len(d["vqa"].extra["answer_mask"]), None)
    batch = M.task_collate(d["vqa"], None)(d["vqa"].train[:4])
    M.loss_fn(model, batch).backward()
    grads = {n.split(".")[0]: p.grad is not None for n, p in model.named_parameters()}
    assert grads == {"bert": True, "vil_prediction": True, "vil_logit": False, "vision_logit": False,
                     "vil_verification": False}  # fmt: skip


def test_stop_and_go_on_a_scripted_validation_sequence():
    # "bad" = at most 0.1 % over the best; stop after more than one bad in a row; go when over 0.5 % below
    dsg = M.StopAndGo(cooldown=0)
    steps = [(1.0, "go"), (1.001, "go"), (1.0011, "go"), (1.0011, "go"), (1.0, "stop"), (0.997, "stop"),
             (0.996, "go")]  # fmt: skip
    # 1.001 is exactly +0.1 %: not enough; 1.0011 is the new best; 0.997 > 0.995 x best stays; 0.996 < it goes
    assert [(s, "stop" if dsg.step(s) else "go") for s, _ in steps] == steps
    assert dsg.best == 1.0011
    official = M.StopAndGo()  # cooldown 1: the first evaluation after a switch does not count as bad
    states = ["stop" if official.step(s) else "go" for s in (1.0, 1.0, 1.0, 1.0, 0.99, 0.99, 0.99, 0.99)]
    assert states == ["go", "go", "stop", "stop", "go", "go", "go", "stop"]


def test_stop_mode_updates_every_delta_iterations_and_every_state_is_logged(tmp_path, monkeypatch):
    scores = {"nlvr2": iter([0.5] * 7 + [0.4] * 5), "snli_ve": iter([0.3] * 6)}  # one per validation

    def fake_eval(model, task, split, batch_size, token, device):
        return {M.METRIC[task.group]: next(scores[task.name]) if split == "val" else 0.0}

    monkeypatch.setattr(M, "evaluate_task", fake_eval)
    r = run(tmp_path, ("nlvr2", "snli_ve"), iters=12, dsg=True, train_overrides={"batch_size": 16})
    assert r["n_iter"] == {"nlvr2": 1, "snli_ve": 2}  # 8 items / 8 per batch; 24 / 16: validated every 1 / 2
    # nlvr2: 0.5, 0.5 (bad: < 0.1 % better), 0.5 (bad again: converged) -> stop at i=3; the cooldown
    # forgives i=4; still 0.5 (not 0.5 % below the best) -> stays stopped; 0.4 at i=8 -> go; 0.4 at i=9
    # (cooldown), 10, 11 (no improvement twice) -> stop again; i=12 (cooldown) is still > 0.5 % below: go
    states = [e["state"] for e in r["evals"] if e["task"] == "nlvr2"]
    assert states == ["go", "go"] + ["stop"] * 5 + ["go"] * 3 + ["stop", "go"]
    # updates at i = 1, 2, 3 (go), 4 (stopped, 4 mod Δ = 0), not 5-7, 8 (8 mod 4 = 0), 9-11 (go), 12
    assert r["updates"]["nlvr2"] == 3 + 1 + 1 + 3 + 1
    # snli_ve: constant score, stopped after its 3rd validation (i=6); then only i=8 and i=12 update
    assert [e["state"] for e in r["evals"] if e["task"] == "snli_ve"] == ["go", "go"] + ["stop"] * 4
    assert r["updates"]["snli_ve"] == 6 + 2
    assert all(set(e["dsg"]) == {"nlvr2", "snli_ve"} for e in r["evals"])  # every state at every validation
    logged = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x for x in logged if x["kind"] == "eval"] == r["evals"]


@pytest.mark.parametrize("tokens", M.TOKEN_MODES)
def test_task_tokens_off_per_data_set_per_head(tokens):
    d = data()
    cfg = M.MTConfig(tokens=tokens)
    model = M.build_model(tiny(tokens), set(md.GROUPS), len(d["vqa"].extra["answer_mask"]), None).eval()
    batch = M.task_collate(d["snli_ve"], cfg.token("snli_ve"))(d["snli_ve"].train[:3])
    out = model.bert(
        batch["input_ids"],
        batch["visual_feats"],
        batch["visual_pos"],
        batch["attention_mask"],
        batch["visual_attention_mask"],
        batch["token_type_ids"],
        batch.get("task_ids"),
    )
    B, T_ = batch["input_ids"].shape
    if tokens == "none":
        assert "task_ids" not in batch and not hasattr(model.bert.embeddings, "task_embeddings")
        assert out.sequence_output_t.shape[:2] == (B, T_)
        return
    assert model.bert.embeddings.task_embeddings.weight.shape == (
        NUM_TASK_TOKENS,
        model.bert.config.hidden_size,
    )
    assert batch["task_ids"].shape == (B, 1)
    assert out.sequence_output_t.shape[:2] == (B, T_ + 1)  # the task token after [CLS]
    ids = {t: cfg.token(t) for t in md.DATASETS}
    if tokens == "dataset":
        assert ids == {t: i for i, t in enumerate(md.DATASETS)}
    else:
        assert ids == {t: list(md.GROUPS).index(md.DATASETS[t][0]) for t in md.DATASETS}
    other = {**batch, "task_ids": torch.zeros_like(batch["task_ids"]) + (cfg.token("snli_ve") + 1) % 8}
    assert not torch.allclose(model(batch), model(other))  # the token changes the prediction


def test_g4_head_reads_two_images_for_nlvr2_and_one_twice_for_snli_ve():
    d = data()
    model = M.build_model(tiny(), {"G4"}, 3, None).eval()
    for name, k in (("nlvr2", 2), ("snli_ve", 1)):
        batch = M.task_collate(d[name], None)(d[name].train[:3])
        assert len(batch["input_ids"]) == 3 * k and model(batch).shape == (3, 3)


def test_a_killed_run_resumes_with_the_same_states_and_batches(tmp_path):
    from safetensors.torch import load_file

    kw = dict(tokens="dataset", dsg=True, iters=6, train_overrides={"ckpt_every": 2})
    a = run(tmp_path / "a", **kw)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", interrupt_after=3, **kw)  # killed after iteration 3: the checkpoint of 2 is kept
    ck = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert ck["state"]["iter"] == 2
    b = run(tmp_path / "b", **kw)
    assert ck["state"]["cursor"] == {
        t: [0, 2] for t in ("vqa", "coco", "refcoco+", "snli_ve")
    }  # 2 batches taken
    assert b["updates"] == a["updates"] and b["dsg"] == a["dsg"] and b["evals"] == a["evals"]
    assert b["headline"] == a["headline"]
    wa, wb = (load_file(tmp_path / x / "model" / "model.safetensors") for x in "ab")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # every logged training loss (one per data set and iteration) is the same: the same batches, same order
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()
    assert run(tmp_path / "a", **kw)["config_hash"] == a["config_hash"]  # finished: reused


def test_mt_then_finetune_starts_from_the_multitask_model(tmp_path):
    from safetensors.torch import load_file

    mt = run(tmp_path / "mt", tokens="dataset", iters=2)
    saved = load_file(tmp_path / "mt" / "model" / "model.safetensors")
    start = M.build_model(tiny("dataset"), {"G2"}, len(data()["vqa"].extra["answer_mask"]), tmp_path / "mt")
    assert all(torch.equal(v, saved[k]) for k, v in start.state_dict().items())  # backbone, token, G2 head
    ft = M.multitask("smoke", 0, ("coco",), tokens="dataset", init=mt["out_dir"], out=tmp_path / "ft",
                     extractor=FAKE, progress=False, train_overrides={"max_steps": 1})  # fmt: skip
    assert ft["tasks"] == ["coco"] and ft["updates"] == {"coco": 1}
    tuned = load_file(tmp_path / "ft" / "model" / "model.safetensors")
    assert set(tuned) < set(saved) and not torch.equal(tuned["vil_logit.weight"], saved["vil_logit.weight"])


# --------------------------------------------------------------------------------------------- bad input
def test_bad_input_is_named_before_training(tmp_path):
    with pytest.raises(
        UserError, match="unknown task.*'nope'.*known tasks: " + ", ".join(md.DATASETS).replace("+", r"\+")
    ):
        M.multitask("smoke", 0, ("vqa", "nope"), init="none", out=tmp_path / "a")
    with pytest.raises(UserError, match="tokens must be one of"):
        M.MTConfig(tokens="per-task")
    with pytest.raises(UserError, match="curriculum group 'G3' has no data set"):
        M.MTConfig(("vqa",), curriculum="G3")
    with pytest.raises(UserError, match="data set 'vqa': no val items"):
        M.multitask("smoke", 0, ("vqa",), init="none", out=tmp_path / "b", extractor=FAKE, progress=False,
                    size_overrides={"val_images": 0})  # fmt: skip
    assert not (tmp_path / "b" / "checkpoint.pt").exists()
    d = data()
    wrong = M.build_model(tiny(), set(md.GROUPS), len(d["vqa"].extra["answer_mask"]) + 1, None)
    with pytest.raises(UserError, match="task 'vqa': the G1 head predicts"):
        M.check_heads(wrong, {"vqa": d["vqa"]})
    M.save_model(wrong, M.MTConfig(), 0, tmp_path / "other" / "model")
    with pytest.raises(UserError, match="vil_prediction.* for the G1 data sets here"):
        M.multitask(
            "smoke", 0, ("gqa",), init=tmp_path / "other", out=tmp_path / "c", extractor=FAKE, progress=False
        )


def test_cli(tmp_path, monkeypatch, capsys):
    assert "multitask" in COMMANDS
    assert main(["multitask", "--tasks", "vqa,bogus", "--init", "none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vilbert-lite multitask: error: unknown task") and all(
        t in err for t in md.DATASETS
    )
    assert main(["multitask", "--train", "[1]", "--init", "none", "--tasks", "vqa"]) == 2
    real = M.load_data
    monkeypatch.setattr(
        M, "load_data", lambda profile, size, seed, extractor, progress: real(profile, size, seed, FAKE)
    )
    code = main(["multitask", "--profile", "smoke", "--init", "none", "--tasks", "nlvr2,vqa", "--tokens",
                 "head", "--dsg", "--train", '{"max_steps": 2}', "--out", str(tmp_path / "cli"),
                 "--no-progress"])  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tasks"] == ["nlvr2", "vqa"] and out["iterations"] == 2 and set(out["groups"]) == {"G1", "G4"}
    cfg = json.loads((tmp_path / "cli" / "run_config.json").read_text())
    assert cfg["mt"]["tokens"] == "head" and cfg["mt"]["dsg"] is True


# -------------------------------------------------------------------------------------------------- table
def _result(row_seed_task, value: float, params: int = 10):
    row, seed, task = row_seed_task
    tasks = [task] if task else list(md.DATASETS)
    return {"headline": {t: value for t in tasks}, "chance": {t: 0.25 for t in tasks}, "parameters": params}


def test_table_rows_statistics_and_claims():
    res = {}
    for s in range(3):
        for t in md.DATASETS:
            res["single-task", s, t] = _result(("single-task", s, t), 0.40 + 0.001 * s)
        for row, v in (
            ("vanilla", 0.45),
            ("token + DSG", 0.50),
            ("curriculum", 0.44),
            ("anti-curriculum", 0.46),
        ):
            res[row, s, None] = _result((row, s, None), v + 0.001 * s)
    long = T.long_rows(res)
    par = long[(long.column == "parameters") & (long.seed == 0)].set_index("row").value
    assert par["single-task"] == 80 and par["vanilla"] == 10  # 8 models against one
    avg = long[(long.column == "average") & (long.row == "token + DSG")].value.tolist()
    assert avg == pytest.approx([50, 50.1, 50.2])
    cl = T.claims(long).set_index("claim").verdict.to_dict()
    assert cl == {"MT1": "held", "MT2": "held", "MT3": "not held"}  # anti-curriculum beats vanilla here
    from vilbert_lite.repro.reports import summarize

    side = T.side_by_side(summarize(long), long)
    assert (
        side.loc["token + DSG", "average paper"] == "69.08"
        and side.loc["single-task", "average paper"] == "-"
    )
    assert side.loc["chance", "G1 ours"] == "25.00"


def test_convergence_order_from_single_task_runs():
    def single(task, scores):
        return {
            "tasks": [task],
            "iterations": 20,
            "evals": [{"iter": 2 * (i + 1), "score": s} for i, s in enumerate(scores)],
        }

    runs = [single("vqa", [0.1, 0.2, 0.3, 0.4, 0.5]), single("refcoco+", [0.5, 0.5, 0.5]),
            single("coco", [0.1, 0.3, 0.3, 0.3]), single("nlvr2", [0.5, 0.6, 0.7, 0.7, 0.7])]  # fmt: skip
    assert T.converged_at(runs[1]["evals"], 20) == 6 and T.converged_at(runs[0]["evals"], 20) == 21
    assert T.convergence_order(runs) == ["G3", "G2", "G4", "G1"]
