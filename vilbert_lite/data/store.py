"""The feature store: region features extracted once, cached on disk, keyed by the extractor's settings.

On-disk format (version 1)::

    ROOT/<key>/                      key = first 16 hex digits of sha256(settings as canonical JSON)
        settings.json                the settings dict the store was created with (e.g. RegionExtractor.settings)
        index.json                   {"format": "vilbert_lite.features", "version": 1, "key": <key>,
                                      "shards": [{"file": "shard-00000.safetensors", "sha256": <hex>,
                                                  "bytes": <int>, "image_ids": [<str>, ...]}, ...]}
        shard-00000.safetensors      one shard: up to `shard_size` images, all regions concatenated
        shard-00001.safetensors      ...

A shard is a safetensors file with five tensors (n images, N regions in all)::

    boxes    (N, 4) float32  x1 y1 x2 y2, pixels of the original image
    features (N, D) float32  region features
    cls_prob (N, C) float32  class distribution per region, rows sum to 1 (C may be 0 when a source has none)
    offsets  (n+1,) int64    image i owns rows offsets[i]:offsets[i+1]
    hw       (n, 2) int64    original image height, width

and metadata {"format": "vilbert_lite.features", "image_ids": JSON list of the n ids, in row order}.

Rules: shards are immutable. A write goes to a temporary file in the same folder, then `os.replace`; the index
(also written via temp file + `os.replace`) is the commit point, so an interrupted write leaves at most an
orphan file that the next open deletes, never a half-written shard that is used. Every shard's sha256 is checked
(once per process) before its features are read; a mismatch raises `CorruptShardError`, and `extract_features`
drops such shards and re-extracts their images. One writer at a time per store folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from vilbert_lite.data.items import RegionFeatures

FORMAT = "vilbert_lite.features"
FORMAT_VERSION = 1


class CorruptShardError(ValueError):
    """A shard's bytes do not match the checksum in the index."""


