"""Referring expressions at the `cpu` profile: why multimodal pretraining does not help (ViLBERT, arXiv
1908.02265, Section 4 and Table 1, RefCOCO+ row, where pretraining gains).

    C="--threads 1 --cache /tmp/refer_cache"
    .venv/bin/python studies/refer_diagnosis.py --stage curves $C   # 12-epoch val curves, both rows (~230 s)
    .venv/bin/python studies/refer_diagnosis.py --stage lr $C       # lr x2, x1 (reused), x0.5 (~440 s)
    .venv/bin/python studies/refer_diagnosis.py --stage probes $C   # what the region outputs carry (~200 s)
    .venv/bin/python studies/refer_diagnosis.py --stage extra $C    # needs `curves`; ~20 s

Seed 0, world seed 0, profile `cpu`, torch.set_num_threads(--threads, default 1: on a loaded 2-core machine two
threads ran 10-50x slower). The pretrained row starts from --init (default runs/pretrain-94bcdcebe309, the
seed-0 `cpu` pretraining run, read only); ViLBERT† from none. `--cache DIR` sets VILBERT_LITE_CACHE: the
measured numbers used /tmp/refer_cache, a private feature store (the project's gt store copied in, proposals
extracted there with the same extractor settings, so the run keys are the project's), because the shared
proposal store was being written by other processes at the time.

curves  `vilbert_lite.tasks.finetune("refer", init, train_overrides={"epochs": 12, "max_steps": None})`, the
        validation score (first 256 val items) after every epoch, the test score at the end. Run folders go
        under --root (default /tmp/refer_runs), so the project's runs/ is left alone; a finished run with the
        same config is reused. -> reports/refer_diagnosis/curves.json
lr      the same for both rows at lr = profile lr x 2 and x 0.5 (x 1 is `curves`, reused), and which lr each
        row picks on validation (best val over the curve). Diagnosis only: no protocol change, the committed
        Table 1 and the refer budget stay as they are. -> reports/refer_diagnosis/lr.json
probes  linear probes (sklearn logistic regression, fit on train scenes, scored on val scenes) for the colour,
        shape and size of the object a region covers, from (a) the input region features, (b) the pretrained
        backbone's visual-stream outputs, (c) a randomly initialised backbone's (ViLBERT†'s start), on
        ground-truth-box regions and on proposal regions (a proposal is labelled by the object it overlaps
        most, IoU >= 0.5; others are dropped); also fit on gt boxes, scored on proposals. Text input: a
        neutral caption ("a picture."), the same for all. -> reports/refer_diagnosis/probes.json
extra   before fine-tuning: accuracy of the arg-max region under a fresh vision_logit on both backbones;
        location-only rules (largest / smallest / median-area proposal); for the two 12-epoch models at the
        profile's lr: accuracy by expression form (colour, shape, size, relation, ...) on all val and test
        items, paired test disagreements, and what a relational expression's pick covers (the target, the
        anchor object named after "the", another object, none). -> reports/refer_diagnosis/extra.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vilbert_lite.data.regions import box_iou
from vilbert_lite.data.scene import COLORS, SHAPES, SIZES
from vilbert_lite.data.world import make_world
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.predict import load_run
from vilbert_lite.profiles import get_profile
from vilbert_lite.tasks import finetune, get_task, refer
from vilbert_lite.tasks.common import (
    ImageBank,
    Source,
    TaskModel,
    collate_pairs,
    load_backbone,
    model_folder,
    pair,
    tokenize,
    world_features,
)
from vilbert_lite.train.state import seed_everything

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "refer_diagnosis"
INIT = ROOT / "runs" / "pretrain-94bcdcebe309"
KEY = "eval_refer_accuracy"


def write(name: str, obj: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(json.dumps(obj, indent=1) + "\n")


def row_init(row: str, args) -> str | None:
    return str(args.init) if row == "vilbert" else None


def curve(row: str, lr_mult: float, args) -> dict:
    """One 12-epoch fine-tuning run: val after every epoch, test at the end."""
    lr = get_profile("cpu").finetune.lr * lr_mult
    t0 = time.perf_counter()
    m = finetune("refer", row_init(row, args), "cpu", 0, root=Path(args.root), progress=False,
                 train_overrides={"epochs": args.epochs, "max_steps": None, "lr": lr})  # fmt: skip
    vals = [round(h[KEY], 4) for h in m["history"]]
    losses = [round(h.get("loss", float("nan")), 4) for h in m["history"]]
    best = max(vals)
    r = {"row": row, "init": m["init"], "lr": lr, "lr_mult": lr_mult, "epochs": args.epochs, "val": vals,
         "train_loss": losses, "best_val": best, "best_epoch": vals.index(best) + 1, "final_val": vals[-1],
         "val_at_9": vals[8] if len(vals) >= 9 else None, "test_final": round(m["refer_accuracy"], 4),
         "train_loss_start": round(m.get("train_loss_start", float("nan")), 3),
         "train_loss_end": round(m.get("train_loss_end", float("nan")), 3),
         "run_wall_s": m["wall_time_s"], "this_call_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
    print(f"{row} lr x{lr_mult}: val {vals} test {r['test_final']} ({r['this_call_s']} s)", flush=True)
    return r


def stage_curves(args) -> None:
    res = {}
    for row in ("vilbert", "vilbert_dagger"):
        res[row] = curve(row, 1.0, args)
        write("curves.json", {"profile": "cpu", "seed": 0, "world_seed": 0, "threads": args.threads,
                              "val_items": 256, "rows": res})  # fmt: skip


def stage_lr(args) -> None:
    res = {row: {} for row in ("vilbert", "vilbert_dagger")}
    for mult in args.lr_mults:
        for row in res:
            res[row][str(mult)] = curve(row, mult, args)
            pick = {r: max(d.values(), key=lambda c: c["best_val"])["lr_mult"] for r, d in res.items() if d}
            write("lr.json", {"profile": "cpu", "seed": 0, "threads": args.threads, "rule": "best val over "
                              "the 12-epoch curve", "picked_lr_mult": pick, "rows": res,
                              "note": "diagnosis only; no protocol change, Table 1 unchanged"})  # fmt: skip


# ------------------------------------------------------------------------------------------------ probes
NEUTRAL = "a picture."  # the one text every image is paired with for the probes


def backbones(args) -> dict:
    """{"pretrained": the --init run's backbone, "random": ViLBERT†'s starting point (seed 0)}, eval mode."""
    config = ViLBertConfig.from_dict(json.loads((model_folder(args.init) / "config.json").read_text()))
    pre = load_backbone(args.init, config)
    seed_everything(0)  # as a seed-0 fine-tuning run does before building ViLBERT†
    rnd = load_backbone(None, config, text_from_bert=get_profile("cpu").init_text_from_bert)
    return {"pretrained": pre.eval(), "random": rnd.eval()}


def region_labels(world, image_id: str, boxes: np.ndarray) -> np.ndarray:
    """Per region (region 0 excluded): the obj_id of the object it overlaps most if IoU >= 0.5, else -1."""
    gt = world.gt_boxes(image_id)
    iou = box_iou(boxes, gt)  # (R, N)
    best = iou.argmax(1)
    return np.where(iou.max(1) >= 0.5, best, -1)


@torch.no_grad()
def region_table(world, bank, split: str, models: dict, text: str = NEUTRAL) -> dict:
    """Rows = labelled regions of the split's scenes: input features, each backbone's visual outputs,
    colour / shape / size labels, the 5-d location, the box area."""
    scenes = world.scenes[split]
    tok = tokenize([text], max_length=24)[0]
    cols = {k: [] for k in ("input", *models, "color", "shape", "size", "pos", "n_regions", "n_labelled")}
    for i in range(0, len(scenes), 64):
        chunk = scenes[i : i + 64]
        vis = [bank[sc.scene_id] for sc in chunk]
        batch = collate_pairs([{"pairs": [pair(tok, v)]} for v in vis])
        outs = {name: m(batch["input_ids"], batch["visual_feats"], batch["visual_pos"], batch["attention_mask"],
                        batch["visual_attention_mask"], batch["token_type_ids"]).sequence_output_v
                for name, m in models.items()}  # fmt: skip
        for j, (sc, v) in enumerate(zip(chunk, vis)):
            R = int(v["num_regions"])
            lab = region_labels(world, sc.scene_id, v["boxes"][1:R].numpy())
            keep = np.nonzero(lab >= 0)[0] + 1  # region indices (region 0 is the global one)
            cols["n_regions"].append(R - 1)
            cols["n_labelled"].append(len(keep))
            cols["input"].append(v["visual_feats"][keep].numpy())
            cols["pos"].append(v["visual_pos"][keep].numpy())
            for name in models:
                cols[name].append(outs[name][j, keep].numpy())
            for attr in ("color", "shape", "size"):
                cols[attr] += [getattr(sc.objects[lab[k - 1]], attr) for k in keep]
    return {
        k: (np.concatenate(v) if k in ("input", "pos", *models) else np.asarray(v)) for k, v in cols.items()
    }


def probe(train: dict, test: dict, feats: str, attr: str) -> float:
    """Logistic-regression accuracy (standardised features), fit on `train` rows, scored on `test` rows."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
    clf.fit(train[feats], train[attr])
    return round(float(clf.score(test[feats], test[attr])), 4)


