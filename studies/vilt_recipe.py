"""Which ViLT pretraining recipe fits notebook 11's `cpu` budget? Step cost and held-out yardsticks of a few
recipes, chosen on pretraining-side numbers only (held-out alignment, masked colour and shape words).

    .venv/bin/python studies/vilt_recipe.py time                 -> reports/vilt_recipe/step-cpu.json
    .venv/bin/python studies/vilt_recipe.py train views=1 views=1,patch=32
                                                               -> reports/vilt_recipe/cpu.json (merged by recipe)

A recipe is comma-separated settings over ViLT's defaults (views=2, patch=16, wpa=0.1, embed=patch):
  views   2 = ViLT's code: masked captions on their own images and unmasked, half-swapped captions, two views of
          every batch (2B pairs per step); 1 = ViLBERT's arrangement: captions half swapped, then masked, one pass
  patch   patch side in pixels on the world's 160-pixel images (16 -> 100 patches, 32 -> 25)
  wpa     weight of the word-patch alignment (optimal transport) term; 0 turns it off
  embed   patch (ViLT) or grid (the CNN's feature-map cells: patch does not apply)
`time` runs `--steps` real updates (the `cpu` world's captions and images, `mini`, AdamW) after `--warmup`
untimed ones per recipe, on `--threads` threads (notebook 11 runs two workers of one thread); run it on a quiet
machine. `train` pretrains each recipe with `vilt_pretrain.pretrain_vilt` (the `cpu` profile's 1,884 steps,
seed 0, run folders reused) and records eval.json beside ViLBERT's seed-0 pretraining.

The rule, fixed before the first `train` (reports/DESIGN_LOG.md, ViLT's recipe): among the recipes trained, the one with the
cheapest step in the `time` file whose held-out alignment reaches 0.85 (ViLBERT's alignment target, reports/DESIGN_LOG.md, Targets);
`train` writes it as "chosen". `Profile.vilt_recipe` then carries it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from vilbert_lite.data.collate import make_collate
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.data.world import make_world
from vilbert_lite.pretrain.data import MAX_SEQ_LENGTH, CaptionImageDataset
from vilbert_lite.pretrain.run import pretrain, pretrain_text_only, resolve_configs
from vilbert_lite.train.engine import epoch_batches
from vilbert_lite.vilt.inputs import world_visual
from vilbert_lite.vilt.model import ViLTForPreTraining, resolve_vilt_config
from vilbert_lite.vilt.pretrain import pretrain_vilt, recipe_weights, vilt_loss_fn

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = {"views": 2, "patch": 16, "wpa": 0.1, "embed": "patch"}
ALIGNMENT_BAR = 0.85
YARDSTICKS = ("alignment_acc", "mlm_acc", "color_acc", "shape_acc", "steps", "train_wall_time_s")


def parse(recipe: str) -> dict:
    """'views=1,patch=32' -> the full recipe dict; unknown names are an error."""
    r = dict(DEFAULT)
    for part in filter(None, recipe.replace("default", "").split(",")):
        k, _, v = part.partition("=")
        if k not in DEFAULT or not v:
            raise SystemExit(f"bad recipe part {part!r}; known: {sorted(DEFAULT)} as name=value")
        r[k] = v if k == "embed" else type(DEFAULT[k])(v)
    return r


def name(r: dict) -> str:
    """The canonical recipe name: the settings that differ from the defaults ('default' for none)."""
    return ",".join(f"{k}={r[k]}" for k in DEFAULT if r[k] != DEFAULT[k]) or "default"


def pretrain_kwargs(r: dict, profile: str = "cpu") -> dict:
    """The recipe as `pretrain_vilt` keyword arguments."""
    patch = (
        {"patch_size": r["patch"]} if r["embed"] == "patch" else None
    )  # explicit: not the profile's recipe
    return dict(profile=profile, visual_embed=r["embed"], config_overrides=patch, weights={"wpa": r["wpa"]},
                views=r["views"])  # fmt: skip


def choose(rows: dict, step_file: Path, bar: float = ALIGNMENT_BAR) -> str | None:
    """The trained recipe with the cheapest timed step among those whose held-out alignment reaches `bar`."""
    if not step_file.exists():
        return None
    ms = {r["recipe"]: r["ms_per_step"] for r in json.loads(step_file.read_text())["rows"]}
    ok = [k for k, r in rows.items() if (r.get("alignment_acc") or 0) >= bar and k in ms]
    return min(ok, key=ms.get) if ok else None


def time_recipe(r: dict, args) -> dict:
    kw = pretrain_kwargs(r, args.profile)
    prof, _, tcfg = resolve_configs(args.profile, 0)
    config = resolve_vilt_config(args.profile, kw["visual_embed"], kw["config_overrides"])
    world = make_world(args.profile, seed=0)
    caps = world.captions("pretrain")
    visual, _ = world_visual(world, list(dict.fromkeys(c.image_id for c in caps)), config)
    if r["embed"] == "grid":
        shape = next(iter(visual.values()))["grid_features"].shape  # (C, h, w)
        config, cells = config.replace(grid_feature_size=int(shape[0])), shape[1:]
    tok = get_tokenizer()
    ds = CaptionImageDataset(caps, visual, tok, MAX_SEQ_LENGTH)
    collate = make_collate(tok.pad_token_id)
    epoch = epoch_batches(len(ds), tcfg, 0, 1, ds.lengths)
    batches, total = epoch[: args.warmup + args.steps], len(epoch) * tcfg.epochs
    total = min(total, tcfg.max_steps or total)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ViLTForPreTraining(config)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr)
    loss_fn = vilt_loss_fn(tok, recipe_weights(prof, kw["weights"]), views=r["views"])

    def step(idx):
        loss, _ = loss_fn(model, collate([ds[i] for i in idx]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for idx in batches[: args.warmup]:
        step(idx)
    t = time.perf_counter()
    for idx in batches[args.warmup :]:
        step(idx)
    dt = time.perf_counter() - t
    row = {"recipe": name(r), "threads": args.threads, "steps": args.steps, "ms_per_step": round(1e3 * dt / args.steps, 1),
           "visual_tokens": config.grid_size**2 if r["embed"] == "patch" else int(cells[0] * cells[1]),
           "projected_pretraining_s": round(dt / args.steps * total, 0)}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["time", "train"])
    ap.add_argument("recipes", nargs="*", help="recipes as name=value lists (see the module doc)")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--root", default=None, help="runs root (default ./runs)")
    ap.add_argument("--out", default=None, help="JSON to write (default reports/vilt_recipe/...)")
    a = ap.parse_args()
    recipes = [parse(x) for x in (a.recipes or ["default", "views=1", "views=1,patch=32", "views=1,wpa=0"])]
    out_dir = ROOT / "reports" / "vilt_recipe"
    command = f"studies/vilt_recipe.py {' '.join(sys.argv[1:])}"
    if a.mode == "time":
        rows = [time_recipe(r, a) for r in recipes]
        out = Path(a.out or out_dir / f"step-{a.profile}.json")
        doc = {"what": "ms per ViLT pretraining step (mini, batch 64, AdamW) by recipe", "command": command,
               "torch": torch.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": rows}  # fmt: skip
    else:
        out = Path(a.out or out_dir / f"{a.profile}.json")
        doc = json.loads(out.read_text()) if out.exists() else {"rows": {}}
        vilbert = pretrain(a.profile, 0, out=a.root, progress=False)
        ref = json.loads((vilbert / "eval.json").read_text())
        doc["vilbert_seed0"] = {"run": vilbert.name, **{k: ref.get(k) for k in YARDSTICKS}}
        text = pretrain_text_only(
            a.profile, 0, out=a.root, progress=False
        )  # colour / shape words without images
        ref = json.loads((text / "eval.json").read_text())
        doc["text_only_seed0"] = {"run": text.name, **{k: ref.get(k) for k in YARDSTICKS}}
        for r in recipes:
            run = pretrain_vilt(seed=0, out=a.root, progress=True, **pretrain_kwargs(r, a.profile))
            ev = json.loads((run / "eval.json").read_text())
            doc["rows"][name(r)] = {"recipe": r, "run": run.name, **{k: ev.get(k) for k in YARDSTICKS},
                                    "command": f"studies/vilt_recipe.py train {name(r)}"}  # fmt: skip
            print(json.dumps(doc["rows"][name(r)]), flush=True)
        doc.update(what="held-out yardsticks of ViLT pretraining recipes (seed 0) beside ViLBERT's",
                   threads=torch.get_num_threads())  # fmt: skip
        doc.pop("command", None)  # each row names its own
        doc["chosen"] = choose(doc["rows"], out_dir / f"step-{a.profile}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
