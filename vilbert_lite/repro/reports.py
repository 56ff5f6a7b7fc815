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


# ------------------------------------------------------------------------------------------- pairing
PAIRING_RULE = (
    "paired when both rows fine-tune the same model shape with the same seeds: `tasks.common.run_task` seeds "
    "every generator with the run's seed, builds the backbone (a pretrained one is built at random and then "
    "overwritten, so the random stream moves on as for a run from scratch) and then initialises the task heads, "
    "and `train.engine` orders each epoch's data by (seed, epoch); so two rows of one shape share their data "
    "order, head initialisation and every later random number, and differ only in the backbone weights they "
    "start from. A different shape (single-stream, another number of co-attention layers) consumes the random "
    "stream differently and starts its heads elsewhere: Welch"
)


SHAPES = {  # Table 1's rows -> the model they fine-tune (`experiments.table_cells`)
    "question_only": "vilbert", "vilbert†": "vilbert", "vilbert": "vilbert",
    "single_stream†": "single_stream", "single_stream": "single_stream",
}  # fmt: skip


def model_shape(row, table: str | None = None) -> str:
    """The shape of the model a row fine-tunes: Table 1's rows as SHAPES says, Table 2's depths one shape each,
    Table 3's corpus shares all ViLBERT at the profile's size. `table` ("table1" / "table2" / "table3") when
    known, else read from the row key's type (an int is a depth, a float a corpus share). Any other row is a
    shape of its own (never paired)."""
    is_int = isinstance(row, (int, np.integer)) and not isinstance(row, bool)
    if table == "table2" or (table is None and is_int):
        return f"vilbert-{row}-co-attention-layers"
    if table == "table3" or (table is None and isinstance(row, (float, np.floating))):
        return "vilbert"
    return SHAPES.get(row, f"row {row!r}") if isinstance(row, str) else f"row {row!r}"


def _seeded(long: pd.DataFrame, row, column: str) -> pd.Series:
    """A row's values of one column, indexed by seed."""
    d = long[(long.row == row) & (long.column == column)]
    return d.set_index("seed")["value"].astype(float) if "seed" in d else d["value"].astype(float)


def paired(long: pd.DataFrame, row_a, row_b, column: str | None = None) -> bool:
    """Are `row_a` and `row_b` paired runs (compare them by per-seed differences)? Yes when both fine-tune the
    same model shape (`model_shape`) and have the same seeds, each once, at least two (in `column`, else in every
    column both have); see PAIRING_RULE for why the shape matters."""
    table = None
    if "table" in long:
        tables = set(long[long.row.isin([row_a, row_b])].table.dropna())
        table = tables.pop() if len(tables) == 1 else None
    if model_shape(row_a, table) != model_shape(row_b, table):
        return False
    cols = [column] if column is not None else sorted(
        set(long[long.row == row_a].column) & set(long[long.row == row_b].column)
    )  # fmt: skip
    if "seed" not in long:
        return False
    for col in cols:
        a, b = _seeded(long, row_a, col), _seeded(long, row_b, col)
        if len(a) < 2 or not a.index.is_unique or not b.index.is_unique or set(a.index) != set(b.index):
            return False
    return bool(cols)


