"""Fine-tuning on the downstream tasks (ViLBERT, arXiv 1908.02265, §4), from Python and from the command line.

    metrics = finetune("vqa", init="runs/pretrain-<hash>", profile="cpu", seed=0)    # a pretrained backbone
    metrics = finetune("vqa", init=None, profile="cpu", seed=0)                      # ViLBERT† (no pretraining)
    metrics = finetune("zeroshot", init=run)                 # retrieval with the alignment head, no training
    metrics = finetune("vqa", init=run, backbone="single_stream")                  # the single-stream baseline
    metrics = finetune("vqa", init=run, data="vqa_v2", train_questions=..., train_annotations=...,
                       train_images=..., val_questions=..., val_annotations=..., val_images=...)

    vilbert-lite finetune TASK --init RUN_DIR|none --profile cpu --seed S --out DIR [--skip-gaps]
    vilbert-lite finetune TASK --init none --profile gpu --text-init bert-base-uncased   # ViLBERT† from BERT

Tasks: vqa, vcr, refer, retrieval, zeroshot, nlvr (see TASKS). Each run is a folder (DIR, or
runs/finetune/<task>-<config hash>) holding the engine's files and `metrics.json`: task, split, seed, init,
every metric by name, chance levels, the config hash, wall time and the per-epoch history. A finished folder
with the same config is reused, not retrained. Real data is checked before the first step: its gaps (questions
whose image is missing or unreadable, answers outside the vocabulary) are counted, named in a warning or a
UserError, and listed in the run folder's `gaps.jsonl`; `skip_gaps` / `--skip-gaps` leaves them out.

ViLBERT† (--init none) starts its text stream as pretraining does (`pretrain.text_init.resolve_text_init`): the profile's
choice, or `--text-init bundled | random | BERT_FOLDER | HUB_NAME`; a BERT that does not fit the model is a
UserError before any data work (the gpu profile's `base` model needs a BERT of width 768), and the run folder's
`text_init.json` says what was loaded. A chosen BERT enters the run key; default calls keep theirs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from vilbert_lite import runs
from vilbert_lite.data.store import settings_key
from vilbert_lite.data.world import WORLD_VERSION, make_world
from vilbert_lite.errors import UserError, json_object_arg
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.pretrain.data import extractor_settings
from vilbert_lite.pretrain.text_init import TEXT_INIT_HELP, check_text_init, resolve_text_init, text_init_key
from vilbert_lite.profiles import get_profile
from vilbert_lite.tasks.common import (
    METRICS_FILE,
    VILT_KINDS,
    VILT_TASKS,
    Backbone,
    BlankImageBank,
    ImageBank,
    Source,
    TaskSpec,
    backbone_name,
    check_init_shape,
    check_kind,
    init_kind,
    model_folder,
    read_metrics,
    run_task,
    world_features,
)
from vilbert_lite.tasks.vqa import gap_summary, load_vqa_v2
from vilbert_lite.train.engine import TrainConfig
from vilbert_lite.vilt.inputs import grid_width, world_visual
from vilbert_lite.vilt.model import ViLTConfig, resolve_vilt_config

# task name -> "module:attribute" of its TaskSpec
TASKS = {
    "vqa": "vilbert_lite.tasks.vqa:TASK",
    "vcr": "vilbert_lite.tasks.vcr:TASK",
    "refer": "vilbert_lite.tasks.refer:TASK",
    "retrieval": "vilbert_lite.tasks.retrieval:TASK",
    "zeroshot": "vilbert_lite.tasks.retrieval:ZERO_SHOT",
    "nlvr": "vilbert_lite.tasks.nlvr:TASK",
}
DATA_KINDS = ("synthetic", "vqa_v2")
KEYED_WORLD_VERSION = 3  # fine-tuning run keys name the world version only when it differs from this


def get_task(name: str) -> TaskSpec:
    """The TaskSpec of a task name; an unknown name raises ValueError listing the valid ones."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    module, attr = TASKS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def finetune(
    task: str,
    init: str | Path | None,
    profile: str = "cpu",
    seed: int = 0,
    out: str | Path | None = None,
    data: str = "synthetic",
    *,
    backbone: str | Backbone | None = None,
    config=None,
    train_overrides: dict | None = None,
    world_seed: int = 0,
    extractor=None,
    root: str | Path | None = None,
    progress: bool = True,
    resume: bool = True,
    skip_gaps: bool = False,
    blank_images: bool = False,
    text_init: str | None = None,
    **real_data_paths: Any,
) -> dict:
    """Fine-tune (or, for "zeroshot", only evaluate) one task and return its metrics (also in OUT/metrics.json).

    init: a pretraining run folder (its `model/` backbone is loaded), or None / "none" for ViLBERT†.
    backbone: the backbone hook -- "vilbert", "single_stream", "vilt" / "vilt_grid" (ViLT over patches / CNN
    grid cells: tasks VILT_TASKS, synthetic data, config a ViLTConfig, default the init run's or the profile's),
    a callable `config -> model`, or None for the kind saved in the init run (ViLBertModel when init is none);
    a run of one family fine-tuned as the other is a UserError. config: the ViLBertConfig to build / expect
    (default: the profile's preset with the feature store's widths); an init run of another shape is a
    ValueError naming the differing sizes. data: "synthetic" (the profile's world, `world_seed`) or "vqa_v2"
    (task vqa only) with real_data_paths train_questions, train_annotations, train_images | train_features,
    val_questions, val_annotations, val_images | val_features; its gaps are found before training (see
    `vqa.load_vqa_v2`): missing or unreadable images raise a UserError naming them unless `skip_gaps`, which
    leaves those questions out. blank_images: every image becomes one zero region, so the model sees the text
    only (Table 1's question-only VQA row, the language prior). text_init: where a ViLBERT†'s text stream starts
    (init none only; see `text_init.resolve_text_init`): "bundled", "random", a BERT folder or a hub name, None =
    the profile's choice; a BERT that does not fit is a UserError before any data work. extractor: the region
    extractor (default the built-in RegionExtractor). out: the run folder (default
    ROOT/finetune/<task>-<config hash>).
    """
    spec = get_task(task)
    prof = get_profile(profile)
    if data not in DATA_KINDS:
        raise UserError(f"data must be one of {DATA_KINDS}, got {data!r}")
    has_init = init is not None and str(init).lower() != "none"
    check_kind(init if has_init else None, backbone)
    kind = (
        backbone if isinstance(backbone, str) else init_kind(init) if has_init and backbone is None else None
    )
    if kind in VILT_KINDS:
        backbone = kind
        if blank_images:
            raise UserError(
                "blank_images (the question-only baseline) reads region features: use a ViLBERT backbone"
            )
        if spec.name not in VILT_TASKS or data != "synthetic":
            raise UserError(f"a {kind} backbone fine-tunes {', '.join(VILT_TASKS)} on the synthetic world; "
                            f"not {spec.name!r} with data={data!r} (it has no region outputs)")  # fmt: skip
        if config is None:  # the init run's ViLT, or the profile's (ViLT†)
            embed = "patch" if kind == "vilt" else "grid"
            config = (ViLTConfig.from_json_file(model_folder(init) / "config.json") if has_init
                      else resolve_vilt_config(prof, embed))  # fmt: skip
    if has_init:  # fail before any data work (widths come later)
        check_init_shape(init, config or ViLBertConfig.preset(prof.model_preset), backbone,
                         ignore=() if config else ("v_feature_size", "v_target_size"))  # fmt: skip
        if text_init is not None:
            raise UserError(f"--text-init {text_init} applies to ViLBERT† (--init none) only: the text stream "
                            f"of --init {init} is already pretrained; leave --text-init out")  # fmt: skip
    text = None if has_init else _dagger_text_init(text_init, prof, kind, backbone, config)
    gaps: list[dict] = []
    if data == "synthetic":
        if real_data_paths:
            raise UserError(f"unexpected arguments {sorted(real_data_paths)} (real data needs data='vqa_v2')")

        world = make_world(prof, seed=world_seed)
        options = dict(prof.task_data.get(spec.name, {}))
        if kind in VILT_KINDS:  # pixels or CNN grid cells per image, as in ViLT pretraining
            ids = [sc.scene_id for split in ("train", "val", "test") for sc in world.scenes[split]]
            visual, _ = world_visual(world, ids, config, progress)
            if config.visual_embed == "grid" and not has_init:
                config = config.replace(
                    grid_feature_size=int(next(iter(visual.values()))["grid_features"].shape[0])
                )
            source = Source("synthetic", visual, world=world, options=options)
            data_desc = synthetic_desc(spec, prof, world_seed, vilt_features(config))
        else:
            store, _ = world_features(world, spec.features, extractor=extractor, progress=progress)
            source = Source("synthetic", ImageBank(store), world=world, options=options)
            data_desc = synthetic_desc(
                spec, prof, world_seed, {"features": spec.features, "store": store.key}
            )
    else:
        if task != "vqa":
            raise UserError(f"real data (data='vqa_v2') is supported for vqa only, not {task!r}")

        records, images, data_desc, gaps = load_vqa_v2(real_data_paths, extractor, progress, skip_gaps)
        source = Source("vqa_v2", images, records=records)
    if blank_images:
        source = replace(source, images=BlankImageBank(source.images))
        data_desc = {**data_desc, "blank_images": True}
    if config is None:  # the profile's model reading what the extractor wrote (e.g. 1280-d, 1000 classes)
        w = source.images.widths()
        config = ViLBertConfig.preset(prof.model_preset, v_feature_size=w[0], v_target_size=w[1] or 1000)
    tcfg = finetune_train_config(spec, prof, seed, train_overrides)
    run_cfg = finetune_run_config(spec, prof, seed, init, backbone, data_desc, config, tcfg, text)
    init_desc = run_cfg["init"]
    out = (
        Path(out)
        if out is not None
        else runs.run_dir(Path(root or runs.runs_root()) / "finetune", spec.name, run_cfg)
    )
    if gaps:  # only what is left after load_vqa_v2's checks: kept out-of-vocabulary ones, or skipped ones
        runs.atomic_write(
            out / "gaps.jsonl", lambda f: f.write("".join(json.dumps(g) + "\n" for g in gaps).encode())
        )
        what = "left out" if skip_gaps else "kept; they count as wrong (--skip-gaps leaves them out)"
        warnings.warn(
            f"VQA v2 data: {gap_summary(gaps)}; {what}; all listed in {out / 'gaps.jsonl'}", stacklevel=2
        )
    return run_task(spec, source, config, None if init_desc == "none" else init, tcfg, run_cfg, out,
                    backbone, prof.init_text_from_bert, progress, resume, text_init=text)  # fmt: skip


