"""vilbert_lite.viz.diagrams: the layer order is the one the encoder runs, boxes sit where it runs them,
arrows join the right streams, the schedule follows the multi-task loop's rule, and the figures change with
the config."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Annotation

from vilbert_lite import ViLBertConfig, ViLBertModel
from vilbert_lite.multitask.data import DATASETS
from vilbert_lite.repro.experiments import depth_overrides
from vilbert_lite.vilt.model import ViLTConfig
from vilbert_lite.viz import diagrams as d

BASE = ViLBertConfig.preset("base")
DEPTHS = {n: BASE.replace(**o) for n, o in depth_overrides("gpu").items()}  # Table 2's 2/4/6/8, base widths
# narrow layers with the base layer counts: a forward pass costs milliseconds
NARROW = dict(vocab_size=50, hidden_size=16, num_attention_heads=2, intermediate_size=16, v_feature_size=8,
              v_target_size=5, v_hidden_size=16, v_num_attention_heads=2, v_intermediate_size=16,
              bi_hidden_size=16, bi_num_attention_heads=2, max_position_embeddings=16)  # fmt: skip
# the official bert_base_6layer_6conect.json runs: 6 text layers, then each co-attention after one text and
# one visual layer, the last visual and text layers after the last co-attention
OFFICIAL_BASE = (
    [("t", i) for i in range(6)] + [("c", 0)]
    + [x for k in range(1, 6) for x in (("t", 5 + k), ("v", k - 1), ("c", k))]
    + [("v", 5), ("t", 11)]
)  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one torch thread is ~10x faster than two on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def executed_order(config: ViLBertConfig) -> list[tuple[str, int]]:
    """The layers a forward pass of the model runs, in order, read from forward hooks."""
    torch.manual_seed(0)
    model = ViLBertModel(config).eval()
    calls = []
    for kind, layers in (
        ("t", model.encoder.layer),
        ("v", model.encoder.v_layer),
        ("c", model.encoder.c_layer),
    ):
        for i, layer in enumerate(layers):
            layer.register_forward_hook(lambda *_, key=(kind, i): calls.append(key))
    ids = torch.randint(1, config.vocab_size, (2, 5))
    with torch.no_grad():
        model(ids, torch.randn(2, 4, config.v_feature_size), torch.rand(2, 4, 5))
    return calls


def boxes(ax) -> dict[str, tuple[float, float, float, float]]:
    """gid -> (x0, x1, y0, y1) of every box the diagram drew with a gid."""
    return {p.get_gid(): (p.get_x(), p.get_x() + p.get_width(), p.get_y(), p.get_y() + p.get_height())
            for p in ax.patches if p.get_gid()}  # fmt: skip


def texts(fig) -> list:
    """Every non-empty text of a figure: labels, arrow labels, titles."""
    return [t for ax in fig.axes for t in [*ax.texts, ax.title] if t.get_text()]


def fig_texts(config) -> list[str]:
    return [t.get_text() for t in texts(d.draw_architecture(config))]


# ----------------------------------------------------------------------------------------------- layer order
@pytest.mark.parametrize("name", ["base", "tiny", "small", "depth2", "depth4", "depth6", "depth8", "frozen"])
def test_layer_order_is_the_order_the_encoder_runs(name):
    overrides = dict(fixed_t_layer=3, fixed_v_layer=0) if name == "frozen" else {}
    preset = "base" if name == "frozen" else name
    config = ViLBertConfig.preset(preset, **{**NARROW, **overrides})
    assert d.layer_order(config) == executed_order(config)


def test_layer_order_of_the_base_model_is_the_official_one():
    assert d.layer_order(BASE) == OFFICIAL_BASE


# ---------------------------------------------------------------------------------------------- architecture
@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_architecture_places_every_layer_where_the_encoder_runs_it(depth):
    config = DEPTHS[depth]
    fig = d.draw_architecture(config)
    assert isinstance(fig, Figure)
    b = boxes(fig.axes[0])
    for kind, n in (("t", 12), ("v", depth), ("c", depth)):
        assert sorted(int(g[1:]) for g in b if re.fullmatch(rf"{kind}\d+", g)) == list(range(n))
    assert config.v_num_hidden_layers == depth and config.num_co_layers == depth
    y = {g: (y0 + y1) / 2 for g, (_, _, y0, y1) in b.items()}
    order = [f"{k}{i}" for k, i in d.layer_order(config)]
    for a, z in itertools.combinations(order, 2):  # a runs before z
        if "c" in (a[0], z[0]) or a[0] == z[0]:  # z reads what a wrote: it sits higher
            assert y[a] < y[z], (a, z)
    for g, (x0, x1, *_) in b.items():  # text boxes right of visual boxes, co-attention across both
        if g[0] == "c" and g[1:].isdigit():
            assert x0 <= min(b["v0"][0], b["t0"][0]) and x1 >= max(b["v0"][1], b["t0"][1])
    assert b["v0"][1] < b["t0"][0]


def test_depth_variants_draw_differently():
    fig = d.draw_architectures({f"depth {n}": c for n, c in DEPTHS.items()})
    counts = [sum(bool(re.fullmatch(r"v\d+", g)) for g in boxes(ax)) for ax in fig.axes]
    assert counts == [2, 4, 6, 8]
    layouts = {tuple(sorted((g, round(y0, 3)) for g, (_, _, y0, _) in boxes(ax).items())) for ax in fig.axes}
    assert len(layouts) == 4
    cpu = [ViLBertConfig.preset("mini", **o) for o in depth_overrides("cpu").values()]
    assert (
        len({len(fig_texts(c)) for c in cpu}) == 4
    )  # 1/2/3/4 co-attention layers at the cpu profile's widths


def test_architecture_prints_sizes_from_the_config_and_hatches_frozen_layers():
    tiny = ViLBertConfig.preset("tiny", fixed_t_layer=1)
    labels = fig_texts(tiny)
    assert any(f"Linear {tiny.v_feature_size}→{tiny.v_hidden_size}" in t for t in labels)
    assert f"Co-TRM 0: co-attention, {tiny.bi_hidden_size}-d, {tiny.bi_num_attention_heads} heads" in labels
    assert "TRM 0 (frozen)" in labels and "TRM 1" in labels
    hatched = {p.get_gid() for p in d.draw_architecture(tiny).axes[0].patches if p.get_hatch()}
    assert hatched == {"t0"}
    assert labels != fig_texts(ViLBertConfig.preset("tiny"))


# ---------------------------------------------------------------------------------------------- co-attention
def test_coattention_arrows_bring_queries_from_own_stream_and_keys_values_from_the_other():
    fig = d.draw_coattention_block(BASE)
    ax = fig.axes[0]
    b = boxes(ax)
    arrows = {a.get_gid(): a for a in ax.texts if isinstance(a, Annotation) and a.get_gid()}
    assert set(arrows) == {"Q_V", "K_W", "V_W", "Q_W", "K_V", "V_V"}
    stream = {"V": "v", "W": "t"}
    for gid, a in arrows.items():
        source = stream[gid[2]]  # the stream the arrow leaves
        target = source if gid[0] == "Q" else {"v": "t", "t": "v"}[source]  # the attention it enters
        x0, x1, y0, y1 = b[f"{target}_att"]
        assert x0 <= a.xy[0] <= x1 and a.xy[1] == pytest.approx(y0)
        sx0, sx1, _, sy1 = b[f"{source}_in"]
        assert sx0 <= a.xyann[0] <= sx1 and a.xyann[1] == pytest.approx(sy1)
    assert {t.get_text() for t in ax.texts if (t.get_gid() or "").startswith("label:")} == {
        "$Q_V$", "$K_W$", "$V_W$", "$Q_W$", "$K_V$", "$V_V$"}  # fmt: skip


def test_coattention_sizes_come_from_the_config():
    base, tiny = (
        [t.get_text() for t in texts(d.draw_coattention_block(c))]
        for c in (BASE, ViLBertConfig.preset("tiny"))
    )
    assert "Feed Forward  (768→3072→768)" in base and "Add & Norm  (Linear 1024→768)" in base
    assert "Feed Forward  (64→128→64)" in tiny
    plain = [t.get_text() for t in texts(d.draw_coattention_block())]
    assert "Feed Forward" in plain and not any(re.search(r"\d{2}", t) for t in plain)


# ------------------------------------------------------------------------------------------------- schedule
def test_schedule_states_follow_the_multitask_loop():
    evals = [{"task": "vqa", "iter": 3, "state": "stop"}, {"task": "vqa", "iter": 9, "state": "go"},
             {"task": "coco", "iter": 6, "state": "go"}]  # fmt: skip
    stopped, updates = d.schedule_states(["vqa", "coco"], 12, evals, delta=4)
    it = np.arange(1, 13)
    assert (it[stopped[0]] == [4, 5, 6, 7, 8, 9]).all() and not stopped[1].any()
    assert (it[~updates[0]] == [5, 6, 7, 9]).all() and updates[1].all()
    # the loop's rule: update unless (DSG and stopped) and i mod Δ != 0
    assert (updates == ~stopped | (it % 4 == 0)).all()


def test_dsg_evals_runs_stop_and_go_on_curves():
    curves = {"vqa": list(zip(range(5, 35, 5), [0.1, 0.2, 0.2, 0.2, 0.2, 0.1])), "coco": [(10, 0.5)]}
    rows = d.dsg_evals(curves)
    assert [r["state"] for r in rows if r["task"] == "vqa"] == ["go", "go", "go", "stop", "stop", "go"]
    assert [r["iter"] for r in rows] == sorted(r["iter"] for r in rows)
    first_stop = next(r for r in rows if r["state"] == "stop")
    assert first_stop["iter"] == 20 and first_stop["dsg"] == {"vqa": "stop", "coco": "go"}
    assert rows[-1]["dsg"] == {"vqa": "go", "coco": "go"}


def test_schedule_figure_draws_groups_and_changes_with_the_states():
    plain = d.draw_multitask_schedule()
    assert isinstance(plain, Figure)
    ax_g, ax = plain.axes
    assert {p.get_gid() for p in ax_g.patches} == {"G1", "G2", "G3", "G4"}
    assert all(any(t in x.get_text() for x in ax_g.texts) for t in DATASETS)
    assert (ax.images[0].get_array() != 0.85).all()  # no DSG: every data set updates at every iteration
    evals = d.dsg_evals({"vqa": list(zip(range(2, 40, 2), [0.5] * 19)), "gqa": [(4, 0.1)]})
    fig = d.draw_multitask_schedule(evals, 40, ["vqa", "gqa"], delta=4)
    stopped, updates = d.schedule_states(["vqa", "gqa"], 40, evals, 4)
    img = np.asarray(fig.axes[1].images[0].get_array()).reshape(2, 4, 40, 3)
    assert stopped[0].any() and ((img[:, :3] == 0.85).all(-1) == ~updates[:, None]).all()
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["1. vqa", "2. gqa"]


def test_schedule_from_the_committed_curves():
    path = Path(__file__).parents[1] / "reports" / "multitask_curves" / "cpu.json"
    if not path.exists():
        pytest.skip("reports/multitask_curves/cpu.json not present")
    rep = json.loads(path.read_text())
    images = min(r["images"] for r in rep["runs"])
    curves = {
        r["task"]: [(p["iter"], p["val"]) for p in r["curve"]] for r in rep["runs"] if r["images"] == images
    }
    evals = d.dsg_evals(curves)
    assert len(evals) == sum(len(c) for c in curves.values())
    assert isinstance(d.draw_multitask_schedule(evals, rep["iterations"]), Figure)


# ------------------------------------------------------------------------------------------------------ ViLT
def test_vilt_embedders_sizes_from_config_and_costs_only_when_given():
    base = [t.get_text() for t in texts(d.draw_vilt_embedders())]
    assert "Linear 3072→768" in base and "cut into 32×32 patches" in base
    assert not any("ms" in t for t in base)
    tiny = ViLTConfig.preset("tiny")
    fig = d.draw_vilt_embedders(tiny, costs={"patch": "0.4 ms"})
    assert f"Linear {3 * tiny.patch_size**2}→{tiny.hidden_size}" in [t.get_text() for t in texts(fig)]
    costs = {t.get_gid(): t.get_text() for t in texts(fig) if (t.get_gid() or "").startswith("cost:")}
    assert costs == {"cost:patch": "0.4 ms"}


# -------------------------------------------------------------------------------------------------- legible
@pytest.mark.parametrize("name", ["architecture", "depths", "coattention", "schedule", "vilt"])
def test_labels_are_at_least_8_points_and_never_overlap(name):
    fig = {
        "architecture": lambda: d.draw_architecture(BASE),
        "depths": lambda: d.draw_architectures({f"depth {n}": c for n, c in DEPTHS.items()}),
        "coattention": lambda: d.draw_coattention_block(BASE),
        "schedule": lambda: d.draw_multitask_schedule(),
        "vilt": lambda: d.draw_vilt_embedders(costs={"region": "900 ms", "grid": "160 ms", "patch": "15 ms"}),
    }[name]()
    FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    shown = texts(fig)
    assert min(t.get_fontsize() for t in shown) >= 8
    ext = [t.get_window_extent(renderer) for t in shown]
    for (a, ea), (b, eb) in itertools.combinations(zip(shown, ext), 2):
        assert not ea.overlaps(eb), (a.get_text(), b.get_text())
