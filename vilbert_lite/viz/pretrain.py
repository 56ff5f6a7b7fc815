"""Tables and figures of notebook 04: the pretraining objectives shown on a real batch and measured, the
training curves of a run folder, its held-out evaluation, sampled captions and alignment scores.

    before, after = batch, make_pretraining_batch(batch, g, tok, vocab_size)
    style_masking(masking_table(tok, before, after, rows=range(6)))   # tokens before / after, rule highlighted
    plot_region_masking(image, before, after, item=0)                 # masked regions on the image
    masking_statistics(dataset, tok, vocab_size, n_batches=50)        # the 15% / 80-10-10 / 90-10 rates, measured
    swap_table(dataset, before, after)                                # alignment labels after caption swapping
    plot_pretraining_curves(load_metrics(run))                        # loss components and accuracies per step
    eval_table(run, text_run)                                         # ViLBERT vs the text-only model
    alignment_scores(model, tok, world, "val", visual)                # true vs other vs hard-negative captions
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from vilbert_lite.data.collate import make_collate
from vilbert_lite.pretrain.captions import alignment_score
from vilbert_lite.pretrain.objectives import make_pretraining_batch, special_ids

OUTCOMES = ("[MASK]", "random", "unchanged")  # what happens to a chosen token
OUTCOME_COLORS = {"[MASK]": "#f4a3a3", "random": "#f6cf7d", "unchanged": "#9fd49f", "zeroed": "#f4a3a3"}


# ------------------------------------------------------------------------------------------------- masking
def token_outcomes(
    original: torch.Tensor, masked: torch.Tensor, labels: torch.Tensor, mask_id: int
) -> np.ndarray:
    """Per position of (T,) or (B, T) ids: "" (not chosen), "[MASK]", "random" or "unchanged", read from the
    masked ids themselves (a random token that happens to equal the original counts as unchanged)."""
    chosen = (labels != -1).numpy()
    out = np.full(chosen.shape, "", dtype=object)
    out[chosen & (masked == mask_id).numpy()] = "[MASK]"
    out[chosen & (masked != mask_id).numpy() & (masked != original).numpy()] = "random"
    out[chosen & (masked == original).numpy()] = "unchanged"
    return out


def masking_table(tokenizer, before: dict, after: dict, rows: Sequence[int] | None = None) -> pd.DataFrame:
    """Captions of a batch before and after `make_pretraining_batch`: two rows per item ("caption", "input"),
    one column per token position; `outcomes` (same shape, "" / [MASK] / random / unchanged) in `.attrs`.
    The "caption" row is the text the item carries after caption swapping (what the labels refer to)."""
    mask_id = special_ids(tokenizer)[0]
    rows = range(after["input_ids"].shape[0]) if rows is None else rows
    original = _swapped_ids(before, after)
    data, outcomes, index = [], [], []
    for i in rows:
        n = int(after["attention_mask"][i].sum())
        orig, masked = original[i, :n], after["input_ids"][i, :n]
        data += [
            tokenizer.convert_ids_to_tokens(orig.tolist()),
            tokenizer.convert_ids_to_tokens(masked.tolist()),
        ]
        outcome = list(token_outcomes(orig, masked, after["lm_labels"][i, :n], mask_id))
        outcomes += [[""] * n, outcome]
        index += [(int(i), "caption"), (int(i), "input")]
    width = max(len(r) for r in data)
    table = pd.DataFrame([r + [""] * (width - len(r)) for r in data],
                         index=pd.MultiIndex.from_tuples(index, names=["item", ""]))  # fmt: skip
    table.attrs["outcomes"] = [r + [""] * (width - len(r)) for r in outcomes]
    return table


def style_masking(table: pd.DataFrame):
    """A `masking_table` with every chosen token coloured by what happened to it (a pandas Styler)."""
    colors = np.array(table.attrs["outcomes"], dtype=object)

    def paint(_):
        return pd.DataFrame(
            [[f"background-color: {OUTCOME_COLORS[o]}" if o else "" for o in row] for row in colors],
            index=table.index, columns=table.columns,
        )  # fmt: skip

    return table.style.apply(paint, axis=None).set_uuid("masking")


def _swapped_ids(before: dict, after: dict) -> torch.Tensor:
    """The unmasked ids of the captions each item carries after swapping (rows of `before` by text_index)."""
    pos = {int(t): k for k, t in enumerate(before["text_index"])}
    return before["input_ids"][[pos[int(t)] for t in after["text_index"]]]


def plot_region_masking(image, before: dict, after: dict, item: int = 0, n_dims: int = 64, title: str | None = None,
                        save=None) -> Figure:  # fmt: skip
    """One batch item's regions on its image (masked and zeroed: filled; masked and kept: dashed; the rest:
    thin) next to its region features before and after masking (first `n_dims` dimensions)."""
    n = int(before["visual_attention_mask"][item].sum())
    boxes = before["boxes"][item, :n].numpy()
    chosen = after["region_labels"][item, :n].bool()
    zeroed = chosen & (after["visual_feats"][item, :n] == 0).all(-1)
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax, ax_b, ax_a = fig.subplots(1, 3, width_ratios=[1.2, 1, 1])
    ax.imshow(np.asarray(image))
    for r in range(1, n):  # region 0 is the whole image (IMG), never masked
        x1, y1, x2, y2 = boxes[r]
        if zeroed[r]:
            ax.add_patch(
                Rectangle((x1, y1), x2 - x1, y2 - y1, facecolor="black", alpha=0.75, edgecolor="red", lw=2)
            )
            label = f"r{r} zeroed"
        elif chosen[r]:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="red", lw=2, ls="--"))
            label = f"r{r} kept"
        else:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", lw=1))
            label = f"r{r}"
        ax.text(x1 + 1, y1 + 1, label, fontsize=7, va="top", color="black",
                bbox=dict(facecolor="white", alpha=0.8, lw=0, pad=1))  # fmt: skip
    ax.set_axis_off()
    ax.set_title(title or "red filled: masked, zeroed · red dashed: masked, kept", fontsize=9)
    feats_b, feats_a = before["visual_feats"][item, :n, :n_dims], after["visual_feats"][item, :n, :n_dims]
    vmax = float(feats_b.abs().max()) or 1.0
    for a, f, name in ((ax_b, feats_b, "before"), (ax_a, feats_a, "after masking")):
        a.imshow(f.numpy(), aspect="auto", cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        a.set_yticks(
            range(n), ["IMG"] + [f"r{r}" + (" *" if chosen[r] else "") for r in range(1, n)], fontsize=7
        )
        a.set_xlabel(f"feature dimension (first {n_dims})", fontsize=8)
        a.set_title(f"region features {name}", fontsize=9)
    if save:
        fig.savefig(save, dpi=110)
    return fig


def masking_statistics(dataset, tokenizer, vocab_size: int, n_batches: int = 50, batch_size: int = 64,
                       seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """The rates of `make_pretraining_batch`, measured over `n_batches` random batches of `dataset` (a
    `CaptionImageDataset`) and set next to the rules of ViLBERT (arXiv 1908.02265) §3.2 -> DataFrame (rule, expected,
    measured, out of)."""
    mask_id, special = special_ids(tokenizer)
    collate = make_collate(tokenizer.pad_token_id)
    g = torch.Generator().manual_seed(seed)
    c: dict[str, int] = {}

    def add(key, value):
        c[key] = c.get(key, 0) + int(value)

    for _ in range(n_batches):
        idx = torch.randint(len(dataset), (batch_size,), generator=g).tolist()
        before = collate([dataset[i] for i in idx])
        after = make_pretraining_batch(before, g, (mask_id, special), vocab_size)
        orig = _swapped_ids(before, after)
        real = after["attention_mask"].bool()
        out = token_outcomes(orig, after["input_ids"], after["lm_labels"], mask_id)
        add("maskable", (real & ~torch.isin(orig, torch.tensor(special))).sum())
        add("special", (real & torch.isin(orig, torch.tensor(special))).sum())
        add("special_chosen", (torch.isin(orig, torch.tensor(special)) & (after["lm_labels"] != -1)).sum())
        for o in OUTCOMES:
            add(o, (out == o).sum())
        vreal = after["visual_attention_mask"].bool()
        chosen = after["region_labels"].bool()
        add("regions", vreal[:, 1:].sum())
        add("img_chosen", chosen[:, 0].sum())
        add("zeroed", (chosen & (after["visual_feats"] == 0).all(-1)).sum())
        add("kept", (chosen & (after["visual_feats"] == before["visual_feats"]).all(-1)).sum())
        add("items", len(idx))
        add("swappable", (before["image_index"][:, None] != before["image_index"][None, :]).any(1).sum())
        add("swapped", (after["alignment_label"] == 0).sum())
    n_chosen = sum(c[o] for o in OUTCOMES)
    n_reg = c["zeroed"] + c["kept"]
    rows = [
        ("text", "token chosen (of real, non-special tokens)", 0.15, n_chosen, c["maskable"]),
        ("text", "  chosen → [MASK]", 0.80, c["[MASK]"], n_chosen),
        ("text", "  chosen → random token", 0.10, c["random"], n_chosen),
        ("text", "  chosen → unchanged", 0.10, c["unchanged"], n_chosen),
        ("text", "[CLS] / [SEP] chosen", 0.0, c["special_chosen"], c["special"]),
        ("image", "region chosen (of real regions, IMG excluded)", 0.15, n_reg, c["regions"]),
        ("image", "  chosen → zeroed", 0.90, c["zeroed"], n_reg),
        ("image", "  chosen → unchanged", 0.10, c["kept"], n_reg),
        ("image", "IMG region chosen", 0.0, c["img_chosen"], c["items"]),
        ("alignment", "caption swapped (of items with another image in the batch)", 0.5, c["swapped"],
         c["swappable"]),
    ]  # fmt: skip
    return pd.DataFrame(
        [
            {"stream": s, "rule": r, "expected": e, "measured": k / max(n, 1), "count": k, "out of": n}
            for s, r, e, k, n in rows
        ]  # fmt: skip
    ).set_index(["stream", "rule"])


def swap_table(dataset, before: dict, after: dict, rows: Sequence[int] | None = None) -> pd.DataFrame:
    """Each item's image, its own caption and the caption the model reads after swapping, with the alignment
    label (1 = the caption belongs to the image)."""
    rows = range(len(after["alignment_label"])) if rows is None else rows
    records = []
    for i in rows:
        own, seen = int(before["text_index"][i]), int(after["text_index"][i])
        records.append({"item": int(i), "image": dataset.image_ids[int(before["image_index"][i])],
                        "its caption": dataset.captions[own].text,
                        "caption the model reads": dataset.captions[seen].text,
                        "alignment_label": int(after["alignment_label"][i])})  # fmt: skip
    return pd.DataFrame(records).set_index("item")


# ------------------------------------------------------------------------------------------------- a run
def load_metrics(run: str | Path, kind: str = "train") -> pd.DataFrame:
    """The rows of a run folder's metrics.jsonl of one kind ("train": one per log step), indexed by step."""
    path = Path(run) / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("kind") == kind]
    if not rows:
        raise ValueError(f"{path}: no {kind!r} rows")
    return pd.DataFrame(rows).drop(columns="kind").set_index("step")