def settings_key(settings: dict[str, Any]) -> str:
    """Stable 16-hex-digit key of a settings dict (canonical JSON, sorted keys)."""
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FeatureStore:
    """Region features of many images in safetensors shards under ROOT/<settings-key>/ (see module docstring)."""

    def __init__(self, root: str | Path, settings: dict[str, Any], shard_size: int = 256):
        self.settings, self.shard_size = dict(settings), shard_size
        self.key = settings_key(self.settings)
        self.path = Path(root) / self.key
        self.path.mkdir(parents=True, exist_ok=True)
        self._verified: set[str] = set()
        self.extracted = 0  # set by extract_features: images extracted by the last call
        index_file = self.path / "index.json"
        if index_file.exists():
            try:
                self.index = json.loads(index_file.read_text())
                self.index["shards"]  # noqa: B018 - must exist
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"feature store index {index_file} is malformed: {e}") from e
        else:
            self.index = {"format": FORMAT, "version": FORMAT_VERSION, "key": self.key, "shards": []}
            _atomic_write_text(
                self.path / "settings.json", json.dumps(self.settings, indent=1, sort_keys=True)
            )
            self._write_index()
        self._rebuild_lookup()
        self._remove_orphans()

    @classmethod
    def open(cls, path: str | Path) -> FeatureStore:
        """Open an existing store from its folder (with index.json), or a root that holds exactly one store."""
        path = Path(path)
        if not (path / "index.json").exists():
            subs = [p for p in path.glob("*/index.json")] if path.is_dir() else []
            if len(subs) != 1:
                raise FileNotFoundError(
                    f"{path}: expected a feature store folder or a root with exactly one store "
                    f"(found {len(subs)})"
                )
            path = subs[0].parent
        settings = json.loads((path / "settings.json").read_text())
        store = cls(path.parent, settings)
        if store.path.resolve() != path.resolve():
            raise ValueError(f"{path}: settings.json does not hash to the folder name {path.name}")
        return store

    # -- reading -------------------------------------------------------------------------------------------------

    def _rebuild_lookup(self) -> None:
        self._where: dict[str, tuple[str, int]] = {}
        for shard in self.index["shards"]:
            for i, image_id in enumerate(shard["image_ids"]):
                self._where[image_id] = (shard["file"], i)

    def _remove_orphans(self) -> None:
        """Delete leftovers of interrupted writes: temp files and shard files the index does not list."""
        listed = {s["file"] for s in self.index["shards"]}
        for p in self.path.iterdir():
            if p.name.startswith(".tmp-") or (p.name.startswith("shard-") and p.name not in listed):
                p.unlink(missing_ok=True)

    def __contains__(self, image_id: object) -> bool:
        return str(image_id) in self._where

    def __len__(self) -> int:
        return len(self._where)

    def ids(self) -> list[str]:
        """All image ids in the store, in shard order."""
        return list(self._where)

    def verify(self, force: bool = False) -> list[str]:
        """Check every shard's sha256 (and size) against the index -> names of the bad shards."""
        bad = []
        for shard in self.index["shards"]:
            if not force and shard["file"] in self._verified:
                continue
            try:
                self._check(shard)
            except CorruptShardError:
                bad.append(shard["file"])
        return bad

    def _check(self, shard: dict[str, Any]) -> None:
        p = self.path / shard["file"]
        if not p.exists():
            raise CorruptShardError(f"feature shard {p} is missing")
        if p.stat().st_size != shard["bytes"] or file_sha256(p) != shard["sha256"]:
            raise CorruptShardError(
                f"feature shard {p} is corrupt (sha256 mismatch); re-run extraction to rebuild it"
            )
        self._verified.add(shard["file"])

    def get(self, image_id: str) -> RegionFeatures:
        """The stored RegionFeatures of one image; KeyError if absent, CorruptShardError if its shard is bad."""
        image_id = str(image_id)
        if image_id not in self._where:
            raise KeyError(f"image {image_id!r} has no features in the store {self.path}")
        name, i = self._where[image_id]
        if name not in self._verified:
            self._check(next(s for s in self.index["shards"] if s["file"] == name))
        with safe_open(self.path / name, framework="numpy") as f:
            a, b = (int(v) for v in f.get_slice("offsets")[i : i + 2])
            h, w = (int(v) for v in f.get_slice("hw")[i])
            return RegionFeatures(
                image_id=image_id,
                image_h=h,
                image_w=w,
                boxes=f.get_slice("boxes")[a:b],
                features=f.get_slice("features")[a:b],
                cls_prob=f.get_slice("cls_prob")[a:b],
            )

    __getitem__ = get

    # -- writing -------------------------------------------------------------------------------------------------

    def _write_index(self) -> None:
        _atomic_write_text(self.path / "index.json", json.dumps(self.index, indent=1))

    def _dims(self) -> tuple[int, int] | None:
        """(feature width, class count) of the stored shards, or None when empty."""
        for shard in self.index["shards"]:
            with safe_open(self.path / shard["file"], framework="numpy") as f:
                return f.get_slice("features").get_shape()[1], f.get_slice("cls_prob").get_shape()[1]
        return None

    def add_many(self, records: Iterable[RegionFeatures]) -> int:
        """Append records (ids already stored are skipped) in new shards; each shard commits atomically -> count."""
        dims, added, buf = self._dims(), 0, []
        for rf in records:
            rf_id = str(rf.image_id)
            if rf_id in self._where or any(str(r.image_id) == rf_id for r in buf):
                continue
            _validate(rf, dims)
            dims = dims or (rf.features.shape[1], rf.cls_prob.shape[1])
            buf.append(rf)
            if len(buf) == self.shard_size:
                added += self._write_shard(buf)
                buf = []
        if buf:
            added += self._write_shard(buf)
        return added

    def _write_shard(self, recs: list[RegionFeatures]) -> int:
        taken = {s["file"] for s in self.index["shards"]}
        n = len(self.index["shards"])
        while f"shard-{n:05d}.safetensors" in taken or (self.path / f"shard-{n:05d}.safetensors").exists():
            n += 1
        name = f"shard-{n:05d}.safetensors"
        counts = [len(r.boxes) for r in recs]
        tensors = {
            "boxes": np.concatenate([np.asarray(r.boxes, np.float32).reshape(-1, 4) for r in recs]),
            "features": np.concatenate([np.asarray(r.features, np.float32) for r in recs]),
            "cls_prob": np.concatenate([np.asarray(r.cls_prob, np.float32) for r in recs]),
            "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            "hw": np.array([[r.image_h, r.image_w] for r in recs], np.int64).reshape(-1, 2),
        }
        ids = [str(r.image_id) for r in recs]
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=".safetensors")
        os.close(fd)
        final = self.path / name
        try:
            save_file(tensors, tmp, metadata={"format": FORMAT, "image_ids": json.dumps(ids)})
            os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
            entry = {
                "file": name,
                "sha256": file_sha256(tmp),
                "bytes": os.path.getsize(tmp),
                "image_ids": ids,
            }
            os.replace(tmp, final)
            self.index["shards"].append(entry)
            try:
                self._write_index()  # the commit point
            except BaseException:
                self.index["shards"].pop()
                final.unlink(missing_ok=True)
                raise
        finally:
            Path(tmp).unlink(missing_ok=True)
        self._verified.add(name)
        self._rebuild_lookup()
        return len(recs)

    def drop_shards(self, names: Iterable[str]) -> list[str]:
        """Remove shards from the index (committed first) and delete their files -> the image ids they held."""
        names = set(names)
        dropped = [s for s in self.index["shards"] if s["file"] in names]
        self.index["shards"] = [s for s in self.index["shards"] if s["file"] not in names]
        self._write_index()
        for s in dropped:
            (self.path / s["file"]).unlink(missing_ok=True)
            self._verified.discard(s["file"])
        self._rebuild_lookup()
        return [i for s in dropped for i in s["image_ids"]]


