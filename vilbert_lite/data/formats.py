"""Readers (and a few writers) for the real data formats (the official vilbert-multi-task feature files, VQA v2, COCO captions), yielding the records of `items.py`.

Text:
    read_vqa(questions_json, annotations_json, image_dir)  -> list[VQAItem], {image_id: image path}
    read_coco_captions(captions_json, image_dir)           -> list[Caption], {image_id: image path}
Precomputed region features (-> RegionFeatures; put them in a `FeatureStore` with `store.add_many(...)`):
    LMDBFeatures(path)        official vilbert-multi-task LMDB: key str(image_id), value a pickled dict
                              {image_id, image_h, image_w, num_boxes, boxes, features, cls_prob}; arrays either
                              numpy arrays or base64 float32 buffers; an optional "keys" entry lists the ids
    load_npy_features(path)   one image's dict saved with np.save (.npy) or np.savez (.npz)
    iter_tsv_features(path)   bottom-up-attention TSV: image_id, image_w, image_h, num_boxes, boxes, features
                              (base64 float32), optionally cls_prob
    write_lmdb_features / write_tsv_features for converting.

Pickles are read with `SafeUnpickler`, which only rebuilds numpy arrays and plain containers: a pickle that
asks for anything else (e.g. os.system) is refused, never executed. Image ids are strings everywhere.
Bad input raises ValueError / FileNotFoundError naming the file and the item.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import pickle
import re
import sys
from collections.abc import Container, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vilbert_lite.data.items import Caption, RegionFeatures, VQAItem
from vilbert_lite.errors import UserError

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
TSV_FIELDS = ["image_id", "image_w", "image_h", "num_boxes", "boxes", "features"]

# ---------------------------------------------------------------------------------------------------------------
# JSON text formats


def _load_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON: {e}") from e


def _get(d: Any, key: str, where: str, path: Path) -> Any:
    """d[key], or a ValueError naming the file, the item and the key."""
    if not isinstance(d, dict) or key not in d:
        raise UserError(f"{path}: {where} has no key {key!r}")
    return d[key]


def image_paths_by_id(image_dir: str | Path) -> dict[str, Path]:
    """Map image id -> file for a COCO-style folder: the id is the number at the end of the file stem
    ("COCO_val2014_000000000042.jpg" -> "42"), or the whole stem when it has no trailing number."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir}")
    out: dict[str, Path] = {}
    for p in sorted(image_dir.iterdir()):
        if p.suffix.lower() in IMAGE_EXTS:
            m = re.search(r"(\d+)$", p.stem)
            image_id = str(int(m.group(1))) if m else p.stem
            if image_id in out:  # two files, one id: which one a question means is unknowable
                raise UserError(f"{image_dir}: {out[image_id].name} and {p.name} both give image id {image_id} "
                                "(the number at the end of the name); keep one image per id in a folder")  # fmt: skip
            out[image_id] = p
    return out


def _require(image_id: str, what: str, paths: dict[str, Path] | None, image_dir: Any, features: Any) -> None:
    if paths is not None and image_id not in paths:
        raise FileNotFoundError(f"{what}: image {image_id} has no image file in {image_dir}")
    if features is not None and image_id not in features:
        raise UserError(f"{what}: image {image_id} has no region features in {features!r}")


