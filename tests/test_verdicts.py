"""Paired and Welch intervals, the per-task verdict grid and the figures' per-seed dots and clipped intervals."""

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from vilbert_lite.repro import reports

matplotlib.use("Agg")

T975_2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # Student t, 0.975 quantile, 2 df: (2p-1) / sqrt(2p(1-p))


def long_of(values: dict, seeds=(0, 1, 2), chance: dict | None = None) -> pd.DataFrame:
    """{(row, column): [value per seed]} -> long rows (the seeds in `seeds` order)."""
    return pd.DataFrame(
        [
            dict(row=r, seed=s, column=c, value=float(v), chance=(chance or {}).get(c, math.nan))
            for (r, c), vs in values.items()
            for s, v in zip(seeds, vs)
        ]
    )


def test_t_quantile_constant():
    assert reports.t_quantile(3) == pytest.approx(T975_2, rel=1e-12)


def test_paired_interval_is_the_t_interval_of_the_differences():
    a, b = [10.0, 12.0, 15.0], [8.0, 11.0, 11.0]  # differences 2, 1, 4
    mean, sd = 7 / 3, math.sqrt(7 / 3)  # sd of (2, 1, 4) with ddof=1: sqrt(((1/3)² + (4/3)² + (5/3)²) / 2)
    half = T975_2 * sd / math.sqrt(3)
    d, lo, hi = reports.paired_interval(a, b)
    assert (d, lo, hi) == pytest.approx((mean, mean - half, mean + half), rel=1e-12)

    long = long_of({("vilbert", "vqa_accuracy"): a, ("vilbert†", "vqa_accuracy"): b})
    assert reports.paired(long, "vilbert", "vilbert†")
    r = reports.compare(long, "vilbert", "vilbert†", ["vqa_accuracy"]).iloc[0]
    assert r.test == "paired" and r.verdict == "tie"
    assert (r["diff"], r.ci_low, r.ci_high) == pytest.approx((mean, mean - half, mean + half), rel=1e-12)
    # the seeds, not the row order, pair the values
    shuffled = long.iloc[[2, 0, 1, 3, 4, 5]]
    r2 = reports.compare(shuffled, "vilbert", "vilbert†", ["vqa_accuracy"]).iloc[0]
    assert (r2["diff"], r2.ci_low, r2.ci_high) == pytest.approx((r["diff"], r.ci_low, r.ci_high), rel=1e-12)


def welch_by_hand(a, b):
    from scipy.stats import t

    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    d, half = a.mean() - b.mean(), t.ppf(0.975, dof) * math.sqrt(va + vb)
    return d, d - half, d + half


def test_welch_when_seeds_differ_or_shapes_differ():
    a, b = [10.0, 12.0, 15.0], [8.0, 11.0, 11.0]
    expected = welch_by_hand(a, b)
    # other seeds: not paired
    long = pd.concat([long_of({("vilbert", "q2a"): a}), long_of({("vilbert†", "q2a"): b}, seeds=(3, 4, 5))])
    assert not reports.paired(long, "vilbert", "vilbert†")
    r = reports.compare(long, "vilbert", "vilbert†", ["q2a"]).iloc[0]
    assert r.test == "Welch"
    assert (r["diff"], r.ci_low, r.ci_high) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="same seeds"):
        reports.compare(long, "vilbert", "vilbert†", ["q2a"], pairing="paired")
    # same seeds, another model shape (single-stream; another depth): not paired
    for x, y in (("vilbert", "single_stream"), (8, 2)):
        long = long_of({(x, "q2a"): a, (y, "q2a"): b})
        assert not reports.paired(long, x, y)
        assert reports.compare(long, x, y, ["q2a"]).iloc[0].test == "Welch"
    # a Table 3 comparison (corpus shares: one shape) is paired; an unknown row name never is
    assert reports.paired(long_of({(1.0, "q2a"): a, (0.0, "q2a"): b}), 1.0, 0.0)
    assert not reports.paired(long_of({("x", "q2a"): a, ("y", "q2a"): b}), "x", "y")
    # the table column, when present, decides over the key's type
    t2 = long_of({(8, "q2a"): a, (2, "q2a"): b}).assign(table="table2")
    assert not reports.paired(t2, 8, 2)
    # forced Welch on paired rows
    long = long_of({("vilbert", "q2a"): a, ("vilbert†", "q2a"): b})
    r = reports.compare(long, "vilbert", "vilbert†", ["q2a"], pairing="welch").iloc[0]
    assert r.test == "Welch" and (r["diff"], r.ci_low, r.ci_high) == pytest.approx(expected, rel=1e-12)


