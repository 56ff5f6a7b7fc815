"""Does bf16 autocast make `cpu` fine-tuning cheaper, and does it change what the run learns?

    .venv/bin/python studies/finetune_amp.py                        # ViLBERT† (no pretraining), vqa and refer
    .venv/bin/python studies/finetune_amp.py --tasks vqa --init runs/pretrain-XXXX --seed 1

Each task is fine-tuned twice with the profile's budget, the same seed and the same data: `amp="off"` (float32,
what every table run does on a CPU) and `amp="bf16"` (bf16 autocast, `TrainConfig.amp`). Reported per run: the
training wall time, the samples/s the engine logged (mean over its log windows), the validation score after
every epoch and the test metrics. Run it on a quiet machine: the times are wall-clock. Results go to
reports/bench/finetune_amp.json (rows of one task are replaced, others kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch
from finetune_curves import SCORE  # each task's validation score, as its budget curve reads it (studies/)

from vilbert_lite.tasks import finetune

ROOT = Path(__file__).resolve().parents[1]


def one_run(task: str, amp: str, args) -> dict:
    init = "none" if args.init is None else Path(args.init).name
    folder = Path(args.root) / f"{task}-{init}-seed{args.seed}-{amp}"
    m = finetune(task, args.init, args.profile, args.seed, out=folder, progress=False, resume=False,
                 train_overrides={"amp": amp})  # fmt: skip
    sps = []
    if (folder / "metrics.jsonl").exists():
        for line in (folder / "metrics.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row.get("kind") == "train" and "samples_per_s" in row:
                sps.append(row["samples_per_s"])
    key = SCORE[task]
    return {"task": task, "amp": amp, "wall_time_s": m["wall_time_s"],
            "samples_per_s": round(sum(sps) / len(sps), 1) if sps else None,
            "val_by_epoch": [round(h[f"eval_{key}"], 4) for h in m["history"]],
            "test": {k: round(v, 4) for k, v in m.items() if isinstance(v, float) and k != "wall_time_s"}}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="*", default=["vqa", "refer"], choices=list(SCORE))
    ap.add_argument("--init", default=None, help="a pretraining run folder (default: none, ViLBERT†)")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--root", default=str(ROOT / "runs" / "amp_bench"))
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench" / "finetune_amp.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dest = Path(a.out)
    old = json.loads(dest.read_text())["rows"] if dest.exists() else []
    rows = [r for r in old if r["task"] not in a.tasks]
    for task in a.tasks:
        for amp in ("off", "bf16"):
            r = one_run(task, amp, a)
            rows.append(r)
            print(json.dumps(r), flush=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({
        "what": "cpu fine-tuning with and without bf16 autocast: same task, seed, data and budget",
        "command": "studies/finetune_amp.py " + " ".join(sys.argv[1:]), "init": a.init or "none",
        "profile": a.profile, "seed": a.seed, "threads": a.threads, "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": rows}, indent=1) + "\n")  # fmt: skip
    print("wrote", dest)


if __name__ == "__main__":
    main()
