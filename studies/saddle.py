"""Where does ViLBERT's alignment saddle come from? Alignment-only training of `mini` on the `cpu` world (optionally
with world overrides), one modification at a time, in a plain AdamW loop on the real batches.

    .venv/bin/python studies/saddle.py [--steps 200] [--world '{"object_counts": [4, 3, 2, 1, 1, 0.5, 0.5, 0.5]}']
        [--variants base meantext nodrop init05 ...]       -> reports/saddle.json

Every variant uses the same captions, region features (the default extractor), swaps (make_pretraining_batch,
swap 0.5) and AdamW (lr 1e-3, betas 0.9/0.98, constant lr after 20 warm-up steps); it reports the training
alignment accuracy over each window of 50 steps. Variants:
  base       the `mini` preset as it is
  init05     initializer_range 0.05 (both streams)
  nodrop     all dropout 0
  meantext   DIAGNOSTIC (not a recipe): t_pooler reads the mean of the text tokens instead of [CLS]
  meanimg    DIAGNOSTIC: v_pooler reads the mean of the real regions instead of the IMG region
  pool1      pooler_initializer_range 0.1
  sum        fusion_method "sum" (the official alternative to "mul")
  fastfuse   the three factors of the product fusion (t_pooler, v_pooler, alignment head) at 10x the lr
  init05fastfuse   both
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vilbert_lite.data.collate import make_collate
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.model.heads import ViLBertForPreTraining
from vilbert_lite.pretrain.data import CaptionImageDataset, synthetic_data
from vilbert_lite.pretrain.objectives import (
    aligned_prob,
    alignment_loss,
    make_pretraining_batch,
    special_ids,
)
from vilbert_lite.pretrain.run import resolve_configs

ROOT = Path(__file__).resolve().parents[1]

CONFIG = {"init05": {"initializer_range": 0.05, "v_initializer_range": 0.05},
          "nodrop": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                     "v_hidden_dropout_prob": 0.0, "v_attention_probs_dropout_prob": 0.0},
          "pool1": {"pooler_initializer_range": 0.1}, "sum": {"fusion_method": "sum"},
          "init05fastfuse": {"initializer_range": 0.05, "v_initializer_range": 0.05}}  # fmt: skip
FUSION = (
    "bert.t_pooler.",
    "bert.v_pooler.",
    "cls.bi_seq_relationship.",
)  # the product fusion's three factors


def main() -> None:

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--world", default=None)
    ap.add_argument("--variants", nargs="*", default=["base", "meantext", "meanimg", "nodrop", "init05"])
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    world = json.loads(a.world) if a.world else None
    prof, config, _ = resolve_configs("cpu", 0, world_overrides=world)
    train, _, visual, _, _ = synthetic_data("cpu", 0, progress=False, sizes=prof.world)
    tok = get_tokenizer()
    ds, collate = CaptionImageDataset(train, visual, tok), make_collate(tok.pad_token_id)
    v0 = next(iter(visual.values()))
    config = config.replace(v_feature_size=v0["visual_feats"].shape[1], v_target_size=v0["cls_prob"].shape[1])
    out = {"world": world, "steps": a.steps, "variants": {}}
    for name in a.variants:
        torch.manual_seed(0)
        model = ViLBertForPreTraining(config.replace(**CONFIG.get(name, {}))).train()
        core = model.bert
        if name in ("meantext", "meanimg"):  # diagnostic: pool a mean instead of the first position
            pooler = core.t_pooler if name == "meantext" else core.v_pooler
            key = "attention_mask" if name == "meantext" else "visual_attention_mask"
            state = {}

            def pool_mean(x, pooler=pooler, state=state, key=key):
                m = state[key].unsqueeze(-1).to(x.dtype)
                return torch.relu(pooler.dense((x * m).sum(1) / m.sum(1)))

            pooler.forward = pool_mean
        fast = "fastfuse" in name
        groups = [{"params": [p for n, p in model.named_parameters() if n.startswith(FUSION) == f],
                   "scale": 10.0 if f and fast else 1.0} for f in (False, True)]  # fmt: skip
        opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
        g = torch.Generator().manual_seed(0)
        accs, t0, step = [], time.perf_counter(), 0
        while step < a.steps:
            perm = torch.randperm(len(ds), generator=g)
            for i in range(0, len(ds) - 63, 64):
                b = make_pretraining_batch(collate([ds[int(j)] for j in perm[i : i + 64]]), g, special_ids(tok),
                                           config.vocab_size, 0, 0.5, 0.0, 0.0)  # fmt: skip
                if name in ("meantext", "meanimg"):
                    state.update(
                        attention_mask=b["attention_mask"], visual_attention_mask=b["visual_attention_mask"]
                    )
                z = torch.zeros_like(b["input_ids"], dtype=torch.bool)
                logits = model(b["input_ids"], b["visual_feats"], b["visual_pos"], b["attention_mask"],
                               b["visual_attention_mask"], b["token_type_ids"], lm_positions=z,
                               region_positions=torch.zeros_like(b["visual_attention_mask"], dtype=torch.bool)
                               ).seq_relationship_logits  # fmt: skip
                loss = alignment_loss(logits, b["alignment_label"])
                for grp in opt.param_groups:
                    grp["lr"] = 1e-3 * grp["scale"] * min(1.0, (step + 1) / 20)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                accs.append(
                    float(((aligned_prob(logits) > 0.5).long() == b["alignment_label"]).float().mean())
                )
                step += 1
                if step >= a.steps:
                    break
        windows = [round(sum(accs[k : k + 50]) / len(accs[k : k + 50]), 3) for k in range(0, len(accs), 50)]
        out["variants"][name] = {
            "train_acc_per_50_steps": windows,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(name, windows, flush=True)
    (ROOT / "reports" / "saddle.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
