"""Solutions to the exercises of notebook 11b · ViLT's experiments (1 takes seconds, 2 about a minute at cpu,
3 one pretraining run: ~30 min at cpu, seconds at smoke).

    python solutions/11b_vilt_experiments.py [--profile cpu]
"""

from __future__ import annotations

import argparse
import json

from vilbert_lite.bench.vilt import running_time, running_time_table
from vilbert_lite.repro import vilt_table
from vilbert_lite.repro.reports import diff_interval
from vilbert_lite.vilt.pretrain import pretrain_vilt


def exercise_1(profile: str) -> None:
    """patch - region per column over the committed seeds, with the 95% Welch interval."""
    long = vilt_table.table_results(profile, [0, 1, 2], results="reports")
    for col in sorted(set(long.column)):
        a = long[(long.row == "patch (ViLT)") & (long.column == col)].value.to_numpy()
        b = long[(long.row == "region (ViLBERT)") & (long.column == col)].value.to_numpy()
        d, lo, hi = diff_interval(a, b)
        verdict = "excludes zero" if lo > 0 or hi < 0 else "includes zero"
        print(f"exercise 1: {col:13s} patch - region {d:+6.2f} [{lo:+.2f}, {hi:+.2f}] percent: {verdict}")


def exercise_2(profile: str) -> None:
    """The bench at two model sizes: which stage shrinks."""
    size, repeats = (64, 1) if profile == "smoke" else (384, 3)
    presets = ("tiny", "mini") if profile == "smoke" else ("tiny", "base")
    for preset in presets:
        t = running_time_table(
            running_time(preset=preset, device="cpu", repeats=repeats, warmup=1, image_size=size)
        )
        for row, r in t.iterrows():
            cols = {c: r[c] for c in t.columns if "ms" in str(c)}
            print(f"exercise 2: {preset:5s} {row}: " + ", ".join(f"{c} {v:.1f}" for c, v in cols.items()))
    print("exercise 2: the transformer shrinks with the preset; the region row's proposals and CNN do not")


def exercise_3(profile: str, seed: int = 0) -> None:
    """Word-patch alignment off: the held-out alignment accuracy against the default run's."""
    for name, weights in (("default", None), ("wpa off", {"wpa": 0.0})):
        run = pretrain_vilt(profile, seed, weights=weights, progress=False)
        ev = json.loads((run / "eval.json").read_text())
        print(f"exercise 3: {name:8s} held-out alignment accuracy {100 * ev['alignment_acc']:.1f} percent")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    a = ap.parse_args()
    exercise_1(a.profile)
    exercise_2(a.profile)
    exercise_3(a.profile)


if __name__ == "__main__":
    main()
