"""Text for every task of the synthetic world, generated from the scene graphs (see `world.py`).

Each generator takes (world, split) and returns a list of records from `items.py`; item k of a split draws
from `world.rng(split, k, task)`, so texts are deterministic given the world's seed.

Object descriptions follow one small grammar, shared by VQA questions, referring expressions and VCR:

    desc   := "the" [superlative] [size] [color] noun [relphrase desc]      noun := shape | "object"
    relphrase := "to the left of" | "to the right of" | "above" | "below"
    superlative := "leftmost" | "rightmost" | "topmost" | "bottommost"   (left_of / ... every other match)

A description with a relation matches the objects that have the relation to *some* object matching the
anchor; generated anchors are always unique, so both readings agree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np

from vilbert_lite.data.items import Caption, NLVRItem, RefExp, RetrievalItem, VCRItem, VQAItem
from vilbert_lite.data.scene import BACKGROUNDS, COLORS, SHAPES, SIZES, Scene, relation_holds

QTYPES = ("color", "shape", "size", "count", "exists", "spatial", "compare")
REL_PHRASE = {"left_of": "to the left of", "right_of": "to the right of", "above": "above", "below": "below"}
OPPOSITE = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}
SUPERLATIVES = {"leftmost": "left_of", "rightmost": "right_of", "topmost": "above", "bottommost": "below"}
PLURAL = {s: ("crosses" if s == "cross" else s + "s") for s in SHAPES}
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Web-caption vocabulary: synonyms and hypernyms, as in Conceptual Captions' "actors attend the premiere".
SYNONYMS = {
    "circle": ("circle", "ball", "disc", "dot"),
    "square": ("square", "box", "block", "tile"),
    "triangle": ("triangle", "wedge"),
    "star": ("star",),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus sign"),
    "hexagon": ("hexagon",),
}
HYPERNYMS = ("shape", "thing", "object", "figure")
PREFIXES = (
    "",
    "",
    "",
    "",
    "stock image: ",
    "illustration of ",
    "vector art of ",
    "photo of ",
    "a picture of ",
)
ATTRS = ("size", "color", "shape")


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def a_(phrase: str) -> str:
    """'orange circle' -> 'an orange circle'."""
    return f"{article(phrase)} {phrase}"


@dataclass(frozen=True)
class Desc:
    """A (possibly relational) description of an object; None fields are unconstrained."""

    size: str | None = None
    color: str | None = None
    shape: str | None = None
    sup: str | None = None  # a key of SUPERLATIVES
    rel: str | None = None  # a key of REL_PHRASE, with `anchor`
    anchor: Desc | None = None

    def phrase(self) -> str:
        """The description without article: 'small red circle to the left of the blue star'."""
        words = [w for w in (self.sup, self.size, self.color, self.shape or "object") if w]
        if self.rel:
            words += [REL_PHRASE[self.rel], self.anchor.text()]
        return " ".join(words)

    def text(self) -> str:
        return "the " + self.phrase()


def matches(scene: Scene, d: Desc) -> list[int]:
    """Ids of the objects that `d` describes."""
    size, color, shape = d.size, d.color, d.shape
    ids = [
        o.obj_id
        for o in scene.objects
        if (size is None or o.size == size)
        and (color is None or o.color == color)
        and (shape is None or o.shape == shape)
    ]
    if d.rel:
        anchors = matches(scene, d.anchor)
        ids = [i for i in ids if any(relation_holds(scene, i, d.rel, j) for j in anchors)]
    if d.sup:
        pred = SUPERLATIVES[d.sup]
        ids = [i for i in ids if all(relation_holds(scene, i, pred, j) for j in ids if j != i)]
    return ids


def fact_holds(scene: Scene, subject: Desc, pred: str, anchor: Desc) -> bool:
    """'<subject> is <pred> <anchor>' is true if some pair of matching objects has the relation."""
    return any(
        relation_holds(scene, i, pred, j) for i in matches(scene, subject) for j in matches(scene, anchor)
    )


def _attr_desc(o, attrs) -> Desc:
    return Desc(**{a: getattr(o, a) for a in attrs})


def unique_desc(scene, o, rng, allowed=ATTRS, need_rel=False, allow_rel=True) -> Desc | None:
    """A description matching exactly object `o`, using only the `allowed` attributes for `o` itself.

    Tries attribute subsets (shortest first, sometimes over-specified), then a relation to a uniquely
    described anchor, then a superlative. `need_rel` skips the attribute-only stage.
    """
    subsets = [c for k in range(len(allowed) + 1) for c in combinations(allowed, k)]
    if not need_rel:
        found = [(c, _attr_desc(o, c)) for c in subsets if c]
        found = [(c, d) for c, d in found if matches(scene, d) == [o.obj_id]]
        if found:  # the shortest descriptions, or now and then an over-specified one (as people do)
            pool = found if rng.random() < 0.25 else [(c, d) for c, d in found if len(c) == len(found[0][0])]
            return _pick(rng, pool)[1]
    if allow_rel:
        anchors = [
            (b, unique_desc(scene, b, rng, allow_rel=False)) for b in scene.objects if b.obj_id != o.obj_id
        ]
        for c in [c for c in subsets if c] or [()]:  # name at least one attribute of `o` when allowed
            found = [
                Desc(**{a: getattr(o, a) for a in c}, rel=p, anchor=ad)
                for b, ad in anchors
                if ad is not None and ad.sup is None
                for p in REL_PHRASE
                if relation_holds(scene, o.obj_id, p, b.obj_id)
            ]
            found = [d for d in found if matches(scene, d) == [o.obj_id]]
            if found:
                return found[int(rng.integers(len(found)))]
    if not need_rel:
        base = _attr_desc(o, allowed)
        for sup in SUPERLATIVES:
            d = Desc(base.size, base.color, base.shape, sup=sup)
            if matches(scene, d) == [o.obj_id]:
                return d
    return None


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _order(rng, seq) -> list:
    return [seq[i] for i in rng.permutation(len(seq))]


# ----------------------------------------------------------------------------------------------- captions
def _groups(scene) -> list[tuple[str, str, int]]:
    """(color, shape, count) per distinct coloured shape, in first-appearance order."""
    counts: dict[tuple[str, str], int] = {}
    for o in scene.objects:
        counts[o.color, o.shape] = counts.get((o.color, o.shape), 0) + 1
    return [(c, s, n) for (c, s), n in counts.items()]


def _count_phrase(n: int, singular: str, plural: str) -> str:
    return a_(singular) if n == 1 else f"{NUMBER_WORDS[n]} {plural}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


CAPTION_STYLES = ("listing", "vague", "near", "relation", "closeup", "kinds", "abstract")


def caption_text(scene, rng, style: str) -> str:
    """One alt-text style caption in a style of CAPTION_STYLES: they vary in length, detail and vagueness."""
    objs = scene.objects
    bg = f" on {a_(scene.background)} background" if rng.random() < 0.5 else ""
    if style in ("near", "relation") and not any(
        p == "near" or p in REL_PHRASE for _, p, _ in scene.relations
    ):
        style = "listing"
    if style == "listing":
        groups = _order(rng, _groups(scene))[: int(rng.integers(1, 5))]
        text = _join([_count_phrase(n, f"{c} {s}", f"{c} {PLURAL[s]}") for c, s, n in groups]) + bg
    elif style == "vague":
        n = len(objs)
        amount = _pick(rng, (NUMBER_WORDS[n], "some", "several" if n > 2 else "two", "colorful"))
        text = f"{amount} {_pick(rng, HYPERNYMS)}s on {a_(scene.background)} background"
    elif style in ("near", "relation"):
        pairs = [(a, p, b) for a, p, b in scene.relations if p == "near" or p in REL_PHRASE]
        near = [t for t in pairs if t[1] == "near"]
        a, p, b = _pick(rng, near if style == "near" and near else pairs)
        oa, ob = objs[a], objs[b]
        first = f"{oa.color} {_pick(rng, HYPERNYMS)}" if rng.random() < 0.5 else f"{oa.color} {oa.shape}"
        second = _pick(rng, SYNONYMS[ob.shape]) if rng.random() < 0.5 else f"{ob.color} {ob.shape}"
        text = f"{a_(first)} {'near' if p == 'near' else REL_PHRASE[p]} {a_(second)}"
    elif style == "closeup":
        o = _pick(rng, objs)
        what = f"{o.size} {o.color} {_pick(rng, SYNONYMS[o.shape])}"
        text = f"close-up of {a_(what)}" if rng.random() < 0.5 else f"{a_(what)} among other shapes{bg}"
    elif style == "kinds":
        kinds: dict[str, int] = {}
        for o in objs:
            kinds[o.shape] = kinds.get(o.shape, 0) + 1
        text = _join([_count_phrase(n, s, PLURAL[s]) for s, n in list(kinds.items())[:3]])
    else:
        colors = list(dict.fromkeys(o.color for o in objs))
        text = f"abstract geometric {_pick(rng, ('art', 'pattern', 'design'))} in {_join(colors[:3])}"
    return ("" if text.startswith("close-up") else _pick(rng, PREFIXES)) + text


def gen_captions(world, split) -> list[Caption]:
    w = np.asarray(world.sizes.caption_styles, float)
    w = w / w.sum()
    out = []
    for k, scene in enumerate(world.scenes[split]):
        rng = world.rng(split, k, 1)
        n = world.sizes.captions_per_scene
        styles = rng.choice(
            len(CAPTION_STYLES), n, replace=n > int((w > 0).sum()), p=w
        )  # distinct while it can
        out += [Caption(scene.scene_id, caption_text(scene, rng, CAPTION_STYLES[int(j)])) for j in styles]
    return out


# ---------------------------------------------------------------------------------------------------- VQA
def _question(scene, qtype, rng) -> tuple[str, str] | None:
    """(question, true answer) of a type, or None when this scene cannot ask it."""
    objs = scene.objects
    o = _pick(rng, objs)
    if qtype in ("color", "shape", "size"):
        d = unique_desc(scene, o, rng, allowed=tuple(a for a in ATTRS if a != qtype))
        return None if d is None else (f"what {qtype} is {d.text()}?", getattr(o, qtype))
    if qtype == "count":
        kind = _pick(rng, ("shape", "color", "all", "both"))
        c, s = (
            (o.color if kind in ("color", "both") else None),
            (o.shape if kind in ("shape", "both") else None),
        )
        n = len(matches(scene, Desc(color=c, shape=s)))
        noun = PLURAL[s] if s else "objects"
        return f"how many {c + ' ' if c else ''}{noun} are there?", str(n)
    if qtype == "exists":
        if rng.random() < 0.5:
            size = o.size + " " if rng.random() < 0.3 else ""
            return f"is there {a_(size + o.color + ' ' + o.shape)}?", "yes"
        present = {(x.color, x.shape) for x in objs}
        near_miss = [(c, o.shape) for c in COLORS] + [(o.color, s) for s in SHAPES]
        c, s = _pick(rng, [cs for cs in near_miss if cs not in present])
        return f"is there {a_(c + ' ' + s)}?", "no"
    if len(objs) < 2:  # spatial and compare questions need two objects
        return None
    b = _pick(rng, [x for x in objs if x.obj_id != o.obj_id])
    if qtype == "spatial":
        preds = [p for p in REL_PHRASE if relation_holds(scene, o.obj_id, p, b.obj_id)]
        da, db = (unique_desc(scene, x, rng, allow_rel=False) for x in (o, b))
        if not preds or da is None or db is None:
            return None
        p = _pick(rng, preds)
        yes = rng.random() < 0.5
        return f"is {da.text()} {REL_PHRASE[p if yes else OPPOSITE[p]]} {db.text()}?", "yes" if yes else "no"
    if qtype == "compare":
        bigger = [
            (x, y) for x in objs for y in objs if relation_holds(scene, x.obj_id, "larger_than", y.obj_id)
        ]
        if bigger and rng.random() < 0.5:
            o, b = _pick(rng, bigger)
        da, db = (unique_desc(scene, x, rng, allowed=("color", "shape"), allow_rel=False) for x in (o, b))
        if da is None or db is None:
            return None
        yes = relation_holds(scene, o.obj_id, "larger_than", b.obj_id)
        return f"is {da.text()} larger than {db.text()}?", "yes" if yes else "no"
    raise ValueError(qtype)


def _wrong(answer: str, qtype: str, rng) -> str:
    """A plausible annotator mistake."""
    if answer in ("yes", "no"):
        return "no" if answer == "yes" else "yes"
    if qtype == "count":
        n = int(answer)
        return str(n + 1 if n == 0 or rng.random() < 0.5 else n - 1)
    pool = {"color": list(COLORS), "shape": list(SHAPES), "size": list(SIZES)}[qtype]
    return _pick(rng, [v for v in pool if v != answer])


def gen_vqa(world, split) -> list[VQAItem]:
    out = []
    for k, scene in enumerate(world.scenes[split]):
        rng = world.rng(split, k, 2)
        qtypes, made = _order(rng, QTYPES), 0
        for t in range(3 * len(QTYPES)):
            if made == world.sizes.questions_per_scene:
                break
            qtype = qtypes[t % len(qtypes)]
            qa = _question(scene, qtype, rng)
            if qa is None:
                continue
            answers = [qa[1]] * 10
            for pos in rng.permutation(10)[: _pick(rng, (0, 0, 0, 1, 1, 1, 2, 2, 3))]:
                answers[pos] = _wrong(qa[1], qtype, rng)
            out.append(VQAItem(f"{scene.scene_id}-q{made}", scene.scene_id, qa[0], answers, qtype))
            made += 1
    return out


# ------------------------------------------------------------------------------------------------- RefExp
def gen_refexps(world, split) -> list[RefExp]:
    out = []
    for k, scene in enumerate(world.scenes[split]):
        rng = world.rng(split, k, 3)
        made = 0
        for o in _order(rng, scene.objects):
            d = unique_desc(scene, o, rng, need_rel=True) if rng.random() < 0.3 else None
            d = d or unique_desc(scene, o, rng)
            if d is not None and made < 2:
                out.append(RefExp(scene.scene_id, d.text(), tuple(o.box), o.obj_id))
                made += 1
    return out


# ---------------------------------------------------------------------------------------------------- VCR
def _rationale(subject: Desc, pred: str, anchor: Desc) -> str:
    return f"because {subject.text()} is {REL_PHRASE[pred]} {anchor.text()}."


def _vcr_item(scene, o, kind, rng) -> VCRItem | None:
    """Q->A: name the object / its colour / its shape; QA->R: the one true fact among 4 statements that all
    agree with the answer (same subject) but three of which are false in the scene."""
    objs = scene.objects
    allowed = () if kind == "which" else tuple(a for a in ATTRS if a != kind)
    d = unique_desc(scene, o, rng, allowed=allowed, need_rel=True)
    if d is None:
        return None
    if kind == "which":
        question = f"which object is {REL_PHRASE[d.rel]} {d.anchor.text()}?"
        subject = Desc(color=o.color, shape=o.shape)
        values = (
            [f"the {x.color} {x.shape}." for x in objs],
            [f"the {c} {s}." for c in COLORS for s in SHAPES],
        )
        truth = f"the {o.color} {o.shape}."
    else:
        question = f"what {kind} is {d.text()}?"
        subject = replace(d, rel=None, anchor=None, **{kind: getattr(o, kind)})
        say = (lambda v: f"it is {v}.") if kind == "color" else (lambda v: f"it is {a_(v)}.")
        values = (
            [say(getattr(x, kind)) for x in objs],
            [say(v) for v in (COLORS if kind == "color" else SHAPES)],
        )
        truth = say(getattr(o, kind))
    # distractor answers: values seen in the scene first (harder), then any
    options = dict.fromkeys(_order(rng, values[0]) + _order(rng, values[1]))
    wrong_answers = [a for a in options if a != truth][:3]
    # Rationales: four facts about the answer-bearing subject ("the yellow cross is above the red star"), each
    # a relation to an object of the scene; exactly one holds. The true one avoids repeating the question's
    # own relation when it can, so the text alone does not give it away.
    anchors = [
        ad for b in objs if b.obj_id != o.obj_id and (ad := unique_desc(scene, b, rng, allow_rel=False))
    ]
    facts = [(subject, p, a) for a in anchors for p in REL_PHRASE]
    true = [f for f in facts if fact_holds(scene, *f)]
    true = [f for f in true if f[1:] != (d.rel, d.anchor)] or [(subject, d.rel, d.anchor)]
    false = list(dict.fromkeys(_rationale(*f) for f in facts if not fact_holds(scene, *f)))
    if len(false) < 3:  # pad with facts about objects that are not in the scene
        fake = [(subject, p, Desc(color=c, shape=s)) for c in COLORS for s in SHAPES for p in REL_PHRASE]
        false += _order(rng, [_rationale(*f) for f in fake if not fact_holds(scene, *f)])[: 3 - len(false)]
    if len(wrong_answers) < 3:
        return None
    wrong_rats = [false[i] for i in sorted(rng.choice(len(false), 3, replace=False))]
    ai, ri = int(rng.integers(4)), int(rng.integers(4))
    answers = wrong_answers[:ai] + [truth] + wrong_answers[ai:]
    rats = wrong_rats[:ri] + [_rationale(*_pick(rng, true))] + wrong_rats[ri:]
    return VCRItem(scene.scene_id, question, answers, ai, rats, ri)


# Where an object is: the image quadrant of its box centre. Objects whose centre lies within QUADRANT_MARGIN
# (a fraction of the side) of a middle line are never asked about, so every "where" fact has one reading.
QUADRANTS = ("in the top left", "in the top right", "in the bottom left", "in the bottom right")
QUADRANT_MARGIN = 0.08


def quadrant(scene: Scene, o) -> int | None:
    """Index into QUADRANTS of the object's box centre, None when it is too close to a middle line."""
    x1, y1, x2, y2 = o.box
    cx, cy = (x1 + x2) / 2 / scene.width, (y1 + y2) / 2 / scene.height
    if min(abs(cx - 0.5), abs(cy - 0.5)) < QUADRANT_MARGIN:
        return None
    return 2 * int(cy > 0.5) + int(cx > 0.5)


