"""Solutions to the exercises of notebook 01 · Self-attention (seconds at every profile).

python solutions/01_self_attention.py [--profile cpu]
"""

from __future__ import annotations

import argparse
import math

import torch
import transformers

from vilbert_lite.data.tokenize import bert_model_path, get_tokenizer
from vilbert_lite.model.attention import SelfAttention, merge_heads, split_heads

TOY = "a red circle left of a blue square".split()


def toy_attention(d: int, scale: bool, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(len(TOY), d, generator=g)
    W_Q, W_K = (torch.randn(d, d, generator=g) / math.sqrt(d) for _ in range(2))
    E = (X @ W_Q) @ (X @ W_K).T
    return (E / math.sqrt(d) if scale else E).softmax(-1)


def exercise_1() -> None:
    """Without 1/sqrt(d), the scores of d=512 vectors have a spread ~sqrt(512) larger: the softmax saturates."""
    for scale in (True, False):
        A = toy_attention(512, scale)
        print(
            f"exercise 1: d=512, scaled={scale}: mean of the largest weight per row {A.max(-1).values.mean():.3f}"
        )
    print(
        "exercise 1: without the scaling each row is (nearly) one-hot: the gradient through the softmax vanishes"
    )


def exercise_2() -> None:
    L, d = len(TOY), 8
    layer = SelfAttention(hidden=d, heads=1, dropout=0.0).eval()
    causal = torch.triu(torch.ones(L, L), diagonal=1)[None, None] * -10000.0  # (1, 1, L, L)
    with torch.no_grad():
        _, A = layer(torch.randn(1, L, d), mask=causal, need_weights=True)
    upper = A[0, 0][torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1)]
    print(
        f"exercise 2: causal mask {tuple(causal.shape)}: largest weight above the diagonal {upper.max().item()}"
    )
    assert upper.max().item() == 0.0


def exercise_3() -> None:
    L, d = len(TOY), 8
    x = torch.randn(1, L, d)
    for h in (1, 2, 8):
        mh = SelfAttention(hidden=d, heads=h, dropout=0.0).eval()
        with torch.no_grad():
            q = split_heads(mh.query(x), h)
            y, a = mh(x, mask=None, need_weights=True)
        print(
            f"exercise 3: heads={h}: q per head {tuple(q.shape)}, maps {tuple(a.shape)}, "
            f"merged {tuple(merge_heads(q).shape)}, output {tuple(y.shape)}"
        )


def bert_maps(sentence: str):
    tok = get_tokenizer()
    enc = tok(sentence, return_tensors="pt")
    bert = transformers.BertModel.from_pretrained(str(bert_model_path()), attn_implementation="eager").eval()
    with torch.no_grad():
        maps = bert(**enc, output_attentions=True).attentions  # per layer (1, h, T, T)
    return tok.convert_ids_to_tokens(enc["input_ids"][0].tolist()), maps


def exercise_4() -> None:
    words, maps = bert_maps("the trophy did not fit in the suitcase because it was too big")
    it, trophy, suitcase = words.index("it"), words.index("trophy"), words.index("suitcase")
    best = max(((layer, head) for layer in range(len(maps)) for head in range(maps[0].shape[1])),
               key=lambda lh: float(maps[lh[0]][0, lh[1], it, [trophy, suitcase]].max()))  # fmt: skip
    row = maps[best[0]][0, best[1], it]
    noun = "trophy" if row[trophy] > row[suitcase] else "suitcase"
    print(
        f"exercise 4: layer {best[0]}, head {best[1]}: 'it' -> trophy {row[trophy]:.2f}, suitcase "
        f"{row[suitcase]:.2f}: most on '{noun}' (the right noun is 'trophy')"
    )


def best_heads(sentence: str) -> dict[str, tuple[int, int]]:
    words, maps = bert_maps(sentence)
    T, sep = len(words), words.index("[SEP]")
    scores = {"previous token": {}, "next token": {}, "[SEP]": {}}
    for layer, a in enumerate(maps):
        for head, m in enumerate(a[0]):
            scores["previous token"][layer, head] = float(
                m[torch.arange(1, T), torch.arange(0, T - 1)].mean()
            )
            scores["next token"][layer, head] = float(m[torch.arange(0, T - 1), torch.arange(1, T)].mean())
            scores["[SEP]"][layer, head] = float(m[:, sep].mean())
    return {p: max(s, key=s.get) for p, s in scores.items()}


def exercise_5() -> None:
    sentences = ["the small red circle is left of the large blue square.",
                 "a dog chased the ball across the wet green grass.",
                 "she read the long letter twice before she answered it."]  # fmt: skip
    found = [best_heads(s) for s in sentences]
    for pattern in found[0]:
        heads = [f[pattern] for f in found]
        print(
            f"exercise 5: {pattern:15s} best (layer, head) per sentence {heads}: "
            f"{'kept' if len(set(heads)) == 1 else 'changes'}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "gpu"))
    args = ap.parse_args()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    print(f"profile={args.profile} (these exercises are the same at every profile)")
    for ex in (exercise_1, exercise_2, exercise_3, exercise_4, exercise_5):
        ex()


if __name__ == "__main__":
    main()
