"""Pretraining ViLT on the synthetic world's captions, with the same data, run folders and held-out numbers as
`pretrain.run.pretrain` (ViLBERT), so that the region, grid and patch rows can be compared column by column.

    run = pretrain_vilt("cpu", seed=0)                        # runs/pretrain_vilt-<hash>/ (patch embeddings)
    run = pretrain_vilt("cpu", seed=0, visual_embed="grid")   # the CNN grid row (Pixel-BERT style)
    json.load(open(run / "eval.json"))                        # alignment / masked-token / colour / shape
    accuracy model = load_vilt(run)

The objectives are ViLT's:
- masked language modelling with **whole-word masking**: 15% of the *words* are chosen and every WordPiece of
  a chosen word gets the same fate (80% [MASK], 10% a random piece each, 10% kept). Masking "##an" alone in
  "cy ##an" would let the model read "cyan" off "cy" without looking at the image.
- **image-text matching**: 50% of the captions swapped for the caption of another image
  (`objectives.swap_captions`; ViLT swaps the image, which gives the same pairs), binary head on the pooled
  [CLS]. As in ViLT's code, the masked tokens are predicted on the true pairs with the caption masked, and
  matching is judged on the unmasked (possibly swapped) caption: two views of the batch, run here as one
  forward pass of 2B.
- **word-patch alignment** (optional, weight `wpa`, ViLT's 0.1 by default, 0 turns it off): the
  optimal-transport distance (IPOT, cost 1 - cosine) between the caption's word states and the image's patch
  states is pushed down for matching pairs and up for swapped ones.
- **augmentation** (optional, `augment=True`, patch model only): RandAugment (2 ops, magnitude 9 of 30)
  restricted to ops that keep colours and objects: identity, shear, translation, rotation, sharpness. Colour
  changes (brightness, contrast, saturation, solarize, posterize, equalize, inversion) would make captions
  false: "a red star" on a solarized image, "on a white background" after a brightness change that turns it
  gray. Cutout would erase the small objects a caption names. ViLT drops inversion and cutout for the same
  reason (it applies RandAugment while fine-tuning; here it is a pretraining option). Grid models read CNN
  features cached once per image, so they are not augmented.

The held-out numbers (`evaluate_vilt`) are `pretrain.evaluate.evaluate_pretraining`'s: the same negatives and the same
masked positions for the same seed and captions (random 15% of tokens, then all colour words, all shape
words).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from vilbert_lite import runs
from vilbert_lite.data.collate import make_collate
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.data.world import WORLD_VERSION, make_world
from vilbert_lite.errors import UserError, json_object_arg
from vilbert_lite.pretrain.data import MAX_SEQ_LENGTH, CaptionImageDataset, caption_count, take_fraction
from vilbert_lite.pretrain.evaluate import evaluate_pretraining
from vilbert_lite.pretrain.objectives import (
    aligned_prob,
    alignment_loss,
    masked_lm_loss,
    special_ids,
    swap_captions,
)
from vilbert_lite.pretrain.run import resolve_configs
from vilbert_lite.train.engine import train
from vilbert_lite.vilt.inputs import grid_width, visual_kwargs, world_visual
from vilbert_lite.vilt.model import ViLTConfig, ViLTForPreTraining, resolve_vilt_config

DEFAULT_WEIGHTS = {"mlm": 1.0, "itm": 1.0, "wpa": 0.1}  # ViLT: itm_wpa_loss = 0.1 * the OT term


# ------------------------------------------------------------------------------------------ whole-word
# masking
@lru_cache(maxsize=4)
def _continuations(tokenizer) -> torch.Tensor:
    return torch.tensor(
        [t.startswith("##") for t in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))]
    )


def wordpiece_continuations(tokenizer) -> torch.Tensor:
    """(vocab,) bool: True for the WordPieces that continue a word ("##xa"), False for those that start
    one."""
    return _continuations(tokenizer)


def whole_word_mask(input_ids, attention_mask, continuation, tokenizer_or_special_ids,
                    vocab_size: int = 30522, generator: torch.Generator | None = None,
                    prob: float = 0.15):  # fmt: skip
    """Whole-word masking of (B, T) ids -> (masked ids, labels): each word (a piece that does not start with
    "##" and the "##" pieces after it) is chosen with `prob`; all pieces of a chosen word become [MASK] (80%),
    random pieces (10%) or stay (10%). labels = the original id where chosen, -1 elsewhere; special tokens and
    padding are never chosen."""
    mask_id, special = special_ids(tokenizer_or_special_ids)
    device, (B, T) = input_ids.device, input_ids.shape
    real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    cand = real & ~torch.isin(input_ids, torch.tensor(special, device=device))
    starts = ~continuation.to(device)[input_ids]  # (B, T) a word begins here
    pos = torch.arange(T, device=device).expand(B, T)
    word_start = (
        torch.where(starts, pos, torch.zeros_like(pos)).cummax(1).values
    )  # (B, T) index of each word's start
    u = torch.rand(B, T, generator=generator).to(device).gather(1, word_start)  # one draw per word
    v = torch.rand(B, T, generator=generator).to(device).gather(1, word_start)
    rnd = torch.randint(vocab_size, (B, T), generator=generator).to(device)
    chosen = cand & (u < prob)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -1))
    ids = torch.where(chosen & (v < 0.8), torch.full_like(input_ids, mask_id), input_ids)
    ids = torch.where(chosen & (v >= 0.8) & (v < 0.9), rnd, ids)
    return ids, labels


# ------------------------------------------------------------------------------------- word-patch alignment
@torch.no_grad()
def ipot(C: torch.Tensor, x_mask: torch.Tensor, y_mask: torch.Tensor, beta: float = 0.5, iterations: int = 50,
         k: int = 1) -> torch.Tensor:  # fmt: skip
    """Inexact proximal-point optimal transport (Xie et al. 2020; ViLT's settings beta 0.5, 50 iterations, k
    1) between uniform distributions over the real rows x_mask (B, M) and real columns y_mask (B, N) of the
    cost C (B, M, N) -> transport plan T (B, M, N): columns sum to 1/n exactly, rows to 1/m approximately, 0
    on padding. Each outer step solves entropic OT with the previous plan as prior: T <- diag(delta)
    (exp(-C/beta) * T) diag(sigma)."""
    C = C.float()
    xm, ym = x_mask.float(), y_mask.float()
    a = xm / xm.sum(1, keepdim=True).clamp_min(1)  # (B, M)
    b = ym / ym.sum(1, keepdim=True).clamp_min(1)  # (B, N)
    joint = xm[:, :, None] * ym[:, None, :]
    G = torch.exp(-C / beta) * joint
    T, sigma = joint.clone(), b.clone()
    for _ in range(iterations):
        Q = G * T
        for _ in range(k):
            delta = a / (Q @ sigma[..., None]).squeeze(-1).clamp_min(1e-30)  # (B, M)
            sigma = b / (Q.transpose(1, 2) @ delta[..., None]).squeeze(-1).clamp_min(1e-30)  # (B, N)
        T = delta[:, :, None] * Q * sigma[:, None, :]
    return T


def word_patch_distance(t, t_mask, v, v_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """ViLT's word-patch alignment: the OT distance between the words (text states t (B, T, H) without [CLS]
    and [SEP]) and the patches (visual states v (B, 1+N, H) without [IMG]) under the cost 1 - cosine ->
    (distance (B,), plan (B, T, 1+N)). The plan is computed without gradient; the distance differentiates
    through the cost."""
    t_real, v_real = t_mask.bool().clone(), v_mask.bool().clone()
    t_real[:, 0] = False
    t_real[torch.arange(len(t_real)), t_mask.long().sum(1) - 1] = False  # the last real token is [SEP]
    v_real[:, 0] = False
    cost = 1 - F.normalize(t.float(), dim=-1) @ F.normalize(v.float(), dim=-1).transpose(1, 2)  # (B, T, 1+N)
    cost = cost.masked_fill(~(t_real[:, :, None] & v_real[:, None, :]), 0.0)
    plan = ipot(cost.detach(), t_real, v_real)
    return (cost * plan).sum((1, 2)), plan


def wpa_loss(distance: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Matching pairs pull their transport distance down, swapped pairs push it up: (sum pos - sum neg) /
    B."""
    return (distance * torch.where(labels.bool(), 1.0, -1.0).to(distance)).sum() / len(distance)


