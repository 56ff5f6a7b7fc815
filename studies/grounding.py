"""Grounding experiments (making the model see): one named variant of the `cpu` pretraining recipe per call.

Every number in reports/DESIGN_LOG.md comes from a variant below, run with

    .venv/bin/python studies/grounding.py NAME [NAME ...]        # -> reports/grounding/NAME.json
    .venv/bin/python studies/grounding.py --list

A variant is overrides of the `cpu` profile (world, model config, training, loss weights), passed to the real
`vilbert_lite.pretrain.pretrain`, so a variant is exactly what `vilbert-lite pretrain --world/--config/--train`
would run. The output holds the held-out validation curve (alignment, masked colour / shape words, after every
epoch), the final eval.json and the wall time. Variants whose name ends in "-text" are the text-only twin.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.pretrain.run import pretrain, reevaluate

ROOT = Path(__file__).resolve().parents[1]

# The world the targets allow: fewer objects per scene (web photos often have one salient subject), more captions
# that name what is there, more captions per image (text is cheap, features are per image).
# Each variant spells out everything it changes from WorldSize's and the `mini` preset's defaults of the time it
# ran (world version 2 defaults: 3 captions per image; `mini` init 0.02), so a later default never changes it.
W_OLD = {
    "object_counts": [0, 1, 1, 1, 1, 1, 1, 1],
    "caption_styles": [1, 1, 1, 1, 1, 1, 1],
    "captions_per_scene": 3,
}
W_FEW = {
    "object_counts": [4, 3, 2, 1, 1, 0.5, 0.5, 0.5],
    "caption_styles": [3, 0.5, 1, 1, 2, 1, 1],
    "captions_per_scene": 3,
}
W_FEW5 = {**W_FEW, "captions_per_scene": 5}
INIT02 = {"initializer_range": 0.02, "v_initializer_range": 0.02}

INIT05 = {"initializer_range": 0.05, "v_initializer_range": 0.05}
NODROP = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
          "v_hidden_dropout_prob": 0.0, "v_attention_probs_dropout_prob": 0.0}  # fmt: skip

# the pretrained text stream learns 10x slower than the layers that start from scratch (the paper: 1e-4 for all)
SLOW_TEXT = {"bert.embeddings.": 0.1, "bert.encoder.layer.": 0.1}

VARIANTS: dict[str, dict] = {
    # the `cpu` profile as it is now (for its timing: `studies/grounding.py cpu --out runs`, the runs root that
    # `make reproduce` and the notebooks reuse)
    "cpu": {},
    # the same recipe on a schedule of its own with fewer epochs (warm-up and decay over the shorter run): what
    # a notebook 11 that fits 60 minutes would leave (reports/DESIGN_LOG.md, fewer epochs)
    "cpu-e2": {"train": {"epochs": 2}},
    "cpu-e4": {"train": {"epochs": 4}},
    # the recipe as it was, on the old world, with the default region features
    "old-world": {"world": W_OLD, "train": {"epochs": 3}, "config": INIT02},
    "old-world-e12": {"world": W_OLD, "train": {"epochs": 12}, "config": INIT02},
    "few": {"world": W_FEW, "train": {"epochs": 3}, "config": INIT02},
    "few-e12": {"world": W_FEW, "train": {"epochs": 12}, "config": INIT02},
    "few5-e8": {"world": W_FEW5, "train": {"epochs": 8}, "config": INIT02},
    "few5-e8-init05": {
        "world": W_FEW5,
        "train": {"epochs": 8},
        "config": {"initializer_range": 0.05, "v_initializer_range": 0.05},
    },
    "few5-init05-e10": {
        "world": W_FEW5,
        "train": {"epochs": 10},
        "config": {"initializer_range": 0.05, "v_initializer_range": 0.05},
    },
    # cheaper steps (studies/step_bench.py): length bucketing and no dropout; batch 32 buys twice the updates
    "few5-bucket-e10": {"world": W_FEW5, "train": {"epochs": 10, "bucket": 50}, "config": INIT05},
    "few5-bnd32-e10": {
        "world": W_FEW5,
        "train": {"epochs": 10, "bucket": 50, "batch_size": 32},
        "config": {**INIT05, **NODROP},
    },  # fmt: skip
    "few5-lr2-e10": {"world": W_FEW5, "train": {"epochs": 10, "lr": 2e-3}, "config": INIT05},
    # the held-out and training alignment agree (0.72 / ~0.70): underfitting, so no dropout; the alignment
    # loss x3 so that it weighs more in the shared layers' Adam steps, which the masked losses dominate
    "few5-a3-nd-e10": {
        "world": W_FEW5,
        "train": {"epochs": 10},
        "weights": {"align": 3.0},
        "config": {**INIT05, **NODROP},
    },  # fmt: skip
    # 10 epochs of few5-a3-nd-e10 took 663 s on a quiet machine: 12 fit the 15-minute budget
    "few5-a3-nd-e12": {
        "world": W_FEW5,
        "train": {"epochs": 12},
        "weights": {"align": 3.0},
        "config": {**INIT05, **NODROP},
    },  # fmt: skip
    # 12 epochs took 965-996 s on this machine's slower hours, over the 15-minute budget: one epoch fewer
    "few5-a3-nd-e11": {
        "world": W_FEW5,
        "train": {"epochs": 11},
        "weights": {"align": 3.0},
        "config": {**INIT05, **NODROP},
    },  # fmt: skip
    "few5-a5-nd-e12": {
        "world": W_FEW5,
        "train": {"epochs": 12},
        "weights": {"align": 5.0},
        "config": {**INIT05, **NODROP},
    },  # fmt: skip
    "few5-nd-e10": {"world": W_FEW5, "train": {"epochs": 10}, "config": {**INIT05, **NODROP}},
    "few5-a3-e10": {"world": W_FEW5, "train": {"epochs": 10}, "weights": {"align": 3.0}, "config": INIT05},
    "few-init05-e4": {
        "world": W_FEW,
        "train": {"epochs": 4},
        "config": {"initializer_range": 0.05, "v_initializer_range": 0.05},
    },
    "few-pool1-e4": {
        "world": W_FEW,
        "train": {"epochs": 4},
        "config": {**INIT02, "pooler_initializer_range": 0.1},
    },
    "few-init05-pool1-e4": {
        "world": W_FEW,
        "train": {"epochs": 4},
        "config": {"initializer_range": 0.05, "v_initializer_range": 0.05, "pooler_initializer_range": 0.1},
    },
    # the alignment loss weighted up: in the shared layers Adam normalises each parameter's step by the whole
    # gradient, which the masked losses dominate
    "few-init05-a5-e4": {
        "world": W_FEW,
        "train": {"epochs": 4},
        "weights": {"align": 5.0},
        "config": {"initializer_range": 0.05, "v_initializer_range": 0.05},
    },
    "few-a5-e4": {"world": W_FEW, "train": {"epochs": 4}, "weights": {"align": 5.0}, "config": INIT02},
    "few-alignonly-e4": {
        "world": W_FEW,
        "train": {"epochs": 4},
        "weights": {"mlm": 0.0, "region": 0.0},
        "config": INIT02,
    },
    # the text stream from the bundled pretrained BERT (MiniLM-L6-H384): the `small` preset
    "few-small-e2": {"world": W_FEW, "train": {"epochs": 2}, "preset": "small", "init_text": True},
    "few-small-fix3-lrs-e4": {
        "world": W_FEW,
        "train": {"epochs": 4, "lr_scale": SLOW_TEXT},
        "preset": "small",
        "init_text": True,
        "config": {"fixed_t_layer": 3},
    },
    "few-small-fix3-e2": {
        "world": W_FEW,
        "train": {"epochs": 2},
        "preset": "small",
        "init_text": True,
        "config": {"fixed_t_layer": 3},
    },
}


def run_variant(name: str, out_root: Path, progress: bool) -> dict:
    text_only = name.endswith("-text")
    v = VARIANTS[name.removesuffix("-text")]
    config = v.get("config")
    if v.get("preset"):
        preset = {k: x for k, x in ViLBertConfig.preset(v["preset"]).to_dict().items()
                  if k not in ("v_feature_size", "v_target_size")}  # the store decides those  # fmt: skip
        config = {**preset, **(config or {})}
    t0 = time.perf_counter()
    run = pretrain("cpu", v.get("seed", 0), out=out_root, progress=progress, text_only=text_only,
                   world_overrides=v.get("world"), config_overrides=config, train_overrides=v.get("train"),
                   weights=v.get("weights"), init_text_from_bert=v.get("init_text"))  # fmt: skip
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()] if (
        run / "metrics.jsonl").exists() else []  # fmt: skip
    keys = ("alignment_acc", "mlm_acc", "color_acc", "shape_acc")
    curve = [
        {"step": x["step"], **{k: round(x[k], 4) for k in keys if k in x}}
        for x in lines
        if x.get("kind") == "eval"
    ]
    result = {"variant": name, "spec": v, "text_only": text_only, "run": str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else str(run),
              "eval": json.loads((run / "eval.json").read_text()), "curve": curve,
              "seconds_this_call": round(time.perf_counter() - t0, 1), "threads": torch.get_num_threads()}  # fmt: skip
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "runs" / "grounding"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--reeval",
        action="store_true",
        help="score the finished runs of NAME again with the current evaluation (e.g. shape_name_acc)",
    )
    a = ap.parse_args()
    if a.list or not a.names:
        print("\n".join(f"{k}: {json.dumps(v)}" for k, v in VARIANTS.items()))
        return
    torch.set_num_threads(a.threads)
    dest = ROOT / "reports" / "grounding"
    dest.mkdir(parents=True, exist_ok=True)
    for name in a.names:
        if name.removesuffix("-text") not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; --list shows them")
        if a.reeval:
            r = json.loads((dest / f"{name}.json").read_text())
            r["eval"] = reevaluate(ROOT / r["run"])
        else:
            r = run_variant(name, Path(a.out), progress=False)
        (dest / f"{name}.json").write_text(json.dumps(r, indent=1) + "\n")
        e = r["eval"]
        print(f"{name}: align {e.get('alignment_acc', 0):.3f} colour {e.get('color_acc', 0):.3f} "
              f"shape {e.get('shape_acc', 0):.3f} shape name {e.get('shape_name_acc', 0):.3f} steps {e.get('steps')} train {e.get('train_wall_time_s')} s",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
