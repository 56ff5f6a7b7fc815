"""VQA: a 2-layer MLP on the fused pooled output over the answer vocabulary (REFERENCE §4).

    head    vil_prediction.logit_fc = Linear(bi, 2bi), GeLU, LayerNorm, Linear(2bi, n_answers)
    target  soft score per answer: min(#humans who gave it / 3, 1)     (B, n_answers)
    loss    BCE with logits on the soft scores, summed over answers, mean over the batch (official)
    metric  VQA accuracy of the arg-max answer: min(#humans who gave it / 3, 1)

The vocabulary is every (normalised) answer of the training split. A validation answer outside it can never be
predicted, so it counts as wrong; how many there are is reported (`oov_answers`, `oov_questions`).
Data: the synthetic world's questions, or real VQA v2 files (questions + annotations + images, regions
extracted with the built-in extractor and cached, or a feature store / LMDB given instead of the images).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from vilbert_lite.tasks.common import (
    MAX_REGIONS,
    ImageBank,
    SimpleClassifier,
    Source,
    TaskData,
    TaskSpec,
    evaluate_batches,
    extract,
    new_heads,
    pair,
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
    vocab_list = sorted({normalize_answer(a) for r in recs["train"] for a in r.answers})
    vocab = {a: i for i, a in enumerate(vocab_list)}
    items = {s: build_items(r, source.images, vocab) for s, r in recs.items()}
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
    return TaskData(
        items["train"], items["val"], items[final], info=info, extra={"vocab": vocab_list}, eval_split=final
    )


def _accuracy_of(answer_index: int, items: list[dict]) -> float:
    """VQA accuracy of always answering `answer_index`."""
    if answer_index < 0 or not items:
        return 0.0
    return float(torch.stack([it["target"][answer_index] for it in items]).mean())


def _chance(items: list[dict], n: int) -> float:
    """Expected VQA accuracy of a uniformly random answer from the vocabulary."""
    return float(torch.stack([it["target"] for it in items]).sum(1).mean() / max(n, 1)) if items else 0.0


class Banks:
    """Image lookup over the train and val feature sources (the train bank first)."""

    def __init__(self, banks: dict[str, ImageBank]):
        self.banks = banks

    def widths(self) -> tuple[int, int]:
        return self.banks["train"].widths()

    def __getitem__(self, image_id: str) -> dict:
        for bank in self.banks.values():
            try:
                return bank[image_id]
            except KeyError:
                continue
        raise KeyError(f"image {image_id!r} has no region features")


def load_vqa_v2(paths: dict, extractor=None, progress: bool = True) -> tuple[dict, Banks, dict]:
    """Real VQA v2 files -> ({"train", "val": VQAItems}, image bank, description for the run config).

    paths: train_/val_questions and _annotations (JSON), and per split either _images (a folder: regions are
    extracted with proposal boxes and cached per folder) or _features (a feature store folder or an LMDB)."""
    from vilbert_lite.data.formats import LMDBFeatures, read_vqa
    from vilbert_lite.data.regions import load_image
    from vilbert_lite.data.store import FeatureStore
    from vilbert_lite.pretrain import cache_dir
    from vilbert_lite.runs import config_hash

    paths = {k: v for k, v in paths.items() if v}
    unknown = sorted(set(paths) - set(REAL_FILES) - set(REAL_OPTIONAL))
    missing = [k for k in REAL_FILES if k not in paths]
    missing += [
        f"{s}_images or {s}_features"
        for s in ("train", "val")
        if not {f"{s}_images", f"{s}_features"} & set(paths)
    ]
    if unknown or missing:
        raise ValueError(
            f"VQA v2 data: unknown {unknown}, missing {missing}; needs {REAL_FILES} + images or features"
        )
    recs, banks, desc = {}, {}, {"kind": "vqa_v2"}
    for split in ("train", "val"):
        feats, folder = paths.get(f"{split}_features"), paths.get(f"{split}_images")
        store = None
        if feats:
            store = (
                LMDBFeatures(feats) if str(feats).rstrip("/").endswith(".lmdb") else FeatureStore.open(feats)
            )
        items, files = read_vqa(paths[f"{split}_questions"], paths[f"{split}_annotations"],
                                None if store is not None else folder, store)  # fmt: skip
        if store is None:  # regions from the images (proposal boxes), extracted once, cached per folder
            key = config_hash({"images": str(Path(folder).resolve())})
            loaders = [(i, lambda i=i, f=files[i]: (load_image(f, i), None)) for i in sorted(files)]
            store, _ = extract(loaders, cache_dir() / "features" / f"images-{key}", extractor, progress)
        recs[split], banks[split] = items, ImageBank(store, MAX_REGIONS)
        desc.update({k: str(Path(v).resolve()) for k, v in paths.items() if k.startswith(split)})
        desc[f"{split}_store"] = getattr(store, "key", str(feats))
    return recs, Banks(banks), desc


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

    acc = torch.cat(evaluate_batches(model, items, data.collate, step, batch_size))
    return {"vqa_accuracy": float(acc.mean())}


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