# ------------------------------------------------------------------------------------------------ the loss
def loss_weights(weights: dict | None = None) -> dict[str, float]:
    """DEFAULT_WEIGHTS updated by `weights`; an unknown name is a UserError."""
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    if set(w) != set(DEFAULT_WEIGHTS):
        unknown = sorted(set(w) - set(DEFAULT_WEIGHTS))
        raise UserError(f"unknown loss weight(s) {unknown}; known: {sorted(DEFAULT_WEIGHTS)}")
    return w


def vilt_pretraining_loss(model, batch: dict, continuation: torch.Tensor, special,
                          weights: dict | None = None, generator: torch.Generator | None = None,
                          augment: bool = False, swap_prob: float = 0.5, mask_prob: float = 0.15,
                          views: int = 2) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """ViLT's pretraining loss of a collated batch -> (mlm + itm + wpa, weighted; logs).
    views=2 (ViLT's code): one forward pass over 2B pairs, the whole-word-masked captions with their own images
    (masked tokens), then the unmasked captions, half swapped (matching and word-patch alignment).
    views=1 (ViLBERT's arrangement, `objectives.make_pretraining_batch`): one pass over B pairs, captions half
    swapped and then whole-word masked; masked tokens, matching and alignment all read that pass."""
    if views not in (1, 2):
        raise UserError(f"views must be 1 or 2, got {views}")
    w = loss_weights(weights)
    cfg = getattr(model, "module", model).config
    B = batch["input_ids"].shape[0]
    sw = swap_captions(batch, generator, swap_prob) if views == 1 else None
    src = sw or batch  # the captions that are masked
    ids, labels = whole_word_mask(src["input_ids"], src["attention_mask"], continuation, special,
                                  cfg.vocab_size, generator, mask_prob)  # fmt: skip
    sw = sw or swap_captions(batch, generator, swap_prob)  # two views: drawn after the mask, as before
    if w["mlm"] == 0:
        ids, labels = src["input_ids"], torch.full_like(labels, -1)
    vis = visual_kwargs(batch, generator, augment)
    types = src.get("token_type_ids", torch.zeros_like(ids))
    if views == 2:
        vis = {k: None if x is None else torch.cat([x, x]) for k, x in vis.items()}
        lm_pos = torch.cat([labels != -1, torch.zeros_like(labels, dtype=torch.bool)])
        out = model(torch.cat([ids, sw["input_ids"]]),
                    attention_mask=torch.cat([batch["attention_mask"], sw["attention_mask"]]),
                    token_type_ids=torch.cat([types, sw.get("token_type_ids", types)]), lm_positions=lm_pos,
                    **vis)  # fmt: skip
        first = B  # the matching view starts here
    else:
        out = model(ids, attention_mask=sw["attention_mask"], token_type_ids=types, lm_positions=labels != -1,
                    **vis)  # fmt: skip
        first = 0
    l_mlm = masked_lm_loss(out.prediction_logits_t, labels[labels != -1])
    itm_logits = out.seq_relationship_logits[first:]
    l_itm = alignment_loss(itm_logits, sw["alignment_label"])
    total = w["mlm"] * l_mlm + w["itm"] * l_itm
    logs = {"mlm": l_mlm.item(), "itm": l_itm.item()}
    if w["wpa"]:
        dist, _ = word_patch_distance(
            out.sequence_output_t[first:],
            sw["attention_mask"],
            out.sequence_output_v[first:],
            out.visual_mask[first:],
        )
        l_wpa = wpa_loss(dist, sw["alignment_label"])
        total = total + w["wpa"] * l_wpa
        logs["wpa"] = l_wpa.item()
    with torch.no_grad():
        logs["align_acc"] = float(
            ((aligned_prob(itm_logits) > 0.5).long() == sw["alignment_label"]).float().mean()
        )
        hit = out.prediction_logits_t.argmax(-1) == labels[labels != -1]
        logs["mlm_acc"] = float(hit.float().mean()) if len(hit) else 0.0
    return total, logs


