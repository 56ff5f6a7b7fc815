"""Attention, drawn: static matplotlib views that render anywhere, and a live explorer over one image-text pair.

Static views (each returns a `matplotlib.figure.Figure`; `save="x.png"` writes it too):

    plot_heatmap(attn (Lq, Lk), row_labels, col_labels)           one attention map
    plot_attention_grid(maps, row_labels, col_labels)             layers x heads grid of maps
    plot_word_region_matrix(t2v (h, T, R) | (T, R), tokens)       words attending to regions
    plot_image_overlay(image, boxes (R, 4), weights (R,))          regions filled by weight on the image
    plot_region_to_words(weights (T,), tokens)                     one region's attention over the words
    plot_layer_schedule(config)                                    the official text / vision / co-attention order
    top_pairs(t2v | v2t, tokens, regions, k)                       the strongest word-region pairs, a DataFrame

`AttentionExplorer` (ipywidgets) puts them together for one pair: layer, head (or the mean of heads), direction
(word->region, region->word, word->word, region->region), a word or region to look from, and that query's
strongest pairs; both panels share one colour scale from 0. The widget shows its figure as an image, and
`view(...)` draws other controls without touching the widget. Figures are built with `Figure()`, not pyplot,
so a notebook shows each exactly once and nothing leaks.
"""

from __future__ import annotations

import io
from html import escape

import numpy as np
import pandas as pd
import torch
from matplotlib import cm, colormaps, colors
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle

from vilbert_lite.data.regions import RegionExtractor, load_image
from vilbert_lite.data.regions import visual_inputs as make_visual_inputs
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.vilbert import layer_schedule

from .visual_tokens import imagenet_class_names

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[PAD]")
LABEL_FONTSIZE = 10  # box labels on images, in points (>= 10 px on screen at 72 dpi and above)
# direction -> (Attentions field, query kind, key kind)
DIRECTIONS = {
    "word → region": ("t2v", "word", "region"),
    "region → word": ("v2t", "region", "word"),
    "word → word": ("text", "word", "word"),
    "region → region": ("vision", "region", "region"),
}


