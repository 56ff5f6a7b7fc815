"""What a pretrained model can do with no fine-tuning: sample captions for an image (iterative masked-token
sampling, the paper's Figure 5) and score image-text pairs."""

from __future__ import annotations

import torch

from vilbert_lite.pretrain.data import MAX_SEQ_LENGTH
from vilbert_lite.pretrain.objectives import aligned_prob


# ------------------------------------------------------------------------------------------------- use
def _as_batch(visual: dict, device) -> dict:
    """One image's visual_inputs (R, D) or a collated batch (B, R, D) -> batched model inputs on `device`."""
    v = dict(visual)
    if v["visual_feats"].dim() == 2:
        v = {k: t[None] for k, t in v.items() if isinstance(t, torch.Tensor) and t.dim() >= 1}
    if "visual_attention_mask" not in v:
        v["visual_attention_mask"] = torch.ones(v["visual_feats"].shape[:2], dtype=torch.long)
    return {k: v[k].to(device) for k in ("visual_feats", "visual_pos", "visual_attention_mask")}


def _banned_ids(tokenizer, vocab_size: int) -> torch.Tensor:
    toks = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    return torch.tensor([t.startswith("[") and t.endswith("]") for t in toks])


@torch.no_grad()
def sample_caption(
    model,
    tokenizer,
    visual: dict,
    length: int = 12,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    return_ids: bool = False,
):
    """Sample captions for images by iterative masked-token sampling (the paper's Figure 5).

    Start from [CLS] [MASK]*length [SEP]; step 0 samples every position from the model; each later step
    re-masks a random subset (shrinking from all positions to one) and resamples it given the image and
    the rest. One forward pass per step (the heads run only at the re-masked positions). `visual` is one
    image's `visual_inputs` or a collated batch. -> list of strings (and the (B, length+2) ids)."""
    core = getattr(model, "module", model)
    device = next(core.parameters()).device
    was_training = core.training
    core.eval()
    v = _as_batch(visual, device)
    B = v["visual_feats"].shape[0]
    steps = steps or 2 * length
    mask_id, cls_id, sep_id = tokenizer.mask_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id
    ids = torch.full((B, length + 2), mask_id, dtype=torch.long)
    ids[:, 0], ids[:, -1] = cls_id, sep_id
    banned = _banned_ids(tokenizer, core.config.vocab_size)
    body = torch.zeros_like(ids, dtype=torch.bool)
    body[:, 1:-1] = True
    for s in range(steps):
        if s == 0:
            where = body
        else:  # re-mask k random caption positions per row, k shrinking linearly to 1
            k = max(1, round(length * (1 - s / steps)))
            r = torch.rand(B, length, generator=generator)
            chosen = r.argsort(1)[:, :k] + 1
            where = torch.zeros_like(body).scatter_(1, chosen, True)
        x = ids.masked_fill(where, mask_id)
        out = core(x.to(device), v["visual_feats"], v["visual_pos"], torch.ones_like(x).to(device),
                   v["visual_attention_mask"], torch.zeros_like(x).to(device), lm_positions=where.to(device))  # fmt: skip
        logits = out.prediction_logits_t.float().cpu() / max(temperature, 1e-6)
        logits[:, banned] = float("-inf")
        if top_k:
            kth = logits.topk(top_k, -1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        ids[where] = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
    core.train(was_training)
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return (texts, ids) if return_ids else texts


def sample_best_caption(model, tokenizer, visual: dict, n: int = 4, **kw) -> tuple[str, list[str]]:
    """`n` captions sampled for one image (`sample_caption`, same keywords) and the one the model's own
    alignment head scores highest -> (best, all n). A decoding choice, as beam search is for a left-to-right
    model: no training, no labels."""
    drawn = [sample_caption(model, tokenizer, visual, **kw)[0] for _ in range(n)]
    return drawn[int(alignment_score(model, tokenizer, visual, drawn).argmax())], drawn


@torch.no_grad()
def alignment_score(model, tokenizer, visual: dict, texts: list[str] | str,
                    max_seq_length: int = MAX_SEQ_LENGTH) -> torch.Tensor:  # fmt: skip
    """P(caption matches image) from the alignment head -> (N,) tensor. `visual` is one image's
    `visual_inputs` (scored against every text) or a collated batch with one image per text."""
    core = getattr(model, "module", model)
    device = next(core.parameters()).device
    was_training = core.training
    core.eval()
    texts = [texts] if isinstance(texts, str) else list(texts)
    enc = tokenizer(texts, truncation=True, max_length=max_seq_length, padding=True, return_tensors="pt")
    v = _as_batch(visual, device)
    if v["visual_feats"].shape[0] == 1 and len(texts) > 1:
        v = {k: t.expand(len(texts), *t.shape[1:]) for k, t in v.items()}
    if v["visual_feats"].shape[0] != len(texts):
        raise ValueError(f"alignment_score: {v['visual_feats'].shape[0]} images for {len(texts)} texts")
    out = core(enc["input_ids"].to(device), v["visual_feats"], v["visual_pos"], enc["attention_mask"].to(device),
               v["visual_attention_mask"], enc["token_type_ids"].to(device),
               lm_positions=torch.zeros(enc["input_ids"].shape, dtype=torch.bool, device=device),
               region_positions=torch.zeros(v["visual_attention_mask"].shape, dtype=torch.bool, device=device))  # fmt: skip
    core.train(was_training)
    return aligned_prob(out.seq_relationship_logits).cpu()
