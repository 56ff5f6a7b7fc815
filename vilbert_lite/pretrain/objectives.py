"""The three pretraining objectives of ViLBERT (ViLBERT, arXiv 1908.02265, §3.2): masking and losses.

    masked language modelling   15% of tokens; 80% -> [MASK], 10% -> random token, 10% unchanged; cross-entropy
    masked region modelling     15% of regions (never the global region 0); 90% zeroed, 10% unchanged;
                                KL(target ‖ softmax(prediction)) against the region's class distribution
                                (or, with config.visual_target == 1, MSE regression of the region feature)
    multimodal alignment        50% of captions swapped for a caption of another image; binary head on the
                                fused pooled output (`make_pretraining_batch` swaps, `alignment_loss` scores)

Loss = weighted sum (equal weights by default). The prediction heads run only at the masked positions
(`lm_positions` / `region_positions` of `ViLBertForPreTraining`). All randomness comes from an explicit
`torch.Generator`, so a batch is masked the same way for the same seed.

Label conventions: token labels are the original id at masked positions and -1 elsewhere (ignore_index=-1, as
the official code); region labels are 1 at masked regions and 0 elsewhere; alignment labels are 1 when the
caption belongs to the image. ALIGNED_INDEX is the column of `seq_relationship_logits` that means "aligned".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Column of seq_relationship_logits meaning "caption matches the image". The official code labels a *random*
# caption 1, so column 0 = aligned; keeping that convention makes imported official checkpoints score right.
ALIGNED_INDEX = 0
DEFAULT_WEIGHTS = {"mlm": 1.0, "region": 1.0, "align": 1.0}
BERT_MASK_ID = 103  # bert-base-uncased [MASK]
BERT_SPECIAL_IDS = (0, 100, 101, 102, 103)  # [PAD] [UNK] [CLS] [SEP] [MASK]


def special_ids(tokenizer_or_special_ids) -> tuple[int, list[int]]:
    """(mask id, special ids never to mask) from a tokenizer, a (mask_id, ids) pair, or an iterable of ids
    (then the mask id is bert-base-uncased's 103)."""
    t = tokenizer_or_special_ids
    if hasattr(t, "all_special_ids"):
        return int(t.mask_token_id), sorted({int(i) for i in t.all_special_ids})
    if isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], int):
        return int(t[0]), sorted({int(i) for i in t[1]} | {int(t[0])})
    return BERT_MASK_ID, sorted({int(i) for i in t} | {BERT_MASK_ID})


