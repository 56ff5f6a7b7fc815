"""Pretraining ViLBERT on captioned images, and what a pretrained model can do (sample captions, score pairs).

    run = pretrain("cpu", seed=0)                      # runs/pretrain-<hash>/ (reused when it already finished)
    base = pretrain_text_only("cpu", seed=0)           # the same model and captions with the images blanked
    json.load(open(run / "eval.json"))                 # held-out alignment / masked-token / colour / shape accuracy
    model = load_pretrained(run)
    sample_caption(model, tok, visual_inputs(store.get(image_id)))  # iterative masked-token sampling (Fig. 5)
    alignment_score(model, tok, visual, ["a red circle", "two blue stars"])  # P(caption matches image)

Data: the synthetic world's "pretrain" captions with region features from the region extractor on the
rendered images and their ground-truth boxes (up to 36 regions + the global one), cached in a feature store under
`<cache>/features/world-<hash>` (cache = $VILBERT_LITE_CACHE or <project>/.cache); held-out evaluation on the "val"
captions. Real data: a COCO captions JSON and its image folder (proposal boxes); the last 5% of the images
(sorted ids) are held out. Each batch swaps 50% of captions for one of another image and masks tokens and
regions (objectives.py) with a generator seeded from the engine's per-rank RNG.

Run folders (runs.py) are keyed by a hash of everything that matters: profile sizes, seed, world seed,
corpus fraction, data source, model config (with the feature widths of the store), training config, loss
weights. The folder holds the engine's files (train_config.json, metrics.jsonl/csv, model/, DONE) and
run_config.json, features.json (store, extractor settings, extraction time), eval.json (held-out numbers) and
text_init.json (which weights the text stream started from).

Text stream: ViLBERT starts it from BERT (ViLBERT, arXiv 1908.02265 §3.2). `text_init` / `--text-init` chooses:
"bundled" (the MiniLM BERT shipped with the tokenizer, hidden size 384: it fits the `small` preset), "random",
a local Hugging Face BERT folder (config.json + weights) or a hub name such as bert-base-uncased (from the local
Hugging Face cache; downloaded unless HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set). None is the profile's
choice: "bundled" where `Profile.init_text_from_bert` (gpu), else "random" (smoke, cpu). A BERT whose sizes do
not fit the text stream is a one-line UserError naming both widths before any data work; so the gpu profile
(`base`, hidden size 768) stops unless given `--text-init PATH` (a BERT of width 768, e.g. bert-base-uncased)
or `--text-init random`. Run keys name a chosen BERT folder or hub name (path or name, weights digest) only:
default calls, "bundled" and "random" keep the keys they had (init_text_from_bert says BERT or not).

corpus_fraction keeps the first fraction of the pretraining images (with all their captions), for the
data-size ablation (Table 3); 0 means no pretraining: the folder holds the randomly initialised model
(model/) and its eval.json, and no training happens.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from vilbert_lite import runs
from vilbert_lite.data.collate import collate_examples, make_collate
from vilbert_lite.data.store import settings_key
from vilbert_lite.data.world import WORLD_VERSION
from vilbert_lite.errors import UserError, json_object_arg, one_line
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.heads import ViLBertForPreTraining
from vilbert_lite.pretrain.objectives import DEFAULT_WEIGHTS, aligned_prob, pretraining_loss_fn, special_ids
from vilbert_lite.profiles import get_profile

MAX_SEQ_LENGTH = 36  # REFERENCE §3
MAX_REGIONS = 36
CURVE_CAPTIONS = 300  # val captions scored after every epoch (the final evaluation scores every val caption)
HELD_OUT_FRACTION = 0.05  # real data: share of images held out for evaluation


def cache_dir() -> Path:
    """Where feature stores live: $VILBERT_LITE_CACHE, else `.cache` at the project root (whatever the cwd)."""
    from vilbert_lite.runs import project_root

    return Path(os.environ.get("VILBERT_LITE_CACHE", project_root() / ".cache"))


def _word_sets() -> dict[str, set[str]]:
    from vilbert_lite.data.texts import PLURAL, SYNONYMS
    from vilbert_lite.data.world import COLORS, SHAPES

    shapes = set(SHAPES) | set(PLURAL.values()) | {w for v in SYNONYMS.values() for w in v if " " not in w}
    return {"color": set(COLORS), "shape": shapes}


def shape_name_groups(tokenizer, vocab_size: int) -> torch.Tensor:
    """(vocab_size,) long: for each token that is a whole shape name (any synonym or plural, e.g. "ball",
    "circles"), the index of its shape in world.SHAPES; -1 for every other token. Names of several WordPieces
    ("rhombus", "hexagon") are left out: their pieces are scored as exact tokens."""
    from vilbert_lite.data.texts import PLURAL, SYNONYMS
    from vilbert_lite.data.world import SHAPES

    groups = torch.full((vocab_size,), -1, dtype=torch.long)
    for k, shape in enumerate(SHAPES):
        for name in {*SYNONYMS.get(shape, (shape,)), shape, PLURAL[shape]}:
            pieces = tokenizer.tokenize(name)
            if len(pieces) == 1:
                groups[tokenizer.convert_tokens_to_ids(pieces[0])] = k
    return groups


# ------------------------------------------------------------------------------------------------- dataset
class CaptionImageDataset(Dataset):
    """(caption, image) items: token ids ([CLS] ... [SEP], at most max_seq_length) + the image's region inputs.

    `visual` maps image_id -> `regions.visual_inputs(...)`. With `blank_images` every image is replaced by a
    single all-zero global region (the text-only baseline). Items also carry `image_index` (for swapping
    captions between different images) and `text_index`. `kinds[i]` marks each token of caption i as
    0 (other), 1 (colour word) or 2 (shape word), for the held-out evaluation."""

    KINDS = ("other", "color", "shape")

    def __init__(self, captions: list, visual: dict[str, dict], tokenizer, max_seq_length: int = MAX_SEQ_LENGTH,
                 blank_images: bool = False):  # fmt: skip
        missing = sorted({c.image_id for c in captions} - set(visual))
        if missing:
            raise ValueError(f"{len(missing)} captioned images have no region features, e.g. {missing[:3]}")
        self.captions = list(captions)
        self.image_ids = list(dict.fromkeys(c.image_id for c in self.captions))
        index = {k: i for i, k in enumerate(self.image_ids)}
        self.image_index = [index[c.image_id] for c in self.captions]
        if blank_images:
            some = next(iter(visual.values()))
            blank = {
                "visual_feats": torch.zeros(1, some["visual_feats"].shape[1]),
                "visual_pos": torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0]]),
                "cls_prob": torch.zeros(1, some["cls_prob"].shape[1]),
                "boxes": torch.zeros(1, 4),
                "num_regions": torch.tensor(1),
            }
            self.visual = [blank] * len(self.image_ids)
        else:
            self.visual = [visual[k] for k in self.image_ids]
        enc = tokenizer([c.text for c in self.captions], truncation=True, max_length=max_seq_length)
        self.ids = [torch.tensor(x, dtype=torch.long) for x in enc["input_ids"]]
        self.lengths = [
            len(x) for x in self.ids
        ]  # tokens per caption, for length bucketing (TrainConfig.bucket)
        sets = _word_sets()
        self.kinds = []  # per token: 0 other, 1 colour word, 2 shape word
        for i, c in enumerate(self.captions):
            kinds = []
            for wid in enc.word_ids(i):
                span = enc.word_to_chars(i, wid) if wid is not None else None
                word = c.text[span.start : span.end].lower() if span is not None else ""
                kinds.append(1 if word in sets["color"] else 2 if word in sets["shape"] else 0)
            self.kinds.append(torch.tensor(kinds, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int) -> dict:
        return {
            "input_ids": self.ids[i],
            "image_index": self.image_index[i],
            "text_index": i,
            **self.visual[self.image_index[i]],
        }


def _visual_map(store, image_ids, max_regions: int = MAX_REGIONS) -> dict[str, dict]:
    from vilbert_lite.data.regions import visual_inputs

    return {i: visual_inputs(store.get(i), max_regions) for i in image_ids}


def _wait_for(flag: Path, timeout: float = 3600) -> None:
    t0 = time.time()
    while not flag.exists():
        if time.time() - t0 > timeout:
            raise TimeoutError(f"waited {timeout:.0f}s for rank 0 to write {flag}")
        time.sleep(1.0)


def _extract(items: list[tuple[str, Any]] | dict[str, Path], root: Path, progress: bool) -> tuple[Any, dict]:
    """Region features of (image_id, loader() -> (image, boxes or None)) items into the store under `root`;
    only missing images are loaded, except image files, which are all checked against what is stored (a changed
    file is extracted again, see `store.refresh`). Under torchrun rank 0 extracts and the other ranks wait."""
    from vilbert_lite.data.regions import RegionExtractor
    from vilbert_lite.data.store import FeatureStore, extract_features

    rank = int(os.environ.get("RANK", 0))
    t0 = time.perf_counter()
    ext = RegionExtractor(max_regions=MAX_REGIONS)
    store = FeatureStore(root, ext.settings) if rank else None
    if rank == 0:
        if isinstance(items, dict):  # image files: a list, so that the store checks each against its file
            store = extract_features([(i, p, None) for i, p in items.items()], root, ext, progress=progress,
                                     on_error="skip")  # fmt: skip
        else:
            probe = FeatureStore(root, ext.settings)
            todo = [(i, f) for i, f in items if i not in probe]

            def load():
                for image_id, loader in todo:
                    image, boxes = loader()
                    yield image_id, image, boxes

            store = extract_features(load(), root, ext, total=len(todo), progress=progress, on_error="skip")
        (store.path / f".ready-{len(items)}").touch()
    else:
        _wait_for(store.path / f".ready-{len(items)}")
        store = FeatureStore(root, ext.settings)
    info = {"store": str(store.path), "images": len(items), "extracted": store.extracted if rank == 0 else 0,
            "seconds": round(time.perf_counter() - t0, 2), "settings_key": store.key,
            "settings": store.settings}  # fmt: skip
    return store, info


@functools.cache
def extractor_settings() -> dict:
    """The settings of the region extractor every synthetic-world store is made with (they key the store)."""
    from vilbert_lite.data.regions import RegionExtractor

    return RegionExtractor(max_regions=MAX_REGIONS, device="cpu").settings


def synthetic_data(profile: str, world_seed: int = 0, progress: bool = True, corpus_fraction: float = 1.0,
                   sizes=None):  # fmt: skip
    """The synthetic world's pretrain captions (the first `corpus_fraction` of its images) and val captions with
    region features (only those images are extracted) -> (train captions, val captions, visual map, store,
    extraction info). `sizes` (a WorldSize) replaces the profile's world."""
    from vilbert_lite.data.world import make_world

    world = make_world(profile, seed=world_seed, sizes=sizes)
    root = cache_dir() / "features" / f"world-{world.key}"
    train, val = _take_fraction(world.captions("pretrain"), corpus_fraction), world.captions("val")
    ids = list(dict.fromkeys(c.image_id for c in train + val))
    items = [(i, lambda i=i: (world.image(i), world.gt_boxes(i))) for i in ids]
    store, info = _extract(items, root, progress)
    return train, val, _visual_map(store, ids), store, info


