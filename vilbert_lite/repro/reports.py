"""Tables, statistics and claims for the reproduction notebooks (07-09), computed from run results.

Results come in "long" form: one row per (row, seed, column, value), where `row` is a table row (e.g.
"vilbert†", 4 co-attention layers, 25% of the corpus), `column` a metric of `paper.COLUMNS` and `value` a
percentage. Everything here is computed from those rows: nothing is typed in by hand.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from vilbert_lite.repro import paper
from vilbert_lite.repro.experiments import run_seconds
from vilbert_lite.repro.paper import COLUMNS

RETRIEVAL = ["r@1", "r@5", "r@10", "zs_r@1", "zs_r@5", "zs_r@10"]
UNDERSTANDING = ["vqa_accuracy", "q2a", "qa2r", "q2ar", "refer_accuracy"]


def t_quantile(n: int, level: float = 0.95) -> float:
    """Two-sided Student-t quantile for n samples (n-1 degrees of freedom)."""
    if n < 2:
        return math.nan
    from scipy.stats import t  # heavy: only an interval needs scipy

    return float(t.ppf(0.5 + level / 2, n - 1))


def summarize(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof=1), n and the 95% t-interval per (row, column)."""
    g = long.groupby(["row", "column"], sort=False)["value"]
    s = g.agg(mean="mean", std="std", n="count").reset_index()
    half = s.apply(
        lambda r: t_quantile(int(r.n)) * r["std"] / math.sqrt(r.n) if r.n > 1 else math.nan, axis=1
    )
    s["ci_low"], s["ci_high"] = s["mean"] - half, s["mean"] + half
    return s


def diff_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Welch interval for mean(a) - mean(b): (difference, low, high)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a.mean() - b.mean()
    if len(a) < 2 or len(b) < 2:
        return d, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return d, d, d
    dof = (va + vb) ** 2 / ((va**2) / (len(a) - 1) + (vb**2) / (len(b) - 1))
    from scipy.stats import t  # heavy: only an interval needs scipy

    q = float(t.ppf(0.5 + level / 2, dof))
    return d, d - q * se, d + q * se


def compare(long: pd.DataFrame, row_a, row_b, columns: list[str]) -> pd.DataFrame:
    """Per column: is `row_a` greater / less than / tied with `row_b` (95% Welch interval of the difference)?"""
    out = []
    for col in columns:
        a = long[(long.row == row_a) & (long.column == col)].value.to_numpy()
        b = long[(long.row == row_b) & (long.column == col)].value.to_numpy()
        if len(a) == 0 or len(b) == 0:
            continue
        d, lo, hi = diff_interval(a, b)
        verdict = "greater" if lo > 0 else "less" if hi < 0 else "tie"
        out.append(dict(column=col, a=row_a, b=row_b, diff=d, ci_low=lo, ci_high=hi, verdict=verdict))
    return pd.DataFrame(out)


def _all_greater(cmp: pd.DataFrame) -> str:
    if cmp.empty:
        return "inconclusive"
    if (cmp.verdict == "greater").all():
        return "held"
    if (cmp.verdict == "less").any():
        return "not held"
    return "inconclusive"


