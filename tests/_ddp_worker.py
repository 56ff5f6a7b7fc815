"""A toy model and dataset for the engine tests, and the script `torchrun` runs in the DDP test.

torchrun --standalone --nproc_per_node 2 tests/_ddp_worker.py OUT_DIR
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from vilbert_lite.train.engine import TrainConfig, train


class ToyNet(nn.Module):
    """A small MLP classifier with a LayerNorm (so it has 1-d weights without weight decay)."""

    def __init__(self, dim: int = 8, hidden: int = 32, classes: int = 3, dropout: float = 0.0, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def toy_dataset(n: int = 64, dim: int = 8, classes: int = 3, seed: int = 1) -> list[dict]:
    """`n` points (drawn with `seed`) labelled by a fixed random linear teacher (learnable)."""
    teacher = torch.randn(dim, classes, generator=torch.Generator().manual_seed(1234))
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    y = (x @ teacher).argmax(-1)
    return [{"x": x[i], "y": y[i], "id": i} for i in range(n)]


def collate(items: list[dict]) -> dict:
    return {"x": torch.stack([it["x"] for it in items]), "y": torch.stack([it["y"] for it in items])}


def loss_fn(model, batch: dict):
    logits = model(batch["x"])
    loss = nn.functional.cross_entropy(logits, batch["y"])
    return loss, {"acc": (logits.argmax(-1) == batch["y"]).float().mean().item()}


# 8 micro-batches of 8 per epoch, 2 per update: 12 steps; each of 2 processes gets 4 samples per micro-batch
DDP_CONFIG = dict(epochs=3, batch_size=8, grad_accum=2, lr=3e-3, log_every=1, ckpt_every=5, warmup_frac=0.2)


def eval_fn(model) -> dict:
    return {"val_loss": loss_fn(model, collate(toy_dataset(32, seed=2)))[0].item()}


def run(out_dir) -> dict:
    cfg = TrainConfig(**DDP_CONFIG)
    return train(ToyNet(), toy_dataset(), collate, loss_fn, cfg, out_dir, eval_fn=eval_fn, progress=False)


if __name__ == "__main__":
    run(sys.argv[1])