def coco_data(captions_json: str | Path, image_dir: str | Path, progress: bool = True):
    """COCO-format captions + image folder (proposal boxes) -> the same tuple as `synthetic_data`; the last 5%
    of the images (sorted ids) are held out. Images that cannot be read are left out with their captions,
    named in a warning (and in the feature store's skipped.jsonl)."""
    from vilbert_lite.data.formats import read_coco_captions

    caps, paths = read_coco_captions(captions_json, image_dir)
    if len(paths) < 2:
        raise UserError(f"{captions_json}: pretraining needs at least 2 images, found {len(paths)}")
    key = runs.config_hash({"images": str(Path(image_dir).resolve())})
    root = cache_dir() / "features" / f"images-{key}"
    store, info = _extract({i: paths[i] for i in sorted(paths)}, root, progress)
    unread = {r["image_id"]: r for r in store.report() if r["image_id"] in paths}
    if unread:
        listed = "; ".join(f"{r['path']}: {r['reason']}" for r in list(unread.values())[:5])
        more = f" and {len(unread) - 5} more" if len(unread) > 5 else ""
        warnings.warn(f"{len(unread)} image(s) cannot be read and are left out with their captions: {listed}"
                      f"{more} (all in {store.path / 'skipped.jsonl'})", stacklevel=3)  # fmt: skip
    ids = [i for i in sorted(paths) if i in store]
    if len(ids) < 2:
        raise UserError(f"{captions_json}: pretraining needs at least 2 readable images, found {len(ids)}")
    caps = [c for c in caps if c.image_id in store]
    n_val = max(1, round(HELD_OUT_FRACTION * len(ids)))
    val_ids = set(ids[-n_val:])
    train = [c for c in caps if c.image_id not in val_ids]
    val = [c for c in caps if c.image_id in val_ids]
    info["images_digest"] = hashlib.sha256(
        json.dumps([(i, store.sources.get(i, {}).get("sha256", "")) for i in ids]).encode()
    ).hexdigest()  # what the run read: the pretraining run's key holds it
    return train, val, _visual_map(store, ids), store, info


