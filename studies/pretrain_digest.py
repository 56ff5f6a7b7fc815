"""Does another checkout train the same pretraining? The first steps of one, digested, to compare two checkouts.

    .venv/bin/python studies/pretrain_digest.py /tmp/new --profile cpu --seed 1 --steps 30 > /tmp/new.txt
    PYTHONPATH=/path/to/other/checkout .venv/bin/python studies/pretrain_digest.py /tmp/old ... > /tmp/old.txt
    diff <(sed 1d /tmp/old.txt) <(sed 1d /tmp/new.txt)      # line 1 names the package each one imported

Pretrains the profile's ViLBERT (its world, recipe, seed) for `--steps` updates on one torch thread into OUT (a
fresh folder; the feature store comes from the cache as usual), then prints the package it imported, the run's
folder name (its key), a sha256 prefix of the final weights and every logged loss. Runs on checkouts from before
the package was split into folders too (`vilbert_lite.pretrain` was then a module). Identical output on one
machine means the code trains the same run; another machine may still differ (see `vilbert_lite.device.layout`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

import vilbert_lite

try:
    from vilbert_lite.pretrain.run import pretrain
except ImportError:  # an older checkout: one module
    from vilbert_lite.pretrain import pretrain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="a fresh folder for the run")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    a = ap.parse_args()
    torch.set_num_threads(1)
    run = Path(pretrain(a.profile, a.seed, out=a.out, progress=False,
                        train_overrides={"max_steps": a.steps, "log_every": 5}))  # fmt: skip
    print("package", Path(vilbert_lite.__file__).parent)
    print("run", run.name)
    for f in sorted(run.rglob("*.safetensors")):
        print(f.relative_to(run), hashlib.sha256(f.read_bytes()).hexdigest()[:16])
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        print({k: row[k] for k in ("step", "loss", "mlm", "region", "align", "grad_norm") if k in row})


if __name__ == "__main__":
    main()
