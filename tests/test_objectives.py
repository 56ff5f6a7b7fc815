"""Masking statistics and the three pretraining losses (tiny preset, random inputs, CPU, seconds)."""

from __future__ import annotations

import pytest
import torch

from vilbert_lite import ViLBertConfig, ViLBertForPreTraining
from vilbert_lite.data.collate import collate_examples
from vilbert_lite.pretrain.objectives import (
    BERT_SPECIAL_IDS,
    make_pretraining_batch,
    mask_regions,
    mask_tokens,
    masked_lm_loss,
    masked_region_loss,
    pretraining_loss,
    pretraining_loss_fn,
    swap_captions,
)

CLS, SEP, PAD, MASK = 101, 102, 0, 103


def _ids(B=400, T=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, T + 1, (B,), generator=g)
    ids = torch.full((B, T), PAD)
    for i, n in enumerate(lengths.tolist()):
        ids[i, :n] = torch.randint(1000, 30000, (n,), generator=g)
        ids[i, 0], ids[i, n - 1] = CLS, SEP
    return ids, (ids != PAD).long()


def test_mask_tokens_statistics_and_specials():
    ids, att = _ids()
    masked, labels = mask_tokens(ids, att, BERT_SPECIAL_IDS, 30522, torch.Generator().manual_seed(0))
    cand = att.bool() & (ids != CLS) & (ids != SEP)
    chosen = labels != -1
    assert not (chosen & ~cand).any()  # never [CLS], [SEP], [PAD] or padding
    assert (labels[chosen] == ids[chosen]).all()
    rate = chosen.sum() / cand.sum()
    assert abs(rate - 0.15) < 0.01
    n = chosen.sum()
    to_mask = (masked[chosen] == MASK).sum() / n
    same = (masked[chosen] == ids[chosen]).sum() / n
    assert abs(to_mask - 0.8) < 0.03 and abs(same - 0.1) < 0.03  # the rest (~10%) is a random token
    assert (masked[~chosen] == ids[~chosen]).all()


