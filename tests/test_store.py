"""Feature store: round trip, cache reuse, corrupt shards rebuilt, atomic writes, the data_samples shard."""

import json
import multiprocessing as mp
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from vilbert_lite.data import store as store_mod
from vilbert_lite.data.items import RegionFeatures
from vilbert_lite.data.store import CorruptShardError, FeatureStore, extract_features, settings_key

SAMPLES = Path(__file__).resolve().parents[1] / "data_samples"
SETTINGS = {"backbone": "fake", "version": 1}


def fake_record(image_id: str, n: int = 3, d: int = 16, c: int = 5) -> RegionFeatures:
    rng = np.random.default_rng(zlib.crc32(image_id.encode()))
    p = rng.random((n, c)).astype(np.float32)
    boxes = np.sort(rng.random((n, 4)).astype(np.float32) * 50, axis=1)
    return RegionFeatures(
        image_id, 60, 80, boxes, rng.standard_normal((n, d)).astype(np.float32), p / p.sum(1, keepdims=True)
    )


class FakeExtractor:
    """Stands in for RegionExtractor: same interface, no model; records which images it extracted."""

    settings = SETTINGS

    def __init__(self):
        self.seen: list[str] = []

    def extract_many(self, items, batch_size=16, progress=True, total=None):
        for image_id, _image, _boxes in items:
            self.seen.append(image_id)
            yield fake_of(image_id)


def fake_of(image_id: str) -> RegionFeatures:
    return fake_record(image_id, n=1 + int(image_id[3:]) % 4)


def items(n):
    return [(f"img{i}", None, None) for i in range(n)]