def recipe_weights(prof, weights: dict | None = None) -> dict[str, float]:
    """The loss weights of a ViLT pretraining at profile `prof`: the profile's recipe weights the image-text
    alignment loss as for ViLBERT (`Profile.pretrain_weights["align"]` is ViLT's "itm"), then `weights`."""
    return loss_weights(
        {"itm": prof.pretrain_weights.get("align", DEFAULT_WEIGHTS["itm"]), **(weights or {})}
    )


def vilt_loss_fn(tokenizer, weights: dict | None = None, augment: bool = False, swap_prob: float = 0.5,
                 mask_prob: float = 0.15, views: int = 2):  # fmt: skip
    """An engine `loss_fn(model, batch)`; its generator is seeded from the engine's per-rank torch RNG, so
    masks, swaps and augmentations are deterministic for a seed and across resume."""
    continuation, special = wordpiece_continuations(tokenizer), special_ids(tokenizer)

    def loss_fn(model, batch):
        gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        return vilt_pretraining_loss(
            model, batch, continuation, special, weights, gen, augment, swap_prob, mask_prob, views
        )

    return loss_fn


# ------------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def _vilt_forward(core, b: dict, lm_pos: torch.Tensor):
    return core(b["input_ids"], attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"],
                lm_positions=lm_pos, **visual_kwargs(b))  # fmt: skip


