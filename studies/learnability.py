"""How hard is caption-image alignment in the synthetic world, for learners much simpler than ViLBERT?

    .venv/bin/python studies/learnability.py                 # cpu world, 1,500 steps -> reports/learnability.json
    .venv/bin/python studies/learnability.py --steps 300 --profile smoke --out /tmp/l.json

The pretraining alignment task (REFERENCE §3: half the captions swapped for a random one) is scored three ways
on the held-out "val" captions, with the same swapping:

- `rule`: no learning. Match iff every colour, shape and background word of the caption is present in the image's
  ground truth (synonyms and plurals mapped). It shows what a presence check can reach without binding colours to
  shapes.
- `cnn_probe_acc`: how well each object's colour, shape and size can be read linearly from its CNN region feature
  (held-out 20% of the objects; the closed-form ridge probe of notebook 03, `visual_tokens.linear_probe`).
- `lookup_cnn` / `lookup_ideal`: a learner built for the task. Each token looks for its best-matching region, by a
  dot product of a learned word vector with a linear map of the region; a learned gate says which words must be
  found; the caption matches unless a gated word finds no region. `cnn` gives it the region features that ViLBERT
  sees (EfficientNet-Lite0 + RoI pooling, standardised). `ideal` gives it the ground-truth colour and shape of each
  object, one-hot.

Both learners train with AdamW, batch 64, on the pretraining captions; their held-out accuracy after a given number
of steps is a yardstick for what ViLBERT, trained from scratch at the same batch and step count, can be expected to
reach.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vilbert_lite.data.scene import COLORS, SHAPES
from vilbert_lite.data.texts import PLURAL, SYNONYMS
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.data.world import make_world
from vilbert_lite.pretrain.data import CaptionImageDataset, synthetic_data
from vilbert_lite.pretrain.objectives import swap_captions
from vilbert_lite.viz.visual_tokens import linear_probe

SHAPE_WORD = {s: s for s in SHAPES} | {p: s for s, p in PLURAL.items()}
SHAPE_WORD |= {w: s for s, ws in SYNONYMS.items() for w in ws if " " not in w}
VAL_SEED = 1  # the held-out pairs: the rule and both learners are scored on the same swaps
BATCH = 64  # as the `cpu` profile's pretraining


def swap(ids: torch.Tensor, image: torch.Tensor, g: torch.Generator):
    """Pretraining's caption swap (`objectives.swap_captions`) -> (swapped ids, source caption index, label 1 = match)."""
    b = swap_captions({"input_ids": ids, "image_index": image, "text_index": torch.arange(len(ids))}, g)
    return b["input_ids"], b["text_index"], b["alignment_label"]


def rule_accuracy(texts: list[str], scenes: list, src: torch.Tensor, label: torch.Tensor) -> float:
    """Accuracy of the presence rule on caption src[i] against scenes[i], whose true answer is label[i] (1 = match)."""
    right = 0
    for i, scene in enumerate(scenes):
        cap = texts[src[i]]
        words = re.findall(r"[a-z]+", cap.lower())
        bg = re.search(r"on an? (\w+) background", cap)
        ok = (
            {w for w in words if w in COLORS and not (bg and w == bg.group(1) and words.count(w) == 1)}
            <= {o.color for o in scene.objects}
            and {SHAPE_WORD[w] for w in words if w in SHAPE_WORD} <= {o.shape for o in scene.objects}
            and (not bg or bg.group(1) == scene.background)
        )
        right += ok == bool(label[i])
    return right / len(texts)


def probe_regions(cnn, rmask, objects) -> dict[str, float]:
    """Held-out accuracy (last 20% of the objects) of notebook 03's linear probe for each attribute."""
    x, split = cnn[rmask], int(0.8 * int(rmask.sum()))  # (N, F), rows in the order of `objects`
    out = {}
    for attr in ("color", "shape", "size"):
        y = [getattr(o, attr) for o in objects]
        out[attr] = round(linear_probe(x[:split], y[:split], x[split:], y[split:]), 4)
        print(f"linear probe on the CNN region feature: {attr} {out[attr]:.3f}")
    return out


class Lookup(nn.Module):
    """match logit = c0 - sum_t gate_t * softplus(c1 - max_r <E w_t, P v_r>)."""

    def __init__(self, vocab: int, feat: int, d: int = 32):
        super().__init__()
        self.word, self.region = nn.Embedding(vocab, d), nn.Linear(feat, d)
        self.gate, self.c = nn.Embedding(vocab, 1), nn.Parameter(torch.zeros(2))

    def forward(self, ids, feats, rmask):  # ids (B, T), feats (B, R, F), rmask (B, R) bool
        e, p = self.word(ids), self.region(feats)
        score = torch.einsum("btd,brd->btr", e, p) / e.shape[-1] ** 0.5
        found = score.masked_fill(~rmask[:, None], -1e4).max(-1).values  # (B, T): best region per token
        gate = torch.sigmoid(self.gate(ids).squeeze(-1)) * (ids > 0)
        return self.c[0] - (gate * F.softplus(self.c[1] - found)).sum(1)


