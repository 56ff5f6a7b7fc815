"""VQA: a 2-layer MLP on the fused pooled output over the answer vocabulary (ViLBERT, arXiv 1908.02265, §4).

    head    vil_prediction.logit_fc = Linear(bi, 2bi), GeLU, LayerNorm, Linear(2bi, n_answers)
    target  soft score per answer: min(#humans who gave it / 3, 1)     (B, n_answers)
    loss    BCE with logits on the soft scores, summed over answers, mean over the batch (official)
    metric  VQA accuracy of the arg-max answer: min(#humans who gave it / 3, 1)

The vocabulary is every (normalised) answer of the training split. A validation answer outside it can never be
predicted, so it counts as wrong; how many there are is reported (`oov_answers`, `oov_questions`).
Data: the synthetic world's questions, or real VQA v2 files (questions + annotations + images, regions
extracted with the built-in extractor and cached, or a feature store / LMDB given instead of the images). Real
data is checked before training: questions whose image is missing or unreadable, and validation questions with
no answer in the vocabulary, are counted and named (`load_vqa_v2`, `skip_gaps`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from vilbert_lite.data.formats import LMDBFeatures, image_paths_by_id, read_vqa
from vilbert_lite.data.store import FeatureStore, cache_dir
from vilbert_lite.errors import UserError
from vilbert_lite.runs import config_hash, content_digest
from vilbert_lite.tasks.common import (
    MAX_REGIONS,
    ImageBank,
    SimpleClassifier,
    Source,
    TaskData,
    TaskSpec,
    evaluate_batches,
    extract_files,
    new_heads,
    pair,
    split_images,
    tokenize,
)

MAX_LENGTH = 24  # question tokens (official 23)
REAL_FILES = ("train_questions", "train_annotations", "val_questions", "val_annotations")
REAL_OPTIONAL = ("train_images", "val_images", "train_features", "val_features")


# ---------------------------------------------------------------------------------------------------- data
def normalize_answer(a: str) -> str:
    """Lower-case, trim, drop a trailing period and collapse spaces ('Helmet. ' -> 'helmet')."""
    return re.sub(r"\s+", " ", a.strip().lower()).rstrip(".").strip()


def soft_scores(answers: list[str], vocab: dict[str, int]) -> torch.Tensor:
    """Human answers (normalised) -> (n_answers,) target: min(count / 3, 1) for each in-vocabulary answer."""
    t = torch.zeros(len(vocab))
    for a, n in Counter(answers).items():
        if a in vocab:
            t[vocab[a]] = min(n / 3, 1.0)
    return t


def build_items(records, images, vocab: dict[str, int]) -> list[dict]:
    """VQAItems -> items {pairs: [(question, image)], target (n_answers,)}."""
    texts = tokenize([r.question for r in records], max_length=MAX_LENGTH)
    return [
        {
            "pairs": [pair(t, images[r.image_id])],
            "target": soft_scores([normalize_answer(a) for a in r.answers], vocab),
        }
        for r, t in zip(records, texts)
    ]


def oov_counts(records, vocab: dict[str, int]) -> tuple[int, int]:
    """(distinct answers not in the vocabulary, questions whose majority answer is not in it)."""
    answers = [[normalize_answer(a) for a in r.answers] for r in records]
    oov = {a for ans in answers for a in ans if a not in vocab}
    majority = sum(Counter(ans).most_common(1)[0][0] not in vocab for ans in answers if ans)
    return len(oov), majority


def load(source: Source) -> TaskData:
    """Train / val / test items and the answer vocabulary (from the training answers). Real data has no test
    split: the final numbers come from val."""
    if source.kind == "synthetic":
        recs = {s: source.world.vqa(s) for s in ("train", "val", "test")}
    else:
        recs = dict(source.records)
    vocab_list = answer_vocab(recs["train"])
    vocab = {a: i for i, a in enumerate(vocab_list)}
    items = {s: build_items(r, split_images(source.images, s), vocab) for s, r in recs.items()}
    final = "test" if "test" in items else "val"
    majority = Counter(
        normalize_answer(Counter(r.answers).most_common(1)[0][0]) for r in recs["train"] if r.answers
    )
    top = majority.most_common(1)[0][0] if majority else ""
    oov_a, oov_q = oov_counts(recs[final], vocab)
    info = {
        "n_answers": len(vocab), "n_train": len(items["train"]), "n_eval": len(items[final]),
        "oov_answers": oov_a, "oov_questions": oov_q, "majority_answer": top,
        "majority_baseline": _accuracy_of(vocab.get(top, -1), items[final]), "chance": _chance(items[final], len(vocab)),
    }  # fmt: skip
    extra: dict = {"vocab": vocab_list}
    if source.kind != "synthetic":  # real data: accuracy per answer type too (VQA v2's answer_type)
        extra["qtypes"] = {s: [r.qtype for r in rs] for s, rs in recs.items()}
    return TaskData(items["train"], items["val"], items[final], info=info, extra=extra, eval_split=final)


def _accuracy_of(answer_index: int, items: list[dict]) -> float:
    """VQA accuracy of always answering `answer_index`."""
    if answer_index < 0 or not items:
        return 0.0
    return float(torch.stack([it["target"][answer_index] for it in items]).mean())


def _chance(items: list[dict], n: int) -> float:
    """Expected VQA accuracy of a uniformly random answer from the vocabulary."""
    return float(torch.stack([it["target"] for it in items]).sum(1).mean() / max(n, 1)) if items else 0.0


class Banks:
    """One image bank per split of a real data set. An image id names an image only within its split (many data
    sets number each split's images from 0, and a COCO file name's number is the same in train2014 and val2014),
    so a split's questions read their own split's bank (`for_split`), never another's."""

    def __init__(self, banks: dict[str, ImageBank]):
        self.banks = banks

    def widths(self) -> tuple[int, int]:
        return self.banks["train"].widths()

    def for_split(self, split: str) -> ImageBank:
        return self.banks[split]

    def __getitem__(self, image_id: str) -> dict:
        raise TypeError(f"image {image_id!r}: image ids are per split here; use .for_split(split)[image_id]")