def paired_interval(a, b, level: float = 0.95) -> tuple[float, float, float]:
    """Interval for mean(a - b) over paired samples (a[i] and b[i] share seed i): a Student-t interval on the
    per-seed differences, n-1 degrees of freedom -> (difference, low, high)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    m = float(d.mean())
    if len(d) < 2:
        return m, math.nan, math.nan
    se = float(d.std(ddof=1)) / math.sqrt(len(d))
    if se == 0:
        return m, m, m
    h = t_quantile(len(d), level) * se
    return m, m - h, m + h


def compare(long: pd.DataFrame, row_a, row_b, columns: list[str], pairing: str = "auto") -> pd.DataFrame:
    """Per column: is `row_a` greater / less than / tied with `row_b` (95% interval of the difference)?

    pairing "auto": the interval on per-seed differences when the rows are `paired`, else Welch; "paired" /
    "welch" force one (paired needs the same seeds in both rows). Column `test` says which was used."""
    if pairing not in ("auto", "paired", "welch"):
        raise ValueError(f"pairing must be 'auto', 'paired' or 'welch', got {pairing!r}")
    out = []
    for col in columns:
        a, b = _seeded(long, row_a, col), _seeded(long, row_b, col)
        if len(a) == 0 or len(b) == 0:
            continue
        use_pairs = pairing == "paired" or (pairing == "auto" and paired(long, row_a, row_b, col))
        if use_pairs:
            if set(a.index) != set(b.index) or not a.index.is_unique or not b.index.is_unique:
                raise ValueError(f"{col}: rows {row_a!r} and {row_b!r} do not have the same seeds")
            d, lo, hi = paired_interval(a.sort_index(), b.sort_index())
        else:
            d, lo, hi = diff_interval(a.to_numpy(), b.to_numpy())
        verdict = "greater" if lo > 0 else "less" if hi < 0 else "tie"
        out.append(dict(column=col, a=row_a, b=row_b, diff=d, ci_low=lo, ci_high=hi, verdict=verdict,
                        test="paired" if use_pairs else "Welch"))  # fmt: skip
    return pd.DataFrame(out)


def _all_greater(cmp: pd.DataFrame) -> str:
    if cmp.empty:
        return "inconclusive"
    if (cmp.verdict == "greater").all():
        return "held"
    if (cmp.verdict == "less").any():
        return "not held"
    return "inconclusive"


# -------------------------------------------------------------------------------------------- claims
TASK_LABELS = {
    "vqa_accuracy": "VQA", "q2a": "VCR Q→A", "qa2r": "VCR QA→R", "q2ar": "VCR Q→AR",
    "refer_accuracy": "RefCOCO+-style", "r@1": "retrieval R@1", "r@5": "retrieval R@5",
    "r@10": "retrieval R@10", "zs_r@1": "zero-shot R@1", "zs_r@5": "zero-shot R@5", "zs_r@10": "zero-shot R@10",
}  # fmt: skip
GREATER = {"greater": "held", "less": "not held", "tie": "inconclusive"}  # claim "a > b" on one task
SATURATES = {"tie": "held", "greater": "not held", "less": "not held"}  # claim "a = b" on one task


def claims(t1: pd.DataFrame | None = None, t2: pd.DataFrame | None = None, t3: pd.DataFrame | None = None,
           chance_r1: float | None = None) -> pd.DataFrame:  # fmt: skip
    """The paper's claims C1-C5, each marked held / not held / inconclusive from the intervals (all tasks).

    t1 rows: "single_stream†", "single_stream", "vilbert†", "vilbert"; t2 rows: co-attention depths (ints);
    t3 rows: corpus fractions (floats); chance_r1: R@1 of a random ranking, in percent (100 / pool size).
    Each comparison is paired or Welch as `paired` decides; the evidence says which. Per task: `claims_by_task`,
    `verdict_grid`."""
    return pd.DataFrame(
        _claim_records(t1, t2, t3, chance_r1)[0], columns=["claim", "statement", "verdict", "evidence"]
    )


def claims_by_task(t1: pd.DataFrame | None = None, t2: pd.DataFrame | None = None,
                   t3: pd.DataFrame | None = None, chance_r1: float | None = None) -> pd.DataFrame:  # fmt: skip
    """The claims of `claims`, one row per (claim, task): claim, column, task, verdict (held / not held /
    inconclusive on that task alone), diff, ci_low, ci_high (the 95% interval of the claim's difference on that
    task), test (paired / Welch), comparison (e.g. "vilbert − vilbert†") and cell (the text of `verdict_grid`).
    C2 (zero-shot) reads its two intervals against chance, as in `claims`."""
    cols = ["claim", "column", "task", "verdict", "diff", "ci_low", "ci_high", "test", "comparison", "cell"]
    return pd.DataFrame(_claim_records(t1, t2, t3, chance_r1)[1], columns=cols)


def verdict_grid(t1: pd.DataFrame | None = None, t2: pd.DataFrame | None = None, t3: pd.DataFrame | None = None,
                 chance_r1: float | None = None) -> pd.DataFrame:  # fmt: skip
    """Claims as rows, tasks as columns: "all tasks" (the verdict of `claims`), then each task's verdict with
    its difference and 95% interval (e.g. "held +4.47 [+1.52, +7.43]"; "-" where the claim does not test the
    task), then the comparison and its test (paired / Welch)."""
    rows, cells = _claim_records(t1, t2, t3, chance_r1)
    if not rows:
        return pd.DataFrame(columns=["all tasks", "comparison"]).rename_axis("claim")
    by = pd.DataFrame(cells, columns=["claim", "column", "task", "cell", "comparison", "test"])
    tasks = [TASK_LABELS.get(c, c) for c in dict.fromkeys([*COLUMNS, *by.column]) if c in set(by.column)]
    out = pd.DataFrame({"all tasks": {r["claim"]: r["verdict"] for r in rows}}).rename_axis("claim")
    out = out.join(by.pivot(index="claim", columns="task", values="cell").reindex(columns=tasks))
    compared: dict[str, dict] = {}  # claim -> its comparisons, in order, each once
    for r in by.itertuples():
        compared.setdefault(r.claim, {})[f"{r.comparison} ({r.test})"] = None
    out["comparison"] = [("; ".join(compared[c]) if c in compared else "-") for c in out.index]
    return out.fillna("-")


VERDICT_COLOURS = {"held": "#9fd8a8", "not held": "#f2a7a7", "inconclusive": "#e4e4e4"}


def plot_verdicts(t1: pd.DataFrame | None = None, t2: pd.DataFrame | None = None, t3: pd.DataFrame | None = None,
                  chance_r1: float | None = None, title: str = "", save=None):  # fmt: skip
    """`verdict_grid` as a figure that reads at a glance: a row per claim, its all-task verdict first, then a
    cell per task coloured by that task's verdict (green held, red not held, grey inconclusive, blank where the
    claim does not test the task) with the difference and its 95% interval -> matplotlib Figure."""
    import matplotlib.pyplot as plt  # matplotlib loads only when a figure is drawn
    from matplotlib.patches import Patch

    rows, cells = _claim_records(t1, t2, t3, chance_r1)
    by = {(c["claim"], c["task"]): c for c in cells}
    tasks = [TASK_LABELS.get(c, c) for c in dict.fromkeys([*COLUMNS, *(c["column"] for c in cells)])
             if any(x["column"] == c for x in cells)]  # fmt: skip
    cols = ["all tasks", *tasks]
    fig, ax = plt.subplots(figsize=(1.25 * len(cols) + 2.2, 0.62 * len(rows) + 1.3))
    for i, r in enumerate(rows):
        for j, col in enumerate(cols):
            if col == "all tasks":
                verdict, text = r["verdict"], r["verdict"]
            elif (r["claim"], col) in by:
                c = by[(r["claim"], col)]
                verdict = c["verdict"]
                text = f"{c['diff']:+.1f}\n[{c['ci_low']:+.1f}, {c['ci_high']:+.1f}]"
            else:
                verdict, text = None, ""
            ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor=VERDICT_COLOURS.get(verdict, "white"),
                                       edgecolor="white", linewidth=2, gid=f"cell:{verdict}"))  # fmt: skip
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=7 if j else 8,
                    fontweight="bold" if j == 0 else "normal")  # fmt: skip
    ax.set_xlim(0, len(cols))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([j + 0.5 for j in range(len(cols))], cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks([i + 0.5 for i in range(len(rows))],
                  [f"{r['claim']} · {r['statement'].split(':')[0]}" for r in rows], fontsize=8)  # fmt: skip
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.legend(handles=[Patch(facecolor=c, label=v) for v, c in VERDICT_COLOURS.items()], fontsize=7,
              loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)  # fmt: skip
    ax.set_title(title or "The claims task by task: difference, 95% interval, verdict", fontsize=10)
    fig.tight_layout()
    if save:
        fig.savefig(save, dpi=110)
    return fig


def _row_name(row) -> str:
    """A row key as text: a corpus share as a percentage, a depth as layers, a Table 1 row as it is."""
    if isinstance(row, (float, np.floating)):
        return f"{row:.0%}"
    if isinstance(row, (int, np.integer)) and not isinstance(row, bool):
        return f"{row} layers"
    return str(row)


def _cell(verdict: str, d: float, lo: float, hi: float) -> str:
    return f"{verdict} {d:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _claim_records(t1, t2, t3, chance_r1) -> tuple[list[dict], list[dict]]:
    """(claims rows, per-task rows) of C1-C5 from whichever tables are given."""
    rows, cells = [], []

    def add(cid, claim, verdict, evidence):
        rows.append(dict(claim=cid, statement=claim, verdict=verdict, evidence=evidence))

    def per_task(cid, cmp, rule=GREATER):
        for r in cmp.itertuples():
            v = rule[r.verdict]
            cells.append(dict(claim=cid, column=r.column, task=TASK_LABELS.get(r.column, r.column), verdict=v,
                              diff=r.diff, ci_low=r.ci_low, ci_high=r.ci_high, test=r.test,
                              comparison=f"{_row_name(r.a)} − {_row_name(r.b)}", cell=_cell(v, r.diff, r.ci_low, r.ci_high)))  # fmt: skip

    if t1 is not None:
        cols = [c for c in COLUMNS if not c.startswith("zs_")]
        cmp = compare(t1, "vilbert", "vilbert†", cols)
        per_task("C1", cmp)
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
            zs = compare(t1, "vilbert", "vilbert†", ["zs_r@1"]).iloc[0]
            cells.append(dict(claim="C2", column="zs_r@1", task=TASK_LABELS["zs_r@1"], verdict=verdict,
                              diff=zs["diff"], ci_low=zs.ci_low, ci_high=zs.ci_high, test="intervals vs chance",
                              comparison=f"ViLBERT† ≤ 2× chance {chance_r1:.2f}, ViLBERT ≥ 3× chance",
                              cell=f"{verdict}: † {_fmt(zs_none)}, ViLBERT {_fmt(zs_pre)}"))  # fmt: skip
        shared = [c for c in UNDERSTANDING if c in set(t1[t1.row == "single_stream"].column)]
        cmp = compare(t1, "vilbert", "single_stream", shared)
        per_task("C3", cmp)
        add("C3", "two streams beat one: ViLBERT > single-stream, both pretrained", _all_greater(cmp),
            _evidence(cmp))  # fmt: skip
    if t3 is not None:
        lo, hi = min(t3.row), max(t3.row)
        cmp = compare(t3, hi, lo, [c for c in COLUMNS if c in set(t3.column)])
        per_task("C4", cmp)
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
        per_task("C5", ret)
        per_task("C5", sat, SATURATES)
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
    return rows, cells


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
        f"{r.column} {r.diff:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] ({r.test})" for r in cmp.itertuples()
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


PERCENT = (0.0, 100.0)
METRIC_RANGES: dict[str, tuple[float, float]] = {}  # a metric's possible values, when not a percentage


def metric_range(column: str) -> tuple[float, float]:
    """The values a metric can take (every metric here is a percentage unless METRIC_RANGES says otherwise):
    intervals in the figures are clipped to it."""
    return METRIC_RANGES.get(column, PERCENT)


def _clipped(s: pd.DataFrame, cols: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A summary's 95% interval (reindexed to `cols`), clipped to each metric's range."""
    lo_r = np.array([metric_range(c)[0] for c in cols])
    hi_r = np.array([metric_range(c)[1] for c in cols])
    return (
        np.clip(s["ci_low"].to_numpy(float), lo_r, hi_r),
        np.clip(s["ci_high"].to_numpy(float), lo_r, hi_r),
    )


