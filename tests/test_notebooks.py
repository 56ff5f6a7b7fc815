"""Every notebook in notebooks/: clean as committed, and a smoke run reproduces its reference outputs (nbval).

How a notebook is validated (per notebook, parametrised over what exists in notebooks/):
1. papermill injects `profile = "smoke"` after the `parameters` cell (prepare_only: nothing runs yet);
2. nbval, in a subprocess, runs the prepared copy in a fresh kernel started in notebooks/ (as `papermill --cwd
   notebooks` would) and compares every cell that has a stored output exactly, after the regexes of
   tests/nbval_sanitize.cfg; cells stored without outputs (figures, widgets, tagged `nbval-ignore-output`) are run
   and must not raise, but are not compared. The reference outputs come from `tools/nb_clean.py --record`.
The run must finish within NB_SMOKE_LIMIT_S (the target is 60 s on 2 cores; the limit leaves room for a busy
machine). Deselect with `-m "not notebooks"`.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]*_*.ipynb"))
NB_SMOKE_LIMIT_S = float(os.environ.get("NB_SMOKE_LIMIT_S", "120"))


def _load_nb_clean():
    spec = importlib.util.spec_from_file_location("nb_clean", ROOT / "tools" / "nb_clean.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nb_clean = _load_nb_clean()
ids = [p.stem for p in NOTEBOOKS]


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NB_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    problems = nb_clean.problems(nb)
    assert not problems, (
        f"{path.name} is not clean; run `python tools/nb_clean.py --record {path.relative_to(ROOT)}`:\n"
        + "\n".join(problems)
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_has_reference_outputs(path):
    """At least one cell is compared exactly, otherwise nbval would only check that nothing raises."""
    nb = nbformat.read(path, as_version=4)
    assert any(c.cell_type == "code" and c.outputs for c in nb.cells), (
        f"{path.name} stores no reference outputs; record them with tools/nb_clean.py --record"
    )


def prepare(path: Path, out_dir: Path) -> Path:
    """The committed notebook with papermill's injected `profile = "smoke"` and a first cell that moves the
    kernel into notebooks/ (nbval starts kernels in the notebook's own folder, here a temporary one)."""
    import papermill as pm

    prepared = out_dir / path.name
    from vilbert_lite.repro.reproduce import notebook_parameters

    # smoke tables go to tmp; notebooks 07-09 train theirs (results="runs"), the path their references come from
    params = notebook_parameters(path, out_dir / "reports", {"results": "runs"}, profile="smoke")
    pm.execute_notebook(str(path), str(prepared), parameters=params, prepare_only=True,
                        kernel_name="python3", progress_bar=False)  # fmt: skip
    nb = nbformat.read(prepared, as_version=4)
    chdir = nbformat.v4.new_code_cell(f"import os\nos.chdir({str(NB_DIR)!r})  # as papermill --cwd notebooks")
    nb.cells.insert(0, chdir)  # execution_count None: run, not compared
    nbformat.write(nb, prepared)
    return prepared


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_smoke_run_matches_reference(path, tmp_path, record_property):
    prepared = prepare(path, tmp_path)
    cmd = [
        sys.executable, "-m", "pytest", str(prepared), "--nbval", "--nbval-current-env",
        "--nbval-sanitize-with", str(SANITIZE), "--nbval-cell-timeout", str(int(NB_SMOKE_LIMIT_S)),
        "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-q", "--color=no",
    ]  # fmt: skip
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    t0 = time.perf_counter()
    run = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=4 * NB_SMOKE_LIMIT_S
    )
    seconds = time.perf_counter() - t0
    record_property("smoke_seconds", round(seconds, 1))
    assert run.returncode == 0, f"nbval failed for {path.name}:\n{run.stdout[-12000:]}\n{run.stderr[-3000:]}"
    assert seconds <= NB_SMOKE_LIMIT_S, (
        f"{path.name}: smoke run took {seconds:.0f} s > {NB_SMOKE_LIMIT_S:.0f} s"
    )


def test_nb_clean_keeps_only_reference_outputs():
    """The cleaning rules themselves, on a hand-made notebook."""
    v4 = nbformat.v4
    text = v4.new_output("stream", name="stdout", text="shape (1, 2)\n")
    image = v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"})
    error = v4.new_output("error", ename="ValueError", evalue="x", traceback=[])
    cells = [
        v4.new_code_cell('profile = "cpu"\nseed = 0\ndevice = "auto"', metadata={"tags": ["parameters"]}),
        v4.new_code_cell("print(x.shape)", outputs=[text], execution_count=2),
        v4.new_code_cell("plot()", outputs=[text, image], execution_count=3),
        v4.new_code_cell("boom()", outputs=[error], execution_count=4),
        v4.new_code_cell(
            "t()", outputs=[text], execution_count=5, metadata={"tags": ["nbval-ignore-output"]}
        ),
    ]
    nb = v4.new_notebook(cells=cells, metadata={"widgets": {"state": {}}, "papermill": {}})
    problems = nb_clean.problems(nb)
    assert any("widget or run state" in p for p in problems)
    assert any("image output" in p for p in problems) and any("error output" in p for p in problems)
    cleaned = nb_clean.clean(nb)
    assert nb_clean.problems(cleaned) == []
    assert [len(c.outputs) for c in cleaned.cells] == [0, 1, 0, 0, 0]
    assert [c.execution_count for c in cleaned.cells] == [None, 2, None, None, None]
    assert "widgets" not in cleaned.metadata


def test_nb_clean_requires_the_parameters_cell():
    v4 = nbformat.v4
    assert nb_clean.parameters_problems(v4.new_notebook(cells=[v4.new_code_cell("x = 1")]))
    bad = v4.new_code_cell('profile = "laptop"\nseed = 0', metadata={"tags": ["parameters"]})
    probs = nb_clean.parameters_problems(v4.new_notebook(cells=[bad]))
    assert any("'device'" in p for p in probs) and any("laptop" in p for p in probs)


def _tree_digest(root: Path, skip: Path) -> dict[str, int]:
    """{relative path: hash of the bytes} of every file under `root` except those under `skip`."""
    return {str(p.relative_to(root)): hash(p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file() and skip not in p.parents}  # fmt: skip


@pytest.mark.notebooks
def test_a_smoke_run_from_notebooks_never_touches_the_committed_results(tmp_path):
    """Exactly as a user runs it (`cd notebooks && papermill 10_multitask.ipynb out.ipynb -p profile smoke`, no
    reports_dir): the tables go to reports/smoke/, and every committed file under reports/ stays as it was."""
    import papermill as pm

    reports, smoke = ROOT / "reports", ROOT / "reports" / "smoke"
    had_smoke = smoke.exists()
    before = _tree_digest(reports, smoke)
    env = {"VILBERT_LITE_RUNS": str(tmp_path / "runs"), "VILBERT_LITE_CACHE": str(tmp_path / "cache")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        pm.execute_notebook(str(NB_DIR / "10_multitask.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters={"profile": "smoke"}, cwd=str(NB_DIR), kernel_name="python3",
                            progress_bar=False)  # fmt: skip
        assert (smoke / "tables" / "multitask_long.csv").is_file()
        assert _tree_digest(reports, smoke) == before
    finally:
        os.environ.update({k: v for k, v in old.items() if v is not None})
        for k in (k for k, v in old.items() if v is None):
            os.environ.pop(k, None)
        if not had_smoke:
            import shutil

            shutil.rmtree(smoke, ignore_errors=True)