def finetune_train_config(spec: TaskSpec, prof, seed: int, train_overrides: dict | None = None):
    """The TrainConfig of a fine-tuning run: the profile's fine-tuning settings, the task's batch scale and budget,
    then the caller's overrides."""
    f = prof.finetune
    batch = max(1, round(f.batch_size * spec.batch_scale))  # items per batch for this task
    return TrainConfig.from_dict({"epochs": f.epochs, "batch_size": batch, "lr": f.lr,
                                  "warmup_frac": f.warmup_frac, "max_steps": f.max_steps, "seed": seed,
                                  **prof.finetune_budgets.get(spec.name, {}), **(train_overrides or {})})  # fmt: skip


def synthetic_desc(spec: TaskSpec, prof, world_seed: int, features: dict) -> dict:
    """The run-config entry of a task's synthetic data: the world, its seed, where its visual inputs come from
    (`features`: region boxes and store key, or ViLT's pixels / grid), the task's data options."""
    options = dict(prof.task_data.get(spec.name, {}))
    desc = {"kind": "synthetic", "world": asdict(prof.world), "world_seed": world_seed, **features}
    if options:  # only then: the run keys of tasks without options stay what they were
        desc["options"] = options
    if WORLD_VERSION != KEYED_WORLD_VERSION:  # a re-rendered world is another run (keys before stay)
        desc["world_version"] = WORLD_VERSION
    return desc