def chance_of(long: pd.DataFrame | None, column: str) -> float | None:
    """The chance level (percent) the long rows record for a metric, if any."""
    if long is None or "chance" not in long:
        return None
    c = long[long.column == column].chance.dropna()
    return float(c.mean()) if len(c) else None


def _spread(n: int, width: float) -> np.ndarray:
    """Fixed horizontal offsets for n dots of one cell, so that seeds with equal values stay apart."""
    return np.linspace(-width / 2, width / 2, n) if n > 1 else np.zeros(n)


def _colour(i: int, n: int):
    """The i-th of n distinct colours (tab10, tab20 past ten)."""
    import matplotlib  # matplotlib loads only when a figure is drawn

    return matplotlib.colormaps["tab10" if n <= 10 else "tab20"](i % 20)


def plot_bars(summary: pd.DataFrame, columns: list[str] | None = None, title: str = "", save=None,
              long: pd.DataFrame | None = None):  # fmt: skip
    """Grouped bars (one group per metric, one bar per row) at the mean, the 95% interval as a black line
    clipped to the metric's range (`metric_range`), and with `long` (the rows `summary` came from) one dot per
    seed and a dashed chance line over each metric whose rows record a `chance`. Artists carry gids "interval",
    "seeds" and "chance"."""
    import matplotlib.pyplot as plt  # matplotlib loads only when a figure is drawn

    cols = [c for c in (columns or COLUMNS) if c in set(summary.column)]
    rows = list(dict.fromkeys(summary.row))
    fig, ax = plt.subplots(figsize=(min(14, max(6, 0.3 * len(cols) * max(1, len(rows)))), 3.8))
    w = 0.8 / max(1, len(rows))
    x0 = np.arange(len(cols))
    for i, row in enumerate(rows):
        s = summary[summary.row == row].set_index("column").reindex(cols)
        x, color = x0 + i * w, _colour(i, len(rows))
        ax.bar(x, s["mean"], w, color=color, alpha=0.45, label=str(row))
        lo, hi = _clipped(s, cols)
        ok = ~(np.isnan(lo) | np.isnan(hi))
        if ok.any():
            ax.vlines(x[ok], lo[ok], hi[ok], colors="black", linewidth=1.2, gid="interval")
        if long is not None:
            xs, ys = [], []
            for j, col in enumerate(cols):
                v = _seeded(long, row, col).sort_index().to_numpy(float)
                xs += list(x[j] + _spread(len(v), 0.5 * w))
                ys += list(v)
            if xs:
                ax.scatter(
                    xs, ys, s=12, color=color, edgecolors="black", linewidths=0.4, zorder=3, gid="seeds"
                )
    labelled = False
    for j, col in enumerate(cols):
        c = chance_of(long, col)
        if c is not None:
            ax.hlines(c, x0[j] - w / 2, x0[j] + w * (len(rows) - 0.5), colors="grey", linestyles="dashed",
                      linewidth=1, gid="chance", label=None if labelled else "chance")  # fmt: skip
            labelled = True
    ax.set_xticks(x0 + w * (len(rows) - 1) / 2, cols, rotation=30, ha="right")
    if cols:
        ax.set_ylim(min(metric_range(c)[0] for c in cols), max(metric_range(c)[1] for c in cols) * 1.02)
    ax.set_ylabel("score (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0))  # outside: no bar hidden
    fig.tight_layout()
    if save:
        fig.savefig(save, dpi=110)
    return fig


def plot_trend(summary: pd.DataFrame, columns: list[str] | None = None, xlabel: str = "", title: str = "",
               save=None, long: pd.DataFrame | None = None):  # fmt: skip
    """Score against a numeric row key (corpus fraction, depth), one line per metric through the means, each
    point's 95% interval clipped to the metric's range (`metric_range`), and with `long` (the rows `summary` came
    from) one dot per seed and a dotted chance line per metric whose rows record a `chance`. Artists carry gids
    "interval", "seeds" and "chance"."""
    import matplotlib.pyplot as plt  # matplotlib loads only when a figure is drawn

    cols = [c for c in (columns or COLUMNS) if c in set(summary.column)]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    keys = sorted(set(summary.row))
    step = float(np.min(np.diff(keys))) if len(keys) > 1 else 1.0
    for k, col in enumerate(cols):
        s = summary[summary.column == col].sort_values("row")
        x, color = s.row.to_numpy(float), _colour(k, len(cols))
        ax.plot(x, s["mean"], marker="o", markersize=4, color=color, label=col)
        lo, hi = _clipped(s, [col] * len(s))
        ok = ~(np.isnan(lo) | np.isnan(hi))
        if ok.any():
            ax.vlines(x[ok], lo[ok], hi[ok], colors=color, linewidth=1.5, alpha=0.8, gid="interval")
        if long is not None:
            xs, ys = [], []
            for row in s.row:
                v = _seeded(long, row, col).sort_index().to_numpy(float)
                xs += list(float(row) + _spread(len(v), 0.15 * step))
                ys += list(v)
            if xs:
                ax.scatter(xs, ys, s=9, color=color, alpha=0.6, zorder=3, gid="seeds")
        c = chance_of(long, col)
        if c is not None:
            ax.axhline(c, color=color, linestyle=":", linewidth=1, gid="chance")
    if cols:
        ax.set_ylim(min(metric_range(c)[0] for c in cols), max(metric_range(c)[1] for c in cols) * 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(
        "score (%)" + ("; dotted: chance" if any(chance_of(long, c) is not None for c in cols) else "")
    )
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))  # outside: no point hidden
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


