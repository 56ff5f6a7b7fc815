"""Readers of the real formats on data_samples/, writers round-trip, and every bad-input case names the item."""

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from vilbert_lite.data.formats import (
    LMDBFeatures,
    image_paths_by_id,
    iter_npy_features,
    iter_tsv_features,
    load_npy_features,
    read_coco_captions,
    read_vqa,
    safe_loads,
    write_lmdb_features,
    write_tsv_features,
)
from vilbert_lite.data.items import Caption, RegionFeatures, VQAItem
from vilbert_lite.data.store import FeatureStore

S = Path(__file__).resolve().parents[1] / "data_samples"
QJSON = S / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json"
AJSON = S / "vqa" / "v2_mscoco_val2014_annotations.json"
CJSON = S / "coco" / "captions_val2014.json"
IMAGES = S / "images"


@pytest.fixture(scope="module")
def store():
    return FeatureStore.open(S / "features" / "store")


def assert_same(a: RegionFeatures, b: RegionFeatures):
    assert (a.image_id, a.image_h, a.image_w) == (b.image_id, b.image_h, b.image_w)
    for k in ("boxes", "features", "cls_prob"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


# ---- readers on data_samples ---------------------------------------------------------------------------------


def test_vqa_sample(store):
    items, paths = read_vqa(QJSON, AJSON, IMAGES, features=store)
    assert len(items) == 6 and all(isinstance(q, VQAItem) for q in items)
    assert all(len(q.answers) == 10 for q in items) and {q.image_id for q in items} == {"1", "2", "3"}
    assert items[0].question == "What animal is this?" and items[0].answers.count("cat") == 9
    assert {q.qtype for q in items} == {"other", "number", "yes/no"}
    assert set(paths) == {"1", "2", "3"} and all(p.is_file() for p in paths.values())
    test_split, _ = read_vqa(QJSON)  # questions only (test split): no answers
    assert len(test_split) == 6 and test_split[0].answers == []


def test_coco_captions_sample(store):
    caps, paths = read_coco_captions(CJSON, IMAGES, features=store)
    assert len(caps) == 6 and all(isinstance(c, Caption) and c.text for c in caps)
    assert paths["1"].name == "COCO_val2014_000000000001.jpg" and image_paths_by_id(IMAGES) == paths


def test_feature_files_agree_with_the_store(store):
    lm = LMDBFeatures(S / "features" / "features.lmdb", feature_dim=1280)
    assert sorted(lm.ids()) == ["1", "2", "3"] and len(lm) == 3 and "2" in lm and "9" not in lm
    for rf in lm:
        assert_same(rf, store.get(rf.image_id))
    tsv = list(iter_tsv_features(S / "features" / "features.tsv", feature_dim=1280))
    assert [r.image_id for r in tsv] == ["1", "2", "3"]
    for rf in tsv:
        assert_same(rf, store.get(rf.image_id))
    npy = list(iter_npy_features(S / "features"))
    assert len(npy) == 1
    assert_same(npy[0], store.get("1"))


# ---- writers ---------------------------------------------------------------------------------------------------


def rec(image_id="7", n=3, d=6, c=4):
    rng = np.random.default_rng(int(image_id))
    p = rng.random((n, c)).astype(np.float32)
    return RegionFeatures(
        image_id,
        40,
        50,
        rng.random((n, 4)).astype(np.float32) * 40,
        rng.random((n, d)).astype(np.float32),
        p / p.sum(1, keepdims=True),
    )


def test_writers_round_trip(tmp_path):
    recs = [rec("7"), rec("8", n=5)]
    write_lmdb_features(tmp_path / "np.lmdb", recs, encoding="numpy")  # arrays pickled as numpy arrays
    for a, b in zip(LMDBFeatures(tmp_path / "np.lmdb"), recs):
        assert_same(a, b)
    write_tsv_features(tmp_path / "no_cls.tsv", recs, with_cls_prob=False)
    got = list(iter_tsv_features(tmp_path / "no_cls.tsv"))
    assert got[1].cls_prob.shape == (5, 0)  # bottom-up TSV without class distributions
    np.testing.assert_array_equal(got[1].features, recs[1].features)
    r = recs[0]
    np.savez(
        tmp_path / "7.npz",
        image_id="7",
        image_h=40,
        image_w=50,
        num_boxes=3,
        boxes=r.boxes,
        features=r.features,
        cls_prob=r.cls_prob,
    )
    assert_same(load_npy_features(tmp_path / "7.npz"), r)


# ---- bad input -------------------------------------------------------------------------------------------------


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/vilbert_lite_pwned",))


def test_pickles_never_run_code(tmp_path):
    with pytest.raises(ValueError, match="refusing to load"):
        safe_loads(pickle.dumps({"features": Evil()}), "evil")
    # a .npy whose object payload is a malicious pickle
    path = tmp_path / "evil.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        f.write(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="evil.npy"):
        load_npy_features(path)
    assert not Path("/tmp/vilbert_lite_pwned").exists()


def test_missing_image_file(tmp_path):
    images = tmp_path / "images"
    shutil.copytree(IMAGES, images)
    (images / "COCO_val2014_000000000003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="question 5.*image 3"):
        read_vqa(QJSON, AJSON, images)
    with pytest.raises(FileNotFoundError, match="image 3.*COCO_val2014_000000000003.jpg"):
        read_coco_captions(CJSON, images)


def test_question_without_features():
    with pytest.raises(ValueError, match="question 5.*image 3 has no region features"):
        read_vqa(QJSON, AJSON, features={"1", "2"})


def test_malformed_json(tmp_path):
    broken = tmp_path / "q.json"
    broken.write_text(QJSON.read_text()[:200])
    with pytest.raises(ValueError, match="q.json: not valid JSON"):
        read_vqa(broken)
    data = json.loads(QJSON.read_text())
    del data["questions"][1]["question"]
    broken.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"q.json: questions\[1\] has no key 'question'"):
        read_vqa(broken)
    ann = json.loads(AJSON.read_text())
    del ann["annotations"][2]["answers"][4]["answer"]
    (tmp_path / "a.json").write_text(json.dumps(ann))
    with pytest.raises(ValueError, match=r"a.json: annotations\[2\].answers\[4\] has no key 'answer'"):
        read_vqa(QJSON, tmp_path / "a.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_coco_captions(tmp_path / "missing.json")


def test_empty_caption(tmp_path):
    data = json.loads(CJSON.read_text())
    data["annotations"][3]["caption"] = "   "
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"c.json: annotations\[3\] \(image 2\) has an empty caption"):
        read_coco_captions(tmp_path / "c.json")


def test_feature_width_mismatch(tmp_path):
    with pytest.raises(ValueError, match="features.tsv line 1: image 1: feature width 1280 != expected 2048"):
        list(iter_tsv_features(S / "features" / "features.tsv", feature_dim=2048))
    write_tsv_features(tmp_path / "mixed.tsv", [rec("7", d=6), rec("8", d=5)])
    with pytest.raises(ValueError, match="mixed.tsv line 2: image 8: feature width 5 != expected 6"):
        list(iter_tsv_features(tmp_path / "mixed.tsv"))
    with pytest.raises(ValueError, match="key '2'.*width 1280 != expected 2048"):
        LMDBFeatures(S / "features" / "features.lmdb", feature_dim=2048)["2"]
    # num_boxes disagreeing with the buffer
    (tmp_path / "short.tsv").write_text("9\t50\t40\t3\tAAAA\tAAAA\n")
    with pytest.raises(ValueError, match="short.tsv line 1: image 9 boxes"):
        list(iter_tsv_features(tmp_path / "short.tsv"))