def read_vqa(
    questions_json: str | Path,
    annotations_json: str | Path | None = None,
    image_dir: str | Path | None = None,
    features: Container[str] | None = None,
) -> tuple[list[VQAItem], dict[str, Path]]:
    """VQA v2 questions (+ annotations with 10 answers each; none for the test split) -> VQAItems, image paths.

    With `image_dir`, every question's image must have a file; with `features` (anything supporting `in`, e.g. a
    FeatureStore), every question's image must have features.
    """
    qpath = Path(questions_json)
    questions = _get(_load_json(qpath), "questions", "the top-level object", qpath)
    answers: dict[str, tuple[list[str], str]] = {}
    if annotations_json is not None:
        apath = Path(annotations_json)
        for i, ann in enumerate(_get(_load_json(apath), "annotations", "the top-level object", apath)):
            where = f"annotations[{i}]"
            qid = str(_get(ann, "question_id", where, apath))
            ans = [
                str(_get(a, "answer", f"{where}.answers[{j}]", apath))
                for j, a in enumerate(_get(ann, "answers", where, apath))
            ]
            answers[qid] = (ans, str(ann.get("answer_type", ann.get("question_type", ""))))
    paths = image_paths_by_id(image_dir) if image_dir is not None else None
    items = []
    for i, q in enumerate(questions):
        where = f"questions[{i}]"
        qid = str(_get(q, "question_id", where, qpath))
        image_id = str(_get(q, "image_id", where, qpath))
        text = str(_get(q, "question", where, qpath)).strip()
        if not text:
            raise UserError(f"{qpath}: {where} (question {qid}) has an empty question")
        if annotations_json is not None and qid not in answers:
            raise UserError(f"{annotations_json}: no annotation for question {qid} ({qpath}, {where})")
        ans, qtype = answers.get(qid, ([], ""))
        _require(image_id, f"{qpath}: question {qid}", paths, image_dir, features)
        items.append(VQAItem(question_id=qid, image_id=image_id, question=text, answers=ans, qtype=qtype))
    used = {it.image_id for it in items}
    return items, {k: v for k, v in (paths or {}).items() if k in used}


def read_coco_captions(
    captions_json: str | Path,
    image_dir: str | Path | None = None,
    features: Container[str] | None = None,
) -> tuple[list[Caption], dict[str, Path]]:
    """COCO captions {images: [{id, file_name, ...}], annotations: [{image_id, caption}]} -> Captions, image paths."""
    path = Path(captions_json)
    data = _load_json(path)
    files = {}
    for i, im in enumerate(_get(data, "images", "the top-level object", path)):
        files[str(_get(im, "id", f"images[{i}]", path))] = str(_get(im, "file_name", f"images[{i}]", path))
    paths: dict[str, Path] = {}
    captions = []
    for i, ann in enumerate(_get(data, "annotations", "the top-level object", path)):
        where = f"annotations[{i}]"
        image_id = str(_get(ann, "image_id", where, path))
        text = _get(ann, "caption", where, path)
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{path}: {where} (image {image_id}) has an empty caption")
        if image_id not in files:
            raise UserError(f"{path}: {where} refers to image {image_id}, which is not listed in 'images'")
        if image_dir is not None and image_id not in paths:
            p = Path(image_dir) / files[image_id]
            if not p.is_file():
                raise FileNotFoundError(f"{path}: {where}: image {image_id} file not found: {p}")
            paths[image_id] = p
        _require(image_id, f"{path}: {where}", None, image_dir, features)
        captions.append(Caption(image_id=image_id, text=" ".join(text.split())))
    return captions, paths


# ---------------------------------------------------------------------------------------------------------------
# safe pickles


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and builtin containers only; any other global is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # protocol 2 stores bytes as latin-1 text
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")


def safe_loads(data: bytes, what: str = "pickle") -> Any:
    """Unpickle bytes with SafeUnpickler -> object; ValueError naming `what` on anything unsafe or broken."""
    try:
        return SafeUnpickler(io.BytesIO(data)).load()
    except Exception as e:
        raise UserError(f"{what}: cannot unpickle safely: {e}") from e


# ---------------------------------------------------------------------------------------------------------------
# precomputed region features


