"""Word -> patch heatmaps for ViLT: for each word of a caption, the patches (or grid cells) it looks at, drawn
on the image, as in the ViLT paper's figure of word-patch alignment.

    maps = word_patch_maps(model, tokenizer, image, "a red star near a blue circle")   # attention, last layer
    maps = word_patch_maps(model, tokenizer, image, text, source="transport")          # the WPA transport
    plan plot_word_patch_heatmaps(maps)                                                      # one panel per
    word

A word made of several WordPieces ("he ##xa ##gon") gets the mean of its pieces' rows. "attention" is the
attention of the word's tokens over the visual tokens in one layer (mean of heads), restricted to the real
patches and renormalised; "transport" is the optimal-transport plan of word-patch alignment (IPOT on 1 -
cosine of the final states), each word's row renormalised. Figures are built with `Figure()`, like
`vilbert_lite.viz`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from safetensors import safe_open

from vilbert_lite.data.regions import load_backbone, load_image
from vilbert_lite.vilt.inputs import grid_inputs, preprocess, rand_augment, resize_for_vilt
from vilbert_lite.vilt.pretrain import word_patch_distance
from vilbert_lite.viz.pretrain import EVAL_ROWS


@dataclass
class WordPatchMaps:
    image: np.ndarray  # (H, W, 3) uint8: the image as the model saw it (resized, not padded)
    words: list[str]  # the caption's words, in order
    maps: np.ndarray  # (n_words, h, w): each word's weight per patch, summing to 1 over the real patches
    cell: tuple[float, float]  # pixels per patch (or grid cell): (height, width)
    source: str  # what the weights are, for titles


@torch.no_grad()
def word_patch_maps(model, tokenizer, image, text: str, layer: int = -1, source: str = "attention",
                    backbone=None) -> WordPatchMaps:  # fmt: skip
    """One image and caption through a ViLTModel / ViLTForPreTraining -> each word's map over the patches.
    A grid model needs the CNN: `backbone` (default: `regions.load_backbone(config.image_size)`)."""
    if source not in ("attention", "transport"):
        raise ValueError(f"source must be 'attention' or 'transport', got {source!r}")
    core = getattr(model, "vilt", model)
    cfg, device = core.config, next(core.parameters()).device
    img = load_image(image)
    shown = resize_for_vilt(img, cfg.image_size, cfg.patch_size)
    if cfg.visual_embed == "patch":
        vis = preprocess(img, cfg.image_size, cfg.patch_size)
        padded = vis["pixel_values"].shape[-2:]
    else:
        vis = grid_inputs(backbone or load_backbone(cfg.image_size).to(device), img, cfg)
        padded = -(-np.array(shown.shape[:2]) // 32) * 32
    enc = tokenizer([text], truncation=True, max_length=cfg.max_position_embeddings, return_tensors="pt")
    was_training = core.training
    core.eval()
    out = core(enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
               token_type_ids=enc["token_type_ids"].to(device), output_attentions=source == "attention",
               **{k: v.to(device) for k, v in vis.items()})  # fmt: skip
    core.train(was_training)
    T = enc["input_ids"].shape[1]
    if source == "attention":
        rows = out.attentions[layer][0].float().mean(0)[:T, T + 1 :]  # (T, N): tokens over the visual tokens
        name = f"attention, layer {layer % cfg.num_hidden_layers}, mean of heads"
    else:
        _, plan = word_patch_distance(out.sequence_output_t, enc["attention_mask"].to(device),
                                      out.sequence_output_v, out.visual_mask)  # fmt: skip
        rows, name = plan[0][:, 1:], "word-patch alignment transport plan"
    real = out.visual_mask[0, 1:].bool()
    rows = rows.cpu().masked_fill(~real.cpu(), 0.0)
    h, w = out.patch_grid
    words, maps = [], []
    word_ids = enc.word_ids(0)
    for wid in dict.fromkeys(i for i in word_ids if i is not None):
        span = enc.word_to_chars(0, wid)
        pieces = [i for i, x in enumerate(word_ids) if x == wid]
        m = rows[pieces].mean(0)
        words.append(text[span.start : span.end])
        maps.append((m / m.sum().clamp_min(1e-12)).view(h, w).numpy())
    cell = (float(padded[0]) / h, float(padded[1]) / w)
    return WordPatchMaps(shown, words, np.stack(maps), cell, name)


def plot_word_patch_heatmaps(maps: WordPatchMaps, words: list[str] | None = None, cols: int = 4,
                             title: str | None = None, cmap: str = "plasma",
                             save=None) -> Figure:  # fmt: skip
    """The image, then one panel per word with its map over the patches drawn on top (each panel scaled to its
    own maximum; the number is the share of the word's weight on its strongest patch)."""
    pick = [i for i, wd in enumerate(maps.words) if words is None or wd in words]
    n = len(pick) + 1
    rows = -(-n // cols)
    H, W = maps.image.shape[:2]
    fig = Figure(figsize=(3.0 * min(n, cols), 3.0 * rows * H / W + 0.5 * bool(title)))
    axes = fig.subplots(rows, min(n, cols), squeeze=False).ravel()
    axes[0].imshow(maps.image)
    axes[0].set_title("image", fontsize=9)
    h, w = maps.maps.shape[1:]
    extent = (0, w * maps.cell[1], h * maps.cell[0], 0)
    for ax, i in zip(axes[1:], pick):
        m = maps.maps[i]
        ax.imshow(maps.image)
        v = m / max(m.max(), 1e-12)
        rgba = colormaps[cmap](v)
        rgba[..., 3] = 0.75 * v  # weak patches leave the image visible
        ax.imshow(rgba, extent=extent, interpolation="nearest")
        ax.set_title(f"{maps.words[i]!r}  (max {m.max():.2f})", fontsize=9)
    for ax in axes:
        ax.set_xlim(0, W)
        ax.set_ylim(H, 0)
        ax.set_axis_off()
    fig.suptitle(title or maps.source, fontsize=10)
    fig.tight_layout()
    if save:
        fig.savefig(save, dpi=110, bbox_inches="tight")
    return fig


def plot_visual_tokens(
    image, boxes, grid_cell: int, patch: int, title: str | None = None, save=None
) -> Figure:
    """The three ways to cut an image into visual tokens, side by side: detector-style regions (`boxes`, (R, 4)
    pixels), the cells of a CNN feature map (`grid_cell` pixels each) and ViLT's P x P patches (`patch`)."""
    img = np.asarray(image)
    H, W = img.shape[:2]
    fig = Figure(figsize=(11, 3.9))
    axes = fig.subplots(1, 3)
    for ax, (name, step) in zip(axes, [("regions", None), ("grid cells", grid_cell), ("patches", patch)]):
        ax.imshow(img)
        if step is None:
            for x1, y1, x2, y2 in np.asarray(boxes).reshape(-1, 4):
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="orange", lw=1.5))
            n = len(np.asarray(boxes).reshape(-1, 4))
        else:
            for x in range(0, W + 1, step):
                ax.axvline(x, color="white", lw=0.8)
            for y in range(0, H + 1, step):
                ax.axhline(y, color="white", lw=0.8)
            n = -(-H // step) * -(-W // step)
        ax.set_title(f"{name}: {n} tokens" + ("" if step is None else f" of {step} x {step} px"), fontsize=9)
        ax.set_xlim(0, W)
        ax.set_ylim(H, 0)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if save:
        fig.savefig(save, dpi=110, bbox_inches="tight")
    return fig


def plot_augmentations(image, n: int = 7, seed: int = 0, magnitude: float = 9.0, save=None) -> Figure:
    """An image and `n` draws of `vilt.inputs.rand_augment` (RandAugment without colour ops or cutout)."""
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()[None] / 255
    g = torch.Generator().manual_seed(seed)
    out = rand_augment(x.expand(n, -1, -1, -1).contiguous(), g, magnitude=magnitude)
    cols = min(n + 1, 4)
    rows = -(-(n + 1) // cols)
    fig = Figure(figsize=(2.6 * cols, 2.7 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i <= n:
            ax.imshow(np.asarray(image) if i == 0 else out[i - 1].permute(1, 2, 0).numpy())
            ax.set_title("original" if i == 0 else f"draw {i}", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    if save:
        fig.savefig(save, dpi=110, bbox_inches="tight")
    return fig


def accuracy_table(runs: dict) -> pd.DataFrame:
    """Held-out numbers (viz.pretrain.EVAL_ROWS) of several pretraining run folders side by side, one column per
    name in `runs` (e.g. {"region (ViLBERT)": ..., "grid": ..., "patch (ViLT)": ...}), with steps, training
    seconds and parameters."""
    cols = {}
    for name, run in runs.items():
        ev = json.loads((Path(run) / "eval.json").read_text())
        params = ev.get("parameters")
        if params is None and (Path(run) / "model").is_dir():  # ViLBERT's eval.json has no parameter count
            with safe_open(Path(run) / "model" / "model.safetensors", "pt") as f:
                params = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
        accs = [round(float(ev.get(k, np.nan)), 3) for k in EVAL_ROWS]
        wall = ev.get("train_wall_time_s")
        cols[name] = [*accs, ev.get("steps"), None if wall is None else round(wall, 1), params]
    index = [*EVAL_ROWS.values(), "optimizer steps", "training wall time (s)", "parameters"]
    return pd.DataFrame(cols, index=pd.Index(index, name="held-out (val captions)"), dtype=object)