def test_mask_tokens_deterministic_by_seed():
    ids, att = _ids(B=8)
    a = mask_tokens(ids, att, generator=torch.Generator().manual_seed(3))
    b = mask_tokens(ids, att, generator=torch.Generator().manual_seed(3))
    c = mask_tokens(ids, att, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_mask_regions_never_global_or_padding():
    B, R, D = 500, 12, 6
    feats = torch.rand(B, R, D) + 0.1
    n = torch.randint(2, R + 1, (B,))
    vmask = (torch.arange(R)[None] < n[:, None]).long()
    out, labels = mask_regions(feats, vmask, torch.Generator().manual_seed(0))
    chosen = labels == 1
    assert not chosen[:, 0].any() and not (chosen & ~vmask.bool()).any()
    cand = vmask.bool().clone()
    cand[:, 0] = False
    assert abs(chosen.sum() / cand.sum() - 0.15) < 0.015
    zeroed = (out[chosen] == 0).all(-1).float().mean()
    assert abs(zeroed - 0.9) < 0.04
    assert torch.equal(out[~chosen], feats[~chosen])


def test_region_loss_guard_and_kl():
    pred = torch.zeros(0, 10, requires_grad=True)
    loss = masked_region_loss(pred, torch.zeros(0, 10))
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()  # still part of the graph
    target = torch.rand(4, 10).softmax(-1)
    assert masked_region_loss(target.log(), target).abs().item() < 1e-6  # KL(p‖p) = 0
    pred = torch.randn(4, 10)
    manual = (target * (target.log() - pred.log_softmax(-1))).sum(-1).mean()
    assert masked_region_loss(pred, target).item() == pytest.approx(manual.item(), rel=1e-5)
    assert (
        masked_lm_loss(torch.zeros(0, 5, requires_grad=True), torch.zeros(0, dtype=torch.long)).item() == 0.0
    )


def test_swap_captions_pairs_different_images():
    ids, att = _ids(B=200, T=10)
    image = torch.arange(200) // 2  # two captions per image
    out = swap_captions(
        {"input_ids": ids, "attention_mask": att, "image_index": image, "text_index": torch.arange(200)},
        torch.Generator().manual_seed(0),
    )
    label = out["alignment_label"]
    assert abs(label.float().mean() - 0.5) < 0.1
    src = out["text_index"]
    assert (image[src[label == 0]] != image[label == 0]).all()  # mismatched: a caption of another image
    assert (src[label == 1] == torch.arange(200)[label == 1]).all()
    same = swap_captions({"input_ids": ids[:4], "image_index": torch.zeros(4, dtype=torch.long)})
    assert same["alignment_label"].tolist() == [1, 1, 1, 1]  # nothing to swap with


def _batch(config, B=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(B):
        T, R = int(torch.randint(6, 14, (1,), generator=g)), int(torch.randint(3, 8, (1,), generator=g))
        ids = torch.randint(1000, 5000, (T,), generator=g)
        ids[0], ids[-1] = CLS, SEP
        boxes = torch.rand(R, 4, generator=g).sort(-1).values
        items.append(
            {
                "input_ids": ids,
                "image_index": i,
                "visual_feats": torch.rand(R, config.v_feature_size, generator=g),
                "visual_pos": torch.cat([boxes, torch.rand(R, 1, generator=g)], 1),
                "cls_prob": torch.rand(R, config.v_target_size, generator=g).softmax(-1),
                "boxes": boxes,
                "num_regions": torch.tensor(R),
            }
        )
    return collate_examples(items)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return ViLBertForPreTraining(ViLBertConfig.preset("tiny")).eval()  # no dropout: losses comparable


def test_heads_only_at_masked_positions(tiny):
    b = make_pretraining_batch(_batch(tiny.config, B=16), torch.Generator().manual_seed(1), mask_prob=0.3)
    lm_pos, reg_pos = b["lm_labels"] != -1, b["region_labels"] == 1
    assert lm_pos.any() and reg_pos.any()
    out = tiny(b["input_ids"], b["visual_feats"], b["visual_pos"], b["attention_mask"],
               b["visual_attention_mask"], b["token_type_ids"], lm_positions=lm_pos, region_positions=reg_pos)  # fmt: skip
    assert out.prediction_logits_t.shape == (int(lm_pos.sum()), tiny.config.vocab_size)
    assert out.prediction_logits_v.shape == (int(reg_pos.sum()), tiny.config.v_target_size)
    assert out.seq_relationship_logits.shape == (16, 2)
    loss, logs = pretraining_loss(tiny, b)
    assert torch.isfinite(loss) and set(logs) >= {"mlm", "region", "align"}
    assert loss.item() == pytest.approx(logs["mlm"] + logs["region"] + logs["align"], rel=1e-5)
    loss.backward()


def test_objective_1_drops_masked_losses_on_mismatched_pairs(tiny):
    b = make_pretraining_batch(_batch(tiny.config, B=8), torch.Generator().manual_seed(2), mask_prob=0.5)
    b["alignment_label"] = torch.zeros(8, dtype=torch.long)  # every pair mismatched
    _, logs0 = pretraining_loss(tiny, b, objective=0)
    _, logs1 = pretraining_loss(tiny, b, objective=1)
    assert logs0["mlm"] > 0 and logs0["region"] > 0
    assert logs1["mlm"] == 0 and logs1["region"] == 0 and logs1["align"] == pytest.approx(logs0["align"])


def test_weights_and_feature_regression():
    cfg = ViLBertConfig.preset("tiny", visual_target=1, v_feature_size=32, v_target_size=32)
    model = ViLBertForPreTraining(cfg)
    b = make_pretraining_batch(_batch(cfg), torch.Generator().manual_seed(0), visual_target=1, mask_prob=0.5)
    assert torch.equal(b["region_targets"], _batch(cfg)["visual_feats"])  # the unmasked features
    loss, logs = pretraining_loss(model, b, weights={"mlm": 0, "align": 0})
    assert loss.item() == pytest.approx(logs["region"]) and logs["mlm"] == 0
    with pytest.raises(ValueError, match="unknown loss weight"):
        pretraining_loss(model, b, weights={"itm": 1})


def test_loss_fn_masks_from_the_global_rng(tiny):
    fn = pretraining_loss_fn()
    batch = _batch(tiny.config)
    torch.manual_seed(5)
    a = fn(tiny, batch)[1]
    torch.manual_seed(5)
    b = fn(tiny, batch)[1]
    assert a == b
