"""Notebooks 07-09 take their numbers from the run folders (results="runs") or from the per-seed files those runs
wrote (results="reports"): both give the same tables, figures' numbers and claim verdicts, and the committed files
alone, with no runs/, draw a notebook in seconds without touching them."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from vilbert_lite.repro import experiments, reports

ROOT = Path(__file__).resolve().parents[1]
NB07 = ROOT / "notebooks" / "07_baselines_table1.ipynb"
# a small Table 1 at smoke (ViLBERT and ViLBERT† on VQA and zero-shot retrieval): every claim C1-C3 is computed
CELLS = [
    ("vilbert†", dict(pretrained=False, tasks=("vqa", "zeroshot"))),
    ("vilbert", dict(tasks=("vqa", "zeroshot"))),
]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same table through both paths: trained into a tmp runs root (its csv in a tmp reports folder), then
    read back from that folder."""
    tmp = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(experiments, "table_cells", lambda table, profile: CELLS)
        ran = experiments.table_results("table1", "smoke", [0], results="runs", root=tmp / "runs",
                                        csv=experiments.long_csv("table1", tmp / "ran"), progress=False)  # fmt: skip
    read = experiments.table_results("table1", "smoke", [0], results="reports", results_from=tmp / "ran",
                                     csv=experiments.long_csv("table1", tmp / "read"))  # fmt: skip
    return tmp, ran, read


def test_reports_mode_reads_exactly_what_the_runs_gave(both):
    tmp, ran, read = both
    pd.testing.assert_frame_equal(ran, read)  # same rows, values and dtypes ("" init, numeric keys)
    assert set(ran.row) == {"vilbert", "vilbert†"} and (ran.run != "").all()
    # the rows written on are the rows read: a reports folder made from another reads the same
    assert (
        experiments.long_csv("table1", tmp / "read").read_bytes()
        == experiments.long_csv("table1", tmp / "ran").read_bytes()
    )


def test_both_paths_give_the_same_tables_and_verdicts(both):
    tmp, ran, read = both
    out = {}
    for name, long in (("ran", ran), ("read", read)):
        summary, side, _ = reports.report_table(long, "table1", tmp / f"out-{name}")
        out[name] = (summary, side, reports.claims(t1=long, chance_r1=reports.chance_r1(long)))
    for a, b in zip(out["ran"], out["read"]):
        pd.testing.assert_frame_equal(a, b)
    assert list(out["read"][2].claim) == ["C1", "C2", "C3"]
    assert set(out["read"][2].verdict) <= {"held", "not held", "inconclusive"}
    for f in ("table1_summary.csv", "table1.csv", "table1.md"):
        assert (tmp / "out-ran" / "tables" / f).read_bytes() == (tmp / "out-read" / "tables" / f).read_bytes()


def test_reports_mode_names_what_the_file_holds(both, capsys):
    tmp, _, _ = both
    experiments.table_results("table1", "cpu", [0, 1, 2], results="reports", results_from=tmp / "ran")
    text = capsys.readouterr().out
    assert "2 rows x seeds [0]" in text and "stored results, nothing trained" in text
    assert (
        "note: the file holds its numbers for seeds [0]; you asked for profile cpu, seeds [0, 1, 2]" in text
    )
    with pytest.raises(FileNotFoundError, match="table2"):
        experiments.table_results("table2", "cpu", [0], results="reports", results_from=tmp / "ran")
    with pytest.raises(ValueError, match="results="):
        experiments.table_results("table1", "cpu", [0], results="cache")


def _execute(params: dict, tmp: Path, runs: Path) -> tuple[str, float]:
    """Notebook 07 through papermill from notebooks/ with an empty runs root -> (its text outputs, seconds)."""
    import papermill as pm

    t0 = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VILBERT_LITE_RUNS", str(runs))
        pm.execute_notebook(str(NB07), str(tmp / "out.ipynb"), parameters=params, cwd=str(NB07.parent),
                            kernel_name="python3", progress_bar=False)  # fmt: skip
    seconds = time.perf_counter() - t0
    nb = nbformat.read(tmp / "out.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    return text, seconds


def _digest(paths) -> dict:
    return {str(p): p.read_bytes() for p in paths}


@pytest.mark.notebooks
def test_notebook_07_draws_the_committed_results_without_runs(tmp_path):
    """As from a fresh clone (no runs/): profile cpu, results="reports", tables and figures into a tmp folder;
    the committed claim verdicts are printed within a minute, nothing trains, nothing committed changes."""
    committed = sorted((ROOT / "reports").glob("tables/table1*")) + [
        ROOT / "reports" / "figures" / "table1.png"
    ]
    before = _digest(committed)
    runs = tmp_path / "runs"
    text, seconds = _execute({"profile": "cpu", "results": "reports", "reports_dir": str(tmp_path / "rep")},
                             tmp_path, runs)  # fmt: skip
    assert (
        "reports/tables/table1_long.csv: 111 numbers" in text and "committed results, nothing trained" in text
    )
    long = experiments.read_rows(experiments.long_csv("table1"))
    for r in reports.claims(t1=long, chance_r1=reports.chance_r1(long)).itertuples():
        assert f"{r.claim} {r.verdict:12s} {r.statement}" in text
    assert (tmp_path / "rep" / "figures" / "table1.png").is_file()
    assert not runs.exists() or not any(runs.iterdir()), "nothing may train"
    assert _digest(committed) == before
    assert seconds < 60, f"notebook 07 from the committed results took {seconds:.0f} s"


@pytest.mark.notebooks
def test_notebook_07_at_smoke_reads_a_given_results_folder(tmp_path):
    """results_from: any folder whose tables/ holds the per-seed file; the notebook says what it holds."""
    src = tmp_path / "elsewhere" / "tables"
    src.mkdir(parents=True)
    shutil.copy(experiments.long_csv("table1"), src / "table1_long.csv")
    text, seconds = _execute({"profile": "smoke", "results": "reports", "results_from": str(src.parent),
                              "reports_dir": str(tmp_path / "rep")}, tmp_path, tmp_path / "runs")  # fmt: skip
    assert (
        "stored results, nothing trained" in text and "seeds [0, 1, 2]; you asked for profile smoke" in text
    )
    assert (tmp_path / "rep" / "tables" / "table1_long.csv").read_bytes() == (
        src / "table1_long.csv"
    ).read_bytes()
    assert seconds < 60, f"notebook 07 from a results folder took {seconds:.0f} s"
