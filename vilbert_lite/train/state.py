"""What every training loop shares: the RNG states of python, numpy and torch (all devices), seeded, saved and
restored together; the optimizer; bf16 autocast; the DDP wrapper; the atomic checkpoint and its exact restore."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from vilbert_lite import runs


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The RNG states of python, numpy, torch and (when there is one) every CUDA device, for a checkpoint."""
    s = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    """Restore what `rng_state` saved (a checkpoint without CUDA states leaves the devices' alone)."""
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# --------------------------------------------------------------------------------------------------------------
# The parts every training loop shares (the engine's and the 12-in-1 round robin's): the optimizer, bf16 autocast,
# the DDP wrapper, and the checkpoint written atomically and restored exactly.


def make_optimizer(model: torch.nn.Module, cfg, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: weight decay on matrices only (not on biases and LayerNorm weights),
    one group per `cfg.lr_scale` multiplier (read back as the group's "lr_scale" when the lr is set)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def scale(name: str) -> float:
        return next((float(m) for pre, m in cfg.lr_scale.items() if name.startswith(pre)), 1.0)

    groups = []  # (weight decay or not) x lr multiplier
    for m in sorted({scale(n) for n, _ in named}):
        for decay in (True, False):
            ps = [p for n, p in named if scale(n) == m and (p.ndim >= 2) == decay]
            if ps:
                groups.append(
                    {"params": ps, "weight_decay": cfg.weight_decay if decay else 0.0, "lr_scale": m}
                )
    # the fused kernel is ~3x faster than the per-tensor loop on CPU, and what one wants on CUDA
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=device.type in ("cpu", "cuda")
    )


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def autocast(cfg, device: torch.device):
    """bf16 autocast on CUDA (amp "auto") or wherever amp is "bf16"; a no-op context otherwise."""
    enabled = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def data_parallel(model: torch.nn.Module, device: torch.device, world: int) -> torch.nn.Module:
    """The module a loss function gets: under torchrun the DDP wrapper (unused parameters allowed: a skipped
    head, or the other data sets' heads in a multi-task update), else the model itself."""
    if world == 1:
        return model
    ids = [device] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=True)


def save_checkpoint(path: Path, model, opt, state: dict, rank: int, world: int, **extra) -> None:
    """Every process's RNG state, gathered, and on rank 0 the model, optimizer (None: not kept) and run state,
    written atomically (a kill mid-write leaves the previous checkpoint)."""
    rng = [None] * world
    if world > 1:
        dist.all_gather_object(rng, rng_state())
    else:
        rng = [rng_state()]
    if rank == 0:
        ck = {"model": model.state_dict(), "optimizer": None if opt is None else opt.state_dict(), "state": state,
              "rng": rng, **extra}  # fmt: skip
        runs.atomic_torch_save(ck, path)


def restore_checkpoint(path: Path, model, opt, rank: int, world: int) -> dict:
    """Load what `save_checkpoint` wrote into `model` and `opt`, restore this process's RNG state (rank 0's when
    the run was saved under another number of processes) -> the run state."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(ck["model"])
    if ck.get("optimizer") is not None:
        opt.load_state_dict(ck["optimizer"])
    set_rng_state(ck["rng"][rank] if len(ck["rng"]) == world else ck["rng"][0])
    return ck["state"]


def keep_metrics_until(path: Path, key: str, last: int) -> None:
    """Drop the metrics rows logged after the checkpoint a run resumes from (`row[key] > last`), and a torn last
    line that a killed process left half-written."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get(key, math.inf) <= last:
            kept.append(json.dumps(row) + "\n")
    runs.atomic_write(path, lambda f: f.write("".join(kept).encode()))
