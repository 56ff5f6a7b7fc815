"""Run folders keyed by a hash of their config, so a finished run is reused and never silently mixed up.

    d = run_dir("runs", "pretrain", cfg)      # runs/pretrain-<12 hex>/
    prepare_run(d, cfg)                       # writes run_config.json; raises if d holds another config
    if is_done(d):
        result = load_done(d)                 # reuse the finished run instead of repeating it
    else:
        result = train(..., out_dir=d)        # train() resumes from d/checkpoint.pt if a run was killed

`cfg` is the whole run config (model, data and training settings) as plain JSON-able data. The engine
(`vilbert_lite.engine.train`) additionally refuses a folder whose `train_config.json` differs, and returns the
stored result when the folder already holds a finished run with the same TrainConfig.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

RUN_CONFIG = "run_config.json"
DONE = "DONE"


def _canonical(cfg: dict) -> str:
    """Sorted-key JSON: the same config always gives the same text (tuples become lists)."""
    return json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(cfg: dict) -> str:
    """Stable 12-hex-digit id of a config: sha256 of its sorted-key JSON."""
    return hashlib.sha256(_canonical(cfg).encode()).hexdigest()[:12]


def run_dir(root: str | Path, kind: str, cfg: dict) -> Path:
    """The folder for a run of `kind` (e.g. "pretrain") with this config: `root/kind-<hash>`."""
    return Path(root) / f"{kind}-{config_hash(cfg)}"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(old: dict, new: dict) -> dict[str, tuple]:
    """Keys (dotted for nested dicts) whose values differ: {key: (old, new)}; a missing key shows as '<missing>'."""
    a, b = _flatten(json.loads(_canonical(old))), _flatten(json.loads(_canonical(new)))
    return {
        k: (a.get(k, "<missing>"), b.get(k, "<missing>"))
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    }


def format_diff(diff: dict[str, tuple]) -> str:
    """One line per differing key: `key: stored -> requested`."""
    return "\n".join(f"  {k}: {old!r} -> {new!r}" for k, (old, new) in diff.items())


def write_json(path: str | Path, obj) -> None:
    """Write JSON atomically: temp file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def prepare_run(path: str | Path, cfg: dict) -> bool:
    """Create the run folder and its `run_config.json`. Returns True if the run is new, False if the folder
    already holds this same config (check `is_done` to reuse it). Raises ValueError, listing the differing
    keys, if the folder holds a different config: a run folder is never silently reused."""
    path = Path(path)
    f = path / RUN_CONFIG
    if f.exists():
        diff = config_diff(json.loads(f.read_text()), cfg)
        if diff:
            raise ValueError(
                f"run folder {path} holds a different config (stored -> requested):\n{format_diff(diff)}\n"
                "use another folder (e.g. run_dir(root, kind, cfg)) or delete this one"
            )
        return False
    write_json(f, cfg)
    return True


def is_done(path: str | Path) -> bool:
    """True if the run in `path` finished (its DONE marker exists)."""
    return (Path(path) / DONE).exists()


def load_done(path: str | Path) -> dict:
    """The final numbers a finished run stored in its DONE marker (what `train` returned)."""
    return json.loads((Path(path) / DONE).read_text())