def _validate(rf: RegionFeatures, dims: tuple[int, int] | None) -> None:
    """Shapes of one record agree with themselves and with the store -> ValueError naming the image."""
    n = len(rf.boxes)
    shapes = (np.shape(rf.boxes), np.shape(rf.features), np.shape(rf.cls_prob))
    if (
        shapes[0] != (n, 4)
        or len(shapes[1]) != 2
        or shapes[1][0] != n
        or len(shapes[2]) != 2
        or shapes[2][0] != n
    ):
        raise ValueError(
            f"image {rf.image_id!r}: inconsistent region shapes boxes/features/cls_prob {shapes}"
        )
    if dims is not None and (shapes[1][1], shapes[2][1]) != dims:
        raise ValueError(
            f"image {rf.image_id!r}: feature width {shapes[1][1]} / classes {shapes[2][1]} do not "
            f"match the store's {dims[0]} / {dims[1]}"
        )


def extract_features(
    images: Iterable[tuple[str, Any, Any]],
    root: str | Path,
    extractor: Any,
    batch_size: int = 16,
    total: int | None = None,
    progress: bool = True,
    shard_size: int = 256,
) -> FeatureStore:
    """Extract (image_id, image-or-path, boxes-or-None) items into the store for `extractor.settings`.

    Only images missing from the store are extracted; corrupt shards are dropped first (with a warning) so their
    images are extracted again. Results are committed one shard at a time, so an interrupted run keeps what it
    finished. `store.extracted` holds how many images this call extracted; `total` only sizes the progress bar.
    """
    store = FeatureStore(root, extractor.settings, shard_size=shard_size)
    bad = store.verify()
    if bad:
        warnings.warn(
            f"{store.path}: corrupt shards {bad} (checksum mismatch) dropped; re-extracting their images",
            stacklevel=2,
        )
        store.drop_shards(bad)
    seen: set[str] = set()

    def missing() -> Iterable[tuple[str, Any, Any]]:  # streamed: images are loaded only when extracted
        for image_id, image, boxes in images:
            if str(image_id) not in store and str(image_id) not in seen:
                seen.add(str(image_id))
                yield str(image_id), image, boxes

    records = extractor.extract_many(missing(), batch_size=batch_size, progress=progress, total=total)
    store.extracted = store.add_many(records)
    return store
