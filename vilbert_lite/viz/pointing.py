"""Pointing: does a word's strongest word → region co-attention fall on the box of the object it names?

An analysis of a trained model, not a training target (no loss uses it). On the synthetic world every caption
comes from a scene graph, so we know which objects a word names; the captioned image's regions are the
ground-truth boxes in object order after the global IMG region, so object k is region k + 1.

    res = pointing_accuracy(model, train_ds, val_ds, world)   # best (layer, head) on train, reported on val
    print(res["summary"]); res["table"]                        # accuracy vs chance, every (layer, head)
    plot_pointing(model, val_ds, world, 0, res["layer"], res["head"])   # the named box and the head's attention
    pointing_explorer(model, val_ds, world, 0, res["layer"], res["head"])  # the attention explorer, box dashed

Which words name which objects (`object_words`), in a caption of the synthetic world:

- a shape word (a shape name, its plural or a synonym, "plus sign" included) names the scene's objects of that
  shape, narrowed by a colour word directly before it and by a size word directly before that (or directly
  before the shape word): "small red ball" names the small red circles;
- a colour word directly followed by a shape word names the same objects as the shape word;
- a colour word directly followed by a hypernym ("shape", "thing", "object", "figure", or their plurals) names
  the objects of that colour (narrowed by a size word before it); the hypernym itself is not an object word;
- a word that names no object of the scene (a swapped caption, a colour before "background") is skipped.

A word is represented by its first WordPiece. Pointing (`pointing_hits`) counts, for every co-attention layer and
head, the object words whose argmax over the real object regions (region 0, the global IMG region, and padded
regions excluded) is one of the regions it names. Chance is what a uniform pick over those regions scores: the
mean over object words of |named regions| / |real object regions|.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from vilbert_lite.data.collate import collate_examples
from vilbert_lite.data.scene import COLORS, SHAPES, SIZES, Scene
from vilbert_lite.data.texts import HYPERNYMS, PLURAL, SYNONYMS
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.device import resolve_device, to_device
from vilbert_lite.pretrain.data import MAX_REGIONS, MAX_SEQ_LENGTH
from vilbert_lite.viz.attention import explore, plot_image_overlay

_WORD = re.compile(r"[a-z0-9]+")  # the BERT pre-tokenizer's words in our captions: no accents, no apostrophes


def _shape_phrases() -> dict[tuple[str, ...], str]:
    """(word, ...) -> shape, for every shape name, plural and synonym (multi-word synonyms as phrases): the
    single words are pretrain._word_sets()["shape"], the words of the masked-shape-word evaluation."""
    phrases = {(s,): s for s in SHAPES} | {(p,): s for s, p in PLURAL.items()}
    return phrases | {tuple(w.split()): s for s, ws in SYNONYMS.items() for w in ws}


_SHAPE_PHRASES = _shape_phrases()
_HYPERNYMS = set(HYPERNYMS) | {h + "s" for h in HYPERNYMS}


@dataclass(frozen=True)
class ObjectWord:
    """A word of a caption that names objects: its characters text[start:end] and the named objects' obj_ids."""

    start: int
    end: int
    word: str
    objects: tuple[int, ...]


def object_words(text: str, scene: Scene) -> list[ObjectWord]:
    """The words of `text` that name objects of `scene`, in text order (the rules are in the module docstring)."""
    words = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text.lower())]
    names = [w for w, _, _ in words]

    def select(shape=None, color=None, size=None) -> tuple[int, ...]:
        return tuple(o.obj_id for o in scene.objects if (shape is None or o.shape == shape)
                     and (color is None or o.color == color) and (size is None or o.size == size))  # fmt: skip

    def modifiers(i: int) -> tuple[str | None, str | None]:
        """The (colour, size) directly before word i: [size] [colour] word."""
        color = names[i - 1] if i >= 1 and names[i - 1] in COLORS else None
        j = i - 1 if color else i
        size = names[j - 1] if j >= 1 and names[j - 1] in SIZES else None
        return color, size

    out: list[ObjectWord] = []
    i = 0
    while i < len(words):
        n = next((n for n in (2, 1) if tuple(names[i : i + n]) in _SHAPE_PHRASES), 0)
        if n:  # a shape word (or phrase), and the colour word before it
            color, size = modifiers(i)
            objs = select(_SHAPE_PHRASES[tuple(names[i : i + n])], color, size)
            if objs:
                out.append(ObjectWord(words[i][1], words[i][2], names[i], objs))
                if color:
                    out.append(ObjectWord(words[i - 1][1], words[i - 1][2], color, objs))
            i += n
            continue
        if names[i] in COLORS and i + 1 < len(words) and names[i + 1] in _HYPERNYMS:  # "a red thing"
            objs = select(color=names[i], size=modifiers(i + 1)[1])
            if objs:
                out.append(ObjectWord(words[i][1], words[i][2], names[i], objs))
        i += 1
    return sorted(out, key=lambda w: w.start)


