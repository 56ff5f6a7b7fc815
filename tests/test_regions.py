"""Region features: RoIAlign correctness, extractor shapes, global IMG region, proposals, extract CLI and bench."""

import json
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

from vilbert_lite.data.extract import cli
from vilbert_lite.data.regions import (
    RegionExtractor,
    box_iou,
    collate_visual,
    load_image,
    parse_stage,
    propose_boxes,
    roi_align,
    visual_inputs,
)
from vilbert_lite.data.store import settings_key
from vilbert_lite.data.world import make_world

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world():
    return make_world("smoke", seed=0)


@pytest.fixture(scope="module")
def extractor():
    return RegionExtractor(max_regions=36, device="cpu")


# ---- RoIAlign ------------------------------------------------------------------------------------------------


def test_roi_whole_map_box_is_global_mean():
    fmap = torch.randn(2, 8, 7, 7)
    boxes = torch.tensor([[0.0, 0.0, 224.0, 224.0], [0.0, 0.0, 224.0, 224.0]])
    out = roi_align(fmap, boxes, torch.tensor([0, 1]), spatial_scale=7 / 224)  # (2, 8, 7, 7)
    assert out.shape == (2, 8, 7, 7)
    torch.testing.assert_close(out.mean((2, 3)), fmap.mean((2, 3)), atol=1e-5, rtol=0)


def test_roi_constant_patch():
    fmap = torch.zeros(1, 3, 8, 8)
    fmap[:, :, 2:6, 1:5] = 3.0  # cells rows 2..5, cols 1..4: value 3 between their centres
    box = torch.tensor([[1.6, 2.6, 4.4, 5.4]])  # feature-map units (spatial_scale 1), inside the centres
    out = roi_align(fmap, box, torch.tensor([0]), spatial_scale=1.0)
    torch.testing.assert_close(out, torch.full_like(out, 3.0))
    far = roi_align(fmap, torch.tensor([[6.6, 0.0, 8.0, 1.4]]), torch.tensor([0]), 1.0)
    assert far.abs().max() == 0


def test_roi_bilinear_ramp_and_orientation():
    w = 10
    ramp = torch.arange(w, dtype=torch.float32) + 0.5  # value = continuous coordinate of each cell centre
    fmap = torch.stack([ramp[None, :].expand(w, w), ramp[:, None].expand(w, w)])[None]  # ch0 = x, ch1 = y
    box = torch.tensor([[2.0, 3.0, 8.0, 6.0]])
    out = roi_align(fmap, box, torch.tensor([0]), 1.0, output_size=3)  # bins are 2 wide, 1 tall
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([3.0, 5.0, 7.0]))  # x bin centres
    torch.testing.assert_close(out[0, 1, :, 0], torch.tensor([3.5, 4.5, 5.5]))  # y bin centres


def test_roi_batched_equals_single():
    fmap = torch.randn(3, 4, 6, 6)
    boxes = torch.tensor([[0, 0, 50, 60], [10, 20, 90, 96], [5, 5, 30, 30.0]])
    idx = torch.tensor([2, 0, 1])
    out = roi_align(fmap, boxes, idx, 6 / 96)
    for k in range(3):
        single = roi_align(fmap[idx[k] : idx[k] + 1], boxes[k : k + 1], torch.tensor([0]), 6 / 96)
        torch.testing.assert_close(out[k : k + 1], single)


# ---- extractor ------------------------------------------------------------------------------------------------


