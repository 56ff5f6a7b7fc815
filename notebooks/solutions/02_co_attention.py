"""Solutions to the exercises of notebook 02 · Co-attention (seconds; exercise 5 reads notebook 04b's run if present).

python solutions/02_co_attention.py [--profile cpu]
"""

from __future__ import annotations

import argparse

import torch

from vilbert_lite import ViLBertConfig, ViLBertModel, runs
from vilbert_lite.model.vilbert import CoAttentionLayer, layer_schedule
from vilbert_lite.viz import attention as viz


def exercise_1() -> None:
    tiny = ViLBertConfig.preset("tiny")
    att = CoAttentionLayer(tiny).biattention.eval()
    T, R = 5, 4
    H_W, H_V = torch.randn(1, T, tiny.hidden_size), torch.randn(1, R, tiny.v_hidden_size)
    v_mask = torch.zeros(1, 1, 1, R)
    v_mask[..., 3] = -10000.0  # hide region 3 as a key
    with torch.no_grad():
        _, _, t2v, v2t = att(H_V, None, H_W, None, need_weights=True)
        _, _, t2v_m, v2t_m = att(H_V, v_mask, H_W, None, need_weights=True)
    print(
        f"exercise 1: t2v changed: {not torch.allclose(t2v, t2v_m)} (weight on region 3 now "
        f"{t2v_m[..., 3].max().item():.1e}); v2t changed: {not torch.allclose(v2t, v2t_m)}"
    )
    print("exercise 1: the mask acts on keys; only t2v has regions as keys (words look at regions)")


def exercise_2() -> None:
    model = ViLBertModel(ViLBertConfig.preset("base"))
    count = {"co-attention": 0, "visual stream": 0, "text stream": 0, "embeddings and rest": 0}
    for name, p in model.named_parameters():
        key = ("co-attention" if ".c_layer." in name else "visual stream" if ".v_layer." in name
               else "text stream" if "encoder.layer." in name else "embeddings and rest")  # fmt: skip
        count[key] += p.numel()
    total = sum(count.values())
    for k, n in count.items():
        print(f"exercise 2: base preset, {k:20s} {n / 1e6:6.1f} M parameters ({100 * n / total:.0f} %)")


def exercise_3() -> None:
    cfg = ViLBertConfig.preset("small", fixed_t_layer=2)
    frozen = [f"{kind.upper()}{i}" for kind, i, fixed in layer_schedule(cfg) if fixed]
    print(
        f"exercise 3: fixed_t_layer=2 on `small`: order {viz.schedule_text(cfg)}; frozen (hatched): {frozen}"
    )
    print("exercise 3: the hatched layers run under no_grad: they keep BERT's weights while the rest trains")


def exercise_4() -> None:
    cfg = ViLBertConfig.preset("tiny", t_biattention_id=[0, 1], v_biattention_id=[0, 1])
    print(
        f"exercise 4: order {viz.schedule_text(cfg)}: the first co-attention sees the word embeddings and the "
        "region embeddings, before any layer of either stream"
    )


def exercise_5(profile: str) -> None:
    from vilbert_lite.pretrain.run import plan_pretrain

    run, _ = plan_pretrain(profile, 0)
    if not runs.is_done(run):
        print(
            f"exercise 5: no pretraining run for profile {profile!r} in {run.parent}: run notebook 04b first"
        )
        return
    from vilbert_lite.data.collate import collate_examples
    from vilbert_lite.data.tokenize import get_tokenizer
    from vilbert_lite.data.world import make_world
    from vilbert_lite.pretrain.data import CaptionImageDataset, synthetic_data
    from vilbert_lite.pretrain.run import load_pretrained

    tok, world = get_tokenizer(), make_world(profile, seed=0)
    _, val_caps, visual, _, _ = synthetic_data(profile, progress=False)
    ds = CaptionImageDataset(val_caps, visual, tok)
    model = load_pretrained(run).eval()
    on, base = [], []
    for i in range(min(len(ds), 100)):
        scene = world.scene(ds.captions[i].image_id)
        item = ds[i]
        batch = collate_examples([item], pad_id=tok.pad_token_id)
        with torch.no_grad():
            out = model.bert(batch["input_ids"], batch["visual_feats"], batch["visual_pos"],
                             attention_mask=batch["attention_mask"], visual_attention_mask=batch["visual_attention_mask"],
                             token_type_ids=batch["token_type_ids"], output_attentions=True)  # fmt: skip
        t2v = out.attentions.t2v[-1][0].mean(0)  # (T, R)
        words = tok.convert_ids_to_tokens(batch["input_ids"][0].tolist())
        n = min(len(scene.objects), t2v.shape[1] - 1)
        for t, w in enumerate(words):
            same = [r + 1 for r in range(n) if scene.objects[r].color == w]
            if same and len(same) < n:
                on.append(float(t2v[t, same].sum()))
                base.append(len(same) / (t2v.shape[1]))
    if on:
        print(
            f"exercise 5: {len(on)} colour words: {100 * sum(on) / len(on):.1f} % of their attention on regions of "
            f"that colour, against {100 * sum(base) / len(base):.1f} % for uniform attention"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "gpu"))
    args = ap.parse_args()
    torch.manual_seed(0)
    exercise_1()
    exercise_2()
    exercise_3()
    exercise_4()
    exercise_5(args.profile)


if __name__ == "__main__":
    main()