def load_vqa_v2(paths: dict, extractor=None, progress: bool = True,
                skip_gaps: bool = False) -> tuple[dict, Banks, dict, list[dict]]:  # fmt: skip
    """Real VQA v2 files -> ({"train", "val": VQAItems}, image bank, description for the run config, gaps).

    paths: train_/val_questions and _annotations (JSON), and per split either _images (a folder: regions are
    extracted with proposal boxes and cached per folder) or _features (a feature store folder or an LMDB).

    Gaps are found before any training, each {split, question_id, image_id, kind, problem}: a question whose
    image has no file in the folder ("no_image"), no features in the store or only in a corrupt shard
    ("no_features"), or an image file that cannot be read ("unreadable"); and a validation question none of
    whose answers is in the vocabulary of the training answers ("oov": it can never score). Image gaps raise a
    UserError that counts and names them, unless `skip_gaps`, which leaves those questions out (and the "oov"
    ones). Without `skip_gaps`, "oov" questions are kept and count as wrong, as the metric defines."""
    paths = {k: v for k, v in paths.items() if v}
    unknown = sorted(set(paths) - set(REAL_FILES) - set(REAL_OPTIONAL))
    missing = [k for k in REAL_FILES if k not in paths]
    missing += [
        f"{s}_images or {s}_features"
        for s in ("train", "val")
        if not {f"{s}_images", f"{s}_features"} & set(paths)
    ]
    if unknown or missing:
        raise UserError(
            f"VQA v2 data: unknown {unknown}, missing {missing}; needs {REAL_FILES} + images or features"
        )
    recs, banks, desc, gaps = {}, {}, {"kind": "vqa_v2"}, []
    for split in ("train", "val"):
        feats, folder = paths.get(f"{split}_features"), paths.get(f"{split}_images")
        items, _ = read_vqa(paths[f"{split}_questions"], paths[f"{split}_annotations"])
        ids = sorted({r.image_id for r in items})
        problem: dict[str, tuple[str, str]] = {}  # image id -> (kind, what is wrong)
        if feats:
            lmdb = str(feats).rstrip("/").endswith(".lmdb")
            store = LMDBFeatures(feats) if lmdb else FeatureStore.open(feats)
            corrupt = [] if lmdb else store.verify()
            lost = {i: s["file"] for s in ([] if lmdb else store.index["shards"]) if s["file"] in corrupt
                    for i in s["image_ids"]}  # fmt: skip
            for i in ids:
                if i in lost:
                    problem[i] = (
                        "no_features",
                        f"its features are in the corrupt shard {lost[i]} of {feats}",
                    )
                elif i not in store:
                    problem[i] = ("no_features", f"no region features in {feats}")
        else:  # regions from the images (proposal boxes), extracted once, cached per folder
            files = image_paths_by_id(folder)
            problem = {i: ("no_image", f"no image file for it in {folder}") for i in ids if i not in files}
            key = config_hash({"images": str(Path(folder).resolve())})
            used = {i: files[i] for i in ids if i in files}
            store, _ = extract_files(
                used, cache_dir() / "features" / f"images-{key}", extractor, progress, "skip"
            )
            problem.update(
                {r["image_id"]: ("unreadable", f"{r['path']}: {r['reason']}") for r in store.skipped}
            )
        gaps += [_gap(split, r, *problem[r.image_id]) for r in items if r.image_id in problem]
        recs[split] = [r for r in items if r.image_id not in problem] if skip_gaps else items
        banks[split] = ImageBank(store, MAX_REGIONS)
        desc.update({k: str(Path(v).resolve()) for k, v in paths.items() if k.startswith(split)})
        desc[f"{split}_store"] = getattr(store, "key", str(feats))
        # the run key follows the data's content, not only its paths: an edited file is another run
        desc[f"{split}_content"] = {
            "questions": content_digest(paths[f"{split}_questions"]),
            "annotations": content_digest(paths[f"{split}_annotations"]),
            "images": _images_digest(store, ids, problem) if folder else content_digest(feats),
        }
    vocab = set(answer_vocab(recs["train"]))
    gaps += [_gap("val", r, "oov", f"answers {sorted(set(r.answers))[:3]}")
             for r in recs["val"] if r.answers and not any(normalize_answer(a) in vocab for a in r.answers)]  # fmt: skip
    if any(g["kind"] != "oov" for g in gaps) and not skip_gaps:
        raise UserError(
            f"VQA v2 data: {gap_summary(gaps)}; fix the data or pass --skip-gaps to leave them out"
        )
    if skip_gaps:
        dropped = {(g["split"], g["question_id"]) for g in gaps}
        recs = {s: [r for r in rs if (s, r.question_id) not in dropped] for s, rs in recs.items()}
        desc["skip_gaps"] = {s: sum(g["split"] == s for g in gaps) for s in recs}  # questions left out
        empty = [s for s, rs in recs.items() if not rs]
        if empty:
            raise UserError(f"VQA v2 data: no {' or '.join(empty)} questions left after --skip-gaps")
    return recs, Banks(banks), desc, gaps