def load_tables(tables_dir: str | Path) -> dict[str, pd.DataFrame | None]:
    """{"table1": long rows or None, "table2": ..., "table3": ...} from whichever KEY_long.csv exist."""
    d = Path(tables_dir)
    return {
        k: read_long(d / f"{k}_long.csv") if (d / f"{k}_long.csv").exists() else None for k in TABLE_TITLES
    }


def _claims_args(tables_dir: str | Path) -> dict:
    t = load_tables(tables_dir)
    return dict(t1=t["table1"], t2=t["table2"], t3=t["table3"],
                chance_r1=chance_r1(t["table1"]) if t["table1"] is not None else None)  # fmt: skip


def all_claims(tables_dir: str | Path) -> pd.DataFrame:
    """Claims C1-C5 from whichever of table1/2/3_long.csv exist in `tables_dir`."""
    return claims(**_claims_args(tables_dir))


def all_verdict_grid(tables_dir: str | Path) -> pd.DataFrame:
    """`verdict_grid` (claims x tasks) from whichever of table1/2/3_long.csv exist in `tables_dir`."""
    return verdict_grid(**_claims_args(tables_dir))


def plot_all_verdicts(tables_dir: str | Path, **kw):
    """`plot_verdicts` from whichever of table1/2/3_long.csv exist in `tables_dir`."""
    return plot_verdicts(**_claims_args(tables_dir), **kw)


