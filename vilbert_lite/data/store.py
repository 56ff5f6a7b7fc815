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
drops such shards (naming them in a warning) and re-extracts their images. One writer at a time per store folder:
`extract_features` holds an exclusive lock on `ROOT/.<settings-key>.lock` while it writes, so two processes
extracting into one store take turns (the second then finds the first's images and extracts only the rest), and
opening a store deletes leftovers of interrupted writes only when no writer holds the lock.

Extraction commits as it goes: every batch of images becomes a small shard named `part-NNNNN.safetensors` (same
layout, listed in the index like any shard); once the parts hold `shard_size` images they are merged into a
`shard-NNNNN.safetensors`, and at the end of `extract_features` the rest is merged into a last shard. So a killed
extraction loses at most its last batch, and the next identical call continues and ends with the same files,
byte for byte, as an uninterrupted one (same images in the same order, same shard boundaries).

Images the extractor cannot read (with on_error="skip") are listed in `skipped.jsonl` next to the index, one JSON
object per line: {"image_id", "path", "reason"}; an image leaves the list once it is stored.

A store knows which file each image came from. `sources.jsonl` holds one JSON line per image extracted from a
file: {"image_id", "path" (resolved), "size", "mtime_ns", "sha256" (of the file's bytes), "boxes" (sha256 of the
given boxes, or null for proposals)}, the last line of an id winning; a line is appended before the index that
lists its image commits. Given a list of items, `extract_features` first compares each stored image with its file
(`FeatureStore.refresh`): same size and modification time, or else the same content hash, is the same image; a
file whose content changed, or that was stored with no record of its file, is "changed" and extracted again; an
image whose recorded file no longer exists and that the items do not name is "vanished" and dropped. So the same
id always means the features of the file that is there now. Test hook:
VILBERT_LITE_TEST_KILL_AFTER=N makes `extract_features` kill its own process (SIGKILL, as `kill -9`) once it has
extracted N images, before committing the batch that reached N.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file
from tqdm.auto import tqdm

from vilbert_lite.data.items import RegionFeatures
from vilbert_lite.errors import UserError
from vilbert_lite.runs import project_root

try:  # POSIX advisory locks; where there are none (Windows), one writer at a time is the user's to keep
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

FORMAT = "vilbert_lite.features"
FORMAT_VERSION = 1
REPORT = "skipped.jsonl"  # images extract_features could not read (on_error="skip")
SOURCES = "sources.jsonl"  # the file each image was extracted from (see the module docstring)
ON_ERROR = ("skip", "stop")
KILL_AFTER_ENV = "VILBERT_LITE_TEST_KILL_AFTER"  # test hook, see the module docstring


class CorruptShardError(UserError):
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


def file_identity(path: str | Path) -> dict[str, Any]:
    """What identifies an image file cheaply: its resolved path, size and modification time (ns)."""
    p = Path(path)
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def boxes_digest(boxes: Any) -> str | None:
    """sha256 of given boxes as float32 (None for proposal boxes): the same file with other boxes is another item."""
    if boxes is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(np.asarray(boxes, np.float32)).tobytes()).hexdigest()


