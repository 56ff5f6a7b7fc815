"""Solutions to the exercises of notebook 11 · ViLT's mechanics (seconds at every profile).

python solutions/11_vilt.py [--profile cpu]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.pretrain.objectives import mask_tokens, special_ids
from vilbert_lite.vilt.inputs import preprocess, rand_augment
from vilbert_lite.vilt.model import ViLTModel, resolve_vilt_config
from vilbert_lite.vilt.pretrain import ipot, whole_word_mask, wordpiece_continuations


def exercise_1(seed: int = 0) -> None:
    """Split words masked only in part, token-level against whole-word masking."""
    tok = get_tokenizer()
    caption = "a turquoise octagon beside a magenta triangle"
    ids = tok([caption] * 2000, return_tensors="pt")
    word_ids = ids.word_ids(0)
    words = [[i for i, w in enumerate(word_ids) if w == wid] for wid in sorted(set(word_ids) - {None})]
    split = [cols for cols in words if len(cols) > 1]
    print(f"exercise 1: pieces {tok.convert_ids_to_tokens(ids['input_ids'][0])}: {len(split)} split word(s)")
    g = torch.Generator().manual_seed(seed)
    _, by_token = mask_tokens(ids["input_ids"], ids["attention_mask"], tok, tok.vocab_size, g)
    _, by_word = whole_word_mask(ids["input_ids"], ids["attention_mask"], wordpiece_continuations(tok),
                                 special_ids(tok), tok.vocab_size, g)  # fmt: skip
    for name, labels in (("token-level", by_token), ("whole-word", by_word)):
        chosen = labels != -1
        partial = sum(int((chosen[:, c].any(1) & ~chosen[:, c].all(1)).sum()) for c in split)
        share = 100 * partial / max(1, 2000 * len(split))
        print(f"exercise 1: {name:11s} split words masked only in part: {partial} ({share:.2f} percent)")


def exercise_2(seed: int = 0) -> None:
    """A red/blue channel swap as a colour op: the largest colour change on a flat red image."""
    red = torch.tensor([0.86, 0.12, 0.14]).view(1, 3, 1, 1).expand(16, 3, 32, 32).contiguous()
    kept = rand_augment(red, torch.Generator().manual_seed(seed))
    swapped = kept[:, [2, 1, 0]]
    print(f"exercise 2: RandAugment as it is: largest colour change {float((kept - red).abs().max()):.4f}")
    print(
        f"exercise 2: with the channel swap: {float((swapped - red).abs().max()):.4f}: the red image turns blue, "
        "and a caption saying 'red' becomes false"
    )


def exercise_3(seed: int = 0) -> None:
    """IPOT with small and large beta on the toy words-copy-patches example."""
    g = torch.Generator().manual_seed(seed)
    patches = torch.randn(1, 4, 16, generator=g)
    perm = [2, 0, 3]
    words = patches[:, perm] + 0.1 * torch.randn(1, 3, 16, generator=g)
    norm = torch.nn.functional.normalize
    cost = 1 - norm(words, dim=-1) @ norm(patches, dim=-1).mT
    for beta in (0.05, 0.5, 5.0):
        plan = ipot(cost, torch.ones(1, 3), torch.ones(1, 4), beta=beta)[0]
        rows = plan / plan.sum(1, keepdim=True)
        entropy = float(-(rows * rows.clamp_min(1e-12).log()).sum(1).mean())
        print(
            f"exercise 3: beta={beta:<4}: mean row entropy {entropy:.3f} nats (log 4 = 1.386 is uniform), "
            f"strongest patches {plan.argmax(1).tolist()} (copies {perm})"
        )


def exercise_4(profile: str) -> None:
    """Positions the transformer reads for a 160 x 240 image with 32- and 16-pixel patches."""
    base = resolve_vilt_config(profile)
    img = np.full((160, 240, 3), 128, np.uint8)
    for p in (32, 16):
        cfg = base.replace(patch_size=p)
        px = preprocess(img, 160, p, resize=False)
        with torch.no_grad():
            out = ViLTModel(cfg).eval()(
                torch.tensor([[101, 102]]), px["pixel_values"], pixel_mask=px["pixel_mask"]
            )
        n = int(out.visual_mask[0, 1:].sum())
        print(
            f"exercise 4: {p}-px patches: grid {tuple(out.patch_grid)} = {n} patches; with [IMG] and 2 text "
            f"tokens {n + 3} positions"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    a = ap.parse_args()
    exercise_1()
    exercise_2()
    exercise_3()
    exercise_4(a.profile)


if __name__ == "__main__":
    main()