def stage_probes(args) -> None:
    t0 = time.perf_counter()
    world = make_world("cpu", seed=0)
    models = backbones(args)
    tables = {}
    for kind in ("gt", "proposals"):
        store, _ = world_features(world, kind, splits=("train", "val"), progress=False)
        bank = ImageBank(store)
        tables[kind] = {s: region_table(world, bank, s, models) for s in ("train", "val")}
    feats = ("input", "pretrained", "random")
    res = {"text": NEUTRAL, "classifier": "StandardScaler + LogisticRegression(C=1, max_iter=3000)",
           "fit": "train scenes", "score": "val scenes", "label": "object with the largest IoU, IoU >= 0.5",
           "regions": {k: {s: {"labelled": int(len(t["color"])), "per_image": round(float(np.mean(t["n_regions"])), 2),
                                "labelled_per_image": round(float(np.mean(t["n_labelled"])), 2),
                                "mean_area": round(float(t["pos"][:, 4].mean()), 4)}
                           for s, t in v.items()} for k, v in tables.items()},
           "chance_majority": {}, "accuracy": {}}  # fmt: skip
    for attr in ("color", "shape", "size"):
        for kind in ("gt", "proposals"):
            vals, counts = np.unique(tables[kind]["val"][attr], return_counts=True)
            res["chance_majority"][f"{attr}/{kind}"] = round(float(counts.max() / counts.sum()), 4)
        for f in feats:
            for fit_on, score_on in (("gt", "gt"), ("proposals", "proposals"), ("gt", "proposals")):
                key = f"{attr}/{f}/fit_{fit_on}/score_{score_on}"
                res["accuracy"][key] = probe(tables[fit_on]["train"], tables[score_on]["val"], f, attr)
                print(key, res["accuracy"][key], flush=True)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    write("probes.json", res)


