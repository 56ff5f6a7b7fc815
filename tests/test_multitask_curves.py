"""studies/multitask_curves.py: single-task ViLBERT† curves per candidate size, and the plateau rule that picks one."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "multitask_curves", Path(__file__).parents[1] / "studies" / "multitask_curves.py"
)
curves = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(curves)


def test_smoke_curves_and_choice(tmp_path, monkeypatch):
    out = tmp_path / "curves.json"
    argv = ["c", "--profile", "smoke", "--images", "4", "8", "--val-images", "8", "--iterations", "3", "--tasks",
            "vqa", "nlvr2", "--workers", "1", "--root", str(tmp_path / "runs"), "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    curves.main()
    r = json.loads(out.read_text())
    assert {(x["task"], x["images"]) for x in r["runs"]} == {(t, n) for t in ("vqa", "nlvr2") for n in (4, 8)}
    assert all(0.0 <= x["final_val"] <= 1.0 and x["n_t"] >= 1 for x in r["runs"])
    means = {int(n): v["mean_final_val"] for n, v in r["summary"].items()}
    best = max(means.values())
    assert r["chosen_train_images"] == min(n for n, m in means.items() if m >= best - r["tol"])
