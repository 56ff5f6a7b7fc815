"""Referring expressions (RefCOCO+-style): pick the region a phrase refers to (ViLBERT, arXiv 1908.02265, §4).

    regions  proposals from `regions.propose_boxes` (not the ground-truth boxes), + the global region 0
    head     vision_logit = Linear(v_hidden, 1) on every region of sequence_output_v -> logits (B, R)
    target   IoU(region box, ground-truth box), set to 0 below 0.5
    loss     BCE with logits over the real regions, summed over regions, mean over the batch
    metric   accuracy: IoU(box of the arg-max region, ground truth) > 0.5 (the global region never counts)

`refer_upper_bound` is the share of expressions for which some proposal has IoU > 0.5 (what a perfect
scorer could reach); `chance` is the expected accuracy of picking a proposal at random.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vilbert_lite.data.regions import box_iou
from vilbert_lite.errors import UserError
from vilbert_lite.tasks.common import (
    Source,
    TaskData,
    TaskSpec,
    collate_pairs,
    evaluate_batches,
    new_heads,
    pair,
    tokenize,
)

MAX_LENGTH = 24  # official 20
IOU_THRESHOLD = 0.5


def build_items(records, images) -> list[dict]:
    """RefExps -> items {pairs: [(phrase, proposals)], iou (R,)} with the IoU of every region with the truth."""
    texts = tokenize([r.text for r in records], max_length=MAX_LENGTH)
    items = []
    for r, t in zip(records, texts):
        v = images[r.image_id]
        iou = torch.from_numpy(
            box_iou(v["boxes"].numpy(), np.asarray(r.box, np.float32))[:, 0]
        ).float()  # (R,)
        items.append({"pairs": [pair(t, v)], "iou": iou})
    return items


def collate(items: list[dict]) -> dict:
    """collate_pairs + the IoU vectors padded to the batch's region count (B, R)."""
    batch = collate_pairs([{"pairs": it["pairs"]} for it in items])
    R = batch["visual_feats"].shape[1]
    batch["iou"] = torch.stack([F.pad(it["iou"], (0, R - len(it["iou"]))) for it in items])
    return batch


def _bounds(items: list[dict]) -> tuple[float, float]:
    """(chance, upper bound) over the proposals (region 0 excluded)."""
    hits = [(it["iou"][1:] > IOU_THRESHOLD).float() for it in items if len(it["iou"]) > 1]
    if not hits:
        return 0.0, 0.0
    return float(np.mean([h.mean() for h in hits])), float(np.mean([h.max() for h in hits]))


def load(source: Source) -> TaskData:
    if source.kind != "synthetic":
        raise UserError("refer runs on the synthetic world only (data='synthetic')")
    items = {s: build_items(source.world.refexps(s), source.images) for s in ("train", "val", "test")}
    chance, upper = _bounds(items["test"])
    info = {"n_train": len(items["train"]), "n_eval": len(items["test"]), "chance": chance,
            "refer_upper_bound": upper,
            "proposals_per_image": float(np.mean([len(it["iou"]) - 1 for it in items["test"]]))}  # fmt: skip
    return TaskData(items["train"], items["val"], items["test"], collate=collate, info=info)


def heads(config, data: TaskData, init=None) -> dict:
    return new_heads(config, vision_logit=nn.Linear(config.v_hidden_size, 1))


def forward(m, batch) -> torch.Tensor:
    """-> region logits (B, R)."""
    return m.vision_logit(m.encode(batch).sequence_output_v).squeeze(-1)


def _pick(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """Arg-max over the real proposals (padding and the global region 0 excluded) -> (B,)."""
    ok = batch["visual_attention_mask"].bool().clone()
    ok[:, 0] = False
    return logits.masked_fill(~ok, float("-inf")).argmax(1)


def loss_fn(model, batch) -> tuple[torch.Tensor, dict]:
    logits, iou = model(batch), batch["iou"]
    target = iou * (iou >= IOU_THRESHOLD)
    real = batch["visual_attention_mask"].to(logits.dtype)
    loss = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * real).sum() / len(logits)
    acc = (iou.gather(1, _pick(logits, batch)[:, None]) > IOU_THRESHOLD).float().mean()
    return loss, {"refer_accuracy": float(acc)}


def evaluate(model, data: TaskData, split: str, batch_size: int) -> dict:
    items = {"val": data.val, "test": data.test, "train": data.train}[split]

    def step(m, b):
        return (b["iou"].gather(1, _pick(m(b), b)[:, None]).squeeze(1) > IOU_THRESHOLD).cpu()

    right = torch.cat(evaluate_batches(model, items, data.collate, step, batch_size)).float()
    return {"refer_accuracy": float(right.mean())}


TASK = TaskSpec(
    name="refer", metrics=("refer_accuracy",), load=load, heads=heads, forward=forward, evaluate=evaluate,
    loss_fn=loss_fn, features="proposals",
    description="referring expressions: one logit per proposal region, BCE against IoU targets",
)  # fmt: skip
