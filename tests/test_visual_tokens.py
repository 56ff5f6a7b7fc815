"""visual_tokens: k-means, the probes and the quantisation error on toy data; the world helpers and figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from vilbert_lite.data.world import make_world
from vilbert_lite.profiles import WorldSize
from vilbert_lite.viz import visual_tokens as vt


def blobs(n_per: int = 30, centres=((0, 0), (10, 0), (0, 10)), spread: float = 0.5, seed: int = 0):
    """Well separated 2-d Gaussian blobs -> (N, 2) points, (N,) true blob index."""
    g = torch.Generator().manual_seed(seed)
    c = torch.tensor(centres, dtype=torch.float32)
    y = torch.arange(len(c)).repeat_interleave(n_per)
    return c[y] + spread * torch.randn(len(y), 2, generator=g), y


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two labelings group the rows identically (up to renaming the clusters)."""
    return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(set(b.tolist()))


# ------------------------------------------------------------------------------------------------- k-means


def test_kmeans_recovers_separated_blobs_and_converges():
    x, y = blobs()
    km = vt.kmeans(x, 3, seed=0)
    assert km.converged and km.n_iter < 100
    assert km.centroids.shape == (3, 2) and km.labels.shape == (90,)
    assert same_partition(km.labels, y)
    # the centroids are the means of their members, and the labels are the nearest centroids
    for j in range(3):
        assert torch.allclose(km.centroids[j], x[km.labels == j].mean(0), atol=1e-5)
    assert torch.equal(vt.assign(x, km.centroids), km.labels)
    assert km.inertia == pytest.approx(float(((x - km.centroids[km.labels]) ** 2).sum()), rel=1e-5)


def test_kmeans_is_deterministic_by_seed():
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(1))
    a, b = vt.kmeans(x, 8, seed=3), vt.kmeans(x, 8, seed=3)
    assert (
        torch.equal(a.centroids, b.centroids) and torch.equal(a.labels, b.labels) and a.inertia == b.inertia
    )
    c = vt.kmeans(x, 8, seed=4)
    assert not torch.equal(a.centroids, c.centroids)  # another seed, another start


def test_kmeans_never_leaves_a_cluster_empty_and_checks_k():
    x = torch.cat([torch.zeros(20, 3), torch.ones(3, 3) * 5, torch.tensor([[9.0, 9.0, 9.0]])])  # duplicates
    km = vt.kmeans(x, 3, seed=0)
    assert torch.bincount(km.labels, minlength=3).min() > 0
    assert vt.kmeans(x[:1], 1).labels.tolist() == [0]
    with pytest.raises(ValueError, match="1 <= k"):
        vt.kmeans(x, 25)
    with pytest.raises(ValueError, match="1 <= k"):
        vt.kmeans(x, 0)


def test_inertia_falls_as_k_grows():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    inertia = [vt.kmeans(x, k, seed=0).inertia for k in (1, 4, 16, 64)]
    assert inertia == sorted(inertia, reverse=True)


# -------------------------------------------------------------------------------------- quantisation error


def test_quantisation_error_by_hand():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [12.0, 0.0]])
    # total variance around the mean (6, 0): 36 + 16 + 16 + 36 = 104
    one = torch.tensor([[6.0, 0.0]])
    assert vt.quantisation_error(x, one) == pytest.approx(1.0)  # one token for everything: all is lost
    two = torch.tensor([[1.0, 0.0], [11.0, 0.0]])
    assert vt.quantisation_error(x, two) == pytest.approx(4 / 104)  # each point 1 away from its centroid
    assert vt.quantisation_error(x, x) == pytest.approx(0.0)  # a token per point: nothing lost
    # explicit labels override the nearest-centroid assignment
    assert vt.quantisation_error(x, two, torch.tensor([1, 1, 0, 0])) == pytest.approx(
        (121 + 81 + 81 + 121) / 104
    )


# ------------------------------------------------------------------------------------------------- probes


def test_cluster_lookup_accuracy_by_hand():
    train_ids = torch.tensor([0, 0, 0, 1, 1, 2])
    train_y = ["red", "red", "blue", "blue", "blue", "green"]
    test_ids = torch.tensor([0, 1, 2, 0, 3])  # token 3 never seen in training -> overall majority ("blue")
    test_y = ["red", "blue", "red", "blue", "blue"]
    # predictions: red, blue, green, red, blue -> right, right, wrong, wrong, right
    assert vt.cluster_lookup_accuracy(train_ids, train_y, test_ids, test_y) == pytest.approx(3 / 5)