def vilt_features(config) -> dict:
    """The visual inputs of a ViLT backbone, for run configs: "patch" or "grid-<stage>"."""
    return {
        "features": config.visual_embed if config.visual_embed == "patch" else f"grid-{config.grid_stage}"
    }


def finetune_run_config(spec: TaskSpec, prof, seed: int, init, backbone, data_desc: dict, config, tcfg,
                        text=None) -> dict:  # fmt: skip
    """The run config a fine-tuning run is keyed by (its folder is `<task>-<config hash>`): task, profile, seed,
    the init run's resolved path, the backbone, the data, the model and training configs, and a ViLBERT†'s
    chosen text init (`text`, None with an init run)."""
    init_desc = "none" if init is None or str(init).lower() == "none" else str(Path(init).resolve())
    run_cfg = {"kind": "finetune", "task": spec.name, "profile": prof.name, "seed": seed, "init": init_desc,
               "backbone": backbone_name(backbone), "data": data_desc, "model": config.to_dict(),
               "train": tcfg.to_dict(), "version": 1}  # fmt: skip
    if text is not None and (key := _dagger_text_key(text, prof)) is not None:  # defaults keep their keys
        run_cfg["text_init"] = key
    return run_cfg


def plan_finetune(task: str, init: str | Path | None = None, profile: str = "cpu", seed: int = 0, *,
                  backbone: str = "vilbert", config=None, root: str | Path | None = None, world_seed: int = 0,
                  train_overrides: dict | None = None, blank_images: bool = False,
                  text_init: str | None = None) -> tuple[Path, dict]:  # fmt: skip
    """(run folder, run config) of `finetune(task, init, profile, seed, root=root, backbone=backbone,
    config=config, ...)` on the synthetic world, without reading the init run, extracting or training: the
    init run may be a planned one (only its path enters the key). config: the model the fine-tuning builds (with
    an init run: that run's config, ViLBertConfig or ViLTConfig, as `experiments.run_cell` passes it); None =
    the profile's model at the region extractor's widths (ViLT†: the profile's ViLT)."""
    spec, prof = get_task(task), get_profile(profile)
    has_init = init is not None and str(init).lower() != "none"
    if backbone in VILT_KINDS:
        if config is None and has_init:
            raise ValueError("plan_finetune: pass the init run's ViLTConfig as config")
        if config is None:
            config = resolve_vilt_config(prof, "patch" if backbone == "vilt" else "grid")
            if config.visual_embed == "grid":
                config = config.replace(grid_feature_size=grid_width(config))
        features = vilt_features(config)
    else:
        settings = extractor_settings()
        features = {"features": spec.features, "store": settings_key(settings)}
        if config is None:
            config = ViLBertConfig.preset(prof.model_preset, v_feature_size=settings["feature_dim"],
                                          v_target_size=settings["num_classes"] or 1000)  # fmt: skip
    data_desc = synthetic_desc(spec, prof, world_seed, features)
    if blank_images:
        data_desc = {**data_desc, "blank_images": True}
    text = None if has_init else _dagger_text_init(text_init, prof, backbone, backbone, config)
    tcfg = finetune_train_config(spec, prof, seed, train_overrides)
    run_cfg = finetune_run_config(spec, prof, seed, init, backbone, data_desc, config, tcfg, text)
    return runs.run_dir(Path(root or runs.runs_root()) / "finetune", spec.name, run_cfg), run_cfg