def plot_pretraining_curves(metrics: pd.DataFrame, title: str | None = None, save=None) -> Figure:
    """Loss components (total, masked tokens, masked regions, alignment) and accuracies (alignment, masked
    tokens) against the optimizer step, from `load_metrics`."""
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax_l, ax_a = fig.subplots(1, 2)
    styles = {"loss": ("total", "k", 2.0), "mlm": ("masked tokens (CE)", "C0", 1.5),
              "region": ("masked regions (KL)", "C1", 1.5), "align": ("alignment (CE)", "C2", 1.5)}  # fmt: skip
    for key, (label, color, lw) in styles.items():
        if key in metrics:
            ax_l.plot(metrics.index, metrics[key], color=color, lw=lw, marker=".", label=label)
    ax_l.set_yscale("log")
    ax_l.set(xlabel="step", ylabel="loss (log scale)", title="loss components")
    ax_l.legend(fontsize=8)
    for key, label, color in (
        ("align_acc", "alignment accuracy", "C2"),
        ("mlm_acc", "masked-token accuracy", "C0"),
    ):
        if key in metrics:
            ax_a.plot(metrics.index, metrics[key], color=color, marker=".", label=label)
    ax_a.axhline(0.5, color="grey", ls=":", lw=1, label="alignment chance")
    ax_a.set(xlabel="step", ylabel="accuracy (training batches)", ylim=(0, 1), title="accuracies")
    ax_a.legend(fontsize=8)
    for a in (ax_l, ax_a):
        a.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    if save:
        fig.savefig(save, dpi=110)
    return fig


