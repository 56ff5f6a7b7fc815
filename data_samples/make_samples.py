"""Regenerate the real-format samples in data_samples/ (see README.md). Deterministic; run from the repo root:

    python data_samples/make_samples.py

Three small photos from scikit-image, VQA v2 and COCO-captions JSON over them, their region features (4 regions,
from our EfficientNet-Lite0 extractor with proposals) in the official LMDB layout, bottom-up-attention TSV, one
per-image .npy dict, and a feature store (one safetensors shard).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image

from vilbert_lite.data.formats import write_lmdb_features, write_tsv_features
from vilbert_lite.data.regions import RegionExtractor
from vilbert_lite.data.store import extract_features

HERE = Path(__file__).resolve().parent
PHOTOS = {"1": "chelsea", "2": "coffee", "3": "astronaut"}  # image_id -> skimage.data function
MAX_SIDE, MAX_REGIONS = 192, 4

QUESTIONS = {  # image_id -> [(question, 10 answers, answer_type)]
    "1": [
        ("What animal is this?", ["cat"] * 9 + ["kitten"], "other"),
        ("How many cats are there?", ["1"] * 10, "number"),
    ],
    "2": [
        ("What is in the cup?", ["coffee"] * 8 + ["espresso", "latte"], "other"),
        ("Is there a saucer?", ["yes"] * 10, "yes/no"),
    ],
    "3": [
        ("Is this person wearing a suit?", ["yes"] * 9 + ["no"], "yes/no"),
        ("What is the person holding?", ["helmet"] * 7 + ["nothing", "flag", "helmet "], "other"),
    ],
}
CAPTIONS = {
    "1": ["A ginger tabby cat lying down and looking to the side.", "close up of a striped cat"],
    "2": ["A cup of coffee on a saucer with a spoon.", "coffee cup on a red background"],
    "3": ["An astronaut in a white suit poses in front of a flag.", "portrait of a smiling astronaut"],
}


def file_name(image_id: str) -> str:
    return f"COCO_val2014_{int(image_id):012d}.jpg"


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for sub in ("images", "vqa", "coco", "features"):
        shutil.rmtree(HERE / sub, ignore_errors=True)
        (HERE / sub).mkdir()

    # images: downscaled JPEGs
    sizes = {}
    for image_id, name in PHOTOS.items():
        im = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        im.thumbnail((MAX_SIDE, MAX_SIDE), Image.BICUBIC)
        im.save(HERE / "images" / file_name(image_id), quality=85)
        sizes[image_id] = im.size

    # VQA v2 pair
    questions, annotations, qid = [], [], 0
    for image_id, qs in QUESTIONS.items():
        for text, answers, atype in qs:
            qid += 1
            questions.append({"image_id": int(image_id), "question": text, "question_id": qid})
            annotations.append(
                {
                    "question_id": qid,
                    "image_id": int(image_id),
                    "answer_type": atype,
                    "question_type": " ".join(text.lower().split()[:2]),
                    "multiple_choice_answer": max(set(answers), key=answers.count),
                    "answers": [
                        {"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                        for j, a in enumerate(answers)
                    ],
                }
            )
    info = {"description": "vilbert_lite data_samples", "version": "2.0"}
    dump(
        HERE / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json",
        {
            "info": info,
            "task_type": "Open-Ended",
            "data_type": "mscoco",
            "data_subtype": "val2014",
            "questions": questions,
        },
    )
    dump(
        HERE / "vqa" / "v2_mscoco_val2014_annotations.json",
        {"info": info, "data_type": "mscoco", "data_subtype": "val2014", "annotations": annotations},
    )

    # COCO captions
    images = [
        {"id": int(i), "file_name": file_name(i), "width": sizes[i][0], "height": sizes[i][1]} for i in PHOTOS
    ]
    anns, aid = [], 0
    for image_id, caps in CAPTIONS.items():
        for c in caps:
            aid += 1
            anns.append({"id": aid, "image_id": int(image_id), "caption": c})
    dump(HERE / "coco" / "captions_val2014.json", {"info": info, "images": images, "annotations": anns})

    # features: the store (one shard), then the same records in the official layouts
    extractor = RegionExtractor(max_regions=MAX_REGIONS, device="cpu")
    items = [(i, HERE / "images" / file_name(i), None) for i in PHOTOS]
    store = extract_features(items, HERE / "features" / "store", extractor, progress=False)
    records = [store.get(i) for i in PHOTOS]
    write_lmdb_features(HERE / "features" / "features.lmdb", records)
    (HERE / "features" / "features.lmdb" / "lock.mdb").unlink(missing_ok=True)
    write_tsv_features(HERE / "features" / "features.tsv", records)
    r = records[0]
    np.save(
        HERE / "features" / f"{r.image_id}.npy",
        {
            "image_id": r.image_id,
            "image_h": r.image_h,
            "image_w": r.image_w,
            "num_boxes": len(r.boxes),
            "boxes": r.boxes,
            "features": r.features,
            "cls_prob": r.cls_prob,
        },
        allow_pickle=True,
    )
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"data_samples: {total / 1024:.0f} KB")


def dump(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n")


if __name__ == "__main__":
    main()
