"""studies/pretrain_yardsticks.py: each Table 2 / Table 3 row finds its own pretraining runs and nothing else."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.profiles import get_profile
from vilbert_lite.repro import experiments

_spec = importlib.util.spec_from_file_location(
    "pretrain_yardsticks", Path(__file__).parents[1] / "studies" / "pretrain_yardsticks.py"
)
yardsticks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(yardsticks)


def fake_run(root: Path, name: str, seed: int, fraction: float, overrides: dict, alignment: float,
             kind: str = "pretrain", color: float = 0.4, shape: float = 0.3, steps: int = 10) -> None:  # fmt: skip
    model = ViLBertConfig.preset(get_profile("smoke").model_preset, **overrides).to_dict()
    model["v_feature_size"] = 112  # set by the features, not by the row: ignored by the matching
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "run_config.json").write_text(json.dumps(
        {"kind": kind, "profile": "smoke", "seed": seed, "corpus_fraction": fraction, "model": model}
    ))  # fmt: skip
    ev = {"alignment_acc": alignment, "mlm_acc": 0.5, "color_acc": color, "shape_acc": shape, "steps": steps,
          "train_wall_time_s": 2.0}  # fmt: skip
    (folder / "eval.json").write_text(json.dumps(ev))


def test_rows_find_their_runs(tmp_path, monkeypatch):
    root, out = tmp_path / "runs", tmp_path / "y.json"
    cells = dict(experiments.table_cells("table2", "smoke"))
    deep, shallow = max(cells), min(cells)
    fake_run(root, "pretrain-a", 0, 1.0, cells[deep]["config_overrides"], 0.6)
    fake_run(root, "pretrain-b", 1, 1.0, cells[deep]["config_overrides"], 0.8)
    fake_run(root, "pretrain-c", 0, 1.0, cells[shallow]["config_overrides"], 0.9)
    fake_run(root, "pretrain-d", 0, 0.5, {}, 0.7)  # Table 3's 50 % row (the default depth)
    (root / "pretrain-e").mkdir()  # unfinished: no eval.json
    monkeypatch.setattr(sys, "argv", ["y", "--profile", "smoke", "--root", str(root), "--json", str(out)])
    yardsticks.main()
    rows = {(r["table"], r["row"]): r for r in json.loads(out.read_text())["rows"]}
    assert rows["table2", deep]["runs"] == ["pretrain-a", "pretrain-b"]
    assert rows["table2", deep]["alignment_acc"][0] == 0.7 and rows["table2", deep]["seeds"] == 2
    assert rows["table2", shallow]["runs"] == ["pretrain-c"]
    assert rows["table3", 0.5]["runs"] == ["pretrain-d"] and ("table3", 0.0) not in rows


def test_text_only_twins_pair_with_the_default_row_by_seed(tmp_path, monkeypatch):
    root, out = tmp_path / "runs", tmp_path / "y.json"
    for seed, color, shape in [(0, 0.6, 0.4), (1, 0.7, 0.5), (2, 0.5, 0.3)]:
        fake_run(root, f"pretrain-{seed}", seed, 1.0, {}, 0.8, color=color, shape=shape)
    fake_run(
        root, "pretrain-q", 0, 0.25, {}, 0.6, color=0.9, shape=0.9
    )  # Table 3's 25 %: not the default row
    for seed, color, shape in [(0, 0.3, 0.2), (1, 0.3, 0.3)]:
        fake_run(root, f"pretrain_text_only-{seed}", seed, 1.0, {}, 0.5, "pretrain_text_only", color, shape)
    fake_run(root, "pretrain_text_only-long", 2, 1.0, {}, 0.5, "pretrain_text_only", 0.0, 0.0, steps=99)
    monkeypatch.setattr(sys, "argv", ["y", "--profile", "smoke", "--root", str(root), "--json", str(out)])
    yardsticks.main()
    res = json.loads(out.read_text())
    twins = [r for r in res["rows"] if r["table"] == "text-only"]
    assert [r["runs"] for r in twins] == [
        ["pretrain_text_only-0", "pretrain_text_only-1"]
    ]  # other recipe left out
    gain = res["image_gain"]
    assert gain["color_acc"]["seeds"] == [0, 1] and gain["color_acc"]["per_seed"] == [0.3, 0.4]
    assert gain["shape_acc"]["mean"] == 0.2 and gain["shape_acc"]["std"] == 0.0
    lo, hi = gain["color_acc"]["ci95"]
    assert lo < 0.35 < hi and abs((lo + hi) / 2 - 0.35) < 1e-4