EVAL_ROWS = {
    "alignment_acc": "held-out alignment accuracy (own vs other caption)",
    "mlm_acc": "masked-token accuracy (random 15%)",
    "color_acc": "colour words (all masked at once)",
    "shape_acc": "shape words (all masked at once)",
    "color_shape_acc": "colour + shape words",
}


def eval_table(run: str | Path, text_run: str | Path | None = None) -> pd.DataFrame:
    """The held-out numbers of a run's eval.json, next to the text-only model's (its alignment is not
    trained: NaN) and their difference, with the number of scored tokens / pairs."""
    ev = json.loads((Path(run) / "eval.json").read_text())
    cols = {"ViLBERT": [ev.get(k, np.nan) for k in EVAL_ROWS]}
    if text_run is not None:
        tx = json.loads((Path(text_run) / "eval.json").read_text())
        cols["text-only"] = [np.nan if k == "alignment_acc" else tx.get(k, np.nan) for k in EVAL_ROWS]
        cols["ViLBERT − text-only"] = [a - b for a, b in zip(cols["ViLBERT"], cols["text-only"])]
    n = {"alignment_acc": 2 * ev.get("n_val_captions", 0), "mlm_acc": ev.get("n_mlm_acc"),
         "color_acc": ev.get("n_color_acc"), "shape_acc": ev.get("n_shape_acc"),
         "color_shape_acc": ev.get("n_color_acc", 0) + ev.get("n_shape_acc", 0)}  # fmt: skip
    cols["scored"] = [n[k] for k in EVAL_ROWS]
    return pd.DataFrame(cols, index=pd.Index(list(EVAL_ROWS.values()), name="held-out (val captions)"))


