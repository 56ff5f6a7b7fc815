"""Fine-tuning budgets from ViLBERT† validation curves: how many epochs each task needs at the `cpu` profile.

    .venv/bin/python studies/finetune_curves.py                       # ViLBERT† (no pretraining), every task
    .venv/bin/python studies/finetune_curves.py --tasks vqa refer --epochs 12 --init runs/.../pretrain-XXXX
    .venv/bin/python studies/finetune_curves.py --tasks vcr --epochs 6 --threads 1 \
        --task-data '{"vcr": {"per_scene": 4, "style": "where"}}' --tag=-vcr_where [--blank-images] [--lr 2e-3]

Each task is fine-tuned with the profile's batch size and learning rate for `--epochs` epochs and no step cap,
its validation score (the first 256 val items, as every fine-tuning run logs) read after every epoch, with the
wall time (VCR: every metric; its plateau is read on Q→AR). The budget chosen for a task is the first epoch whose score is within `--tol` of the best score
of the curve (the curve's plateau). The rule: choose budgets on ViLBERT† curves, never on the pretrained
model's. `--blank-images` gives the text-only (question-only) model's curve. Results go to
reports/finetune_curves/<init>-<profile>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vilbert_lite.profiles import get_profile
from vilbert_lite.tasks import finetune

ROOT = Path(__file__).resolve().parents[1]

SCORE = {"vqa": "vqa_accuracy", "refer": "refer_accuracy", "nlvr": "nlvr_accuracy", "vcr": "q2ar",
         "retrieval": "four_way_accuracy"}  # fmt: skip


def curve(task: str, init: str | None, args) -> dict:
    t0 = time.perf_counter()
    profile = get_profile(args.profile)
    if args.task_data:  # e.g. '{"vcr": {"per_scene": 4, "style": "where"}}': replaces those tasks' options
        profile = get_profile(args.profile, task_data={**profile.task_data, **json.loads(args.task_data)})
    m = finetune(task, init, profile, args.seed, root=Path(args.out), progress=False,
                 train_overrides={"epochs": args.epochs, "max_steps": None, **({"lr": args.lr} if args.lr else {})},
                 blank_images=args.blank_images)  # fmt: skip
    key = SCORE[task]
    points = [
        {"epoch": h["epoch"], "step": h["step"], "val": round(h[f"eval_{key}"], 4),
         **{k[5:]: round(v, 4) for k, v in h.items() if k.startswith("eval_") and k != f"eval_{key}"}}
        for h in m["history"]
    ]  # fmt: skip
    best = max(p["val"] for p in points)
    budget = next(p["epoch"] for p in points if p["val"] >= best - args.tol)
    wall = m["wall_time_s"]

    task_data = profile.task_data.get(task)
    return {"task": task, **({"task_data": task_data} if task_data else {}), "epochs": args.epochs, "lr": args.lr or profile.finetune.lr,
            "threads": args.threads, "score": key, "curve": points, "best_val": best, "budget_epochs": budget,
            "seconds": wall, "seconds_per_epoch": round(wall / len(points), 2), "this_call_s":
            round(time.perf_counter() - t0, 1), "test": {k: v for k, v in m.items() if isinstance(v, float)}}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="*", default=list(SCORE))
    ap.add_argument("--init", default=None, help="a pretraining run folder (default: none, ViLBERT†)")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--tol", type=float, default=0.01, help="the plateau: within this of the best val score")
    ap.add_argument("--blank-images", action="store_true", help="text only: the question-only baseline")
    ap.add_argument(
        "--task-data", default=None, help="JSON {task: options} replacing the profile's task data"
    )
    ap.add_argument(
        "--lr", type=float, default=None, help="fine-tuning learning rate (default: the profile's)"
    )
    ap.add_argument("--tag", default="", help="appended to the result file's name")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "runs" / "curves"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    name = (
        ("vilbert_dagger" if a.init is None else Path(a.init).name)
        + ("-blank" if a.blank_images else "")
        + a.tag
    )
    dest = ROOT / "reports" / "finetune_curves" / f"{name}-{a.profile}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(dest.read_text())["tasks"] if dest.exists() else {}
    for task in a.tasks:
        r = curve(task, a.init, a)
        done[task] = r
        print(f"{task}: {r['score']} by epoch {[p['val'] for p in r['curve']]} -> budget {r['budget_epochs']} "
              f"epochs ({r['seconds_per_epoch']} s each)", flush=True)  # fmt: skip
        dest.write_text(json.dumps({"init": a.init or "none", "profile": a.profile, "seed": a.seed,
                                    "tol": a.tol, "tasks": done}, indent=1) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
