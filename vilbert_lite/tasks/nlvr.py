"""Verification, NLVR2-style: is a statement about two images true? (12-in-1, arXiv 1912.02315, group 4)

rows    (statement, left image) and (statement, right image), each through the backbone
head    vil_binary_prediction.logit_fc on the two fused pooled outputs concatenated:
        Linear(2bi, 2bi), GeLU, LayerNorm, Linear(2bi, 2) -> logits (B, 2)
loss    softmax cross-entropy; metric accuracy (labels are balanced: chance 0.5)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vilbert_lite.errors import UserError
from vilbert_lite.tasks.common import (
    SimpleClassifier,
    Source,
    TaskData,
    TaskSpec,
    evaluate_batches,
    new_heads,
    pair,
    per_scene_option,
    tokenize,
)

MAX_LENGTH = 32  # official 40 per image


def build_items(records, images) -> list[dict]:
    """NLVRItems -> items {pairs: [(statement, left), (statement, right)], label 0/1}."""
    texts = tokenize([r.statement for r in records], max_length=MAX_LENGTH)
    return [
        {"pairs": [pair(t, images[r.image_ids[0]]), pair(t, images[r.image_ids[1]])], "label": int(r.label)}
        for r, t in zip(records, texts)
    ]


def load(source: Source) -> TaskData:
    if source.kind != "synthetic":
        raise UserError("nlvr runs on the synthetic world only (data='synthetic')")
    per_scene = per_scene_option(source, "nlvr")
    records = {s: source.world.nlvr(s, per_scene) for s in ("train", "val", "test")}
    items = {s: build_items(records[s], source.images) for s in ("train", "val", "test")}
    labels = torch.tensor([it["label"] for it in items["test"]], dtype=torch.float)
    info = {"n_train": len(items["train"]), "n_eval": len(items["test"]),
            "chance": float(max(labels.mean(), 1 - labels.mean())) if len(labels) else 0.5}  # fmt: skip
    return TaskData(items["train"], items["val"], items["test"], info=info)


def heads(config, data: TaskData, init=None) -> dict:
    bi = config.bi_hidden_size
    return new_heads(config, vil_binary_prediction=SimpleClassifier(2 * bi, 2 * bi, 2))


def forward(m, batch) -> torch.Tensor:
    """-> logits (B, 2) from the (left, right) pooled outputs side by side."""
    pooled = m.encode(batch).pooled_output  # (2B, bi): rows alternate left, right
    return m.vil_binary_prediction(pooled.reshape(-1, 2 * pooled.shape[-1]))


def loss_fn(model, batch) -> tuple[torch.Tensor, dict]:
    logits = model(batch)
    loss = F.cross_entropy(logits, batch["label"])
    return loss, {"nlvr_accuracy": float((logits.argmax(1) == batch["label"]).float().mean())}


def evaluate(model, data: TaskData, split: str, batch_size: int) -> dict:
    items = {"val": data.val, "test": data.test, "train": data.train}[split]
    right = evaluate_batches(
        model, items, data.collate, lambda m, b: (m(b).argmax(1) == b["label"]).cpu(), batch_size
    )
    return {"nlvr_accuracy": float(torch.cat(right).float().mean())}


TASK = TaskSpec(
    name="nlvr", metrics=("nlvr_accuracy",), load=load, heads=heads, forward=forward, evaluate=evaluate,
    loss_fn=loss_fn, batch_scale=0.25,
    description="NLVR2-style verification: two image-statement pairs, pooled outputs concatenated",
)  # fmt: skip
