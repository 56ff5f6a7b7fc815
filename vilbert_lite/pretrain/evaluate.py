"""Held-out numbers of a pretrained model: image-text alignment, masked tokens, colour and shape words."""

from __future__ import annotations

import torch

from vilbert_lite.data.collate import collate_examples, make_collate
from vilbert_lite.data.scene import SHAPES
from vilbert_lite.data.texts import PLURAL, SYNONYMS
from vilbert_lite.device import resolve_device, to_device
from vilbert_lite.pretrain.data import CaptionImageDataset
from vilbert_lite.pretrain.objectives import aligned_prob, special_ids


def shape_name_groups(tokenizer, vocab_size: int) -> torch.Tensor:
    """(vocab_size,) long: for each token that is a whole shape name (any synonym or plural, e.g. "ball",
    "circles"), the index of its shape in world.SHAPES; -1 for every other token. Names of several WordPieces
    ("rhombus", "hexagon") are left out: their pieces are scored as exact tokens."""
    groups = torch.full((vocab_size,), -1, dtype=torch.long)
    for k, shape in enumerate(SHAPES):
        for name in {*SYNONYMS.get(shape, (shape,)), shape, PLURAL[shape]}:
            pieces = tokenizer.tokenize(name)
            if len(pieces) == 1:
                groups[tokenizer.convert_tokens_to_ids(pieces[0])] = k
    return groups


# ------------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def _vilbert_forward(core, b: dict, lm_pos: torch.Tensor):
    """ViLBERT's pretraining forward on a collated batch (on the device), token predictions at `lm_pos`."""
    return core(b["input_ids"], b["visual_feats"], b["visual_pos"], b["attention_mask"], b["visual_attention_mask"],
                b["token_type_ids"], lm_positions=lm_pos,
                region_positions=torch.zeros_like(b["visual_attention_mask"], dtype=torch.bool))  # fmt: skip


def evaluate_pretraining(model, dataset: CaptionImageDataset, tokenizer, seed: int = 0, batch_size: int = 64,
                         device: str | torch.device = "auto", forward=_vilbert_forward) -> dict[str, float]:  # fmt: skip
    """Held-out numbers of a pretrained model on `dataset`:

    alignment_acc   every caption with its own image (label 1) and with a caption of another image (label 0,
                    fixed random pick), P(aligned) > 0.5
    mlm_acc         15% of the caption tokens replaced by [MASK] (fixed seed), top-1 accuracy
    color_acc / shape_acc / color_shape_acc
                    all colour-word / shape-word tokens of a caption masked at once, top-1 accuracy: what
                    the image tells the model (a text-only model can only guess them from the rest)
    shape_name_acc  the same masked shape words, counting as right any word that names the same shape: the
                    captions pick a shape's name among synonyms at random ("circle", "ball", "disc", "dot"),
                    which no image can tell, so shape_acc has a ceiling well below 1

    forward(core, batch, lm_positions) -> output with `seq_relationship_logits` and `prediction_logits_t`: the
    model's pretraining forward (ViLBERT's by default; ViLT's in `vilt.pretrain.evaluate_vilt`), so that every
    model is scored on the same negatives and the same masks.
    """
    device = resolve_device(device)
    core = getattr(model, "module", model)
    was_training = core.training
    core.to(device).eval()
    mask_id, special = special_ids(tokenizer)
    g = torch.Generator().manual_seed(seed)
    n = len(dataset)
    img = torch.tensor(dataset.image_index)
    score = torch.rand(n, n, generator=g).masked_fill(img[:, None] == img[None, :], -1.0)
    partner = score.argmax(1)
    has_neg = score.max(1).values >= 0
    collate = make_collate(pad_id=tokenizer.pad_token_id)
    groups = shape_name_groups(tokenizer, core.config.vocab_size)
    tot: dict[str, float] = {}

    def add(k, correct, count):
        tot[k] = tot.get(k, 0.0) + float(correct)
        tot[k + "_n"] = tot.get(k + "_n", 0.0) + float(count)

    def run(batch, lm_pos=None):
        b = to_device(batch, device)
        lm_pos = torch.zeros_like(b["input_ids"], dtype=torch.bool) if lm_pos is None else lm_pos
        return forward(core, b, lm_pos.to(device))

    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        items = [dataset[i] for i in idx]
        pos = collate(items)
        p = aligned_prob(run(pos).seq_relationship_logits).cpu()
        add("alignment_acc", (p > 0.5).sum(), len(idx))
        negs = [{**it, "input_ids": dataset.ids[int(partner[i])]} for it, i in zip(items, idx) if has_neg[i]]
        if negs:
            p = aligned_prob(run(collate(negs)).seq_relationship_logits)
            add("alignment_acc", (p.cpu() <= 0.5).sum(), len(negs))
        # masked tokens: random 15%, and all colour / shape words
        ids, real = pos["input_ids"], pos["attention_mask"].bool()
        cand = real & ~torch.isin(ids, torch.tensor(special))
        rand_pos = cand & (torch.rand(ids.shape, generator=g) < 0.15)
        kinds = collate_examples([{"input_ids": dataset.kinds[i]} for i in idx])["input_ids"]
        for name, where in [("mlm_acc", rand_pos), ("color_acc", kinds == 1), ("shape_acc", kinds == 2)]:
            where = where & cand
            if not where.any():
                continue
            logits = run({**pos, "input_ids": ids.masked_fill(where, mask_id)}, where).prediction_logits_t
            pred, target = logits.argmax(-1).cpu(), ids[where]
            add(name, (pred == target).sum(), int(where.sum()))
            if name == "shape_acc":
                same = (pred == target) | ((groups[pred] == groups[target]) & (groups[target] >= 0))
                add("shape_name_acc", same.sum(), int(where.sum()))
    core.train(was_training)
    out = {k: tot[k] / tot[k + "_n"] for k in tot if not k.endswith("_n") and tot[k + "_n"]}
    if "color_acc" in tot and "shape_acc" in tot:
        out["color_shape_acc"] = (tot["color_acc"] + tot["shape_acc"]) / (
            tot["color_acc_n"] + tot["shape_acc_n"]
        )
    out.update({f"n_{k}": int(tot[k + "_n"]) for k in ("mlm_acc", "color_acc", "shape_acc") if k in tot})
    return out
