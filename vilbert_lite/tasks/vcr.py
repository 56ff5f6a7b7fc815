"""VCR-style multiple choice: Q→A and QA→R, each a 4-way choice (ViLBERT, arXiv 1908.02265, §4).

    Q→A    4 rows per question: [CLS] question [SEP] answer_k [SEP] with the image
    QA→R   4 rows: [CLS] question + right answer [SEP] rationale_k [SEP] with the image
    head   vil_logit = Linear(bi, 1) on each row's fused pooled output -> scores (B, 4)
    loss   softmax cross-entropy over the 4 options
    metric q2a, qa2r accuracy; q2ar = both right for the same question (chance 1/4, 1/4, 1/16)

Both sub-tasks are trained together in one model (the items alternate Q→A, QA→R); the official code trains
them as two tasks with the same head, which doubles the cost for no change in the method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vilbert_lite.data.texts import VCR_STYLES
from vilbert_lite.errors import UserError
from vilbert_lite.tasks.common import (
    Source,
    TaskData,
    TaskSpec,
    evaluate_batches,
    new_heads,
    pair,
    per_scene_option,
    tokenize,
)

MAX_LENGTH = 48  # official 60 (Q→A) / 80 (QA→R) for the longer real sentences
N_OPTIONS = 4


def build_items(records, images) -> list[dict]:
    """VCRItems -> items, two per question: Q→A (kind 0) then QA→R (kind 1), each {pairs: 4 rows, label, kind}."""
    q = [r.question for r in records for _ in range(N_OPTIONS)]
    qa = [f"{r.question} {r.answers[r.answer_label]}" for r in records for _ in range(N_OPTIONS)]
    answers = tokenize(q, [a for r in records for a in r.answers], MAX_LENGTH)
    rationales = tokenize(qa, [x for r in records for x in r.rationales], MAX_LENGTH)
    items = []
    for i, r in enumerate(records):
        v = images[r.image_id]
        rows = slice(i * N_OPTIONS, (i + 1) * N_OPTIONS)
        items.append({"pairs": [pair(t, v) for t in answers[rows]], "label": r.answer_label, "kind": 0})
        items.append({"pairs": [pair(t, v) for t in rationales[rows]], "label": r.rationale_label, "kind": 1})
    return items


def questions(source: Source, split: str) -> list:
    """The world's VCRItems of `split` for the source's task data options (`per_scene`, `style`)."""
    style = source.options.get("style", "relation")
    if style not in VCR_STYLES:
        raise UserError(f"vcr: task data option style must be one of {VCR_STYLES}, got {style!r}")
    return source.world.vcr(split, per_scene_option(source, "vcr"), style)


def load(source: Source) -> TaskData:
    if source.kind != "synthetic":
        raise UserError("vcr runs on the synthetic world only (data='synthetic')")
    vcr = {s: questions(source, s) for s in ("train", "val", "test")}
    items = {s: build_items(vcr[s], source.images) for s in vcr}
    info = {"n_train": len(items["train"]) // 2, "n_eval": len(items["test"]) // 2, "chance": 1 / N_OPTIONS,
            "chance_q2ar": 1 / N_OPTIONS**2}  # fmt: skip
    return TaskData(items["train"], items["val"], items["test"], info=info)


def heads(config, data: TaskData, init=None) -> dict:
    return new_heads(config, vil_logit=nn.Linear(config.bi_hidden_size, 1))


def forward(m, batch) -> torch.Tensor:
    """-> option scores (B, 4)."""
    return m.vil_logit(m.encode(batch).pooled_output).view(-1, N_OPTIONS)


def loss_fn(model, batch) -> tuple[torch.Tensor, dict]:
    scores = model(batch)
    loss = F.cross_entropy(scores, batch["label"])
    return loss, {"accuracy": float((scores.argmax(1) == batch["label"]).float().mean())}


def evaluate(model, data: TaskData, split: str, batch_size: int) -> dict:
    """q2a, qa2r and q2ar (both right) accuracy."""
    items = {"val": data.val, "test": data.test, "train": data.train}[split]
    right = torch.cat(evaluate_batches(model, items, data.collate, lambda m, b: (m(b).argmax(1) == b["label"]).cpu(),
                                       batch_size))  # fmt: skip
    right = right.view(-1, 2).float()  # (questions, [Q→A, QA→R])
    return {"q2a": float(right[:, 0].mean()), "qa2r": float(right[:, 1].mean()),
            "q2ar": float(right.prod(1).mean())}  # fmt: skip


TASK = TaskSpec(
    name="vcr", metrics=("q2a", "qa2r", "q2ar"), load=load, heads=heads, forward=forward, evaluate=evaluate,
    loss_fn=loss_fn, batch_scale=0.25,
    description="VCR-style Q→A and QA→R: 4-way multiple choice, one score per option",
)  # fmt: skip