GRID_NOTE = (
    "Each cell: the claim's verdict on that task alone, then the difference (first row of the comparison minus "
    "the second, percentage points) and its 95% interval; C5's understanding tasks hold when the interval "
    "contains 0 (saturation). Paired: a t interval on the per-seed differences of runs that share their "
    "fine-tuning seed and model shape (same data order and head initialisation); Welch: independent samples. "
    "'all tasks' is the verdict of the claims table."
)


def write_claims_by_task(tables_dir: str | Path) -> pd.DataFrame | None:
    """Write tables/claims_by_task.csv/.md (the verdict grid), tables/claims_by_task_long.csv (one row per claim
    and task, with the numbers) and figures/verdicts.png (`plot_verdicts`, beside tables/) from the long tables in
    `tables_dir` -> the grid, None without tables."""
    d = Path(tables_dir)
    args = _claims_args(d)
    if all(args[k] is None for k in ("t1", "t2", "t3")):
        return None
    grid = verdict_grid(**args)
    save_table(grid, d / "claims_by_task")
    claims_by_task(**args).to_csv(d / "claims_by_task_long.csv", index=False)
    import matplotlib.pyplot as plt  # matplotlib loads only when a figure is drawn

    (d.parent / "figures").mkdir(parents=True, exist_ok=True)
    plt.close(plot_verdicts(**args, save=d.parent / "figures" / "verdicts.png"))
    return grid


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