def _dagger_text_init(text_init: str | None, prof, kind: str | None, backbone, config):
    """The text init of a ViLBERT† (no --init), resolved and checked against the model before any data work;
    ViLT backbones have no BERT text stream (ViLT starts from ViT), so only 'random' (or nothing) applies."""
    if kind in VILT_KINDS:  # random is all there is: the same run as without --text-init
        if text_init not in (None, "random"):
            raise UserError(f"--text-init {text_init}: a {kind} backbone has no BERT text stream; leave out")
        return resolve_text_init(None, False)
    text = resolve_text_init(text_init, prof.init_text_from_bert)
    where = f"model preset {prof.model_preset!r}" + (" with the given config" if config else "")
    check_text_init(text, config or ViLBertConfig.preset(prof.model_preset), where, prof.name,
                    "single_stream" if backbone == "single_stream" else "vilbert")  # fmt: skip
    return text


def _dagger_text_key(text, prof) -> dict | str | None:
    """The fine-tuning run-config entry of a text init: None when it is the profile's choice (default runs keep
    their keys), the kind ("random" / "bundled") when it differs from it, else the BERT folder / hub entry
    (`text_init.text_init_key`)."""
    default = "bundled" if prof.init_text_from_bert else "random"
    if text.asked is None or (text.kind == default and text_init_key(text) is None):
        return None
    return text_init_key(text) or text.kind