def evaluate_vilt(model, dataset: CaptionImageDataset, tokenizer, seed: int = 0, batch_size: int = 64,
                  device: str | torch.device = "auto") -> dict[str, float]:  # fmt: skip
    """Held-out numbers of a ViLT model: `evaluate_pretraining` with ViLT's forward, so the negatives,
    masks and definitions are ViLBERT's (alignment_acc, mlm_acc, color_acc / shape_acc / shape_name_acc,
    color_shape_acc)."""
    return evaluate_pretraining(model, dataset, tokenizer, seed, batch_size, device, forward=_vilt_forward)


def resolve_vilt_pretraining(profile: str = "cpu", seed: int = 0, visual_embed: str = "patch",
                             corpus_fraction: float = 1.0, config_overrides: dict | None = None,
                             train_overrides: dict | None = None, weights: dict[str, float] | None = None,
                             augment: bool = False, views: int | None = None):  # fmt: skip
    """A ViLT pretraining run before its data: arguments checked -> (Profile, ViLTConfig, TrainConfig, loss
    weights, views)."""
    if not 0.0 < corpus_fraction <= 1.0:
        raise UserError(f"corpus_fraction must be in (0, 1], got {corpus_fraction}")
    if augment and visual_embed != "patch":
        raise UserError("augment=True needs visual_embed='patch' (grid models read cached CNN features)")
    prof, _, tcfg = resolve_configs(profile, seed, None, train_overrides)
    views = prof.vilt_recipe.get("views", 2) if views is None else views
    return (
        prof,
        resolve_vilt_config(prof, visual_embed, config_overrides),
        tcfg,
        recipe_weights(prof, weights),
        views,
    )


