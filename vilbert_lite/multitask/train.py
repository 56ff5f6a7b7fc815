"""12-in-1 (arXiv 1912.02315): one ViLBERT for every task group, trained round-robin with Dynamic Stop-and-Go.

    r = multitask("cpu", seed=0, tokens="dataset", dsg=True)          # the paper's model, all 8 data sets
    r = multitask("cpu", seed=0, tasks=("vqa",))                      # a single-task model (the same loop)
    r = multitask("cpu", seed=0, tasks=("vqa",), init=r["out_dir"])   # MT + finetune: from a multi-task run

    vilbert-lite multitask [--tasks vqa,gqa,...] [--tokens none|dataset|head] [--dsg] [--curriculum G3]
                           [--init auto|none|RUN] [--profile cpu] [--seed 0] [--out DIR] [--train JSON]

Model: one shared ViLBertModel (`bert`) and one head per task group (official names where there is one):
    G1  vil_prediction    SimpleClassifier(bi, 2bi, G1 answers)  BCE on soft scores; VQA accuracy
    G2  vil_logit         Linear(bi, 1) per (caption, image) row  4-way CE; R@1 of test captions over a pool
    G3  vision_logit      Linear(v_hidden, 1) per region          BCE vs IoU >= 0.5; IoU(arg-max) > 0.5
    G4  vil_verification  SimpleClassifier(2bi, 2bi, 3)           CE over (contradiction, entailment, neutral)
        on the two images' pooled outputs side by side (NLVR2: the first two classes) or one image's twice
        (SNLI-VE)
Task tokens (`tokens`): "none"; "dataset": one learned embedding per data set inserted after [CLS], as the
official code (config.task_specific_tokens; id = position in multitask.data.DATASETS); "head": one per group.

Round-robin batch-level sampling, the batch schedule (`RoundRobin`) fed to the training engine's one loop
(`train.engine.run_schedule`, which makes the updates, checkpoints and resumes): iteration i visits the data sets
in order; each takes its own next batch (its own batch size, BATCH_SCALE x the profile's, and its own data order:
`train.engine.epoch_batches` seeded by (seed, data set)) and makes one AdamW update of θ = shared ∪ its head: the
other heads get no gradient, and no data set is padded to another's length. MaxIter = the train config's max_steps,
else epochs x max n_t. Dynamic Stop-and-Go (Algorithm 1): n_t = batches per epoch of data set t; when i mod n_t = 0
its validation score s_t is computed and `StopAndGo.step(s_t)` decides go / stop; a stopped data set updates only
when i mod Δ = 0. Curriculum (`curriculum="G3"`): that group trains alone for the first `curriculum_frac` of the
iterations, then every data set joins the round robin (the paper's curriculum starts with the fastest-converging
group, the anti-curriculum with the slowest: `repro.multitask_table.convergence_order` measures it).

Run folder (ROOT/multitask/<label>-<config hash>): run_config.json; metrics.jsonl (per data set a "train" row
every log_every iterations; an "eval" row per validation holding every data set's DSG state); metrics.csv;
checkpoint.pt (model, optimizer, RNG states, each data set's data cursor and DSG state, every ckpt_every
iterations: a killed run resumes with the same states and the same next batch of every data set; deleted when
the run is finished); model/ (config.json, heads.json, model.safetensors); metrics.json (test scores, written
last: a finished run is reused).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import nn

from vilbert_lite import runs
from vilbert_lite.data.store import settings_key
from vilbert_lite.data.world import make_world
from vilbert_lite.device import resolve_device, to_device
from vilbert_lite.errors import UserError, json_object_arg
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.vilbert import ViLBertModel
from vilbert_lite.multitask.data import DATASETS, GROUPS, VERIFY_LABELS, MTTask, build_tasks
from vilbert_lite.pretrain.data import extractor_settings
from vilbert_lite.pretrain.objectives import ALIGNED_INDEX
from vilbert_lite.pretrain.run import pretrain
from vilbert_lite.profiles import get_profile
from vilbert_lite.tasks.common import (
    ImageBank,
    SimpleClassifier,
    load_backbone,
    model_folder,
    new_heads,
    pair,
    world_features,
)
from vilbert_lite.tasks.retrieval import recall_at
from vilbert_lite.train.engine import (
    Checkpoint,
    RunContext,
    Tick,
    TrainConfig,
    Update,
    epoch_batches,
    evaluate,
    lr_factor,
    mean_over_ranks,
    process_device,
    run_schedule,
)
from vilbert_lite.train.state import seed_everything

GROUP_HEADS = {"G1": "vil_prediction", "G2": "vil_logit", "G3": "vision_logit", "G4": "vil_verification"}
METRIC = {"G1": "vqa_accuracy", "G2": "four_way_accuracy", "G3": "refer_accuracy", "G4": "accuracy"}  # val
HEADLINE = {**METRIC, "G2": "r@1"}  # test: what the table reports per data set
# items per batch = the profile's batch size x this: about as many (text, image) rows for every data set
BATCH_SCALE = {"vqa": 1, "gqa": 1, "coco": 0.25, "flickr": 0.25, "refcoco+": 1, "refcocog": 1, "nlvr2": 0.5,
               "snli_ve": 1}  # fmt: skip
TOKEN_MODES = ("none", "dataset", "head")
N_WAY, IOU_THRESHOLD = 4, 0.5
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class MTSize:
    """Multi-task run sizes of a profile (the model, world and learning rate are the profile's)."""

    train_images: int | None  # the first train images of the world (None: all); each data set keeps its own
    val_images: int | None  # records per image, so their sizes (and epochs n_t) differ as in 12-in-1
    test_images: int | None
    pool: int  # G2 test: images each query caption (the first of each image) is ranked against
    iterations: int | None  # MaxIter of a run; None: the profile's fine-tuning epochs x the largest n_t
    finetune_iterations: int  # MT + finetune: iterations of each per-data-set fine-tuning
    ckpt_every: int  # iterations between checkpoints (0: only at the end)
    batch_size: int | None = None  # base items per batch (None: the profile's fine-tuning batch size)


# cpu (`mini` model, 2 cores), chosen on ViLBERT† single-task validation curves (studies/multitask_curves.py ->
# reports/multitask_curves/cpu.json: 150 iterations, 100 val images): 300 train images give a mean final val
# score within 0.01 of all 600 (0.530 / 0.532; 150 images 0.516, 48 images 0.464) with half the epoch length
# n_t (14-38 iterations, flickr 188), so DSG validates most data sets 4-10 times; by 150 iterations VQA,
# RefCOCO+, NLVR2 and SNLI-VE have plateaued, GQA and RefCOCOg are still rising. A single-task iteration is
# ~0.2 s on one thread, a multi-task one ~1.5 s: the table (3 seeds: 24 single-task, 21 multi-task, 24 MT +
# finetune runs) is ~6,000 worker-seconds, ~50 min with 2 one-thread workers. MT + finetune keeps a third of
# the iterations, as before. smoke: 8 train images, 4 iterations: all but flickr validated 1-2 times.
SIZES = {
    "smoke": MTSize(train_images=8, val_images=8, test_images=8, pool=8, iterations=4, finetune_iterations=2,
                    ckpt_every=0, batch_size=8),
    "cpu": MTSize(train_images=300, val_images=100, test_images=None, pool=24, iterations=150,
                  finetune_iterations=50, ckpt_every=50),
    "gpu": MTSize(train_images=None, val_images=None, test_images=None, pool=100, iterations=None,
                  finetune_iterations=2000, ckpt_every=500),
}  # fmt: skip


# ------------------------------------------------------------------------------------------ Stop-and-Go
@dataclass
class StopAndGo:
    """Dynamic Stop-and-Go of one data set (Algorithm 1) with the rules of the official
    MultiTaskStopOnPlateau: an evaluation is bad when s <= best x (1 + threshold) (under 0.1 % relative
    improvement over the best); go -> stop after more than `patience` bad evaluations in a row; stop -> go
    when s < best x (1 - continue_threshold) (over 0.5 % below the best). The `cooldown` evaluations after a
    switch are not counted as bad (official: 1). As in Algorithm 1, a stopped data set is only tested for
    Diverged (the official class also re-stops a stopped one after more bad evaluations: hides divergence)."""

    threshold: float = 0.001
    continue_threshold: float = 0.005
    patience: int = 1
    cooldown: int = 1
    best: float = -math.inf
    bad: int = 0  # bad evaluations in a row
    cool: int = 0  # evaluations of cooldown left
    stopped: bool = False

    def step(self, score: float) -> bool:
        """Take one validation score -> whether the data set is now in stop mode."""
        if score > self.best * (1 + self.threshold):  # (scores are >= 0; the first beats best = -inf)
            self.best, self.bad = score, 0
        else:
            self.bad += 1
        if self.cool > 0:
            self.cool, self.bad = self.cool - 1, 0
        if not self.stopped and self.bad > self.patience:  # go and Converged(s_t)
            self.stopped, self.cool, self.bad = True, self.cooldown, 0
        elif self.stopped and score < self.best * (1 - self.continue_threshold):  # stop and Diverged(s_t)
            self.stopped, self.cool, self.bad = False, self.cooldown, 0
        return self.stopped

    @property
    def state(self) -> str:
        return "stop" if self.stopped else "go"


@dataclass
class MTConfig:
    """What a multi-task run trains (the optimisation settings are a TrainConfig)."""

    tasks: tuple[str, ...] = tuple(DATASETS)  # data sets, in round-robin order
    tokens: str = "none"  # task tokens: TOKEN_MODES
    dsg: bool = False  # Dynamic Stop-and-Go
    delta: int = 4  # Δ: a stopped data set updates every Δ iterations
    threshold: float = 0.001
    continue_threshold: float = 0.005
    patience: int = 1
    cooldown: int = 1
    curriculum: str | None = None  # a group trained alone first ...
    curriculum_frac: float = 0.25  # ... for this share of the iterations

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        unknown = [t for t in self.tasks if t not in DATASETS]
        if unknown or not self.tasks:
            raise UserError(
                f"unknown task(s) {unknown or '(none given)'}; known tasks: {', '.join(DATASETS)}"
            )
        if len(set(self.tasks)) != len(self.tasks):
            raise UserError(f"tasks: each data set once, got {list(self.tasks)}")
        if self.tokens not in TOKEN_MODES:
            raise UserError(f"tokens must be one of {TOKEN_MODES}, got {self.tokens!r}")
        if self.curriculum is not None and self.curriculum not in {DATASETS[t][0] for t in self.tasks}:
            raise UserError(
                f"curriculum group {self.curriculum!r} has no data set among the tasks {self.tasks}"
            )
        if self.delta < 1 or not 0 <= self.curriculum_frac < 1:
            raise UserError(
                f"delta must be >= 1 and curriculum_frac in [0, 1), got {self.delta}, {self.curriculum_frac}"
            )

    def stop_and_go(self) -> StopAndGo:
        return StopAndGo(self.threshold, self.continue_threshold, self.patience, self.cooldown)

    def token(self, name: str) -> int | None:
        """The task-token id of a data set: its index in DATASETS or its group's; None without tokens."""
        if self.tokens == "none":
            return None
        return (
            list(DATASETS).index(name) if self.tokens == "dataset" else list(GROUPS).index(DATASETS[name][0])
        )


# ------------------------------------------------------------------------------------------------ model
class MultiTaskModel(nn.Module):
    """The shared backbone (`bert`) and one head per task group (GROUP_HEADS); `forward(batch)` runs the
    backbone with the batch's task tokens, then the head of the batch's group."""

    def __init__(self, bert: nn.Module, groups, n_answers: int):
        super().__init__()
        c, self.bert = bert.config, bert
        bi = c.bi_hidden_size
        make = {"G1": lambda: SimpleClassifier(bi, 2 * bi, n_answers), "G2": lambda: nn.Linear(bi, 1),
                "G3": lambda: nn.Linear(c.v_hidden_size, 1),
                "G4": lambda: SimpleClassifier(2 * bi, 2 * bi, len(VERIFY_LABELS))}  # fmt: skip
        for name, head in new_heads(c, **{GROUP_HEADS[g]: make[g]() for g in sorted(groups)}).items():
            self.add_module(name, head)

    def forward(self, batch: dict) -> torch.Tensor:
        out = self.bert(batch["input_ids"], batch["visual_feats"], batch["visual_pos"],
                        batch["attention_mask"], batch["visual_attention_mask"], batch["token_type_ids"],
                        batch.get("task_ids"))  # fmt: skip
        g = batch["group"]
        if g == "G1":
            return self.vil_prediction(out.pooled_output)  # (B, n_answers)
        if g == "G2":
            return self.vil_logit(out.pooled_output).squeeze(-1)  # (rows,): one score per (caption, image)
        if g == "G3":
            return self.vision_logit(out.sequence_output_v).squeeze(-1)  # (B, R)
        x = out.pooled_output.reshape(len(batch["label"]), -1)  # (B, K*bi): K = 2 images (NLVR2) or 1
        return self.vil_verification(x if x.shape[1] > out.pooled_output.shape[1] else torch.cat([x, x], 1))


def loss_fn(net, batch: dict) -> torch.Tensor:
    """The loss of the batch's group (see the module docstring)."""
    out, g = net(batch), batch["group"]
    if g == "G1":
        return F.binary_cross_entropy_with_logits(out, batch["target"], reduction="sum") / len(out)
    if g == "G2":
        return F.cross_entropy(out.view(-1, N_WAY), batch["label"])
    if g == "G3":
        iou, real = batch["iou"], batch["visual_attention_mask"].to(out.dtype)
        target = iou * (iou >= IOU_THRESHOLD)
        return (F.binary_cross_entropy_with_logits(out, target, reduction="none") * real).sum() / len(out)
    return F.cross_entropy(out[:, : batch["n_classes"]], batch["label"])


def correct(model, batch: dict) -> torch.Tensor:
    """Per item: 1 if right (G1: the VQA score of the arg-max among the data set's own answers) -> (B,)."""
    out, g = model(batch).float(), batch["group"]
    if g == "G1":
        pick = out.masked_fill(~batch["answer_mask"], -math.inf).argmax(1)
        return batch["target"].gather(1, pick[:, None]).squeeze(1)
    if g == "G2":
        return (out.view(-1, N_WAY).argmax(1) == batch["label"]).float()
    if g == "G3":
        ok = batch["visual_attention_mask"].bool().clone()
        ok[:, 0] = False  # never the global region
        pick = out.masked_fill(~ok, -math.inf).argmax(1)
        return (batch["iou"].gather(1, pick[:, None]).squeeze(1) > IOU_THRESHOLD).float()
    return (out[:, : batch["n_classes"]].argmax(1) == batch["label"]).float()


def collate_task(items: list, collate, name: str, group: str, token: int | None, extra: dict) -> dict:
    """A data set's collate plus what the model and losses read: task, group, task_ids (rows, 1), extra."""
    batch = {**collate(items), "task": name, "group": group, **extra}
    if token is not None:
        batch["task_ids"] = torch.full((len(batch["input_ids"]), 1), token, dtype=torch.long)
    return batch


def task_collate(task: MTTask, token: int | None):
    extra = {k: task.extra[k] for k in ("answer_mask", "n_classes") if k in task.extra}
    return partial(
        collate_task, collate=task.collate, name=task.name, group=task.group, token=token, extra=extra
    )


def evaluate_task(
    model, task: MTTask, split: str, batch_size: int, token: int | None, device
) -> dict[str, float]:
    """{metric: value} of one data set on `split` (val: the score DSG reads; G2's test: R@1/5/10)."""
    fn = task_collate(task, token)
    if task.group == "G2" and split == "test":  # R@K over the pool only (the 4-way items are for validation)
        pool, images, queries = task.extra["pool"], task.extra["images"], task.extra["queries"]
        rows = [{"pairs": [pair(q, images[i])]} for q in queries for i in pool]  # (N*M) rows, caption-major
        scores = evaluate(model, rows, fn, lambda m, b: m(b).float().cpu(), N_WAY * batch_size, device,
                          progress=False)  # fmt: skip
        return recall_at(torch.cat(scores).view(len(queries), len(pool)), torch.arange(len(queries)))
    right = evaluate(model, getattr(task, split), fn, lambda m, b: correct(m, b).cpu(), batch_size, device,
                     progress=False)  # fmt: skip
    return {METRIC[task.group]: float(torch.cat(right).mean())}


# ------------------------------------------------------------------------------------------------ init
def build_model(config, groups, n_answers: int, init: str | Path | None, text_from_bert: bool = False):
    """The multi-task model; init None: random backbone (the text stream from BERT with `text_from_bert`); a
    pretraining run: its backbone (and G2's head starts as its alignment head's log-odds, as in retrieval); a
    multi-task run: its backbone, heads and task embeddings. A head of another shape is a UserError."""
    if init is None:
        return MultiTaskModel(load_backbone(None, config, "vilbert", text_from_bert), groups, n_answers)

    model = MultiTaskModel(ViLBertModel(config), groups, n_answers)
    state = load_file(model_folder(init) / "model.safetensors")
    token = "embeddings.task_embeddings.weight"
    bert = {k[5:]: v for k, v in state.items() if k.startswith("bert.")}
    if not config.task_specific_tokens:
        bert.pop(token, None)  # a multi-task run with task tokens, fine-tuned without
    missing, unexpected = model.bert.load_state_dict(bert, strict=False)
    if [k for k in missing if k != token] or unexpected:
        raise UserError(
            f"--init {init}: backbone weights do not match: missing {missing}, unexpected {unexpected}"
        )
    own = model.state_dict()
    for k, v in state.items():
        if k.split(".")[0] in GROUP_HEADS.values() and k in own:
            if v.shape != own[k].shape:
                g = next(g for g, h in GROUP_HEADS.items() if k.startswith(h + "."))
                raise UserError(f"--init {init}: {k} has shape {tuple(v.shape)} there but "
                                f"{tuple(own[k].shape)} for the {g} data sets here (another answer "
                                "vocabulary or world?)")  # fmt: skip
            own[k].copy_(v)
    if "G2" in groups and "vil_logit.weight" not in state and "cls.bi_seq_relationship.weight" in state:
        w, b = state["cls.bi_seq_relationship.weight"], state["cls.bi_seq_relationship.bias"]
        a, o = ALIGNED_INDEX, 1 - ALIGNED_INDEX
        model.vil_logit.load_state_dict({"weight": (w[a] - w[o])[None], "bias": (b[a] - b[o])[None]})
    return model


def check_heads(model: MultiTaskModel, tasks: dict[str, MTTask]) -> None:
    """Fail before training, naming the data set, when a head does not fit its labels."""
    heads = {g: getattr(model, h, None) for g, h in GROUP_HEADS.items()}
    for name, task in tasks.items():
        head = heads[task.group]
        if head is None:
            raise UserError(
                f"task {name!r}: the model has no {GROUP_HEADS[task.group]} head for group {task.group}"
            )
        with torch.random.fork_rng():  # FourWay draws its negatives from the global RNG
            items = [task.train[i] for i in range(min(8, len(task.train)))]
        if task.group == "G1":
            width, n_out = {len(it["target"]) for it in items}, head.logit_fc[-1].out_features
            if width != {n_out}:
                raise UserError(
                    f"task {name!r}: the G1 head predicts {n_out} answers but the targets have {width}"
                )
        elif task.group == "G2" and any(len(it["pairs"]) != N_WAY for it in items):
            raise UserError(f"task {name!r}: retrieval items must hold {N_WAY} (caption, image) rows each")
        elif task.group == "G3" and any(
            len(it["iou"]) != len(it["pairs"][0]["visual_feats"]) for it in items
        ):
            raise UserError(f"task {name!r}: the IoU targets do not match the regions of their images")
        elif task.group == "G4":
            labels, n = {it["label"] for it in items}, task.extra["n_classes"]
            if not labels <= set(range(n)) or n > head.logit_fc[-1].out_features:
                raise UserError(
                    f"task {name!r}: labels {sorted(labels)} do not fit {n} classes of the G4 head"
                )


def save_model(model: MultiTaskModel, cfg: MTConfig, n_answers: int, folder: Path) -> None:
    """folder/config.json (the backbone's config + what the heads need) and folder/model.safetensors."""
    meta = {**model.bert.config.to_dict(), "architectures": ["MultiTaskModel"]}
    runs.write_json(folder / "config.json", meta)
    runs.write_json(folder / "heads.json", {"groups": sorted({DATASETS[t][0] for t in cfg.tasks}),
                                            "n_answers": n_answers, "tokens": cfg.tokens})  # fmt: skip
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    runs.atomic_write(folder / "model.safetensors", lambda f: f.write(save(state)))


# ------------------------------------------------------------------------------------------------ loop
def fit(model: MultiTaskModel, tasks: dict[str, MTTask], cfg: MTConfig, tcfg: TrainConfig, out: Path, *,
        resume: bool = True, progress: bool = True, interrupt_after: int | None = None) -> dict:  # fmt: skip
    """Round-robin training with optional DSG and curriculum (module docstring), in one process or under
    torchrun. `interrupt_after=k` (a test hook) raises KeyboardInterrupt after iteration k, as a kill would
    (a resume continues from the last checkpoint). -> {iterations, n_iter, updates, evals, wall_time_s...}"""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if tcfg.grad_accum != 1:
        raise UserError("multitask: grad_accum must be 1 (every data set makes one update per iteration)")
    device, own_group = process_device(tcfg.device, world)
    try:
        return _fit(
            model, tasks, cfg, tcfg, Path(out), device, rank, world, resume, progress, interrupt_after
        )
    finally:
        if own_group:
            dist.destroy_process_group()


def _fit(model, tasks, cfg, tcfg, out, device, rank, world, resume, progress, interrupt_after) -> dict:
    schedule = RoundRobin(tasks, cfg, tcfg, rank, world, device, interrupt_after)
    desc = "multitask" if len(schedule.names) > 1 else schedule.names[0]
    return run_schedule(model, schedule, _loss_and_logs, tcfg, out, device, rank, world, resume=resume,
                        progress=progress, desc=desc)[0]  # fmt: skip


def _loss_and_logs(net, batch: dict) -> tuple[torch.Tensor, dict]:
    return loss_fn(net, batch), {}


def _where(t: str, i: int):
    return lambda j: f"data set {t!r} at iteration {i}"


class RoundRobin:
    """The 12-in-1 batch schedule fed to the training engine: iteration i (the lr of `lr_factor(i - 1)`)
    visits the data sets in order, each making one update on its own next batch unless the curriculum holds
    it back or DSG stopped it (then only when i mod Δ = 0); a data set whose epoch (n_t iterations) ends is
    validated right after its turn and DSG takes the score. A checkpoint every `ckpt_every` iterations holds
    every data set's data cursor and DSG state."""

    unit = "iter"

    def __init__(self, tasks: dict[str, MTTask], cfg: MTConfig, tcfg: TrainConfig, rank: int, world: int,
                 device, interrupt_after: int | None = None):  # fmt: skip
        self.tasks, self.cfg, self.tcfg = tasks, cfg, tcfg
        self.rank, self.world, self.device, self.interrupt_after = rank, world, device, interrupt_after
        self.names = names = list(cfg.tasks)
        self.size = {t: max(1, round(tcfg.batch_size * BATCH_SCALE[t])) for t in names}  # items per batch
        if any(self.size[t] % world for t in names):
            raise UserError(f"per-task batch sizes {self.size} must divide among {world} processes")
        self.order = {  # each data set's own data order
            t: replace(tcfg, batch_size=self.size[t], seed=tcfg.seed * 1000 + list(DATASETS).index(t))
            for t in names
        }
        self.n_iter = {
            t: len(epoch_batches(len(tasks[t].train), self.order[t], 0, world)) for t in names
        }  # n_t
        self.total = tcfg.max_steps or tcfg.epochs * max(self.n_iter.values())  # MaxIter
        self.solo = int(cfg.curriculum_frac * self.total) if cfg.curriculum else 0  # first group alone
        self.collate = {t: task_collate(tasks[t], cfg.token(t)) for t in names}
        self._cache: dict = {}

    def start(self) -> dict:
        # cursor: [epoch, next batch] of each data set's own data order
        return {"iter": 0, "cursor": {t: [0, 0] for t in self.names}, "updates": {t: 0 for t in self.names},
                "evals": [], "dsg": {t: asdict(self.cfg.stop_and_go()) for t in self.names}, "win": {},
                "wall": 0.0}  # fmt: skip

    def _next_batch(self, st: dict, t: str) -> dict:
        e, b = st["cursor"][t]
        n = len(self.tasks[t].train)
        if (t, e) not in self._cache:
            self._cache[t, e] = epoch_batches(n, self.order[t], e, self.world)
        if b >= len(self._cache[t, e]):  # the data set's epoch is over: the next permutation
            e, b = e + 1, 0
            self._cache[t, e] = epoch_batches(n, self.order[t], e, self.world)
        st["cursor"][t] = [e, b + 1]
        idx = self._cache[t, e][b]
        mine = idx[self.rank * len(idx) // self.world : (self.rank + 1) * len(idx) // self.world]
        return to_device(self.collate[t]([self.tasks[t].train[j] for j in mine]), self.device)

    def _validate(self, ctx: RunContext, t: str) -> float:
        score = [0.0]
        if self.rank == 0:
            scores = evaluate_task(
                ctx.model, self.tasks[t], "val", self.size[t], self.cfg.token(t), self.device
            )
            score = [scores[METRIC[self.tasks[t].group]]]
        if self.world > 1:
            dist.broadcast_object_list(score, src=0)  # every rank takes the same DSG decision
        return score[0]

    def run(self, st: dict, ctx: RunContext):
        cfg, tcfg, names, total = self.cfg, self.tcfg, self.names, self.total
        dsg = {t: StopAndGo(**st["dsg"][t]) for t in names}
        for i in range(st["iter"] + 1, total + 1):
            lr = tcfg.lr * lr_factor(i - 1, total, tcfg.warmup_frac)
            for t in names:
                if i <= self.solo and self.tasks[t].group != cfg.curriculum:
                    continue
                if not (cfg.dsg and dsg[t].stopped) or i % cfg.delta == 0:  # θ = θ_shared ∪ θ_t
                    batch = self._next_batch(st, t)
                    logs = yield Update([batch], 1, lr, _where(t, i))
                    st["updates"][t] += 1
                    w = st["win"].setdefault(t, [0.0, 0])
                    w[0], w[1] = w[0] + logs["loss"], w[1] + 1
                if i % self.n_iter[t] == 0:  # the data set's epoch (in iterations): validate, then DSG
                    score = self._validate(ctx, t)
                    if cfg.dsg:
                        dsg[t].step(score)
                    row = {
                        "kind": "eval",
                        "iter": i,
                        "task": t,
                        "score": score,
                        "best": dsg[t].best if cfg.dsg else None,
                        "state": dsg[t].state,
                        "dsg": {u: dsg[u].state for u in names},
                    }  # fmt: skip  (every data set's state)
                    st["evals"].append(row)
                    ctx.log(row)
            st["iter"] = i
            if i % tcfg.log_every == 0 or i == total:
                means = mean_over_ranks(
                    {t: s / n for t, (s, n) in st["win"].items()}, self.world, self.device
                )
                for t, loss in means.items():
                    ctx.log({"kind": "train", "iter": i, "task": t, "loss": loss, "updates": st["updates"][t],
                             "lr": lr})  # fmt: skip
                st["win"] = {}
            yield Tick({t: dsg[t].state for t in names} if cfg.dsg else {})
            st["dsg"] = {t: asdict(d) for t, d in dsg.items()}
            if tcfg.ckpt_every and i % tcfg.ckpt_every == 0 and i < total:
                yield Checkpoint()
            if self.interrupt_after == i:
                raise KeyboardInterrupt(f"interrupted after iteration {i} (test hook)")
        st["dsg"] = {t: asdict(d) for t, d in dsg.items()}
        # a finished run keeps no optimizer state (2x the model): it is reused, never continued
        yield Checkpoint(keep_optimizer=False)
        if self.rank == 0:
            runs.jsonl_to_csv(ctx.out / "metrics.jsonl", ctx.out / "metrics.csv")
        if self.world > 1:
            dist.barrier()
        return {"iterations": total, "n_iter": self.n_iter, "batch_sizes": self.size, "updates": st["updates"],
                "dsg": st["dsg"], "evals": st["evals"], "wall_time_s": round(ctx.elapsed(), 2)}  # fmt: skip


# ----------------------------------------------------------------------------------------------- driver
_DATA: dict = {}  # per process: the built data sets (the table's workers build them once, not once per run)


def load_data(profile, size: MTSize, world_seed: int = 0, extractor=None, progress: bool = True):
    """Every data set of DATASETS on the profile's world (region features extracted once, cached on disk),
    built once per process -> (tasks, description for the run config)."""
    key = json.dumps(
        [get_profile(profile).name, world_seed, asdict(size), getattr(extractor, "settings", None)],
        default=str,
    )
    if key not in _DATA:
        world = make_world(profile, seed=world_seed)
        stores = {
            k: world_features(world, k, extractor=extractor, progress=progress)[0]
            for k in ("gt", "proposals")
        }
        desc = data_desc(world.key, world_seed, {k: s.key for k, s in stores.items()}, size)
        banks = {k: ImageBank(s) for k, s in stores.items()}
        _DATA.clear()  # one world at a time
        _DATA[key] = build_tasks(world, list(DATASETS), banks, desc["images"], size.pool), desc
    return _DATA[key]


def resolve_init(init, profile, seed: int, root: Path, progress: bool) -> Path | None:
    """The init run: "auto" = the profile's pretraining run for `seed` (reused or trained); None; a folder."""
    if init is None or str(init).lower() == "none":
        return None
    if str(init) == "auto":
        return Path(pretrain(profile, seed, out=root, progress=progress)).resolve()

    model_folder(init)  # a FileNotFoundError naming what is missing
    return Path(init).resolve()


def data_desc(world_key: str, world_seed: int, stores: dict[str, str], size: MTSize) -> dict:
    """The run-config entry of the data: the world, its seed, the feature stores' keys, the images per split."""
    images = {"train": size.train_images, "val": size.val_images, "test": size.test_images}
    return {
        "world": world_key,
        "world_seed": world_seed,
        "stores": stores,
        "images": images,
        "pool": size.pool,
    }


def model_config(prof, init_meta: dict | None, init, width: int, tokens: str):
    """The model a run trains: the init run's (its config.json, `init_meta`) or the profile's preset, reading
    `width`-d region features, with task tokens unless `tokens` is "none"."""
    if init_meta is None:
        return ViLBertConfig.preset(
            prof.model_preset, v_feature_size=width, task_specific_tokens=tokens != "none"
        )
    config = ViLBertConfig.from_dict(init_meta, source=f"{init}/config.json")
    if config.v_feature_size != width:
        raise UserError(f"--init {init}: its model reads {config.v_feature_size}-d region features, the "
                        f"feature stores hold {width}-d ones (another extractor?)")  # fmt: skip
    return config.replace(task_specific_tokens=tokens != "none")


def train_config(prof, size: MTSize, seed: int, train_overrides: dict | None = None) -> TrainConfig:
    """The TrainConfig of a run: the profile's fine-tuning settings at the run sizes, then the overrides."""
    f = prof.finetune
    return TrainConfig.from_dict({"epochs": f.epochs, "batch_size": size.batch_size or f.batch_size,
                                  "lr": f.lr, "warmup_frac": f.warmup_frac, "max_steps": size.iterations,
                                  "seed": seed, "ckpt_every": size.ckpt_every, "log_every": 1,
                                  **(train_overrides or {})})  # fmt: skip


def run_config(prof, seed: int, init, cfg: MTConfig, desc: dict, config, tcfg: TrainConfig) -> dict:
    """The run config a multi-task run is keyed by (its folder is `<label>-<config hash>`, `run_label`)."""
    return {"kind": "multitask", "profile": prof.name, "seed": seed, "init": str(init) if init else "none",
            "mt": asdict(cfg), "data": desc, "model": config.to_dict(), "train": tcfg.to_dict(),
            "version": 1}  # fmt: skip


def run_label(cfg: MTConfig, from_mt: bool) -> str:
    """ "mt" for several data sets, else the data set; "-ft" when it starts from a multi-task run."""
    return ("mt" if len(cfg.tasks) > 1 else cfg.tasks[0]) + ("-ft" if from_mt else "")


def plan_multitask(profile: str = "cpu", seed: int = 0, tasks=tuple(DATASETS), *, tokens: str = "none",
                   dsg: bool = False, curriculum: str | None = None, curriculum_frac: float = 0.25,
                   init: str | Path | None = None, init_model: dict | None = None, init_is_multitask: bool = False,
                   root: str | Path | None = None, train_overrides: dict | None = None,
                   size_overrides: dict | None = None, world_seed: int = 0) -> tuple[Path, dict]:  # fmt: skip
    """(run folder, run config) of `multitask(...)` with the same arguments, without reading the init run,
    extracting or training: `init` is a run folder, planned or finished (only its path enters the key), with
    `init_model` its model config.json (for a pretraining run: its run config's "model") and
    `init_is_multitask` whether it is a multi-task run (MT + finetune); None: no init."""
    cfg = MTConfig(tuple(tasks), tokens, dsg, curriculum=curriculum, curriculum_frac=curriculum_frac)
    prof = get_profile(profile)
    size = replace(SIZES[prof.name], **(size_overrides or {}))
    root = Path(root) if root is not None else runs.runs_root()
    init = Path(init).resolve() if init is not None else None
    if init is not None and init_model is None:
        raise ValueError("plan_multitask: pass the init run's model config as init_model")
    settings = extractor_settings()
    world = make_world(prof, seed=world_seed)
    desc = data_desc(world.key, world_seed, {k: settings_key(settings) for k in ("gt", "proposals")}, size)
    config = model_config(prof, init_model, init, settings["feature_dim"], tokens)
    run_cfg = run_config(prof, seed, init, cfg, desc, config, train_config(prof, size, seed, train_overrides))
    return runs.run_dir(root / "multitask", run_label(cfg, init_is_multitask), run_cfg), run_cfg


def multitask(profile: str = "cpu", seed: int = 0, tasks=tuple(DATASETS), *, tokens: str = "none",
              dsg: bool = False, curriculum: str | None = None, curriculum_frac: float = 0.25,
              init: str | Path | None = "auto", out: str | Path | None = None, root: str | Path | None = None,
              train_overrides: dict | None = None, size_overrides: dict | None = None, world_seed: int = 0,
              extractor=None, progress: bool = True, resume: bool = True,
              interrupt_after: int | None = None) -> dict:  # fmt: skip
    """Train one model on `tasks` round-robin (a single-task model when there is one) and evaluate it on
    every test split -> metrics (also OUT/metrics.json): per data set scores and headline, group means, the
    all-task average, parameters, updates, the DSG log. init: "auto" (the profile's pretraining run for
    `seed`), "none", a pretraining run, or a multi-task run (heads and task embeddings too: MT + finetune)."""
    cfg = MTConfig(tuple(tasks), tokens, dsg, curriculum=curriculum, curriculum_frac=curriculum_frac)
    prof = get_profile(profile)
    size = replace(SIZES[prof.name], **(size_overrides or {}))
    root = Path(root) if root is not None else runs.runs_root()
    init = resolve_init(init, prof, seed, root, progress)
    data, desc = load_data(prof, size, world_seed, extractor, progress)
    chosen = {t: data[t] for t in cfg.tasks}
    n_answers = len(data["vqa"].extra["answer_mask"])  # G1's one vocabulary, whichever data sets train
    width = int(data["vqa"].train[0]["pairs"][0]["visual_feats"].shape[1])  # region features of the stores
    meta = None
    if init is not None:
        meta = json.loads((model_folder(init) / "config.json").read_text())
    config = model_config(prof, meta, init, width, tokens)
    tcfg = train_config(prof, size, seed, train_overrides)
    run_cfg = run_config(prof, seed, init, cfg, desc, config, tcfg)
    from_mt = init is not None and (init / "model" / "heads.json").exists()  # MT + finetune
    out = Path(out) if out is not None else runs.run_dir(root / "multitask", run_label(cfg, from_mt), run_cfg)
    h = runs.config_hash(run_cfg)
    runs.prepare_run(out, run_cfg)
    if resume and (out / METRICS_FILE).exists():
        m = json.loads((out / METRICS_FILE).read_text())
        if m.get("config_hash") == h:
            return m
    groups = {DATASETS[t][0] for t in cfg.tasks}
    seed_everything(seed)  # the heads' (and task embeddings') initialisation depends on the seed only
    model = build_model(config, groups, n_answers, init, prof.init_text_from_bert and init is None)
    check_heads(model, chosen)
    result = fit(
        model, chosen, cfg, tcfg, out, resume=resume, progress=progress, interrupt_after=interrupt_after
    )
    t0, device = time.perf_counter(), resolve_device(tcfg.device)
    if int(os.environ.get("RANK", 0)) != 0:
        return result
    save_model(model, cfg, n_answers, out / "model")
    scores = {
        t: evaluate_task(model, chosen[t], "test", result["batch_sizes"][t], cfg.token(t), device)
        for t in cfg.tasks
    }
    headline = {t: scores[t][HEADLINE[DATASETS[t][0]]] for t in cfg.tasks}
    by_group = {
        g: float(np.mean([v for t, v in headline.items() if DATASETS[t][0] == g])) for g in sorted(groups)
    }
    metrics = {"tasks": list(cfg.tasks), "seed": seed, "profile": prof.name, "init": run_cfg["init"],
               "mt": asdict(cfg), "scores": scores, "headline": headline, "groups": by_group,
               "average": float(np.mean(list(headline.values()))),
               "chance": {t: chosen[t].info["chance"] for t in cfg.tasks},
               "parameters": sum(p.numel() for p in model.parameters()), **result, "config_hash": h,
               "wall_time_s": round(result["wall_time_s"] + time.perf_counter() - t0, 2),
               "out_dir": str(out)}  # fmt: skip
    runs.write_json(out / METRICS_FILE, metrics)
    (out / "checkpoint.pt").unlink(
        missing_ok=True
    )  # finished: model/ holds the weights, metrics.json the rest
    return metrics


# -------------------------------------------------------------------------------------------------- CLI
def cli(argv: list[str]) -> int:
    """`vilbert-lite multitask`: one multi-task (or single-task, or MT + finetune) run; prints its metrics."""
    ap = argparse.ArgumentParser(prog="vilbert-lite multitask", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--tasks", default=",".join(DATASETS), help=f"comma-separated data sets: {', '.join(DATASETS)}"
    )
    ap.add_argument(
        "--tokens", default="none", choices=TOKEN_MODES, help="task tokens: per data set, per head, none"
    )
    ap.add_argument("--dsg", action="store_true", help="Dynamic Stop-and-Go")
    ap.add_argument("--curriculum", help="a group (G1..G4) trained alone first")
    ap.add_argument("--curriculum-frac", type=float, default=0.25, help="its share of the iterations")
    ap.add_argument(
        "--init", default="auto", help="auto (the profile's pretraining run), none, or a run folder"
    )
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="run folder (default runs/multitask/<label>-<config hash>)")
    ap.add_argument("--train", help="TrainConfig overrides as JSON, e.g. '{\"max_steps\": 50}' (MaxIter)")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    names = tuple(t.strip() for t in a.tasks.split(",") if t.strip())
    MTConfig(names, a.tokens, a.dsg, curriculum=a.curriculum, curriculum_frac=a.curriculum_frac)  # fail early
    overrides = json_object_arg(a.train, "--train", '{"max_steps": 50}')
    m = multitask(a.profile, a.seed, names, tokens=a.tokens, dsg=a.dsg, curriculum=a.curriculum,
                  curriculum_frac=a.curriculum_frac, init=a.init, out=a.out, train_overrides=overrides,
                  progress=not a.no_progress)  # fmt: skip
    keep = ("tasks", "headline", "groups", "average", "parameters", "updates", "iterations", "out_dir")
    print(json.dumps({k: m[k] for k in keep}, indent=2))
    return 0