def _np(x) -> np.ndarray:
    """A tensor or array-like -> float numpy array (detached, on the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _single(x, name: str, ndim: int) -> np.ndarray:
    """Drop a leading batch axis of size 1; a batch of more than one pair is an error."""
    a = _np(x)
    if a.ndim == ndim + 1:
        if a.shape[0] != 1:
            raise ValueError(
                f"{name}: got a batch of {a.shape[0]} pairs {a.shape}; the views show one image-text pair, "
                f"select it first, e.g. {name}[i:i+1]"
            )
        a = a[0]
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dims (plus an optional batch of 1), got shape {a.shape}")
    return a


def _heads_mean(a: np.ndarray) -> np.ndarray:
    """(h, Lq, Lk) -> mean over heads; (Lq, Lk) unchanged."""
    return a.mean(0) if a.ndim == 3 else a


def _check_labels(labels, n: int, what: str) -> list[str]:
    if labels is None:
        return [str(i) for i in range(n)]
    labels = [str(s) for s in labels]
    if len(labels) != n:
        raise ValueError(f"{what}: {len(labels)} labels for an axis of length {n}")
    return labels


def _new_ax(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _done(fig: Figure, save) -> Figure:
    if save:
        fig.savefig(save, dpi=110)
    return fig


# ------------------------------------------------------------------------------------------ static views
def plot_heatmap(attn, row_labels=None, col_labels=None, ax=None, title: str | None = None, cmap: str = "Blues",
                 vmax: float | None = None, colorbar: bool = True, save=None) -> Figure:  # fmt: skip
    """One attention map (Lq, Lk): rows are queries (who looks), columns are keys (what is looked at)."""
    a = _np(attn)
    if a.ndim != 2:
        raise ValueError(f"plot_heatmap needs one (Lq, Lk) map, got shape {a.shape}")
    rows, cols = (
        _check_labels(row_labels, a.shape[0], "row_labels"),
        _check_labels(col_labels, a.shape[1], "col_labels"),
    )
    fig, ax = _new_ax(ax, (1.2 + 0.32 * len(cols), 1.0 + 0.28 * len(rows)))
    im = ax.imshow(a, cmap=cmap, vmin=0, vmax=vmax if vmax is not None else max(a.max(), 1e-9), aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("key (attended to)", fontsize=8)
    ax.set_ylabel("query", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        fig.colorbar(im, ax=ax, shrink=0.8, label="attention weight")
    return _done(fig, save)


def plot_attention_grid(maps, row_labels=None, col_labels=None, layers=None, heads=None, title: str | None = None,
                        layer_names=None, save=None) -> Figure:  # fmt: skip
    """A layers x heads grid of maps; `maps` is a list (one per layer) of (1, h, Lq, Lk) or (h, Lq, Lk)."""
    arrs = [_single(m, f"maps[{i}]", 3) for i, m in enumerate(maps)]
    if not arrs:
        raise ValueError("plot_attention_grid: no maps (run the model with output_attentions=True)")
    layers = list(range(len(arrs))) if layers is None else list(layers)
    heads = list(range(arrs[0].shape[0])) if heads is None else list(heads)
    Lq, Lk = arrs[0].shape[1:]
    rows, cols = _check_labels(row_labels, Lq, "row_labels"), _check_labels(col_labels, Lk, "col_labels")
    vmax = max(
        arrs[layer][head].max() for layer in layers for head in heads
    )  # one colour scale for all panels
    names = layer_names or [f"layer {i}" for i in range(len(arrs))]
    cell = max(
        1.2, min(max(1.8, 0.16 * max(Lq, Lk)), 14 / len(heads))
    )  # inches per panel: the grid stays ~14" wide
    ticks = cell / max(Lq, Lk) >= 0.1  # label the tokens only where they fit
    fig = Figure(figsize=(0.9 + cell * len(heads), 0.6 + cell * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), len(heads), squeeze=False)
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            ax = axes[r, c]
            ax.imshow(arrs[layer][head], cmap="Blues", vmin=0, vmax=vmax, aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == len(layers) - 1 and ticks:
                ax.set_xticks(range(Lk), cols, rotation=90, fontsize=6)
            if c == 0:
                ax.set_ylabel(names[layer], fontsize=9)
                if ticks:
                    ax.set_yticks(range(Lq), rows, fontsize=6)
            if r == 0:
                ax.set_title(f"head {head}", fontsize=9)
    fig.colorbar(
        cm.ScalarMappable(colors.Normalize(0, vmax), "Blues"), ax=axes, shrink=0.6, label="attention weight"
    )
    if title:
        fig.suptitle(title)
    return _done(fig, save)


def plot_word_region_matrix(
    t2v, tokens, region_labels=None, ax=None, title: str | None = None, save=None
) -> Figure:
    """Words (rows) attending to regions (columns): t2v (h, T, R) is averaged over heads, or pass (T, R)."""
    a = _np(t2v)
    if a.ndim == 4:
        a = _single(a, "t2v", 3)
    a = _heads_mean(a)
    if a.shape[0] != len(tokens):
        raise ValueError(f"t2v has {a.shape[0]} word rows but {len(tokens)} tokens were given")
    regions = _check_labels(region_labels, a.shape[1], "region_labels")
    return plot_heatmap(a, tokens, regions, ax=ax, title=title or "word → region attention", cmap="Oranges",
                        save=save)  # fmt: skip


def plot_image_overlay(image, boxes, weights, title: str | None = None, ax=None, labels=None, cmap: str = "YlOrRd",
                       highlight=None, top: int | None = None, colorbar: bool = True, vmin: float | None = 0.0,
                       vmax: float | None = None, save=None) -> Figure:  # fmt: skip
    """Regions drawn on the image, each box filled with a colour and opacity that grow with its weight.

    `highlight`: a region index, or several, outlined with a dashed cyan frame (e.g. the boxes a word names).

    Colours run from `vmin` (0) to `vmax` (default: the largest weight), the scale of the heat maps, so that
    uniform attention looks uniform; vmin=None stretches them to the weights' own min-max instead (a ranking,
    not a strength). `top=k` draws and names only the k strongest regions (readable with many overlapping
    proposals; otherwise the strongest three are named). A box covering the whole image (the global IMG region)
    is drawn as a frame, not filled.
    """
    img, b, w = np.asarray(image), _np(boxes).reshape(-1, 4), _np(weights).reshape(-1)
    if len(b) != len(w):
        raise ValueError(f"{len(b)} boxes but {len(w)} weights: one weight per region is needed")
    H, W = img.shape[:2]
    fig, ax = _new_ax(ax, (5.2, 4.6 * H / max(W, 1)))
    ax.imshow(img)
    lo = w.min() if vmin is None else vmin
    norm = colors.Normalize(lo, max(w.max() if vmax is None else vmax, lo + 1e-9))
    cmap_ = colormaps[cmap]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    shown = np.argsort(-w, kind="stable")[: top or len(w)]
    for i in sorted(shown, key=lambda i: -area[i]):  # big boxes first, small ones stay visible on top
        x1, y1, x2, y2 = b[i]
        rel, c = float(norm(w[i])), cmap_(norm(w[i]))
        face = (*c[:3], 0.0 if area[i] >= 0.95 * H * W else 0.6 * rel)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, facecolor=face, edgecolor=c, lw=1.0 + 2.5 * rel))
    for h in np.atleast_1d(highlight if highlight is not None else []).astype(int):
        x1, y1, x2, y2 = b[h]
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="cyan", lw=3, ls="--"))
    named = shown[: top or 3]  # name the regions drawn (the strongest three without `top`)
    texts = [f"{labels[i] if labels is not None else f'r{i}'}: {w[i]:.2f}" for i in named]
    plate = dict(facecolor="white", alpha=0.8, lw=0, pad=1)
    for (x, y), text in zip(_label_spots(ax, b[named], texts, W, H), texts):
        ax.text(x, y, text, fontsize=LABEL_FONTSIZE, va="top", bbox=plate)
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        fig.colorbar(cm.ScalarMappable(norm, cmap_), ax=ax, shrink=0.8, label="attention weight")
    return _done(fig, save)


def _label_spots(ax, boxes: np.ndarray, texts: list[str], W: float, H: float) -> list[tuple[float, float]]:
    """Where box labels go: each box's top-left corner, moved down a line while it would cover a label before."""
    fw, fh = ax.figure.get_size_inches()
    pos = ax.get_position()
    per_inch = 1.15 * max(W / (pos.width * fw), H / (pos.height * fh))  # image pixels per inch, generous
    line = LABEL_FONTSIZE * 1.45 / 72 * per_inch
    placed, spots = [], []
    for (x1, y1, _, _), text in zip(boxes, texts):
        width = len(text) * LABEL_FONTSIZE * 0.6 / 72 * per_inch
        x, y = min(x1 + 2, max(W - width, 0)), y1 + 2
        above = [py for px, py, pw in placed if x < px + pw and px < x + width]  # labels it could cover
        while y + line < H and any(abs(y - py) < line for py in above):
            y += line
        placed.append((x, y, width))
        spots.append((x, y))
    return spots