def object_word_targets(text: str, scene: Scene, tokenizer=None, max_length: int = MAX_SEQ_LENGTH,
                        max_regions: int = MAX_REGIONS) -> dict[int, frozenset[int]]:  # fmt: skip
    """{token index: region indices} for the object words of `text`, tokenised as the datasets do
    (`tokenizer(text, truncation=True, max_length=max_length)`, [CLS] at index 0): each word is its first
    WordPiece; object k is region k + 1 (region 0 is the global IMG region) and only regions 1..max_regions
    exist. Words cut off by truncation, or naming only objects past the region cap, are left out."""
    if tokenizer is None:
        tokenizer = get_tokenizer()
    enc = tokenizer(text, truncation=True, max_length=max_length)
    out = {}
    for w in object_words(text, scene):
        t = enc.char_to_token(w.start)
        regions = frozenset(k + 1 for k in w.objects if k + 1 <= max_regions)
        if t is not None and regions:
            out[t] = regions
    return out


# ------------------------------------------------------------------------------------------------ counting
@dataclass
class PointingCounts:
    """Pointing tallies over a set of captions: hits (layers, heads), object words, and the sum of their chances.
    Counts of two batches add up with `+`."""

    hits: torch.Tensor  # (L, H) long: object words whose argmax region is one they name
    words: int  # object words counted
    chance_sum: float  # sum over those words of |named regions| / |real object regions|

    def __add__(self, other: PointingCounts) -> PointingCounts:
        return PointingCounts(
            self.hits + other.hits, self.words + other.words, self.chance_sum + other.chance_sum
        )

    @property
    def accuracy(self) -> torch.Tensor:
        """(L, H) float: share of object words pointed at correctly by each layer and head."""
        return self.hits.double() / max(self.words, 1)

    @property
    def chance(self) -> float:
        return self.chance_sum / max(self.words, 1)

    def best(self) -> tuple[int, int]:
        """The (layer, head) with the most hits (the first in layer-then-head order on ties)."""
        i = int(self.hits.flatten().argmax())  # argmax returns the first maximum
        return divmod(i, self.hits.shape[1])


def _t2v_stack(t2v) -> torch.Tensor:
    """A model output, its `.attentions`, the list `.attentions.t2v` of (B, h, T, R), or a (L, B, h, T, R) tensor
    -> one (L, B, h, T, R) tensor."""
    t2v = getattr(t2v, "attentions", t2v)
    t2v = getattr(t2v, "t2v", t2v)
    if t2v is None or (isinstance(t2v, (list, tuple)) and not t2v):
        raise ValueError("no word → region co-attention maps: run the model with output_attentions=True "
                         "(a single-stream model has none)")  # fmt: skip
    a = (
        torch.stack([torch.as_tensor(m) for m in t2v])
        if isinstance(t2v, (list, tuple))
        else torch.as_tensor(t2v)
    )
    if a.dim() != 5:
        raise ValueError(
            f"t2v: expected (layers, B, heads, T, R) or a list of (B, heads, T, R), got {tuple(a.shape)}"
        )
    return a


