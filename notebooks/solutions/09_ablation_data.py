"""Solutions to the exercises of notebook 09 (Table 3: more pretraining data).

    python 09_ablation_data.py                  # the committed per-seed results (reports/); exercise 3 trains
    python 09_ablation_data.py --profile smoke  # exercise 3 at the smoke size (seconds)
    python 09_ablation_data.py --results runs   # the table trained at --profile (hours at cpu the first time)

Each exercise is one function; each prints lines starting "exercise N:".
"""

from __future__ import annotations

import argparse

import pandas as pd

from vilbert_lite.profiles import get_profile
from vilbert_lite.repro import experiments, paper, reports

TABLE = "table3"


def table_rows(profile: str, results: str = "reports") -> pd.DataFrame:
    """Table 3's long rows: results="reports": the committed per-seed numbers (the cpu profile's, seconds); "runs":
    the table trained now at `profile` (finished runs reused)."""
    seeds = list(range(get_profile(profile).seeds))
    return experiments.table_results(TABLE, profile, seeds, results=results, workers=2, progress=False)


def exercise_1(long: pd.DataFrame) -> pd.DataFrame:
    """Each step of the corpus (25% -> 50%, 50% -> 100%) per column: is it larger than the spread between seeds?"""
    cols = [c for c in paper.COLUMNS if c in set(long.column)]
    steps = pd.concat([reports.compare(long, 0.5, 0.25, cols), reports.compare(long, 1.0, 0.5, cols)])
    for r in steps.itertuples():
        print(f"exercise 1: {r.b:.0%} -> {r.a:.0%} {r.column:15s} {r.diff:+7.2f} % [{r.ci_low:+.2f}, "
              f"{r.ci_high:+.2f}] {r.verdict}")  # fmt: skip
    for (a, b), g in steps.groupby(["a", "b"]):
        print(
            f"exercise 1: {b:.0%} -> {a:.0%} is a real improvement on {list(g[g.verdict == 'greater'].column)}"
        )
    return steps


def exercise_2(summary: pd.DataFrame) -> pd.DataFrame:
    """Gain per added quarter of the corpus: 25% -> 50% against 50% -> 100%."""
    m = summary[summary.column.isin(paper.COLUMNS)].pivot(index="row", columns="column", values="mean")
    t = pd.DataFrame(
        {"25->50": m.loc[0.5] - m.loc[0.25], "50->100 per quarter": (m.loc[1.0] - m.loc[0.5]) / 2}
    )
    t["still rising"] = t["50->100 per quarter"] > t["25->50"]
    for col, r in t.iterrows():
        print(f"exercise 2: {col:15s} per quarter of the corpus: 25->50 {r['25->50']:+6.2f} %, 50->100 "
              f"{r['50->100 per quarter']:+6.2f} %")  # fmt: skip
    print(f"exercise 2: rising faster at the end (not saturated): {list(t[t['still rising']].index)}")
    return t


def exercise_3(long: pd.DataFrame, profile: str) -> pd.DataFrame:
    """A 10% row, trained at `profile`, placed between 0% and 25%."""
    seeds = list(range(get_profile(profile).seeds))
    rows = [r for s in seeds for r in experiments.run_cell(TABLE, 0.1, profile, s, fraction=0.1,
                                                           tasks=experiments.ABLATION_TASKS)]  # fmt: skip
    ten = reports.summarize(pd.DataFrame(rows)).set_index("column")["mean"]
    m = reports.summarize(long).pivot(index="row", columns="column", values="mean")
    for col, v in ten.items():
        if col in paper.COLUMNS:
            print(
                f"exercise 3: {col:15s} 0% {m.loc[0.0, col]:6.2f}  10% {v:6.2f}  25% {m.loc[0.25, col]:6.2f} %"
            )
    print(f"exercise 3: the 10% row is trained at profile {profile}, the other rows are the table's as read (the "
          "committed ones are the cpu profile's): compare them at the same profile")  # fmt: skip
    return ten


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    ap.add_argument("--results", default="reports", choices=["reports", "runs"],
                    help="reports: the committed per-seed numbers (seconds); runs: train the table at --profile")  # fmt: skip
    a = ap.parse_args(argv)
    long = table_rows(a.profile, a.results)
    exercise_1(long)
    exercise_2(reports.summarize(long))
    exercise_3(long, a.profile)


if __name__ == "__main__":
    main()
