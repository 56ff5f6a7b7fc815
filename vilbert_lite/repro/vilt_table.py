"""ViLT's accuracy columns (notebook 11b): the region, grid and patch models pretrained on the same captions with
the same budget, then fine-tuned on the same tasks with the same budgets, for several seeds.

    long = run_table("cpu", seeds=[0, 1, 2], workers=2)   # long rows {row, seed, column, value, chance, ...}
    summary = summarize(long)                             # mean, std, n, 95% interval per (row, column)
    plot_accuracy_vs_time(summary, running_time_result)   # each column's mean against ms per pair

    # notebook 11b: the committed per-seed numbers (results="reports", nothing trained) or the runs ("runs")
    long = table_results("cpu", [0, 1, 2], results="reports", reports_dir="reports")
    summary, table = report(long, "reports")              # tables/vilt_summary.csv, tables/vilt.md
    runs = pretraining_runs("cpu", 0, results="reports")  # the three pretraining runs, or None if not here
    pretraining_table(runs, reports_dir="reports")        # their held-out numbers (tables/vilt_pretraining.csv)

Rows: "region (ViLBERT)" is `pretrain.run.pretrain` then `finetune(..., backbone="vilbert")`, the very calls of
Table 1's ViLBERT cell (`experiments.run_cell`), so those runs are shared, not repeated; "grid (ViLT
transformer)" and "patch (ViLT)" are `vilt.pretrain.pretrain_vilt` then `finetune(..., backbone="vilt_grid" /
"vilt")`. Columns (percent, `experiments.COLUMN_OF`): VQA accuracy, retrieval R@1, NLVR-style accuracy and
zero-shot R@1 (each model's own pretrained matching head, no fine-tuning). Every run is a folder keyed by its
config and reused when finished.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.pretrain.run import plan_pretrain, pretrain
from vilbert_lite.repro.experiments import COLUMN_OF, prepare_data, run_seconds
from vilbert_lite.repro.reports import compute_line, markdown, summarize
from vilbert_lite.repro.results import check_results, results_dir, shown, stored_rows, write_rows
from vilbert_lite.repro.runner import run_jobs
from vilbert_lite.runs import is_done, runs_root
from vilbert_lite.tasks import finetune
from vilbert_lite.tasks.common import chance_of
from vilbert_lite.vilt.pretrain import plan_pretrain_vilt, pretrain_vilt
from vilbert_lite.viz.pretrain import EVAL_ROWS
from vilbert_lite.viz.vilt import accuracy_table

ROWS = {"region (ViLBERT)": "vilbert", "grid (ViLT transformer)": "vilt_grid", "patch (ViLT)": "vilt"}
TASKS = ("vqa", "retrieval", "nlvr", "zeroshot")
TIME_ROW = {"vilbert": "region", "vilt_grid": "grid", "vilt": "patch"}  # rows of bench.vilt.running_time
# the rows by what one (row, seed) cell costs at `cpu`, longest first, so that workers finish together: patch
# 1,129 ms per pretraining step, grid 976 (reports/DESIGN_LOG.md, ViLT's recipe), ViLBERT 648 (one thread, bench/pretrain_step.json)
COST_ORDER = ("patch (ViLT)", "grid (ViLT transformer)", "region (ViLBERT)")
LONG_FILE = "vilt_long.csv"  # under <reports>/tables/: every (row, seed, column) number
PRETRAINING_FILE = (
    "vilt_pretraining.csv"  # under <reports>/tables/: the three pretraining runs' held-out numbers
)
COMPUTE_FILE = (
    "vilt_compute.txt"  # under <reports>/tables/: what the table's runs took (when they were all here)
)
CPU_MINUTES = 67  # notebook 11b's table at `cpu`, 2 workers (reports/RUN.md: 3,998 s, 3 pretrainings and 9
# fine-tunings trained, the region row's reused from Table 1)
__all__ = ["ROWS", "TASKS", "run_cell", "run_table", "summarize", "plot_accuracy_vs_time", "table_results",
           "report", "pretraining_runs", "pretraining_table"]  # fmt: skip


def run_cell(
    row: str, profile: str, seed: int, root: str | Path | None = None, progress: bool = False
) -> list[dict]:
    """Pretrain the row's model (or reuse the run) and fine-tune every task -> long rows."""
    if row not in ROWS:
        raise ValueError(f"unknown row {row!r}; choose one of {list(ROWS)}")
    kind, root = ROWS[row], Path(root) if root is not None else runs_root()
    if kind == "vilbert":
        init = pretrain(profile, seed, out=root, progress=progress)
        config = ViLBertConfig.from_json_file(init / "model" / "config.json")  # as experiments.run_cell
    else:
        init = pretrain_vilt(profile, seed, out=root, visual_embed="patch" if kind == "vilt" else "grid",
                             progress=progress)  # fmt: skip
        config = None  # the run's own ViLTConfig
    rows = []
    for task in TASKS:
        m = finetune(task, init, profile, seed, backbone=kind, config=config, root=root, progress=progress)
        for (t, metric), column in COLUMN_OF.items():
            if t == task and metric in m and metric in ("vqa_accuracy", "r@1", "nlvr_accuracy"):
                chance = chance_of(metric, m)
                rows.append(dict(row=row, seed=seed, column=column, value=100.0 * float(m[metric]),
                                 chance=math.nan if chance is None else 100.0 * float(chance),
                                 init=init.name, run=f"finetune/{task}-{m['config_hash']}"))  # fmt: skip
    return rows


