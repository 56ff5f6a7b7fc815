"""vilbert_lite.pointing: which words name which regions, the hit counts on hand-made maps, and the whole analysis
on a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from vilbert_lite.data.items import RegionFeatures
from vilbert_lite.data.regions import visual_inputs
from vilbert_lite.data.scene import Scene, SceneObject
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.data.world import make_world
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.heads import ViLBertForPreTraining
from vilbert_lite.pretrain.data import CaptionImageDataset, _word_sets
from vilbert_lite.profiles import WorldSize
from vilbert_lite.viz import attention as viz
from vilbert_lite.viz import pointing


# ------------------------------------------------------------------------------------ which words name what
def _obj(i, shape, color, size="small"):
    box = (10.0 * i, 10.0 * i, 10.0 * i + 8, 10.0 * i + 8)
    return SceneObject(i, shape, color, size, box, (10.0 * i + 4, 10.0 * i + 4), 4.0, 0.0, (0, 0, 0))


@pytest.fixture(scope="module")
def scene():
    objects = [_obj(0, "circle", "red"), _obj(1, "circle", "blue", "large"), _obj(2, "square", "red"),
               _obj(3, "cross", "green"), _obj(4, "hexagon", "black")]  # fmt: skip
    return Scene("val-000000", "val", 64, 64, objects, [], "white", "plain", 0)


TEXT = ("a small red ball near two circles, a large disc, a red thing, a green plus sign, two hexagons, "
        "a yellow star and a purple diamond on a blue background")  # fmt: skip


def _named(text, scene, **kw):
    tok = get_tokenizer()
    targets = pointing.object_word_targets(text, scene, tok, **kw)
    tokens = tok.convert_ids_to_tokens(tok(text)["input_ids"])
    return [(tokens[t], sorted(targets[t])) for t in sorted(targets)], targets, tokens


def test_object_word_targets_on_a_hand_built_scene(scene):
    got, targets, tokens = _named(TEXT, scene)
    assert got == [
        ("red", [1]), ("ball", [1]),  # size + colour + synonym: the small red circle (object 0 = region 1)
        ("circles", [1, 2]),  # a plural: every circle
        ("disc", [2]),  # size directly before a synonym: the large circle
        ("red", [1, 3]),  # colour + hypernym: the red objects ("thing" itself is not an object word)
        ("green", [4]), ("plus", [4]),  # a two-word synonym, read at its first word
        ("he", [5]),  # "hexagons" = he ##xa ##gon ##s: the first piece
    ]  # fmt: skip
    # "yellow star" and "purple diamond" name nothing in this scene; "blue background" is no object
    assert tokens[max(targets) + 1] == "##xa"
    assert all("yellow" != tokens[t] and "blue" != tokens[t] for t in targets)


def test_object_word_targets_respect_region_cap_truncation_and_swaps(scene):
    got, _, _ = _named(TEXT, scene, max_regions=3)  # regions 1..3 exist: objects 3 and 4 are cut
    assert got == [("red", [1]), ("ball", [1]), ("circles", [1, 2]), ("disc", [2]), ("red", [1, 3])]
    got, _, _ = _named(TEXT, scene, max_length=6)  # [CLS] a small red ball [SEP]
    assert got == [("red", [1]), ("ball", [1])]
    assert (
        pointing.object_word_targets("a purple diamond near an orange star", scene) == {}
    )  # a swapped caption
    assert pointing.object_word_targets("several shapes on a red background", scene) == {}


def test_every_shape_word_of_genuine_captions_names_something():
    """On the generator's own (true) captions, every shape word the masked-word evaluation counts is an object
    word here, and its named objects have that shape."""
    world = make_world(
        sizes=WorldSize(pretrain_scenes=40, train_scenes=1, val_scenes=1, test_scenes=1, image_size=64)
    )
    tok = get_tokenizer()
    shape_words = 0
    for cap in world.captions("pretrain"):
        scene = world.scene(cap.image_id)
        words = {w.start: w for w in pointing.object_words(cap.text, scene)}
        enc = tok(cap.text)
        for t, wid in enumerate(enc.word_ids()):
            if wid is None or t != enc.word_to_tokens(wid).start:
                continue
            span = enc.word_to_chars(wid)
            word = cap.text[span.start : span.end].lower()
            if word in _word_sets()["shape"]:
                shape_words += 1
                assert span.start in words, (cap.text, word)
                shape = pointing._SHAPE_PHRASES[(word,)]
                assert all(scene.objects[k].shape == shape for k in words[span.start].objects)
    assert shape_words > 40


# ------------------------------------------------------------------------------------------ hand-made maps
# 2 layers x 2 heads, a batch of 2 captions, T = 4 tokens, R = 4 regions (caption 1's region 3 is padding).
TARGETS = [
    {1: {1}, 2: {2, 3}},
    {1: {2}, 2: {0}, 3: {3}},
]  # caption 1: token 2 names only IMG, token 3 padding
PICKS = {  # (layer, head) -> the region each counted word looks at most: (c0 t1, c0 t2, c1 t1)
    (0, 0): (1, 1, 2),  # hit, miss, hit
    (0, 1): (2, 1, 1),  # miss, miss, miss
    (1, 0): (1, 2, 1),  # hit, hit, miss
    (1, 1): (1, 3, 2),  # hit, hit, hit
}
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])


def _hand_made_maps() -> torch.Tensor:
    a = torch.full((2, 2, 2, 4, 4), 0.05)  # (L, B, H, T, R)
    a[..., 0] = 0.5  # IMG is always the strongest: pointing must skip it
    a[:, 1, :, :, 3] = 0.4  # caption 1's padded region beats every real one: pointing must skip it too
    for (layer, head), (r0, r1, r2) in PICKS.items():
        a[layer, 0, head, 1, r0] = a[layer, 0, head, 2, r1] = a[layer, 1, head, 1, r2] = 0.3
    return a


def test_pointing_hits_on_hand_made_maps():
    a = _hand_made_maps()
    c = pointing.pointing_hits(a, TARGETS, MASK)
    assert c.hits.tolist() == [[2, 0], [2, 3]]
    assert c.words == 3  # c0 t1, c0 t2, c1 t1 (c1 t2 names only IMG, c1 t3 only a padded region)
    assert c.chance == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)  # |named| / real object regions (3, 3, 2)
    assert c.best() == (1, 1)
    assert torch.allclose(c.accuracy, torch.tensor([[2 / 3, 0.0], [2 / 3, 1.0]], dtype=torch.float64))
    same = pointing.pointing_hits(list(a), TARGETS, MASK)  # the model output's list of (B, h, T, R)
    assert same.hits.tolist() == c.hits.tolist() and same.words == 3
    both = c + same
    assert (
        both.hits.tolist() == [[4, 0], [4, 6]] and both.words == 6 and both.chance == pytest.approx(c.chance)
    )
    # without the mask, caption 1's padded region 3 counts as real and wins there at every head
    unmasked = pointing.pointing_hits(a, TARGETS)
    assert unmasked.words == 4 and unmasked.hits.tolist() == [[2, 1], [3, 3]]


def test_pointing_hits_can_skip_words_that_name_every_region():
    a = torch.zeros(1, 1, 2, 3, 3)  # 1 layer, 1 caption, 2 heads, 3 tokens, IMG + 2 object regions
    a[0, 0, 0, :, 1] = a[0, 0, 1, :, 2] = 1.0  # head 0 looks at region 1, head 1 at region 2
    targets = [{1: {1, 2}, 2: {2}}]  # token 1 names both objects: every head hits it
    c = pointing.pointing_hits(a, targets)
    assert c.hits.tolist() == [[1, 2]] and c.words == 2 and c.chance == pytest.approx((1 + 1 / 2) / 2)
    c = pointing.pointing_hits(a, targets, skip_trivial=True)
    assert c.hits.tolist() == [[0, 1]] and c.words == 1 and c.chance == pytest.approx(1 / 2)


def test_best_head_breaks_ties_by_layer_then_head():
    c = pointing.PointingCounts(torch.tensor([[1, 3], [3, 0]]), 5, 1.0)
    assert c.best() == (0, 1)


def test_pointing_hits_matches_a_loop_on_random_maps():
    g = torch.Generator().manual_seed(0)
    L, B, H, T, R = 3, 5, 4, 9, 7
    a = torch.rand(L, B, H, T, R, generator=g).softmax(-1)
    mask = (torch.arange(R)[None] < torch.randint(2, R + 1, (B, 1), generator=g)).long()
    targets = [{int(t): {int(r) for r in torch.randint(0, R, (2,), generator=g)} for t in torch.randperm(T, generator=g)[:4]}
               for _ in range(B)]  # fmt: skip
    c = pointing.pointing_hits(a, targets, mask)
    hits, words, chance = np.zeros((L, H), int), 0, 0.0
    for b in range(B):
        real = [r for r in range(1, R) if mask[b, r]]
        for t, regions in targets[b].items():
            named = [r for r in regions if r in real]
            if not named:
                continue
            words += 1
            chance += len(named) / len(real)
            for layer in range(L):
                for h in range(H):
                    best = max(real, key=lambda r: (a[layer, b, h, t, r].item(), -r))
                    hits[layer, h] += best in named
    assert c.hits.tolist() == hits.tolist() and c.words == words and c.chance_sum == pytest.approx(chance)


def test_pointing_hits_rejects_bad_input():
    a = _hand_made_maps()
    with pytest.raises(ValueError, match="2 target dicts for a batch of 3"):
        pointing.pointing_hits(a[:, :1].expand(2, 3, 2, 4, 4), TARGETS)
    with pytest.raises(ValueError, match="outside T=4, R=4"):
        pointing.pointing_hits(a, [{1: {4}}, {}])
    with pytest.raises(ValueError, match="output_attentions=True"):
        pointing.pointing_hits([], TARGETS)


# ------------------------------------------------------------------------------------- a tiny random model
@pytest.fixture(scope="module")
def tiny():
    """A tiny world with random region features on its ground-truth boxes, and a random `tiny` model."""
    world = make_world(
        sizes=WorldSize(pretrain_scenes=12, train_scenes=1, val_scenes=6, test_scenes=1, image_size=64)
    )
    tok = get_tokenizer()
    g = np.random.default_rng(0)
    train, val = world.captions("pretrain"), world.captions("val")
    visual = {}
    for image_id in dict.fromkeys(c.image_id for c in train + val):
        boxes = world.gt_boxes(image_id)
        rf = RegionFeatures(image_id, 64, 64, boxes, g.random((len(boxes), 1280), np.float32),
                            np.full((len(boxes), 1000), 1e-3, np.float32))  # fmt: skip
        visual[image_id] = visual_inputs(rf, max_regions=36)
    torch.manual_seed(0)
    model = ViLBertForPreTraining(ViLBertConfig.preset("tiny"))
    return (
        world,
        CaptionImageDataset(train, visual, tok),
        CaptionImageDataset(val, visual, tok),
        visual,
        model,
    )


def test_pointing_accuracy_on_a_random_tiny_model(tiny):
    world, train, val, _, model = tiny
    model.train()
    res = pointing.pointing_accuracy(model, train, val, world, n_train=20, batch_size=8, device="cpu")
    assert model.training  # the caller's mode is restored
    L, H = model.config.num_co_layers, model.config.bi_num_attention_heads
    t = res["table"]
    assert t.shape == (L * H, 3) and list(t.index) == [(i, j) for i in range(L) for j in range(H)]
    assert ((t["train_accuracy"] >= 0) & (t["train_accuracy"] <= 1) & (t["val_accuracy"] <= 1)).all()
    assert t["train_accuracy"].to_numpy().argmax() == res["layer"] * H + res["head"]  # chosen on train
    assert 0 <= res["val_accuracy"] <= 1 and 0 < res["val_chance"] < 1
    assert res["val_accuracy"] == pytest.approx(t.loc[(res["layer"], res["head"]), "val_accuracy"], abs=1e-4)
    assert res["n_train_captions"] == 20 and res["n_val_captions"] == len(val) and res["n_val_words"] > 5
    assert "chance" in res["summary"]
    again = pointing.pointing_accuracy(model, train, val, world, n_train=20, batch_size=5, device="cpu")
    assert again["table"].equals(t)  # deterministic, and batching does not matter
    some = pointing.pointing_accuracy(model, train, val, world, n_train=20, device="cpu", skip_trivial=True)
    assert some["n_val_words"] < res["n_val_words"] and some["val_chance"] < res["val_chance"]


def test_pointing_checks_the_regions_are_the_scene_objects(tiny):
    world, _, val, visual, model = tiny
    blank = CaptionImageDataset(val.captions, visual, get_tokenizer(), blank_images=True)
    with pytest.raises(ValueError, match="ground-truth boxes"):
        pointing.count_pointing(model, blank, world, device="cpu")
    other = make_world(sizes=WorldSize(pretrain_scenes=1, train_scenes=1, val_scenes=6, test_scenes=1, image_size=64),
                       seed=1)  # fmt: skip
    with pytest.raises(ValueError, match="ground-truth boxes"):
        pointing.count_pointing(model, val, other, device="cpu")


def test_pointing_views(tiny, tmp_path):
    world, _, val, _, model = tiny
    i = next(i for i in range(len(val)) if pointing.dataset_targets(val, world, i))
    fig = pointing.plot_pointing(model, val, world, i, layer=1, head=0, device="cpu", save=tmp_path / "p.png")
    assert isinstance(fig, Figure) and (tmp_path / "p.png").stat().st_size > 1000
    ex = pointing.pointing_explorer(model, val, world, i, layer=0, head=1, device="cpu")
    assert ex.state["direction"] == "word → region" and (ex.state["layer"], ex.state["head"]) == (0, 1)
    assert ex.named and ex.state["word"] == min(ex.named)
    ax = ex.figure().axes[0]
    dashed = [p for p in ax.patches if p.get_linestyle() == "--"]
    assert len(dashed) == len(ex.named[ex.state["word"]])  # the named boxes are outlined
    assert isinstance(viz.plot_image_overlay(np.zeros((8, 8, 3)), np.ones((2, 4)), [0.2, 0.8], highlight=[0, 1]),
                      Figure)  # fmt: skip