def test_extractor_shapes_and_class_distribution(world, extractor):
    image_id = world.scenes["val"][0].scene_id
    img, gt = world.image(image_id), world.gt_boxes(image_id)
    rf = extractor(img, gt, image_id=image_id)
    n = len(gt)
    assert rf.image_id == image_id and (rf.image_h, rf.image_w) == img.shape[:2]
    assert rf.features.shape == (n, extractor.feature_dim) and rf.features.dtype == np.float32
    assert extractor.settings["stage"] == "block10" and extractor.feature_dim == 112  # the default stage
    assert rf.cls_prob.shape == (n, 1000) and rf.cls_prob.dtype == np.float32
    np.testing.assert_allclose(rf.cls_prob.sum(1), 1.0, atol=1e-4)
    np.testing.assert_allclose(rf.boxes, gt)
    s = extractor.settings
    assert s["backbone"] == "efficientnet-lite0" and s["max_regions"] == 36 and len(s["weights_sha256"]) == 64

    prop = extractor(img, image_id=image_id)  # no boxes: proposals, whole image first
    assert 1 < len(prop.boxes) <= 36
    np.testing.assert_allclose(prop.boxes[0], [0, 0, img.shape[1], img.shape[0]])
    # the whole-image region's class distribution is the backbone's own image classification
    x = torch.from_numpy(np.array(Image.fromarray(img).resize((224, 224), Image.BILINEAR))).permute(2, 0, 1)
    x = (x[None].float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        p = extractor.model(x).softmax(-1)[0].numpy()
    np.testing.assert_allclose(prop.cls_prob[0], p, atol=1e-5)


def test_extract_many_batches_like_single_calls(world, extractor):
    ids = [s.scene_id for s in world.scenes["test"][:3]]
    items = [(i, world.image(i), world.gt_boxes(i)) for i in ids]
    lazy = [(i, partial(world.image, i), b) for i, _, b in items]  # images may be callables (rendered on use)
    many = list(extractor.extract_many(lazy, batch_size=3, progress=False))
    assert [r.image_id for r in many] == ids
    for (i, img, gt), r in zip(items, many):
        np.testing.assert_allclose(extractor(img, gt, i).features, r.features, atol=1e-4)


def test_max_regions_and_box_clipping(extractor):
    img = np.zeros((50, 80, 3), np.uint8)
    boxes = np.array([[-5, -5, 100, 100]] + [[i, i, i + 10, i + 10] for i in range(49)], np.float32)
    b = extractor.boxes_for(img, boxes)
    assert b.shape == (36, 4)
    np.testing.assert_allclose(b[0], [0, 0, 80, 50])


def test_visual_inputs_and_collate(world, extractor):
    ids = [s.scene_id for s in world.scenes["val"][1:3]]
    rfs = [extractor(world.image(i), world.gt_boxes(i), i) for i in ids]
    v = visual_inputs(rfs[0])
    R = len(rfs[0].boxes)
    assert v["visual_feats"].shape == (R + 1, extractor.feature_dim) and v["visual_pos"].shape == (R + 1, 5)
    assert int(v["num_regions"]) == R + 1
    torch.testing.assert_close(v["visual_feats"][0], torch.from_numpy(rfs[0].features).mean(0))
    torch.testing.assert_close(v["visual_pos"][0], torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0]))
    torch.testing.assert_close(v["boxes"][0], torch.tensor([0.0, 0.0, rfs[0].image_w, rfs[0].image_h]))
    torch.testing.assert_close(v["cls_prob"].sum(1), torch.ones(R + 1))
    pos = v["visual_pos"]
    assert pos.min() >= 0 and pos.max() <= 1
    torch.testing.assert_close(pos[1:, 4], (pos[1:, 2] - pos[1:, 0]) * (pos[1:, 3] - pos[1:, 1]))
    (x1, y1, x2, y2), W, H = rfs[0].boxes[0], rfs[0].image_w, rfs[0].image_h
    torch.testing.assert_close(pos[1, :4], torch.tensor([x1 / W, y1 / H, x2 / W, y2 / H]))
    batch = collate_visual([visual_inputs(r) for r in rfs])
    n = [len(r.boxes) + 1 for r in rfs]
    assert batch["visual_feats"].shape == (2, max(n), extractor.feature_dim)
    assert batch["visual_attention_mask"].sum(1).tolist() == n
    assert batch["visual_pos"][batch["visual_attention_mask"] == 0].abs().sum() == 0


# ---- proposals ------------------------------------------------------------------------------------------------


def test_proposals_find_the_objects(world):
    ids = [s.scene_id for s in world.scenes["train"][:24]]
    hits = total = 0
    for i in ids:
        gt, props = world.gt_boxes(i), propose_boxes(world.image(i), max_boxes=36)
        assert len(props) <= 36 and props.dtype == np.float32
        hits += int((box_iou(gt, props).max(1) >= 0.5).sum())
        total += len(gt)
    assert total >= 40 and hits / total >= 0.9, f"recall {hits / total:.2f}"


# ---- images, CLI, bench ---------------------------------------------------------------------------------------


def test_image_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        load_image(tmp_path / "nope.jpg")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(ValueError, match="broken"):
        load_image(bad)


def test_extract_cli_caches(tmp_path, world, capsys):
    images = tmp_path / "imgs"
    images.mkdir()
    for s in world.scenes["test"][:2]:
        Image.fromarray(world.image(s.scene_id)).save(images / f"{s.scene_id}.png")
    out = tmp_path / "feats"
    assert cli(["--images", str(images), "--out", str(out), "--max-regions", "8", "--device", "cpu"]) == 0
    assert "2 extracted" in capsys.readouterr().out
    assert cli(["--images", str(images), "--out", str(out), "--max-regions", "8", "--device", "cpu"]) == 0
    assert "0 extracted, 2 cached" in capsys.readouterr().out
    from vilbert_lite.data.store import FeatureStore

    store = FeatureStore.open(out)
    assert sorted(store.ids()) == sorted(s.scene_id for s in world.scenes["test"][:2])
    assert len(store.get(store.ids()[0]).boxes) <= 8


def test_bench_writes_report(tmp_path):
    from vilbert_lite.bench.extract import bench

    out = tmp_path / "extract.json"
    assert bench(["--images", "2", "--device", "cpu", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["gt_boxes"]["images_per_s"] > 0 and r["proposals"]["images_per_s"] > 0
    assert r["machine"]["cpu_count"] >= 1 and r["machine"]["torch"]


def test_stage_choice_sets_width_and_store_key(world, extractor):
    assert parse_stage("block7+block10") == ["block7", "block10"] and parse_stage("head") == ["head"]
    for bad in ("block16", "blk3", "head+", ""):
        with pytest.raises(ValueError, match="stage"):
            parse_stage(bad)
    both = RegionExtractor(max_regions=36, device="cpu", stage="block10+head")
    assert both.feature_dim == 112 + 1280 and both.settings["stage"] == "block10+head"
    assert settings_key(both.settings) != settings_key(extractor.settings)  # a cache never mixes stages
    image_id = world.scenes["val"][0].scene_id
    img, gt = world.image(image_id), world.gt_boxes(image_id)
    a, b = extractor(img, gt, image_id), both(img, gt, image_id)
    np.testing.assert_allclose(b.features[:, :112], a.features, rtol=1e-5, atol=1e-5)  # same block-10 pooling
    np.testing.assert_allclose(b.cls_prob, a.cls_prob, rtol=1e-5, atol=1e-6)  # the head's classes either way