def pointing_hits(t2v, targets: list[dict[int, set[int] | frozenset[int]]],
                  visual_attention_mask: torch.Tensor | None = None, skip_trivial: bool = False) -> PointingCounts:  # fmt: skip
    """Pointing tallies of one batch.

    t2v: co-attention maps (layers, B, heads, T, R), or the list `out.attentions.t2v` (or `out` itself).
    targets: per caption, {token index: region indices it names} (`object_word_targets`).
    visual_attention_mask: (B, R), 1 = real region; None = all real. Region 0 (IMG) is never a candidate, and
    named regions that are padded or region 0 are dropped (a word left with none is not counted).
    skip_trivial: leave out words that name every real object region (e.g. any object word of a one-object
    scene): every head hits them, and they count 1 towards chance.
    """
    a = _t2v_stack(t2v).detach().float().cpu()
    L, B, H, T, R = a.shape
    if len(targets) != B:
        raise ValueError(f"{len(targets)} target dicts for a batch of {B} captions")
    bi, ti, ri = [], [], []
    for b, tg in enumerate(targets):  # build the (B, T, R) target mask from index lists
        for t, regions in tg.items():
            if not 0 <= t < T or any(not 0 <= r < R for r in regions):
                raise ValueError(
                    f"caption {b}: target token {t} -> regions {sorted(regions)} outside T={T}, R={R}"
                )
            bi += [b] * len(regions)
            ti += [t] * len(regions)
            ri += list(regions)
    target = torch.zeros(B, T, R, dtype=torch.bool)
    target[bi, ti, ri] = True
    real = (
        torch.ones(B, R, dtype=torch.bool)
        if visual_attention_mask is None
        else visual_attention_mask.cpu().bool()
    )
    if tuple(real.shape) != (B, R):
        raise ValueError(f"visual_attention_mask: expected ({B}, {R}), got {tuple(real.shape)}")
    real = real.clone()
    real[:, 0] = False  # the global IMG region names no object
    target &= real[:, None, :]
    word = target.any(-1)  # (B, T): object words with at least one real named region
    if skip_trivial:
        word &= target.sum(-1) < real.sum(1, keepdim=True)
    pick = a.masked_fill(~real[None, :, None, None, :], float("-inf")).argmax(-1)  # (L, B, H, T)
    hit = target[None, :, None].expand(L, B, H, T, R).gather(-1, pick[..., None]).squeeze(-1)  # (L, B, H, T)
    hits = (hit & word[None, :, None]).sum((1, 3))  # (L, H)
    chance = target.sum(-1).double() / real.sum(1, keepdim=True).clamp(min=1)  # (B, T)
    return PointingCounts(hits, int(word.sum()), float(chance[word].sum()))


# ----------------------------------------------------------------------------------------- on a dataset
def dataset_targets(dataset, world, index: int, tokenizer=None) -> dict[int, frozenset[int]]:
    """`object_word_targets` of caption `index` of a CaptionImageDataset over `world`, after checking that the
    dataset's tokens are those targets index and that its regions are the scene's ground-truth boxes in object
    order (ValueError otherwise: e.g. the world of another profile, proposal boxes, blanked images)."""
    if tokenizer is None:
        tokenizer = get_tokenizer()
    cap = dataset.captions[index]
    scene = world.scene(cap.image_id)
    vis = dataset.visual[dataset.image_index[index]]
    n = int(vis["num_regions"]) - 1  # object regions after the global one
    gt = world.gt_boxes(cap.image_id).clip(
        0, [scene.width, scene.height] * 2
    )  # stores clip boxes to the image
    boxes = vis["boxes"][1 : n + 1].numpy()
    if n < min(len(gt), 1) or n > len(gt) or not np.allclose(boxes, gt[:n], atol=0.5):
        raise ValueError(f"caption {index} ({cap.image_id}): the dataset's {n} regions are not the scene's "
                         f"{len(gt)} ground-truth boxes in object order; pointing needs those "
                         "(synthetic_data's store, images not blanked, the same world)")  # fmt: skip
    ids = dataset.ids[index]
    targets = object_word_targets(cap.text, scene, tokenizer, max_length=len(ids), max_regions=n)
    if tokenizer(cap.text, truncation=True, max_length=len(ids))["input_ids"] != ids.tolist():
        raise ValueError(
            f"caption {index}: the dataset's tokens differ from the tokenizer's; pass its tokenizer"
        )
    return targets


def _backbone(model):
    core = getattr(model, "module", model)
    return getattr(core, "bert", core)