def _array(value: Any, rows: int, what: str, dim: int | None = None) -> np.ndarray:
    """A numpy array or a base64 float32 buffer -> (rows, dim) float32."""
    try:
        if isinstance(value, (str, bytes)):
            value = np.frombuffer(base64.b64decode(value), dtype=np.float32)
        arr = np.asarray(value, dtype=np.float32)
    except (ValueError, TypeError) as e:  # binascii.Error is a ValueError
        raise UserError(f"{what}: not a float32 array or base64 float32 buffer: {e}") from e
    if dim is None:
        if rows == 0 or arr.size % rows:
            raise UserError(f"{what}: {arr.size} values do not split into {rows} boxes")
        dim = arr.size // rows
    if arr.size != rows * dim:
        raise UserError(f"{what}: expected {rows} x {dim} values, got {arr.size}")
    return arr.reshape(rows, dim).copy()


def record_from_dict(d: dict[str, Any], source: str, feature_dim: int | None = None) -> RegionFeatures:
    """An official-style feature dict -> RegionFeatures (accepts image_height/image_width and bbox aliases)."""

    def get(*keys: str) -> Any:
        for k in keys:
            if k in d:
                return d[k]
        raise UserError(f"{source}: feature record has no key {keys[0]!r}")

    if not isinstance(d, dict):
        raise UserError(f"{source}: expected a dict of features, got {type(d).__name__}")
    image_id = get("image_id")
    image_id = image_id.decode() if isinstance(image_id, bytes) else str(image_id)
    what = f"{source}: image {image_id}"
    n = int(get("num_boxes"))
    boxes = _array(get("boxes", "bbox"), n, f"{what} boxes", 4)
    feats = _array(get("features"), n, f"{what} features")
    if feature_dim is not None and feats.shape[1] != feature_dim:
        raise UserError(f"{what}: feature width {feats.shape[1]} != expected {feature_dim}")
    probs = d.get("cls_prob")
    probs = (
        np.zeros((n, 0), np.float32)
        if probs is None or len(probs) == 0
        else _array(probs, n, f"{what} cls_prob")
    )
    h, w = int(get("image_h", "image_height")), int(get("image_w", "image_width"))
    return RegionFeatures(image_id, h, w, boxes, feats, probs)


class LMDBFeatures:
    """Read-only mapping image_id -> RegionFeatures over an official-layout LMDB (see module docstring)."""

    def __init__(self, path: str | Path, feature_dim: int | None = None):
        import lmdb  # optional: only LMDB feature files need it

        self.path, self.feature_dim = Path(path), feature_dim
        if not self.path.exists():
            raise FileNotFoundError(f"LMDB feature file not found: {self.path}")
        self.env = lmdb.open(
            str(self.path), readonly=True, lock=False, readahead=False, subdir=self.path.is_dir()
        )
        with self.env.begin() as txn:
            raw = txn.get(b"keys")
            if raw is not None:
                keys = safe_loads(raw, f"{self.path} key 'keys'")
                self._ids = [k.decode() if isinstance(k, bytes) else str(k) for k in keys]
            else:
                self._ids = [
                    k.decode() for k in txn.cursor().iternext(keys=True, values=False) if k != b"keys"
                ]

    def ids(self) -> list[str]:
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, image_id: object) -> bool:
        with self.env.begin() as txn:
            return txn.get(str(image_id).encode()) is not None

    def __getitem__(self, image_id: str) -> RegionFeatures:
        with self.env.begin() as txn:
            raw = txn.get(str(image_id).encode())
        if raw is None:
            raise KeyError(f"image {image_id!r} has no features in {self.path}")
        what = f"{self.path} key {image_id!r}"
        rec = record_from_dict(safe_loads(raw, what), what, self.feature_dim)
        rec.image_id = str(image_id)
        return rec

    def __iter__(self) -> Iterator[RegionFeatures]:
        for image_id in self._ids:
            yield self[image_id]

    def __repr__(self) -> str:
        return f"LMDBFeatures({str(self.path)!r})"