def _say(kind: str):
    """How an answer states a value: "it is red." / "it is a star."."""
    return (lambda v: f"it is {v}.") if kind == "color" else (lambda v: f"it is {a_(v)}.")


def _distractors(rng, truth: str, say, objs, attr: str) -> list[str]:
    """Three wrong options: the values other objects of the scene have first (harder), then any."""
    seen = [say(getattr(x, attr)) for x in objs]
    pool = [say(v) for v in (COLORS if attr == "color" else SHAPES)]
    options = dict.fromkeys(_order(rng, seen) + _order(rng, pool))
    return [a for a in options if a != truth][:3]


def _vcr_where_item(scene, o, kind, rng) -> VCRItem | None:
    """Q->A: the colour or shape of an object named by its other attributes; QA->R: where the answer's object
    is. The four rationales restate the answer ("because the red star is in the top left.") and differ only
    in the quadrant, one of each, so the text alone never tells the right one; finding it takes the answer
    (which object it names) and the image (where that object is)."""
    q = quadrant(scene, o)
    d = unique_desc(scene, o, rng, allowed=tuple(a for a in ATTRS if a != kind), allow_rel=False)
    if q is None or d is None or d.sup is not None:
        return None
    say = _say(kind)
    truth = say(getattr(o, kind))
    wrong_answers = _distractors(rng, truth, say, scene.objects, kind)
    subject = replace(d, **{kind: getattr(o, kind)}).text()
    rats = [f"because {subject} is {QUADRANTS[i]}." for i in _order(rng, range(len(QUADRANTS)))]
    ai = int(rng.integers(4))
    answers = wrong_answers[:ai] + [truth] + wrong_answers[ai:]
    ri = rats.index(f"because {subject} is {QUADRANTS[q]}.")
    return VCRItem(scene.scene_id, f"what {kind} is {d.text()}?", answers, ai, rats, ri)