# ---------------------------------------------------------------------------------------------------- CLI
def cli(argv: list[str]) -> int:
    """`vilbert-lite finetune TASK --init RUN_DIR|none --profile cpu --seed S --out DIR` (+ VQA v2 files)."""
    ap = argparse.ArgumentParser(prog="vilbert-lite finetune", description=__doc__.splitlines()[0])
    ap.add_argument("task", help=f"one of: {', '.join(TASKS)}")
    ap.add_argument("--init", required=True, help="a pretraining run folder, or none (ViLBERT†)")
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="run folder (default runs/finetune/<task>-<config hash>)")
    ap.add_argument("--backbone", choices=["vilbert", "single_stream", *VILT_KINDS],
                    help="default: the --init run's kind (vilbert for --init none)")  # fmt: skip
    ap.add_argument("--train", help="TrainConfig overrides as JSON, e.g. '{\"epochs\": 2}'")
    ap.add_argument("--task-data", help="the task's data options as JSON, replacing the profile's, e.g. "
                    "'{\"per_scene\": 4, \"style\": \"attribute\"}' for vcr (another run key)")  # fmt: skip
    ap.add_argument(
        "--blank-images",
        action="store_true",
        help="every image as one zero region: the text-only (question-only) baseline",
    )
    ap.add_argument("--text-init", metavar="PATH_OR_NAME",
                    help="ViLBERT† (--init none): " + TEXT_INIT_HELP)  # fmt: skip
    ap.add_argument("--no-progress", action="store_true")
    real = ap.add_argument_group("real VQA v2 data (task vqa)")
    for split in ("train", "val"):
        real.add_argument(f"--{split}-questions", help=f"{split} questions JSON (VQA v2)")
        real.add_argument(f"--{split}-annotations", help=f"{split} annotations JSON (VQA v2)")
        real.add_argument(f"--{split}-images", help=f"{split} image folder (regions extracted and cached)")
        real.add_argument(
            f"--{split}-features", help=f"{split} feature store folder or LMDB (instead of images)"
        )
    real.add_argument("--skip-gaps", action="store_true",
                      help="leave out questions whose image is missing or unreadable, and validation questions "
                           "with no answer in the training vocabulary (listed in the run's gaps.jsonl)")  # fmt: skip
    a = ap.parse_args(argv)
    get_task(a.task)  # an unknown task fails before anything else
    paths = {k: v for k, v in vars(a).items() if k.startswith(("train_", "val_")) and v}
    overrides = json_object_arg(a.train, "--train")
    prof = get_profile(a.profile)
    if a.task_data is not None:
        options = json_object_arg(a.task_data, "--task-data", '{"per_scene": 4}')
        prof = get_profile(a.profile, task_data={**prof.task_data, a.task: options})
    metrics = finetune(a.task, a.init, prof, a.seed, a.out, "vqa_v2" if paths else "synthetic",
                       backbone=a.backbone, train_overrides=overrides, progress=not a.no_progress,
                       skip_gaps=a.skip_gaps, blank_images=a.blank_images, text_init=a.text_init,
                       **paths)  # fmt: skip
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
    return 0


__all__ = ["TASKS", "finetune", "get_task", "cli", "read_metrics", "METRICS_FILE"]