def _store_widths(visual: dict[str, dict]) -> tuple[int, int]:
    v = next(iter(visual.values()))
    return int(v["visual_feats"].shape[1]), int(v["cls_prob"].shape[1])


def _take_fraction(captions: list, fraction: float) -> list:
    ids = list(dict.fromkeys(c.image_id for c in captions))
    keep = set(ids[: round(fraction * len(ids))])
    return [c for c in captions if c.image_id in keep]


@functools.lru_cache(maxsize=4)
def _pretrain_caption_images(sizes, world_seed: int) -> tuple[str, ...]:
    from vilbert_lite.data.world import make_world

    return tuple(c.image_id for c in make_world(sizes=sizes, seed=world_seed).captions("pretrain"))


def caption_count(sizes, world_seed: int = 0, fraction: float = 1.0) -> int:
    """How many pretraining captions the synthetic world of `sizes` (a WorldSize) gives with the first `fraction`
    of its images (`_take_fraction`); the captions are generated once per process."""
    images = _pretrain_caption_images(sizes, world_seed)
    ids = list(dict.fromkeys(images))
    keep = set(ids[: round(fraction * len(ids))])
    return sum(i in keep for i in images)


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
    model's pretraining forward (ViLBERT's by default; ViLT's in `vilt_pretrain.evaluate_vilt`), so that every
    model is scored on the same negatives and the same masks.
    """
    from vilbert_lite.train.engine import resolve_device, to_device

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


# ------------------------------------------------------------------------------------------------- runs
def resolve_configs(profile: str = "cpu", seed: int = 0, config_overrides: dict | None = None,
                    train_overrides: dict | None = None, world_overrides: dict | None = None):  # fmt: skip
    """(Profile, ViLBertConfig, TrainConfig) for a pretraining run; user overrides are checked key by key
    (unknown key or wrong type -> ValueError naming it) before any data is touched. `world_overrides`
    replaces fields of the profile's WorldSize (e.g. {"object_counts": [1, 1, 1]})."""
    from dataclasses import fields

    from vilbert_lite.train.engine import TrainConfig

    prof = get_profile(profile)
    if world_overrides:
        known = {f.name: f for f in fields(prof.world)}
        for k, v in world_overrides.items():
            if k not in known:
                raise UserError(f"world_overrides: unknown key {k!r}; known keys: {sorted(known)}")
            if isinstance(getattr(prof.world, k), tuple) != isinstance(v, (list, tuple)):
                raise ValueError(
                    f"world_overrides: key {k!r} expects {type(getattr(prof.world, k)).__name__}"
                )
        w = {k: tuple(v) if isinstance(v, list) else v for k, v in world_overrides.items()}
        prof = replace(prof, world=replace(prof.world, **w))
    base = ViLBertConfig.preset(prof.model_preset).to_dict()
    config = ViLBertConfig.from_dict({**base, **(config_overrides or {})}, source="config_overrides")
    p = prof.pretrain
    train = {"epochs": p.epochs, "batch_size": p.batch_size, "lr": p.lr, "warmup_frac": p.warmup_frac,
             "max_steps": p.max_steps, "seed": seed, **(train_overrides or {})}  # fmt: skip
    return prof, config, TrainConfig.from_dict(train)