def _vcr_attribute_item(scene, o, kind, rng) -> VCRItem | None:
    """Q->A: the colour (or shape) of the object named by its size alone ("the large object"; "the object" in a
    scene of one); QA->R: the object's other attribute. The four rationales restate the answer ("because the
    large red object is a star.") and differ only in that attribute, its value in the scene and three others
    (values other objects of the scene have first), so the text alone never tells the right one; finding it
    takes the answer (which object it names) and the image (what that object looks like)."""
    other = "shape" if kind == "color" else "color"
    if len(scene.objects) == 1:
        d = Desc()
    elif sum(x.size == o.size for x in scene.objects) == 1:
        d = Desc(size=o.size)
    else:
        return None

    def values(attr: str, say) -> tuple[list[str], int]:
        truth = say(getattr(o, attr))
        wrong = _distractors(rng, truth, say, scene.objects, attr)
        k = int(rng.integers(4))
        return wrong[:k] + [truth] + wrong[k:], k

    answers, ai = values(kind, _say(kind))
    subject = replace(d, **{kind: getattr(o, kind)}).text()
    rats, ri = values(other, (lambda v: f"because {subject} is {a_(v)}.") if other == "shape" else
                      (lambda v: f"because {subject} is {v}."))  # fmt: skip
    return VCRItem(scene.scene_id, f"what {kind} is {d.text()}?", answers, ai, rats, ri)