def source_record(image_id: str, path: str | Path, boxes: Any) -> dict[str, Any]:
    """The sources.jsonl line of an image about to be extracted from `path`."""
    return {"image_id": str(image_id), **file_identity(path), "sha256": file_sha256(path),
            "boxes": boxes_digest(boxes)}  # fmt: skip


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
        self.skipped: list[dict] = []  # set by extract_features: images the last call could not read
        self.changed: list[str] = []  # set by extract_features: stored images whose file changed
        self.vanished: list[str] = []  # set by extract_features: stored images whose file is gone (dropped)
        index_file = self.path / "index.json"
        if index_file.exists():
            try:
                self.index = json.loads(index_file.read_text())
                self.index["shards"]  # noqa: B018 - must exist
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise UserError(
                    f"feature store index {index_file} is malformed ({e}); delete the folder {self.path} "
                    "and extract again"
                ) from e
        else:
            self.index = {"format": FORMAT, "version": FORMAT_VERSION, "key": self.key, "shards": []}
            _atomic_write_text(
                self.path / "settings.json", json.dumps(self.settings, indent=1, sort_keys=True)
            )
            self._write_index()
        self._rebuild_lookup()
        if _no_writer(
            self.path
        ):  # a writer at work may have files its index does not list yet: not leftovers
            self._remove_orphans()
        self.sources = self._read_sources()

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
            raise UserError(f"{path}: settings.json does not hash to the folder name {path.name}")
        return store

    # -- reading -------------------------------------------------------------------------------------------------

    def _rebuild_lookup(self) -> None:
        self._where: dict[str, tuple[str, int]] = {}
        for shard in self.index["shards"]:
            for i, image_id in enumerate(shard["image_ids"]):
                self._where[image_id] = (shard["file"], i)

    def _remove_orphans(self) -> None:
        """Delete leftovers of interrupted writes: temp files and shard / part files the index does not list."""
        listed = {s["file"] for s in self.index["shards"]}
        for p in self.path.iterdir():
            if p.name.startswith(".tmp-") or (
                p.name.startswith(("shard-", "part-")) and p.name not in listed
            ):
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
            raise CorruptShardError(f"feature shard {p} is missing; re-run extraction to rebuild it")
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

    def _read(self, shard: dict[str, Any]) -> list[RegionFeatures]:
        """Every record of one shard (checksum verified first), in row order."""
        if shard["file"] not in self._verified:
            self._check(shard)
        t = load_file(self.path / shard["file"])
        o = t["offsets"]
        return [
            RegionFeatures(i, int(h), int(w), t["boxes"][a:b], t["features"][a:b], t["cls_prob"][a:b])
            for i, (h, w), a, b in zip(shard["image_ids"], t["hw"], o[:-1], o[1:])
        ]

    # -- writing -------------------------------------------------------------------------------------------------

    def _write_index(self) -> None:
        _atomic_write_text(self.path / "index.json", json.dumps(self.index, indent=1))

    def _dims(self) -> tuple[int, int] | None:
        """(feature width, class count) of the stored shards, or None when empty."""
        for shard in self.index["shards"]:
            with safe_open(self.path / shard["file"], framework="numpy") as f:
                return f.get_slice("features").get_shape()[1], f.get_slice("cls_prob").get_shape()[1]
        return None

    def _new(self, records: Iterable[RegionFeatures], dims: tuple[int, int] | None) -> list[RegionFeatures]:
        """The records whose ids are not stored yet (first of each id), each checked against the store's widths."""
        out, ids = [], set()
        for rf in records:
            rf_id = str(rf.image_id)
            if rf_id in self._where or rf_id in ids:
                continue
            _validate(rf, dims)
            dims = dims or (rf.features.shape[1], rf.cls_prob.shape[1])
            out.append(rf)
            ids.add(rf_id)
        return out

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
                added += self._commit_new([self._save(buf, "shard")])
                buf = []
        if buf:
            added += self._commit_new([self._save(buf, "shard")])
        return added

    def add_part(self, records: Iterable[RegionFeatures], sources: dict[str, dict] | None = None) -> int:
        """Commit records at once as one part file (ids already stored are skipped), with the `sources` records
        (image_id -> `source_record`) of those extracted from files; once the parts hold `shard_size` images they
        are merged into full shards (`compact`) -> count added."""
        recs = self._new(records, self._dims())
        if recs:
            self._append_sources([sources[r.image_id] for r in recs if sources and r.image_id in sources])
            self._commit_new([self._save(recs, "part")])
        if sum(len(s["image_ids"]) for s in self._parts()) >= self.shard_size:
            self.compact()
        return len(recs)

    def _parts(self) -> list[dict[str, Any]]:
        return [s for s in self.index["shards"] if s["file"].startswith("part-")]

    def compact(self, final: bool = False) -> None:
        """Merge the part files, in index order, into shards of `shard_size` images; with `final`, the remainder
        too (into one last shard), else it stays a part. New files and the index commit before parts are deleted."""
        parts = self._parts()
        recs = [r for s in parts for r in self._read(s)]
        full = len(recs) if final else len(recs) // self.shard_size * self.shard_size
        if not full:
            return
        shards = [self._save(recs[a : a + self.shard_size], "shard") for a in range(0, full, self.shard_size)]
        rest = [self._save(recs[full:], "part")] if full < len(recs) else []
        kept = [s for s in self.index["shards"] if s not in parts]
        self._commit(kept + shards + rest, new=shards + rest)

    def _save(self, recs: list[RegionFeatures], prefix: str) -> dict[str, Any]:
        """Write records to a new immutable file `<prefix>-NNNNN.safetensors` -> its index entry (not committed)."""
        taken = {s["file"] for s in self.index["shards"]}
        n = sum(s["file"].startswith(prefix + "-") for s in self.index["shards"])
        while (
            f"{prefix}-{n:05d}.safetensors" in taken or (self.path / f"{prefix}-{n:05d}.safetensors").exists()
        ):
            n += 1
        name = f"{prefix}-{n:05d}.safetensors"
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
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(safetensors_bytes(tensors, {"format": FORMAT, "image_ids": json.dumps(ids)}))
            os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
            entry = {
                "file": name,
                "sha256": file_sha256(tmp),
                "bytes": os.path.getsize(tmp),
                "image_ids": ids,
            }
            os.replace(tmp, self.path / name)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return entry

    def _commit_new(self, new: list[dict[str, Any]]) -> int:
        """Append new entries to the index and commit -> how many images they hold."""
        self._commit(self.index["shards"] + new, new)
        return sum(len(s["image_ids"]) for s in new)

    def _commit(self, shards: list[dict[str, Any]], new: list[dict[str, Any]] = ()) -> None:
        """Make the index list exactly `shards` (one atomic write: the commit point), then delete the files of
        the entries it no longer lists. If the write fails, the index is unchanged and the `new` files go."""
        old, self.index["shards"] = self.index["shards"], shards
        try:
            self._write_index()
        except BaseException:
            self.index["shards"] = old
            for s in new:
                (self.path / s["file"]).unlink(missing_ok=True)
            raise
        self._verified.update(s["file"] for s in new)
        listed = {s["file"] for s in shards}
        for s in old:
            if s["file"] not in listed:
                (self.path / s["file"]).unlink(missing_ok=True)
                self._verified.discard(s["file"])
        self._rebuild_lookup()

    def drop_shards(self, names: Iterable[str]) -> list[str]:
        """Remove shards from the index (committed first) and delete their files -> the image ids they held."""
        names = set(names)
        dropped = [s for s in self.index["shards"] if s["file"] in names]
        self._commit([s for s in self.index["shards"] if s["file"] not in names])
        return [i for s in dropped for i in s["image_ids"]]

    def remove(self, image_ids: Iterable[str]) -> list[str]:
        """Take images out of the store: each shard holding one is rewritten without it (one index commit)
        -> the ids removed."""
        ids = {str(i) for i in image_ids} & set(self._where)
        if not ids:
            return []
        shards, new = [], []
        for shard in self.index["shards"]:
            if not ids & set(shard["image_ids"]):
                shards.append(shard)
                continue
            keep = [r for r in self._read(shard) if r.image_id not in ids]
            if keep:
                entry = self._save(keep, shard["file"].split("-")[0])
                shards.append(entry)
                new.append(entry)
        self._commit(shards, new)
        return sorted(ids)

    # -- which file each image came from -------------------------------------------------------------------------

    def _read_sources(self) -> dict[str, dict[str, Any]]:
        """sources.jsonl -> {image_id: its latest record}; a torn last line (a killed append) is ignored."""
        f, out = self.path / SOURCES, {}
        for line in f.read_text().splitlines() if f.exists() else []:
            try:
                rec = json.loads(line)
                out[str(rec["image_id"])] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        return out

    def _append_sources(self, records: list[dict[str, Any]]) -> None:
        """Append records to sources.jsonl (synced) before the index that lists their images commits."""
        if not records:
            return
        with open(self.path / SOURCES, "a") as f:
            f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())
        self.sources.update({r["image_id"]: r for r in records})

    def _compact_sources(self) -> None:
        """Rewrite sources.jsonl with one line per stored image (its latest record), in store order: after a
        resumed or repaired extraction it is byte for byte the file of an uninterrupted one."""
        rows = [self.sources[i] for i in self.ids() if i in self.sources]
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        f = self.path / SOURCES
        if rows and (not f.exists() or f.read_text() != text):
            _atomic_write_text(f, text)
        elif not rows:
            f.unlink(missing_ok=True)

    def refresh(self, items: Iterable[tuple[str, Any, Any]]) -> tuple[list[str], list[str]]:
        """Check the stored images against the (image_id, image-or-path, boxes) items -> (changed, vanished) ids,
        both already removed from the store so that changed ones are extracted again (see the module docstring).
        Items given as arrays are trusted (their store is keyed by what made them, e.g. the synthetic world)."""
        changed, named, moved = [], set(), []
        for image_id, image, boxes in items:
            image_id = str(image_id)
            named.add(image_id)
            if image_id not in self._where or not isinstance(image, (str, Path)):
                continue
            try:
                rec, now = self.sources.get(image_id), file_identity(image)
            except OSError:  # named but gone or unreadable: extracted again, where the extractor reports it
                changed.append(image_id)
                continue
            if rec is None or rec.get("boxes") != boxes_digest(boxes):
                changed.append(image_id)  # no record of its file (an older store), or other boxes
            elif any(rec.get(k) != now[k] for k in ("path", "size", "mtime_ns")):
                if file_sha256(image) == rec.get("sha256"):
                    moved.append({**rec, **now})  # touched or moved, same bytes: same image
                else:
                    changed.append(image_id)
        vanished = sorted(i for i, r in self.sources.items()
                          if i in self._where and i not in named and not Path(r["path"]).exists())  # fmt: skip
        self._append_sources(moved)
        self.remove(changed + vanished)
        return changed, vanished

    # -- the report of unreadable images -------------------------------------------------------------------------

    def report(self) -> list[dict[str, Any]]:
        """The images extraction could not read and that are still not stored: [{image_id, path, reason}]."""
        f = self.path / REPORT
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.exists() else []
        return [r for r in rows if r["image_id"] not in self]

    def _write_report(self, skipped: list[dict[str, Any]]) -> None:
        rows = {r["image_id"]: r for r in self.report()}
        rows.update({r["image_id"]: r for r in skipped})
        if rows:
            _atomic_write_text(self.path / REPORT, "".join(json.dumps(r) + "\n" for r in rows.values()))
        else:
            (self.path / REPORT).unlink(missing_ok=True)


