"""`vilbert-lite bench TARGET`: throughput numbers written to reports/bench/*.json, one module per target.

model      the model's training step and forward pass, ours beside the official code (model.py)
extract    images/s of region extraction (extract.py)
pretrain   training samples/s of the pretraining model (pretrain.py)
retrieval  cached vs. uncached retrieval scoring (retrieval.py)
vilt       ViLT's running time beside ViLBERT's, per stage (vilt.py)
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import tempfile
from pathlib import Path

import torch

from vilbert_lite.errors import UserError

# target -> "module:function"; each function takes argv (list[str]) and returns an exit code
TARGETS = {
    "model": "vilbert_lite.bench.model:bench_model",
    "extract": "vilbert_lite.bench.extract:bench",
    "pretrain": "vilbert_lite.bench.pretrain:bench",
    "retrieval": "vilbert_lite.bench.retrieval:bench",
    "vilt": "vilbert_lite.bench.vilt:bench",
}


def machine_info(device: torch.device) -> dict:
    """Where a benchmark ran: machine, cores, torch version and threads, device (and GPU name)."""
    info = {
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_json(path: str | Path, data: dict) -> None:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def cli(argv: list[str]) -> int:
    """`vilbert-lite bench {model,extract,pretrain,retrieval,vilt} [options]`."""
    names = ", ".join(TARGETS)
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: vilbert-lite bench {{{names.replace(', ', ',')}}} [options]")
        return 0
    if not argv:
        raise UserError(f"which benchmark? expected one of: {names}")
    if argv[0] not in TARGETS:
        raise UserError(f"unknown benchmark {argv[0]!r}; expected one of: {names}")
    module, func = TARGETS[argv[0]].split(":")
    return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)