def _job(args: tuple) -> list[dict]:
    torch.set_num_threads(1)
    return run_cell(*args)


def run_table(profile: str, seeds, *, workers: int = 1, root: str | Path | None = None,
              csv: str | Path | None = None, progress: bool = True,
              executor: Executor | None = None) -> pd.DataFrame:  # fmt: skip
    """Every row for every seed -> long DataFrame (row, seed, column, value, chance, init, run), in ROWS order;
    `workers` processes of one torch thread each, or `executor` (`runner.run_jobs`); with `csv` also written
    there."""
    root = str(Path(root) if root is not None else runs_root())
    prepare_data(profile)  # region feature stores extracted once, before the workers
    jobs = {(row, s): (row, profile, s, root) for row in COST_ORDER for s in seeds}  # longest cells first
    bar = tqdm(total=len(jobs), desc=f"ViLT columns ({profile})", disable=not progress)
    results = run_jobs(_job, jobs, workers=workers, executor=executor, progress=bar)
    bar.close()
    order = {row: i for i, row in enumerate(ROWS)}
    long = pd.DataFrame([r for rows in results.values() for r in rows]).sort_values(
        ["row", "seed", "column"], key=lambda c: c.map(order) if c.name == "row" else c
    )
    long = long.reset_index(drop=True)
    if csv is not None:
        Path(csv).parent.mkdir(parents=True, exist_ok=True)
        long.to_csv(csv, index=False)
    return long


# ----------------------------------------------------------------------------- committed results or runs
def table_results(profile: str, seeds, *, results: str = "reports", results_from: str | Path | None = None,
                  reports_dir: str | Path | None = None, workers: int = 1, root: str | Path | None = None,
                  progress: bool = True, executor: Executor | None = None) -> pd.DataFrame:  # fmt: skip
    """The table's long rows. results="runs": `run_table` (trains what is missing, reuses finished runs);
    "reports": the rows stored in `results_from`/tables/vilt_long.csv (None: the committed reports/), exactly
    as run_table returned them; nothing trains and no run folder is touched. Either way, with `reports_dir`,
    the rows go to its tables/vilt_long.csv (not rewritten when that is the file read)."""
    check_results(results)
    csv = Path(reports_dir) / "tables" / LONG_FILE if reports_dir is not None else None
    if results == "runs":
        return run_table(profile, seeds, workers=workers, root=root, csv=csv, progress=progress,
                         executor=executor)  # fmt: skip
    src = results_dir(results_from) / "tables" / LONG_FILE
    long = stored_rows(src, profile, seeds, f"~{CPU_MINUTES} min at cpu")
    write_rows(long, csv, src)
    return long


