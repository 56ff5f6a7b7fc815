"""ViLT's accuracy columns (notebook 11): the region, grid and patch models pretrained on the same captions with
the same budget, then fine-tuned on the same tasks with the same budgets, for several seeds.

    long = run_table("cpu", seeds=[0, 1, 2], workers=2)   # long rows {row, seed, column, value, chance, ...}
    summary = summarize(long)                             # mean, std, n, 95% interval per (row, column)
    plot_accuracy_vs_time(summary, running_time_result)   # each column's mean against ms per pair

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
from vilbert_lite.pretrain.run import pretrain
from vilbert_lite.repro.experiments import COLUMN_OF, prepare_data
from vilbert_lite.repro.reports import summarize
from vilbert_lite.repro.runner import run_jobs
from vilbert_lite.runs import runs_root
from vilbert_lite.tasks import finetune
from vilbert_lite.vilt.pretrain import pretrain_vilt

ROWS = {"region (ViLBERT)": "vilbert", "grid (ViLT transformer)": "vilt_grid", "patch (ViLT)": "vilt"}
TASKS = ("vqa", "retrieval", "nlvr", "zeroshot")
TIME_ROW = {"vilbert": "region", "vilt_grid": "grid", "vilt": "patch"}  # rows of bench.vilt.running_time
# the rows by what one (row, seed) cell costs at `cpu`, longest first, so that workers finish together: patch
# 1,129 ms per pretraining step, grid 976 (reports/DESIGN_LOG.md, ViLT's recipe), ViLBERT 648 (one thread, bench/pretrain_step.json)
COST_ORDER = ("patch (ViLT)", "grid (ViLT transformer)", "region (ViLBERT)")
__all__ = ["ROWS", "TASKS", "run_cell", "run_table", "summarize", "plot_accuracy_vs_time"]


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
                chance = m.get(f"chance_{metric}", m.get("chance"))
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
