"""The 12-in-1 ablation table as runs (notebook 10): rows of `multitask` runs, statistics, verdicts.

    long = run_table("cpu", seeds=[0, 1, 2], workers=2)  # long rows {table, row, seed, column, value, chance}
    summary, side, claims = report(long, "reports", run)  # tables/multitask*.csv|md, figures/multitask*.png

    # notebook 10: the committed per-seed numbers (results="reports", nothing trained) or the runs ("runs")
    long = table_results("cpu", [0, 1, 2], results="reports", reports_dir="reports")
    run = dsg_run("cpu", 0, results="reports")  # the token + DSG run's log, or None when it was never written

Rows: single-task (one model per data set), vanilla multi-task, + task token, + DSG, token + DSG (the paper's
model), one token per head (with DSG), curriculum and anti-curriculum (the fastest / slowest converging group
of the single-task runs trains alone first, `convergence_order`), and MT + finetune (each data set fine-tuned
from the token + DSG model). Columns: every data set's headline score, the groups G1-G4 (the mean of their
data sets) and the all-task average, in percent; plus `parameters` (one model, or the sum over the
per-data-set models). Every run is a folder keyed by its config, reused when finished; the pretraining runs
are those of notebooks 04-09 (`pretrain(profile, seed)`).
"""

from __future__ import annotations

import json
import math
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from vilbert_lite.multitask.data import DATASETS, GROUPS
from vilbert_lite.multitask.train import SIZES, StopAndGo, load_data, multitask
from vilbert_lite.pretrain.run import pretrain
from vilbert_lite.repro import paper
from vilbert_lite.repro.reports import diff_interval, plot_bars, save_table, summarize
from vilbert_lite.repro.results import check_results, results_dir, shown, stored_rows, write_rows
from vilbert_lite.repro.runner import run_jobs
from vilbert_lite.runs import runs_root, write_json

TABLE = "multitask"
MT_ROWS = {  # row -> multitask() keyword arguments
    "vanilla": {},
    "+ task token": {"tokens": "dataset"},
    "+ DSG": {"dsg": True},
    "token + DSG": {"tokens": "dataset", "dsg": True},
    "token per head": {"tokens": "head", "dsg": True},
}
ROWS = ("single-task", *MT_ROWS, "curriculum", "anti-curriculum", "MT + finetune")
COLUMNS = (*GROUPS, "average")
LONG_FILE = f"{TABLE}_long.csv"  # under <reports>/tables/: every (row, seed, column) number
DSG_FILE = f"{TABLE}_dsg.json"  # under <reports>/tables/: the token + DSG run's DSG log (evals, updates)
DSG_KEYS = ("profile", "seed", "tasks", "iterations", "updates", "evals")
CPU_MINUTES = 49  # the whole table at `cpu` from a fresh clone, 2 workers (reports/RUN.md: 2,929 s)


# --------------------------------------------------------------------------------------------------- runs
def converged_at(evals: list[dict], iterations: int) -> int:
    """The iteration at which Algorithm 1's Converged() first holds for a run's validation scores (official
    thresholds, replayed through StopAndGo); iterations + 1 when it never does."""
    dsg = StopAndGo()
    return next((e["iter"] for e in evals if dsg.step(e["score"])), iterations + 1)


def convergence_order(single: list[dict]) -> list[str]:
    """Groups from the fastest to the slowest converging, by the mean `converged_at` of their data sets'
    single-task runs (any seeds); ties keep the group order."""
    speed = {g: [] for g in GROUPS}
    for m in single:
        speed[DATASETS[m["tasks"][0]][0]].append(converged_at(m["evals"], m["iterations"]))
    return sorted((g for g in GROUPS if speed[g]), key=lambda g: np.mean(speed[g]))


def _job(kw: dict) -> dict:
    """One multitask run in a worker process (one torch thread)."""
    torch.set_num_threads(1)
    return multitask(**kw, progress=False)


def _device(device: str | None, overrides: dict | None = None) -> dict:
    """multitask()'s train_overrides with the training device: "auto" / None keep the engine's default (CUDA
    when present) and so the run keys of the committed table; another device is part of each run's key."""
    return {**(overrides or {}), **({} if device in (None, "auto") else {"device": device})}