def _cell(r) -> str:
    interval = "" if np.isnan(r.ci_low) else f" [{r.ci_low:.1f}, {r.ci_high:.1f}]"
    return f"{r['mean']:.1f} ± {0 if np.isnan(r['std']) else r['std']:.1f}{interval}"


def compute(
    long: pd.DataFrame,
    runs_root: str | Path | None = None,
    results_from: str | Path | None = None,
    reports_dir: str | Path | None = None,
) -> str:
    """The table's compute line: from the run folders when they are all here (then also written to
    `reports_dir`/tables/vilt_compute.txt), else the stored one of `results_from` (its vilt_compute.txt, or the
    header of its vilt.md), else the partial sum with the count of missing folders."""
    t = run_seconds(long, runs_root)
    if not t["missing"]:
        line = compute_line(long, seconds=t)
        if reports_dir is not None:
            (Path(reports_dir) / "tables").mkdir(parents=True, exist_ok=True)
            (Path(reports_dir) / "tables" / COMPUTE_FILE).write_text(line + "\n")
        return line
    tables = results_dir(results_from) / "tables"
    if (tables / COMPUTE_FILE).exists():
        return (tables / COMPUTE_FILE).read_text().strip()
    if (tables / "vilt.md").exists():  # "seeds per cell: 3 (0, 1, 2); compute: ..."
        head = (tables / "vilt.md").read_text().splitlines()[0]
        if "; compute: " in head:
            return head[head.index("; compute: ") + 2 :]
    return compute_line(long, seconds=t)


