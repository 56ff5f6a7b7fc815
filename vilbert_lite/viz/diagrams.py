"""Diagrams drawn from a config, so that they change with it: every layer count, width and id is read from the
config (or the package's own constants), never typed in.

    draw_architecture(ViLBertConfig.preset("base"))    # two streams, co-attention where the model runs it
    draw_architectures({f"depth {n}": ViLBertConfig.preset(f"depth{n}") for n in (2, 4, 6, 8)})  # 4 panels
    draw_coattention_block(config)                      # one co-attention layer (ViLBERT Figure 2b)
    draw_multitask_schedule(run["evals"], run["iterations"], run["tasks"])  # groups, round robin, DSG
    draw_multitask_schedule(dsg_evals(curves))          # DSG simulated on validation curves
    draw_vilt_embedders(ViLTConfig.preset("base"))      # region / grid / patch embedders (ViLT Figure 1)

`layer_order(config)` is the order in which `ViLBertModel`'s encoder runs its layers (the model's own
`layer_schedule`, the official interleaving); the architecture diagram places its boxes by it. Boxes carry a
gid ("t3", "v0", "c2", ...) and the co-attention arrows a gid ("Q_V", "K_W", ...) so that tests can find them.
Figures are built with `Figure()`, like the rest of `vilbert_lite.viz`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch, Rectangle

from vilbert_lite.data.regions import visual_inputs
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.vilbert import layer_schedule
from vilbert_lite.multitask.data import DATASETS, GROUPS
from vilbert_lite.multitask.train import GROUP_HEADS, MTConfig
from vilbert_lite.vilt.inputs import GRID_PAD, MAX_LONGER_RATIO
from vilbert_lite.vilt.model import ViLTConfig

TEXT_C, VIS_C, CO_C, TOP_C = "#cfe2f3", "#fce5cd", "#d9ead3", "#eeeeee"
FS = 9  # font size of box labels (points)
MAX_REGIONS = inspect.signature(visual_inputs).parameters["max_regions"].default  # regions the loader keeps


def _box(ax, x0, y, w, text, color, gid=None, h=0.7, fs=FS, hatch=None):
    """A rounded box of width w centred vertically on y, its label in the middle."""
    ax.add_patch(FancyBboxPatch((x0, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.08", fc=color,
                                ec="0.3", lw=0.8, gid=gid, hatch=hatch))  # fmt: skip
    ax.text(x0 + w / 2, y, text, ha="center", va="center", fontsize=fs, gid=gid,
            bbox=dict(fc=color, ec="none", pad=1) if hatch else None)  # fmt: skip


def _arrow(ax, start, end, gid=None, color="0.25", **kw):
    style = dict(arrowstyle="-|>", color=color, lw=0.9, shrinkA=0, shrinkB=0, **kw)
    return ax.annotate("", xy=end, xytext=start, gid=gid, arrowprops=style)


# ------------------------------------------------------------------------------------------- architecture
def layer_order(config: ViLBertConfig) -> list[tuple[str, int]]:
    """The order in which the encoder runs its layers: ("t", i) text layer i, ("v", i) visual layer i,
    ("c", k) co-attention layer k. It is the model's own `layer_schedule` (the official interleaving,
    ViLBERT Section 2.2): before co-attention k run the text layers below t_biattention_id[k] and the visual
    layers below v_biattention_id[k] not yet run; the remaining visual, then text layers run after the last."""
    return [(kind, i) for kind, i, _ in layer_schedule(config)]


def layer_rows(config: ViLBertConfig) -> tuple[dict[tuple[str, int], int], int]:
    """Row of every layer box in the architecture diagram (0 = the lowest layer) and the number of rows: each
    co-attention layer gets a row of its own; the text and visual layers run between two of them stack side by
    side, one row each, from the row after the previous co-attention layer."""
    rows, y, stage = {}, 0, {"t": [], "v": []}

    def flush():
        nonlocal y
        for kind, ids in stage.items():
            rows.update({(kind, i): y + j for j, i in enumerate(ids)})
        y += max(len(ids) for ids in stage.values())
        stage["t"], stage["v"] = [], []

    for kind, i in layer_order(config):
        if kind == "c":
            flush()
            rows["c", i], y = y, y + 1
        else:
            stage[kind].append(i)
    flush()
    return rows, y


def draw_architecture(
    config: ViLBertConfig, ax=None, compact: bool = False, title: str | None = None
) -> Figure:
    """ViLBERT's two streams (ViLBERT Figure 1, Section 2.2) from `config`: image regions (left) and words
    (right) at the bottom, each stream's TRM layers as a column of boxes, the Co-TRM layers across both
    columns at the rows where the encoder runs them (`layer_rows`), frozen layers hatched, poolers, fusion and
    heads on top. `ax`: draw into it (e.g. one panel of `draw_architectures`); `compact`: short labels."""
    c = config
    rows, n_rows = layer_rows(c)
    frozen = {(kind, i) for kind, i, f in layer_schedule(c) if f}
    if ax is None:
        fig = Figure(figsize=(7.2, 3.0 + 0.4 * n_rows), layout="constrained")
        ax = fig.add_subplot()
    W, XV, XT = 2.0, 0.0, 2.4  # column width, left edges of the visual and the text column
    mid = {"v": XV + W / 2, "t": XT + W / 2}
    y_lay = 2.6  # row 0 of the layers
    y_top = y_lay + n_rows + 0.5  # poolers
    fs = 8 if compact else FS
    if compact:
        inputs = {
            "v": f"regions ({c.v_feature_size}-d\n+ 5-d location)",
            "t": f"words\n(vocab {c.vocab_size})",
        }
        embeds = {"v": f"embed → {c.v_hidden_size}", "t": f"embed → {c.hidden_size}"}
    else:
        inputs = {
            "v": f"image regions <IMG>, v1 … v{MAX_REGIONS}\n{c.v_feature_size}-d feature + 5-d location\n"
            "(x1, y1, x2, y2, area)",
            "t": f"words [CLS] w1 … wT [SEP]\n(WordPiece vocabulary {c.vocab_size})",
        }
        embeds = {
            "v": f"Linear {c.v_feature_size}→{c.v_hidden_size} + Linear 5→{c.v_hidden_size}, LN",
            "t": f"word + position + segment → {c.hidden_size}, LN",
        }
    for s, x0 in (("v", XV), ("t", XT)):
        _box(ax, x0, 0.0, W, inputs[s], TOP_C, h=1.1 if compact else 1.3, fs=fs)
        _box(ax, x0, 1.5, W, embeds[s], VIS_C if s == "v" else TEXT_C, gid=f"{s}_emb", fs=fs)
        _arrow(ax, (mid[s], 0.65 - 0.1 * compact), (mid[s], 1.15))
    if not compact:
        streams = {
            "v": ("visual stream", c.v_hidden_size, c.v_num_attention_heads, c.v_intermediate_size),
            "t": ("text stream (BERT)", c.hidden_size, c.num_attention_heads, c.intermediate_size),
        }
        for s, (what, hidden, heads, ff) in streams.items():
            ax.text(mid[s], -0.95, f"{what}: {hidden}-d, {heads} heads, FF {ff}", ha="center", va="center",
                    fontsize=FS, style="italic")  # fmt: skip
    for (kind, i), r in rows.items():
        y = y_lay + r
        if kind == "c":
            label = f"Co-TRM {i}"
            if not compact:
                label += f": co-attention, {c.bi_hidden_size}-d, {c.bi_num_attention_heads} heads"
            _box(ax, XV, y, XT + W - XV, label, CO_C, gid=f"c{i}", fs=fs)
        else:
            label = f"TRM {i}" + (" (frozen)" if (kind, i) in frozen else "")
            x0, col = (XV, VIS_C) if kind == "v" else (XT, TEXT_C)
            _box(
                ax,
                x0,
                y,
                W,
                label,
                col,
                gid=f"{kind}{i}",
                fs=fs,
                hatch="///" if (kind, i) in frozen else None,
            )
    # each stream's data path: embeddings -> its own layers and the co-attention layers, in row order
    for s in ("v", "t"):
        ys = [1.5] + sorted(y_lay + r for (kind, _), r in rows.items() if kind in (s, "c")) + [y_top]
        for y0, y1 in zip(ys, ys[1:]):
            _arrow(ax, (mid[s], y0 + 0.35), (mid[s], y1 - (0.65 if y1 == y_top and not compact else 0.35)))
    fusion = "⊙" if c.fusion_method == "mul" else "+"
    if compact:
        _box(ax, XV, y_top, XT + W - XV, f"poolers → h_IMG {fusion} h_CLS\n({c.bi_hidden_size}-d) → heads",
             TOP_C, h=0.9, fs=fs)  # fmt: skip
    else:
        region_target = (
            f"{c.v_target_size}-class KL" if c.visual_target == 0 else f"{c.v_feature_size}-d regression"
        )
        hw = W / 2 - 0.05  # the outer half of a column: a masked-prediction head, the inner half: a pooler
        _box(ax, XV, y_top, hw, f"masked regions\n{region_target}", VIS_C, h=0.8)
        _box(ax, XV + W - hw, y_top, hw, f"v_pooler: <IMG>\n→ {c.bi_hidden_size}", VIS_C, h=0.8)
        _box(ax, XT, y_top, hw, f"t_pooler: [CLS]\n→ {c.bi_hidden_size}", TEXT_C, h=0.8)
        _box(ax, XT + W - hw, y_top, hw, f"masked words\n{c.vocab_size}-way", TEXT_C, h=0.8)
        _box(ax, XV + W / 2, y_top + 1.2, XT - XV, f"h_IMG {fusion} h_CLS ({c.fusion_method})", CO_C)
        _box(ax, XV + W / 2, y_top + 2.3, XT - XV, "alignment (2-way)\nand task heads", TOP_C, h=0.8)
        for x0 in (XV, XT):  # the stream's last states feed its head and its pooler
            ax.plot([x0 + hw / 2, x0 + W - hw / 2], [y_top - 0.65] * 2, color="0.25", lw=0.9)
            for x in (x0 + hw / 2, x0 + W - hw / 2):
                _arrow(ax, (x, y_top - 0.65), (x, y_top - 0.4))
        for x in (XV + W - hw / 2, XT + hw / 2):
            _arrow(ax, (x, y_top + 0.4), (x, y_top + 0.85))
        _arrow(ax, (mid["v"] + W / 2 + 0.2, y_top + 1.55), (mid["v"] + W / 2 + 0.2, y_top + 1.9))
    ax.set_xlim(XV - 0.1, XT + W + 0.1)
    ax.set_ylim(-0.8 if compact else -1.2, y_top + (0.6 if compact else 2.8))
    ax.axis("off")
    ax.set_title(title or f"ViLBERT: {c.v_num_hidden_layers} visual TRM, {c.num_hidden_layers} text TRM, "
                 f"{c.num_co_layers} Co-TRM", fontsize=10)  # fmt: skip
    return ax.figure


def draw_architectures(configs: Mapping[str, ViLBertConfig]) -> Figure:
    """Several architectures side by side on one vertical scale (e.g. ViLBERT Table 2's depth variants)."""
    n_rows = max(layer_rows(c)[1] for c in configs.values())
    fig = Figure(figsize=(2.7 * len(configs), 2.2 + 0.3 * n_rows), layout="constrained")
    axes = fig.subplots(1, len(configs), sharey=True, squeeze=False)[0]
    for ax, (name, c) in zip(axes, configs.items()):
        draw_architecture(c, ax=ax, compact=True, title=f"{name}: {c.num_co_layers} Co-TRM, "
                          f"{c.v_num_hidden_layers} visual TRM")  # fmt: skip
    top = max(ax.get_ylim()[1] for ax in axes)
    for ax in axes:
        ax.set_ylim(-0.8, top)
    return fig


# ------------------------------------------------------------------------------------------- co-attention
def draw_coattention_block(config: ViLBertConfig | None = None) -> Figure:
    """One co-attention transformer layer (ViLBERT Figure 2b): each stream's queries attend to the OTHER
    stream's keys and values (visual: Q_V with K_W, V_W; text: Q_W with K_V, V_V), then add & norm,
    feed-forward, add & norm, with residual connections. With a config, widths are printed on the boxes."""
    c = config
    fig = Figure(figsize=(8.2, 6.0), layout="constrained")
    ax = fig.add_subplot()
    X = {"v": 0.6, "t": 4.6}  # left edges of the two stream columns, each 2.8 wide
    W = 2.8
    size = {}  # stream -> (hidden, feed-forward) widths
    if c:
        size = {"v": (c.v_hidden_size, c.v_intermediate_size), "t": (c.hidden_size, c.intermediate_size)}
    name = {"v": ("V", "regions", "R"), "t": ("W", "words", "T")}
    other = {"v": "t", "t": "v"}
    for s, x0 in X.items():
        sub, what, n = name[s]
        col = VIS_C if s == "v" else TEXT_C
        dims = f": {n} × {size[s][0]}" if c else ""
        _box(ax, x0, 0.0, W, f"$H_{sub}^{{(i)}}$ ({what}){dims}", col, gid=f"{s}_in")
        att = "Multi-Head Co-Attention"
        if c:
            att += f"\n{c.bi_num_attention_heads} heads, projections {size[s][0]}→{c.bi_hidden_size}"
        _box(ax, x0, 2.6, W, att, CO_C, gid=f"{s}_att", h=0.8)
        add1 = "Add & Norm" + (f"  (Linear {c.bi_hidden_size}→{size[s][0]})" if c else "")
        _box(ax, x0, 3.8, W, add1, col)
        ff = "Feed Forward" + (f"  ({size[s][0]}→{size[s][1]}→{size[s][0]})" if c else "")
        _box(ax, x0, 5.0, W, ff, col)
        _box(ax, x0, 6.2, W, "Add & Norm", col)
        _box(ax, x0, 7.4, W, f"$H_{sub}^{{(i+1)}}$", col, gid=f"{s}_out")
        for y in (2.6, 3.8, 5.0, 6.2):
            _arrow(ax, (x0 + W / 2, y + 0.4 if y == 2.6 else y + 0.35), (x0 + W / 2, y + 0.85))
        q, k, v = (x0 + W * f for f in ((0.2, 0.5, 0.8) if s == "v" else (0.8, 0.2, 0.5)))  # entry points
        _arrow(ax, (q, 0.35), (q, 2.2), gid=f"Q_{sub}")  # queries: this stream
        osub = name[other[s]][0]
        src = X[other[s]] + W * (0.25 if s == "v" else 0.75)  # keys and values: the other stream
        for key, xe in ((f"K_{osub}", k), (f"V_{osub}", v)):
            _arrow(ax, (src, 0.35), (xe, 2.2), gid=key)
        for lab, x1, x2 in (
            (f"Q_{sub}", q, q),
            (f"K_{osub}", src, k),
            (f"V_{osub}", src, v),
        ):  # on the arrows
            ax.text(x1 + (x2 - x1) * 0.8, 0.35 + 1.85 * 0.8, f"${lab}$", ha="center", va="center",
                    fontsize=10, gid=f"label:{lab}", bbox=dict(fc="white", ec="none", pad=0.5))  # fmt: skip
        side = x0 - 0.3 if s == "v" else x0 + W + 0.3  # residuals on the outer side
        edge = x0 if s == "v" else x0 + W
        for x, y0, y1 in ((edge, 0.0, 3.8), (x0 + W / 2, 4.4, 6.2)):
            ax.plot([x, side, side], [y0, y0, y1], color="0.45", lw=0.9)
            _arrow(ax, (side, y1), (edge, y1), color="0.45")
    ax.text(X["v"] + W / 2, 8.15, "visual stream", ha="center", fontsize=10, weight="bold")
    ax.text(X["t"] + W / 2, 8.15, "linguistic stream", ha="center", fontsize=10, weight="bold")
    ax.set_xlim(0, 8.0)
    ax.set_ylim(-0.6, 8.5)
    ax.axis("off")
    ax.set_title("co-attention transformer layer (ViLBERT Figure 2b)", fontsize=11)
    return fig


# ---------------------------------------------------------------------------------------------- 12-in-1
def dsg_evals(
    curves: Mapping[str, Sequence[tuple[int, float]]], config: MTConfig | None = None
) -> list[dict]:
    """Dynamic Stop-and-Go (12-in-1 Algorithm 1) simulated with the real `StopAndGo` on validation curves
    {data set: [(iteration, score), ...]} -> eval rows in a multi-task run's format (`run["evals"]`)."""
    cfg = config or MTConfig(tasks=tuple(curves), dsg=True)
    names = list(curves)
    dsg = {t: cfg.stop_and_go() for t in names}
    rows = []
    events = sorted((it, names.index(name), name, score) for name in names for it, score in curves[name])
    for it, _, t, score in events:
        dsg[t].step(score)
        rows.append({"kind": "eval", "iter": it, "task": t, "score": score, "best": dsg[t].best,
                     "state": dsg[t].state, "dsg": {u: dsg[u].state for u in names}})  # fmt: skip
    return rows


def schedule_states(tasks: Sequence[str], iterations: int, evals=(), delta: int = MTConfig.delta):
    """-> (stopped, updates), (n_tasks, iterations) bool arrays over iterations 1..N: whether each data set
    is in stop mode at the iteration (the state its last validation before it decided; "go" before any) and
    whether it makes an update there (go, or stop and iteration mod Δ = 0), as the multi-task loop does."""
    stopped = np.zeros((len(tasks), iterations), bool)
    for k, t in enumerate(tasks):
        for e in sorted((e for e in evals if e["task"] == t), key=lambda e: e["iter"]):
            stopped[k, e["iter"] :] = e["state"] == "stop"  # column j is iteration j + 1
    return stopped, ~stopped | (np.arange(1, iterations + 1) % delta == 0)


def draw_multitask_schedule(evals=None, iterations: int | None = None, tasks: Sequence[str] | None = None,
                            delta: int = MTConfig.delta, title: str | None = None) -> Figure:  # fmt: skip
    """The 12-in-1 task groups (12-in-1 Section 3) with their data sets and heads, and below the round-robin
    schedule: one row per data set (the order within an iteration), one column per iteration; a cell is
    coloured when the data set makes an update. With `evals` (a run's `evals` or `dsg_evals(...)`): stop
    periods (red strip, updates only every Δ iterations) and validations (dots)."""
    evals = list(evals or [])
    tasks = list(tasks or [t for t in DATASETS if any(e["task"] == t for e in evals)] or DATASETS)
    iterations = iterations or max((e["iter"] for e in evals), default=6 * delta)
    stopped, updates = schedule_states(tasks, iterations, evals, delta)
    groups = list(dict.fromkeys(DATASETS[t][0] for t in DATASETS))
    color = {g: colormaps["tab10"](k) for k, g in enumerate(groups)}
    fig = Figure(figsize=(10, 2.6 + 0.32 * len(tasks)), layout="constrained")
    ax_g, ax = fig.subplots(2, 1, height_ratios=[2.2, 0.32 * len(tasks) + 0.6])
    for k, g in enumerate(groups):  # the groups, each with its data sets
        names = [t for t in DATASETS if DATASETS[t][0] == g]
        ax_g.add_patch(FancyBboxPatch((k + 0.04, 0.05), 0.92, 0.9, boxstyle="round,pad=0,rounding_size=0.04",
                                      fc=(*to_rgb(color[g]), 0.25), ec=color[g], lw=1.2, gid=g))  # fmt: skip
        lines = [f"{g}: {GROUPS[g]}", f"head: {GROUP_HEADS[g]}", ""]
        lines += [f"{t} ({DATASETS[t][1]})" + ("" if t in tasks else " (not trained)") for t in names]
        ax_g.text(k + 0.5, 0.5, "\n".join(lines), ha="center", va="center", fontsize=8.5)
    ax_g.set_xlim(0, len(groups))
    ax_g.set_ylim(0, 1)
    ax_g.axis("off")
    ax_g.set_title(title or "12-in-1: task groups and the round-robin schedule", fontsize=11)
    # per data set: 3 sub-rows of cells, then 1 white sub-row that holds the stop strip
    rgb = np.ones((len(tasks), 4, iterations, 3))
    for k, t in enumerate(tasks):
        rgb[k, :3, updates[k]] = to_rgb(color[DATASETS[t][0]])
        rgb[k, :3, ~updates[k]] = 0.85
    ax.imshow(rgb.reshape(-1, iterations, 3), aspect="auto", interpolation="nearest",
              extent=(0.5, iterations + 0.5, len(tasks) - 0.5, -0.5))  # fmt: skip
    for k, t in enumerate(tasks):
        runs = np.flatnonzero(np.diff(np.r_[0, stopped[k].astype(int), 0]))  # starts and ends of stop periods
        ax.broken_barh(
            [(a + 0.5, b - a) for a, b in zip(runs[::2], runs[1::2])], (k + 0.29, 0.17), color="red"
        )
        it = [e["iter"] for e in evals if e["task"] == t]
        ax.plot(it, [k - 0.125] * len(it), "k.", ms=3)
    ax.set_yticks(np.arange(len(tasks)) - 0.125, [f"{k + 1}. {t}" for k, t in enumerate(tasks)], fontsize=9)
    ax.set_xlabel("iteration (within one, the data sets update in order from the top)", fontsize=9)
    ax.tick_params(labelsize=8)
    handles = [
        Patch(fc="0.6", label="update (group colour)"),
        Patch(fc="0.85", label=f"skipped (stop, Δ = {delta})"),
        Patch(fc="red", label="stop mode"),
    ]
    if evals:
        handles.append(ax.plot([], [], "k.", label="validation")[0])
    ax.legend(
        handles=handles, fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False
    )
    return fig


# ------------------------------------------------------------------------------------------------- ViLT
def draw_vilt_embedders(vilt_config: ViLTConfig | None = None, vilbert_config: ViLBertConfig | None = None,
                        costs: Mapping[str, str] | None = None) -> Figure:  # fmt: skip
    """Three ways to turn an image into visual tokens, side by side (ViLT Figure 1; Figure 2's VE):
    region features (detector -> RoI -> Linear, ViLBERT), grid features (CNN -> feature-map cells -> Linear,
    Pixel-BERT; ViLT's `visual_embed="grid"`) and patch projection (P x P patches -> Linear, ViLT). Sizes come
    from the configs (defaults: the base presets); `costs` {"region"|"grid"|"patch": text} adds a label under
    a panel, e.g. measured times; the config's own `visual_embed` is outlined."""
    vc = vilt_config or ViLTConfig.preset("base")
    bc = vilbert_config or ViLBertConfig.preset("base")
    P, S = vc.patch_size, vc.image_size
    long_side = int(S * MAX_LONGER_RATIO)
    cells = {"grid": (S // GRID_PAD, long_side // GRID_PAD), "patch": (S // P, long_side // P)}
    steps = {
        "region": ["CNN backbone + region proposals, NMS",
                   f"RoI pooling: ≤ {MAX_REGIONS} regions × {bc.v_feature_size}-d + 5-d boxes",
                   f"Linear {bc.v_feature_size}→{bc.v_hidden_size} + Linear 5→{bc.v_hidden_size}"],
        "grid": [f"CNN backbone (stride {GRID_PAD})",
                 f"≤ {cells['grid'][0]}×{cells['grid'][1]} cells × {vc.grid_feature_size}-d",
                 f"Linear {vc.grid_feature_size}→{vc.hidden_size}"],
        "patch": [f"cut into {P}×{P} patches",
                  f"≤ {cells['patch'][0]}×{cells['patch'][1]} patches × 3·{P}·{P} = {3 * P * P} pixels",
                  f"Linear {3 * P * P}→{vc.hidden_size}"],
    }  # fmt: skip
    titles = {"region": "region features (ViLBERT)", "grid": "grid features (Pixel-BERT)",
              "patch": "patch projection (ViLT)"}  # fmt: skip
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (kind, labels) in zip(axes, steps.items()):
        ax.add_patch(Rectangle((0.25, 0.1), 0.5, 0.75, fc="#dde8d0", ec="0.3"))  # the image
        if kind == "region":  # a few boxes, for the picture only
            for x, y, w, h in ((0.33, 0.15, 0.17, 0.3), (0.45, 0.4, 0.22, 0.35), (0.36, 0.55, 0.14, 0.2)):
                ax.add_patch(Rectangle((x, y), w, h, fill=False, ec="tab:red", lw=1.2))
        else:  # the cells / patches of an image of the largest size: rows x columns
            rows, cols = cells[kind]
            for j in range(1, cols):
                ax.plot([0.25 + 0.5 * j / cols] * 2, [0.1, 0.85], color="0.4", lw=0.6)
            for j in range(1, rows):
                ax.plot([0.25, 0.75], [0.1 + 0.75 * j / rows] * 2, color="0.4", lw=0.6)
        ax.text(0.5, -0.12, f"image, shorter side {S} px", ha="center", fontsize=8.5)
        for j, lab in enumerate(labels):  # from the image up
            y = 1.45 + 0.75 * j
            _box(ax, 0.0, y, 1.0, lab, VIS_C if j < 2 else CO_C, h=0.5, fs=8.5)
            _arrow(ax, (0.5, y - 0.5 if j else 0.88), (0.5, y - 0.25))
        _arrow(ax, (0.5, 1.45 + 0.75 * 2 + 0.25), (0.5, 3.55))
        width = bc.v_hidden_size if kind == "region" else vc.hidden_size
        ax.text(0.5, 3.7, f"visual tokens → transformer ({width}-d)", ha="center", fontsize=8.5)
        if costs and kind in costs:
            ax.text(0.5, -0.35, costs[kind], ha="center", fontsize=10, weight="bold", gid=f"cost:{kind}")
        ax.set_title(titles[kind], fontsize=10, weight="bold" if kind == vc.visual_embed else "normal")
        if kind == vc.visual_embed:  # this config's embedder
            ax.add_patch(Rectangle((-0.04, -0.45), 1.08, 4.35, fill=False, ec="tab:blue", lw=1.5, ls="--"))
        ax.set_xlim(-0.06, 1.06)
        ax.set_ylim(-0.5, 3.95)
        ax.axis("off")
    return fig
