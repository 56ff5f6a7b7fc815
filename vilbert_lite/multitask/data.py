"""The 12-in-1 data sets on the synthetic world: four task groups, two data sets each, with clean splits.

    group                  data set  like       what
    G1 vocabulary VQA      vqa       VQA v2     attribute / count / existence questions, 10 noisy answers
                           gqa       GQA        compositional questions over relations, one exact answer
    G2 caption retrieval   coco      COCO       one precise caption per image, a one-word hard negative
                           flickr    Flickr30k  web alt-text captions (several per image); the hard negative:
                                                the most word-sharing caption of another image
    G3 referring expr.     refcoco+  RefCOCO+   short attribute expressions, no location words
                           refcocog  RefCOCOg   long relational expressions ("... to the left of ...")
    G4 verification        nlvr2     NLVR2      a statement about two images: true / false
                           snli_ve   SNLI-VE    a hypothesis about one image: entailment / contradiction /
                                                neutral (one of each per image)

    recs = records(world, "gqa", "train")                  # items.py records (VQAItem, RefExp, ...) or VEItem
    recs, removed = clean_splits({name: {split: records(world, name, split)} ...})
    tasks = build_tasks(world, names, banks, images={"train": 48}, pool=24)  # name -> MTTask

Everything is built from the world's public API (`world.scenes`, `world.vqa/refexps/retrieval/nlvr/captions`,
`texts.matches`, `texts.unique_desc`, `texts.fact_holds`); a new data set draws its texts from
`world.rng(split, index, task)` with task ids of its own (TASK_RNG): deterministic, never the world's streams.

Clean splits (as 12-in-1 made them): an image of any data set's test split is removed from every data set's
train and val splits, and an image of any val split from every train split. The world's splits never share a
scene, so nothing is removed here; `clean_splits` is what keeps it so when data sets come from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vilbert_lite.data import texts
from vilbert_lite.data.items import RefExp, RetrievalItem, VQAItem
from vilbert_lite.data.scene import COLORS, SHAPES
from vilbert_lite.data.texts import ATTRS, PLURAL, REL_PHRASE, Desc, a_, fact_holds, matches, unique_desc
from vilbert_lite.errors import UserError
from vilbert_lite.tasks import nlvr, refer, vqa
from vilbert_lite.tasks.common import collate_pairs, pair, tokenize
from vilbert_lite.tasks.retrieval import MAX_LENGTH, FourWay
from vilbert_lite.tasks.vqa import normalize_answer

SPLITS = ("train", "val", "test")
# data set -> (group, the official data set it stands for, region features "gt" boxes or "proposals")
DATASETS = {
    "vqa": ("G1", "VQA v2", "gt"),
    "gqa": ("G1", "GQA", "gt"),
    "coco": ("G2", "COCO retrieval", "gt"),
    "flickr": ("G2", "Flickr30k retrieval", "gt"),
    "refcoco+": ("G3", "RefCOCO+", "proposals"),
    "refcocog": ("G3", "RefCOCOg", "proposals"),
    "nlvr2": ("G4", "NLVR2", "gt"),
    "snli_ve": ("G4", "SNLI-VE", "gt"),
}
GROUPS = {
    "G1": "vocabulary-based VQA",
    "G2": "caption-based image retrieval",
    "G3": "referring expressions",
    "G4": "multimodal verification",
}
VQA_QTYPES = ("color", "shape", "size", "count", "exists")  # vqa; the world's spatial / compare go to gqa
TASK_RNG = {"gqa": 21, "refcoco+": 22, "refcocog": 23, "snli_ve": 24, "flickr": 25}  # world.rng task ids
VERIFY_LABELS = (
    "contradiction",
    "entailment",
    "neutral",
)  # G4 classes; NLVR2 uses the first two (false, true)
MATERIALS = ("wood", "glass", "metal", "paper", "stone", "plastic")
QUALITIES = ("heavy", "warm", "expensive", "new", "soft", "fragile")


@dataclass
class VEItem:
    """A visual-entailment pair: does the image entail, contradict or say nothing about the hypothesis?"""

    image_id: str
    hypothesis: str
    label: int  # index into VERIFY_LABELS
    template: str = ""


# ------------------------------------------------------------------------------------------------ records
def _gqa(world, split: str) -> list[VQAItem]:
    """Compositional questions: an attribute of an object named through a relation, and the world's spatial
    and comparison questions; answers are exact (GQA's come from scene graphs), so the 10 answers agree."""
    out = [VQAItem(q.question_id, q.image_id, q.question, [max(set(q.answers), key=q.answers.count)] * 10,
                   q.qtype) for q in world.vqa(split) if q.qtype not in VQA_QTYPES]  # fmt: skip
    for k, scene in enumerate(world.scenes[split]):
        rng = world.rng(split, k, TASK_RNG["gqa"])
        for n, i in enumerate(rng.permutation(len(scene.objects))[:2]):
            o, attr = scene.objects[int(i)], ATTRS[int(rng.integers(len(ATTRS)))]
            d = unique_desc(scene, o, rng, allowed=tuple(a for a in ATTRS if a != attr), need_rel=True)
            if d is not None:
                q = f"what {attr} is {d.text()}?"
                out.append(
                    VQAItem(f"{scene.scene_id}-g{n}", scene.scene_id, q, [getattr(o, attr)] * 10, "relate")
                )
    return out


def _flickr(world, split: str) -> list[RetrievalItem]:
    """Web alt-text captions; each one's hard negative is the caption of another image sharing the most words
    with it (ties broken at random), never a text that is also one of this image's captions."""
    caps = world.captions(split)
    if not caps:
        return []
    words = sorted({w for c in caps for w in c.text.split()})
    index = {w: j for j, w in enumerate(words)}
    bow = np.zeros((len(caps), len(words)), np.float32)  # (N, V) bag of words
    for i, c in enumerate(caps):
        bow[i, [index[w] for w in c.text.split()]] = 1
    image = np.unique([c.image_id for c in caps], return_inverse=True)[1]  # (N,) image of each caption
    text = np.unique([c.text for c in caps], return_inverse=True)[1]  # (N,) text id
    own = np.zeros((image.max() + 1, text.max() + 1), bool)  # (M, U) texts each image has
    own[image, text] = True
    rng = world.rng(split, len(caps), TASK_RNG["flickr"])
    score = bow @ bow.T + rng.random((len(caps), len(caps)))  # (N, N) shared words + tie-break in [0, 1)
    score[own[image][:, text]] = -np.inf  # another caption of the same image, or the same text
    neg = score.argmax(1)
    return [RetrievalItem(c.image_id, c.text, caps[j].text) for c, j in zip(caps, neg)]


def _refexps(world, split: str, name: str) -> list[RefExp]:
    """refcoco+: attribute-only expressions (no relation, no superlative: RefCOCO+ bans location words);
    refcocog: expressions through a relation to another object (longer, as RefCOCOg's)."""
    out = []
    for k, scene in enumerate(world.scenes[split]):
        rng = world.rng(split, k, TASK_RNG[name])
        for i in rng.permutation(len(scene.objects))[:2]:
            o = scene.objects[int(i)]
            if name == "refcoco+":
                d = unique_desc(scene, o, rng, allow_rel=False)
                d = None if d is None or d.sup else d
            else:
                d = unique_desc(scene, o, rng, need_rel=True)
            if d is not None:
                out.append(RefExp(scene.scene_id, d.text(), tuple(o.box), o.obj_id))
    return out


def _hypotheses(scene, rng) -> dict[int, tuple[str, str]]:
    """One hypothesis per label: {label: (text, template)}. Present objects entail existence, absent ones
    contradict it; a property no image shows (material, weight, ...) of a present object is neutral, of an
    absent one a contradiction (the object is not there), so neither the text alone nor the image decides."""
    objs = scene.objects
    present = {(o.color, o.shape) for o in objs}
    o = objs[int(rng.integers(len(objs)))]
    absent = [(c, o.shape) for c in COLORS] + [(o.color, s) for s in SHAPES]
    ca, sa = _pick(rng, [cs for cs in absent if cs not in present])
    prop = _pick(rng, [f"is made of {m}" for m in MATERIALS] + [f"is {q}" for q in QUALITIES])
    cs = {x.obj_id: Desc(color=x.color, shape=x.shape) for x in objs}
    pairs = [(x, p, y) for x in objs for y in objs if x.obj_id != y.obj_id for p in REL_PHRASE
             if fact_holds(scene, cs[x.obj_id], p, cs[y.obj_id])]  # fmt: skip
    n = len(matches(scene, Desc(shape=o.shape)))
    counted = f"there is one {o.shape}" if n == 1 else f"there are {texts.NUMBER_WORDS[n]} {PLURAL[o.shape]}"
    entail = [(f"there is {a_(o.color + ' ' + o.shape)}", "exists"), (counted, "count")]
    contra = [(f"there is {a_(ca + ' ' + sa)}", "exists"), (f"the {ca} {sa} {prop}", "property"),
              (f"there are {texts.NUMBER_WORDS[n + 1]} {PLURAL[o.shape]}", "count")]  # fmt: skip
    if pairs:
        x, p, y = pairs[int(rng.integers(len(pairs)))]
        entail.append((f"the {x.color} {x.shape} is {REL_PHRASE[p]} the {y.color} {y.shape}", "relation"))
        q = texts.OPPOSITE[p]
        if not fact_holds(scene, cs[x.obj_id], q, cs[y.obj_id]):
            contra.append((f"the {x.color} {x.shape} is {REL_PHRASE[q]} the {y.color} {y.shape}", "relation"))
    return {1: _pick(rng, entail), 0: _pick(rng, contra), 2: (f"the {o.color} {o.shape} {prop}", "property")}


def _snli_ve(world, split: str) -> list[VEItem]:
    out = []
    for k, scene in enumerate(world.scenes[split]):
        rng = world.rng(split, k, TASK_RNG["snli_ve"])
        hyp = _hypotheses(scene, rng)  # label -> (text, template)
        out += [VEItem(scene.scene_id, hyp[int(y)][0], int(y), hyp[int(y)][1]) for y in rng.permutation(3)]
    return out


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def records(world, name: str, split: str) -> list:
    """The records of one data set and split (see the module docstring)."""
    if name not in DATASETS:
        raise UserError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    if name == "vqa":
        return [q for q in world.vqa(split) if q.qtype in VQA_QTYPES]
    if name == "gqa":
        return _gqa(world, split)
    if name == "coco":
        return world.retrieval(split)
    if name == "flickr":
        return _flickr(world, split)
    if name in ("refcoco+", "refcocog"):
        return _refexps(world, split, name)
    if name == "nlvr2":
        return world.nlvr(split)
    return _snli_ve(world, split)


def image_ids(record) -> tuple[str, ...]:
    """The images a record shows (two for NLVR2)."""
    return tuple(record.image_ids) if hasattr(record, "image_ids") else (record.image_id,)


def clean_splits(
    recs: dict[str, dict[str, list]],
) -> tuple[dict[str, dict[str, list]], dict[str, dict[str, int]]]:
    """12-in-1's clean splits: drop from every data set's train and val the records showing an image of any
    data set's test split, and from every train split those showing an image of any val split.
    recs: {data set: {split: records}} -> (cleaned recs, {data set: {split: records removed}})."""
    held = {
        s: {i for by in recs.values() for r in by.get(s, []) for i in image_ids(r)} for s in ("val", "test")
    }
    banned = {"train": held["val"] | held["test"], "val": held["test"], "test": set()}
    out, removed = {}, {}
    for name, by in recs.items():
        out[name] = {s: [r for r in rs if not set(image_ids(r)) & banned[s]] for s, rs in by.items()}
        removed[name] = {s: len(rs) - len(out[name][s]) for s, rs in by.items()}
    return out, removed


# -------------------------------------------------------------------------------------------------- items
@dataclass
class MTTask:
    """One data set ready for training: items per split (for its group's collate), what the metrics need."""

    name: str
    group: str
    train: Any
    val: Any
    test: Any
    collate: Any
    info: dict = field(default_factory=dict)  # counts, chance level (numbers for metrics.json)
    extra: dict = field(default_factory=dict)  # answer mask (G1), image pool and queries (G2)


def answer_vocab(recs: dict[str, dict[str, list]]) -> list[str]:
    """G1's one answer vocabulary: every answer of the train splits of the G1 data sets, sorted."""
    return sorted({normalize_answer(a) for n, by in recs.items() if DATASETS[n][0] == "G1"
                   for r in by["train"] for a in r.answers})  # fmt: skip


def build_tasks(world, names, banks: dict, images: dict[str, int | None] | None = None, pool: int = 32,
                vocab: list[str] | None = None) -> dict[str, MTTask]:  # fmt: skip
    """The data sets `names` as MTTasks: clean splits, then per split only the records whose (first) image is
    one of the split's first `images[split]` images (None or absent: all), so every data set keeps its own
    size per image; banks {"gt": ImageBank, "proposals": ImageBank}; G2's test pool: the first `pool` images.
    vocab: G1's answer vocabulary (default: from every G1 data set's train split, whichever are built)."""
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise UserError(f"unknown data set(s) {unknown}; known: {', '.join(DATASETS)}")
    wanted = set(names) | ({n for n in DATASETS if DATASETS[n][0] == "G1"} if vocab is None else set())
    recs, _ = clean_splits({n: {s: records(world, n, s) for s in SPLITS} for n in DATASETS if n in wanted})
    first = {s: {x.scene_id for x in world.scenes[s][: (images or {}).get(s)]} for s in SPLITS}
    recs = {
        n: {s: [r for r in rs if image_ids(r)[0] in first[s]] for s, rs in by.items()}
        for n, by in recs.items()
    }
    vocab = vocab if vocab is not None else answer_vocab(recs)
    index = {a: i for i, a in enumerate(vocab)}
    out = {}
    for name in names:
        group, _, kind = DATASETS[name]
        r, images = recs[name], banks[kind]
        info = {s: len(r[s]) for s in SPLITS}
        if group == "G1":
            items = {s: vqa.build_items(r[s], images, index) for s in SPLITS}
            mask = torch.zeros(len(vocab), dtype=torch.bool)  # (n_answers,) the answers this data set uses
            mask[[index[vqa.normalize_answer(a)] for q in r["train"] for a in q.answers]] = True
            targets = torch.stack([it["target"] for it in items["test"]])  # (N, n_answers)
            info["chance"] = float(targets[:, mask].sum(1).mean() / mask.sum())  # a random answer of its own
            task = MTTask(name, group, *items.values(), collate_pairs, info, {"answer_mask": mask})
        elif group == "G2":
            g = torch.Generator().manual_seed(0)  # the same fixed 4-way val / test items in every run
            first = {}  # image -> its first test caption: the query
            for x in r["test"]:
                first.setdefault(x.image_id, x)
            ids = list(first)[:pool]
            queries = [first[i] for i in ids]
            queries = tokenize([q.caption for q in queries], max_length=MAX_LENGTH)
            task = MTTask(name, group, FourWay(r["train"], images), FourWay(r["val"], images, g),
                          FourWay(r["test"], images, g), collate_pairs,
                          {**info, "pool": len(ids), "chance": 1 / len(ids)},
                          {"pool": ids, "queries": queries, "images": images})  # fmt: skip
        elif group == "G3":
            items = {s: refer.build_items(r[s], images) for s in SPLITS}
            hits = [
                (it["iou"][1:] > refer.IOU_THRESHOLD).float().mean()
                for it in items["test"]
                if len(it["iou"]) > 1
            ]
            info["chance"] = float(torch.stack(hits).mean()) if hits else 0.0  # a random proposal
            task = MTTask(name, group, *items.values(), refer.collate, info)
        elif name == "nlvr2":
            items = {s: nlvr.build_items(r[s], images) for s in SPLITS}
            task = MTTask(
                name, group, *items.values(), collate_pairs, {**info, "chance": 0.5}, {"n_classes": 2}
            )
        else:
            items = {}
            for s in SPLITS:
                toks = tokenize([x.hypothesis for x in r[s]], max_length=nlvr.MAX_LENGTH)
                items[s] = [
                    {"pairs": [pair(t, images[x.image_id])], "label": x.label} for x, t in zip(r[s], toks)
                ]
            task = MTTask(
                name, group, *items.values(), collate_pairs, {**info, "chance": 1 / 3}, {"n_classes": 3}
            )
        if not len(task.train) or not len(task.val) or not len(task.test):
            empty = [s for s in SPLITS if not len(getattr(task, s))]
            raise UserError(
                f"data set {name!r}: no {' / '.join(empty)} items in this world; use a larger profile"
            )
        out[name] = task
    return out