def run_table(profile: str, seeds, *, workers: int = 1, root: str | Path | None = None,
              csv: str | Path | None = None, progress: bool = True, executor: Executor | None = None,
              device: str | None = None) -> pd.DataFrame:  # fmt: skip
    """Every row of the ablation for every seed -> long DataFrame (see the module docstring); with `csv` also
    written there; runs in `workers` processes or on `executor` (`runner.run_jobs`), on `device` (None /
    "auto": the engine's choice). Phase 1: single-task and the multi-task rows; phase 2: curriculum rows (their
    group order comes from phase 1's single-task runs) and MT + finetune (from phase 1's token + DSG runs)."""
    root = str(Path(root) if root is not None else runs_root())
    load_data(profile, SIZES[profile], progress=progress)  # feature stores extracted once, before the workers
    init = {s: str(pretrain(profile, s, out=root, progress=progress)) for s in seeds}  # reused when finished
    dev = _device(device)
    base = {s: dict(profile=profile, seed=s, init=init[s], root=root) | ({"train_overrides": dev} if dev else {})
            for s in seeds}  # fmt: skip
    jobs = {("single-task", s, t): {**base[s], "tasks": (t,)} for s in seeds for t in DATASETS}
    jobs |= {(row, s, None): {**base[s], **kw} for s in seeds for row, kw in MT_ROWS.items()}
    bar = tqdm(
        total=len(jobs) + len(seeds) * (2 + len(DATASETS)), desc=f"12-in-1 ({profile})", disable=not progress
    )
    results = run_jobs(_job, jobs, workers=workers, executor=executor, progress=bar)
    order = convergence_order([m for (row, _, _), m in results.items() if row == "single-task"])
    first = {"curriculum": order[0], "anti-curriculum": order[-1]}  # easiest / hardest group first
    later = {(row, s, None): {**base[s], "curriculum": g} for s in seeds for row, g in first.items()}
    later |= {("MT + finetune", s, t): {**base[s], "tasks": (t,), "tokens": "dataset",
                                        "init": results[("token + DSG", s, None)]["out_dir"],
                                        "train_overrides": _device(device, {"max_steps": SIZES[profile].finetune_iterations})}
              for s in seeds for t in DATASETS}  # fmt: skip
    results |= run_jobs(_job, later, workers=workers, executor=executor, progress=bar)
    bar.close()
    long = long_rows(results)
    if csv is not None:
        Path(csv).parent.mkdir(parents=True, exist_ok=True)
        long.to_csv(csv, index=False)
    return long


def long_rows(results: dict) -> pd.DataFrame:
    """{(row, seed, data set or None): metrics} -> long rows: every data set's headline, G1-G4 and the average
    (percent), and `parameters` (the sum over the models a row needs)."""
    per: dict[tuple, dict] = {}  # (row, seed) -> {"scores": {data set: (value, chance)}, "parameters": n}
    for (row, seed, _), m in results.items():
        cell = per.setdefault((row, seed), {"scores": {}, "parameters": 0})
        cell["scores"].update({t: (100 * v, 100 * m["chance"][t]) for t, v in m["headline"].items()})
        cell["parameters"] += m["parameters"]
    rows = []
    for (row, seed), cell in per.items():
        s = cell["scores"]
        rows += [dict(row=row, seed=seed, column=t, value=v, chance=c) for t, (v, c) in s.items()]
        for g in GROUPS:
            ts = [t for t in s if DATASETS[t][0] == g]
            rows.append(dict(row=row, seed=seed, column=g, value=np.mean([s[t][0] for t in ts]),
                             chance=np.mean([s[t][1] for t in ts])))  # fmt: skip
        rows.append(dict(row=row, seed=seed, column="average", value=np.mean([v for v, _ in s.values()]),
                         chance=np.mean([c for _, c in s.values()])))  # fmt: skip
        rows.append(
            dict(row=row, seed=seed, column="parameters", value=float(cell["parameters"]), chance=math.nan)
        )
    df = pd.DataFrame(rows)
    df.insert(0, "table", TABLE)
    order = {r: i for i, r in enumerate(ROWS)}
    return df.sort_values(
        ["row", "seed"], key=lambda c: c.map(order) if c.name == "row" else c, kind="stable"
    ).reset_index(drop=True)