@torch.no_grad()
def _forward(bert, dataset, idx: list[int], pad_id: int, device) -> tuple[dict, object]:
    """(collated batch, ViLBertOutput with attentions) of the captions `idx` with their own images."""
    batch = collate_examples([dataset[i] for i in idx], pad_id=pad_id)
    b = to_device(batch, device)
    out = bert(b["input_ids"], b["visual_feats"], b["visual_pos"], attention_mask=b["attention_mask"],
               visual_attention_mask=b["visual_attention_mask"], token_type_ids=b["token_type_ids"],
               output_attentions=True)  # fmt: skip
    return batch, out


def count_pointing(model, dataset, world, indices=None, tokenizer=None, batch_size: int = 64,
                   device="auto", skip_trivial: bool = False) -> PointingCounts:  # fmt: skip
    """Pointing tallies of `model` on captions `indices` (default: all) of a CaptionImageDataset, each with its
    own image; deterministic (eval mode, no sampling). `skip_trivial`: see `pointing_hits`."""
    tokenizer = tokenizer or get_tokenizer()
    device = resolve_device(device)
    bert = _backbone(model)
    if getattr(bert.config, "task_specific_tokens", False):
        raise ValueError(
            "pointing: models with task tokens shift the text positions; use a pretraining model"
        )
    was_training = bert.training
    bert.to(device).eval()
    indices = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    total = None
    try:
        for s in range(0, len(indices), batch_size):
            idx = indices[s : s + batch_size]
            targets = [dataset_targets(dataset, world, i, tokenizer) for i in idx]
            batch, out = _forward(bert, dataset, idx, tokenizer.pad_token_id, device)
            counts = pointing_hits(out, targets, batch["visual_attention_mask"], skip_trivial)
            total = counts if total is None else total + counts
    finally:
        bert.train(was_training)
    if total is None or total.words == 0:
        raise ValueError("pointing: no object words in these captions (or no object regions in their images)")
    return total


