"""Solutions to the exercises of notebook 04 · Pretraining objectives (seconds once the features are cached).

python solutions/04_pretraining_objectives.py [--profile cpu]
"""

from __future__ import annotations

import argparse
import math

import torch

from vilbert_lite import ViLBertForPreTraining
from vilbert_lite.data.collate import make_collate
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.pretrain.data import CaptionImageDataset, synthetic_data
from vilbert_lite.pretrain.objectives import make_pretraining_batch, pretraining_loss
from vilbert_lite.pretrain.run import resolve_pretraining
from vilbert_lite.viz import pretrain as pv


def setup(profile: str, seed: int = 0, batch_size: int = 16):
    tok = get_tokenizer()
    train_caps, _, visual, _, _ = synthetic_data(profile, world_seed=0, progress=False)
    dataset = CaptionImageDataset(train_caps, visual, tok)
    _, config, tcfg, weights, _ = resolve_pretraining(profile, seed)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=g)[:batch_size].tolist()
    before = make_collate(tok.pad_token_id)([dataset[i] for i in idx])
    after = make_pretraining_batch(before, g, tok, tok.vocab_size)
    config = config.replace(
        v_feature_size=before["visual_feats"].shape[-1], v_target_size=before["cls_prob"].shape[-1]
    )
    torch.manual_seed(seed)
    return tok, dataset, config, tcfg, weights, before, after, ViLBertForPreTraining(config).eval()


def exercise_1(tok, dataset, tcfg, profile: str) -> None:
    n_batches = 20 if profile == "smoke" else 200
    stats = pv.masking_statistics(
        dataset, tok, tok.vocab_size, n_batches=n_batches, batch_size=tcfg.batch_size, seed=0
    )
    row = stats[[("random token" in r) for r in stats.index.get_level_values("rule")]].iloc[0]
    n, share = int(row["out of"]), float(row["measured"])
    se = math.sqrt(0.1 * 0.9 / n)
    print(
        f"exercise 1: random-token share {100 * share:.2f} % of n={n} chosen tokens; standard error "
        f"{100 * se:.2f} %; within two standard errors of 10 %: {abs(share - 0.1) <= 2 * se}"
    )
    need = 0.1 * 0.9 / 0.001**2  # chosen tokens for a standard error of 0.1 %
    print(
        f"exercise 1: ±0.1 % needs ~{need:,.0f} chosen tokens, ~{math.ceil(n_batches * need / n):,} batches like these"
    )


def exercise_2(model0, after, weights) -> None:
    for objective in (0, 1):
        keep = (
            after["alignment_label"].bool()[:, None]
            if objective
            else torch.ones_like(after["alignment_label"].bool())[:, None]
        )
        n_tok = int(((after["lm_labels"] != -1) & keep).sum())
        n_reg = int(((after["region_labels"] == 1) & keep).sum())
        with torch.no_grad():
            _, logs = pretraining_loss(model0, after, weights, objective=objective)
        print(
            f"exercise 2: objective {objective}: token head on {n_tok} positions, region head on {n_reg}; "
            f"mlm {logs['mlm']:.3f}, region {logs['region']:.3f}, align {logs['align']:.3f}"
        )
    print(
        "exercise 2: objective 1 drops the masked losses of mismatched pairs; the alignment loss is unchanged"
    )


def exercise_3(model0, after, weights) -> None:
    with torch.no_grad():
        total, logs = pretraining_loss(model0, after, {**weights, "region": 0})
    print(
        f"exercise 3: region weight 0: the region head runs at no position, logged region loss {logs['region']}, "
        f"total {float(total):.3f} = mlm {logs['mlm']:.3f} + {weights['align']:g} x align {logs['align']:.3f}"
    )


def exercise_4(tok, config, before, weights) -> None:
    g = torch.Generator().manual_seed(0)
    b = make_pretraining_batch(before, g, tok, tok.vocab_size, visual_target=1)
    cfg = config.replace(visual_target=1, v_target_size=before["visual_feats"].shape[-1])
    torch.manual_seed(0)
    model = ViLBertForPreTraining(cfg).eval()
    reg_pos = b["region_labels"] == 1
    with torch.no_grad():
        out = model(
            b["input_ids"],
            b["visual_feats"],
            b["visual_pos"],
            b["attention_mask"],
            b["visual_attention_mask"],
            b["token_type_ids"],
            lm_positions=b["lm_labels"] != -1,
            region_positions=reg_pos,
        )
        pred, target = out.prediction_logits_v, b["region_targets"][reg_pos]
        mse = ((pred - target) ** 2).mean(-1).mean()
        _, logs = pretraining_loss(model, b, weights)
    print(
        f"exercise 4: feature regression on {int(reg_pos.sum())} masked regions: by hand {float(mse):.5f}, "
        f"pretraining_loss {logs['region']:.5f}"
    )


def exercise_5(tok, model0, before, weights) -> None:
    b = make_pretraining_batch(before, torch.Generator().manual_seed(0), tok, tok.vocab_size, mask_prob=0.0)
    model0.train()
    total, logs = pretraining_loss(model0, b, weights)
    total.backward()
    finite = all(torch.isfinite(p.grad).all() for p in model0.parameters() if p.grad is not None)
    model0.zero_grad(set_to_none=True)
    model0.eval()
    print(
        f"exercise 5: no token chosen: mlm loss {logs['mlm']}, total finite {bool(torch.isfinite(total))}, "
        f"gradients finite {finite}: the token loss is guarded like the region loss"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "gpu"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    tok, dataset, config, tcfg, weights, before, after, model0 = setup(args.profile)
    print(f"profile={args.profile}: loss weights {weights}")
    exercise_1(tok, dataset, tcfg, args.profile)
    exercise_2(model0, after, weights)
    exercise_3(model0, after, weights)
    exercise_4(tok, config, before, weights)
    exercise_5(tok, model0, before, weights)


if __name__ == "__main__":
    main()
