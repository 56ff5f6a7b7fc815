"""Solutions to the exercises of notebook 10 · 12-in-1 (1 and 2 take seconds; 3 trains two small runs).

python solutions/10_multitask.py [--profile cpu]
"""

from __future__ import annotations

import argparse

import numpy as np

from vilbert_lite.multitask import train as mt
from vilbert_lite.repro import multitask_table as table
from vilbert_lite.repro.reports import diff_interval, summarize

SCORES = (0.500, 0.520, 0.5204, 0.5203, 0.5210, 0.5195, 0.5170, 0.5190, 0.5190, 0.5190)  # section 3's


def exercise_1() -> None:
    """Algorithm 1 with a longer patience and a larger threshold: when does each stop, does it go again?"""
    for name, dsg in (("default", mt.StopAndGo()), ("patience=2", mt.StopAndGo(patience=2)),
                      ("threshold=1%", mt.StopAndGo(threshold=0.01))):  # fmt: skip
        states = []
        for score in SCORES:
            dsg.step(score)
            states.append(dsg.state)
        stops = [i for i, (a, b) in enumerate(zip(["go", *states], states)) if (a, b) == ("go", "stop")]
        goes = [i for i, (a, b) in enumerate(zip(["go", *states], states)) if (a, b) == ("stop", "go")]
        first = f"score {SCORES[stops[0]]:.4f} (evaluation {stops[0] + 1})" if stops else "never"
        print(f"exercise 1: {name:13s} stops at {first}; goes again at evaluation(s) {[i + 1 for i in goes]}")
    print(
        "exercise 1: a longer patience stops later; a larger threshold counts small gains as stalls and stops sooner"
    )


def exercise_2(profile: str) -> None:
    """Per data set: token + DSG - single-task over the committed seeds, with the 95% Welch interval."""
    long = table.table_results(profile, [0, 1, 2], results="reports")
    for t in mt.DATASETS:
        a = long[(long.row == "token + DSG") & (long.column == t)].value.to_numpy()
        b = long[(long.row == "single-task") & (long.column == t)].value.to_numpy()
        d, lo, hi = diff_interval(a, b)
        verdict = "helps" if lo > 0 else "hurts" if hi < 0 else "unresolved"
        print(
            f"exercise 2: {t:9s} token + DSG - single-task {d:+6.2f} [{lo:+.2f}, {hi:+.2f}] percent: {verdict}"
        )


def exercise_3(profile: str, seed: int = 0) -> None:
    """VQA + GQA with and without task tokens: G1 against the spread of G1 over the committed seeds."""
    g1 = {}
    for tokens in ("none", "dataset"):
        init = None if profile == "smoke" else "auto"  # smoke: from scratch, a quick check of the code path
        m = mt.multitask(profile, seed, tasks=("vqa", "gqa"), tokens=tokens, init=init, progress=False)
        g1[tokens] = 100 * m["groups"]["G1"]
        print(f"exercise 3: tokens={tokens!r:10s} G1 {g1[tokens]:.2f} percent")
    s = summarize(table.table_results(profile, [seed], results="reports"))
    std = float(np.nanmean(s[s.column == "G1"]["std"]))
    print(
        f"exercise 3: difference {g1['dataset'] - g1['none']:+.2f} points; the table's G1 std over seeds is "
        f"{std:.2f}: one seed per setting cannot resolve less than that"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    a = ap.parse_args()
    exercise_1()
    exercise_2(a.profile)
    exercise_3(a.profile)


if __name__ == "__main__":
    main()