VCR_STYLES = ("relation", "where", "attribute")


def gen_vcr(world, split, per_scene: int = 1, style: str = "relation") -> list[VCRItem]:
    """Up to `per_scene` questions per scene, each about another (object, kind); round j of every scene, then
    round j+1. Round 0 is the same whatever `per_scene` is.

    style "relation": questions and rationales about spatial relations between objects (the world's first
    set); "where": questions about an object's colour or shape, rationales about where it is (quadrants);
    "attribute": questions about the colour or shape of the object of a size, rationales about its other
    attribute."""
    if style not in VCR_STYLES:
        raise ValueError(f"vcr style must be one of {VCR_STYLES}, got {style!r}")
    rounds: list[list[VCRItem]] = [[] for _ in range(per_scene)]
    for k, scene in enumerate(world.scenes[split]):
        rng = world.rng(split, k, 4)
        if style in ("where", "attribute"):
            make = _vcr_where_item if style == "where" else _vcr_attribute_item
            kinds = _order(rng, ["color", "shape"])
        else:
            make, kinds = _vcr_item, _order(rng, ["color", "shape", "which"])
        items = (
            it for o in _order(rng, scene.objects) for kind in kinds if (it := make(scene, o, kind, rng))
        )
        for j, item in zip(range(per_scene), items):
            rounds[j].append(item)
    return [it for r in rounds for it in r]


