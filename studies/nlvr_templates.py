"""NLVR-style accuracy by statement template (presence: both / exactly_one; counting and comparison: count,
total, more_objects, more_shape) for fine-tuned NLVR runs, on the train, val and test splits.

    .venv/bin/python studies/nlvr_templates.py RUN [RUN ...]     # RUN: a fine-tuning run folder of task nlvr
    -> one JSON line per run and split: {run, split, n, accuracy, by_template: {template: [accuracy, n]}}

It reads the statements the run was trained on (the run's `per_scene` option, if any) from the world of the
run's profile and scores the run's model on every item; nothing is trained.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from vilbert_lite.data.world import make_world
from vilbert_lite.tasks.common import evaluate_batches
from vilbert_lite.viz import tasks as tv

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for run in map(Path, a.runs):
        cfg = json.loads((run / "run_config.json").read_text())
        if cfg.get("task") != "nlvr":
            raise SystemExit(f"{run}: not an nlvr fine-tuning run (task {cfg.get('task')!r})")
        world = make_world(cfg["profile"], seed=cfg["data"].get("world_seed", 0))
        per_scene = cfg["data"].get("options", {}).get("per_scene", 1)
        model, data = tv.load_task_model(run, world, "cpu")
        for split, items in (("train", data.train), ("val", data.val), ("test", data.test)):
            records = world.nlvr(split, per_scene)
            step = lambda m, b: (m(b).argmax(1) == b["label"]).cpu()  # noqa: E731
            right = torch.cat(evaluate_batches(model, items, data.collate, step, 32)).tolist()
            by = defaultdict(list)
            for r, ok in zip(records, right, strict=True):
                by[r.extra["template"]].append(ok)
            print(json.dumps({"run": run.name, "init": cfg["init"], "split": split, "n": len(right),
                              "accuracy": round(sum(right) / len(right), 4),
                              "by_template": {k: [round(sum(v) / len(v), 3), len(v)] for k, v in sorted(by.items())}}),
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