def resolve_pretraining(profile: str = "cpu", seed: int = 0, data: str = "synthetic", corpus_fraction: float = 1.0,
                        config_overrides: dict | None = None, train_overrides: dict | None = None, *,
                        text_only: bool = False, weights: dict[str, float] | None = None,
                        model_kind: str = "vilbert", world_overrides: dict | None = None,
                        init_text_from_bert: bool | None = None, text_init: str | None = None,
                        captions: str | Path | None = None, images: str | Path | None = None):  # fmt: skip
    """Everything a pretraining run is before its data: arguments checked, (Profile, ViLBertConfig, TrainConfig,
    loss weights, TextInit); a BERT that does not fit the model is a UserError here, before any data work."""
    from vilbert_lite.model.single_stream import MODEL_KINDS

    if model_kind not in MODEL_KINDS:
        raise ValueError(f"unknown model_kind {model_kind!r}; choose one of {sorted(MODEL_KINDS)}")
    if not 0.0 <= corpus_fraction <= 1.0:
        raise ValueError(f"corpus_fraction must be in [0, 1], got {corpus_fraction}")
    if data not in ("synthetic", "coco"):
        raise ValueError(f"data must be 'synthetic' or 'coco', got {data!r}")
    if data == "coco" and (captions is None or images is None):
        raise ValueError("data='coco' needs captions=COCO.json and images=DIR")
    prof, config, tcfg = resolve_configs(profile, seed, config_overrides, train_overrides, world_overrides)
    text = _pretrain_text_init(text_init, init_text_from_bert, prof, config, model_kind, config_overrides)
    prof = replace(prof, init_text_from_bert=text.kind != "random")  # run keys: True = from a BERT
    # loss weights: the profile's recipe, then the caller's
    w = {**DEFAULT_WEIGHTS, **prof.pretrain_weights, **(weights or {})}
    if set(w) != set(DEFAULT_WEIGHTS):
        raise ValueError(f"unknown loss weight(s) {sorted(set(w) - set(DEFAULT_WEIGHTS))}")
    if text_only:
        w = {"mlm": w["mlm"], "region": 0.0, "align": 0.0}
    return prof, config, tcfg, w, text


def synthetic_source(prof, world_seed: int = 0) -> dict:
    """The run-config entry of the synthetic world's data (the profile's world sizes, seed and version)."""
    return {
        "kind": "synthetic",
        "world": asdict(prof.world),
        "world_seed": world_seed,
        "world_version": WORLD_VERSION,
    }


def pretrain_run_config(prof, config: ViLBertConfig, tcfg, weights: dict, text, *, seed: int,
                        corpus_fraction: float, source: dict, features: str, widths: tuple[int, int],
                        n_captions: int, text_only: bool = False, model_kind: str = "vilbert",
                        config_overrides: dict | None = None) -> tuple[dict, ViLBertConfig]:  # fmt: skip
    """The run config a pretraining run is keyed by (its folder is `kind-<config hash>`) and the model config
    it trains, from the resolved settings (`resolve_pretraining`) and what its data is: `source`, the feature
    store's key, the features' (width, classes) and the number of training captions."""
    from vilbert_lite.model.single_stream import matched_config

    d, c = widths
    c = d if config.visual_target == 1 else c  # feature regression predicts the feature itself
    for key, width in (("v_feature_size", d), ("v_target_size", c)):
        if key in (config_overrides or {}) and config_overrides[key] != width:
            raise ValueError(
                f"config_overrides: {key}={config_overrides[key]} but the region features give {width}"
            )
    config = config.replace(v_feature_size=d, v_target_size=c)
    if model_kind == "single_stream":
        config = matched_config(config)
    run_cfg = {
        "kind": "pretrain" + ("_text_only" if text_only else "") + ("" if model_kind == "vilbert" else f"_{model_kind}"),
        "profile": prof.name, "seed": seed,
        "corpus_fraction": corpus_fraction, "data": source, "features": features, "n_captions": n_captions,
        "max_seq_length": MAX_SEQ_LENGTH, "max_regions": MAX_REGIONS, "weights": weights,
        "init_text_from_bert": prof.init_text_from_bert, "model": config.to_dict(), "train": tcfg.to_dict(),
    }  # fmt: skip
    if (key := text_init_key(text)) is not None:  # only then: default runs keep their keys
        run_cfg["text_init"] = key
    return run_cfg, config


def plan_pretrain(profile: str = "cpu", seed: int = 0, out: str | Path | None = None, corpus_fraction: float = 1.0,
                  config_overrides: dict | None = None, train_overrides: dict | None = None, *,
                  text_only: bool = False, weights: dict[str, float] | None = None, world_seed: int = 0,
                  model_kind: str = "vilbert", world_overrides: dict | None = None,
                  init_text_from_bert: bool | None = None, text_init: str | None = None) -> tuple[Path, dict]:  # fmt: skip
    """(run folder, run config) of `pretrain(...)` on the synthetic world with the same arguments, without
    training, extracting or writing anything: the world's captions are generated and the feature store's key
    and widths come from the region extractor's settings."""
    prof, config, tcfg, w, text = resolve_pretraining(
        profile,
        seed,
        "synthetic",
        corpus_fraction,
        config_overrides,
        train_overrides,
        text_only=text_only,
        weights=weights,
        model_kind=model_kind,
        world_overrides=world_overrides,
        init_text_from_bert=init_text_from_bert,
        text_init=text_init,
    )
    settings = extractor_settings()
    run_cfg, _ = pretrain_run_config(
        prof,
        config,
        tcfg,
        w,
        text,
        seed=seed,
        corpus_fraction=corpus_fraction,
        source=synthetic_source(prof, world_seed),
        features=settings_key(settings),
        widths=(settings["feature_dim"], settings["num_classes"]),
        n_captions=caption_count(prof.world, world_seed, corpus_fraction),
        text_only=text_only,
        model_kind=model_kind,
        config_overrides=config_overrides,
    )
    return runs.run_dir(out or runs.runs_root(), run_cfg["kind"], run_cfg), run_cfg