def pointing_accuracy(model, train_dataset, val_dataset, world, n_train: int | None = 512,
                      n_val: int | None = None, tokenizer=None, batch_size: int = 64, device="auto",
                      skip_trivial: bool = False) -> dict:  # fmt: skip
    """Pointing of a model: the (layer, head) with the most hits on `n_train` train captions (evenly spaced over
    the dataset; None = all), and its accuracy on the first `n_val` val captions (None = all) beside chance.
    skip_trivial=True leaves out words that name every object region (one-object scenes): they hit whatever the
    head does and pull chance towards 1 (see `pointing_hits`).

    -> {"layer", "head", "val_accuracy", "val_chance", "val_ratio" (accuracy / chance), "at_least_2x_chance",
        "train_accuracy", "train_chance", "n_train_captions", "n_train_words", "n_val_captions", "n_val_words",
        "table" (DataFrame: train and val accuracy of every layer and head, val chance beside them),
        "summary" (one line)}
    """
    n = len(train_dataset)
    k = n if n_train is None else min(n_train, n)
    train_idx = sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist())) if k else []
    val_idx = list(range(len(val_dataset) if n_val is None else min(n_val, len(val_dataset))))
    kw = dict(tokenizer=tokenizer, batch_size=batch_size, device=device, skip_trivial=skip_trivial)
    tr = count_pointing(model, train_dataset, world, train_idx, **kw)
    va = count_pointing(model, val_dataset, world, val_idx, **kw)
    layer, head = tr.best()
    L, H = tr.hits.shape
    table = pd.DataFrame({
        "layer": np.repeat(np.arange(L), H), "head": np.tile(np.arange(H), L),
        "train_accuracy": tr.accuracy.flatten().numpy(), "val_accuracy": va.accuracy.flatten().numpy(),
        "val_chance": va.chance,
    }).set_index(["layer", "head"]).round(4)  # fmt: skip
    acc, chance = float(va.accuracy[layer, head]), va.chance
    summary = (f"pointing (co-attention layer {layer}, head {head}, chosen on {len(train_idx)} train captions): "
               f"{acc:.3f} of {va.words} object words in {len(val_idx)} val captions, chance {chance:.3f} "
               f"({acc / chance:.2f}x){'; words naming every object left out' if skip_trivial else ''}")  # fmt: skip
    return {
        "layer": layer, "head": head, "val_accuracy": acc, "val_chance": chance, "val_ratio": acc / chance,
        "at_least_2x_chance": acc >= 2 * chance,
        "train_accuracy": float(tr.accuracy[layer, head]), "train_chance": tr.chance,
        "n_train_captions": len(train_idx), "n_train_words": tr.words,
        "n_val_captions": len(val_idx), "n_val_words": va.words, "skip_trivial": skip_trivial, "table": table,
        "summary": summary,
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------- views
def _one_pair(model, dataset, world, index: int, tokenizer, device):
    """One caption with its image: (tokens, targets, t2v maps [(heads, T, R)] per layer, image, boxes (R, 4))."""
    tokenizer = tokenizer or get_tokenizer()
    device = resolve_device(device)
    bert = _backbone(model)
    was_training = bert.training
    bert.to(device).eval()
    try:
        targets = dataset_targets(dataset, world, index, tokenizer)
        batch, out = _forward(bert, dataset, [index], tokenizer.pad_token_id, device)
    finally:
        bert.train(was_training)
    tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    image_id = dataset.captions[index].image_id
    return tokens, targets, out, world.image(image_id), batch["boxes"][0].numpy()


def plot_pointing(model, dataset, world, index: int, layer: int, head: int, tokenizer=None, device="auto",
                  max_words: int = 4, save=None):  # fmt: skip
    """For caption `index` of a dataset and its image: one panel per object word (up to `max_words`), the head's
    attention over the object regions (IMG left out, as pointing does) with the named boxes dashed. -> Figure"""
    tokens, targets, out, image, boxes = _one_pair(model, dataset, world, index, tokenizer, device)
    if not targets:
        raise ValueError(f"caption {index} ({dataset.captions[index].text!r}) has no object words")
    t2v = _t2v_stack(out)[layer, 0, head].float().cpu().numpy()  # (T, R)
    scene = world.scene(dataset.captions[index].image_id)
    labels = [f"{o.color} {o.shape}" for o in scene.objects][: len(boxes) - 1]
    words = sorted(targets)[:max_words]
    fig = Figure(figsize=(3.6 * len(words) + 0.8, 3.9), layout="constrained")
    axes = fig.subplots(1, len(words), squeeze=False)[0]
    for ax, t in zip(axes, words):
        w = t2v[t, 1:]  # the object regions 1..R-1
        named = sorted(r - 1 for r in targets[t])
        pick = int(np.argmax(w))
        verdict = "hit" if pick in named else "miss"
        plot_image_overlay(image, boxes[1:], w, ax=ax, labels=labels, highlight=named, colorbar=False,
                           title=f"“{tokens[t]}” → {labels[pick]} ({verdict}); IMG {t2v[t, 0]:.2f}")  # fmt: skip
    fig.suptitle(f"“{dataset.captions[index].text}” · co-attention layer {layer}, head {head} · named box dashed",
                 fontsize=10)  # fmt: skip
    if save:
        fig.savefig(save, dpi=110)
    return fig


def pointing_explorer(model, dataset, world, index: int, layer: int | None = None, head: int | None = None,
                      tokenizer=None, device="auto", note: str | None = None):  # fmt: skip
    """The attention explorer (viz.AttentionExplorer) on caption `index` with its image, opened on word → region
    at `layer`/`head` (None: the last layer, mean of heads) and the first object word; the boxes a word names
    are drawn dashed whenever that word is selected. `note`: one line shown with it (e.g. barely trained)."""
    tokens, targets, out, image, boxes = _one_pair(model, dataset, world, index, tokenizer, device)
    scene = world.scene(dataset.captions[index].image_id)
    labels = ["IMG"] + [f"{o.color} {o.shape}" for o in scene.objects][: len(boxes) - 1]
    ex = explore(out, tokens, image, boxes, region_labels=labels, named=targets, note=note)
    first = min(ex.named, default=0)
    ex.update(direction="word → region", layer=len(ex.maps["t2v"]) - 1 if layer is None else layer, head=head,
              word=first)  # fmt: skip
    return ex
