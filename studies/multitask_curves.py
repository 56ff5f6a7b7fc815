"""Multi-task run sizes from ViLBERT† single-task validation curves: how many train images per data set, at a
fixed number of iterations, the `cpu` 12-in-1 table should use.

    .venv/bin/python studies/multitask_curves.py --images 48 150 300 600       # 150 iterations, 100 val images
    .venv/bin/python studies/multitask_curves.py --images 48 300 --iterations 150 --tasks vqa nlvr2

For every candidate number of train images and every data set, a single-task model (the same round-robin loop
with one data set, `multitask(tasks=(t,))`) is trained from no pretraining (ViLBERT†: the rule, budgets
are chosen on ViLBERT† curves, never on the pretrained model's) for `--iterations` iterations, its validation
score logged once per epoch of that data set (n_t iterations) and once more at the end (the saved model on the
whole val split). The candidate chosen is the smallest whose mean final validation score over the data sets is
within `--tol` of the best candidate's (the plateau rule of studies/finetune_curves.py): fewer images make shorter
epochs n_t, so Dynamic Stop-and-Go validates every data set more often within the same iterations. Wall times
are recorded too; a multi-task run costs about the sum of its data sets' single-task runs.
Results go to reports/multitask_curves/<profile>.json. Runs go to a scratch folder (--root), not runs/.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.multitask.data import DATASETS
from vilbert_lite.multitask.train import (
    METRIC,
    SIZES,
    build_model,
    evaluate_task,
    load_data,
    multitask,
    resolve_device,
)

ROOT = Path(__file__).resolve().parents[1]


def one(job: dict) -> dict:
    """One single-task ViLBERT† run and its final validation score (in a worker: one torch thread)."""
    torch.set_num_threads(1)

    over = {
        "train_images": job["images"],
        "val_images": job["val_images"],
        "iterations": job["iterations"],
        "ckpt_every": 0,
    }
    t0 = time.perf_counter()
    m = multitask(job["profile"], job["seed"], (job["task"],), init="none", root=job["root"],
                  size_overrides=over, progress=False)  # fmt: skip
    wall = time.perf_counter() - t0
    data, _ = load_data(job["profile"], replace(SIZES[job["profile"]], **over), progress=False)
    task = data[job["task"]]
    folder = Path(m["out_dir"]) / "model"
    config = ViLBertConfig.from_dict(json.loads((folder / "config.json").read_text()))
    model = build_model(config, {task.group}, len(data["vqa"].extra["answer_mask"]), m["out_dir"])
    model.eval()
    batch = m["batch_sizes"][job["task"]]
    final = evaluate_task(model, task, "val", batch, None, resolve_device("auto"))[METRIC[task.group]]
    curve = [{"iter": e["iter"], "val": round(e["score"], 4)} for e in m["evals"]]
    return {
        **job,
        "group": DATASETS[job["task"]][0],
        "n_train": len(task.train),
        "batch": batch,
        "n_t": m["n_iter"][job["task"]],
        "curve": curve,
        "final_val": round(final, 4),
        "seconds": m["wall_time_s"],
        "this_call_s": round(wall, 1),
    }  # seconds: the run's own training time; this_call_s: this call (short when reused)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--images", type=int, nargs="+", default=[48, 150, 300, 600], help="train images candidates"
    )
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument(
        "--val-images", type=int, default=100, help="val images of every data set (of 200 at cpu)"
    )
    ap.add_argument("--tasks", nargs="*", default=list(DATASETS))
    ap.add_argument("--tol", type=float, default=0.01, help="plateau tolerance on the mean final val score")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--root", default="/tmp/vilbert_lite_mt_curves")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    for n in args.images:  # feature stores extracted once, before the workers
        load_data(args.profile, replace(SIZES[args.profile], train_images=n, val_images=args.val_images))
    jobs = [{"profile": args.profile, "seed": args.seed, "task": t, "images": n, "iterations": args.iterations,
             "val_images": args.val_images, "root": args.root} for n in args.images for t in args.tasks]  # fmt: skip
    t0 = time.perf_counter()
    if args.workers <= 1:  # in this process (one torch thread per run, as in the workers)
        threads = torch.get_num_threads()
        rows = [one(job) for job in jobs]
        torch.set_num_threads(threads)
    else:
        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
            rows = list(pool.map(one, jobs))
    summary = {}
    for n in args.images:
        mine = [r for r in rows if r["images"] == n]
        summary[n] = {"mean_final_val": round(sum(r["final_val"] for r in mine) / len(mine), 4),
                      "seconds": round(sum(r["seconds"] for r in mine), 1),
                      "final_val": {r["task"]: r["final_val"] for r in mine}}  # fmt: skip
        print(f"train images {n:4d}: mean final val {summary[n]['mean_final_val']:.4f}  "
              f"({summary[n]['seconds']:.0f} s)  {summary[n]['final_val']}")  # fmt: skip
    best = max(v["mean_final_val"] for v in summary.values())
    chosen = min(n for n, v in summary.items() if v["mean_final_val"] >= best - args.tol)
    print(f"chosen: {chosen} train images")
    out = Path(args.out or ROOT / "reports" / "multitask_curves" / f"{args.profile}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"command": "studies/multitask_curves.py " + " ".join(sys.argv[1:]), "iterations": args.iterations,
              "val_images": args.val_images,
              "seed": args.seed, "workers": args.workers, "tol": args.tol, "chosen_train_images": chosen, "summary": summary,
              "runs": rows, "wall_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