# ----------------------------------------------------------------------------- committed results or runs
def table_results(profile: str, seeds, *, results: str = "reports", results_from: str | Path | None = None,
                  reports_dir: str | Path | None = None, workers: int = 1, root: str | Path | None = None,
                  device: str | None = None, progress: bool = True, executor: Executor | None = None,
                  ) -> pd.DataFrame:  # fmt: skip
    """The table's long rows. results="runs": `run_table` (trains what is missing, reuses finished runs, on
    `device`); "reports": the rows stored in `results_from`/tables/multitask_long.csv (None: the committed
    reports/), exactly as run_table returned them, so summaries and claims come out the same; nothing trains
    and no run folder is touched. Either way, with `reports_dir`, the rows go to its tables/multitask_long.csv
    (not rewritten when that is the file read)."""
    check_results(results)
    csv = Path(reports_dir) / "tables" / LONG_FILE if reports_dir is not None else None
    if results == "runs":
        return run_table(profile, seeds, workers=workers, root=root, csv=csv, progress=progress,
                         executor=executor, device=device)  # fmt: skip
    src = results_dir(results_from) / "tables" / LONG_FILE
    long = stored_rows(src, profile, seeds, f"~{CPU_MINUTES} min at cpu")
    write_rows(long, csv, src)
    return long


def dsg_run(
    profile: str,
    seed: int,
    *,
    results: str = "reports",
    results_from: str | Path | None = None,
    root: str | Path | None = None,
    device: str | None = None,
) -> dict | None:
    """The token + DSG run of `seed` as far as the DSG figure needs it ({profile, seed, tasks, iterations,
    updates, evals}). "runs": `multitask(...)` (reused when finished, trained otherwise); "reports":
    `results_from`/tables/multitask_dsg.json (written by `report` from a run), None when it is not there or is
    of another profile or seed (one line printed saying what would show it)."""
    check_results(results)
    if results == "runs":
        m = multitask(profile, seed, **MT_ROWS["token + DSG"], root=root, train_overrides=_device(device) or None,
                      progress=False)  # fmt: skip
        return {k: m[k] for k in DSG_KEYS}
    src = results_dir(results_from) / "tables" / DSG_FILE
    run = json.loads(src.read_text()) if src.exists() else None
    if run is None or (run["profile"], run["seed"]) != (profile, seed):
        print(
            f"no DSG log of the token + DSG run (profile {profile}, seed {seed}) in {shown(src)}: set "
            f"results='runs' to train it (~{CPU_MINUTES} min at cpu with the table) and draw it"
        )
        return None
    return run


# ------------------------------------------------------------------------------------------------ report
def side_by_side(summary: pd.DataFrame, long: pd.DataFrame) -> pd.DataFrame:
    """Per row: ours "mean ± std [95% interval]" and the paper's number for G1-G4 and the average; the models'
    parameters; a last row with the chance level of each column."""
    out = []
    for row in dict.fromkeys(summary.row):
        rec = {"row": row}
        for col in COLUMNS:
            s = summary[(summary.row == row) & (summary.column == col)].iloc[0]
            ci = f" [{s.ci_low:.1f}, {s.ci_high:.1f}]" if not math.isnan(s.ci_low) else ""
            rec[f"{col} ours"] = f"{s['mean']:.2f} ± {s['std']:.2f}{ci}" if s.n > 1 else f"{s['mean']:.2f}"
            p = paper.TWELVE_IN_ONE.get(row, {}).get(col)
            rec[f"{col} paper"] = "-" if p is None else f"{p:.2f}"
        n = summary[(summary.row == row) & (summary.column == "parameters")]["mean"].iloc[0]
        rec["parameters"] = f"{n / 1e6:.2f}M"
        out.append(rec)
    chance = long[long.column.isin(COLUMNS)].groupby("column").chance.mean()
    out.append({"row": "chance", **{f"{c} ours": f"{chance[c]:.2f}" for c in COLUMNS}})
    return pd.DataFrame(out).set_index("row").fillna("-")


CLAIMS = (  # (id, statement, [(a, b), ...]): "a >= b" on the all-task average, for every pair
    ("MT1", "multi-task >= single-task on average (token + DSG vs one model per data set)",
     [("token + DSG", "single-task")]),
    ("MT2", "token + DSG >= vanilla multi-task on average", [("token + DSG", "vanilla")]),
    ("MT3", "curriculum does not help: vanilla >= curriculum and vanilla >= anti-curriculum on average",
     [("vanilla", "curriculum"), ("vanilla", "anti-curriculum")]),
)  # fmt: skip