def report(
    long: pd.DataFrame,
    reports_dir: str | Path | None = None,
    runs_root: str | Path | None = None,
    results_from: str | Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The accuracy table -> (summary: mean, std, n, 95% interval per (row, column); table: "mean ± std [95%
    interval]" per row and column, in ROWS order, and a last row of chance levels). With `reports_dir`, writes
    its tables/vilt_summary.csv and tables/vilt.md (seeds and the compute line above the table)."""
    summary = summarize(long)
    table = summary.assign(cell=summary.apply(_cell, axis=1)).pivot(
        index="row", columns="column", values="cell"
    )
    table = table.loc[[r for r in ROWS if r in table.index]]
    table.loc["chance"] = long.groupby("column")["chance"].mean().map("{:.1f}".format)
    if reports_dir is not None:
        r = Path(reports_dir) / "tables"
        r.mkdir(parents=True, exist_ok=True)
        (Path(reports_dir) / "figures").mkdir(exist_ok=True)  # for plot_accuracy_vs_time(save=...)
        summary.to_csv(r / "vilt_summary.csv", index=False)
        seeds = sorted(int(s) for s in long.seed.unique())
        header = (f"seeds per cell: {len(seeds)} ({', '.join(map(str, seeds))}); "
                  f"{compute(long, runs_root, results_from, reports_dir)}")  # fmt: skip
        (r / "vilt.md").write_text(header + "\n\n" + markdown(table))
    return summary, table


def pretraining_runs(profile: str, seed: int, *, results: str = "reports", root: str | Path | None = None,
                     progress: bool = False) -> dict[str, Path] | None:  # fmt: skip
    """The three pretraining runs of `seed` (region: notebook 04's ViLBERT run; grid and patch: `pretrain_vilt`)
    -> {row: run folder}. "runs": trained when missing, reused when finished; "reports": the finished folders
    when all three are under `root` (found by their config, nothing written), else None."""
    check_results(results)
    if results == "runs":
        return {"region (ViLBERT)": pretrain(profile, seed, out=root, progress=progress),
                "grid (ViLT transformer)": pretrain_vilt(profile, seed, out=root, visual_embed="grid",
                                                         progress=progress),
                "patch (ViLT)": pretrain_vilt(profile, seed, out=root, visual_embed="patch", progress=progress)}  # fmt: skip
    found = {"region (ViLBERT)": plan_pretrain(profile, seed, out=root)[0],
             "grid (ViLT transformer)": plan_pretrain_vilt(profile, seed, out=root, visual_embed="grid")[0],
             "patch (ViLT)": plan_pretrain_vilt(profile, seed, out=root, visual_embed="patch")[0]}  # fmt: skip
    return found if all(is_done(p) and (p / "eval.json").exists() for p in found.values()) else None


def needs_runs(what: str) -> str:
    """The line a results="reports" cell prints when what it shows needs run folders that are not here."""
    return f"{what} needs the pretraining runs: set results='runs' (~{CPU_MINUTES} min at cpu, the table's runs included)"


def pretraining_table(
    runs: dict | None, *, results_from: str | Path | None = None, reports_dir: str | Path | None = None
) -> pd.DataFrame | None:
    """The held-out numbers of the three pretraining runs side by side (`viz.vilt.accuracy_table`, accuracies in
    percent) -> DataFrame:
    from the runs when given (then also written to `reports_dir`/tables/vilt_pretraining.csv), else the stored
    table of `results_from` (None: the committed reports/), else None with one line saying what would show it."""
    if runs is not None:
        table = accuracy_table(runs)
        n = len(EVAL_ROWS)  # the held-out accuracies, in percent
        table.iloc[:n] = table.iloc[:n].map(lambda v: round(100 * float(v), 1))
        table.index = [f"{x} (%)" if i < n else x for i, x in enumerate(table.index)]
        table.index.name = "held-out (val captions)"
        if reports_dir is not None:
            (Path(reports_dir) / "tables").mkdir(parents=True, exist_ok=True)
            table.to_csv(Path(reports_dir) / "tables" / PRETRAINING_FILE)
        return table
    src = results_dir(results_from) / "tables" / PRETRAINING_FILE
    if not src.is_file():
        print(needs_runs(f"the pretraining table ({shown(src)} is not there either)"))
        return None
    print(f"{shown(src)}: stored results, nothing trained")
    table = pd.read_csv(src, index_col=0, dtype=object)
    if (
        reports_dir is not None
        and (Path(reports_dir) / "tables" / PRETRAINING_FILE).resolve() != src.resolve()
    ):
        table.to_csv(Path(reports_dir) / "tables" / PRETRAINING_FILE)
    return table


def plot_accuracy_vs_time(summary: pd.DataFrame, timing: dict, long: pd.DataFrame | None = None, title: str = "",
                          save=None):  # fmt: skip
    """One panel per column: each row's mean (95% interval as error bars; with `long`, each seed as a small dot)
    against its milliseconds per image-text pair (`bench.vilt.running_time(...)["rows"][kind]["total_ms"]`, log
    scale, ticks at the rows' times); chance dashed."""
    from matplotlib.figure import Figure  # matplotlib loads only when a figure is drawn
    from matplotlib.ticker import FixedLocator, NullLocator, StrMethodFormatter

    columns = list(dict.fromkeys(summary["column"]))
    fig = Figure(figsize=(3.2 * len(columns), 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(columns)))
    times = sorted({timing["rows"][TIME_ROW[k]]["total_ms"] for k in ROWS.values()})
    for ax, col in zip(axes, columns):
        for i, (row, kind) in enumerate(ROWS.items()):
            s = summary[(summary["row"] == row) & (summary["column"] == col)]
            if s.empty:
                continue
            s = s.iloc[0]
            ms = timing["rows"][TIME_ROW[kind]]["total_ms"]
            err = None if np.isnan(s["ci_low"]) else [[s["mean"] - s["ci_low"]], [s["ci_high"] - s["mean"]]]
            ax.errorbar(
                [ms], [s["mean"]], yerr=err, fmt="o", color=f"C{i}", capsize=3, label=f"{row}, {ms:.0f} ms"
            )
            if long is not None:
                seeds = long[(long["row"] == row) & (long["column"] == col)]["value"]
                ax.plot([ms] * len(seeds), seeds, ".", color=f"C{i}", alpha=0.5, ms=4)
        if long is not None and long[long["column"] == col]["chance"].notna().any():
            ax.axhline(float(long[long["column"] == col]["chance"].mean()), color="0.6", ls="--", lw=1)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(times))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:.0f}"))
        ax.tick_params(axis="x", labelrotation=90)
        ax.set_xlim(min(times) / 1.15, max(times) * 1.15)
        ax.set(title=col, xlabel="ms per image-text pair (log)", ylabel="percent")
    axes[0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    if save:
        fig.savefig(save, dpi=110)
    return fig
