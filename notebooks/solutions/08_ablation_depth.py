"""Solutions to the exercises of notebook 08 (Table 2: how many co-attention layers?).

    python 08_ablation_depth.py                  # the committed per-seed results (reports/); exercise 4 trains
    python 08_ablation_depth.py --profile smoke  # exercise 4 at the smoke size (seconds)
    python 08_ablation_depth.py --results runs   # the table trained at --profile (hours at cpu the first time)

Each exercise is one function; each prints lines starting "exercise N:".
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter

import pandas as pd

from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.vilbert import ViLBertModel
from vilbert_lite.pretrain.run import pretrain
from vilbert_lite.profiles import get_profile
from vilbert_lite.repro import experiments, paper, reports

TABLE = "table2"
PARTS = {
    "encoder.layer.": "text layers",
    "encoder.v_layer.": "visual layers",
    "encoder.c_layer.": "co-attention",
}


def table_rows(profile: str, results: str = "reports") -> pd.DataFrame:
    """Table 2's long rows: results="reports": the committed per-seed numbers (the cpu profile's, seconds); "runs":
    the table trained now at `profile` (finished runs reused)."""
    seeds = list(range(get_profile(profile).seeds))
    return experiments.table_results(TABLE, profile, seeds, results=results, workers=2, progress=False)


def exercise_1(profile: str) -> pd.DataFrame:
    """Parameters per part of the model at each depth (models built, nothing trained)."""
    base = ViLBertConfig.preset(get_profile(profile).model_preset)
    out = {}
    for depth, kw in experiments.table_cells(TABLE, profile):
        model = ViLBertModel(base.replace(**kw["config_overrides"]))
        count = Counter()
        for name, p in model.named_parameters():
            count[
                next(
                    (part for prefix, part in PARTS.items() if name.startswith(prefix)), "embeddings, pooler"
                )
            ] += p.numel()
        out[depth] = {**count, "total": model.num_parameters()}
    table = pd.DataFrame(out).T.fillna(0).astype(int)
    for depth, row in table.iterrows():
        print(f"exercise 1: depth {depth}: " + ", ".join(f"{k} {v:,}" for k, v in row.items()))
    grown = (table.iloc[-1] - table.iloc[0]).drop("total")
    print(f"exercise 1: from depth {table.index[0]} to {table.index[-1]} the model grows by "
          f"{int(table['total'].iloc[-1] - table['total'].iloc[0]):,} parameters, all in "
          f"{', '.join(k for k, v in grown.items() if v > 0)}")  # fmt: skip
    return table


def exercise_2(long: pd.DataFrame, summary: pd.DataFrame) -> pd.Series:
    """Depths ranked by the mean over the paper's columns; which differences to the best are real."""
    cols = [c for c in paper.COLUMNS if c in set(long.column)]
    rank = summary[summary.column.isin(cols)].groupby("row")["mean"].mean().sort_values(ascending=False)
    print(
        "exercise 2: mean over the paper's columns: "
        + ", ".join(f"{d} layers {m:.2f} %" for d, m in rank.items())
    )
    best = rank.index[0]
    for other in rank.index[1:]:
        cmp = reports.compare(long, best, other, cols)
        better = list(cmp[cmp.verdict == "greater"].column)
        worse = list(cmp[cmp.verdict == "less"].column)
        print(f"exercise 2: {best} against {other} layers: clearly better on {better or 'none'}, clearly worse on "
              f"{worse or 'none'}")  # fmt: skip
    return rank


def exercise_3(summary: pd.DataFrame) -> pd.DataFrame:
    """Per task: how far the depths' means lie apart against the typical spread between seeds."""
    s = summary[summary.column.isin(paper.COLUMNS)]
    t = s.groupby("column").agg(spread=("mean", lambda m: m.max() - m.min()), noise=("std", "mean"))
    t["ratio"] = t.spread / t.noise
    t = t.sort_values("ratio", ascending=False)
    for col, r in t.iterrows():
        noise = "n/a (one seed)" if math.isnan(r.noise) else f"{r.noise:.2f} %"
        print(f"exercise 3: {col:15s} depths apart {r.spread:6.2f} %, seeds apart {noise}")
    print(f"exercise 3: depths more than twice as far apart as the seeds: "
          f"{list(t[t.ratio > 2].index) or 'none (or one seed)'}")  # fmt: skip
    return t


def exercise_4(profile: str, seed: int = 0) -> dict:
    """The deepest model pretrained 50% longer: does its held-out alignment catch up?"""
    prof = get_profile(profile)
    deepest = experiments.table_cells(TABLE, profile)[-1][1]["config_overrides"]
    longer = {"epochs": math.ceil(1.5 * prof.pretrain.epochs)}
    if prof.pretrain.max_steps:  # the smoke profile caps its steps: raise the cap alike
        longer["max_steps"] = math.ceil(1.5 * prof.pretrain.max_steps)
    out = {}
    for name, train in (("profile's epochs", None), (f"{longer['epochs']} epochs", longer)):
        run = pretrain(profile, seed, config_overrides=deepest, train_overrides=train, progress=False)
        scores = json.loads((run / "eval.json").read_text())
        out[name] = {k: v for k, v in scores.items() if isinstance(v, float) and "acc" in k}
        print(
            f"exercise 4: deepest model, {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in out[name].items())
        )
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    ap.add_argument("--results", default="reports", choices=["reports", "runs"],
                    help="reports: the committed per-seed numbers (seconds); runs: train the table at --profile")  # fmt: skip
    a = ap.parse_args(argv)
    long = table_rows(a.profile, a.results)
    summary = reports.summarize(long)
    exercise_1(a.profile)
    exercise_2(long, summary)
    exercise_3(summary)
    exercise_4(a.profile)


if __name__ == "__main__":  # the table's workers are spawned processes: they import this file
    main()