def plot_region_to_words(weights, tokens, ax=None, title: str | None = None, vmax: float | None = None,
                         save=None) -> Figure:  # fmt: skip
    """A bar chart of one query's attention over the words (e.g. one region's row of v2t), from 0 to `vmax`."""
    w = _np(weights).reshape(-1)
    if len(w) != len(tokens):
        raise ValueError(f"{len(w)} weights but {len(tokens)} tokens")
    top = max(w.max() if vmax is None else vmax, 1e-9)
    fig, ax = _new_ax(ax, (1.5 + 0.35 * len(tokens), 2.8))
    ax.bar(range(len(w)), w, color=cm.Purples(0.35 + 0.65 * np.clip(w / top, 0, 1)))
    ax.set_xticks(range(len(w)), list(tokens), rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("attention weight")
    ax.set_ylim(0, top * 1.15)
    ax.set_title(title or "attention over the words", fontsize=10)
    return _done(fig, save)


def top_pairs(attn, tokens, regions, k: int = 10, direction: str | None = None) -> pd.DataFrame:
    """The k strongest (word, region) pairs of a t2v (.., T, R) or v2t (.., R, T) map, heads averaged.

    The direction follows from the shape; pass direction="word → region" or "region → word" when T == R.
    """
    a = _heads_mean(_single(attn, "attn", 3) if _np(attn).ndim == 4 else _np(attn))
    T, R = len(tokens), len(regions)
    if direction is None:
        if a.shape not in ((T, R), (R, T)):
            raise ValueError(f"map of shape {a.shape} fits neither (T={T}, R={R}) nor (R, T)")
        direction = "word → region" if a.shape == (T, R) else "region → word"
    _, q, kk = DIRECTIONS[direction]
    qlab, klab = (tokens, regions) if q == "word" else (regions, tokens)
    return _top(a, list(qlab), list(klab), k, q, kk)


def _top(a: np.ndarray, qlab, klab, k: int, qname: str, kname: str) -> pd.DataFrame:
    if a.shape != (len(qlab), len(klab)):
        raise ValueError(f"map of shape {a.shape} but {len(qlab)} query and {len(klab)} key labels")
    order = np.argsort(-a, axis=None, kind="stable")[:k]
    qi, ki = np.unravel_index(order, a.shape)
    qname, kname = (qname, kname) if qname != kname else (f"{qname} (query)", f"{kname} (key)")
    df = pd.DataFrame(
        {qname: [qlab[i] for i in qi], kname: [klab[j] for j in ki], "weight": a[qi, ki].round(4)}
    )
    df.index = pd.RangeIndex(1, len(df) + 1, name="rank")
    return df


def plot_layer_schedule(config: ViLBertConfig, ax=None, title: str | None = None, save=None) -> Figure:
    """The official layer order, drawn from `layer_schedule(config)`: text row, vision row, co-attention links.

    Columns follow each stream's own progress; a co-attention layer waits for both streams, so text layers
    before it and visual layers before it line up in parallel. Small numbers are the execution order.
    """
    steps = layer_schedule(config)
    col = {"t": 0, "v": 0}
    placed = []  # (kind, index, frozen, column, step)
    for n, (kind, i, frozen) in enumerate(steps):
        if kind == "c":
            c = max(col.values())
            col = {"t": c + 1, "v": c + 1}
        else:
            c = col[kind]
            col[kind] += 1
        placed.append((kind, i, frozen, c, n))
    ncol = max(col.values())
    fig, ax = _new_ax(ax, (1.6 + 0.62 * ncol, 2.3))
    y = {"t": 1.0, "v": 0.0}
    style = {"t": ("#d9c6ec", "T"), "v": ("#c8e6c9", "V"), "c": ("#ffcc80", "Co")}
    for s in ("t", "v"):  # each stream's path through its layers
        ax.plot([-0.6, ncol - 0.4], [y[s]] * 2, color="0.6", lw=1, zorder=0)
    for kind, i, frozen, c, n in placed:
        face, prefix = style[kind]
        y0, h = (-0.3, 1.6) if kind == "c" else (y[kind] - 0.3, 0.6)
        ax.add_patch(FancyBboxPatch((c - 0.38, y0), 0.76, h, boxstyle="round,pad=0.02", facecolor=face,
                                    edgecolor="0.3", hatch="//" if frozen else None, zorder=2))  # fmt: skip
        ax.text(c, 0.5 if kind == "c" else y[kind], f"{prefix}{i}", ha="center", va="center", fontsize=8,
                rotation=90 if kind == "c" else 0, zorder=3)  # fmt: skip
        ax.text(c, y0 - 0.08, str(n), ha="center", va="top", fontsize=6, color="0.4")
        if kind == "c":  # keys and values cross between the streams
            for y1, y2 in ((0.72, 0.28), (0.28, 0.72)):
                ax.annotate("", (c + 0.22 * (1 if y1 > y2 else -1), y2), (c + 0.22 * (1 if y1 > y2 else -1), y1),
                            arrowprops=dict(arrowstyle="->", color="#e65100", lw=1), zorder=3)  # fmt: skip
    ax.text(-0.75, 1.0, "text", ha="right", va="center", fontsize=9, color="#6a1b9a")
    ax.text(-0.75, 0.0, "vision", ha="right", va="center", fontsize=9, color="#2e7d32")
    ax.set_xlim(-2.0, ncol)
    ax.set_ylim(-0.55, 1.45)
    ax.set_axis_off()
    n_t, n_v, n_c = config.num_hidden_layers, config.v_num_hidden_layers, config.num_co_layers
    frozen = " · hatched = frozen (no_grad)" if any(s[2] for s in steps) else ""
    ax.set_title(title or f"{n_t} text, {n_v} vision, {n_c} co-attention layers "
                 f"(t_biattention_id={config.t_biattention_id}, v_biattention_id={config.v_biattention_id}){frozen}",
                 fontsize=9)  # fmt: skip
    return _done(fig, save)


def schedule_text(config: ViLBertConfig) -> str:
    """The layer order as one line, e.g. 'T0 T1 → Co0 → T2 V0 → Co1 → V1 T3' (frozen layers marked *)."""
    parts, group = [], []
    for kind, i, frozen in layer_schedule(config):
        if kind == "c":
            parts += [" ".join(group)] if group else []
            parts.append(f"Co{i}")
            group = []
        else:
            group.append(f"{kind.upper()}{i}{'*' if frozen else ''}")
    parts += [" ".join(group)] if group else []
    return " → ".join(parts)


# -------------------------------------------------------------------------------------------- the explorer
class AttentionExplorer:
    """An ipywidgets explorer over the attention of ONE image-text pair (display it, or call `update`).

    Controls: direction (word → region, region → word, word → word, region → region), layer, head or the mean
    of heads, and the word or region to look from. A word's attention is drawn over the regions on the image
    (boxes filled by weight); a region's attention is drawn over the words; the top pairs are listed.

        AttentionExplorer(model, tokenizer, image, boxes, "a red circle")     # runs the model (regions extracted)
        AttentionExplorer.from_output(out, tokens, image, boxes)              # from an existing forward pass
    `boxes` (R, 4) pixels for the R regions of the maps; with R-1 boxes the whole-image box is added as
    region 0 (the global IMG region). [PAD] is always dropped, [CLS]/[SEP] unless keep_special; weights are
    the model's probabilities (the share of dropped tokens is not redistributed).
    `named` {token index: region indices} marks the regions a word names (`pointing.object_word_targets`):
    they are outlined dashed when that word looks at the regions (`pointing.pointing_explorer` fills it in).
    Without `region_labels`, regions are named by the CNN's ImageNet class (cls_prob) when the explorer extracts
    them, else r0, r1, ... With many regions only the `top` strongest are drawn and named. `note`: one line shown
    with the view, e.g. that the weights are untrained. `view(...)` draws other controls without changing these.
    """

    def __init__(self, model, tokenizer, image, boxes=None, text: str = "", visual_inputs=None,
                 device: str = "cpu", region_labels=None, keep_special: bool = False, extractor=None,
                 named=None, note: str | None = None, top: int = 5):  # fmt: skip
        out, tokens, image, boxes, vis = _run_pair(
            model, tokenizer, image, boxes, text, visual_inputs, device, extractor
        )
        if region_labels is None and "cls_prob" in vis:
            region_labels = _class_labels(vis["cls_prob"])
        self._setup(out, tokens, image, boxes, region_labels, keep_special, named, note, top)

    @classmethod
    def from_output(cls, out, tokens, image, boxes, region_labels=None, keep_special: bool = False, named=None,
                    note: str | None = None, top: int = 5):  # fmt: skip
        """Build from a forward pass run with output_attentions=True (a ViLBertOutput or its .attentions)."""
        self = cls.__new__(cls)
        self._setup(out, tokens, image, boxes, region_labels, keep_special, named, note, top)
        return self

    # ------------------------------------------------------------------ data
    def _setup(self, out, tokens, image, boxes, region_labels, keep_special, named=None, note=None,
               top: int = 5) -> None:  # fmt: skip
        att = getattr(out, "attentions", out)
        if att is None:
            raise ValueError("no attention maps: run the model with output_attentions=True")
        maps = {f: [_single(m, f"attentions.{f}[{i}]", 3) for i, m in enumerate(getattr(att, f))]
                for f in ("text", "vision", "t2v", "v2t")}  # fmt: skip
        if not maps["t2v"] and not maps["text"]:
            raise ValueError("the attention record is empty: run the model with output_attentions=True")
        tokens = [str(t) for t in tokens]
        T = maps["text"][0].shape[-1] if maps["text"] else maps["t2v"][0].shape[1]
        if len(tokens) != T:
            raise ValueError(f"{len(tokens)} tokens but the attention maps cover {T} text positions; pass the "
                             "tokens of exactly the input_ids the model saw (padding included)")  # fmt: skip
        R = maps["t2v"][0].shape[-1] if maps["t2v"] else maps["vision"][0].shape[-1]
        b = _np(boxes).reshape(-1, 4)
        self.image = np.asarray(image)
        if len(b) == R - 1:  # the global IMG region is region 0: the whole image
            b = np.concatenate([[[0, 0, self.image.shape[1], self.image.shape[0]]], b])
        if len(b) != R:
            raise ValueError(f"{len(b)} boxes but the attention maps cover {R} regions (region 0 = the global "
                             "IMG region); pass one box per region")  # fmt: skip
        keep = [i for i, t in enumerate(tokens) if t != "[PAD]" and (keep_special or t not in SPECIAL_TOKENS)]
        if not keep:
            raise ValueError("no tokens left after dropping special and padding tokens")
        self.boxes, self.tokens = b, [tokens[i] for i in keep]
        shown = {t: w for w, t in enumerate(keep)}  # token index -> index among the shown words
        self.named = {shown[t]: sorted(int(r) for r in rs) for t, rs in (named or {}).items() if t in shown}
        labels = [f"r{j}" for j in range(R)] if region_labels is None else [str(s) for s in region_labels]
        if len(labels) == R - 1:
            labels = ["IMG"] + labels
        self.region_labels = _check_labels(labels, R, "region_labels")
        self.maps = {
            "text": [a[:, keep][:, :, keep] for a in maps["text"]],  # (h, T, T)
            "vision": maps["vision"],  # (h, R, R)
            "t2v": [a[:, keep] for a in maps["t2v"]],  # (h, T, R)
            "v2t": [a[:, :, keep] for a in maps["v2t"]],  # (h, R, T)
        }
        self.top = top if R > 12 else None  # with many proposals, draw only the strongest regions
        self.note = note
        self.directions = [d for d, (f, _, _) in DIRECTIONS.items() if self.maps[f]]
        first = self.directions[0]
        self.state = dict(direction=first, layer=len(self.maps[DIRECTIONS[first][0]]) - 1, head=None,
                          word=0, region=min(1, R - 1))  # fmt: skip
        self._widget = None

    def map2d(self, direction=None, layer=None, head=None) -> np.ndarray:
        """The (queries, keys) map for a direction, layer and head (None = mean of heads)."""
        st = {
            **self.state,
            **{k: v for k, v in dict(direction=direction, layer=layer, head=head).items() if v is not None},
        }
        field = DIRECTIONS[st["direction"]][0]
        a = self.maps[field][st["layer"]]
        return a.mean(0) if st["head"] is None else a[st["head"]]

    def _labels(self, kind: str) -> list[str]:
        """The names of the words or the regions."""
        return self.tokens if kind == "word" else self.region_labels

    def pairs(self, k: int = 5, selected: bool = True) -> pd.DataFrame:
        """The k strongest pairs of the current map: the chosen word's or region's, or any (selected=False)."""
        _, q, kk = DIRECTIONS[self.state["direction"]]
        a, i = self.map2d(), self.state[q]
        if selected:
            return _top(a[i : i + 1], self._labels(q)[i : i + 1], self._labels(kk), k, q, kk)
        return _top(a, self._labels(q), self._labels(kk), k, q, kk)

    def dashed(self) -> list[int]:
        """The regions outlined dashed in the current view: those the chosen word names, or the chosen region."""
        _, q, k = DIRECTIONS[self.state["direction"]]
        if q == "region":
            return [self.state["region"]]
        return list(self.named.get(self.state["word"], [])) if k == "region" else []

    def figure(self) -> Figure:
        """The current view as a static figure (what the widget shows; use it where widgets are not live)."""
        return self._draw(note=True)

    def view(self, **changes) -> Figure:
        """The figure for other controls (as `update` takes them), leaving the explorer and its widget as is."""
        kept, self.state = self.state, self._checked(changes)
        try:
            return self.figure()
        finally:
            self.state = kept

    def _draw(self, note: bool) -> Figure:
        """The two panels of the current view; `note` adds the explorer's note under the title."""
        st = self.state
        field, q, k = DIRECTIONS[st["direction"]]
        a, qi = self.map2d(), st[q]
        qname = self._labels(q)[qi]
        vmax = max(float(a.max()), 1e-9)  # one scale, from 0, for both panels
        cmap = "Oranges" if field == "t2v" else "Blues"
        layer = {"t2v": "co-attention", "v2t": "co-attention", "text": "text", "vision": "vision"}[field]
        head = "mean of heads" if st["head"] is None else f"head {st['head']}"
        fig = Figure(figsize=(12, 4.6), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.3])
        title = f"{st['direction']} · {layer} layer {st['layer']} · {head}"
        fig.suptitle(title + (f"\n{self.note}" if note and self.note else ""), fontsize=11)
        if k == "region":
            mark = " (named: dashed)" if q == "word" and self.dashed() else ""
            plot_image_overlay(self.image, self.boxes, a[qi], ax=ax1, labels=self.region_labels, top=self.top,
                               highlight=self.dashed(), cmap=cmap, vmax=vmax, colorbar=False,
                               title=f"“{qname}” attends to these regions{mark}")  # fmt: skip
        elif q == "region":  # region → word: the chosen region on the image, its weights over the words
            plot_image_overlay(self.image, self.boxes[qi : qi + 1], [1.0], ax=ax1, labels=[qname], highlight=0,
                               colorbar=False, title=f"region {qname}")  # fmt: skip
        else:
            plot_region_to_words(
                a[qi], self.tokens, ax=ax1, vmax=vmax, title=f"“{qname}” attends to these words"
            )
        if q == "region" and k == "word":
            plot_region_to_words(
                a[qi], self.tokens, ax=ax2, vmax=vmax, title=f"region {qname} attends to these words"
            )
        else:
            short = [s if len(s) <= 14 else s[:13] + "…" for s in self._labels(k)]
            plot_heatmap(a, self._labels(q), short, ax=ax2, cmap=cmap, vmax=vmax)
            ax2.add_patch(Rectangle((-0.5, qi - 0.5), a.shape[1], 1, fill=False, edgecolor="red", lw=2))
        return fig

    # ------------------------------------------------------------------ widgets
    @property
    def widget(self):
        """The ipywidgets box (built on first use)."""
        if self._widget is None:
            self._build()
        return self._widget

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _build(self) -> None:
        import ipywidgets as W  # optional: only the interactive explorer needs widgets

        self._busy = False
        self._c = dict(
            direction=W.ToggleButtons(options=self.directions, description="direction"),
            layer=W.IntSlider(min=0, max=0, description="layer", continuous_update=False),
            head=W.Dropdown(description="head"),
            word=W.ToggleButtons(
                options=[(t, i) for i, t in enumerate(self.tokens)],
                description="word",
                style={"button_width": "auto"},
            ),
            region=W.Dropdown(
                options=list(zip(self.region_labels, range(len(self.region_labels)))), description="region"
            ),
        )
        for c in self._c.values():
            c.observe(self._on_change, names="value")
        self._img, self._status, self._table = W.Image(format="png"), W.HTML(), W.HTML()
        note = f'<div class="vl-explorer-note" style="color:#9a3412">⚠ {escape(self.note or "")}</div>'
        parts = [self._c["direction"], W.HBox([self._c["layer"], self._c["head"]]), self._c["word"],
                 self._c["region"], *([W.HTML(note)] if self.note else []), self._img, self._status,
                 self._table]  # fmt: skip
        self._widget = W.VBox(parts)
        self._widget.add_class("vl-explorer")  # names for the page: the browser test finds the parts by them
        self._img.add_class("vl-explorer-map")
        self._c["word"].add_class("vl-explorer-words")
        self._render()

    def _push(self) -> None:
        """Copy the state into the controls (ranges and options depend on the direction)."""
        st, c = self.state, self._c
        field, q, _ = DIRECTIONS[st["direction"]]
        self._busy = True
        c["direction"].value = st["direction"]
        c["layer"].max = len(self.maps[field]) - 1
        c["layer"].value = st["layer"]
        c["head"].options = [("mean of heads", -1)] + [
            (f"head {h}", h) for h in range(self.maps[field][0].shape[0])
        ]
        c["head"].value = -1 if st["head"] is None else st["head"]
        c["word"].value, c["region"].value = st["word"], st["region"]
        c["word"].disabled, c["region"].disabled = q != "word", q != "region"
        self._busy = False

    def _render(self) -> None:
        """Redraw the widget: controls, the figure as an image, the status line, the chosen query's top pairs."""
        self._push()
        self._img.value = _png_bytes(self._draw(note=False))
        st = self.state
        _, q, k = DIRECTIONS[st["direction"]]
        qname, dashed = self._labels(q)[st[q]], self.dashed()
        boxes = ", ".join(self.region_labels[r] for r in dashed)
        if q == "region":
            text = f"dashed: region {boxes}"
        elif dashed:
            text = f"dashed: {boxes}, the object “{qname}” names"
        else:
            text = f"“{qname}” names no object here" if k == "region" else ""
        head = "mean" if st["head"] is None else st["head"]
        data = dict(
            direction=st["direction"],
            layer=st["layer"],
            head=head,
            query=qname,
            dashed=",".join(map(str, dashed)),
        )
        attrs = " ".join(f'data-{key}="{escape(str(v))}"' for key, v in data.items())
        self._status.value = f'<div class="vl-explorer-status" {attrs}>{escape(text)}</div>'
        table = self.pairs().reset_index()
        table = table.drop(columns=table.columns[1])  # the chosen query: named in the caption
        self._table.value = (f"<b>strongest {k}s for “{escape(qname)}”</b>"
                             + table.to_html(index=False, border=0, classes="vl-explorer-pairs"))  # fmt: skip

    def _on_change(self, change) -> None:
        if self._busy:
            return
        name = next(k for k, c in self._c.items() if c is change["owner"])
        value = change["new"]
        self.state = self._checked({name: None if name == "head" and value == -1 else value})
        self._render()

    def update(self, **changes) -> Figure:
        """Change direction / layer / head (None = mean) / word / region, redraw the widget, return the figure."""
        self.state = self._checked(changes)
        if self._widget is not None:
            self._render()
        return self.figure()

    def _checked(self, changes) -> dict:
        """The state with these changes, checked (a ValueError names a bad control and changes nothing)."""
        unknown = set(changes) - set(self.state)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; choose from {sorted(self.state)}")
        st = {**self.state, **changes}
        if st["direction"] not in self.directions:
            raise ValueError(f"direction must be one of {self.directions}, got {st['direction']!r}")
        maps = self.maps[DIRECTIONS[st["direction"]][0]]
        if "direction" in changes:  # keep the layer and head where the new direction has them
            st["layer"] = changes.get("layer", min(st["layer"], len(maps) - 1))
            st["head"] = changes.get("head", st["head"] if (st["head"] or 0) < maps[0].shape[0] else None)
        limits = dict(layer=len(maps), head=maps[0].shape[0], word=len(self.tokens), region=len(self.boxes))
        for key, n in limits.items():
            if not (key == "head" and st[key] is None) and not 0 <= st[key] < n:
                raise ValueError(f"{key} {st[key]} out of range [0, {n})")
        return st