def expression_kind(text: str) -> str:
    """A referring expression's form: "relation" (names another object), else the attributes it names."""
    words = text.replace(".", "").split()
    if any(w in words for w in ("left", "right", "above", "below", "of", "next", "behind")):
        return "relation"
    named = [
        a for a, vocab in (("colour", COLORS), ("shape", SHAPES), ("size", SIZES)) if set(words) & set(vocab)
    ]
    return "+".join(named) or "other"


def finished_run(root: Path, init: str | None, lr: float) -> Path | None:
    """The refer run folder under root/finetune with this init and lr, if it finished (model.pt)."""
    want = "none" if init is None else str(Path(init).resolve())
    for d in sorted((root / "finetune").glob("refer-*")):
        cfg = json.loads((d / "run_config.json").read_text()) if (d / "run_config.json").exists() else {}
        if cfg.get("init") == want and abs(cfg["train"]["lr"] - lr) < 1e-12 and (d / "model.pt").exists():
            return d
    return None


@torch.no_grad()
def picks(model, items: list, collate, bs: int = 64) -> np.ndarray:
    """IoU of the arg-max proposal with the truth, per item (the task's own pick rule)."""
    out = []
    for i in range(0, len(items), bs):
        b = collate(items[i : i + bs])
        out.append(b["iou"].gather(1, refer._pick(model(b), b)[:, None]).squeeze(1))
    return torch.cat(out).numpy()


@torch.no_grad()
def pick_index(model, items: list, collate, bs: int = 64) -> np.ndarray:
    """Index of the arg-max proposal per item."""
    out = []
    for i in range(0, len(items), bs):
        b = collate(items[i : i + bs])
        out.append(refer._pick(model(b), b))
    return torch.cat(out).numpy()


def relation_errors(world, records, items, idx) -> dict:
    """Relational expressions ("the <target> <relation> the <anchor>"): what the arg-max proposal covers --
    the target, an object matching the anchor's words, another object, or no object (IoU < 0.5 with all)."""
    out = {"target": 0, "anchor": 0, "other_object": 0, "no_object": 0}
    for r, it, k in zip(records, items, idx):
        if expression_kind(r.text) != "relation":
            continue
        obj = int(region_labels(world, r.image_id, it["pairs"][0]["boxes"][k : k + 1].numpy())[0])
        anchor = set(r.text.rsplit(" the ", 1)[-1].split()) - {"object"}
        o = world.scene(r.image_id).objects[obj] if obj >= 0 else None
        out["no_object" if o is None else "target" if obj == r.obj_id else
            "anchor" if anchor <= {o.color, o.shape, o.size} else "other_object"] += 1  # fmt: skip
    return out


