"""Tests of run folders keyed by config hash."""

from __future__ import annotations

import json

import pytest

from vilbert_lite import runs

CFG = {"model": {"preset": "tiny", "dropout": 0.1}, "train": {"lr": 1e-3, "betas": (0.9, 0.98)}, "seed": 0}


def test_config_hash_is_stable():
    h = runs.config_hash(CFG)
    assert len(h) == 12 and all(c in "0123456789abcdef" for c in h)
    reordered = {
        "seed": 0,
        "train": {"betas": [0.9, 0.98], "lr": 0.001},
        "model": {"dropout": 0.1, "preset": "tiny"},
    }
    assert runs.config_hash(reordered) == h  # key order and tuple/list do not matter
    assert runs.config_hash({**CFG, "seed": 1}) != h
    assert h == "30615411ae5f"  # the same across processes and sessions (sha256 of sorted-key JSON)


def test_run_dir_and_prepare_run(tmp_path):
    d = runs.run_dir(tmp_path, "pretrain", CFG)
    assert d == tmp_path / f"pretrain-{runs.config_hash(CFG)}"
    assert runs.prepare_run(d, CFG) is True  # new
    assert json.loads((d / "run_config.json").read_text())["model"] == CFG["model"]
    assert runs.prepare_run(d, json.loads(json.dumps(CFG))) is False  # same config: existing run
    assert not runs.is_done(d)
    runs.write_json(d / "DONE", {"final_loss": 0.5})
    assert runs.is_done(d) and runs.load_done(d) == {"final_loss": 0.5}


def test_prepare_run_refuses_a_different_config(tmp_path):
    runs.prepare_run(tmp_path, CFG)
    other = {**CFG, "model": {"preset": "small", "dropout": 0.1}, "extra": 1}
    with pytest.raises(ValueError, match="different run config") as err:
        runs.prepare_run(tmp_path, other)
    assert "model.preset: 'tiny' -> 'small'" in str(err.value) and "extra: '<missing>' -> 1" in str(err.value)
    assert "dropout" not in str(err.value)
    assert json.loads((tmp_path / "run_config.json").read_text())["model"]["preset"] == "tiny"  # untouched


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "x.json"
    runs.write_json(path, {"a": 1})

    def crash(f):
        f.write(b'{"a": 2, "broken')
        raise OSError("killed")

    with pytest.raises(OSError):
        runs.atomic_write(path, crash)
    assert json.loads(path.read_text()) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["x.json"]