def pretrain(
    profile: str = "cpu",
    seed: int = 0,
    out: str | Path | None = None,
    data: str = "synthetic",
    corpus_fraction: float = 1.0,
    config_overrides: dict | None = None,
    train_overrides: dict | None = None,
    progress: bool = True,
    *,
    text_only: bool = False,
    captions: str | Path | None = None,
    images: str | Path | None = None,
    weights: dict[str, float] | None = None,
    world_seed: int = 0,
    resume: bool = True,
    model_kind: str = "vilbert",
    world_overrides: dict | None = None,
    init_text_from_bert: bool | None = None,
    text_init: str | None = None,
) -> Path:
    """Pretrain (or reuse a finished run) -> the run folder `out/pretrain-<hash>` (out defaults to ./runs).

    data: "synthetic" (the world of `profile`) or "coco" with `captions` (COCO JSON) and `images` (folder).
    text_only: blank every image (one zero global region) and train masked language modelling alone:
    the text-only baseline. weights: loss weights {"mlm", "region", "align"} (over the profile's
    `pretrain_weights`). model_kind: "vilbert" or
    "single_stream" (the baseline of Table 1, depth matched to the same parameter budget).
    text_init: where the text stream starts (`resolve_text_init`): "bundled", "random", a local Hugging Face BERT
    folder or a hub name; None = the profile's choice (init_text_from_bert=True / False is "bundled" / "random").
    A BERT that does not fit the model is a UserError before any data work.
    """
    from vilbert_lite.model.single_stream import build_model

    prof, config, tcfg, w, text = resolve_pretraining(
        profile,
        seed,
        data,
        corpus_fraction,
        config_overrides,
        train_overrides,
        text_only=text_only,
        weights=weights,
        model_kind=model_kind,
        world_overrides=world_overrides,
        init_text_from_bert=init_text_from_bert,
        text_init=text_init,
        captions=captions,
        images=images,
    )

    from vilbert_lite.data.tokenize import get_tokenizer

    tok = get_tokenizer()
    if data == "synthetic":
        train_caps, val_caps, visual, store, feat_info = synthetic_data(
            profile, world_seed, progress, corpus_fraction, sizes=prof.world
        )
        source = synthetic_source(prof, world_seed)
    else:
        train_caps, val_caps, visual, store, feat_info = coco_data(captions, images, progress)
        source = {
            "kind": "coco",
            "captions": str(Path(captions).resolve()),
            "images": str(Path(images).resolve()),
            # the key follows the content too: edited captions or changed images make another run
            "content": {"captions": runs.content_digest(captions), "images": feat_info["images_digest"]},
        }
    if data == "coco":
        train_caps = _take_fraction(train_caps, corpus_fraction)
    # the model reads what the extractor wrote (e.g. 1280-d, 1000 classes)
    run_cfg, config = pretrain_run_config(
        prof,
        config,
        tcfg,
        w,
        text,
        seed=seed,
        corpus_fraction=corpus_fraction,
        source=source,
        features=store.key,
        widths=_store_widths(visual),
        n_captions=len(train_caps),
        text_only=text_only,
        model_kind=model_kind,
        config_overrides=config_overrides,
    )
    run = runs.run_dir(out or runs.runs_root(), run_cfg["kind"], run_cfg)
    rank = int(os.environ.get("RANK", 0))
    if rank == 0:
        runs.prepare_run(run, run_cfg)
        if not (run / "features.json").exists():  # the first call's extraction time, not a cache hit's
            runs.write_json(run / "features.json", feat_info)
        elif "settings" not in (old := json.loads((run / "features.json").read_text())):  # an older run
            runs.write_json(run / "features.json", {**old, "settings": store.settings})
    if runs.is_done(run) and (run / "eval.json").exists():
        return run

    torch.manual_seed(seed)
    model = build_model(model_kind, config, pretraining=True)
    record = apply_text_init(model, text)
    loaded = f"bert ({record['tensors']} tensors from {record['path']})" if record["tensors"] else "random"
    notes = {"text_init": loaded}
    if rank == 0:
        runs.write_json(run / "text_init.json", record)
    val = CaptionImageDataset(val_caps, visual, tok, MAX_SEQ_LENGTH, blank_images=text_only)
    # the validation curve after every epoch reads the first CURVE_CAPTIONS val captions; the final numbers read all
    curve_val = CaptionImageDataset(
        val_caps[:CURVE_CAPTIONS], visual, tok, MAX_SEQ_LENGTH, blank_images=text_only
    )
    if corpus_fraction == 0 or not train_caps:
        if rank == 0:
            model.save_pretrained(run / "model")
            runs.write_json(run / runs.DONE, {"steps": 0, "note": "no pretraining (corpus_fraction 0)"})
    else:
        from vilbert_lite.train.engine import train

        ds = CaptionImageDataset(train_caps, visual, tok, MAX_SEQ_LENGTH, blank_images=text_only)
        loss_fn = pretraining_loss_fn(tok, w, swap_prob=0.0 if text_only else 0.5)
        cpu0 = time.process_time()

        def curve(m):  # held-out numbers after every epoch: the validation curve in metrics.jsonl
            return evaluate_pretraining(m, curve_val, tok, seed=seed, batch_size=128, device=tcfg.device)

        train(model, ds, make_collate(tok.pad_token_id), loss_fn, tcfg, run, resume=resume, progress=progress,
              desc=run_cfg["kind"], eval_fn=curve)  # fmt: skip
        notes["train_process_cpu_s"] = round(time.process_time() - cpu0, 1)  # this process's CPU seconds
    if rank == 0:
        t0 = time.perf_counter()
        scores = evaluate_pretraining(model, val, tok, seed=seed, batch_size=128, device=tcfg.device)
        done = runs.load_done(run)
        scores.update({"n_val_captions": len(val), "n_train_captions": len(train_caps), **notes,
                       "train_wall_time_s": done.get("wall_time_s"), "steps": done.get("steps"),
                       "eval_seconds": round(time.perf_counter() - t0, 2),
                       "feature_extraction_s": feat_info["seconds"]})  # fmt: skip
        runs.write_json(run / "eval.json", scores)
    return run


# ------------------------------------------------------------------------------------------------- text init
# BERT sizes that must equal the text stream's (ViLBertModel.init_text_from_bert checks the same)
TEXT_INIT_SIZES = ("hidden_size", "num_attention_heads", "intermediate_size", "vocab_size", "type_vocab_size")


