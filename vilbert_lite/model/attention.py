"""Multi-head self-attention and ViLBERT's co-attention, each with a fused (SDPA) and an explicit path.

The fused path calls `F.scaled_dot_product_attention` and returns no maps; the explicit path computes
softmax(QKᵀ/√d + mask)·V by hand and returns the attention probabilities (before dropout), so that they
can be drawn. Both paths agree to ~1e-6 in fp32. Masks are additive: 0 for real keys, -10000 for padding
(the official convention), shaped (B, 1, 1, L_keys).
Parameter names follow the official code (query/key/value, query1..value2) so checkpoints load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, heads*d) -> (B, heads, L, d)"""
    B, L, D = x.shape
    return x.view(B, L, heads, D // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, L, d) -> (B, L, heads*d)"""
    B, h, L, d = x.shape
    return x.transpose(1, 2).reshape(B, L, h * d)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    dropout: nn.Dropout,
    need_weights: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """softmax(q·kᵀ/√d + mask)·v for q (B,h,Lq,d), k/v (B,h,Lk,d); returns (context (B,h,Lq,d), probs or None)."""
    if not need_weights:
        p = dropout.p if dropout.training else 0.0
        if mask is not None:
            mask = mask.to(q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p), None
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))  # (B, h, Lq, Lk)
    if mask is not None:
        scores = scores + mask
    probs = scores.softmax(dim=-1)
    return dropout(probs) @ v, probs


class SelfAttention(nn.Module):
    """Standard multi-head self-attention (the `attention.self` block of a BERT layer)."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, need_weights: bool = False):
        q, k, v = (split_heads(f(x), self.heads) for f in (self.query, self.key, self.value))
        ctx, probs = attend(q, k, v, mask, self.dropout, need_weights)
        return merge_heads(ctx), probs  # (B, L, hidden), (B, h, L, L) | None


class CoAttention(nn.Module):
    """Co-attention: each stream's queries attend over the *other* stream's keys and values.

    Vision projections query1/key1/value1 (v_hidden -> bi_hidden), text projections query2/key2/value2
    (hidden -> bi_hidden). Text queries over region keys give image-conditioned language features
    (context_t, maps t2v: (B, h, T, R)); region queries over word keys give language-conditioned image
    features (context_v, maps v2t: (B, h, R, T)).
    """

    def __init__(
        self, v_hidden: int, t_hidden: int, bi_hidden: int, heads: int, v_dropout: float, t_dropout: float
    ):
        super().__init__()
        self.heads = heads
        self.query1 = nn.Linear(v_hidden, bi_hidden)
        self.key1 = nn.Linear(v_hidden, bi_hidden)
        self.value1 = nn.Linear(v_hidden, bi_hidden)
        self.dropout1 = nn.Dropout(v_dropout)
        self.query2 = nn.Linear(t_hidden, bi_hidden)
        self.key2 = nn.Linear(t_hidden, bi_hidden)
        self.value2 = nn.Linear(t_hidden, bi_hidden)
        self.dropout2 = nn.Dropout(t_dropout)

    def forward(self, v, v_mask, t, t_mask, need_weights: bool = False):
        h = self.heads
        q1, k1, v1 = (split_heads(f(v), h) for f in (self.query1, self.key1, self.value1))  # regions
        q2, k2, v2 = (split_heads(f(t), h) for f in (self.query2, self.key2, self.value2))  # words
        ctx_t, t2v = attend(q2, k1, v1, v_mask, self.dropout1, need_weights)  # words attend to regions
        ctx_v, v2t = attend(q1, k2, v2, t_mask, self.dropout2, need_weights)  # regions attend to words
        return merge_heads(ctx_v), merge_heads(ctx_t), t2v, v2t  # (B,R,bi), (B,T,bi), (B,h,T,R), (B,h,R,T)