# ------------------------------------------------------------------------------------------------- use
def alignment_scores(model, tokenizer, world, split: str, visual: dict, image_ids: Sequence[str] | None = None,
                     n_other: int = 3) -> pd.DataFrame:  # fmt: skip
    """P(aligned) of each image of `split` (or `image_ids`) with its retrieval caption, its hard negative
    (one attribute changed) and the captions of the next `n_other` images -> long DataFrame
    (image_id, kind, caption, P(aligned))."""
    items = world.retrieval(split)
    pos = {it.image_id: k for k, it in enumerate(items)}
    ids = [it.image_id for it in items] if image_ids is None else list(image_ids)
    rows = []
    for image_id in ids:
        k = pos[image_id]
        texts = [("true caption", items[k].caption), ("hard negative", items[k].hard_negative)]
        texts += [
            ("other image's caption", items[(k + j) % len(items)].caption) for j in range(1, n_other + 1)
        ]
        p = alignment_score(model, tokenizer, visual[image_id], [t for _, t in texts])
        rows += [{"image_id": image_id, "kind": kind, "caption": t, "P(aligned)": float(s)}
                 for (kind, t), s in zip(texts, p)]  # fmt: skip
    return pd.DataFrame(rows)


def alignment_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per kind of caption: mean P(aligned), share judged aligned (P > 0.5), and how often the true caption
    scores higher than it (per image)."""
    true = scores[scores["kind"] == "true caption"].set_index("image_id")["P(aligned)"]
    out = []
    for kind, g in scores.groupby("kind", sort=False):
        beaten = (true.loc[g["image_id"]].to_numpy() > g["P(aligned)"].to_numpy()).mean()
        out.append({"caption": kind, "mean P(aligned)": g["P(aligned)"].mean(),
                    "judged aligned (P > 0.5)": (g["P(aligned)"] > 0.5).mean(),
                    "true caption scores higher": np.nan if kind == "true caption" else beaten,
                    "pairs": len(g)})  # fmt: skip
    return pd.DataFrame(out).set_index("caption")


def plot_captions(images: Sequence, captions: Sequence[Sequence[str]], titles: Sequence[str] | None = None,
                  width: int = 34, save=None) -> Figure:  # fmt: skip
    """Images side by side, each with its lines of text (e.g. sampled captions) printed under it."""
    n = len(images)
    if len(captions) != n:
        raise ValueError(f"{n} images but {len(captions)} caption lists")
    fig = Figure(figsize=(2.9 * n, 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n))
    for k, (ax, img, lines) in enumerate(zip(axes, images, captions)):
        ax.imshow(np.asarray(img))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("\n".join(textwrap.fill(t, width) for t in lines), fontsize=7.5, loc="left")
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
    if save:
        fig.savefig(save, dpi=110)
    return fig