# ---------------------------------------------------------------------------------------------- retrieval
@dataclass(frozen=True)
class _Claim:
    """A retrieval caption: mentions (all present), or mention-relation-mention; optionally the background."""

    mentions: tuple[Desc, ...]
    rel: str | None = None
    background: str | None = None

    def text(self) -> str:
        phrases = [a_(m.phrase()) for m in self.mentions]
        body = f"{phrases[0]} {REL_PHRASE[self.rel]} {phrases[1]}" if self.rel else _join(phrases)
        return body + (f" on {a_(self.background)} background" if self.background else "")

    def holds(self, scene) -> bool:
        if self.background and self.background != scene.background:
            return False
        if self.rel:
            return fact_holds(scene, self.mentions[0], self.rel, self.mentions[1])
        return all(matches(scene, m) for m in self.mentions)


def _one_word_changes(claim: _Claim) -> list[_Claim]:
    """Every claim that differs in exactly one word: an attribute, the relation's direction or the background."""
    out = []
    if claim.rel:
        out.append(replace(claim, rel=OPPOSITE[claim.rel]))
    if claim.background:
        out += [replace(claim, background=b) for b in BACKGROUNDS if b != claim.background]
    values = {"size": SIZES, "color": tuple(COLORS), "shape": SHAPES}
    for i, m in enumerate(claim.mentions):
        first = next(a for a in ATTRS if getattr(m, a))
        for attr in ATTRS:
            old = getattr(m, attr)
            for v in values[attr] if old else ():
                if v != old and (attr != first or article(v) == article(old)):  # keep "a"/"an" unchanged
                    mentions = list(claim.mentions)
                    mentions[i] = replace(m, **{attr: v})
                    out.append(replace(claim, mentions=tuple(mentions)))
    return out


