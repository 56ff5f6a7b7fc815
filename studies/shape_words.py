"""Where masked shape words go wrong: held-out shape-word accuracy of pretraining runs, split by what the
caption around the word gives away.

    .venv/bin/python studies/shape_words.py RUN [RUN ...]     # pretraining run folders of the `cpu` world
    -> one JSON line per run: accuracy (exact word) and shape-name accuracy (any name of the right shape) of all
       shape words masked at once, by caption kind and by how many objects the scene has

Caption kinds, read off the text: `colour+shape` (a colour word right before the shape word: "a red circle"),
`shape only` (no colour before it: "two circles and a star", "a circle near ..."). Same masks and definitions
as `pretrain.evaluate_pretraining`'s shape words; a text-only run (its images blanked) is scored the same way.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from vilbert_lite.data.collate import collate_examples, make_collate
from vilbert_lite.data.scene import COLORS
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.data.world import make_world
from vilbert_lite.pretrain.data import MAX_SEQ_LENGTH, CaptionImageDataset, synthetic_data
from vilbert_lite.pretrain.evaluate import _vilbert_forward, shape_name_groups
from vilbert_lite.pretrain.objectives import special_ids
from vilbert_lite.pretrain.run import load_pretrained

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok = get_tokenizer()
    mask_id, special = special_ids(tok)
    world = make_world("cpu", seed=0)
    _, val_caps, visual, _, _ = synthetic_data("cpu", progress=False)
    colour_ids = set(tok.convert_tokens_to_ids(list(COLORS)))
    for run in map(Path, a.runs):
        cfg = json.loads((run / "run_config.json").read_text())
        text_only = cfg["kind"].startswith("pretrain_text_only")
        ds = CaptionImageDataset(val_caps, visual, tok, MAX_SEQ_LENGTH, blank_images=text_only)
        model = load_pretrained(run).eval()
        groups = shape_name_groups(tok, model.config.vocab_size)
        collate = make_collate(pad_id=tok.pad_token_id)
        tot = defaultdict(lambda: [0, 0, 0])  # key -> [exact right, name right, count]
        with torch.no_grad():
            for start in range(0, len(ds), 64):
                idx = list(range(start, min(len(ds), start + 64)))
                pos = collate([ds[i] for i in idx])
                ids = pos["input_ids"]
                kinds = collate_examples([{"input_ids": ds.kinds[i]} for i in idx])["input_ids"]
                where = (kinds == 2) & pos["attention_mask"].bool() & ~torch.isin(ids, torch.tensor(special))
                if not where.any():
                    continue
                out = _vilbert_forward(model, {**pos, "input_ids": ids.masked_fill(where, mask_id)}, where)
                pred = out.prediction_logits_t.argmax(-1)
                target = ids[where]
                exact = pred == target
                name = exact | ((groups[pred] == groups[target]) & (groups[target] >= 0))
                rows, cols = where.nonzero(as_tuple=True)
                for k, (r, c) in enumerate(zip(rows.tolist(), cols.tolist())):
                    scene = world.scene(ds.captions[idx[r]].image_id)
                    kind = "colour+shape" if int(ids[r, c - 1]) in colour_ids else "shape only"
                    n = len(scene.objects)
                    for key in ("all", f"kind={kind}", f"objects={n if n < 4 else '4+'}"):
                        t = tot[key]
                        t[0] += int(exact[k])
                        t[1] += int(name[k])
                        t[2] += 1
        print(json.dumps({"run": run.name, "text_only": text_only,
                          **{k: {"exact": round(v[0] / v[2], 3), "name": round(v[1] / v[2], 3), "n": v[2]}
                             for k, v in sorted(tot.items())}}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