@dataclass(frozen=True)
class TextInit:
    """Where the text stream starts from (see `resolve_text_init`).

    kind: "random", "bundled" (the MiniLM BERT shipped with the tokenizer), "folder" (a local Hugging Face BERT
    folder) or "hub" (a hub name, resolved to its snapshot in the local Hugging Face cache). asked: what was
    passed (None: the profile's choice). sizes: the BERT's config.json sizes; digest: sha256 of its weights."""

    asked: str | None
    kind: str
    path: Path | None = None
    sizes: dict = field(default_factory=dict)
    digest: str | None = None
    commit: str | None = None


def _hf_offline() -> bool:
    """True when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE forbids downloads."""
    from huggingface_hub import constants

    flags = (os.environ.get(k, "").upper() for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(f in ("1", "ON", "YES", "TRUE") for f in flags)


def _weight_files(folder: Path, label: str) -> list[Path]:
    """The weights of a Hugging Face folder: its *.safetensors, else its pytorch_model*.bin."""
    safe = sorted(folder.glob("*.safetensors"))
    files = safe or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise UserError(f"{label}: {folder} holds no model.safetensors or pytorch_model.bin; expected a "
                        "Hugging Face BERT folder (config.json + weights, as save_pretrained writes)")  # fmt: skip
    return files


def _weights_digest(folder: Path, label: str) -> str:
    """sha256 over the names and bytes of a folder's weight files: other weights, another digest."""
    h = hashlib.sha256()
    for f in _weight_files(folder, label):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def _bert_sizes(folder: Path, label: str) -> dict:
    """The sizes of a BERT folder's config.json that decide whether it fits a text stream."""
    from transformers import BertConfig

    cfg = folder / "config.json"
    if not cfg.is_file():
        raise UserError(f"{label}: {folder} has no config.json; expected a Hugging Face BERT folder "
                        "(config.json + weights, as BertModel.save_pretrained writes)")  # fmt: skip
    model_type = json.loads(cfg.read_text()).get("model_type", "bert")
    if model_type != "bert":
        raise UserError(f"{label}: {cfg} is a {model_type!r} model; the text stream starts from a BERT")
    c = BertConfig.from_pretrained(str(folder), local_files_only=True)
    return {k: getattr(c, k) for k in (*TEXT_INIT_SIZES, "num_hidden_layers", "max_position_embeddings")}


def _hub_snapshot(name: str) -> Path:
    """A hub name -> its snapshot folder (config.json + weights) in the local Hugging Face cache, downloaded
    there first unless HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    offline = _hf_offline()
    try:
        folder = Path(snapshot_download(name, allow_patterns=["config.json", "*.safetensors*"],
                                        local_files_only=offline))  # fmt: skip
        if not any(folder.glob("*.safetensors")):  # an older repository: PyTorch pickles only
            folder = Path(snapshot_download(name, allow_patterns=["config.json", "pytorch_model*.bin*"],
                                            local_files_only=offline))  # fmt: skip
    except (LocalEntryNotFoundError, HfHubHTTPError, HFValidationError, OSError, ValueError) as e:
        if offline:
            raise UserError(
                f"--text-init {name}: not a local folder and not in the local Hugging Face cache, and it "
                "cannot be downloaded offline (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set); pass a local "
                "BERT folder instead: --text-init /path/to/bert (config.json + weights)"
            ) from e
        raise UserError(f"--text-init {name}: not a local folder, and the Hugging Face hub cannot give it "
                        f"({one_line(e)}); pass a local BERT folder, a hub name such as bert-base-uncased, "
                        "'bundled' or 'random'") from e  # fmt: skip
    return folder


def resolve_text_init(value: str | None, profile_wants_bert: bool = False) -> TextInit:
    """--text-init -> TextInit, before any data work: None (the profile's choice: "bundled" when
    `profile_wants_bert`, else "random"), "bundled", "random", a local Hugging Face BERT folder, or a hub name
    such as bert-base-uncased (from the local Hugging Face cache, downloaded unless offline)."""
    choice = value if value is not None else ("bundled" if profile_wants_bert else "random")
    label = f"--text-init {choice}"
    if choice == "random":
        return TextInit(value, "random")
    if choice == "bundled":
        from vilbert_lite.data.tokenize import bert_model_path

        path, kind = bert_model_path(), "bundled"
    elif Path(choice).expanduser().exists():
        path, kind = Path(choice).expanduser().resolve(), "folder"
        if not path.is_dir():
            raise UserError(
                f"{label}: not a folder; expected a Hugging Face BERT folder (config.json + weights)"
            )
    elif choice.startswith((".", "/", "~")) or "\\" in choice or choice.count("/") > 1:
        raise UserError(f"{label}: no such folder; pass a local Hugging Face BERT folder (config.json + "
                        "weights), a hub name such as bert-base-uncased, 'bundled' or 'random'")  # fmt: skip
    else:
        path, kind = _hub_snapshot(choice), "hub"
    commit = path.name if kind == "hub" and path.parent.name == "snapshots" else None
    return TextInit(value, kind, path, _bert_sizes(path, label), _weights_digest(path, label), commit)


def check_text_init(text: TextInit, config: ViLBertConfig, where: str, profile: str | None = None,
                    model_kind: str = "vilbert") -> None:  # fmt: skip
    """One-line UserError, before any data work, when `text`'s BERT does not fit the text stream of `config`
    (`where` names the model, e.g. "model preset 'mini'"). With no --text-init (the profile wants BERT and the
    bundled one does not fit) the message asks for --text-init PATH or --text-init random: a profile that
    starts from BERT never trains a random text stream without being told to."""
    if text.kind == "random":
        return
    b, width = text.sizes, config.hidden_size
    who = "its" if text.asked is not None else "the bundled MiniLM BERT's"
    if b["hidden_size"] != width:
        problem = f"{who} hidden size {b['hidden_size']} does not fit the text stream's {width} ({where})"
    else:
        diffs = [f"{k} {b[k]} vs {getattr(config, k)}" for k in TEXT_INIT_SIZES if b[k] != getattr(config, k)]
        for k in ("num_hidden_layers", "max_position_embeddings"):
            if b[k] < getattr(config, k) and (k != "num_hidden_layers" or model_kind == "vilbert"):
                diffs.append(f"{k} {b[k]} < {getattr(config, k)}")
        if not diffs:
            return
        problem = f"{who} sizes do not fit the text stream ({where}; BERT vs model): {', '.join(diffs)}"
    example = ", e.g. bert-base-uncased" if width == 768 else ""
    hint = (f"pass --text-init PATH (a BERT of hidden size {width}{example}) or --text-init random to train "
            "the text stream from scratch knowingly")  # fmt: skip
    if text.asked is None:
        raise UserError(f"profile {profile!r} starts the text stream from BERT (ViLBERT, arXiv 1908.02265 "
                        f"§3.2), but {problem}; {hint}")  # fmt: skip
    raise UserError(f"--text-init {text.asked}: {problem}; {hint}")


def text_init_key(text: TextInit) -> dict | None:
    """The run-config entry of a text init: None for "random" and "bundled" (run keys stay as they were), else
    the folder and its weights' digest, or the hub name with its snapshot's commit and digest."""
    if text.kind == "folder":
        return {"path": str(text.path), "digest": text.digest}
    if text.kind == "hub":
        return {"name": text.asked, "commit": text.commit, "digest": text.digest}
    return None


def apply_text_init(model, text: TextInit) -> dict:
    """Copy `text`'s BERT into the text stream of `model` (a backbone or a pretraining model; nothing for
    "random") -> the record for the run folder's text_init.json: what was asked and what was loaded."""
    asked = text.asked if text.asked is not None else f"profile default ({text.kind})"
    if text.kind == "random":
        return {"asked": asked, "kind": "random", "tensors": 0}
    target = getattr(model, "bert", model)
    if not hasattr(target, "init_text_from_bert"):
        if text.asked is None:  # e.g. a ViLT backbone: the profile's BERT does not apply
            return {"asked": asked, "kind": "random", "tensors": 0}
        raise UserError(
            f"--text-init {text.asked}: the {type(target).__name__} backbone has no BERT text stream"
        )
    try:
        keys = target.init_text_from_bert(text.path)
    except ValueError as e:
        raise UserError(f"--text-init {text.asked or text.kind}: {one_line(e)}") from e
    return {"asked": asked, "kind": text.kind, "path": str(text.path), "tensors": len(keys),
            "hidden_size": text.sizes["hidden_size"], "digest": text.digest,
            **({"commit": text.commit} if text.commit else {})}  # fmt: skip