def gen_retrieval(world, split) -> list[RetrievalItem]:
    out = []
    for k, scene in enumerate(world.scenes[split]):
        rng = world.rng(split, k, 5)
        for _ in range(20):
            objs = _order(rng, scene.objects)
            bg = scene.background if rng.random() < 0.4 else None
            ms = [Desc(o.size if rng.random() < 0.3 else None, o.color, o.shape) for o in objs]
            rels = [
                p
                for p in REL_PHRASE
                if len(objs) > 1 and relation_holds(scene, objs[0].obj_id, p, objs[1].obj_id)
            ]
            if rels and rng.random() < 0.5:
                claim = _Claim((ms[0], ms[1]), _pick(rng, rels), bg)
            else:
                distinct = list({(m.color, m.shape): m for m in ms[: int(rng.integers(1, 4))]}.values())
                claim = _Claim(tuple(distinct), None, bg)
            negatives = [c for c in _one_word_changes(claim) if not c.holds(scene)]
            if negatives:
                out.append(RetrievalItem(scene.scene_id, claim.text(), _pick(rng, negatives).text()))
                break
    return out


# --------------------------------------------------------------------------------------------------- NLVR
def nlvr_statement(left, right, rng) -> tuple[str, bool, str]:
    """(statement about the pair, its truth, template name)."""
    template = _pick(rng, ("more_shape", "more_objects", "both", "exactly_one", "count", "total"))
    o = _pick(rng, left.objects + right.objects)
    flip = rng.random() < 0.5
    (a, sa), (b, sb) = ((right, "right"), (left, "left")) if flip else ((left, "left"), (right, "right"))

    def count(scene, **attrs) -> int:
        return len(matches(scene, Desc(**attrs)))

    if template == "more_shape":
        text = f"the {sa} image has more {PLURAL[o.shape]} than the {sb} image"
        return text, count(a, shape=o.shape) > count(b, shape=o.shape), template
    if template == "more_objects":
        return (
            f"the {sa} image has more objects than the {sb} image",
            len(a.objects) > len(b.objects),
            template,
        )
    thing = {"color": o.color, "shape": o.shape}
    n_left, n_right = count(left, **thing), count(right, **thing)
    if template == "both":
        return f"both images contain {a_(o.color + ' ' + o.shape)}", n_left > 0 and n_right > 0, template
    if template == "exactly_one":
        return (
            f"exactly one image contains {a_(o.color + ' ' + o.shape)}",
            (n_left > 0) != (n_right > 0),
            template,
        )
    if template == "count":
        true_n = count(a, shape=o.shape)
        n = max(1, true_n + _pick(rng, (0, 0, 1, -1)))
        text = f"the {sa} image contains exactly {NUMBER_WORDS[n]} {o.shape if n == 1 else PLURAL[o.shape]}"
        return text, n == true_n, template
    true_n = count(left, color=o.color) + count(right, color=o.color)
    n = max(1, true_n + _pick(rng, (0, 0, 1, -1)))
    return f"there are {n} {o.color} objects in the two images", n == true_n, template


def gen_nlvr(world, split, per_scene: int = 1) -> list[NLVRItem]:
    """`per_scene` statements with each scene of the split on the left (round j of every scene, then round j+1);
    the labels of each round are exactly 50/50. Round 0 is the same whatever `per_scene` is."""
    scenes = world.scenes[split]
    if len(scenes) < 2:
        return []
    out = []
    for j in range(per_scene):
        task = 6 if j == 0 else 100 + j  # round 0 keeps the draws it always had
        labels = world.rng(split, len(scenes), task).permutation(len(scenes)) % 2 == 0  # exactly balanced
        for k, left in enumerate(scenes):
            rng = world.rng(split, k, task)
            for _ in range(200):
                right = scenes[(k + 1 + int(rng.integers(len(scenes) - 1))) % len(scenes)]
                text, truth, template = nlvr_statement(left, right, rng)
                if truth == labels[k]:
                    break
            out.append(NLVRItem((left.scene_id, right.scene_id), text, bool(truth), {"template": template}))
    return out


GENERATORS = {
    "captions": gen_captions,
    "vqa": gen_vqa,
    "refexps": gen_refexps,
    "vcr": gen_vcr,
    "retrieval": gen_retrieval,
    "nlvr": gen_nlvr,
}
