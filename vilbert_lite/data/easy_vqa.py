"""easy-VQA (the PyPI package `easy-vqa`) written out as VQA v2 files: a real data set nobody here drew.

    paths = write_vqa_v2("data/easy_vqa", n_train=1000, n_test=1000)
    finetune("vqa", init=run, data="vqa_v2", **paths)          # train on easy-VQA's train split, score on its test

easy-VQA: 64x64 images of one coloured shape (4,000 train, 1,000 test), about ten questions per image ("what
color is the shape?", "is there a triangle in the image?"), 13 answers. Each split numbers its images from 0, as
many real data sets do, so the same id names two different images in the two splits. The files written are the
VQA v2 layout (questions, annotations with 10 answers, one image folder per split, `<image_id>.png`), with the
answer type ("yes/no", "shape", "color") of each question in `answer_type`; easy-VQA's test split becomes the
"val" files, since VQA v2 fine-tuning scores on val.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vilbert_lite.errors import UserError

SHAPES = ("circle", "rectangle", "triangle")
SPLITS = {"train": "train", "val": "test"}  # our split -> easy-VQA's


def answer_type(answer: str) -> str:
    """'yes/no', 'shape' or 'color': what kind of answer a question asks for."""
    return "yes/no" if answer in ("yes", "no") else "shape" if answer in SHAPES else "color"


def _source() -> Path:
    try:
        import easy_vqa  # the data set's package: only writing its files needs it
    except ImportError as e:  # a declared dependency: the project's install brings it
        raise UserError("easy-VQA needs the package easy-vqa (pip install easy-vqa)") from e
    return Path(easy_vqa.__file__).resolve().parent / "data"


def write_vqa_v2(out: str | Path, n_train: int | None = None, n_test: int | None = None) -> dict[str, Path]:
    """The first `n_train` train and `n_test` test images of easy-VQA with all their questions, as VQA v2 files
    under `out` -> the paths `finetune(..., data="vqa_v2", **paths)` takes. Files already written the same way
    are left as they are (their modification times too, so feature caches stay valid)."""
    src, out = _source(), Path(out)
    paths = {}
    for split, theirs in SPLITS.items():
        n = n_train if split == "train" else n_test
        rows = json.loads((src / theirs / "questions.json").read_text())  # [[question, answer, image_id]]
        ids = sorted({int(i) for _, _, i in rows})[:n]
        keep = set(ids)
        rows = [r for r in rows if int(r[2]) in keep]
        images = out / f"{split}_images"
        images.mkdir(parents=True, exist_ok=True)
        for i in ids:
            target = images / f"{i}.png"
            if (
                not target.exists()
                or target.stat().st_size != (src / theirs / "images" / f"{i}.png").stat().st_size
            ):
                shutil.copyfile(src / theirs / "images" / f"{i}.png", target)
        qid = [f"{split}-{k}" for k in range(len(rows))]
        questions = {"questions": [{"question_id": q, "image_id": int(i), "question": text}
                                   for q, (text, _, i) in zip(qid, rows)]}  # fmt: skip
        annotations = {"annotations": [{"question_id": q, "image_id": int(i), "answer_type": answer_type(a),
                                        "multiple_choice_answer": a, "answers": [{"answer": a}] * 10}
                                       for q, (_, a, i) in zip(qid, rows)]}  # fmt: skip
        for name, data in (("questions", questions), ("annotations", annotations)):
            f = out / f"{split}_{name}.json"
            text = json.dumps(data)
            if not f.exists() or f.read_text() != text:
                f.write_text(text)
            paths[f"{split}_{name}"] = f
        paths[f"{split}_images"] = images
    return paths
