"""Solutions to the exercises of notebook 07 (Table 1: pretraining, and two streams against one).

    python 07_baselines_table1.py                          # the committed per-seed results (reports/), seconds
    python 07_baselines_table1.py --results runs --profile smoke   # a table trained now, its csv read back

Each exercise is one function of the table's long rows; each prints lines starting "exercise N:".
"""

from __future__ import annotations

import argparse
import itertools

import pandas as pd

from vilbert_lite.profiles import get_profile
from vilbert_lite.repro import experiments, paper, reports

TABLE = "table1"


def table_rows(profile: str, results: str = "reports") -> pd.DataFrame:
    """Table 1's long rows: results="reports": the committed per-seed numbers (the cpu profile's, seconds);
    "runs": the table trained now at `profile`, its csv written to a temporary folder and read back as the notebook
    reads committed results (~4.4 h of training at cpu the first time; finished runs are reused)."""
    seeds = list(range(get_profile(profile).seeds))
    return experiments.table_results(TABLE, profile, seeds, results=results, workers=2, progress=False)


def exercise_1(summary: pd.DataFrame) -> pd.Series:
    """ViLBERT - ViLBERT† per column, in percent (means over seeds); the largest gain first."""
    m = summary.pivot(index="row", columns="column", values="mean")
    gain = (m.loc["vilbert"] - m.loc["vilbert†"]).dropna().sort_values(ascending=False)
    for column, g in gain.items():
        print(f"exercise 1: {column:15s} ViLBERT - ViLBERT† = {g:+6.2f} %")
    print(f"exercise 1: the largest gain from pretraining is on {gain.index[0]}")
    return gain


def exercise_2(long: pd.DataFrame) -> pd.DataFrame:
    """C1's comparison per column, sorted by how close its 95% interval comes to zero."""
    cols = [c for c in paper.COLUMNS if not c.startswith("zs_")]
    cmp = reports.compare(long, "vilbert", "vilbert†", cols)
    cmp["to_zero"] = cmp[["ci_low", "ci_high"]].abs().min(axis=1)
    cmp = cmp.sort_values("to_zero")
    for r in cmp.itertuples():
        print(f"exercise 2: {r.column:15s} {r.diff:+6.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] {r.verdict}")
    if len(cmp):
        r = cmp.iloc[0]
        print(f"exercise 2: closest to the line: {r.column}, its interval ends {r.to_zero:.2f} % from zero")
    return cmp


def exercise_3(long: pd.DataFrame) -> pd.DataFrame:
    """The claims from every subset of the seeds with one seed left out: which verdicts move?"""
    seeds = sorted(int(s) for s in long.seed.unique())
    chance = reports.chance_r1(long)
    full = reports.claims(t1=long, chance_r1=chance).set_index("claim").verdict
    if len(seeds) < 2:
        print(f"exercise 3: one seed ({seeds}): nothing to leave out; all seeds give {full.to_dict()}")
        return pd.DataFrame([full])
    out = {"all": full}
    for kept in itertools.combinations(seeds, len(seeds) - 1):
        part = long[long.seed.isin(kept)]
        out[f"seeds {list(kept)}"] = reports.claims(t1=part, chance_r1=chance).set_index("claim").verdict
    table = pd.DataFrame(out).T
    for name, row in table.iterrows():
        print(f"exercise 3: {name:14s} " + "  ".join(f"{c}={v}" for c, v in row.items()))
    moved = [c for c in table.columns if table[c].nunique() > 1]
    print(f"exercise 3: verdicts that depend on the seeds: {moved or 'none'}")
    return table


def exercise_4(summary: pd.DataFrame) -> dict:
    """The language prior: question-only VQA against ViLBERT† and ViLBERT."""
    vqa = summary[summary.column == "vqa_accuracy"].set_index("row")["mean"]
    out = {row: float(vqa[row]) for row in ("question_only", "vilbert†", "vilbert") if row in vqa}
    print("exercise 4: VQA accuracy " + ", ".join(f"{k} {v:.2f} %" for k, v in out.items()))
    if {"question_only", "vilbert"} <= set(out):
        share = 100 * out["question_only"] / out["vilbert"]
        print(f"exercise 4: the questions alone reach {share:.0f} % of ViLBERT's accuracy; looking at the image "
              f"adds {out['vilbert'] - out['question_only']:+.2f} %")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    ap.add_argument("--results", default="reports", choices=["reports", "runs"],
                    help="reports: the committed per-seed numbers (seconds); runs: train the table at --profile")  # fmt: skip
    a = ap.parse_args(argv)
    long = table_rows(a.profile, a.results)
    summary = reports.summarize(long)
    exercise_1(summary)
    exercise_2(long)
    exercise_3(long)
    exercise_4(summary)


if __name__ == "__main__":  # the table's workers are spawned processes: they import this file
    main()