TEXT_INIT_HELP = (
    "where the text stream starts: 'bundled' (the MiniLM BERT shipped with the tokenizer, hidden size 384), "
    "'random', a local Hugging Face BERT folder (config.json + weights) or a hub name such as "
    "bert-base-uncased (downloaded unless HF_HUB_OFFLINE is set); default: the profile's choice "
    "(gpu: bundled, which must fit the model)"
)


def _pretrain_text_init(text_init: str | None, init_text_from_bert: bool | None, prof, config: ViLBertConfig,
                        model_kind: str, overrides: dict | None) -> TextInit:  # fmt: skip
    """The pretraining's text init (text_init, else the init_text_from_bert keyword, else the profile's),
    resolved and checked against the model before any data work."""
    if text_init is not None and init_text_from_bert is not None:
        raise UserError(
            "pass text_init or init_text_from_bert, not both (init_text_from_bert=True is 'bundled')"
        )
    if init_text_from_bert is not None:
        text_init = "bundled" if init_text_from_bert else "random"
    text = resolve_text_init(text_init, prof.init_text_from_bert)
    where = f"model preset {prof.model_preset!r}" + (" with config overrides" if overrides else "")
    check_text_init(text, config, where, prof.name, model_kind)
    return text


def pretrain_text_only(profile: str = "cpu", seed: int = 0, out: str | Path | None = None, **kw) -> Path:
    """The text-only baseline: the same model, captions and training with every image blanked (one all-zero
    global region) and only the masked-token loss. Its eval.json is what text alone predicts."""
    return pretrain(profile, seed, out, text_only=True, **kw)


def load_pretrained(run: str | Path) -> ViLBertForPreTraining:
    """The final model of a pretraining run folder (or of a `save_pretrained` folder)."""
    run = Path(run)
    return ViLBertForPreTraining.from_pretrained(run / "model" if (run / "model").is_dir() else run)


def reevaluate(run: str | Path, progress: bool = False) -> dict:
    """Score a finished synthetic-world ViLBERT pretraining run (or its text-only twin) again with the current
    `evaluate_pretraining` (e.g. after a metric was added): the same val captions and seed as at the end of
    training. Updates and returns the run's eval.json (training fields such as the wall time are kept)."""
    from vilbert_lite.profiles import WorldSize

    run = Path(run)
    cfg = json.loads((run / "run_config.json").read_text())
    if cfg.get("kind") not in ("pretrain", "pretrain_text_only") or cfg["data"].get("kind") != "synthetic":
        raise UserError(
            f"{run}: reevaluate needs a synthetic-world ViLBERT pretraining run, got {cfg.get('kind')}"
        )
    world = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["data"]["world"].items()}
    _, val_caps, visual, _, _ = synthetic_data(cfg["profile"], cfg["data"]["world_seed"], progress,
                                               sizes=WorldSize(**world))  # fmt: skip
    from vilbert_lite.data.tokenize import get_tokenizer

    tok = get_tokenizer()
    val = CaptionImageDataset(
        val_caps, visual, tok, MAX_SEQ_LENGTH, blank_images=cfg["kind"] == "pretrain_text_only"
    )
    scores = evaluate_pretraining(load_pretrained(run), val, tok, seed=cfg["seed"], batch_size=128)
    old = json.loads((run / "eval.json").read_text()) if (run / "eval.json").exists() else {}
    new = {**old, **scores}
    runs.write_json(run / "eval.json", new)
    return new


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


