"""The exercises' solutions (`notebooks/solutions/NN_*.py`) run at profile=smoke, as a learner would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]*_*.py"))
NOTEBOOKS = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb")}


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solutions_run_at_smoke(path, tmp_path):
    assert path.stem in NOTEBOOKS, f"{path.name} names no notebook in notebooks/"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg",
           "VILBERT_LITE_RUNS": str(tmp_path / "runs")}  # fmt: skip
    run = subprocess.run([sys.executable, str(path), "--profile", "smoke"], cwd=path.parent, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, f"{path.name} failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert "exercise" in run.stdout.lower(), f"{path.name} printed no exercise output"