# the committed tables that name their run folders, in the report's order (notebook 11b's after Tables 1-3)
SHARED_RUN_TABLES = {**{k: t.split(" · ")[0] for k, t in TABLE_TITLES.items()}, "vilt": "the ViLT table"}


def shared_run_notes(tables_dir: str | Path) -> dict[str, str]:
    """{table key: note} for each table whose numbers disagree with an earlier table's on the same run folder
    and column (Table 2's 6 layers and Table 3's 0 % / 100 % are Table 1's runs, notebook 11b's region row is
    Table 1's ViLBERT runs): the two were read from different samples of those runs, e.g. trained on
    different machines. The note names the earlier table and how many shared numbers differ."""
    tables, seen, notes = Path(tables_dir), {}, {}
    for key in SHARED_RUN_TABLES:
        f = tables / f"{key}_long.csv"
        if not f.exists():
            continue
        long = pd.read_csv(f)
        if "run" not in long:
            continue
        named = long["run"].notna() & (long["run"].astype(str) != "")  # rows that name no run: never shared
        long = long[named]
        here = {(r, c): float(v) for r, c, v in zip(long["run"].astype(str), long["column"], long["value"])}
        for other, values in seen.items():
            shared = [k for k in here if k in values]
            differ = sum(abs(here[k] - values[k]) > 1e-6 for k in shared)
            if differ:
                notes[key] = (f"**Not one sample with {SHARED_RUN_TABLES[other]}:** {differ} of the {len(shared)} "
                              f"numbers it shares with {SHARED_RUN_TABLES[other]} (the same run folders) differ "
                              "from it, so the two were made from different trainings of those runs (another "
                              "machine, or runs trained again); re-running both tables' notebooks with "
                              '`results="runs"` on one machine makes them one sample.')  # fmt: skip
                break
        seen[key] = here
    return notes


