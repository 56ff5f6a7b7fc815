"""Run folders keyed by a hash of their config, so a finished run is reused and never silently mixed up.

    d = run_dir("runs", "pretrain", cfg)      # runs/pretrain-<12 hex>/
    prepare_run(d, cfg)                       # writes run_config.json; raises if d holds another config
    if is_done(d):
        result = load_done(d)                 # reuse the finished run instead of repeating it
    else:
        result = train(..., out_dir=d)        # train() resumes from d/checkpoint.pt if a run was killed

`cfg` is the whole run config (model, data and training settings) as plain JSON-able data. The engine
(`vilbert_lite.train.engine.train`) additionally refuses a folder whose `train_config.json` differs, and returns the
stored result when the folder already holds a finished run with the same TrainConfig.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

import torch

from vilbert_lite.errors import UserError

RUN_CONFIG = "run_config.json"
DONE = "DONE"


def _canonical(cfg: dict) -> str:
    """Sorted-key JSON: the same config always gives the same text (tuples become lists)."""
    return json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(cfg: dict) -> str:
    """Stable 12-hex-digit id of a config: sha256 of its sorted-key JSON."""
    return hashlib.sha256(_canonical(cfg).encode()).hexdigest()[:12]


def content_digest(path: str | Path) -> str:
    """What identifies a data file's content, for run keys (a run over edited data is another run): the sha256
    of a file's bytes; of a feature store folder's index.json (it lists every shard's sha256); of an LMDB's
    data.mdb size and modification time (LMDBs are too large to read whole)."""
    p = Path(path)
    if p.is_dir() and (p / "data.mdb").is_file():
        st = (p / "data.mdb").stat()
        return f"lmdb:{st.st_size}:{st.st_mtime_ns}"
    if p.is_dir():
        found = [p / "index.json"] if (p / "index.json").is_file() else sorted(p.glob("*/index.json"))
        if not found:
            raise UserError(f"{p}: not a feature store (no index.json) and not an LMDB (no data.mdb)")
        p = found[0]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    """Keys (dotted for nested dicts) whose values differ: {key: (old, new)}; missing shows as '<missing>'."""
    a, b = _flatten(json.loads(_canonical(old))), _flatten(json.loads(_canonical(new)))
    return {
        k: (a.get(k, "<missing>"), b.get(k, "<missing>"))
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    }


def format_diff(diff: dict[str, tuple]) -> str:
    """One line per differing key: `key: stored -> requested`."""
    return "\n".join(f"  {k}: {old!r} -> {new!r}" for k, (old, new) in diff.items())


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(f)` on a temp file in the same folder, fsync, then rename it over `path`:
    `path` always holds the old or the new content, never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, obj) -> None:
    """Write JSON atomically (see `atomic_write`)."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, default=str).encode()))


def atomic_torch_save(obj, path: str | Path) -> None:
    """`torch.save` atomically (see `atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one JSON line (a metrics row)."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def jsonl_to_csv(jsonl: str | Path, path: str | Path) -> None:
    """Write the rows of a JSONL file as CSV; the columns are the union of the keys, in first-seen order."""
    jsonl = Path(jsonl)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(text.getvalue().encode()))


def check_config(path: str | Path, cfg: dict, what: str = "config") -> None:
    """Raise ValueError listing the differing keys if the JSON file `path` exists and holds another config."""
    path = Path(path)
    if path.exists():
        diff = config_diff(json.loads(path.read_text()), cfg)
        if diff:
            raise UserError(
                f"run folder {path.parent} holds a different {what} (stored -> requested):\n"
                f"{format_diff(diff)}\n"
                "use another folder (e.g. vilbert_lite.runs.run_dir(root, kind, cfg)) or delete this one"
            )


def prepare_run(path: str | Path, cfg: dict) -> bool:
    """Create the run folder and its `run_config.json`. Returns True if the run is new, False if the folder
    already holds this same config (then check `is_done` to reuse it). Raises ValueError, listing the
    differing keys, if the folder holds a different config: a run folder is never silently reused."""
    f = Path(path) / RUN_CONFIG
    check_config(f, cfg, "run config")
    if f.exists():
        return False
    write_json(f, cfg)
    return True


def is_done(path: str | Path) -> bool:
    """True if the run in `path` finished (its DONE marker exists)."""
    return (Path(path) / DONE).exists()


def load_done(path: str | Path) -> dict:
    """The final numbers a finished run stored in its DONE marker (what `train` returned)."""
    return json.loads((Path(path) / DONE).read_text())


def project_root() -> Path:
    """The checkout holding this package (where `runs/` and `.cache/` go), or ~/.cache/vilbert_lite when the
    package is installed elsewhere (e.g. site-packages)."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() else Path.home() / ".cache" / "vilbert_lite"


def runs_root() -> Path:
    """Where run folders go by default: $VILBERT_LITE_RUNS, else `runs/` at the project root."""
    return Path(os.environ.get("VILBERT_LITE_RUNS", project_root() / "runs"))