# ------------------------------------------------------------------------------------------------- CLI
def _fraction(text: str) -> float:
    """--fraction: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def cli(argv: list[str]) -> int:
    """`vilbert-lite pretrain --profile cpu --seed 0 --out runs [--data synthetic | --captions C --images D]`"""
    ap = argparse.ArgumentParser(prog="vilbert-lite pretrain", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="runs root; the run folder is OUT/pretrain-<config hash>")
    ap.add_argument("--data", default="synthetic", choices=["synthetic", "coco"])
    ap.add_argument("--captions", help="COCO captions JSON (real data; implies --data coco)")
    ap.add_argument("--images", help="image folder of the COCO captions")
    ap.add_argument("--fraction", type=_fraction, default=1.0, help="share of the pretraining images, 0-1")
    ap.add_argument("--text-only", action="store_true", help="the text-only baseline (images blanked)")
    ap.add_argument("--model", default="vilbert", choices=["vilbert", "single_stream"],
                    help="two streams (ViLBERT) or the single-stream baseline")  # fmt: skip
    ap.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                    help="continue a killed run from its checkpoint (default); --no-resume starts over")  # fmt: skip
    ap.add_argument("--config", help="ViLBertConfig overrides as JSON, e.g. '{\"objective\": 1}'")
    ap.add_argument("--train", help="TrainConfig overrides as JSON, e.g. '{\"epochs\": 2}'")
    ap.add_argument("--world", help="WorldSize overrides as JSON, e.g. '{\"object_counts\": [1, 1]}'")
    ap.add_argument("--text-init", metavar="PATH_OR_NAME", help=TEXT_INIT_HELP)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    data = "coco" if a.captions or a.images else a.data
    if data == "coco" and not (a.captions and a.images):
        raise UserError("real data needs both --captions (a COCO captions JSON) and --images (its folder)")
    run = pretrain(a.profile, a.seed, a.out, data, a.fraction, json_object_arg(a.config, "--config"),
                   json_object_arg(a.train, "--train"), not a.no_progress, text_only=a.text_only,
                   captions=a.captions, images=a.images, resume=a.resume, model_kind=a.model,
                   world_overrides=json_object_arg(a.world, "--world"), text_init=a.text_init)  # fmt: skip
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(json.loads((run / "eval.json").read_text()), indent=2))
        print(f"run folder: {run}")
    return 0


def _bench_model(config: ViLBertConfig, batch: int, steps: int, device: torch.device) -> dict:
    from vilbert_lite.pretrain.objectives import make_pretraining_batch, pretraining_loss

    torch.manual_seed(0)
    model = ViLBertForPreTraining(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    T, R = MAX_SEQ_LENGTH, MAX_REGIONS + 1
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, config.vocab_size, (batch, T), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    raw = {
        "input_ids": ids, "attention_mask": torch.ones(batch, T, dtype=torch.long),
        "token_type_ids": torch.zeros(batch, T, dtype=torch.long),
        "visual_feats": torch.rand(batch, R, config.v_feature_size, generator=g),
        "visual_pos": torch.rand(batch, R, 5, generator=g).sort(-1).values,
        "cls_prob": torch.rand(batch, R, config.v_target_size, generator=g).softmax(-1),
        "visual_attention_mask": torch.ones(batch, R, dtype=torch.long), "image_index": torch.arange(batch),
    }  # fmt: skip
    b = {k: t.to(device) for k, t in make_pretraining_batch(raw, g, vocab_size=config.vocab_size).items()}
    use_amp = device.type == "cuda"
    times = []
    for i in range(steps + 1):  # the first step warms up
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss, _ = pretraining_loss(model, b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    sec = sum(times) / len(times)
    return {"samples_per_s": round(batch / sec, 2), "seconds_per_step": round(sec, 4), "batch": batch,
            "tokens": T, "regions": R, "steps": steps, "parameters": model.num_parameters()}  # fmt: skip


def bench(argv: list[str]) -> int:
    """`vilbert-lite bench pretrain`: training samples/s (forward, backward, AdamW step) of the cpu profile's
    model and of the base preset, B=8, 36 tokens, 37 regions -> reports/bench/pretrain.json."""
    from vilbert_lite.train.engine import resolve_device

    ap = argparse.ArgumentParser(prog="vilbert-lite bench pretrain", description=bench.__doc__)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", default="cpu,base", help="comma list of profile names or presets")
    ap.add_argument("--out", default="reports/bench/pretrain.json")
    a = ap.parse_args(argv)
    device = resolve_device(a.device)
    result: dict[str, Any] = {}
    for name in a.models.split(","):
        preset = get_profile(name).model_preset if name in ("smoke", "cpu", "gpu") else name
        cfg = ViLBertConfig.preset(preset)
        if name in ("smoke", "cpu"):  # CPU profiles read the region extractor's features
            cfg = cfg.replace(v_feature_size=1280, v_target_size=1000)
        key = f"{name} ({preset} preset)" if preset != name else name
        result[key] = _bench_model(cfg, a.batch, a.steps, device)
        print(f"{key}: {result[key]['samples_per_s']} samples/s", flush=True)
    result["machine"] = {"device": str(device), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                         "torch": torch.__version__, "platform": platform.platform()}  # fmt: skip
    if device.type == "cuda":
        result["machine"]["gpu"] = torch.cuda.get_device_name(device)
    out = Path(a.out)
    runs.write_json(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli(sys.argv[1:]))