def safetensors_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """A safetensors file whose bytes depend only on its content: metadata keys sorted, tensors by item size
    (widest first, so each stays aligned) and then name, as the library orders them. (`safetensors.numpy.save`
    writes the metadata in hash-map order, which changes from process to process.)"""
    kinds = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors, key=lambda k: (-tensors[k].dtype.itemsize, k)):
        a = np.ascontiguousarray(tensors[name], tensors[name].dtype.newbyteorder("<"))
        blobs.append(a.tobytes())
        header[name] = {
            "dtype": kinds[a.dtype],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + a.nbytes],
        }
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the tensor data starts 8-byte aligned, as the library writes it
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


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


# ---------------------------------------------------------------------------------------------------------------
# extraction


def _skip_entry(item: tuple[str, Any, Any], e: BaseException) -> dict[str, Any]:
    image_id, image, _ = item
    path = str(image) if isinstance(image, (str, Path)) else getattr(e, "path", None)
    return {"image_id": str(image_id), "path": None if path is None else str(path),
            "reason": getattr(e, "reason", None) or str(e)}  # fmt: skip


def _extract_chunk(extractor: Any, chunk: list, on_error: str, skipped: list[dict]) -> list[RegionFeatures]:
    """Region features of a chunk of items (one extractor batch). When an image cannot be read (UserError or
    OSError) and on_error="skip", the chunk is retried one item at a time and each item that fails on its own is
    added to `skipped`; with on_error="stop" the error propagates."""
    try:
        return list(extractor.extract_many(chunk, batch_size=len(chunk), progress=False))
    except (UserError, OSError) as e:
        if on_error == "stop":
            raise
        if len(chunk) == 1:
            skipped.append(_skip_entry(chunk[0], e))
            return []
    return [rf for item in chunk for rf in _extract_chunk(extractor, [item], on_error, skipped)]