def claims(t1: pd.DataFrame | None = None, t2: pd.DataFrame | None = None, t3: pd.DataFrame | None = None,
           chance_r1: float | None = None) -> pd.DataFrame:  # fmt: skip
    """The paper's claims C1-C5, each marked held / not held / inconclusive from the intervals.

    t1 rows: "single_stream†", "single_stream", "vilbert†", "vilbert"; t2 rows: co-attention depths (ints);
    t3 rows: corpus fractions (floats); chance_r1: R@1 of a random ranking, in percent (100 / pool size).
    """
    rows = []

    def add(cid, claim, verdict, evidence):
        rows.append(dict(claim=cid, statement=claim, verdict=verdict, evidence=evidence))

    if t1 is not None:
        cols = [c for c in COLUMNS if not c.startswith("zs_")]
        cmp = compare(t1, "vilbert", "vilbert†", cols)
        add("C1", "pretraining helps: ViLBERT > ViLBERT† on every task", _all_greater(cmp), _evidence(cmp))
        zs_pre = t1[(t1.row == "vilbert") & (t1.column == "zs_r@1")].value.to_numpy()
        zs_none = t1[(t1.row == "vilbert†") & (t1.column == "zs_r@1")].value.to_numpy()
        if len(zs_pre) and len(zs_none) and chance_r1 is not None:
            s_pre, s_none = _interval(zs_pre), _interval(zs_none)
            at_chance = s_none[1] <= 2 * chance_r1  # its interval's upper end within 2x chance
            far_above = s_pre[0] >= 3 * chance_r1  # pretrained interval's lower end at least 3x chance
            verdict = (
                "held"
                if at_chance and far_above
                else "not held"
                if (s_pre[1] < 3 * chance_r1)
                else "inconclusive"
            )
            add("C2", "zero-shot retrieval needs pretraining: ViLBERT† at chance, ViLBERT far above", verdict,
                f"chance R@1 {chance_r1:.2f}; ViLBERT† {_fmt(zs_none)}; ViLBERT {_fmt(zs_pre)}")  # fmt: skip
        shared = [c for c in UNDERSTANDING if c in set(t1[t1.row == "single_stream"].column)]
        cmp = compare(t1, "vilbert", "single_stream", shared)
        add("C3", "two streams beat one: ViLBERT > single-stream, both pretrained", _all_greater(cmp),
            _evidence(cmp))  # fmt: skip
    if t3 is not None:
        lo, hi = min(t3.row), max(t3.row)
        cmp = compare(t3, hi, lo, [c for c in COLUMNS if c in set(t3.column)])
        add("C4", f"more pretraining data helps: {hi:.0%} > {lo:.0%} of the corpus on every task",
            _all_greater(cmp), _evidence(cmp))  # fmt: skip
    if t2 is not None:
        lo, hi = min(t2.row), max(t2.row)
        ret = compare(t2, hi, lo, [c for c in ("r@1", "zs_r@1") if c in set(t2.column)])
        sat = compare(
            t2,
            hi,
            sorted(set(t2.row))[len(set(t2.row)) // 2],
            [c for c in UNDERSTANDING if c in set(t2.column)],
        )
        ret_v = _all_greater(ret)
        sat_v = (
            "held"
            if not sat.empty and (sat.verdict == "tie").all()
            else "not held"
            if not sat.empty
            else "inconclusive"
        )
        verdict = (
            "held"
            if ret_v == sat_v == "held"
            else "not held"
            if "not held" in (ret_v, sat_v)
            else "inconclusive"
        )
        add("C5", f"depth: retrieval improves from {lo} to {hi} co-attention layers; VQA/VCR/referring saturate",
            verdict, f"retrieval: {_evidence(ret)}; saturation (vs middle depth): {_evidence(sat)}")  # fmt: skip
    return pd.DataFrame(rows)


def _interval(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, float)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    h = t_quantile(len(x)) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - h), float(x.mean() + h)


def _fmt(x: np.ndarray) -> str:
    lo, hi = _interval(x)
    return f"{np.mean(x):.2f} [{lo:.2f}, {hi:.2f}]"


def _evidence(cmp: pd.DataFrame) -> str:
    if cmp.empty:
        return "no data"
    return "; ".join(
        f"{r.column} {r.diff:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]" for r in cmp.itertuples()
    )


def side_by_side(summary: pd.DataFrame, paper: dict) -> pd.DataFrame:
    """A wide table: for each row, `ours` as "mean ± std" and the paper's number, per column."""
    out = []
    for row in dict.fromkeys(summary.row):
        rec = {"row": row}
        for col in COLUMNS:
            s = summary[(summary.row == row) & (summary.column == col)]
            if len(s):
                m, sd = s["mean"].iloc[0], s["std"].iloc[0]
                rec[f"{col} ours"] = f"{m:.2f} ± {sd:.2f}" if not math.isnan(sd) else f"{m:.2f}"
            p = paper.get(row, {}).get(col)
            if len(s) or p is not None:
                rec[f"{col} paper"] = "-" if p is None else f"{p:.2f}"
        out.append(rec)
    return pd.DataFrame(out).set_index("row").fillna("-")  # a column another row has, absent from this one


def reports_dir_for(
    profile: str, reports_dir: str | Path | None = None, base: str | Path = "../reports"
) -> Path:
    """Where a notebook writes its tables and figures: `reports_dir` when given, else `base` (the committed
    results) at `cpu` and `base/<profile>` at `smoke` and `gpu`, so no other profile overwrites the committed
    ones (`base` is relative to notebooks/, where the notebooks run)."""
    if reports_dir is not None:
        return Path(reports_dir)
    return Path(base) if profile == "cpu" else Path(base) / profile


def save_table(df: pd.DataFrame, path_stem: str | Path) -> None:
    """Write `stem.csv` and `stem.md`."""
    p = Path(path_stem)
    p.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(p.with_suffix(".csv"))
    p.with_suffix(".md").write_text(markdown(df))


def markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (index included), without extra dependencies."""
    d = df.reset_index() if df.index.name or not isinstance(df.index, pd.RangeIndex) else df
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(map(str, d.columns)) + " |", "|" + "---|" * len(d.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in d.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def plot_bars(summary: pd.DataFrame, columns: list[str] | None = None, title: str = "", save=None):
    """Grouped bars (one group per metric, one bar per row) with 95% interval error bars."""
    import matplotlib.pyplot as plt  # matplotlib loads only when a figure is drawn

    cols = [c for c in (columns or COLUMNS) if c in set(summary.column)]
    rows = list(dict.fromkeys(summary.row))
    fig, ax = plt.subplots(figsize=(min(14, max(6, 0.3 * len(cols) * max(1, len(rows)))), 3.8))
    w = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        s = summary[summary.row == row].set_index("column").reindex(cols)
        err = (s["ci_high"] - s["mean"]).fillna(0).to_numpy()
        ax.bar(np.arange(len(cols)) + i * w, s["mean"], w, yerr=err, capsize=2, label=str(row))
    ax.set_xticks(np.arange(len(cols)) + w * (len(rows) - 1) / 2, cols, rotation=30, ha="right")
    ax.set_ylabel("score (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=min(4, len(rows)))
    fig.tight_layout()
    if save:
        fig.savefig(save, dpi=110)
    return fig


def plot_trend(summary: pd.DataFrame, columns: list[str] | None = None, xlabel: str = "", title: str = "",
               save=None):  # fmt: skip
    """Score against a numeric row key (corpus fraction, depth), one line per metric, 95% bands."""
    import matplotlib.pyplot as plt  # matplotlib loads only when a figure is drawn

    cols = [c for c in (columns or COLUMNS) if c in set(summary.column)]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for col in cols:
        s = summary[summary.column == col].sort_values("row")
        ax.errorbar(
            s.row, s["mean"], yerr=(s["ci_high"] - s["mean"]).fillna(0), marker="o", capsize=3, label=col
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("score (%)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    if save:
        fig.savefig(save, dpi=110)
    return fig


# ------------------------------------------------------------------------------------------- the summary
TABLE_TITLES = {
    "table1": "Table 1 · task-specific baselines (single-stream vs ViLBERT, with and without pretraining)",
    "table2": "Table 2 · depth: number of co-attention layers",
    "table3": "Table 3 · pretraining data: share of the corpus",
}


def read_long(path: str | Path) -> pd.DataFrame:
    """A table's long rows as written by `experiments.run_table(csv=...)`; numeric row keys (depths, corpus
    fractions) come back as numbers."""
    df = pd.read_csv(path)
    numeric = pd.to_numeric(df["row"], errors="coerce")
    if numeric.notna().all():
        df["row"] = numeric
    return df


def chance_r1(long: pd.DataFrame) -> float | None:
    """Chance R@1 in percent (100 / pool) recorded with the zero-shot rows, if any."""
    if "chance" not in long:
        return None
    c = long[long.column == "zs_r@1"].chance.dropna()
    return float(c.mean()) if len(c) else None


def all_claims(tables_dir: str | Path) -> pd.DataFrame:
    """Claims C1-C5 from whichever of table1/2/3_long.csv exist in `tables_dir`."""
    d = Path(tables_dir)
    t = {k: read_long(d / f"{k}_long.csv") if (d / f"{k}_long.csv").exists() else None for k in TABLE_TITLES}
    return claims(t["table1"], t["table2"], t["table3"],
                  chance_r1=chance_r1(t["table1"]) if t["table1"] is not None else None)  # fmt: skip


def compute_line(long: pd.DataFrame, runs_root: str | Path | None = None, seconds: dict | None = None) -> str:
    """One line: the training wall time of the distinct runs behind a table (`experiments.run_seconds`, or its
    result in `seconds`)."""
    t = seconds if seconds is not None else run_seconds(long, runs_root)
    line = (f"compute: {t['n_pretrain']} pretraining runs, {t['pretrain_s'] / 60:.1f} min; {t['n_finetune']} "
            f"fine-tuning runs, {t['finetune_s'] / 60:.1f} min (training wall time of each run folder, summed; "
            "runs shared with another table are counted in each)")  # fmt: skip
    if t["missing"]:
        line += f"; {len(t['missing'])} run folder(s) not on this machine"
    return line


def table_compute_line(long: pd.DataFrame, cache: Path, runs_root: str | Path | None = None) -> str:
    """The compute line of a table whose run folders may be gone (a fresh checkout keeps the committed tables,
    not `runs/`): computed and stored in `cache` when every run folder is here, else the stored line, else the
    partial sum with the count of missing folders."""
    t = run_seconds(long, runs_root)
    if not t["missing"]:
        line = compute_line(long, seconds=t)
        cache.write_text(line + "\n")
        return line
    return cache.read_text().strip() if cache.exists() else compute_line(long, seconds=t)


def write_summary(reports_dir: str | Path, profile: str, command: str | None = None,
                  runs_root: str | Path | None = None) -> Path:  # fmt: skip
    """reports/README.md: every table (ours mean ± std next to the paper), the claims, the figures, what the
    runs behind each table cost, the 12-in-1 and ViLT tables when notebooks 10 and 11 have written them, and the
    command, date and machine that made them. Computed from the tables' files and run folders, nothing typed by hand."""
    r = Path(reports_dir)
    tables = r / "tables"
    lines = ["# Reproduction report", "",
             f"- command: `{command or f'make reproduce PROFILE={profile}'}`",
             f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}, "
             f"Python {platform.python_version()}",
             f"- profile: `{profile}` (the sizes are in `vilbert_lite/profiles.py`); every number below is the mean "
             "± std over seeds of runs in `runs/`, each cell's 95% interval is in `tables/*_summary.csv`",
             "- the paper's numbers are on the real datasets (VQA 2.0, VCR, RefCOCO+, Flickr30k) with a 250M-"
             "parameter model; ours are on the synthetic world at the profile's size: compare the *pattern* "
             "(which row wins), not the values", ""]  # fmt: skip
    for key, title in TABLE_TITLES.items():
        f = tables / f"{key}_long.csv"
        if not f.exists():
            lines += [f"## {title}", "", "not run yet", ""]
            continue
        long = read_long(f)
        summary = summarize(long)
        side = side_by_side(summary, paper.TABLES[key])
        lines += [f"## {title}", "", f"seeds per cell: {int(summary.n.min())}-{int(summary.n.max())}", "",
                  markdown(side), f"![{key}](figures/{key}.png)", ""]  # fmt: skip
        if {"init", "run"} <= set(long.columns):
            lines += [table_compute_line(long, tables / f"{key}_compute.txt", runs_root), ""]
    cl = all_claims(tables)
    if not cl.empty:
        lines += ["## The paper's claims", "", markdown(cl.set_index("claim")), ""]
    for stem, title in (("multitask", "12-in-1 · multi-task ablation (notebook 10)"),
                        ("multitask_claims", "12-in-1 · claims"),
                        ("vilt", "ViLT beside ViLBERT · accuracy at equal budgets (notebook 11)"),
                        ("easy_vqa", "Real data · easy-VQA, VQA accuracy (%) on its held-out test pictures, "
                                     "per answer type (notebook 12)")):  # fmt: skip
        f = tables / f"{stem}.md"
        if f.exists():  # written by notebooks 10 (repro.multitask_table.report), 11 and 12
            lines += [f"## {title}", "", f.read_text().rstrip(), ""]
    out = r / "README.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def report_table(long: pd.DataFrame, key: str, reports_dir: str | Path, title: str = ""):
    """Summarise one table's long rows and write its files under reports_dir: tables/KEY_summary.csv (mean, std,
    n, 95% interval), tables/KEY.csv/.md (ours next to the paper), figures/KEY.png -> (summary, side, figure).
    Table 3 is drawn as score against corpus fraction, the others as grouped bars."""
    r = Path(reports_dir)
    summary = summarize(long)
    (r / "tables").mkdir(parents=True, exist_ok=True)
    (r / "figures").mkdir(parents=True, exist_ok=True)
    summary.to_csv(r / "tables" / f"{key}_summary.csv", index=False)
    side = side_by_side(summary, paper.TABLES[key])
    save_table(side, r / "tables" / key)
    title = title or TABLE_TITLES[key]
    if key == "table3":
        fig = plot_trend(summary, xlabel="share of the pretraining corpus", title=title,
                         save=r / "figures" / f"{key}.png")  # fmt: skip
    else:
        fig = plot_bars(summary, title=title, save=r / "figures" / f"{key}.png")
    import matplotlib.pyplot as plt  # matplotlib loads only when a figure is drawn

    plt.close(fig)  # returned, not shown twice by the inline backend
    return summary, side, fig
