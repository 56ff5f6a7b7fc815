"""vilbert_lite.viz: every static view returns a Figure and saves PNG; the explorer builds and updates; bad input
gets a clear ValueError."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from vilbert_lite import ViLBertConfig, ViLBertModel
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.viz import attention as viz

TEXT = "a red square left of a blue circle"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ViLBertModel(ViLBertConfig.preset("tiny")).eval()  # v_feature_size 1280 = the extractor's


@pytest.fixture(scope="module")
def scene():
    """A 96x128 image with two flat shapes and their boxes (x1, y1, x2, y2 pixels)."""
    img = np.full((96, 128, 3), 235, np.uint8)
    img[10:50, 10:50] = (220, 30, 35)
    img[40:90, 70:120] = (35, 70, 225)
    return img, np.array([[10, 10, 50, 50], [70, 40, 120, 90]], np.float32)


@pytest.fixture(scope="module")
def pair(model, scene):
    """A forward pass with output_attentions on one pair: 2 regions + the global one, random features."""
    img, boxes = scene
    tok = get_tokenizer()
    enc = tok(TEXT, return_tensors="pt")
    g = torch.Generator().manual_seed(0)
    feats = torch.rand(1, 3, 1280, generator=g)
    pos = torch.tensor(
        [
            [
                [0, 0, 1, 1, 1],
                [10 / 128, 10 / 96, 50 / 128, 50 / 96, 0.13],
                [70 / 128, 40 / 96, 1, 90 / 96, 0.2],
            ]
        ]
    )
    with torch.no_grad():
        out = model(
            enc["input_ids"], feats, pos, token_type_ids=enc["token_type_ids"], output_attentions=True
        )
    return out, tok.convert_ids_to_tokens(enc["input_ids"][0].tolist())


def _png(fig, path):
    assert isinstance(fig, Figure)
    assert path.exists() and path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------------------------- static views
def test_static_views_return_figures_and_save_png(pair, scene, tmp_path):
    out, tokens = pair
    img, boxes = scene
    regions = ["IMG", "red square", "blue circle"]
    t2v = out.attentions.t2v[-1][0]  # (h, T, R)
    cases = {
        "heatmap": lambda p: viz.plot_heatmap(
            out.attentions.text[0][0, 0], tokens, tokens, title="t", save=p
        ),
        "grid": lambda p: viz.plot_attention_grid(
            out.attentions.text, tokens, tokens, layers=[0, 2], heads=[1], save=p
        ),
        "matrix": lambda p: viz.plot_word_region_matrix(t2v, tokens, regions, save=p),
        "matrix2d": lambda p: viz.plot_word_region_matrix(t2v.mean(0).numpy(), tokens, save=p),
        "overlay": lambda p: viz.plot_image_overlay(
            img, np.r_[[[0, 0, 128, 96]], boxes], t2v.mean(0)[2], "w", save=p
        ),
        "overlay_top": lambda p: viz.plot_image_overlay(
            img, boxes, [0.2, 0.8], labels=regions[1:], top=1, save=p
        ),
        "bars": lambda p: viz.plot_region_to_words(out.attentions.v2t[0][0].mean(0)[1], tokens, save=p),
        "schedule": lambda p: viz.plot_layer_schedule(
            ViLBertConfig.preset("depth6", fixed_t_layer=2), save=p
        ),
    }
    for name, draw in cases.items():
        path = tmp_path / f"{name}.png"
        _png(draw(path), path)


def test_static_views_draw_into_given_axes(pair):
    out, tokens = pair
    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    assert viz.plot_heatmap(out.attentions.text[0][0, 0], tokens, tokens, ax=ax1) is fig
    assert viz.plot_layer_schedule(ViLBertConfig.preset("tiny"), ax=ax2) is fig


def test_schedule_text_is_the_official_order():
    assert viz.schedule_text(ViLBertConfig.preset("base")) == (
        "T0 T1 T2 T3 T4 T5 → Co0 → T6 V0 → Co1 → T7 V1 → Co2 → T8 V2 → Co3 → T9 V3 → Co4 → T10 V4 → Co5 → V5 T11"
    )
    assert (
        viz.schedule_text(ViLBertConfig.preset("tiny", fixed_t_layer=1)) == "T0* → Co0 → T1 V0 → Co1 → V1 T2"
    )


def test_top_pairs_ranks_and_infers_direction():
    t2v = np.array([[0.1, 0.9], [0.6, 0.4], [0.3, 0.7]])  # 3 words x 2 regions
    df = viz.top_pairs(t2v, ["a", "b", "c"], ["r0", "r1"], k=3)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["word", "region", "weight"]
    assert df.iloc[0].tolist() == ["a", "r1", 0.9] and df["weight"].is_monotonic_decreasing and len(df) == 3
    v2t = torch.tensor(t2v.T)[None].repeat(2, 1, 1)  # (h, R, T): heads averaged
    assert list(viz.top_pairs(v2t, ["a", "b", "c"], ["r0", "r1"], k=1).columns) == [
        "region",
        "word",
        "weight",
    ]
    sq = np.eye(2)
    assert viz.top_pairs(sq, ["a", "b"], ["r0", "r1"], direction="region → word").columns[0] == "region"


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: viz.plot_heatmap(np.ones((2, 3)), ["a"], None), "row_labels"),
        (lambda: viz.plot_heatmap(np.ones((2, 2, 3)), None, None), "one \\(Lq, Lk\\) map"),
        (lambda: viz.plot_attention_grid([np.ones((2, 4, 3, 3))]), "batch of 2"),
        (lambda: viz.plot_attention_grid([]), "no maps"),
        (lambda: viz.plot_word_region_matrix(np.ones((2, 3, 4)), ["a", "b"]), "3 word rows but 2 tokens"),
        (
            lambda: viz.plot_image_overlay(np.zeros((8, 8, 3)), np.ones((2, 4)), [1.0]),
            "2 boxes but 1 weights",
        ),
        (lambda: viz.plot_region_to_words([0.5, 0.5], ["a"]), "2 weights but 1 tokens"),
        (lambda: viz.top_pairs(np.ones((3, 3)), ["a", "b"], ["r"]), "fits neither"),
    ],
)
def test_static_views_reject_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------------------- the explorer
def test_explorer_from_output_builds_widget_and_updates(pair, scene):
    out, tokens = pair
    img, boxes = scene
    ex = viz.explore(out, tokens, img, boxes, region_labels=["red square", "blue circle"])  # global box added
    assert ex.tokens == TEXT.split()  # [CLS]/[SEP] dropped
    assert ex.region_labels == ["IMG", "red square", "blue circle"] and ex.boxes.shape == (3, 4)
    box = ex.widget
    assert type(box).__name__ == "VBox"
    for direction in viz.DIRECTIONS:
        for layer in range(len(ex.maps[viz.DIRECTIONS[direction][0]])):
            fig = ex.update(direction=direction, layer=layer, word=2, region=1, head=0)
            assert isinstance(fig, Figure)
            assert isinstance(ex.update(head=None), Figure)
    assert "strongest regions for" in ex._table.value and "<table" in ex._table.value
    ex._c["direction"].value = "word → region"  # as if clicked in the widget
    ex._c["word"].value = 3
    ex._c["head"].value = 1
    assert ex.state["direction"] == "word → region" and ex.state["word"] == 3 and ex.state["head"] == 1
    ex._c["head"].value = -1
    assert ex.state["head"] is None
    assert ex._c["region"].disabled and not ex._c["word"].disabled
    pairs = ex.pairs(k=4)  # the chosen word's regions: all 3 of them
    assert len(pairs) == 3 and list(pairs.columns) == ["word", "region", "weight"]
    assert len(ex.pairs(k=4, selected=False)) == 4
    np.testing.assert_allclose(ex.map2d().sum(-1), 1.0, atol=1e-5)  # word → region rows: softmax over regions


def _fills(ax) -> list[float]:
    """The fill opacity of each region box drawn on an overlay axis (dashed frames left out)."""
    return [p.get_facecolor()[3] for p in ax.patches if p.get_fill() and p.get_linestyle() == "solid"]


def test_overlay_colours_start_at_zero():
    """Near-uniform weights look near-uniform: the scale runs from 0, not from the smallest weight."""
    img = np.zeros((40, 40, 3), np.uint8)
    fig = viz.plot_image_overlay(img, [[0, 0, 10, 10], [20, 20, 30, 30]], [0.3315, 0.3350])
    assert fig.axes[1]._colorbar.mappable.norm.vmin == 0
    low, high = sorted(_fills(fig.axes[0]))
    assert high == pytest.approx(0.6) and low == pytest.approx(0.6 * 0.3315 / 0.3350)
    stretched = viz.plot_image_overlay(img, [[0, 0, 10, 10], [20, 20, 30, 30]], [0.3315, 0.3350], vmin=None)
    assert sorted(_fills(stretched.axes[0]))[0] == 0  # the opt-in ranking view


def test_explorer_panels_share_one_scale_from_zero(pair, scene):
    out, tokens = pair
    img, boxes = scene
    ex = viz.explore(out, tokens, img, boxes, named={3: [1]})  # token 3 "square" names region 1
    fig = ex.update(direction="word → region", word=2, head=None)  # shown word 2 = "square"
    overlay, heat = fig.axes[0], fig.axes[1]
    a = ex.map2d()
    assert heat.images[0].norm.vmin == 0 and heat.images[0].norm.vmax == pytest.approx(a.max())
    fills = sorted(_fills(overlay))  # the whole-image IMG box is a frame: no fill
    np.testing.assert_allclose(fills, [0, *sorted(0.6 * a[2, 1:] / a.max())], rtol=1e-6)
    assert len(fig.axes) == 3  # the heat map's colour bar serves both panels
    assert all(t.get_fontsize() >= 10 for t in overlay.texts)  # box labels readable
    assert ex.dashed() == [1] and any(p.get_linestyle() == "--" for p in overlay.patches)
    assert ex.update(word=0).axes[0].patches and ex.dashed() == []


def test_explorer_top_pairs_follow_the_selection(pair, scene):
    out, tokens = pair
    img, boxes = scene
    ex = viz.explore(out, tokens, img, boxes, region_labels=["red square", "blue circle"])
    assert ex.widget is not None
    tables = {}
    for word in (1, 6):
        ex._c["word"].value = word  # as if clicked
        assert set(ex.pairs()["word"]) == {ex.tokens[word]}
        tables[word] = ex._table.value
        assert f"strongest regions for “{ex.tokens[word]}”" in tables[word]
        head = tables[word].split("<thead>")[1].split("</thead>")[0]
        assert head.count("<tr") == 1 and "<th>rank</th>" in head and "<th></th>" not in head
    assert tables[1] != tables[6]
    ex._c["direction"].value = "region → word"
    ex._c["region"].value = 2
    assert (
        set(ex.pairs()["region"]) == {"blue circle"}
        and "strongest words for “blue circle”" in ex._table.value
    )


def test_explorer_view_leaves_the_widget_alone(pair, scene):
    out, tokens = pair
    img, boxes = scene
    ex = viz.explore(out, tokens, img, boxes, note="untrained model: random weights")
    box, before, png = ex.widget, dict(ex.state), ex._img.value
    fig = ex.view(direction="region → word", region=1)
    assert isinstance(fig, Figure) and "region → word" in fig._suptitle.get_text()
    assert ex.state == before and ex._img.value == png and ex._c["direction"].value == before["direction"]
    assert png[:4] == b"\x89PNG" and any(
        "untrained model" in str(getattr(w, "value", "")) for w in box.children
    )
    assert "untrained model" in ex.figure()._suptitle.get_text()
    with pytest.raises(ValueError, match="word 99 out of range"):
        ex.view(word=99)
    assert ex.state == before


def test_explorer_draws_only_the_top_regions_of_many():
    """With many proposals only the k strongest regions of the chosen word are drawn and named."""
    from vilbert_lite.model.vilbert import Attentions

    g = np.random.default_rng(0)
    t2v = g.dirichlet(np.ones(20), size=(1, 2, 3))  # (1, h, T=3 words, R=20 regions)
    boxes = np.array([[i, i, i + 20, i + 20] for i in range(20)], np.float32)
    ex = viz.explore(
        Attentions(t2v=[t2v]), ["a", "big", "dog"], np.zeros((60, 60, 3), np.uint8), boxes, top=5
    )
    ax = ex.update(word=1).axes[0]
    assert len(_fills(ax)) == 5 and len(ax.texts) == 5
    strongest = {ex.region_labels[j] for j in np.argsort(-ex.map2d()[1])[:5]}
    assert {t.get_text().split(":")[0] for t in ax.texts} == strongest


def test_explorer_keeps_special_tokens_and_drops_padding(model, scene):
    img, boxes = scene
    tok = get_tokenizer()
    enc = tok(TEXT, return_tensors="pt", padding="max_length", max_length=16)
    with torch.no_grad():
        out = model(enc["input_ids"], torch.rand(1, 3, 1280), torch.rand(1, 3, 5) * 0.5,
                    attention_mask=enc["attention_mask"], output_attentions=True)  # fmt: skip
    tokens = tok.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    assert "[PAD]" in tokens
    ex = viz.explore(out, tokens, img, boxes, keep_special=True)
    assert ex.tokens == ["[CLS]", *TEXT.split(), "[SEP]"]
    assert ex.maps["text"][0].shape[-1] == len(ex.tokens) and ex.maps["v2t"][0].shape[-1] == len(ex.tokens)
    assert isinstance(ex.figure(), Figure)


def test_explorer_runs_the_model_on_a_photo(scene, tmp_path):
    """Any image + sentence: regions from propose_boxes + RegionExtractor (its default 112-d block-10
    features), then the model."""
    img, _ = scene
    model = ViLBertModel(ViLBertConfig.preset("tiny", v_feature_size=112)).eval()
    ex = viz.AttentionExplorer(model, get_tokenizer(), img, None, TEXT)
    R = len(ex.boxes)
    assert R >= 2 and np.allclose(ex.boxes[0], [0, 0, 128, 96])  # region 0 = the whole image
    assert ex.maps["t2v"][0].shape == (2, len(TEXT.split()), R)
    assert ex.region_labels[0] == "IMG" and ex.region_labels[1].startswith("r1 ")  # r1 + its ImageNet class
    assert len(ex.region_labels[1]) > 3
    ex.update(direction="region → word", region=R - 1).savefig(tmp_path / "ex.png")
    _png(ex.figure(), tmp_path / "ex.png")


def test_explorer_rejects_bad_input(model, pair, scene):
    out, tokens = pair
    img, boxes = scene
    with pytest.raises(ValueError, match="3 tokens but the attention maps cover"):
        viz.explore(out, tokens[:3], img, boxes)
    with pytest.raises(ValueError, match="5 boxes but the attention maps cover 3 regions"):
        viz.explore(out, tokens, img, np.ones((5, 4)))
    batched = viz_attentions_batch2(out)
    with pytest.raises(ValueError, match="batch of 2 pairs"):
        viz.explore(batched, tokens, img, boxes)
    with pytest.raises(ValueError, match="output_attentions=True"):
        viz.explore(type(out)(*[None] * 5), tokens, img, boxes)
    tok = get_tokenizer()
    with pytest.raises(ValueError, match="one image-text pair"):
        viz.AttentionExplorer(model, tok, img, boxes, [TEXT, TEXT])
    vis2 = {
        "visual_feats": torch.rand(2, 3, 1280),
        "visual_pos": torch.rand(2, 3, 5),
        "boxes": torch.ones(2, 3, 4),
    }
    with pytest.raises(ValueError, match="batch of 2 images"):
        viz.AttentionExplorer(model, tok, img, boxes, TEXT, visual_inputs=vis2)
    ex = viz.explore(out, tokens, img, boxes)
    with pytest.raises(ValueError, match="unknown control"):
        ex.update(colour="red")
    with pytest.raises(ValueError, match="direction must be one of"):
        ex.update(direction="up")
    with pytest.raises(ValueError, match="word 99 out of range"):
        ex.update(word=99)
    with pytest.raises(ValueError, match="head 7 out of range"):
        ex.update(head=7)
    assert ex.state["word"] != 99 and ex.state["head"] != 7  # a rejected change leaves the view as it was


def viz_attentions_batch2(out):
    """The same attentions with every map repeated to a batch of two."""
    from vilbert_lite.model.vilbert import Attentions

    a = out.attentions
    return Attentions(
        *[[m.repeat(2, 1, 1, 1) for m in getattr(a, f)] for f in ("text", "vision", "t2v", "v2t")]
    )
