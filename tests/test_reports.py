import math

import numpy as np
import pandas as pd
import pytest

from vilbert_lite.repro import paper, reports


def long_rows(spec: dict, seed_noise: float = 0.5, n: int = 3) -> pd.DataFrame:
    """spec: {row: {column: mean}} -> long rows with a fixed, symmetric spread around each mean."""
    offs = np.linspace(-seed_noise, seed_noise, n)
    return pd.DataFrame(
        [
            dict(row=r, seed=i, column=c, value=m + offs[i])
            for r, cols in spec.items()
            for c, m in cols.items()
            for i in range(n)
        ]  # fmt: skip
    )


def test_summary_mean_std_and_t_interval():
    df = long_rows({"a": {"vqa_accuracy": 50.0}}, seed_noise=1.0)  # values 49, 50, 51
    s = reports.summarize(df).iloc[0]
    assert s["mean"] == pytest.approx(50.0) and s["std"] == pytest.approx(1.0) and s.n == 3
    assert s.ci_high - s["mean"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)  # t(0.975, 2)


def test_welch_interval_and_verdicts():
    d, lo, hi = reports.diff_interval(np.array([10.0, 11, 12]), np.array([1.0, 2, 3]))
    assert d == pytest.approx(9.0) and lo > 0 and hi > lo
    df = long_rows({"x": {"q2a": 60, "qa2r": 50}, "y": {"q2a": 40, "qa2r": 50.2}})
    cmp = reports.compare(df, "x", "y", ["q2a", "qa2r"]).set_index("column")
    assert cmp.loc["q2a", "verdict"] == "greater" and cmp.loc["qa2r", "verdict"] == "tie"


def test_claims_held_not_held_inconclusive():
    t1 = long_rows({
        "vilbert": {"vqa_accuracy": 60, "zs_r@1": 30, "r@1": 50},
        "vilbert†": {"vqa_accuracy": 50, "zs_r@1": 1.0, "r@1": 40},
        "single_stream": {"vqa_accuracy": 62},
    }, seed_noise=0.3)  # fmt: skip
    t3 = long_rows({0.0: {"vqa_accuracy": 50}, 0.5: {"vqa_accuracy": 55}, 1.0: {"vqa_accuracy": 45}})
    t2 = long_rows({2: {"r@1": 40, "vqa_accuracy": 50}, 4: {"r@1": 45, "vqa_accuracy": 51},
                    8: {"r@1": 50, "vqa_accuracy": 51.1}}, seed_noise=2)  # fmt: skip
    c = reports.claims(t1, t2, t3, chance_r1=1.0).set_index("claim").verdict
    assert c["C1"] == "held" and c["C2"] == "held" and c["C3"] == "not held" and c["C4"] == "not held"
    assert c["C5"] == "held"


def test_side_by_side_and_markdown(tmp_path):
    df = long_rows({"vilbert": {"vqa_accuracy": 60}, "vilbert†": {"vqa_accuracy": 50}})
    table = reports.side_by_side(reports.summarize(df), paper.TABLE1)
    assert table.loc["vilbert", "vqa_accuracy ours"] == "60.00 ± 0.50"
    assert table.loc["vilbert", "vqa_accuracy paper"] == "70.55"
    reports.save_table(table, tmp_path / "t1")
    md = (tmp_path / "t1.md").read_text()
    assert md.startswith("| row | vqa_accuracy ours |") and "70.55" in md
    assert (tmp_path / "t1.csv").exists()
    fig = reports.plot_bars(reports.summarize(df), save=tmp_path / "bars.png")
    assert (tmp_path / "bars.png").stat().st_size > 1000 and fig is not None
