"""Pretraining-side yardsticks of the Table 2 and Table 3 rows, read from the finished pretraining run folders.

    .venv/bin/python tools/pretrain_yardsticks.py            # cpu, every seed found in runs/
    .venv/bin/python tools/pretrain_yardsticks.py --profile smoke --root /tmp/runs

Each row's pretraining runs (the same folders notebooks 08-09 fine-tune from, found by their run_config.json:
Table 2 by the visual depth of the model, Table 3 by the corpus fraction of the default model) and their
held-out evaluation (eval.json, written at the end of every pretraining): alignment accuracy on held-out
captions, masked-word accuracy, accuracy on masked colour and shape words, steps and training wall time. Mean
and std over seeds. Prints a markdown table and writes reports/pretrain_yardsticks-<profile>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEPTH = ("num_hidden_layers", "v_num_hidden_layers", "v_biattention_id", "t_biattention_id")
KEYS = ("alignment_acc", "mlm_acc", "color_acc", "shape_acc", "steps", "train_wall_time_s")


def main() -> None:
    from vilbert_lite import experiments
    from vilbert_lite.config import ViLBertConfig
    from vilbert_lite.profiles import get_profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--root", default=str(ROOT / "runs"))
    ap.add_argument("--json", help="where to write (default reports/pretrain_yardsticks-<profile>.json)")
    args = ap.parse_args()
    base = ViLBertConfig.preset(get_profile(args.profile).model_preset).to_dict()
    found = []
    for folder in sorted(Path(args.root).glob("pretrain-*")):
        try:
            rc = json.loads((folder / "run_config.json").read_text())
            ev = json.loads((folder / "eval.json").read_text())
        except (OSError, ValueError):
            continue  # unfinished
        if rc.get("profile") == args.profile and rc.get("kind") == "pretrain":
            found.append((folder.name, rc, ev))

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
            for k in KEYS:
                v = np.array([ev[k] for _, ev in runs], dtype=float)
                cell[k] = [round(float(v.mean()), 4), round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4)]
            rows.append(cell)
    print("| table | row | seeds | " + " | ".join(KEYS) + " |")
    print("|---|---|---|" + "---|" * len(KEYS))
    for c in rows:
        vals = " | ".join(f"{c[k][0]:.3f} ± {c[k][1]:.3f}" if c[k][0] < 10 else f"{c[k][0]:.0f} ± {c[k][1]:.0f}"
                          for k in KEYS)  # fmt: skip
        print(f"| {c['table']} | {c['row']} | {c['seeds']} | {vals} |")
    out = Path(args.json or ROOT / "reports" / f"pretrain_yardsticks-{args.profile}.json")
    out.write_text(json.dumps({"command": "tools/pretrain_yardsticks.py " + " ".join(sys.argv[1:]),
                               "rows": rows}, indent=1) + "\n")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