def explore(out, tokens, image, boxes, region_labels=None, keep_special: bool = False, named=None,
            note: str | None = None, top: int = 5) -> AttentionExplorer:  # fmt: skip
    """The explorer over an existing forward pass (output_attentions=True) of one image-text pair."""
    return AttentionExplorer.from_output(
        out, tokens, image, boxes, region_labels, keep_special, named, note, top
    )


def _png_bytes(fig: Figure, dpi: int = 80) -> bytes:
    """A figure as PNG bytes (the widget shows it as an image: one copy, whatever the frontend)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _class_labels(cls_prob) -> list[str] | None:
    """Region names from the CNN's most likely ImageNet class: IMG for region 0, then 'r<j> <class>'."""

    p, names = _np(cls_prob), imagenet_class_names()
    if p.ndim != 2 or p.shape[1] != len(names):
        return None
    return ["IMG"] + [f"r{j} {names[c]}" for j, c in enumerate(p[1:].argmax(-1), 1)]


def _run_pair(model, tokenizer, image, boxes, text, vis, device, extractor):
    """Tokenise `text`, extract regions if needed, run the model with output_attentions on the one pair.
    -> (output, tokens, image, boxes, visual inputs)"""
    if not isinstance(text, str):
        raise ValueError(f"the explorer shows one image-text pair; got {type(text).__name__} of texts")
    image = load_image(image)
    if vis is None:
        ext = extractor or RegionExtractor(device=device)
        if ext.feature_dim != model.config.v_feature_size:
            raise ValueError(f"the extractor gives {ext.feature_dim}-d region features but the model expects "
                             f"v_feature_size={model.config.v_feature_size}; pass visual_inputs yourself")  # fmt: skip
        vis = make_visual_inputs(ext(image, boxes), max_regions=ext.max_regions)
        boxes = vis["boxes"]
    feats, pos = vis["visual_feats"], vis["visual_pos"]
    if feats.dim() == 3:
        if feats.shape[0] != 1:
            raise ValueError(
                f"visual_inputs hold a batch of {feats.shape[0]} images; the explorer shows one pair"
            )
        feats, pos = feats[0], pos[0]
    if boxes is None:
        if "boxes" not in vis:
            raise ValueError("pass the region boxes (R, 4) pixels: visual_inputs hold none")
        boxes = vis["boxes"].reshape(-1, 4)
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    model = model.to(dev).eval()
    enc = tokenizer(
        text, return_tensors="pt", truncation=True, max_length=model.config.max_position_embeddings
    )
    with torch.no_grad():
        out = model(enc["input_ids"].to(dev), feats[None].to(dev), pos[None].to(dev),
                    attention_mask=enc["attention_mask"].to(dev), token_type_ids=enc["token_type_ids"].to(dev),
                    output_attentions=True)  # fmt: skip
    return out, tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist()), image, boxes, vis