def train_lookup(kind, ds, val, feats, rmask, steps, lr, seed, vocab, every=100) -> list[dict]:
    """ds = (ids (N, T), image (N,)); val = the held-out pairs, already swapped: (ids, image, label)."""
    torch.manual_seed(seed)
    model = Lookup(vocab, feats.shape[-1])
    opt = torch.optim.AdamW(model.parameters(), lr)
    g, curve, step = torch.Generator().manual_seed(seed), [], 0
    (ids, image), (vids, vimage, vlabel) = ds, val
    while step < steps:
        perm = torch.randperm(len(ids), generator=g)
        for i in range(0, len(perm) - BATCH + 1, BATCH):
            idx = perm[i : i + BATCH]
            x, _, label = swap(ids[idx], image[idx], g)
            out = model(x, feats[image[idx]], rmask[image[idx]])
            loss = F.binary_cross_entropy_with_logits(out, label.float())
            loss.backward()
            opt.step()
            opt.zero_grad()
            step += 1
            if step % every == 0 or step == steps:
                with torch.no_grad():
                    acc = (
                        ((model(vids, feats[vimage], rmask[vimage]) > 0).long() == vlabel)
                        .float()
                        .mean()
                        .item()
                    )
                curve.append({"step": step, "val_alignment_acc": round(acc, 4)})
                print(f"{kind} step {step}: held-out alignment {acc:.3f}", flush=True)
            if step >= steps:
                break
    return curve


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val", type=int, default=300, help="held-out captions (the first N), as eval.json uses")
    ap.add_argument("--out", default="reports/learnability.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    tok, world = get_tokenizer(), make_world(args.profile)
    train, val_caps, visual, _, _ = synthetic_data(args.profile, progress=False)
    val_caps = val_caps[: args.val]
    scenes = {s.scene_id: s for split in ("pretrain", "val") for s in world.scenes[split]}
    keys = list(visual)
    index = {k: i for i, k in enumerate(keys)}
    R = max(int(v["num_regions"]) for v in visual.values()) - 1  # without the global region
    cnn = torch.zeros(len(keys), R, next(iter(visual.values()))["visual_feats"].shape[1])
    ideal = torch.zeros(len(keys), R, len(COLORS) + len(SHAPES))
    rmask = torch.zeros(len(keys), R, dtype=torch.bool)
    colors, shapes = list(COLORS), list(SHAPES)
    for k, v in visual.items():
        f = v["visual_feats"][1:]  # regions 1.. are the ground-truth objects, in object order
        cnn[index[k], : len(f)], rmask[index[k], : len(f)] = f, True
        for j, o in enumerate(scenes[k].objects[:R]):
            ideal[index[k], j, colors.index(o.color)] = 1
            ideal[index[k], j, len(colors) + shapes.index(o.shape)] = 1
    mu, sd = cnn[rmask].mean(0), cnn[rmask].std(0) + 1e-3
    cnn = (cnn - mu) / sd * rmask[..., None]

    def pack(caps):
        d = CaptionImageDataset(caps, visual, tok)
        ids = torch.zeros(len(d.ids), max(len(x) for x in d.ids), dtype=torch.long)
        for i, x in enumerate(d.ids):
            ids[i, : len(x)] = torch.as_tensor(x)
        return ids, torch.tensor([index[d.image_ids[j]] for j in d.image_index])

    ds, (vids, vimage) = pack(train), pack(val_caps)
    vids, vsrc, vlabel = swap(vids, vimage, torch.Generator().manual_seed(VAL_SEED))
    val_texts, val_scenes = [c.text for c in val_caps], [scenes[c.image_id] for c in val_caps]
    out = {
        "profile": args.profile,
        "steps": args.steps,
        "batch_size": BATCH,
        "lr": args.lr,
        "seed": args.seed,
        "train_captions": len(train),
        "val_captions": len(val_caps),
        "rule_val_alignment_acc": round(rule_accuracy(val_texts, val_scenes, vsrc, vlabel), 4),
    }
    print(f"presence rule: held-out alignment {out['rule_val_alignment_acc']:.3f}", flush=True)
    objects = [o for k in keys for o in scenes[k].objects[:R]]  # the rows of cnn[rmask]
    assert len(objects) == int(rmask.sum()), "regions 1.. should be the ground-truth objects, one each"
    out["cnn_probe_acc"] = probe_regions(cnn, rmask, objects)
    for kind, feats in (("lookup_ideal", ideal), ("lookup_cnn", cnn)):
        out[kind] = train_lookup(
            kind, ds, (vids, vimage, vlabel), feats, rmask, args.steps, args.lr, args.seed, len(tok)
        )
    out["wall_s"] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