@contextmanager
def writer_lock(store_path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the store's exclusive writer lock (a file beside the store folder) -> True; with wait=False and
    another process holding it -> False at once (nothing is held)."""
    if fcntl is None:  # pragma: no cover
        yield True
        return
    store_path = Path(store_path)
    store_path.parent.mkdir(parents=True, exist_ok=True)
    with open(store_path.parent / f".{store_path.name}.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _no_writer(store_path: Path) -> bool:
    """Whether no process is writing the store now, found without creating anything (opening a committed
    store must leave the checkout as it is): every writer creates the lock file first, so no file = no writer."""
    lock = store_path.parent / f".{store_path.name}.lock"
    if fcntl is None or not lock.exists():
        return True
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def extract_features(
    images: Iterable[tuple[str, Any, Any]],
    root: str | Path,
    extractor: Any,
    batch_size: int = 16,
    total: int | None = None,
    progress: bool = True,
    shard_size: int = 256,
    on_error: str = "stop",
) -> FeatureStore:
    """Extract (image_id, image-or-path, boxes-or-None) items into the store for `extractor.settings`.

    Only images missing from the store are extracted; corrupt shards are dropped first (with a warning naming
    them) so their images are extracted again. Every batch of `batch_size` images is committed as it finishes
    (see the module docstring), so a killed run keeps what it finished and the next call continues.
    on_error: "stop" raises on the first image the extractor cannot read (a UserError such as a truncated file,
    or an OSError); "skip" leaves it out, records (image_id, path, reason) in `store.skipped` and in the store's
    skipped.jsonl, and goes on. `store.extracted` holds how many images this call extracted; `total` only sizes
    the progress bar.
    """
    if on_error not in ON_ERROR:
        raise UserError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    with writer_lock(Path(root) / settings_key(extractor.settings)):
        return _extract_locked(images, root, extractor, batch_size, total, progress, shard_size, on_error)


def _extract_locked(
    images, root, extractor, batch_size, total, progress, shard_size, on_error
) -> FeatureStore:
    store = FeatureStore(root, extractor.settings, shard_size=shard_size)
    store._remove_orphans()  # under the writer lock: whatever the index does not list is a leftover
    bad = store.verify()
    if bad:
        lost = store.drop_shards(bad)
        warnings.warn(
            f"{store.path}: shard(s) {', '.join(bad)} failed the checksum check (corrupt); dropped, "
            f"re-extracting their {len(lost)} images",
            stacklevel=2,
        )
    store.extracted, store.skipped, store.changed, store.vanished = 0, [], [], []
    if isinstance(images, Sequence):  # a list of items: check the stored images against their files first
        store.changed, store.vanished = store.refresh(images)
        if total is None:
            total = sum(str(i) not in store for i, _, _ in images)
    if store.changed or store.vanished:
        warnings.warn(f"{store.path}: {change_summary(store)}", stacklevel=2)
    kill_after = int(os.environ.get(KILL_AFTER_ENV, "0") or 0)
    todo = _missing(images, store)
    bar = tqdm(total=total, desc="extract", unit="img", disable=not progress or total == 0)
    try:
        while chunk := list(islice(todo, max(1, batch_size))):
            sources = _source_records(chunk)
            records = _extract_chunk(extractor, chunk, on_error, store.skipped)
            if kill_after and store.extracted + len(records) >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)  # test hook: die like `kill -9`, before this commit
            store.extracted += store.add_part(records, sources)
            bar.update(len(chunk))
    finally:
        bar.close()
    store.compact(final=True)
    store._compact_sources()
    store._write_report(store.skipped)
    return store


def _source_records(chunk: list[tuple[str, Any, Any]]) -> dict[str, dict[str, Any]]:
    """The source records of the chunk's items given as files (a file that cannot be read gets none: the
    extractor reports it)."""
    out = {}
    for image_id, image, boxes in chunk:
        if isinstance(image, (str, Path)):
            try:
                out[str(image_id)] = source_record(image_id, image, boxes)
            except OSError:
                continue
    return out


def change_summary(store: FeatureStore) -> str:
    """'1 changed, re-extracted (a, …); 1 vanished, dropped (b)': what `refresh` found, for warnings and summaries."""

    def some(ids: list[str]) -> str:
        return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")

    parts = [f"{len(store.changed)} changed, re-extracted ({some(store.changed)})" if store.changed else "",
             f"{len(store.vanished)} vanished, dropped ({some(store.vanished)})" if store.vanished else ""]  # fmt: skip
    return "; ".join(p for p in parts if p)


def _missing(images: Iterable[tuple[str, Any, Any]], store: FeatureStore) -> Iterator[tuple[str, Any, Any]]:
    """The items whose images are not stored yet, first of each id, streamed (images load only when extracted)."""
    seen: set[str] = set()
    for image_id, image, boxes in images:
        if str(image_id) not in store and str(image_id) not in seen:
            seen.add(str(image_id))
            yield str(image_id), image, boxes


def cache_dir() -> Path:
    """Where feature stores live: $VILBERT_LITE_CACHE, else `.cache` at the project root (whatever the cwd)."""
    return Path(os.environ.get("VILBERT_LITE_CACHE", project_root() / ".cache"))