def write_summary(reports_dir: str | Path, profile: str, command: str | None = None,
                  runs_root: str | Path | None = None) -> Path:  # fmt: skip
    """reports/README.md: every table (ours mean ± std next to the paper), the claims and their verdicts per task
    (also written to tables/claims_by_task.*), the figures, what the runs behind each table cost, the 12-in-1 and
    ViLT tables when notebooks 10 and 11 have written them, and the command, date and machine that made them.
    Computed from the tables' files and run folders, nothing typed by hand."""
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
    notes = shared_run_notes(tables)
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
        if key in notes:
            lines += [notes[key], ""]
        if {"init", "run"} <= set(long.columns):
            lines += [table_compute_line(long, tables / f"{key}_compute.txt", runs_root), ""]
    cl = all_claims(tables)
    if not cl.empty:
        lines += ["## The paper's claims", "", markdown(cl.set_index("claim")), ""]
        grid = write_claims_by_task(tables)
        lines += [
            "### Verdicts per task",
            "",
            markdown(grid),
            GRID_NOTE,
            "",
            "![verdicts](figures/verdicts.png)",
            "",
        ]
    for stem, title in (("multitask", "12-in-1 · multi-task ablation (notebook 10)"),
                        ("multitask_claims", "12-in-1 · claims"),
                        ("vilt", "ViLT beside ViLBERT · accuracy at equal budgets (notebook 11b)"),
                        ("easy_vqa", "Real data · easy-VQA, VQA accuracy (%) on its held-out test pictures, "
                                     "per answer type (notebook 12)")):  # fmt: skip
        f = tables / f"{stem}.md"
        if f.exists():  # written by notebooks 10 (repro.multitask_table.report), 11 and 12
            lines += [f"## {title}", "", f.read_text().rstrip(), ""]
            if stem in notes:
                lines += [notes[stem], ""]
    out = r / "README.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def report_table(long: pd.DataFrame, key: str, reports_dir: str | Path, title: str = ""):
    """Summarise one table's long rows and write its files under reports_dir: tables/KEY_summary.csv (mean, std,
    n, 95% interval), tables/KEY.csv/.md (ours next to the paper), figures/KEY.png (with a dot per seed and the
    chance levels) and, from every KEY_long.csv in tables/, the claims' verdicts per task
    (tables/claims_by_task.*, `write_claims_by_task`) -> (summary, side, figure). Table 3 is drawn as score
    against corpus fraction, the others as grouped bars."""
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
                         save=r / "figures" / f"{key}.png", long=long)  # fmt: skip
    else:
        fig = plot_bars(summary, title=title, save=r / "figures" / f"{key}.png", long=long)
    write_claims_by_task(r / "tables")  # the verdict grid of every table written so far
    import matplotlib.pyplot as plt  # matplotlib loads only when a figure is drawn

    plt.close(fig)  # returned, not shown twice by the inline backend
    return summary, side, fig