def grid_table1() -> pd.DataFrame:
    return long_of(
        {
            ("vilbert", "vqa_accuracy"): [60, 61, 62],  # differences 10, 10, 10: held
            ("vilbert†", "vqa_accuracy"): [50, 51, 52],
            ("vilbert", "q2a"): [50, 52, 51],  # differences -1, 2, -1: inconclusive
            ("vilbert†", "q2a"): [51, 50, 52],
            ("vilbert", "refer_accuracy"): [40, 41, 42],  # differences -10, -11, -9: not held
            ("vilbert†", "refer_accuracy"): [50, 52, 51],
            ("vilbert", "zs_r@1"): [30, 31, 32],
            ("vilbert†", "zs_r@1"): [1, 1, 1],
            ("single_stream", "vqa_accuracy"): [40, 41, 42],
        },
        chance={"zs_r@1": 1.0},
    )


def test_verdict_grid_per_task():
    t1 = grid_table1()
    grid = reports.verdict_grid(t1=t1, chance_r1=1.0)
    h = T975_2 / math.sqrt(3)  # half width of the not-held interval (sd 1)
    assert grid.loc["C1", "VQA"] == "held +10.00 [+10.00, +10.00]"
    assert grid.loc["C1", "VCR Q→A"] == f"inconclusive +0.00 [{-T975_2:+.2f}, {T975_2:+.2f}]"
    assert grid.loc["C1", "VCR Q→A"] == "inconclusive +0.00 [-4.30, +4.30]"
    assert grid.loc["C1", "RefCOCO+-style"] == f"not held -10.00 [{-10 - h:+.2f}, {-10 + h:+.2f}]"
    assert grid.loc["C1", "all tasks"] == "not held"  # the all-task rule: one task less -> not held
    assert grid.loc["C1", "zero-shot R@1"] == "-"  # C1 leaves zero-shot to C2
    assert grid.loc["C1", "comparison"] == "vilbert − vilbert† (paired)"
    assert grid.loc["C2", "all tasks"] == "held" and grid.loc["C2", "zero-shot R@1"].startswith(
        "held: † 1.00"
    )
    d, lo, hi = welch_by_hand([60, 61, 62], [40, 41, 42])  # Welch: 4 df here, never zero width
    assert grid.loc["C3", "VQA"] == f"held {d:+.2f} [{lo:+.2f}, {hi:+.2f}]" == "held +20.00 [+17.73, +22.27]"
    assert grid.loc["C3", "comparison"] == "vilbert − single_stream (Welch)"
    assert list(grid.columns) == [
        "all tasks",
        "VQA",
        "VCR Q→A",
        "RefCOCO+-style",
        "zero-shot R@1",
        "comparison",
    ]
    by = reports.claims_by_task(t1=t1, chance_r1=1.0).set_index(["claim", "column"])
    assert by.loc[("C1", "refer_accuracy"), "ci_low"] == pytest.approx(-10 - h, rel=1e-12)
    assert by.loc[("C1", "refer_accuracy"), "test"] == "paired"
    ev = reports.claims(t1=t1, chance_r1=1.0).set_index("claim").evidence
    assert "vqa_accuracy +10.00 [+10.00, +10.00] (paired)" in ev["C1"] and "(Welch)" in ev["C3"]


def test_verdict_grid_depth_saturation_and_written_files(tmp_path):
    t2 = long_of(
        {
            (2, "r@1"): [10, 12, 14],
            (4, "r@1"): [20, 22, 24],
            (8, "r@1"): [40, 42, 44],
            (2, "vqa_accuracy"): [50, 51, 52],
            (4, "vqa_accuracy"): [50, 51, 52],
            (8, "vqa_accuracy"): [50, 51, 52],
        }
    )
    grid = reports.verdict_grid(t2=t2)
    assert grid.loc["C5", "retrieval R@1"].startswith("held +30.00")
    assert grid.loc["C5", "VQA"].startswith("held +0.00")  # a tie is saturation
    assert grid.loc["C5", "all tasks"] == "held"
    assert grid.loc["C5", "comparison"] == "8 layers − 2 layers (Welch); 8 layers − 4 layers (Welch)"
    tables = tmp_path / "tables"
    tables.mkdir()
    grid_table1().assign(table="table1").to_csv(tables / "table1_long.csv", index=False)
    t2.assign(table="table2").to_csv(tables / "table2_long.csv", index=False)
    written = reports.write_claims_by_task(tables)
    assert list(written.index) == ["C1", "C2", "C3", "C5"]
    md = (tables / "claims_by_task.md").read_text()
    assert md.startswith("| claim | all tasks | VQA |") and "| C5 | held |" in md
    assert set(pd.read_csv(tables / "claims_by_task_long.csv").test) == {
        "paired",
        "Welch",
        "intervals vs chance",
    }
    assert (tmp_path / "figures" / "verdicts.png").stat().st_size > 0  # beside tables/
    text = reports.write_summary(tmp_path, "cpu").read_text()
    assert "### Verdicts per task" in text and "held +10.00 [+10.00, +10.00]" in text
    assert "![verdicts](figures/verdicts.png)" in text