def _rand(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform [0, 1) drawn on the generator's device (CPU by default), moved to `device`."""
    return torch.rand(shape, generator=generator).to(device)


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    tokenizer_or_special_ids=BERT_SPECIAL_IDS,
    vocab_size: int = 30522,
    generator: torch.Generator | None = None,
    prob: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of (B, T) ids -> (masked ids, labels): each real, non-special token is chosen with `prob`;
    chosen tokens become [MASK] (80%), a random token (10%) or stay (10%). labels = original id where chosen,
    -1 elsewhere. [CLS], [SEP], [PAD] (and padding positions) are never chosen."""
    mask_id, special = special_ids(tokenizer_or_special_ids)
    device = input_ids.device
    real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    cand = real & ~torch.isin(input_ids, torch.tensor(special, device=device))
    u = _rand(input_ids.shape, generator, device)
    v = _rand(input_ids.shape, generator, device)
    rnd = torch.randint(vocab_size, input_ids.shape, generator=generator).to(device)
    chosen = cand & (u < prob)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -1))
    ids = torch.where(chosen & (v < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    ids = torch.where(chosen & (v >= 0.8) & (v < 0.9), rnd, ids)
    return ids, labels


def mask_regions(
    visual_feats: torch.Tensor,
    visual_attention_mask: torch.Tensor | None,
    generator: torch.Generator | None = None,
    prob: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Region masking of (B, R, D) features -> (masked feats, region_labels (B, R) long, 1 = masked): each real
    region except the global region 0 is chosen with `prob`; chosen features are zeroed (90%) or kept (10%)."""
    B, R = visual_feats.shape[:2]
    device = visual_feats.device
    real = (
        torch.ones((B, R), dtype=torch.bool, device=device)
        if visual_attention_mask is None
        else visual_attention_mask.bool()
    )
    real = real & (torch.arange(R, device=device) > 0)[None]  # never the global IMG region
    u = _rand((B, R), generator, device)
    v = _rand((B, R), generator, device)
    chosen = real & (u < prob)
    zero = chosen & (v < 0.9)
    return visual_feats.masked_fill(zero[..., None], 0.0), chosen.long()


def swap_captions(
    batch: dict, generator: torch.Generator | None = None, prob: float = 0.5, key: str = "image_index"
) -> dict:
    """Replace each caption, with probability `prob`, by the caption of another batch item showing a different
    image (`batch[key]` identifies the image) -> new batch with `alignment_label` (B,) long, 1 = matched.
    An item whose batch holds no other image keeps its caption (label 1)."""
    ids = batch["input_ids"]
    B, device = ids.shape[0], ids.device
    img = batch[key].to(device)
    score = _rand((B, B), generator, device).masked_fill(img[:, None] == img[None, :], -1.0)
    partner = score.argmax(1)  # a random item with a different image, if any
    swap = (_rand((B,), generator, device) < prob) & (score.max(1).values >= 0)
    src = torch.where(swap, partner, torch.arange(B, device=device))
    out = dict(batch)
    for k in ("input_ids", "attention_mask", "token_type_ids", "text_index"):
        if k in batch and isinstance(batch[k], torch.Tensor):
            out[k] = batch[k][src.to(batch[k].device)]
    out["alignment_label"] = (~swap).long()
    return out


def make_pretraining_batch(
    batch: dict,
    generator: torch.Generator | None,
    tokenizer_or_special_ids=BERT_SPECIAL_IDS,
    vocab_size: int = 30522,
    visual_target: int = 0,
    swap_prob: float = 0.5,
    mask_prob: float = 0.15,
    region_prob: float = 0.15,
) -> dict:
    """A collated text+image batch -> swapped captions + masked tokens and regions + every target:
    lm_labels (B,T), region_labels (B,R), region_targets (B,R,C) (class distributions, or the unmasked
    features when visual_target == 1), alignment_label (B,)."""
    b = swap_captions(batch, generator, swap_prob) if swap_prob > 0 else {
        **batch, "alignment_label": torch.ones(batch["input_ids"].shape[0], dtype=torch.long,
                                               device=batch["input_ids"].device)}  # fmt: skip
    ids, lm_labels = mask_tokens(
        b["input_ids"], b.get("attention_mask"), tokenizer_or_special_ids, vocab_size, generator, mask_prob
    )
    feats, region_labels = mask_regions(
        b["visual_feats"], b.get("visual_attention_mask"), generator, region_prob
    )
    targets = b["visual_feats"] if visual_target == 1 else b["cls_prob"]
    return {**b, "input_ids": ids, "lm_labels": lm_labels, "visual_feats": feats,
            "region_labels": region_labels, "region_targets": targets}  # fmt: skip


# ----------------------------------------------------------------------------------------------- losses
def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (N, V) logits against (N,) ids, ignore_index=-1; 0 (still differentiable) when
    nothing is labelled."""
    if (labels != -1).sum() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=-1)


def masked_region_loss(pred: torch.Tensor, target: torch.Tensor, visual_target: int = 0) -> torch.Tensor:
    """Loss over the N masked regions: pred (N, C) logits and target (N, C) class distributions ->
    sum_regions KL(target ‖ softmax(pred)) / N (the official normaliser), or with visual_target == 1
    pred (N, D) and target (N, D) features -> mean squared error per region, averaged. 0 when N == 0
    (the official code divides by zero there)."""
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    if pred.shape[-1] != target.shape[-1]:
        raise ValueError(
            f"masked_region_loss: prediction width {pred.shape[-1]} != target width {target.shape[-1]}"
            + (" (feature regression needs config.v_target_size == v_feature_size)" if visual_target else "")
        )
    pred, target = pred.float(), target.float()
    if visual_target == 1:
        per_region = F.mse_loss(pred, target, reduction="none").mean(-1)
    else:
        per_region = F.kl_div(F.log_softmax(pred, -1), target, reduction="none").sum(-1)
    return per_region.sum() / pred.shape[0]


def alignment_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, 2) seq_relationship logits against labels (B,) with 1 = aligned."""
    target = labels if ALIGNED_INDEX == 1 else torch.where(labels < 0, labels, 1 - labels)  # keep -1 = ignore
    return F.cross_entropy(logits.float(), target.long(), ignore_index=-1)


def aligned_prob(logits: torch.Tensor) -> torch.Tensor:
    """P(aligned) from (B, 2) seq_relationship logits."""
    return logits.float().softmax(-1)[:, ALIGNED_INDEX]


def pretraining_loss(
    model,
    batch: dict,
    weights: dict[str, float] | None = None,
    objective: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss of a `make_pretraining_batch` batch -> (weighted sum, {mlm, region, align, accuracies}).

    The token / region heads run only at masked positions. `objective` 1 (default: model.config.objective)
    drops the masked losses of mismatched pairs (the official `objective 1`). A loss whose weight is 0 is
    computed at no position (the alignment head, one row per pair, always runs: its loss is then logged only)."""
    core = getattr(model, "module", model)  # DDP-wrapped under torchrun
    cfg = core.config
    objective = cfg.objective if objective is None else objective
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    unknown = set(w) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise ValueError(f"unknown loss weight(s) {sorted(unknown)}; known: {sorted(DEFAULT_WEIGHTS)}")
    lm_pos = batch["lm_labels"] != -1
    reg_pos = batch["region_labels"] == 1
    if objective == 1:
        keep = batch["alignment_label"].bool()[:, None]
        lm_pos, reg_pos = lm_pos & keep, reg_pos & keep
    if w["mlm"] == 0:
        lm_pos = torch.zeros_like(lm_pos)
    if w["region"] == 0:
        reg_pos = torch.zeros_like(reg_pos)
    out = model(
        batch["input_ids"], batch["visual_feats"], batch["visual_pos"], batch.get("attention_mask"),
        batch.get("visual_attention_mask"), batch.get("token_type_ids"), batch.get("task_ids"),
        lm_positions=lm_pos, region_positions=reg_pos,
    )  # fmt: skip
    lm_labels = batch["lm_labels"][lm_pos]
    l_mlm = masked_lm_loss(out.prediction_logits_t, lm_labels)
    l_reg = masked_region_loss(out.prediction_logits_v, batch["region_targets"][reg_pos], cfg.visual_target)
    align_logits = out.seq_relationship_logits
    l_align = alignment_loss(align_logits, batch["alignment_label"])
    total = w["mlm"] * l_mlm + w["region"] * l_reg + w["align"] * l_align
    with torch.no_grad():
        logs = {
            "mlm": float(l_mlm),
            "region": float(l_reg),
            "align": float(l_align),
            "align_acc": float(((aligned_prob(align_logits) > 0.5).long() == batch["alignment_label"]).float().mean()),
            "mlm_acc": float((out.prediction_logits_t.argmax(-1) == lm_labels).float().mean()) if len(lm_labels) else 0.0,
        }  # fmt: skip
    return total, logs


def pretraining_loss_fn(
    tokenizer_or_special_ids=BERT_SPECIAL_IDS,
    weights: dict[str, float] | None = None,
    objective: int | None = None,
    swap_prob: float = 0.5,
    mask_prob: float = 0.15,
):
    """An engine `loss_fn(model, batch)` that swaps, masks and scores a collated batch.

    The masking generator is seeded from the global torch RNG, which the engine seeds per rank
    (seed + rank) and restores on resume: masks are deterministic for a seed, per rank, and across resume."""
    special = special_ids(tokenizer_or_special_ids)

    def loss_fn(model, batch):
        cfg = getattr(model, "module", model).config
        gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        b = make_pretraining_batch(batch, gen, special, cfg.vocab_size, cfg.visual_target, swap_prob, mask_prob,
                                   mask_prob)  # fmt: skip
        return pretraining_loss(model, b, weights, objective)

    return loss_fn
