"""easy-VQA end to end at `smoke`: a real data set written as VQA v2 files, whose splits both number their images
from 0, extracted and fine-tuned through the real-data path (so that path can never silently break again)."""

import json

import numpy as np
import pytest
from PIL import Image

from vilbert_lite.data.easy_vqa import answer_type, write_vqa_v2
from vilbert_lite.tasks import finetune


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("VILBERT_LITE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield write_vqa_v2(tmp_path_factory.mktemp("easy_vqa"), n_train=24, n_test=16)
    mp.undo()


def test_files_are_vqa_v2_with_ids_shared_across_splits(easy):
    qs = {s: json.loads(easy[f"{s}_questions"].read_text())["questions"] for s in ("train", "val")}
    anns = json.loads(easy["val_annotations"].read_text())["annotations"]
    ids = {s: {q["image_id"] for q in qs[s]} for s in qs}
    assert ids["train"] == set(range(24)) and ids["val"] == set(range(16))  # both splits count from 0
    assert all(len(a["answers"]) == 10 for a in anns)
    assert {a["answer_type"] for a in anns} == {"yes/no", "shape", "color"}
    assert (
        answer_type("teal") == "color" and answer_type("circle") == "shape" and answer_type("no") == "yes/no"
    )
    train0 = np.asarray(Image.open(easy["train_images"] / "0.png"))
    val0 = np.asarray(Image.open(easy["val_images"] / "0.png"))
    assert not np.array_equal(train0, val0)  # the same id, two pictures


def test_finetune_on_easy_vqa_reports_each_answer_type(easy, tmp_path):
    m = finetune("vqa", None, "smoke", 0, out=tmp_path / "run", data="vqa_v2", progress=False, **easy)
    assert m["data"] == "vqa_v2" and m["split"] == "val" and m["n_answers"] <= 13
    per_type = {k: v for k, v in m.items() if k.startswith("vqa_accuracy_")}
    assert set(per_type) == {"vqa_accuracy_yes_no", "vqa_accuracy_shape", "vqa_accuracy_color"}
    assert all(0 <= v <= 1 for v in per_type.values())