def vilt_run_config(prof, config: ViLTConfig, tcfg, weights: dict, *, seed: int, corpus_fraction: float,
                    world_seed: int, n_captions: int, augment: bool, views: int) -> dict:  # fmt: skip
    """The run config a ViLT pretraining run is keyed by (its folder is `pretrain_vilt[_grid]-<config hash>`)."""
    run_cfg = {
        "kind": "pretrain_vilt" + ("" if config.visual_embed == "patch" else f"_{config.visual_embed}"),
        "profile": prof.name, "seed": seed, "corpus_fraction": corpus_fraction,
        "data": {"kind": "synthetic", "world": asdict(prof.world), "world_seed": world_seed,
                 "world_version": WORLD_VERSION},
        "n_captions": n_captions, "max_seq_length": MAX_SEQ_LENGTH, "weights": weights, "augment": augment,
        "model": config.to_dict(), "train": tcfg.to_dict(),
    }  # fmt: skip
    if views != 2:  # runs of ViLT's two views keep the folder keys they had before this option
        run_cfg["views"] = views
    return run_cfg


def plan_pretrain_vilt(profile: str = "cpu", seed: int = 0, out: str | Path | None = None,
                       visual_embed: str = "patch", corpus_fraction: float = 1.0,
                       config_overrides: dict | None = None, train_overrides: dict | None = None, *,
                       weights: dict[str, float] | None = None, augment: bool = False, world_seed: int = 0,
                       views: int | None = None) -> tuple[Path, dict]:  # fmt: skip
    """(run folder, run config) of `pretrain_vilt(...)` with the same arguments, without training or computing
    any visual input (a grid's width is read from the backbone)."""
    prof, config, tcfg, w, views = resolve_vilt_pretraining(profile, seed, visual_embed, corpus_fraction,
                                                            config_overrides, train_overrides, weights, augment,
                                                            views)  # fmt: skip
    if visual_embed == "grid":
        config = config.replace(grid_feature_size=grid_width(config))
    n = caption_count(prof.world, world_seed, corpus_fraction)
    run_cfg = vilt_run_config(prof, config, tcfg, w, seed=seed, corpus_fraction=corpus_fraction,
                              world_seed=world_seed, n_captions=n, augment=augment, views=views)  # fmt: skip
    return runs.run_dir(out or runs.runs_root(), run_cfg["kind"], run_cfg), run_cfg