def claims(long: pd.DataFrame) -> pd.DataFrame:
    """The three 12-in-1 claims, each held (every comparison greater on a 95% Welch interval) / not held (one
    less) / inconclusive (ties), with our differences and the paper's."""
    rows = []
    for cid, statement, pairs in CLAIMS:
        verdicts, ours, theirs = [], [], []
        for a, b in pairs:
            va = long[(long.row == a) & (long.column == "average")].value.to_numpy()
            vb = long[(long.row == b) & (long.column == "average")].value.to_numpy()
            if not len(va) or not len(vb):
                verdicts.append("missing")
                continue
            d, lo, hi = diff_interval(va, vb)
            verdicts.append("greater" if lo > 0 else "less" if hi < 0 else "tie")
            ours.append(f"{a} - {b}: {d:+.2f} [{lo:+.2f}, {hi:+.2f}]")
            pa, pb = (paper.TWELVE_IN_ONE.get(r, {}).get("average") for r in (a, b))
            gain = paper.TWELVE_IN_ONE_GAIN_OVER_SINGLE_TASK if b == "single-task" else None
            theirs.append(f"{pa - pb:+.2f}" if pa is not None and pb is not None else
                          f"{gain:+.2f} (12 tasks, full model)" if gain is not None else "-")  # fmt: skip
        held = all(v == "greater" for v in verdicts)
        verdict = (
            "inconclusive"
            if "missing" in verdicts
            else "held"
            if held
            else "not held"
            if "less" in verdicts
            else "inconclusive"
        )
        rows.append(dict(claim=cid, statement=statement, verdict=verdict, ours="; ".join(ours),
                         paper="; ".join(theirs)))  # fmt: skip
    return pd.DataFrame(rows)


def plot_dsg(evals: list[dict], iterations: int, tasks=None, title: str = "Dynamic Stop-and-Go"):
    """Each data set's DSG state over the iterations (green go, red stop; dots: validations) above its
    validation score -> a matplotlib Figure. tasks: the run's data sets (default: those validated)."""
    from matplotlib.figure import Figure  # matplotlib loads only when a figure is drawn

    names = list(tasks or dict.fromkeys(e["task"] for e in evals))
    fig = Figure(figsize=(9, 1.2 + 0.75 * len(names)))
    ax, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [len(names), 4]})
    for y, t in enumerate(names):
        rows = [e for e in evals if e["task"] == t]
        edges = [0] + [e["iter"] for e in rows] + [iterations]
        states = ["go"] + [e["state"] for e in rows]  # the state holds from one validation to the next
        for x0, x1, s in zip(edges, edges[1:], states):
            ax.broken_barh(
                [(x0, x1 - x0)], (y - 0.35, 0.7), color="tab:green" if s == "go" else "tab:red", alpha=0.6
            )
        ax.plot([e["iter"] for e in rows], [y] * len(rows), "k.", ms=4)
        ax2.plot([e["iter"] for e in rows], [100 * e["score"] for e in rows], marker=".", label=t)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_title(f"{title} (green: go, red: stop; dots: validations)")
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("val score (%)")
    ax2.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    return fig


def report(long: pd.DataFrame, reports_dir: str | Path, run: dict | None = None):
    """Write tables/multitask_summary.csv (mean, std, n, 95% interval), tables/multitask.csv/.md (ours beside
    the paper), tables/multitask_claims.csv/.md, figures/multitask.png (bars with 95% intervals) and, given
    a run's metrics (`multitask(...)` or `dsg_run(...)`), figures/multitask_dsg.png and its DSG log
    tables/multitask_dsg.json (what `dsg_run(results="reports")` reads) -> (summary, side, claims)"""
    import matplotlib.pyplot as plt  # matplotlib loads only when a figure is drawn

    r = Path(reports_dir)
    (r / "tables").mkdir(parents=True, exist_ok=True)
    (r / "figures").mkdir(parents=True, exist_ok=True)
    summary = summarize(long)
    summary.to_csv(r / "tables" / f"{TABLE}_summary.csv", index=False)
    side = side_by_side(summary, long)
    save_table(side, r / "tables" / TABLE)
    cl = claims(long)
    save_table(cl.set_index("claim"), r / "tables" / f"{TABLE}_claims")
    fig = plot_bars(summary, list(COLUMNS), title="12-in-1 ablation: task groups and all-task average",
                    save=r / "figures" / f"{TABLE}.png", long=long)  # fmt: skip
    plt.close(fig)
    if run is not None:
        plot_dsg(run["evals"], run["iterations"], run["tasks"]).savefig(
            r / "figures" / f"{TABLE}_dsg.png", dpi=110
        )
        write_json(r / "tables" / DSG_FILE, {k: run[k] for k in DSG_KEYS})
    return summary, side, cl