def _images_digest(store, ids: list[str], problem: dict) -> str:
    """sha256 over the (image id, file content hash) of a split's stored images: what the run read."""
    rows = sorted((i, store.sources.get(i, {}).get("sha256", "")) for i in ids if i not in problem)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def answer_vocab(records) -> list[str]:
    """The answer vocabulary: every normalised answer of the (training) records, sorted."""
    return sorted({normalize_answer(a) for r in records for a in r.answers})


GAP_KINDS = {
    "no_image": "whose image has no file",
    "no_features": "whose image has no region features",
    "unreadable": "whose image file cannot be read",
    "oov": "with no answer in the training vocabulary",
}


def _gap(split: str, record, kind: str, problem: str) -> dict:
    return {"split": split, "question_id": record.question_id, "image_id": record.image_id, "kind": kind,
            "problem": problem}  # fmt: skip


def gap_summary(gaps: list[dict]) -> str:
    """Gaps counted per split and kind, the first three of each named: 'train: 2 questions whose image has no
    file: question 7 (image 42: no image file for it in imgs/), question 9 (...)'."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for g in gaps:
        groups.setdefault((g["split"], g["kind"]), []).append(g)

    def some(gs: list[dict]) -> str:
        shown = ", ".join(
            f"question {g['question_id']} (image {g['image_id']}: {g['problem']})" for g in gs[:3]
        )
        return shown + (f" and {len(gs) - 3} more" if len(gs) > 3 else "")

    return "; ".join(
        f"{split}: {len(gs)} question{'s' if len(gs) > 1 else ''} {GAP_KINDS[kind]}: {some(gs)}"
        for (split, kind), gs in groups.items()
    )


# --------------------------------------------------------------------------------------------------- model
def heads(config, data: TaskData, init=None) -> dict:
    bi = config.bi_hidden_size
    return new_heads(config, vil_prediction=SimpleClassifier(bi, 2 * bi, data.info["n_answers"]))


def forward(m, batch) -> torch.Tensor:
    """-> answer logits (B, n_answers)."""
    return m.vil_prediction(m.encode(batch).pooled_output)


def loss_fn(model, batch) -> tuple[torch.Tensor, dict]:
    logits, target = model(batch), batch["target"]  # (B, n_answers) each
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / len(target)
    return loss, {"vqa_accuracy": float(target.gather(1, logits.argmax(1, keepdim=True)).mean())}


def evaluate(model, data: TaskData, split: str, batch_size: int) -> dict:
    """VQA accuracy of the arg-max answer (out-of-vocabulary answers can never be matched: they count as wrong)."""
    items = {"val": data.val, "test": data.test, "train": data.train}[split]

    def step(m, batch):
        return batch["target"].gather(1, m(batch).argmax(1, keepdim=True)).squeeze(1).cpu()

    acc = torch.cat(evaluate_batches(model, items, data.collate, step, batch_size))  # (N,) per question
    out = {"vqa_accuracy": float(acc.mean())}
    types = data.extra.get("qtypes", {}).get(split, [])[: len(acc)]  # the per-epoch check reads a prefix
    for t in sorted({t for t in types if t}):
        picked = torch.tensor([x == t for x in types])
        out[f"vqa_accuracy_{re.sub(r'[^a-z0-9]+', '_', t.lower())}"] = float(acc[picked].mean())
    return out


TASK = TaskSpec(
    name="vqa",
    metrics=("vqa_accuracy",),
    load=load,
    heads=heads,
    forward=forward,
    evaluate=evaluate,
    loss_fn=loss_fn,
    description="visual question answering: MLP over the answer vocabulary, BCE on soft scores",
)
