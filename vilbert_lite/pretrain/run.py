"""The pretraining run: ViLBERT on captioned images, one run folder per configuration.

    run = pretrain("cpu", seed=0)                      # runs/pretrain-<hash>/ (reused when it already finished)
    base = pretrain_text_only("cpu", seed=0)           # the same model and captions with the images blanked
    json.load(open(run / "eval.json"))                 # held-out alignment / masked-token / colour / shape accuracy
    model = load_pretrained(run)
    folder, run_config = plan_pretrain("cpu", seed=0)  # the folder a call would use, without training

What a pretrained model can do is captions.py (sample captions, score pairs); the data is data.py, the held-out
numbers evaluate.py, the text stream's start text_init.py.

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
import json
import os
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch

from vilbert_lite import runs
from vilbert_lite.data.collate import make_collate
from vilbert_lite.data.store import settings_key
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.data.world import WORLD_VERSION
from vilbert_lite.errors import UserError, json_object_arg
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.heads import ViLBertForPreTraining
from vilbert_lite.model.single_stream import MODEL_KINDS, build_model, matched_config
from vilbert_lite.pretrain.data import (
    MAX_REGIONS,
    MAX_SEQ_LENGTH,
    CaptionImageDataset,
    _store_widths,
    caption_count,
    coco_data,
    extractor_settings,
    synthetic_data,
    take_fraction,
)
from vilbert_lite.pretrain.evaluate import evaluate_pretraining
from vilbert_lite.pretrain.objectives import DEFAULT_WEIGHTS, pretraining_loss_fn
from vilbert_lite.pretrain.text_init import (
    TEXT_INIT_HELP,
    TextInit,
    apply_text_init,
    check_text_init,
    resolve_text_init,
    text_init_key,
)
from vilbert_lite.profiles import WorldSize, get_profile
from vilbert_lite.train.engine import TrainConfig, train

CURVE_CAPTIONS = 300  # val captions scored after every epoch (the final evaluation scores every val caption)


# ------------------------------------------------------------------------------------------------- runs
def resolve_configs(profile="cpu", seed: int = 0, config_overrides: dict | None = None,
                    train_overrides: dict | None = None, world_overrides: dict | None = None):  # fmt: skip
    """(Profile, ViLBertConfig, TrainConfig) for a pretraining run; user overrides are checked key by key
    (unknown key or wrong type -> ValueError naming it) before any data is touched. `world_overrides`
    replaces fields of the profile's WorldSize (e.g. {"object_counts": [1, 1, 1]})."""
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


def resolve_pretraining(profile="cpu", seed: int = 0, data: str = "synthetic", corpus_fraction: float = 1.0,
                        config_overrides: dict | None = None, train_overrides: dict | None = None, *,
                        text_only: bool = False, weights: dict[str, float] | None = None,
                        model_kind: str = "vilbert", world_overrides: dict | None = None,
                        init_text_from_bert: bool | None = None, text_init: str | None = None,
                        captions: str | Path | None = None, images: str | Path | None = None):  # fmt: skip
    """Everything a pretraining run is before its data: arguments checked, (Profile, ViLBertConfig, TrainConfig,
    loss weights, TextInit); a BERT that does not fit the model is a UserError here, before any data work."""
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

    tok = get_tokenizer()
    if data == "synthetic":
        train_caps, val_caps, visual, store, feat_info = synthetic_data(
            prof, world_seed, progress, corpus_fraction, sizes=prof.world
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
        train_caps = take_fraction(train_caps, corpus_fraction)
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
    run = Path(run)
    cfg = json.loads((run / "run_config.json").read_text())
    if cfg.get("kind") not in ("pretrain", "pretrain_text_only") or cfg["data"].get("kind") != "synthetic":
        raise UserError(
            f"{run}: reevaluate needs a synthetic-world ViLBERT pretraining run, got {cfg.get('kind')}"
        )
    world = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["data"]["world"].items()}
    _, val_caps, visual, _, _ = synthetic_data(cfg["profile"], cfg["data"]["world_seed"], progress,
                                               sizes=WorldSize(**world))  # fmt: skip
    tok = get_tokenizer()
    val = CaptionImageDataset(
        val_caps, visual, tok, MAX_SEQ_LENGTH, blank_images=cfg["kind"] == "pretrain_text_only"
    )
    scores = evaluate_pretraining(load_pretrained(run), val, tok, seed=cfg["seed"], batch_size=128)
    old = json.loads((run / "eval.json").read_text()) if (run / "eval.json").exists() else {}
    new = {**old, **scores}
    runs.write_json(run / "eval.json", new)
    return new


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


if __name__ == "__main__":
    raise SystemExit(cli(sys.argv[1:]))
