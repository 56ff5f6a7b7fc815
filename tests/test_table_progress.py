"""tools/table_progress.py: it finds a table's runs under the keys `experiments.run_cell` gives them."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "table_progress", Path(__file__).parents[1] / "tools" / "table_progress.py"
)
table_progress = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(table_progress)


def test_a_finished_run_counts_and_nothing_is_trained_or_written(tmp_path, monkeypatch):
    root, out = tmp_path / "runs", tmp_path / "progress.json"
    argv = ["table_progress.py", "--profile", "smoke", "--seeds", "1", "--tables", "table1", "--root", str(root),
            "--json", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    table_progress.main()
    first = json.loads(out.read_text())["table1"]
    # 1 seed of Table 1: ViLBERT and the single stream pretrain; 1 + 4 + 4 + 6 + 6 fine-tunings
    assert first["pretrain"] == [0, 2] and first["finetune"] == [0, 21]
    assert not root.exists()  # probing fixes each run's folder name without creating it
    question_only = next(p for p in first["pending"] if p.endswith("(question_only, seed 0)"))
    folder = root / question_only.split(" ")[0]
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(
        json.dumps({"config_hash": folder.name.split("-")[-1], "wall_time_s": 36})
    )
    table_progress.main()
    second = json.loads(out.read_text())["table1"]
    assert (
        second["finetune"] == [1, 21]
        and second["finetune_s"] == 36.0
        and question_only not in second["pending"]
    )
