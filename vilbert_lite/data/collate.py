"""One collate for every text + image dataset: pad the text, build the masks, stack the regions.

An item is a dict. Recognised keys:

    input_ids        (T,) long, [CLS] ... [SEP] (any length; padded to the batch max, or to `max_length`)
    token_type_ids   (T,) long, optional (zeros when absent)
    visual_feats, visual_pos, cls_prob, boxes, num_regions
                     one image's `regions.visual_inputs(...)`, padded by `regions.collate_visual`
    anything else    tensors of equal shape are stacked, numbers become a tensor, the rest a list

The batch has input_ids / attention_mask / token_type_ids (B, T) and the visual keys with
visual_attention_mask (B, R); 1 marks a real token / region everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch

from vilbert_lite.data.regions import collate_visual

VISUAL_KEYS = ("visual_feats", "visual_pos", "cls_prob", "boxes", "num_regions")
TEXT_KEYS = ("input_ids", "token_type_ids", "attention_mask")


def pad_text(
    input_ids: Sequence[Sequence[int] | torch.Tensor],
    token_type_ids: Sequence[Sequence[int] | torch.Tensor] | None = None,
    pad_id: int = 0,
    max_length: int | None = None,
) -> dict[str, torch.Tensor]:
    """Right-pad token id lists to the longest (or to `max_length`, truncating) -> input_ids, attention_mask,
    token_type_ids, each (B, T) long."""
    rows = [torch.as_tensor(r, dtype=torch.long).reshape(-1) for r in input_ids]
    types = (
        None
        if token_type_ids is None
        else [torch.as_tensor(r, dtype=torch.long).reshape(-1) for r in token_type_ids]
    )
    T = max_length if max_length is not None else max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    tt = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        n = min(len(r), T)
        ids[i, :n], mask[i, :n] = r[:n], 1
        if types is not None:
            tt[i, :n] = types[i][:n]
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}


def collate_examples(items: list[dict], pad_id: int = 0, max_length: int | None = None) -> dict:
    """Batch a list of item dicts (see the module docstring)."""
    if not items:
        raise ValueError("collate_examples: empty batch")
    out: dict = {}
    if "input_ids" in items[0]:
        types = [it["token_type_ids"] for it in items] if "token_type_ids" in items[0] else None
        out.update(pad_text([it["input_ids"] for it in items], types, pad_id, max_length))
    if "visual_feats" in items[0]:
        out.update(collate_visual([{k: it[k] for k in VISUAL_KEYS} for it in items]))
    for key in items[0]:
        if key in VISUAL_KEYS or key in TEXT_KEYS:
            continue
        values = [it[key] for it in items]
        if all(isinstance(v, torch.Tensor) for v in values) and len({tuple(v.shape) for v in values}) == 1:
            out[key] = torch.stack(values)
        elif all(isinstance(v, (bool, int, float)) for v in values):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out


def make_collate(pad_id: int = 0, max_length: int | None = None):
    """A picklable collate_fn (for DataLoader workers) with a fixed pad id / text length."""
    return partial(collate_examples, pad_id=pad_id, max_length=max_length)