def test_majority_accuracy():
    assert vt.majority_accuracy(["a", "a", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.25)


def test_linear_probe_separable_and_chance():
    x, y = blobs(n_per=40, seed=0)
    xt, yt = blobs(n_per=20, seed=1)
    names = ["a", "b", "c"]
    assert vt.linear_probe(x, [names[i] for i in y], xt, [names[i] for i in yt]) == 1.0
    # labels that no feature predicts: close to chance (1/3), far from perfect
    g = torch.Generator().manual_seed(2)
    noise, noise_t = torch.randn(600, 5, generator=g), torch.randn(600, 5, generator=g)
    ry, ryt = torch.randint(3, (600,), generator=g).tolist(), torch.randint(3, (600,), generator=g).tolist()
    assert vt.linear_probe(noise, ry, noise_t, ryt) < 0.45


def test_linear_probe_dual_and_primal_forms_agree():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(40, 3, generator=g, dtype=torch.float64)
    x, x2 = (
        torch.randn(10, 40, generator=g, dtype=torch.float64),
        torch.randn(60, 40, generator=g, dtype=torch.float64),
    )
    t, t2 = x @ w, x2 @ w
    (dual,) = vt._ridge_fits(x, t, [0.5])  # N < D
    (primal,) = vt._ridge_fits(x2, t2, [0.5])  # N > D
    ref = torch.linalg.solve(x.T @ x + 0.5 * torch.eye(40, dtype=torch.float64), x.T @ t)
    ref2 = torch.linalg.solve(x2.T @ x2 + 0.5 * torch.eye(40, dtype=torch.float64), x2.T @ t2)
    assert torch.allclose(dual, ref, atol=1e-8) and torch.allclose(primal, ref2, atol=1e-8)


def test_discretisation_table_on_a_toy_where_tokens_lose_colour():
    """Shape decides the clusters (far apart); colour is a small offset: the id keeps shape, loses colour."""
    g = torch.Generator().manual_seed(0)
    n = 240
    shape = torch.randint(2, (n,), generator=g)
    color = torch.randint(2, (n,), generator=g)
    x = torch.stack([20.0 * shape, 1.0 * color], 1) + 0.1 * torch.randn(n, 2, generator=g)
    attrs = pd.DataFrame({"shape": shape.tolist(), "color": color.tolist()})
    tr, te = slice(0, 160), slice(160, n)
    table = vt.discretisation_table(x[tr], attrs[tr], x[te], attrs[te].reset_index(drop=True), ks=[2],
                                    attributes=("shape", "color"))  # fmt: skip
    assert list(table.index) == ["majority class (chance)", "token id, K=2", "continuous feature"]
    tok, cont = table.loc["token id, K=2"], table.loc["continuous feature"]
    assert tok["shape"] == 1.0 and cont["shape"] == 1.0 and cont["color"] == 1.0
    assert tok["color"] < 0.7  # one token per shape: colour is a coin toss
    assert 0 < tok["quantisation error"] < 1 and cont["quantisation error"] == 0.0


# ------------------------------------------------------------------------------------------- world helpers


@pytest.fixture(scope="module")
def world():
    return make_world(sizes=WorldSize(pretrain_scenes=4, train_scenes=6, val_scenes=4, test_scenes=4), seed=0)


class FakeStore:
    """A feature store stand-in: each object's "feature" is (scene index, obj_id, 0, ...)."""

    def __init__(self, world):
        self.world = world

    def get(self, image_id):
        scene = self.world.scene(image_id)
        feats = np.zeros((len(scene.objects), 4), np.float32)
        feats[:, 0] = int(image_id.rpartition("-")[2])
        feats[:, 1] = np.arange(len(scene.objects))
        return type("RF", (), {"features": feats})()


def test_gather_rows_match_the_object_table(world):
    scenes = world.scenes["train"]
    x, table = vt.gather(FakeStore(world), scenes)
    assert len(x) == len(table) == sum(len(s.objects) for s in scenes)
    assert x[:, 1].long().tolist() == table["obj_id"].tolist()
    assert (table["color+shape"] == table["color"] + " " + table["shape"]).all()


def test_location_features(world):
    table = vt.object_table(world.scenes["train"][:2])
    loc = vt.location_features(table, 160, 160)
    x1, y1, x2, y2 = table["box"].iloc[0]
    assert loc.shape == (len(table), 5)
    assert torch.allclose(loc[0], torch.tensor([x1, y1, x2, y2, (x2 - x1) * (y2 - y1) / 160**2]) / torch.tensor(
        [160, 160, 160, 160, 1.0]), atol=1e-6)  # fmt: skip


def test_relation_matrix_and_task_table(world):
    scene = world.scenes["train"][0]
    rel = vt.relation_matrix(scene)
    assert rel.shape == (len(scene.objects),) * 2
    a, pred, b = scene.relations[0]
    assert pred in rel.iloc[a, b].split(", ")
    tasks = vt.task_table(world, "train", scene.scene_id)
    assert list(tasks.index) == ["caption (pretraining)", "VQA", "referring expression", "VCR Q→A", "VCR QA→R",
                                 "retrieval", "NLVR"]  # fmt: skip


def test_top_classes_and_location_table():
    probs = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    top = vt.top_classes(probs, k=2, names=["cat", "dog", "cup"], labels=["IMG", "r1"])
    assert top.loc["IMG"].tolist() == ["dog (0.70)", "cup (0.20)"]
    assert top.loc["r1", "top 1"] == "cat (0.50)"
    vis = {"visual_pos": torch.tensor([[0.0, 0, 1, 1, 1], [0.25, 0.5, 0.75, 1.0, 0.25]])}
    assert vt.location_table(vis)["area/(W·H)"].tolist() == [1.0, 0.25]
    assert len(vt.imagenet_class_names()) == 1000


def test_figures(world):
    scenes = world.scenes["train"][:3]
    assert isinstance(vt.plot_scene_grid(world, scenes, ncols=2), Figure)
    x, table = vt.gather(FakeStore(world), world.scenes["train"])
    km = vt.kmeans(x, 3, seed=0)
    assert isinstance(vt.plot_cluster_crops(world, table, x, km, [0, 1], per_cluster=3), Figure)
    img = world.image(scenes[0].scene_id)
    assert vt.crop(img, (10, 10, 30, 50), size=16).shape == (16, 16, 3)
    with pytest.raises(ValueError, match="labels"):
        vt.plot_boxes(img, world.gt_boxes(scenes[0].scene_id), labels=["only one"] * 99)
    rows = [
        {"input": "majority class (chance)", "K": 0, "quantisation error": np.nan, "color": 0.2},
        {"input": "token id, K=2", "K": 2, "quantisation error": 0.5, "color": 0.3},
        {"input": "continuous feature", "K": -1, "quantisation error": 0.0, "color": 0.9},
    ]
    assert isinstance(vt.plot_discretisation(pd.DataFrame(rows).set_index("input"), ["color"]), Figure)