def stage_extra(args) -> None:
    t0 = time.perf_counter()
    world = make_world("cpu", seed=0)
    store, _ = world_features(world, "proposals", progress=False)
    spec = get_task("refer")
    data = spec.load(Source("synthetic", ImageBank(store), world=world))
    config = ViLBertConfig.from_dict(json.loads((model_folder(args.init) / "config.json").read_text()))
    res = {"split": "test", "n_test": len(data.test), "info": data.info, "before_finetuning": {},
           "location_rules": {}, "by_expression_kind": {}, "expression_kinds": {},
           "relation_picks": {}}  # fmt: skip
    # 1. the arg-max region of a fresh vision_logit on each backbone, as a seed-0 run builds it
    for name, init in (("pretrained", args.init), ("random", None)):
        seed_everything(0)
        bert = load_backbone(init, config, text_from_bert=get_profile("cpu").init_text_from_bert)
        model = TaskModel(bert, spec.forward, **spec.heads(bert.config, data, init)).eval()
        res["before_finetuning"][name] = {s: round(float((picks(model, getattr(data, s), data.collate) > 0.5)
                                                         .mean()), 4) for s in ("val", "test")}  # fmt: skip
    # 2. rules that read the 5-d location only (region 0 excluded)
    iou = [it["iou"][1:].numpy() for it in data.test]
    area = [it["pairs"][0]["visual_pos"][1:, 4].numpy() for it in data.test]
    rules = {"largest": lambda a: a.argmax(), "smallest": lambda a: a.argmin(),
             "median_area": lambda a: np.argsort(a)[len(a) // 2]}  # fmt: skip
    for rule, f in rules.items():
        res["location_rules"][rule] = round(float(np.mean([u[f(a)] > 0.5 for u, a in zip(iou, area)])), 4)
    res["location_rules"]["random_proposal"] = round(data.info["chance"], 4)
    # 3. accuracy by expression form (all val and test items), for the 12-epoch models at the profile's lr,
    # and the paired test disagreements (pretrained right / ViLBERT† wrong and the reverse)
    lr = get_profile("cpu").finetune.lr
    hits = {}
    for split in ("test", "val"):
        kinds = [expression_kind(r.text) for r in world.refexps(split)]
        res["expression_kinds"][split] = {k: kinds.count(k) for k in sorted(set(kinds))}
        for name, init in (("vilbert", args.init), ("vilbert_dagger", None)):
            run = finished_run(Path(args.root), init, lr)
            if run is None:
                continue
            model = load_run(run, device="cpu").model.eval()
            hit = picks(model, getattr(data, split), data.collate) > 0.5
            hits[split, name] = hit
            idx = pick_index(model, getattr(data, split), data.collate)
            res["relation_picks"].setdefault(split, {})[name] = relation_errors(
                world, world.refexps(split), getattr(data, split), idx
            )
            idx = {k: [i for i, x in enumerate(kinds) if x == k] for k in sorted(set(kinds))}
            res["by_expression_kind"].setdefault(split, {})[name] = {
                "run": str(run), "all": round(float(hit.mean()), 4),
                **{k: round(float(hit[i].mean()), 4) for k, i in idx.items()},
            }  # fmt: skip
    if ("test", "vilbert") in hits and ("test", "vilbert_dagger") in hits:
        p, d = hits["test", "vilbert"], hits["test", "vilbert_dagger"]
        res["test_disagreements"] = {
            "pretrained_only": int((p & ~d).sum()),
            "dagger_only": int((~p & d).sum()),
        }
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res, indent=1), flush=True)
    write("extra.json", res)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("curves", "lr", "probes", "extra"), required=True)
    ap.add_argument("--init", default=str(INIT))
    ap.add_argument("--root", default="/tmp/refer_runs")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr-mults", type=float, nargs="*", default=[2.0, 1.0, 0.5])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=None, help="a private feature-store root (sets VILBERT_LITE_CACHE)")
    args = ap.parse_args()
    if args.cache:
        os.environ["VILBERT_LITE_CACHE"] = args.cache
    torch.set_num_threads(args.threads)
    {"curves": stage_curves, "lr": stage_lr, "probes": stage_probes, "extra": stage_extra}[args.stage](args)


if __name__ == "__main__":
    main()
