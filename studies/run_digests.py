"""Digests of three small training runs, to show that a change of code leaves training bit for bit as it was.

    .venv/bin/python studies/run_digests.py /tmp/new                           # this checkout
    PYTHONPATH=/path/to/other/checkout .venv/bin/python studies/run_digests.py /tmp/old
    diff <(sed 1d /tmp/old.txt) <(sed 1d /tmp/new.txt)                          # when each was saved with > FILE

Runs, each into ROOT (a fresh folder): a `smoke` pretraining (seed 0); a 2-data-set 12-in-1 run on it (task tokens
per data set, Dynamic Stop-and-Go, a checkpoint every 3 iterations); a `smoke` VQA fine-tune from no pretraining
with 2 accumulated micro-batches per step and a checkpoint every 2 steps. Prints the package it imported, then a
sha256 prefix of each run's final weights (where a checkpoint is kept) and of each metrics.jsonl (every logged
loss, learning rate, validation score and DSG state; throughput left out). A multi-task run's key holds its
pretraining's absolute path, so its folder name differs between two ROOTs; its digests do not.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

import vilbert_lite
from vilbert_lite.multitask.train import multitask
from vilbert_lite.tasks import finetune


def weights_digest(path: Path) -> str:
    state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].float().numpy().tobytes())
    return h.hexdigest()[:16]


def metrics_digest(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows = [{k: v for k, v in r.items() if k != "samples_per_s"} for r in rows]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def main() -> None:
    root = Path(sys.argv[1])
    print("package:", vilbert_lite.__file__)
    multitask("smoke", 0, tasks=("vqa", "refcoco+"), tokens="dataset", dsg=True, init="auto", root=root,
              train_overrides={"ckpt_every": 3}, progress=False)  # fmt: skip
    finetune(
        "vqa", None, "smoke", 0, root=root, progress=False, train_overrides={"grad_accum": 2, "ckpt_every": 2}
    )
    for p in sorted(root.glob("**/checkpoint.pt")):
        print(p.relative_to(root), "weights", weights_digest(p))
    for p in sorted(root.glob("**/metrics.jsonl")):
        print(p.relative_to(root), "metrics", metrics_digest(p))


if __name__ == "__main__":
    main()