def test_verdict_figure_colours_each_task_by_its_own_verdict():
    """One cell per (claim, task) the claim tests, coloured by that task's verdict, and the all-task verdict first:
    C1 here is held on VQA, inconclusive on VCR Q→A, not held on referring expressions, so not held overall."""
    fig = reports.plot_verdicts(t1=grid_table1(), chance_r1=1.0)
    cells = [a for a in fig.axes[0].patches if (a.get_gid() or "").startswith("cell:")]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "all tasks", "VQA", "VCR Q→A", "RefCOCO+-style", "zero-shot R@1"
    ]  # fmt: skip
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "C1 · pretraining helps", "C2 · zero-shot retrieval needs pretraining", "C3 · two streams beat one"
    ]  # fmt: skip
    grid = {(round(a.get_y()), round(a.get_x())): a.get_gid()[5:] for a in cells}
    assert [grid[(0, j)] for j in range(4)] == ["not held", "held", "inconclusive", "not held"]
    assert grid[(0, 4)] == "None"  # C1 leaves zero-shot to C2: a blank cell
    assert grid[(1, 0)] == grid[(1, 4)] == "held" and grid[(2, 1)] == "held"  # C2; C3 on VQA
    colours = {a.get_gid()[5:]: matplotlib.colors.to_hex(a.get_facecolor()) for a in cells}
    assert colours["held"] != colours["not held"] != colours["inconclusive"] != colours["held"]
    texts = [t.get_text() for t in ax.texts]
    assert "+10.0\n[+10.0, +10.0]" in texts and "not held" in texts


def edge_long() -> pd.DataFrame:
    """Intervals that leave [0, 100] unless clipped: 99/100/100 (upper end 101.1) and 0/0/1.5 (lower end -1.9)."""
    return long_of(
        {
            ("vilbert", "vqa_accuracy"): [99, 100, 100],
            ("vilbert†", "vqa_accuracy"): [90, 92, 94],
            ("vilbert", "zs_r@1"): [30, 31, 32],
            ("vilbert†", "zs_r@1"): [0, 0, 1.5],
        },
        chance={"zs_r@1": 1.0},
    )


def artists(fig, gid):
    return [a for a in fig.axes[0].get_children() if a.get_gid() == gid]


def interval_ends(fig) -> np.ndarray:
    return np.array([y for lc in artists(fig, "interval") for seg in lc.get_segments() for _, y in seg])


@pytest.mark.parametrize("kind", ["bars", "trend"])
def test_figure_dots_clipped_intervals_and_chance(kind):
    import matplotlib.pyplot as plt

    long = edge_long()
    s = reports.summarize(long)
    assert s.ci_high.max() > 100 and s.ci_low.min() < 0  # unclipped, the intervals leave the range
    if kind == "trend":  # numeric row keys: two corpus shares
        long = long.assign(row=long.row.map({"vilbert": 1.0, "vilbert†": 0.0}))
        s = reports.summarize(long)
        fig = reports.plot_trend(s, long=long)
    else:
        fig = reports.plot_bars(s, long=long)
    ends = interval_ends(fig)
    assert len(ends) == 2 * 4  # one interval (two ends) per row and metric
    assert ends.min() == 0.0 and ends.max() == 100.0  # clipped, not dropped
    dots = np.concatenate([c.get_offsets() for c in artists(fig, "seeds")])
    assert len(dots) == len(long)  # one dot per seed, row and metric
    assert sorted(dots[:, 1]) == sorted(long.value)
    chance = artists(fig, "chance")
    assert len(chance) == 1  # only zs_r@1 records a chance level
    ys = chance[0].get_segments()[0][:, 1] if kind == "bars" else chance[0].get_ydata()
    assert set(np.asarray(ys, float)) == {1.0}
    plt.close(fig)
    # without the long rows: still a figure, no dots, no chance line
    fig = reports.plot_bars(reports.summarize(edge_long()))
    assert artists(fig, "seeds") == [] and artists(fig, "chance") == [] and interval_ends(fig).max() == 100.0
    plt.close(fig)
