"""The synthetic world: determinism, splits, scene content, and every task's text checked against the scene.

The checks re-derive answers from the scene objects with their own small parser and geometry (they do not
call the generator's matcher), following the conventions documented in `vilbert_lite.data.world`.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

import numpy as np
import pytest

from vilbert_lite.data.scene import COLORS, SHAPES, SIZES, render, visible_masks
from vilbert_lite.data.world import make_world
from vilbert_lite.profiles import WorldSize, get_profile

SIZES_SMALL = WorldSize(pretrain_scenes=60, train_scenes=60, val_scenes=30, test_scenes=30, image_size=128)
REL = {"to the left of": "left_of", "to the right of": "right_of", "above": "above", "below": "below"}
SUP = {"leftmost": "left_of", "rightmost": "right_of", "topmost": "above", "bottommost": "below"}
PLURALS = {"crosses": "cross", **{s + "s": s for s in SHAPES}}


@pytest.fixture(scope="module")
def world():
    return make_world(sizes=SIZES_SMALL, seed=0)


# --------------------------------------------------------------------------- independent scene semantics
def holds(scene, a, pred, b) -> bool:
    if a == b:
        return False
    oa, ob = scene.objects[a], scene.objects[b]
    side = max(scene.width, scene.height)
    ax, ay = (oa.box[0] + oa.box[2]) / 2, (oa.box[1] + oa.box[3]) / 2
    bx, by = (ob.box[0] + ob.box[2]) / 2, (ob.box[1] + ob.box[3]) / 2
    m = 0.06 * side
    return {
        "left_of": bx - ax > m,
        "right_of": ax - bx > m,
        "above": by - ay > m,
        "below": ay - by > m,
        "larger_than": oa.size == "large" and ob.size == "small",
    }[pred]


def parse_desc(text: str) -> dict:
    """'the small red circle to the left of the blue star' -> {size, color, shape, sup, rel, anchor}."""
    assert text.startswith("the "), text
    words = text[4:].split(" ")
    for i in range(len(words)):
        for phrase, pred in REL.items():
            n = len(phrase.split())
            if " ".join(words[i : i + n]) == phrase and words[i + n : i + n + 1] == ["the"]:
                base = parse_desc("the " + " ".join(words[:i]))
                return {**base, "rel": pred, "anchor": parse_desc(" ".join(words[i + n :]))}
    out = {"size": None, "color": None, "shape": None, "sup": None, "rel": None, "anchor": None}
    *mods, noun = words
    out["shape"] = None if noun == "object" else noun
    assert noun == "object" or noun in SHAPES, text
    for w in mods:
        key = "sup" if w in SUP else "size" if w in SIZES else "color" if w in COLORS else None
        assert key is not None and out[key] is None, f"bad word {w!r} in {text!r}"
        out[key] = w
    return out


def match(scene, d: dict) -> list[int]:
    ids = [
        o.obj_id
        for o in scene.objects
        if (d["size"] in (None, o.size))
        and (d["color"] in (None, o.color))
        and (d["shape"] in (None, o.shape))
    ]
    if d["rel"]:
        anchors = match(scene, d["anchor"])
        ids = [i for i in ids if any(holds(scene, i, d["rel"], j) for j in anchors)]
    if d["sup"]:
        ids = [i for i in ids if all(holds(scene, i, SUP[d["sup"]], j) for j in ids if j != i)]
    return ids


def the_object(scene, text: str):
    ids = match(scene, parse_desc(text))
    assert len(ids) == 1, (scene.scene_id, text, ids)
    return scene.objects[ids[0]]


def n_with(scene, color=None, shape=None, size=None) -> int:
    return sum(
        (color in (None, o.color)) and (shape in (None, o.shape)) and (size in (None, o.size))
        for o in scene.objects
    )


# ------------------------------------------------------------------------------------------------ tests
def test_same_seed_same_bytes_different_seed_differs(world):
    again, other = make_world(sizes=SIZES_SMALL, seed=0), make_world(sizes=SIZES_SMALL, seed=1)
    for sid in ["pretrain-000003", "train-000000", "val-000007", "test-000029"]:
        assert world.image(sid).tobytes() == again.image(sid).tobytes()
        assert world.image(sid).tobytes() != other.image(sid).tobytes()
        assert np.array_equal(world.gt_boxes(sid), again.gt_boxes(sid))
    for task in ("vqa", "refexps", "vcr", "retrieval", "nlvr", "captions"):
        assert repr(getattr(world, task)("val")) == repr(getattr(again, task)("val")), task
        assert repr(getattr(world, task)("val")) != repr(getattr(other, task)("val")), task
    assert repr(world.captions("pretrain")) == repr(again.captions("pretrain"))


def test_splits_sizes_and_no_overlap(world):
    ids, hashes = {}, {}
    for split, n in [("pretrain", 60), ("train", 60), ("val", 30), ("test", 30)]:
        scenes = world.scenes[split]
        assert len(scenes) == n and all(
            s.scene_id.startswith(split + "-") and s.split == split for s in scenes
        )
        ids[split] = {s.scene_id for s in scenes}
        hashes[split] = {hashlib.sha1(render(s).tobytes()).hexdigest() for s in scenes}
        assert len(ids[split]) == n and len(hashes[split]) == n
    splits = list(ids)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not ids[a] & ids[b] and not hashes[a] & hashes[b]
    for name in ("smoke", "cpu", "gpu"):  # the pretraining corpus dwarfs the downstream training set
        ws = get_profile(name).world
        assert ws.pretrain_scenes > ws.train_scenes > 0 and 128 <= ws.image_size <= 224
    with pytest.raises(ValueError):
        world.vqa("pretrain")
    with pytest.raises(KeyError):
        world.scene("train-999999")


def test_scene_content_and_rendering(world):
    scenes = [s for split in world.scenes.values() for s in split]
    assert all(2 <= len(s.objects) <= 8 for s in scenes)
    assert {len(s.objects) for s in scenes} >= {2, 5, 8}
    objs = [o for s in scenes for o in s.objects]
    assert len({o.shape for o in objs}) >= 6 and len({o.color for o in objs}) >= 8
    assert {o.size for o in objs} == {"small", "large"}
    assert len({(s.background, s.background_kind) for s in scenes}) >= 8
    for s in scenes[:40]:
        img = world.image(s.scene_id)
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8
        boxes = world.gt_boxes(s.scene_id)
        assert boxes.dtype == np.float32 and boxes.shape == (len(s.objects), 4)
        assert (
            (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 128).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        )
        masks = visible_masks(s)
        for o, m in zip(s.objects, masks):
            side = max(o.box[2] - o.box[0], o.box[3] - o.box[1]) / 128
            assert side >= (0.17 if o.size == "small" else 0.28), (s.scene_id, o)
            x1, y1, x2, y2 = o.box
            poly = o.polygon()  # the box is tight around the drawn outline
            assert np.allclose(np.r_[poly.min(0), poly.max(0)], o.box)
            solo = (x2 - x1) * (y2 - y1)
            assert m.sum() >= 0.25 * solo, "object mostly hidden"  # shapes fill >= ~38 % of their box
            ys, xs = np.nonzero(m)
            assert (
                xs.min() >= x1 - 1.5
                and xs.max() <= x2 + 1.5
                and ys.min() >= y1 - 1.5
                and ys.max() <= y2 + 1.5
            )
            mean = img[m].astype(float).mean(0)  # the drawn pixels have the object's named colour
            dists = {c: np.linalg.norm(mean - np.array(rgb)) for c, rgb in COLORS.items()}
            assert min(dists, key=dists.get) == o.color


def test_scene_graph_matches_geometry(world):
    for s in world.scenes["train"]:
        n = len(s.objects)
        rels = {(a, p, b) for a, p, b in s.relations if p != "near"}
        expect = {
            (a, p, b)
            for a in range(n)
            for b in range(n)
            for p in ("left_of", "right_of", "above", "below", "larger_than")
            if holds(s, a, p, b)
        }
        assert rels == expect
        for a, p, b in s.relations:
            if p == "near":
                assert (b, "near", a) in s.relations


def test_vqa_answers_agree_with_scenes(world):
    items = world.vqa("train") + world.vqa("test")
    assert len(world.vqa("train")) == len(world.scenes["train"]) * world.sizes.questions_per_scene
    assert len({q.qtype for q in items}) >= 6
    assert len({q.question_id for q in items}) == len(items)
    noisy = 0
    for q in items:
        s = world.scene(q.image_id)
        assert len(q.answers) == 10
        top, votes = Counter(q.answers).most_common(1)[0]
        noisy += votes < 10
        assert votes >= 7
        text = q.question
        if q.qtype in ("color", "shape", "size"):
            m = re.fullmatch(r"what (color|shape|size) is (the .+)\?", text)
            truth = getattr(the_object(s, m.group(2)), m.group(1))
        elif q.qtype == "count":
            m = re.fullmatch(r"how many (?:(\w+) )?(\w+) are there\?", text)
            truth = str(n_with(s, color=m.group(1), shape=PLURALS.get(m.group(2))))
        elif q.qtype == "exists":
            m = re.fullmatch(r"is there an? (?:(small|large) )?(\w+) (\w+)\?", text)
            truth = "yes" if n_with(s, size=m.group(1), color=m.group(2), shape=m.group(3)) else "no"
        elif q.qtype == "spatial":
            m = re.fullmatch(r"is (the .+?) (to the left of|to the right of|above|below) (the .+)\?", text)
            a, b = the_object(s, m.group(1)), the_object(s, m.group(3))
            truth = "yes" if holds(s, a.obj_id, REL[m.group(2)], b.obj_id) else "no"
        else:
            m = re.fullmatch(r"is (the .+) larger than (the .+)\?", text)
            a, b = the_object(s, m.group(1)), the_object(s, m.group(2))
            truth = "yes" if holds(s, a.obj_id, "larger_than", b.obj_id) else "no"
        assert top == truth, (q, truth)
    assert 0.2 * len(items) < noisy < 0.9 * len(items)
    for qtype in ("exists", "spatial", "compare"):  # yes/no questions are not one-sided
        yes = [Counter(q.answers).most_common(1)[0][0] == "yes" for q in items if q.qtype == qtype]
        assert 0.25 < np.mean(yes) < 0.75, qtype
    vocab = world.answer_vocab
    assert vocab == sorted(set(vocab)) and {a for q in world.vqa("train") for a in q.answers} == set(vocab)


def test_refexps_pick_exactly_one_object(world):
    for split in ("train", "val"):
        items = world.refexps(split)
        assert len(items) >= len(world.scenes[split])
        assert any(" of the " in r.text or "above" in r.text or "below" in r.text for r in items)
        for r in items:
            s = world.scene(r.image_id)
            o = the_object(s, r.text)
            assert o.obj_id == r.obj_id and tuple(r.box) == tuple(o.box)


def test_vcr_one_right_answer_and_rationale(world):
    items = world.vcr("train")
    assert len(items) >= 0.9 * len(world.scenes["train"])
    for it in items:
        s = world.scene(it.image_id)
        assert len(it.answers) == 4 == len(it.rationales) and len(set(it.answers)) == 4
        m = re.fullmatch(r"what (color|shape) is (the .+)\?", it.question)
        if m:
            value = getattr(the_object(s, m.group(2)), m.group(1))
            right = [f"it is {value}.", f"it is a {value}.", f"it is an {value}."]
        else:
            m = re.fullmatch(
                r"which object is (to the left of|to the right of|above|below) (the .+)\?", it.question
            )
            o = the_object(s, "the object " + m.group(1) + " " + m.group(2))
            right = [f"the {o.color} {o.shape}."]
        assert [a in right for a in it.answers] == [i == it.answer_label for i in range(4)], it
        truths = []
        for r in it.rationales:
            m = re.fullmatch(
                r"because (the .+?) is (to the left of|to the right of|above|below) (the .+)\.", r
            )
            subj, anchor = match(s, parse_desc(m.group(1))), match(s, parse_desc(m.group(3)))
            truths.append(any(holds(s, i, REL[m.group(2)], j) for i in subj for j in anchor))
        assert truths == [i == it.rationale_label for i in range(4)], it


def _claim_true(scene, text: str) -> bool:
    m = re.fullmatch(r"(.+?)(?: on an? (\w+) background)?", text)
    body, bg = m.group(1), m.group(2)
    if bg and bg != scene.background:
        return False

    def mention(phrase):
        return parse_desc("the " + re.sub(r"^an? ", "", phrase))

    for phrase, pred in REL.items():
        if f" {phrase} a" in body:
            a, b = body.split(f" {phrase} ")
            return any(
                holds(scene, i, pred, j) for i in match(scene, mention(a)) for j in match(scene, mention(b))
            )
    return all(match(scene, mention(p)) for p in re.split(r", | and ", body))


def test_retrieval_hard_negatives_differ_in_one_attribute(world):
    items = world.retrieval("train") + world.retrieval("val")
    assert len(items) >= 0.95 * (len(world.scenes["train"]) + len(world.scenes["val"]))
    for it in items:
        a, b = it.caption.split(), it.hard_negative.split()
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1, it
        s = world.scene(it.image_id)
        assert _claim_true(s, it.caption) and not _claim_true(s, it.hard_negative), it


def test_nlvr_balanced_and_correct(world):
    items = world.nlvr("train") + world.nlvr("val")
    for split in ("train", "val"):
        labels = [it.label for it in world.nlvr(split)]
        assert abs(sum(labels) - (len(labels) - sum(labels))) <= 1
    words = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert len({it.extra["template"] for it in items}) >= 5
    for it in items:
        left, right = (world.scene(i) for i in it.image_ids)
        assert left.scene_id != right.scene_id and left.split == right.split
        side = {"left": left, "right": right}
        t = it.statement
        if m := re.fullmatch(r"the (left|right) image has more (\w+) than the (left|right) image", t):
            shape = PLURALS.get(m.group(2))
            truth = n_with(side[m.group(1)], shape=shape) > n_with(side[m.group(3)], shape=shape)
        elif m := re.fullmatch(r"(both|exactly one) images? contains? an? (\w+) (\w+)", t):
            has = [n_with(x, color=m.group(2), shape=m.group(3)) > 0 for x in (left, right)]
            truth = all(has) if m.group(1) == "both" else has[0] != has[1]
        elif m := re.fullmatch(r"the (left|right) image contains exactly (\w+) (\w+)", t):
            truth = n_with(side[m.group(1)], shape=PLURALS.get(m.group(3), m.group(3))) == words.index(
                m.group(2)
            )
        else:
            m = re.fullmatch(r"there are (\d+) (\w+) objects in the two images", t)
            truth = n_with(left, color=m.group(2)) + n_with(right, color=m.group(2)) == int(m.group(1))
        assert truth == it.label, it


def test_captions_web_style(world):
    caps = world.captions("pretrain")
    assert len(caps) == 60 * SIZES_SMALL.captions_per_scene
    assert Counter(c.image_id for c in caps) == {s.scene_id: 3 for s in world.scenes["pretrain"]}
    lengths = [len(c.text.split()) for c in caps]
    assert min(lengths) <= 4 and max(lengths) >= 10 and len({c.text for c in caps}) > 0.6 * len(caps)
    vague = [c for c in caps if re.search(r"\b(thing|shape|object|figure)s?\b", c.text)]
    assert len(vague) >= 5
    for c in caps:  # colour words name colours that are in the scene
        s = world.scene(c.image_id)
        said = {w.strip(",") for w in c.text.split()} & set(COLORS) - {s.background}
        assert said <= {o.color for o in s.objects}, c


def test_profile_world():
    w = make_world("smoke", seed=3)
    ws = get_profile("smoke").world
    assert len(w.scenes["train"]) == ws.train_scenes and w.scenes["train"][0].width == ws.image_size
    assert len(w.vqa("val")) == ws.val_scenes * ws.questions_per_scene


def test_vcr_where_style_needs_the_answer_and_the_image(world):
    """style "where": Q→A asks an object's colour or shape by its other attributes (one right answer, checked
    against the scene graph with an independent parser); QA→R's four rationales restate the answer's object and
    name the four quadrants once each, the right one holding the object's box centre, so the text alone
    cannot tell them apart. Every answered object sits clear of the middle lines."""
    items = world.vcr("train", 4, "where")
    assert len(items) >= 0.5 * len(world.scenes["train"])
    quads = ("top left", "top right", "bottom left", "bottom right")
    for it in items:
        s = world.scene(it.image_id)
        m = re.fullmatch(r"what (color|shape) is (the .+)\?", it.question)
        o = the_object(s, m.group(2))
        value = getattr(o, m.group(1))
        right = [f"it is {value}.", f"it is a {value}.", f"it is an {value}."]
        assert len(set(it.answers)) == 4 and [a in right for a in it.answers] == [
            i == it.answer_label for i in range(4)
        ]
        said = [
            re.fullmatch(r"because (the .+) is in the (top|bottom) (left|right)\.", r) for r in it.rationales
        ]
        assert {f"{x.group(2)} {x.group(3)}" for x in said} == set(quads)  # each quadrant once
        assert {x.group(1) for x in said} == {said[0].group(1)} and the_object(s, said[0].group(1)) is o
        cx, cy = (o.box[0] + o.box[2]) / 2 / s.width, (o.box[1] + o.box[3]) / 2 / s.height
        assert min(abs(cx - 0.5), abs(cy - 0.5)) >= 0.08
        where = ("bottom" if cy > 0.5 else "top") + " " + ("right" if cx > 0.5 else "left")
        assert [f"{x.group(2)} {x.group(3)}" == where for x in said] == [
            i == it.rationale_label for i in range(4)
        ]
    labels = [it.rationale_label for it in items]  # no position bias for a text-only model to learn
    assert all(abs(labels.count(k) / len(labels) - 0.25) < 0.1 for k in range(4))
    with pytest.raises(ValueError, match="style"):
        world.vcr("train", 1, "relations")


def test_vcr_attribute_style_needs_the_answer_and_the_image(world):
    """style "attribute": Q→A asks the colour (shape) of the object of a size (or the only object); QA→R's four
    rationales restate the answer's object and give four values of its other attribute, the right one its
    own, checked against the scene graph; none of the right values is in the text of its question."""
    items = world.vcr("train", 4, "attribute")
    assert len(items) >= 0.3 * len(world.scenes["train"])
    for it in items:
        s = world.scene(it.image_id)
        m = re.fullmatch(r"what (color|shape) is (the (?:(small|large) )?object)\?", it.question)
        kind, other = m.group(1), "shape" if m.group(1) == "color" else "color"
        named = [x for x in s.objects if m.group(3) in (None, x.size)]
        assert len(named) == 1
        o = named[0]
        value = getattr(o, kind)
        right = [f"it is {value}.", f"it is a {value}.", f"it is an {value}."]
        assert len(set(it.answers)) == 4 and [a in right for a in it.answers] == [
            i == it.answer_label for i in range(4)
        ]
        said = [re.fullmatch(r"because (the .+?) is (?:an? )?(\w+)\.", r) for r in it.rationales]
        assert {x.group(1) for x in said} == {said[0].group(1)} and the_object(s, said[0].group(1)) is o
        assert value in said[0].group(1) and getattr(o, other) not in it.question
        assert [x.group(2) == getattr(o, other) for x in said] == [i == it.rationale_label for i in range(4)]
        assert len({x.group(2) for x in said}) == 4