def pretrain_vilt(
    profile: str = "cpu",
    seed: int = 0,
    out: str | Path | None = None,
    visual_embed: str = "patch",
    corpus_fraction: float = 1.0,
    config_overrides: dict | None = None,
    train_overrides: dict | None = None,
    progress: bool = True,
    *,
    weights: dict[str, float] | None = None,
    augment: bool = False,
    world_seed: int = 0,
    resume: bool = True,
    views: int | None = None,
) -> Path:
    """Pretrain ViLT (or reuse a finished run) on the synthetic world of `profile` -> the run folder
    `out/pretrain_vilt[_grid]-<hash>` (out defaults to ./runs). Same captions, TrainConfig and held-out split
    as `pretrain.run.pretrain`, and the profile's alignment weight (`Profile.pretrain_weights["align"]`) on ITM.
    weights: {"mlm", "itm", "wpa"} over that (wpa 0 turns word-patch alignment off). views: 2 = ViLT's two
    views of every batch, 1 = one view as ViLBERT's (`vilt_pretraining_loss`); None = the profile's recipe
    (`Profile.vilt_recipe`, else 2)."""
    prof, config, tcfg, w, views = resolve_vilt_pretraining(profile, seed, visual_embed, corpus_fraction,
                                                            config_overrides, train_overrides, weights, augment,
                                                            views)  # fmt: skip
    world = make_world(prof, seed=world_seed)
    train_caps, val_caps = take_fraction(world.captions("pretrain"), corpus_fraction), world.captions("val")
    ids = list(dict.fromkeys(c.image_id for c in train_caps + val_caps))
    rank = int(os.environ.get("RANK", 0))
    visual, feat_info = world_visual(world, ids, config, progress and rank == 0)
    if visual_embed == "grid":
        config = config.replace(grid_feature_size=int(next(iter(visual.values()))["grid_features"].shape[0]))
    run_cfg = vilt_run_config(prof, config, tcfg, w, seed=seed, corpus_fraction=corpus_fraction,
                              world_seed=world_seed, n_captions=len(train_caps), augment=augment, views=views)  # fmt: skip
    run = runs.run_dir(out or runs.runs_root(), run_cfg["kind"], run_cfg)
    if rank == 0:
        runs.prepare_run(run, run_cfg)
    if runs.is_done(run) and (run / "eval.json").exists():
        return run
    tok = get_tokenizer()
    torch.manual_seed(seed)
    model = ViLTForPreTraining(config)
    ds = CaptionImageDataset(train_caps, visual, tok, MAX_SEQ_LENGTH)
    val = CaptionImageDataset(val_caps, visual, tok, MAX_SEQ_LENGTH)
    cpu0 = time.process_time()
    train(model, ds, make_collate(tok.pad_token_id), vilt_loss_fn(tok, w, augment, views=views), tcfg, run,
          resume=resume, progress=progress, desc=run_cfg["kind"])  # fmt: skip
    if rank == 0:
        t0 = time.perf_counter()
        scores = evaluate_vilt(model, val, tok, seed=seed, batch_size=128, device=tcfg.device)
        done = runs.load_done(run)
        scores.update({"n_val_captions": len(val), "n_train_captions": len(train_caps),
                       "train_process_cpu_s": round(time.process_time() - cpu0, 1),
                       "train_wall_time_s": done.get("wall_time_s"), "steps": done.get("steps"),
                       "eval_seconds": round(time.perf_counter() - t0, 2),
                       "visual_input_s": feat_info["seconds"],
                       "parameters": model.num_parameters()})  # fmt: skip
        runs.write_json(run / "eval.json", scores)
    return run


def load_vilt(run: str | Path) -> ViLTForPreTraining:
    """The final model of a ViLT pretraining run folder (or of a `save_pretrained` folder)."""
    run = Path(run)
    return ViLTForPreTraining.from_pretrained(run / "model" if (run / "model").is_dir() else run)


def cli(argv: list[str]) -> int:
    """`vilbert-lite vilt --profile cpu --seed 0 [--embed patch|grid] [--wpa 0.1] [--views 1|2] [--augment]`"""
    ap = argparse.ArgumentParser(prog="vilbert-lite vilt", description="pretrain ViLT on the synthetic world")
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", default=None, help="runs root; the run folder is OUT/pretrain_vilt[_grid]-<config hash>"
    )
    ap.add_argument(
        "--embed", default="patch", choices=["patch", "grid"], help="linear patches or CNN grid cells"
    )
    ap.add_argument("--fraction", type=float, default=1.0, help="share of the pretraining images")
    ap.add_argument(
        "--wpa", type=float, default=DEFAULT_WEIGHTS["wpa"], help="word-patch alignment weight (0: off)"
    )
    ap.add_argument(
        "--augment", action="store_true", help="RandAugment without colour ops or cutout (patch only)"
    )
    ap.add_argument(
        "--views",
        type=int,
        choices=[1, 2],
        default=None,
        help="2: ViLT's two views of every batch; 1: one, as ViLBERT's (default: the profile's)",
    )
    ap.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--config", help="ViLTConfig overrides as JSON, e.g. '{\"patch_size\": 16}'")
    ap.add_argument("--train", help="TrainConfig overrides as JSON, e.g. '{\"epochs\": 2}'")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    run = pretrain_vilt(a.profile, a.seed, a.out, a.embed, a.fraction, json_object_arg(a.config, "--config"),
                        json_object_arg(a.train, "--train"), not a.no_progress, weights={"wpa": a.wpa},
                        augment=a.augment, resume=a.resume, views=a.views)  # fmt: skip
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(json.loads((run / "eval.json").read_text()), indent=2))
        print(f"run folder: {run}")
    return 0
