"""Real data never mixes images up: each split reads its own images, a changed file is extracted again, and a
run over edited data is another run."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vilbert_lite.cli import main as cli
from vilbert_lite.data.items import RegionFeatures
from vilbert_lite.data.store import SOURCES, FeatureStore
from vilbert_lite.tasks.common import Source

RED, BLUE, GREEN = (220, 30, 30), (30, 30, 220), (30, 200, 30)


class ColourExtractor:
    """One whole-image region whose feature is the image's mean colour (0-1): which picture was read shows."""

    settings = {"backbone": "mean-colour", "version": 1}

    def extract_many(self, items, batch_size=16, progress=True, total=None):
        for image_id, image, _ in items:
            img = np.asarray(Image.open(image).convert("RGB"), np.float32) / 255
            h, w = img.shape[:2]
            yield RegionFeatures(str(image_id), h, w, np.array([[0, 0, w, h]], np.float32),
                                 img.mean((0, 1))[None], np.ones((1, 1), np.float32))  # fmt: skip


def picture(path: Path, colour, size=(64, 64)) -> Path:
    """A flat picture with a dark square in the middle (so region proposals find something)."""
    a = np.full((*size, 3), colour, np.uint8)
    a[size[0] // 4 : size[0] * 3 // 4, size[1] // 4 : size[1] * 3 // 4] //= 3
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


def vqa_split(root: Path, split: str, colours: dict[int, tuple], answer: str) -> dict:
    """A VQA v2 split whose images are numbered from 0 (as easy-VQA numbers each split) -> finetune paths."""
    for i, c in colours.items():
        picture(root / f"{split}_images" / f"{i}.png", c)
    qs = [{"question_id": 100 * i + k, "image_id": i, "question": "what colour is the shape?"}
          for i in colours for k in range(2)]  # fmt: skip
    anns = [{"question_id": q["question_id"], "image_id": q["image_id"],
             "answers": [{"answer": answer}] * 10} for q in qs]  # fmt: skip
    (root / f"{split}_q.json").write_text(json.dumps({"questions": qs}))
    (root / f"{split}_a.json").write_text(json.dumps({"annotations": anns}))
    return {f"{split}_questions": root / f"{split}_q.json", f"{split}_annotations": root / f"{split}_a.json",
            f"{split}_images": root / f"{split}_images"}  # fmt: skip


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VILBERT_LITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VILBERT_LITE_RUNS", str(tmp_path / "runs"))
    return tmp_path / "cache"


def test_validation_questions_read_validation_images_under_the_same_ids(tmp_path, cache):
    """Train images 0-3 are red, val images 0-3 blue: every val question must see blue."""
    from vilbert_lite.tasks import vqa

    paths = {**vqa_split(tmp_path, "train", dict.fromkeys(range(4), RED), "red"),
             **vqa_split(tmp_path, "val", dict.fromkeys(range(4), BLUE), "blue")}  # fmt: skip
    recs, banks, _, _ = vqa.load_vqa_v2(paths, ColourExtractor(), progress=False)
    data = vqa.load(Source("vqa_v2", banks, records=recs))
    colour = {s: np.stack([it["pairs"][0]["visual_feats"][1].numpy() for it in items])
              for s, items in (("train", data.train), ("val", data.val))}  # fmt: skip
    np.testing.assert_allclose(colour["train"], np.tile(np.array(RED) / 255, (8, 1)), atol=0.15)
    np.testing.assert_allclose(colour["val"], np.tile(np.array(BLUE) / 255, (8, 1)), atol=0.15)
    with pytest.raises(TypeError, match="per split"):
        banks["0"]  # no lookup without a split


def extract(images: Path, out: Path, capsys) -> str:
    assert cli(["extract", "--images", str(images), "--out", str(out), "--no-progress"]) == 0
    return capsys.readouterr().out


def test_extract_notices_changed_touched_vanished_and_unrecorded_files(tmp_path, capsys):
    images, out = tmp_path / "images", tmp_path / "feats"
    picture(images / "a.png", RED, (300, 451))
    picture(images / "b.png", BLUE)
    assert "2 images, 2 extracted, 0 cached" in extract(images, out, capsys)
    picture(images / "a.png", GREEN, (512, 512))  # another picture under the same name
    text = extract(images, out, capsys)
    assert "1 extracted, 1 cached" in text and "1 changed, re-extracted (a)" in text
    store = FeatureStore.open(out)
    assert (store["a"].image_h, store["a"].image_w) == (512, 512) and len(store) == 2
    os.utime(images / "b.png", ns=(1, 1))  # touched, same bytes: the same image
    text = extract(images, out, capsys)
    assert "0 extracted, 2 cached" in text and "re-extracted" not in text
    (images / "b.png").unlink()
    picture(images / "c.png", RED)
    text = extract(images, out, capsys)
    assert "1 extracted" in text and "1 vanished, dropped (b)" in text
    assert FeatureStore.open(out).ids() and "b" not in FeatureStore.open(out)
    (store.path / SOURCES).unlink()  # a store written before stores recorded their files
    assert "2 changed, re-extracted (a, c)" in extract(images, out, capsys)


VQA_ARGS = [
    "finetune",
    "vqa",
    "--init",
    "none",
    "--profile",
    "smoke",
    "--no-progress",
    "--train",
    '{"max_steps": 2}',
]


def finetune_cli(paths: dict, capsys) -> dict:
    argv = VQA_ARGS + [a for k, v in paths.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    assert cli(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_finetune_follows_changed_images_and_edited_annotations(tmp_path, cache, capsys):
    """Through the command line: a changed image is re-extracted in the per-folder cache and the run is
    trained again; an edited annotation file is another run too; unchanged data reuses the finished run."""
    paths = {**vqa_split(tmp_path, "train", {0: RED, 1: BLUE}, "red"),
             **vqa_split(tmp_path, "val", {0: BLUE, 1: RED}, "blue")}  # fmt: skip
    first = finetune_cli(paths, capsys)
    assert finetune_cli(paths, capsys)["config_hash"] == first["config_hash"]  # unchanged: reused
    picture(tmp_path / "val_images" / "0.png", GREEN)
    changed = finetune_cli(paths, capsys)
    assert changed["config_hash"] != first["config_hash"]
    (store,) = [FeatureStore.open(p.parent) for p in (cache / "features").glob("images-*/*/index.json")
                if "val_images" in json.dumps(FeatureStore.open(p.parent).sources)]  # fmt: skip
    assert store.sources["0"]["sha256"] != "" and store["0"].image_h == 64
    ann = json.loads(paths["train_annotations"].read_text())
    ann["annotations"][0]["answers"] = [{"answer": "blue"}] * 10
    paths["train_annotations"].write_text(json.dumps(ann))
    edited = finetune_cli(paths, capsys)
    assert edited["config_hash"] not in (first["config_hash"], changed["config_hash"])
    assert edited["n_answers"] == 2  # the edit was read


def test_pretraining_on_image_folders_follows_changed_images(tmp_path, cache):
    from vilbert_lite.pretrain.data import coco_data

    images = tmp_path / "images"
    for i, c in enumerate((RED, BLUE, GREEN)):
        picture(images / f"{i}.png", c)
    caps = {"images": [{"id": i, "file_name": f"{i}.png"} for i in range(3)],
            "annotations": [{"image_id": i, "caption": f"picture {i}"} for i in range(3)]}  # fmt: skip
    (tmp_path / "caps.json").write_text(json.dumps(caps))
    *_, info = coco_data(tmp_path / "caps.json", images, progress=False)
    picture(images / "1.png", RED)
    with pytest.warns(UserWarning, match="1 changed, re-extracted"):
        *_, info2 = coco_data(tmp_path / "caps.json", images, progress=False)
    assert info2["images_digest"] != info["images_digest"]


def test_pretrain_command_on_an_image_folder_follows_changed_images_and_captions(tmp_path, cache):
    """Through `vilbert-lite pretrain --captions --images`: a changed image or an edited caption file is another
    run (the key holds their content); the same files reuse the finished run."""
    images = tmp_path / "images"
    for i, c in enumerate((RED, BLUE, GREEN, RED)):
        picture(images / f"{i}.png", c)
    caps = {"images": [{"id": i, "file_name": f"{i}.png"} for i in range(4)],
            "annotations": [{"image_id": i, "caption": f"a picture number {i}"} for i in range(4)]}  # fmt: skip
    (tmp_path / "caps.json").write_text(json.dumps(caps))
    argv = ["pretrain", "--profile", "smoke", "--captions", str(tmp_path / "caps.json"), "--images", str(images),
            "--out", str(tmp_path / "runs"), "--no-progress", "--train", '{"max_steps": 2}']  # fmt: skip

    def folders() -> set[str]:
        return {p.name for p in (tmp_path / "runs").glob("pretrain-*")}

    assert cli(argv) == 0
    first = folders()
    assert cli(argv) == 0 and folders() == first  # the same files: reused
    picture(images / "2.png", BLUE)
    with pytest.warns(UserWarning, match=r"1 changed, re-extracted \(2\)"):
        assert cli(argv) == 0
    assert len(folders()) == 2
    caps["annotations"][0]["caption"] = "a red picture"
    (tmp_path / "caps.json").write_text(json.dumps(caps))
    assert cli(argv) == 0 and len(folders()) == 3


def test_a_named_file_that_is_gone_is_reported_not_served(tmp_path):
    """A list names a stored image whose file has since gone: it leaves the store and is reported as unreadable."""
    from vilbert_lite.data.store import extract_features

    a, b = picture(tmp_path / "a.png", RED), picture(tmp_path / "b.png", BLUE)
    items = [("a", a, None), ("b", b, None)]
    extract_features(items, tmp_path / "feats", ColourExtractor(), progress=False)
    b.unlink()
    with pytest.warns(UserWarning, match="1 changed"):
        store = extract_features(
            items, tmp_path / "feats", ColourExtractor(), progress=False, on_error="skip"
        )
    assert "b" not in store and [r["image_id"] for r in store.skipped] == ["b"] and "a" in store