def _record_dict(rf: RegionFeatures, encoding: str) -> dict[str, Any]:
    enc = (
        (lambda a: base64.b64encode(np.ascontiguousarray(a, np.float32).tobytes()))
        if encoding == "base64"
        else (lambda a: np.ascontiguousarray(a, np.float32))
    )
    return {
        "image_id": rf.image_id,
        "image_h": int(rf.image_h),
        "image_w": int(rf.image_w),
        "num_boxes": len(rf.boxes),
        "boxes": enc(rf.boxes),
        "features": enc(rf.features),
        "cls_prob": enc(rf.cls_prob),
    }


def write_lmdb_features(path: str | Path, records: Iterable[RegionFeatures], encoding: str = "base64") -> int:
    """Write records in the official LMDB layout (values pickled dicts; arrays base64 or numpy) -> count."""
    import lmdb  # optional: only LMDB feature files need it

    recs = list(records)
    blobs = {r.image_id.encode(): pickle.dumps(_record_dict(r, encoding), protocol=4) for r in recs}
    keys = pickle.dumps(list(blobs), protocol=4)
    size = sum(len(v) + 4096 for v in blobs.values()) * 2 + (1 << 20)
    env = lmdb.open(str(path), map_size=size, subdir=True)
    with env.begin(write=True) as txn:
        for k, v in blobs.items():
            txn.put(k, v)
        txn.put(b"keys", keys)
    env.close()
    return len(recs)


def load_npy_features(path: str | Path, feature_dim: int | None = None) -> RegionFeatures:
    """One image's features saved as a dict with np.save (.npy, read without code execution) or np.savez (.npz)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature file not found: {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            d = {k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files}
    else:
        with open(path, "rb") as f:
            try:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(f)
            except ValueError as e:
                raise UserError(f"{path}: not a .npy file: {e}") from e
            if not dtype.hasobject:
                raise UserError(f"{path}: expected a pickled dict in the .npy file, found a {dtype} array")
            obj = safe_loads(f.read(), str(path))
        d = obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
    if isinstance(d, dict) and "image_id" not in d:
        d = {**d, "image_id": path.stem}
    return record_from_dict(d, str(path), feature_dim)


def iter_npy_features(folder: str | Path, feature_dim: int | None = None) -> Iterator[RegionFeatures]:
    """Every .npy / .npz feature file of a folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"feature folder not found: {folder}")
    for p in sorted(folder.iterdir()):
        if p.suffix in (".npy", ".npz"):
            yield load_npy_features(p, feature_dim)


def iter_tsv_features(path: str | Path, feature_dim: int | None = None) -> Iterator[RegionFeatures]:
    """Bottom-up-attention TSV rows (6 fields, or 7 with cls_prob) -> RegionFeatures, streamed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TSV feature file not found: {path}")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    dim = feature_dim
    with open(path, newline="") as f:
        for line, row in enumerate(csv.reader(f, delimiter="\t"), start=1):
            if len(row) not in (6, 7):
                raise UserError(f"{path} line {line}: expected 6 or 7 tab-separated fields, got {len(row)}")
            d = dict(zip(TSV_FIELDS + ["cls_prob"], row))
            rec = record_from_dict(d, f"{path} line {line}", dim)
            dim = rec.features.shape[1]  # every row must match the first
            yield rec


def write_tsv_features(
    path: str | Path, records: Iterable[RegionFeatures], with_cls_prob: bool = True
) -> int:
    """Write records as bottom-up-attention TSV (base64 float32 buffers; cls_prob as a 7th field) -> count."""
    n = 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        for rf in records:
            d = _record_dict(rf, "base64")
            row = [
                rf.image_id,
                d["image_w"],
                d["image_h"],
                d["num_boxes"],
                d["boxes"].decode(),
                d["features"].decode(),
            ]
            w.writerow(row + ([d["cls_prob"].decode()] if with_cls_prob else []))
            n += 1
    return n


def image_files(folder: str | Path) -> list[Path]:
    """Every .jpg/.jpeg/.png in a folder (not recursive), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
