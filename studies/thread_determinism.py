"""Does a fixed seed give the same run on a CPU whatever the number of torch threads?

    .venv/bin/python studies/thread_determinism.py                  # cpu profile, 60 steps, threads 1 1 2 2
    .venv/bin/python studies/thread_determinism.py --steps 200 --threads 1 2
    .venv/bin/python studies/thread_determinism.py --rerun runs/finetune/vqa-XXXX --threads 1

Pretrains the profile's ViLBERT (its world, recipe and seed) for `--steps` updates once per entry of
`--threads`, each in a fresh folder under `--root`, and prints each run's training loss at the end and the
largest absolute difference between its final weights and the first run's. Runs with the same thread count
should agree bit for bit; a different count sums floating-point products in another order, and after many
steps that is another draw of the same recipe (why a run folder trained in one layout, e.g. two workers of one
thread, can differ from the same folder trained in another). Writes reports/bench/thread_determinism.json.

`--rerun FOLDER` trains a finished fine-tuning run folder again from its run_config.json (task, init, profile,
seed, training settings) in a scratch folder, once per thread count, and compares the test metrics and the
config hash with the folder's own metrics.json (rows added under "reruns").
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from vilbert_lite.pretrain.run import load_pretrained, pretrain
from vilbert_lite.runs import load_done
from vilbert_lite.tasks import finetune

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 1, 2, 2])
    ap.add_argument("--root", default=str(ROOT / "runs" / "thread_determinism"))
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench" / "thread_determinism.json"))
    ap.add_argument("--rerun", help="a finished fine-tuning run folder to train again and compare")
    a = ap.parse_args()
    if a.rerun:
        return rerun(a)
    rows, first = [], None
    for i, n in enumerate(a.threads):
        torch.set_num_threads(n)
        out = Path(a.root) / f"run{i}-threads{n}"
        shutil.rmtree(out, ignore_errors=True)
        run = pretrain(a.profile, a.seed, out=out, progress=False, resume=False,
                       train_overrides={"max_steps": a.steps, "log_every": 10})  # fmt: skip
        done = load_done(run)
        weights = load_pretrained(run).state_dict()
        first = first or weights
        diff = max((weights[k].float() - first[k].float()).abs().max().item() for k in first)
        row = {"run": i, "threads": n, "steps": done["steps"], "last_logged_loss": done["last_log"]["loss"],
               "max_abs_weight_diff_vs_run0": diff}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    dest = Path(a.out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps({"what": "the same seeded pretraining at different torch thread counts",
                                "command": "studies/thread_determinism.py " + " ".join(sys.argv[1:]),
                                "profile": a.profile, "seed": a.seed, "torch": torch.__version__,
                                "rows": rows}, indent=1) + "\n")  # fmt: skip
    print("wrote", dest)


def rerun(a) -> None:
    folder = Path(a.rerun)
    rc = json.loads((folder / "run_config.json").read_text())
    old = json.loads((folder / "metrics.json").read_text())
    if rc.get("kind") != "finetune" or rc["data"].get("kind") != "synthetic":
        raise SystemExit(f"{folder}: --rerun takes a synthetic-world fine-tuning run folder")
    dest = Path(a.out)
    doc = json.loads(dest.read_text()) if dest.exists() else {}
    for n in a.threads:
        torch.set_num_threads(n)
        out = Path(a.root) / f"rerun-{folder.name}-threads{n}"
        shutil.rmtree(out, ignore_errors=True)
        m = finetune(rc["task"], rc["init"], rc["profile"], rc["seed"], out=out, backbone=rc["backbone"],
                     train_overrides=rc["train"], world_seed=rc["data"]["world_seed"], progress=False,
                     resume=False)  # fmt: skip
        keys = [k for k, v in old.items() if isinstance(v, float) and k != "wall_time_s"]
        row = {"folder": str(folder), "threads": n, "same_config_hash": m["config_hash"] == old["config_hash"],
               "stored": {k: old[k] for k in keys}, "rerun": {k: m.get(k) for k in keys},
               "command": "studies/thread_determinism.py " + " ".join(sys.argv[1:])}  # fmt: skip
        print(json.dumps(row), flush=True)
        doc.setdefault("reruns", []).append(row)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(doc, indent=1) + "\n")
    print("wrote", dest)


if __name__ == "__main__":
    main()
