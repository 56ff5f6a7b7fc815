"""Notebooks 10 and 11b read the committed per-seed results (results="reports") exactly as their runs
(results="runs") would return them: the same rows, dtypes, summaries and verdicts, nothing trained."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from vilbert_lite.repro import multitask_table, vilt_table
from vilbert_lite.repro.reports import summarize

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def smoke_runs():
    """The default runs root: the smoke runs of notebooks 10 and 11b (and of the nbval tests) are reused there,
    so these tests train only what no smoke run has trained yet."""
    from vilbert_lite.runs import runs_root

    return runs_root()


def test_multitask_reports_mode_equals_runs_mode(tmp_path, smoke_runs, capsys):
    reports = tmp_path / "reports"
    runs = multitask_table.table_results("smoke", [0], results="runs", reports_dir=reports, root=smoke_runs,
                                         progress=False)  # fmt: skip
    best = multitask_table.dsg_run("smoke", 0, results="runs", root=smoke_runs)
    s1, side1, c1 = multitask_table.report(runs, reports, best)
    assert (reports / "tables" / multitask_table.DSG_FILE).is_file()
    capsys.readouterr()
    read = multitask_table.table_results("smoke", [0], results="reports", results_from=reports)
    assert "nothing trained" in capsys.readouterr().out
    assert_frame_equal(read, runs)
    s2, side2, c2 = multitask_table.report(read, tmp_path / "again")
    assert_frame_equal(s1, s2)
    assert_frame_equal(side1, side2)
    assert_frame_equal(c1, c2)
    assert set(c2.verdict) <= {"held", "not held", "inconclusive"}
    run = multitask_table.dsg_run("smoke", 0, results="reports", results_from=reports)
    assert run == {k: best[k] for k in multitask_table.DSG_KEYS}
    assert multitask_table.dsg_run("smoke", 1, results="reports", results_from=reports) is None


def test_vilt_reports_mode_equals_runs_mode(tmp_path, smoke_runs):
    reports = tmp_path / "reports"
    runs = vilt_table.table_results("smoke", [0], results="runs", reports_dir=reports, root=smoke_runs,
                                    progress=False)  # fmt: skip
    s1, t1 = vilt_table.report(runs, reports, smoke_runs)
    read = vilt_table.table_results("smoke", [0], results="reports", results_from=reports)
    assert_frame_equal(read, runs)
    s2, t2 = vilt_table.report(read, tmp_path / "again", tmp_path / "no-runs", results_from=reports)
    assert_frame_equal(s1, s2)
    assert_frame_equal(t1, t2)
    # the compute line comes from the stored one when the run folders are not here
    assert (tmp_path / "again" / "tables" / "vilt.md").read_text() == (
        reports / "tables" / "vilt.md"
    ).read_text()
    pre = vilt_table.pretraining_runs("smoke", 0, results="reports", root=smoke_runs)
    assert pre is not None and set(pre) == set(vilt_table.ROWS)  # trained above, found without training
    assert vilt_table.pretraining_runs("smoke", 0, results="reports", root=tmp_path / "no-runs") is None
    table = vilt_table.pretraining_table(pre, reports_dir=reports)
    stored = vilt_table.pretraining_table(None, results_from=reports)
    assert list(stored.columns) == list(table.columns) and len(stored) == len(table)


def test_committed_tables_read_back_unchanged(tmp_path):
    """results="reports" at cpu rewrites the committed tables byte for byte."""
    long = multitask_table.table_results("cpu", [0, 1, 2], results="reports", reports_dir=tmp_path)
    multitask_table.report(long, tmp_path)
    vlong = vilt_table.table_results("cpu", [0, 1, 2], results="reports", reports_dir=tmp_path)
    vilt_table.report(vlong, tmp_path, tmp_path / "no-runs")
    committed = ROOT / "reports" / "tables"
    for name in ("multitask_long.csv", "multitask.csv", "multitask.md", "multitask_claims.csv",
                 "multitask_claims.md", "multitask_summary.csv", "vilt_long.csv", "vilt_summary.csv", "vilt.md"):  # fmt: skip
        assert (tmp_path / "tables" / name).read_bytes() == (committed / name).read_bytes(), name
    assert_frame_equal(summarize(long), pd.read_csv(committed / "multitask_summary.csv"), check_dtype=False)


@pytest.mark.notebooks
def test_notebook_10_reads_committed_results_at_cpu(tmp_path):
    """Notebook 10 at cpu with results="reports": under a minute, and nothing under runs/ (its data sections show
    the smoke world, so no cpu-size region features are extracted)."""
    import papermill as pm

    runs = tmp_path / "runs"
    runs.mkdir()
    old = os.environ.get("VILBERT_LITE_RUNS")
    os.environ["VILBERT_LITE_RUNS"] = str(runs)
    try:
        t0 = time.perf_counter()
        pm.execute_notebook(str(ROOT / "notebooks" / "10_multitask.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters={"profile": "cpu", "results": "reports", "reports_dir": str(tmp_path / "r")},
                            cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)  # fmt: skip
        seconds = time.perf_counter() - t0
    finally:
        if old is None:
            os.environ.pop("VILBERT_LITE_RUNS", None)
        else:
            os.environ["VILBERT_LITE_RUNS"] = old
    assert list(runs.iterdir()) == [], "results='reports' created run folders"
    assert (tmp_path / "r" / "tables" / "multitask.md").read_bytes() == (
        ROOT / "reports" / "tables" / "multitask.md"
    ).read_bytes()
    assert seconds < 60, f"notebook 10 at cpu from committed results took {seconds:.0f} s"
