"""Pretraining-side yardsticks of the Table 2 and Table 3 rows, read from the finished pretraining run folders.

    .venv/bin/python studies/pretrain_yardsticks.py            # cpu, every seed found in runs/ ($VILBERT_LITE_RUNS)
    .venv/bin/python studies/pretrain_yardsticks.py --profile smoke --root /tmp/runs

Each row's pretraining runs (the same folders notebooks 08-09 fine-tune from, found by their run_config.json:
Table 2 by the visual depth of the model, Table 3 by the corpus fraction of the default model) and their
held-out evaluation (eval.json, written at the end of every pretraining): alignment accuracy on held-out
captions, masked-word accuracy, accuracy on masked colour and shape words, steps and training wall time. Mean
and std over seeds. Prints a markdown table and writes reports/pretrain_yardsticks-<profile>.json.

The text-only twins of the default model (`pretrain_text_only-*` folders: the same captions with every image
blanked, notebook 04's baseline) form a row of their own, and `image_gain` pairs them with the default row by
seed: what the image adds on masked colour and shape words (the grounding target: +0.25 each), mean, std
and 95% t-interval over the seeds that have both runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.profiles import get_profile
from vilbert_lite.repro import experiments
from vilbert_lite.repro.reports import t_quantile
from vilbert_lite.runs import runs_root

ROOT = Path(__file__).resolve().parents[1]
DEPTH = ("num_hidden_layers", "v_num_hidden_layers", "v_biattention_id", "t_biattention_id")
KEYS = ("alignment_acc", "mlm_acc", "color_acc", "shape_acc", "steps", "train_wall_time_s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument(
        "--root", default=None, help="runs folder (default: the project's runs/, $VILBERT_LITE_RUNS)"
    )
    ap.add_argument("--json", help="where to write (default reports/pretrain_yardsticks-<profile>.json)")
    args = ap.parse_args()
    base = ViLBertConfig.preset(get_profile(args.profile).model_preset).to_dict()
    found = []
    text_only = []  # (seed, folder name, eval) of the default model's text-only twins
    for folder in sorted(Path(args.root or runs_root()).glob("pretrain*-*")):
        try:
            rc = json.loads((folder / "run_config.json").read_text())
            ev = json.loads((folder / "eval.json").read_text())
        except (OSError, ValueError):
            continue  # unfinished
        if rc.get("profile") != args.profile:
            continue
        if rc.get("kind") == "pretrain":
            found.append((folder.name, rc, ev))
        elif rc.get("kind") == "pretrain_text_only" and rc.get("corpus_fraction", 1.0) == 1.0:
            text_only.append((rc["seed"], folder.name, ev))

    def same_model(rc: dict, overrides: dict) -> bool:  # the depth fields (the features set v_feature_size)
        want = {k: base[k] for k in DEPTH} | overrides
        return all(rc["model"].get(k) == v for k, v in want.items())

    rows = []
    for table in ("table2", "table3"):
        for row, kw in experiments.table_cells(table, args.profile):
            if table == "table3" and not kw["pretrained"]:
                continue  # 0 %: ViLBERT†, no pretraining run
            over = kw.get("config_overrides", {})
            frac = kw.get("fraction", 1.0)
            runs = [(n, ev) for n, rc, ev in found if same_model(rc, over) and rc["corpus_fraction"] == frac]
            if not runs:
                continue
            cell = {"table": table, "row": row, "seeds": len(runs), "runs": [n for n, _ in runs]}
            rows.append(cell | mean_std([ev for _, ev in runs]))
    default = [(n, rc, ev) for n, rc, ev in found if same_model(rc, {}) and rc["corpus_fraction"] == 1.0]
    steps = {ev.get("steps") for _, _, ev in default}
    # twins of the table runs (their step count), not text-only runs of other recipes
    text_only = [t for t in text_only if t[2].get("steps") in steps]
    if text_only:
        cell = {
            "table": "text-only",
            "row": 1.0,
            "seeds": len(text_only),
            "runs": [n for _, n, _ in text_only],
        }
        rows.append(cell | mean_std([ev for _, _, ev in text_only]))
    gain = image_gain(default, text_only)
    print("| table | row | seeds | " + " | ".join(KEYS) + " |")
    print("|---|---|---|" + "---|" * len(KEYS))
    for c in rows:
        vals = " | ".join(f"{c[k][0]:.3f} ± {c[k][1]:.3f}" if c[k][0] < 10 else f"{c[k][0]:.0f} ± {c[k][1]:.0f}"
                          for k in KEYS)  # fmt: skip
        print(f"| {c['table']} | {c['row']} | {c['seeds']} | {vals} |")
    for k, g in gain.items():
        ci = "" if g["ci95"] is None else f" [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]"
        print(f"image adds on {k}: {g['mean']:+.3f} ± {g['std']:.3f}{ci} over seeds {g['seeds']}")
    out = Path(args.json or ROOT / "reports" / f"pretrain_yardsticks-{args.profile}.json")
    out.write_text(json.dumps({"command": "studies/pretrain_yardsticks.py " + " ".join(sys.argv[1:]),
                               "rows": rows, "image_gain": gain}, indent=1) + "\n")  # fmt: skip
    print(f"wrote {out}")


def mean_std(evals: list[dict]) -> dict:
    """{key: [mean, std over seeds]} of each of KEYS over a row's eval.json dicts (std 0 for one seed)."""
    out = {}
    for k in KEYS:
        v = np.array([ev.get(k, np.nan) for ev in evals], dtype=float)
        out[k] = [round(float(v.mean()), 4), round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4)]
    return out


def image_gain(default: list, text_only: list) -> dict:
    """{"color_acc" | "shape_acc": {"seeds", "per_seed", "mean", "std", "ci95"}}: the default model's held-out
    accuracy minus its text-only twin's, paired by seed (seeds with both runs only); {} when none pair up."""
    with_image = {rc["seed"]: ev for _, rc, ev in default}
    seeds = sorted(set(with_image) & {s for s, _, _ in text_only})
    blind = {s: ev for s, _, ev in text_only}
    out = {}
    for k in ("color_acc", "shape_acc") if seeds else ():
        d = np.array([with_image[s][k] - blind[s][k] for s in seeds], dtype=float)
        sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
        half = t_quantile(len(d)) * sd / np.sqrt(len(d)) if len(d) > 1 else None
        out[k] = {"seeds": seeds, "per_seed": [round(float(x), 4) for x in d], "mean": round(float(d.mean()), 4),
                  "std": round(sd, 4),
                  "ci95": None if half is None else [round(float(d.mean()) + x, 4) for x in (-half, half)]}  # fmt: skip
    return out


if __name__ == "__main__":
    main()
