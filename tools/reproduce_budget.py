"""What `make reproduce` at a profile costs, projected from measured run times (an estimate, not a timing).

    .venv/bin/python tools/reproduce_budget.py [--seeds 3] [--workers 2]   # -> reports/bench/reproduce_budget.json

Every (pretraining, fine-tuning) job that Tables 1-3 need for `--seeds` seeds is listed the way
`experiments.run_table` runs it: identical cells once, a pretraining shared by every cell that needs it (ViLBERT
at full depth and corpus is one run in all three tables, ViLBERT† is Table 3's 0 % row). Each job's seconds:

- pretraining: the measured wall time of one `cpu` pretraining (`reports/grounding/cpu.json`), times the corpus
  fraction; other depths and the single-stream model are counted at the same cost per step (an approximation:
  they differ by their visual layers);
- fine-tuning: the task's budget (`Profile.finetune_budgets`) times its measured seconds per epoch on the
  ViLBERT† curve (`reports/finetune_curves/vilbert_dagger-cpu.json`); zero-shot retrieval has no training
  (its evaluation is counted at 15 s).

Seconds are two-thread seconds on an otherwise idle machine; `--workers` processes of one thread each run at
`--thread-efficiency` of that speed each (0.73 measured here, reports/DESIGN_LOG.md section 5). Notebooks
01-06 are not counted (notebook 04 adds a text-only pretraining).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ZEROSHOT_S = 15.0


def jobs(profile: str, seeds: int) -> tuple[dict, dict]:
    """-> (pretraining jobs {key: fraction}, fine-tuning jobs {key: task}) over every table and seed."""
    from vilbert_lite.repro import experiments

    pre, fine = {}, {}
    for seed in range(seeds):
        for table in experiments.TABLE_NAMES:
            for _row, kw in experiments.table_cells(table, profile):
                kind = kw.get("model_kind", "vilbert")
                overrides = json.dumps(kw.get("config_overrides") or {}, sort_keys=True)
                if overrides == json.dumps(experiments.depth_overrides(profile)[6], sort_keys=True):
                    overrides = "{}"  # the full-depth row is the default model: the same run
                fraction = kw.get("fraction", 1.0) if kw.get("pretrained", True) else 0.0
                init = (kind, overrides, fraction, seed) if fraction > 0 else None
                if init:
                    pre[init] = fraction
                for task in kw.get("tasks", experiments.TASKS):
                    if task == "zeroshot" and init is None and kind != "vilbert":
                        continue
                    fine[(task, init, kind, overrides, kw.get("blank_images", False), seed)] = task
    return pre, fine


def main() -> None:
    from vilbert_lite.profiles import get_profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--thread-efficiency", type=float, default=0.73)
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench" / "reproduce_budget.json"))
    a = ap.parse_args()
    prof = get_profile(a.profile)
    pre_s = json.loads((ROOT / "reports" / "grounding" / "cpu.json").read_text())["eval"]["train_wall_time_s"]
    curves = json.loads((ROOT / "reports" / "finetune_curves" / "vilbert_dagger-cpu.json").read_text())[
        "tasks"
    ]
    pre, fine = jobs(a.profile, a.seeds)
    per_task = {}
    for task in fine.values():
        if task == "zeroshot":
            per_task[task] = ZEROSHOT_S
        else:
            per_task[task] = prof.finetune_budgets[task]["epochs"] * curves[task]["seconds_per_epoch"]
    pretrain_total = sum(pre_s * f for f in pre.values())
    finetune_total = sum(per_task[t] for t in fine.values())
    total = pretrain_total + finetune_total
    wall = total / (a.workers * a.thread_efficiency) if a.workers > 1 else total
    out = {
        "what": "projected compute of Tables 1-3 at the profile (estimate from measured run times, see the tool)",
        "command": "tools/reproduce_budget.py " + " ".join(sys.argv[1:]),
        "profile": a.profile, "seeds": a.seeds, "workers": a.workers, "thread_efficiency": a.thread_efficiency,
        "pretraining_s_per_run": pre_s, "finetune_s_per_run": {k: round(v, 1) for k, v in sorted(per_task.items())},
        "pretraining_runs": len(pre), "pretraining_run_equivalents": round(sum(pre.values()), 2),
        "finetuning_runs": len(fine), "pretraining_h": round(pretrain_total / 3600, 2),
        "finetuning_h": round(finetune_total / 3600, 2), "two_thread_h": round(total / 3600, 2),
        "projected_wall_h": round(wall / 3600, 2),
    }  # fmt: skip
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
