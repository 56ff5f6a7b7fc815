"""Retrieval ranking: cached and uncached scoring agree, R@K arithmetic, fixed 4-way items, the bench."""

from __future__ import annotations

import json

import pytest
import torch

from vilbert_lite.bench.retrieval import bench
from vilbert_lite.data.items import RetrievalItem
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.vilbert import ViLBertModel
from vilbert_lite.tasks import retrieval
from vilbert_lite.tasks.common import TaskModel, new_heads

CONFIG = ViLBertConfig.preset("tiny")


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(backbone=ViLBertModel, zero_shot: bool = False) -> TaskModel:
    torch.manual_seed(0)
    bert = backbone(CONFIG)
    heads = (
        new_heads(CONFIG, bi_seq_relationship=torch.nn.Linear(CONFIG.bi_hidden_size, 2))
        if zero_shot
        else retrieval.heads(CONFIG, None)
    )
    return TaskModel(bert, retrieval.forward, **heads).eval()


@pytest.mark.parametrize("kind", ["vilbert", "zero_shot", "single_stream"])
def test_cached_and_uncached_scores_are_identical(kind):
    """text_prefix once per caption + vision_prefix once per image + forward_from_prefix per pair gives the
    scores of the full forward per pair (captions and images of different lengths, padded)."""
    from vilbert_lite.model.single_stream import SingleStreamModel

    backbone = SingleStreamModel if kind == "single_stream" else ViLBertModel
    model = _model(backbone, zero_shot=kind == "zero_shot")
    texts, images = retrieval.random_inputs(CONFIG, 5, 7, tokens=12, regions=6)
    assert texts["attention_mask"].sum(1).unique().numel() > 1  # really padded
    cached = retrieval.score_matrix(model, texts, images, cache=True, batch_size=8)
    plain = retrieval.score_matrix(model, texts, images, cache=False, batch_size=8)
    assert cached.shape == (5, 7)
    torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-5)
    # and each pair's score is what the model gives that pair alone
    c, i = 3, 5
    out = model.bert(texts["input_ids"][c : c + 1], images["visual_feats"][i : i + 1], images["visual_pos"][i : i + 1],
                     texts["attention_mask"][c : c + 1], images["visual_attention_mask"][i : i + 1],
                     texts["token_type_ids"][c : c + 1])  # fmt: skip
    torch.testing.assert_close(
        cached[c, i], retrieval.pair_score(model, out.pooled_output)[0], atol=1e-5, rtol=1e-5
    )


def test_recall_at_k_counts_ties_against_the_caption():
    scores = torch.tensor([[0.9, 0.1, 0.2], [0.5, 0.4, 0.6], [0.3, 0.3, 0.3]])
    truth = torch.tensor([0, 1, 2])
    r = retrieval.recall_at(scores, truth, ks=(1, 2, 3))
    # ranks: caption 0 -> 0, caption 1 -> 2, caption 2 -> 2 (a three-way tie counts as last)
    assert r == {"r@1": pytest.approx(1 / 3), "r@2": pytest.approx(1 / 3), "r@3": pytest.approx(1.0)}


def test_four_way_items():
    """Rows: true pair, random caption + image, caption + random image, hard negative + image; label 0."""
    recs = [RetrievalItem(f"img{i}", f"caption number {i}", f"hard negative {i}") for i in range(5)]
    images = {f"img{i}": {"visual_feats": torch.full((2, 3), float(i))} for i in range(5)}
    fixed = retrieval.FourWay(recs, images, torch.Generator().manual_seed(0))
    assert torch.equal(fixed[2]["pairs"][0]["input_ids"], fixed[2]["pairs"][2]["input_ids"])
    for i in range(5):
        it = fixed[i]
        rows = it["pairs"]
        assert it["label"] == 0 and len(rows) == 4
        img = [int(r["visual_feats"][0, 0]) for r in rows]
        assert img[0] == img[1] == img[3] == i and img[2] != i  # random image is another one
        assert not torch.equal(rows[1]["input_ids"], rows[0]["input_ids"])  # random caption is another one
        assert torch.equal(
            fixed[i]["pairs"][1]["input_ids"], it["pairs"][1]["input_ids"]
        )  # fixed: same again
    torch.manual_seed(0)
    train = retrieval.FourWay(recs, images)  # training: fresh negatives per access
    draws = {int(train[0]["pairs"][2]["visual_feats"][0, 0]) for _ in range(20)}
    assert len(draws) > 1 and 0 not in draws


def test_bench_writes_pairs_per_second_and_checks_identity(tmp_path, capsys):
    out = tmp_path / "retrieval.json"
    argv = ["--profile", "smoke", "--captions", "4", "--images", "6", "--batch", "8", "--out", str(out)]
    assert bench(argv) == 0
    r = json.loads(out.read_text())
    assert r["pairs"] == 24 and r["identical_allclose_1e-5"] and r["max_abs_diff"] <= 1e-5
    assert r["cached"]["pairs_per_s"] > 0 and r["uncached"]["pairs_per_s"] > 0 and r["speedup"] > 0
