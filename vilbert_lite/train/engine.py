"""One training engine for every run (pretraining, fine-tuning, ViLT, 12-in-1), in one process or many (torchrun).

One loop (`run_schedule`) makes every optimizer step of every run; what differs between runs is the schedule it
is fed: `EpochSchedule` (epochs over one data set, what `train` runs) or the 12-in-1 round robin with Dynamic
Stop-and-Go (`multitask.train.RoundRobin`). The engine knows nothing about ViLBERT. `train` gets a model, a
dataset, a collate function and `loss_fn(model, batch) -> (loss, logs)`, and does the rest: AdamW with linear warm-up and decay, gradient
clipping and accumulation, bf16 autocast on CUDA, data parallel under `torchrun --nproc_per_node N`,
atomic checkpoints with exact resume, a tqdm bar, and a run folder:

    train_config.json   the resolved TrainConfig
    metrics.jsonl       one JSON line per log step ("kind": "train") and per evaluation ("kind": "eval")
    metrics.csv         the same rows, written at the end
    checkpoint.pt       model, optimizer, RNG states, data position; every `ckpt_every` steps and at the end
                        (once DONE is written, the optimizer state and RNG states are dropped from it)
    model/ | model.pt   final weights (`model.save_pretrained` if the model has it, else a state dict)
    DONE                JSON with the final numbers (what `train` returns), written last

Reuse: when `out_dir` holds a finished run with the same TrainConfig, `train` loads its final weights into
`model` and returns the stored result at once. A folder whose TrainConfig differs raises ValueError.

Checkpoints for long jobs: with the environment variable VILBERT_LITE_CKPT_EVERY=N, a run whose TrainConfig asks
for none (`ckpt_every=0`) still saves one every N steps, so a job stopped mid-run (`make reproduce` at `cpu`
takes hours) loses at most N steps of each run in flight. It is not part of the TrainConfig or the run keys:
a resumed run ends with the same weights as an uninterrupted one.

Data order: each epoch is a permutation seeded by (seed, epoch), cut into global batches of `batch_size`;
with N processes rank r takes the r-th contiguous slice of every global batch. So 1 and N processes see
the same global batches, and a resumed run skips exactly the batches it already consumed.
Under torchrun `loss_fn` receives the DDP-wrapped model: call it, use `getattr(model, "module", model)`
for attributes. With `num_workers > 0`, randomness inside the workers is not restored on resume.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vilbert_lite import runs
from vilbert_lite.device import layout, resolve_device, to_device
from vilbert_lite.errors import UserError
from vilbert_lite.train.state import (
    autocast,
    data_parallel,
    keep_metrics_until,
    make_optimizer,
    restore_checkpoint,
    save_checkpoint,
    seed_everything,
    set_lr,
)

AMP_MODES = ("auto", "bf16", "off")  # auto: bf16 autocast on CUDA only
_TYPES = {"int": int, "float": int | float, "str": str, "bool": bool, "int | None": int | None,
          "tuple[float, float]": tuple, "dict": dict}  # fmt: skip


@dataclass
class TrainConfig:
    """Optimisation settings. A step is one optimizer update of `batch_size * grad_accum` samples."""

    epochs: int = 1
    batch_size: int = 32  # global micro-batch, split evenly across processes
    lr: float = 1e-4
    weight_decay: float = 0.01  # not applied to biases and LayerNorm weights (all 0-d/1-d parameters)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_frac: float = 0.1
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    grad_accum: int = 1
    max_steps: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    ckpt_every: int = 0  # steps; 0 = only at the end
    log_every: int = 10
    num_workers: int = 0
    shuffle: bool = True
    drop_last: bool = False
    # length bucketing: batches are cut from pools of `bucket` x batch_size shuffled items sorted by length (the
    # dataset's `lengths`), then the batches are shuffled; padding to the batch maximum then pads little. 0 = off
    bucket: int = 0
    # {parameter-name prefix: lr multiplier}, the first matching prefix wins; e.g. a pretrained text stream
    # slower than the layers that start from scratch: {"bert.embeddings.": 0.1, "bert.encoder.layer.": 0.1}
    lr_scale: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in fields(self):  # type check against the annotation; bool does not count as a number
            v = getattr(self, f.name)
            v = tuple(v) if f.type == "tuple[float, float]" and isinstance(v, list) else v
            ok = isinstance(v, _TYPES[f.type]) and (f.type == "bool") == isinstance(v, bool)
            if ok and f.type == "tuple[float, float]":
                ok = len(v) == 2 and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
                v = tuple(float(x) for x in v) if ok else v
            if not ok:
                raise UserError(f"TrainConfig.{f.name}: expected {f.type}, got {v!r} ({type(v).__name__})")
            setattr(self, f.name, float(v) if f.type == "float" else v)
        rules = {
            "epochs": (self.epochs >= 1, ">= 1"), "batch_size": (self.batch_size >= 1, ">= 1"),
            "lr": (self.lr > 0, "> 0"), "warmup_frac": (0 <= self.warmup_frac < 1, "in [0, 1)"),
            "grad_clip": (self.grad_clip >= 0, ">= 0"), "grad_accum": (self.grad_accum >= 1, ">= 1"),
            "max_steps": (self.max_steps is None or self.max_steps >= 1, ">= 1 or None"),
            "amp": (self.amp in AMP_MODES, f"one of {AMP_MODES}"), "log_every": (self.log_every >= 1, ">= 1"),
            "ckpt_every": (self.ckpt_every >= 0, ">= 0"), "num_workers": (self.num_workers >= 0, ">= 0"), "bucket": (self.bucket >= 0, ">= 0"),
            "lr_scale": (all(isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                             and v >= 0 for k, v in self.lr_scale.items()), "{prefix: multiplier >= 0}"),
        }  # fmt: skip
        for key, (ok, rule) in rules.items():
            if not ok:
                raise UserError(f"TrainConfig.{key}: must be {rule}, got {getattr(self, key)!r}")

    def to_dict(self) -> dict:
        """Plain JSON-able dict (betas as a list)."""
        return {**asdict(self), "betas": list(self.betas)}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a dict; unknown keys and wrong types raise ValueError naming the key."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise UserError(f"unknown TrainConfig key(s) {unknown}; known keys: {known}")
        return cls(**d)


def lr_factor(step: int, total: int, warmup_frac: float) -> float:
    """LR multiplier for update `step` (0-based) of `total`. With w = int(warmup_frac * total): linear warm-up
    1/(w+1), 2/(w+1), ... up to the peak 1 at update w, then linear decay reaching 0 after the last update."""
    warm = int(warmup_frac * total)
    if step < warm:
        return (step + 1) / (warm + 1)
    return max(0.0, (total - step) / max(1, total - warm))


def _epoch_generator(cfg: TrainConfig, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)


def epoch_batches(
    n: int, cfg: TrainConfig, epoch: int, world: int = 1, lengths: Sequence[int] | None = None
) -> list[list[int]]:
    """Global batches (dataset indices) of one epoch: a permutation seeded by (seed, epoch) cut into
    `batch_size` chunks. A short last batch is dropped with `drop_last`, else cut to a multiple of `world`.
    With `cfg.bucket` > 0 and item `lengths`, each pool of `bucket` x batch_size consecutive items of the
    permutation is sorted by length before it is cut, and the batches are then shuffled (same generator)."""
    gen = _epoch_generator(cfg, epoch)
    order = torch.randperm(n, generator=gen).tolist() if cfg.shuffle else list(range(n))
    bucketed = cfg.bucket > 0 and lengths is not None
    if bucketed:
        if len(lengths) != n:
            raise ValueError(f"epoch_batches: {len(lengths)} lengths for {n} items")
        pool = cfg.bucket * cfg.batch_size
        order = [i for k in range(0, n, pool) for i in sorted(order[k : k + pool], key=lengths.__getitem__)]
    batches = [order[i : i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
    if batches and len(batches[-1]) < cfg.batch_size:
        batches[-1] = [] if cfg.drop_last else batches[-1][: len(batches[-1]) // world * world]
    batches = [b for b in batches if b]
    if bucketed and cfg.shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
    return batches


def evaluate(
    model: torch.nn.Module, dataset, collate_fn: Callable | None, step_fn: Callable, batch_size: int,
    device: str | torch.device = "auto", *, progress: bool = True, desc: str = "eval",
) -> list:  # fmt: skip
    """A plain loop for metrics code: `step_fn(model, batch)` for every batch, in order, in eval mode under
    no_grad. Returns the list of its outputs."""
    device = resolve_device(device)
    was_training = model.training
    model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    with torch.no_grad():
        bar = tqdm(loader, desc=desc, disable=not progress, leave=False)
        outs = [step_fn(model, to_device(b, device)) for b in bar]
    model.train(was_training)
    return outs


def mean_over_ranks(d: dict[str, float], world: int, device: torch.device) -> dict[str, float]:
    if world == 1 or not d:
        return d
    t = torch.tensor(list(d.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)  # every rank logs the same keys in the same order
    return {k: v / world for k, v in zip(d, t.tolist())}


def _means(acc: dict) -> dict[str, float]:
    return {k: v / acc["n"] for k, v in acc.items() if k != "n"}


def _accumulate(acc: dict, values: dict[str, float]) -> None:
    acc["n"] = acc.get("n", 0) + 1
    for k, v in values.items():
        acc[k] = acc.get(k, 0.0) + v


def train(
    model: torch.nn.Module,
    train_dataset,
    collate_fn: Callable | None,
    loss_fn: Callable,
    cfg: TrainConfig | dict,
    out_dir: str | Path,
    *,
    resume: bool = True,
    eval_fn: Callable | None = None,
    eval_every_epoch: bool = True,
    progress: bool = True,
    desc: str = "train",
) -> dict:
    """Train `model` on `train_dataset` with `loss_fn(model, batch) -> (scalar loss, {name: float})`.

    `eval_fn(model) -> {name: float}` runs on rank 0 in eval mode under no_grad after each epoch (or only at
    the end with `eval_every_epoch=False`). `resume=True` continues from `out_dir/checkpoint.pt` (same final
    weights as an uninterrupted run, bit-exact on CPU), or, if `out_dir` holds a finished run, loads its
    weights and returns its stored result; `resume=False` starts over. Either way a different TrainConfig
    stored in `out_dir` raises ValueError before anything happens.
    Returns {"steps", "epochs", "final_loss", "history" (one dict per epoch), "wall_time_s", ...}.
    A non-finite loss or gradient raises FloatingPointError naming the step and batch; the last good
    checkpoint is kept.
    """
    cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)
    out = Path(out_dir)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if cfg.batch_size % world:
        raise UserError(f"TrainConfig.batch_size={cfg.batch_size} must divide among {world} processes")
    runs.check_config(out / "train_config.json", cfg.to_dict(), "TrainConfig")
    if resume and runs.is_done(out):  # finished run with this config: reuse it
        ck = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        return runs.load_done(out)
    device, own_group = process_device(cfg.device, world)
    try:
        return _fit(model, train_dataset, collate_fn, loss_fn, cfg, out, device, rank, world,
                    resume, eval_fn, eval_every_epoch, progress, desc)  # fmt: skip
    finally:
        if own_group:
            dist.destroy_process_group()


def process_device(spec: str | torch.device, world: int) -> tuple[torch.device, bool]:
    """This process's device (its LOCAL_RANK's GPU under torchrun) and whether this call started the process
    group, in which case the caller destroys it when done."""
    device = resolve_device(spec)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, own_group


# ------------------------------------------------------------------------------------------------ the loop
# A run is a schedule fed to one loop. The schedule is a generator that decides which batches make each optimizer
# step and at what learning rate, evaluates and logs where its data says so, and says where the run state is
# complete; the loop does every step (autocast, DDP, the non-finite checks, clipping, AdamW), writes the
# checkpoints, restores them, and drives the bar. `EpochSchedule` (below) is every single-data-set run;
# the 12-in-1 round robin with Dynamic Stop-and-Go is `multitask.train.RoundRobin`.


@dataclass
class Update:
    """One optimizer step: the gradients of `batches` (n_micro micro-batches, each loss divided by n_micro)
    summed, clipped and applied at learning rate `lr`. `where(j)` names micro-batch j in an error message.
    The schedule receives the step's logs back: {"loss", loss_fn's logs..., "grad_norm"}."""

    batches: Iterable
    n_micro: int
    lr: float
    where: Callable[[int], str]


@dataclass
class Checkpoint:
    """Yielded where the run state is complete: a resume starts here. A finished multi-task run keeps no
    optimizer state (`keep_optimizer=False`)."""

    keep_optimizer: bool = True


@dataclass
class Tick:
    """One unit of progress (a step, an iteration) for the bar, with what the bar shows beside it."""

    postfix: dict = field(default_factory=dict)


@dataclass
class RunContext:
    """What a schedule may use: the model (unwrapped), the process layout, `log(row)` (rank 0 appends it to
    metrics.jsonl) and `elapsed()` (seconds trained, resumed segments included)."""

    model: torch.nn.Module
    device: torch.device
    rank: int
    world: int
    out: Path
    log: Callable[[dict], None]
    elapsed: Callable[[], float]


def run_schedule(model, schedule, loss_fn: Callable, cfg: TrainConfig, out: Path, device, rank: int, world: int,
                 *, resume: bool, progress: bool, desc: str) -> tuple[dict, dict]:  # fmt: skip
    """The one training loop. `schedule` has `unit` (the metrics rows' position key, "step" or "iter"),
    `total` (units), `start()` (a fresh run state: a dict with `unit`, "wall" and whatever the schedule
    needs) and `run(state, ctx)`, a generator of Update / Checkpoint / Tick that returns the run's result.
    The state is what a checkpoint saves and a resume restores, with model, optimizer and RNG states.
    -> (the schedule's result, the final run state)."""
    seed_everything(cfg.seed + rank)
    model.to(device)
    opt = make_optimizer(model, cfg, device)
    st = schedule.start()
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.jsonl"
    if resume and ckpt_path.exists():
        st = restore_checkpoint(ckpt_path, model, opt, rank, world)
        if rank == 0:
            keep_metrics_until(metrics_path, schedule.unit, st[schedule.unit])
    elif rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.jsonl", "metrics.csv", runs.DONE, "checkpoint.pt"):
            (out / name).unlink(missing_ok=True)
    net = data_parallel(model, device, world)  # what loss_fn gets
    t0, wall0 = time.perf_counter(), st["wall"]

    def elapsed() -> float:
        return wall0 + time.perf_counter() - t0

    def log(row: dict) -> None:
        if rank == 0:
            runs.append_jsonl(metrics_path, row)

    def checkpoint(keep_optimizer: bool) -> None:
        st["wall"], st["saved"] = elapsed(), st[schedule.unit]  # saved: where the last good checkpoint is
        save_checkpoint(
            ckpt_path, model, opt if keep_optimizer else None, st, rank, world, config=cfg.to_dict()
        )

    def stop(what: str, value: float, where: str) -> None:
        kept = (
            "no checkpoint yet"
            if st.get("saved") is None
            else f"the checkpoint of {schedule.unit} {st['saved']} is kept"
        )
        raise FloatingPointError(f"non-finite {what} ({value}) at {where}; {kept} in {out}")

    def step(upd: Update) -> dict:
        logs: dict[str, float] = {}
        for j, batch in enumerate(upd.batches):
            sync = j + 1 == upd.n_micro
            with net.no_sync() if world > 1 and not sync else nullcontext():
                with autocast(cfg, device):
                    loss, extra = loss_fn(net, to_device(batch, device))
                value = loss.detach().float().item()
                ok = math.isfinite(value)
                if world > 1:  # all ranks stop together
                    ok = mean_over_ranks({"ok": float(ok)}, world, device)["ok"] == 1.0
                if not ok:
                    stop("loss", value, upd.where(j))
                (loss / upd.n_micro).backward()
            for k, v in {"loss": value, **extra}.items():
                logs[k] = logs.get(k, 0.0) + float(v) / upd.n_micro
        set_lr(opt, upd.lr)
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf")))
        if not math.isfinite(gnorm):  # grads are all-reduced, so every rank sees the same norm
            stop("gradient norm", gnorm, upd.where(upd.n_micro - 1))
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {**logs, "grad_norm": gnorm}

    ctx = RunContext(model, device, rank, world, out, log, elapsed)
    bar = tqdm(total=schedule.total, initial=st[schedule.unit], desc=desc, disable=not progress or rank != 0,
               dynamic_ncols=True)  # fmt: skip
    model.train()
    gen, reply = schedule.run(st, ctx), None
    try:
        while True:
            item, reply = gen.send(reply), None
            if isinstance(item, Update):
                reply = step(item)
            elif isinstance(item, Checkpoint):
                checkpoint(item.keep_optimizer)
            elif isinstance(item, Tick):
                bar.update(1)
                if item.postfix:
                    bar.set_postfix(item.postfix, refresh=False)
            else:
                raise TypeError(f"a schedule yields Update, Checkpoint or Tick, not {type(item).__name__}")
    except StopIteration as done:
        return done.value, st
    finally:
        bar.close()


CKPT_EVERY_ENV = "VILBERT_LITE_CKPT_EVERY"


def checkpoint_every(cfg: TrainConfig) -> int:
    """Steps between checkpoints: the TrainConfig's `ckpt_every`, else $VILBERT_LITE_CKPT_EVERY, else 0 (only at
    the end)."""
    if cfg.ckpt_every:
        return cfg.ckpt_every
    raw = os.environ.get(CKPT_EVERY_ENV, "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise UserError(f"${CKPT_EVERY_ENV}={raw!r}: expected a whole number of steps (0 = only at the end)")
    return int(raw)


class EpochSchedule:
    """Every single-data-set run: epochs of `epoch_batches`, `grad_accum` micro-batches per step, the lr of
    `lr_factor`, a log row every `log_every` steps, `eval_fn` after each epoch (or at the end), a checkpoint
    every `checkpoint_every(cfg)` steps (at an epoch's end after its bookkeeping) and at the end."""

    unit = "step"

    def __init__(self, dataset, collate_fn, cfg: TrainConfig, world: int, device, eval_fn, eval_every_epoch):
        self.dataset, self.collate_fn, self.cfg, self.world, self.device = (
            dataset,
            collate_fn,
            cfg,
            world,
            device,
        )
        self.eval_fn, self.eval_every_epoch = eval_fn, eval_every_epoch
        self.lengths = getattr(dataset, "lengths", None)  # for length bucketing (cfg.bucket)
        self.n_batches = len(epoch_batches(len(dataset), cfg, 0, world, self.lengths))
        if self.n_batches == 0:
            raise UserError(f"{len(dataset)} items make no batch of {cfg.batch_size} (drop_last=True)")
        per_epoch = math.ceil(self.n_batches / cfg.grad_accum)
        self.total = min(cfg.max_steps or per_epoch * cfg.epochs, per_epoch * cfg.epochs)

    def start(self) -> dict:
        # win/ep: running sums over the log window / the epoch; saved: step of the last good checkpoint
        return {"step": 0, "epoch": 0, "batch": 0, "samples": 0, "wall": 0.0, "history": [],
                "win": {}, "ep": {}, "saved": None}  # fmt: skip

    def run(self, st: dict, ctx: RunContext):
        cfg, world, rank, total, n_batches = self.cfg, ctx.world, ctx.rank, self.total, self.n_batches
        every = checkpoint_every(cfg)
        win_t, win_samples, last = time.perf_counter(), 0, {}
        for epoch in range(st["epoch"], cfg.epochs):
            if st["step"] >= total:
                break
            batches = epoch_batches(len(self.dataset), cfg, epoch, world, self.lengths)
            mine = [b[rank * len(b) // world : (rank + 1) * len(b) // world] for b in batches]
            # skip the batches a resumed run already consumed; own generator: leaves the global RNG alone
            loader = DataLoader(self.dataset, batch_sampler=mine[st["batch"] :], collate_fn=self.collate_fn,
                                num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda",
                                generator=_epoch_generator(cfg, epoch))  # fmt: skip
            it, ckpt_pending = iter(loader), False
            while st["batch"] < n_batches:
                first = st[
                    "batch"
                ]  # a step starts at a multiple of grad_accum (checkpoints fall between steps)
                n_micro = min(cfg.grad_accum, n_batches - first)
                lr = cfg.lr * lr_factor(st["step"], total, cfg.warmup_frac)
                upd = yield Update(
                    itertools.islice(it, n_micro), n_micro, lr, _where(st["step"] + 1, epoch, first)
                )
                n_samples = sum(len(b) for b in batches[first : first + n_micro])
                st["step"], st["batch"], st["samples"] = (
                    st["step"] + 1,
                    first + n_micro,
                    st["samples"] + n_samples,
                )
                win_samples += n_samples
                _accumulate(st["win"], upd)
                _accumulate(st["ep"], upd)
                done, shown = st["step"] >= total, {}
                if st["step"] % cfg.log_every == 0 or done:
                    now = time.perf_counter()
                    last = mean_over_ranks(_means(st["win"]), world, ctx.device)
                    sps = win_samples / max(now - win_t, 1e-9)
                    ctx.log({"kind": "train", "step": st["step"], "epoch": round(epoch + st["batch"] / n_batches, 4),
                             "lr": lr, **last, "samples_per_s": round(sps, 2)})  # fmt: skip
                    shown = {"loss": f"{last['loss']:.4f}", "samples_s": f"{sps:.0f}"}
                    st["win"], win_t, win_samples = {}, now, 0
                yield Tick(shown)
                if every and st["step"] % every == 0 and not done:
                    if st["batch"] < n_batches:
                        yield Checkpoint()
                    else:  # end of epoch: save after the epoch's bookkeeping, at position (epoch + 1, 0)
                        ckpt_pending = True
                if done:
                    break

            row = {
                "epoch": epoch + 1,
                "step": st["step"],
                **mean_over_ranks(_means(st["ep"]), world, ctx.device),
            }
            if self.eval_fn is not None and (self.eval_every_epoch or st["step"] >= total):
                scores = {}
                if rank == 0:
                    ctx.model.eval()
                    with torch.no_grad():
                        scores = {k: float(v) for k, v in self.eval_fn(ctx.model).items()}
                    ctx.model.train()
                    ctx.log({"kind": "eval", "step": st["step"], "epoch": epoch + 1, **scores})
                if world > 1:
                    dist.barrier()
                row.update({f"eval_{k}": v for k, v in scores.items()})
            st["history"].append(row)
            st["epoch"], st["batch"], st["ep"] = epoch + 1, 0, {}
            if ckpt_pending:
                yield Checkpoint()

        hist = st["history"]
        result = {
            "steps": st["step"], "epochs": len(hist), "final_loss": hist[-1].get("loss") if hist else None,
            "final_eval": {k[5:]: v for k, v in hist[-1].items() if k.startswith("eval_")} if hist else {},
            "last_log": last, "samples": st["samples"], "world_size": world, "out_dir": str(ctx.out),
            # the layout the run was trained in (its last segment, if resumed): the same seed on another number of
            # threads, or another processor, sums in another order and is another sample (device.layout)
            **layout(self.device),
            "history": hist, "wall_time_s": round(ctx.elapsed(), 3),
        }  # fmt: skip
        yield Checkpoint()
        return result


def _where(step: int, epoch: int, first: int) -> Callable[[int], str]:
    return lambda j: f"global step {step}, epoch {epoch}, batch index {first + j} (see engine.epoch_batches)"


def _fit(model, dataset, collate_fn, loss_fn, cfg, out, device, rank, world,
         resume, eval_fn, eval_every_epoch, progress, desc) -> dict:  # fmt: skip
    schedule = EpochSchedule(dataset, collate_fn, cfg, world, device, eval_fn, eval_every_epoch)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        runs.write_json(out / "train_config.json", cfg.to_dict())
    result, st = run_schedule(model, schedule, loss_fn, cfg, out, device, rank, world, resume=resume,
                              progress=progress, desc=desc)  # fmt: skip
    if rank == 0:
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(out / "model")
        else:
            torch.save(model.state_dict(), out / "model.pt")
        runs.jsonl_to_csv(out / "metrics.jsonl", out / "metrics.csv")
        runs.write_json(out / runs.DONE, result)
        # a finished run is only ever reused, never continued: keep its weights, drop the optimizer state
        # (2x the model's size) so that many finished runs fit on a laptop's disk
        runs.atomic_torch_save({"model": model.state_dict(), "state": st, "config": cfg.to_dict()},
                               out / "checkpoint.pt")  # fmt: skip
    if world > 1:
        dist.barrier()  # every rank returns once the run folder is complete
    return result