def assert_same(a: RegionFeatures, b: RegionFeatures):
    assert (a.image_id, a.image_h, a.image_w) == (b.image_id, b.image_h, b.image_w)
    for k in ("boxes", "features", "cls_prob"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


def test_round_trip_and_layout(tmp_path):
    recs = [fake_record(f"img{i}", n=i + 1) for i in range(5)]
    st = FeatureStore(tmp_path, SETTINGS, shard_size=2)
    assert st.add_many(recs) == 5 and len(st) == 5
    assert st.path == tmp_path / settings_key(SETTINGS)
    assert sorted(p.name for p in st.path.iterdir()) == [
        "index.json",
        "settings.json",
        "shard-00000.safetensors",
        "shard-00001.safetensors",
        "shard-00002.safetensors",
    ]
    index = json.loads((st.path / "index.json").read_text())
    assert index["format"] == "vilbert_lite.features" and [len(s["image_ids"]) for s in index["shards"]] == [
        2,
        2,
        1,
    ]
    again = FeatureStore(tmp_path, SETTINGS)
    assert again.ids() == [r.image_id for r in recs] and "img3" in again and "nope" not in again
    for r in recs:
        assert_same(again.get(r.image_id), r)
    with pytest.raises(KeyError, match="nope"):
        again.get("nope")
    assert st.add_many(recs[:2]) == 0  # already stored: skipped
    assert FeatureStore.open(tmp_path).path == st.path
    assert FeatureStore(tmp_path, {**SETTINGS, "version": 2}).path != st.path  # keyed by settings


def test_cache_reuse(tmp_path):
    ex = FakeExtractor()
    st = extract_features(items(5), tmp_path, ex, shard_size=2)
    assert st.extracted == 5 and len(ex.seen) == 5
    ex2 = FakeExtractor()
    st2 = extract_features(items(7), tmp_path, ex2, shard_size=2)
    assert st2.extracted == 2 and ex2.seen == ["img5", "img6"] and len(st2) == 7
    ex3 = FakeExtractor()
    assert extract_features(items(7), tmp_path, ex3).extracted == 0 and ex3.seen == []


def test_corrupt_shard_detected_and_rebuilt(tmp_path):
    st = extract_features(items(5), tmp_path, FakeExtractor(), shard_size=2)
    shard = st.path / "shard-00001.safetensors"
    ids = st.index["shards"][1]["image_ids"]
    data = bytearray(shard.read_bytes())
    data[-7] ^= 0xFF  # flip one byte of the features
    shard.write_bytes(bytes(data))

    fresh = FeatureStore(tmp_path, SETTINGS)
    assert fresh.verify() == ["shard-00001.safetensors"]
    with pytest.raises(CorruptShardError, match="shard-00001"):
        fresh.get(ids[0])
    assert_same(fresh.get("img0"), fake_of("img0"))  # other shards still fine

    ex = FakeExtractor()
    with pytest.warns(UserWarning, match="corrupt"):
        rebuilt = extract_features(items(5), tmp_path, ex, shard_size=2)
    assert sorted(ex.seen) == sorted(ids) and rebuilt.verify(force=True) == []
    for i in ids:
        assert_same(rebuilt.get(i), fake_of(i))


def test_writes_are_atomic(tmp_path, monkeypatch):
    st = FeatureStore(tmp_path, SETTINGS, shard_size=2)

    def records():  # fails while the second shard is being collected
        yield from (fake_record(f"img{i}") for i in range(3))
        raise RuntimeError("unreadable image")

    with pytest.raises(RuntimeError):
        st.add_many(records())
    names = sorted(p.name for p in st.path.iterdir())
    assert names == ["index.json", "settings.json", "shard-00000.safetensors"]  # no temp / half files
    assert FeatureStore(tmp_path, SETTINGS).ids() == ["img0", "img1"]

    real_replace = store_mod.os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("index.json"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(store_mod.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        st.add_many([fake_record("img9")])
    monkeypatch.undo()
    assert sorted(p.name for p in st.path.iterdir()) == names
    reopened = FeatureStore(tmp_path, SETTINGS)
    assert "img9" not in reopened and len(reopened) == 2

    (st.path / "shard-00042.safetensors").write_bytes(b"orphan of a crash")
    (st.path / ".tmp-abc.safetensors").write_bytes(b"half")
    FeatureStore(tmp_path, SETTINGS)
    assert sorted(p.name for p in st.path.iterdir()) == names  # leftovers removed on open


def test_feature_width_mismatch(tmp_path):
    st = FeatureStore(tmp_path, SETTINGS)
    st.add_many([fake_record("a", d=16)])
    with pytest.raises(ValueError, match="'b'.*width 8"):
        st.add_many([fake_record("b", d=8)])
    bad = fake_record("c")
    bad.features = bad.features[:2]
    with pytest.raises(ValueError, match="'c'.*inconsistent"):
        st.add_many([bad])


def test_data_samples_shard():
    st = FeatureStore.open(SAMPLES / "features" / "store")
    assert sorted(st.ids()) == ["1", "2", "3"] and st.verify() == []
    assert st.settings["backbone"] == "efficientnet-lite0" and st.settings["max_regions"] == 4
    for i in st.ids():
        rf = st.get(i)
        n = len(rf.boxes)
        assert 1 <= n <= 4 and rf.features.shape == (n, 1280) and rf.cls_prob.shape == (n, 1000)
        np.testing.assert_allclose(rf.cls_prob.sum(1), 1, atol=1e-4)
        np.testing.assert_allclose(
            rf.boxes[0], [0, 0, rf.image_w, rf.image_h]
        )  # proposals: whole image first


class SlowExtractor(FakeExtractor):
    """A FakeExtractor that takes its time per image, so that two processes overlap."""

    def extract_many(self, items, batch_size=16, progress=True, total=None):
        for item in super().extract_many(items, batch_size, progress, total):
            time.sleep(0.01)
            yield item


def _extract_into(root: str, n: int, done) -> None:
    store = extract_features(items(n), root, SlowExtractor(), batch_size=4, progress=False, shard_size=8)
    done.put(store.extracted)


def test_two_processes_extracting_into_one_store_take_turns(tmp_path):
    """Two processes started on the same store at once (two notebooks, a table's workers): the writer lock makes
    the second wait, then extract only what the first did not; the store ends complete, every image once, and
    its shards pass the checksum check (without the lock the second process's open deleted the first's parts)."""
    ctx = mp.get_context("fork")
    done = ctx.Queue()
    procs = [ctx.Process(target=_extract_into, args=(str(tmp_path), 40, done)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(done.get(timeout=5) for _ in procs) == [0, 40]  # the second found everything extracted
    st = FeatureStore(tmp_path, SETTINGS)
    assert len(st) == 40 and st.verify(force=True) == []
    assert sorted(st.ids()) == sorted(i for i, _, _ in items(40))
    for image_id, _, _ in items(40):
        assert_same(st.get(image_id), fake_of(image_id))
