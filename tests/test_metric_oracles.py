"""Every metric behind the paper-claim verdicts against an exact oracle, not a range.

Each test builds a few items by hand and a stub backbone whose outputs are read off the items, so which answers
are right is known before the metric runs: all right gives 1.0, a chosen half gives 0.5, another chosen set gives
its exact fraction. The real task code runs end to end (collate, the task's forward, its `evaluate`); only the
backbone and the heads are stand-ins. Pairing checks (VCR's Q→A with QA→R of the same question, NLVR's left and
right image, a retrieval caption with its own image) feed a mis-paired input and require a different number, so a
metric that paired the wrong rows could not pass.

Papers: ViLBERT (arXiv:1908.02265), 12-in-1 (arXiv:1912.02315).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from vilbert_lite.data.items import Caption, RetrievalItem, VCRItem, VQAItem
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.pretrain.data import CaptionImageDataset
from vilbert_lite.pretrain.evaluate import evaluate_pretraining
from vilbert_lite.pretrain.objectives import ALIGNED_INDEX
from vilbert_lite.repro import experiments
from vilbert_lite.tasks import nlvr, refer, retrieval, vcr, vqa
from vilbert_lite.tasks.common import TaskData, TaskModel, tokenize


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module", autouse=True)
def tokenizer_loaded():
    """Load the WordPiece tokenizer (seconds) once, before the tests that tokenize."""
    get_tokenizer()


# ------------------------------------------------------------------------------------------------ stubs
class ReadOff(nn.Module):
    """A backbone stand-in that reads its outputs off the items: pooled_output is the global region's feature
    vector (B, D), sequence_output_v the first feature of every region (B, R, 1). With a `table` (captions x
    images) pooled_output is instead table[caption, image] (B, 1): the caption is named by its first word
    piece (`words`: token id -> caption index), the image by its global region's first feature."""

    def __init__(self, table: torch.Tensor | None = None, words: dict[int, int] | None = None):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, so that the task code finds a device
        self.table, self.words = table, words

    def forward(
        self, input_ids, visual_feats, visual_pos, attention_mask, visual_attention_mask, token_type_ids
    ):
        if self.table is None:
            pooled = visual_feats[:, 0, :]
        else:
            cap = torch.tensor([self.words[int(t)] for t in input_ids[:, 1]])
            pooled = self.table[cap, visual_feats[:, 0, 0].long()][:, None]
        return SimpleNamespace(
            pooled_output=pooled, sequence_output_v=visual_feats[..., :1], sequence_output_t=None
        )


class LogOdds(nn.Module):
    """Zero-shot alignment head stand-in: a score s -> (N, 2) logits with s at ALIGNED_INDEX and 0 at the other,
    so that the log-odds of P(aligned) is s again."""

    def forward(self, x):
        out = torch.zeros(len(x), 2)
        out[:, ALIGNED_INDEX] = x[:, 0]
        return out


class FlippedLogOdds(LogOdds):
    """The alignment head read at the wrong index."""

    def forward(self, x):
        return super().forward(x).flip(1)


def image(feats) -> dict:
    """One image's visual inputs: regions with the given features (R, D) (or one feature each, (R,)), global
    region first."""
    feats = torch.as_tensor(feats, dtype=torch.float)
    feats = feats[:, None] if feats.dim() == 1 else feats
    R = len(feats)
    return {"visual_feats": feats, "visual_pos": torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0]]).repeat(R, 1),
            "cls_prob": torch.zeros(R, 0), "boxes": torch.zeros(R, 4), "num_regions": torch.tensor(R)}  # fmt: skip


def row(feats, token: int = 1000) -> dict:
    """One (text, image) row: [CLS] token [SEP] with `image(feats)`."""
    return {"input_ids": torch.tensor([101, token, 102]), "token_type_ids": torch.zeros(3, dtype=torch.long),
            **image(feats)}  # fmt: skip


def scored(value: float, token: int = 1000) -> dict:
    """A row whose (one-number) pooled output is `value`."""
    return row([[value]], token)


def task_model(forward, bert=None, **heads) -> TaskModel:
    return TaskModel(bert or ReadOff(), forward, **heads)


def data(items, **kw) -> TaskData:
    """The items as both the validation and the test split."""
    return TaskData([], items, items, **kw)


# -------------------------------------------------------------------------------------------------- VCR
def vcr_items(q2a_right: set[int], qa2r_right: set[int], n: int = 8) -> list[dict]:
    """n questions, two items each (Q→A then QA→R, as vcr.build_items orders them). The right option varies
    per question and sub-task; the stub's top-scored option is the right one exactly on the given questions."""
    items = []
    for q in range(n):
        for kind, right in ((0, q2a_right), (1, qa2r_right)):
            label = (q + 2 * kind) % vcr.N_OPTIONS
            top = label if q in right else (label + 1 + q % 3) % vcr.N_OPTIONS
            scores = [1.0 if j == top else 0.1 * j for j in range(vcr.N_OPTIONS)]
            items.append({"pairs": [scored(s) for s in scores], "label": label, "kind": kind})
    return items


VCR_CASES = [  # (Q→A right, QA→R right) -> q2a, qa2r, q2ar
    (set(range(8)), set(range(8)), (1.0, 1.0, 1.0)),
    ({0, 1, 2, 3}, {0, 1, 2, 3}, (0.5, 0.5, 0.5)),
    ({0, 1, 2, 3}, {4, 5, 6, 7}, (0.5, 0.5, 0.0)),  # each half right, never both on one question
    ({0, 1, 2, 3, 4}, {3, 4, 5, 6}, (5 / 8, 4 / 8, 2 / 8)),  # both: {3, 4}; not the product 5/8 * 4/8
    (set(), set(), (0.0, 0.0, 0.0)),
]


@pytest.mark.parametrize("q2a_right, qa2r_right, expected", VCR_CASES)
@pytest.mark.parametrize("batch_size", [1, 3, 16])  # 3: a question's two items fall in different batches
def test_vcr_q2a_qa2r_and_both_right_on_the_same_question(q2a_right, qa2r_right, expected, batch_size):
    out = vcr.evaluate(task_model(vcr.forward, vil_logit=nn.Identity()), data(vcr_items(q2a_right, qa2r_right)),
                       "test", batch_size)  # fmt: skip
    assert out == {"q2a": pytest.approx(expected[0]), "qa2r": pytest.approx(expected[1]),
                   "q2ar": pytest.approx(expected[2])}  # fmt: skip
    assert expected[2] == len(q2a_right & qa2r_right) / 8  # the oracle is the intersection


def test_vcr_q2ar_depends_on_the_pairing():
    """QA→R items moved one question on (each Q→A now sits beside another question's QA→R): the two single
    accuracies are unchanged, the both-right accuracy is not the oracle's any more."""
    items = vcr_items({0, 1, 2, 3, 4}, {3, 4, 5, 6})
    qa, qar = items[0::2], items[1::2]
    shifted = [it for pair in zip(qa, qar[1:] + qar[:1]) for it in pair]
    out = vcr.evaluate(task_model(vcr.forward, vil_logit=nn.Identity()), data(shifted), "test", 4)
    assert out["q2a"] == pytest.approx(5 / 8) and out["qa2r"] == pytest.approx(4 / 8)
    assert out["q2ar"] == pytest.approx(
        3 / 8
    )  # questions 2, 3, 4 beside a right QA→R now, not the oracle's 2/8


def test_vcr_items_alternate_q2a_and_qa2r_per_question():
    """evaluate pairs item 2i with 2i+1: build_items must give Q→A then QA→R of the same question."""
    recs = [VCRItem("s", f"question {i}", ["a", "b", "c", "d"], i % 4, ["w", "x", "y", "z"], (i + 1) % 4)
            for i in range(3)]  # fmt: skip
    items = vcr.build_items(recs, {"s": image([[0.0]])})
    assert [it["kind"] for it in items] == [0, 1] * 3
    assert [it["label"] for it in items] == [0, 1, 1, 2, 2, 3]
    assert all(len(it["pairs"]) == vcr.N_OPTIONS for it in items)


# ------------------------------------------------------------------------------------------------- NLVR
def nlvr_items(labels: list[int], right: set[int]) -> list[dict]:
    """Rows (statement, left image), (statement, right image); the stub's logit of class 0 is the left row's
    output, of class 1 the right row's. The arg-max equals the label exactly on the `right` items."""
    items = []
    for i, label in enumerate(labels):
        pick = label if i in right else 1 - label
        hi, lo = 2.0 + 0.1 * i, -1.0 - 0.1 * i
        left, right_v = (hi, lo) if pick == 0 else (lo, hi)
        items.append({"pairs": [scored(left), scored(right_v)], "label": label})
    return items


NLVR_LABELS = [0, 1, 1, 0, 1, 0, 0, 1]


@pytest.mark.parametrize("right, expected", [(set(range(8)), 1.0), ({0, 1, 2, 3}, 0.5), ({1, 4, 7}, 3 / 8),
                                             (set(), 0.0)])  # fmt: skip
@pytest.mark.parametrize("batch_size", [1, 3])
def test_nlvr_accuracy(right, expected, batch_size):
    model = task_model(nlvr.forward, vil_binary_prediction=nn.Identity())
    out = nlvr.evaluate(model, data(nlvr_items(NLVR_LABELS, right)), "test", batch_size)
    assert out == {"nlvr_accuracy": pytest.approx(expected)}


def test_nlvr_reads_the_left_and_right_rows_of_the_same_item():
    """Every item right when its two rows stay together; with each item's right row swapped for the next item's
    (the pairing broken), the number moves off the oracle."""
    items = nlvr_items(NLVR_LABELS, set(range(8)))
    model = task_model(nlvr.forward, vil_binary_prediction=nn.Identity())
    assert nlvr.evaluate(model, data(items), "test", 4)["nlvr_accuracy"] == 1.0
    broken = [{**it, "pairs": [it["pairs"][0], items[(i + 1) % 8]["pairs"][1]]} for i, it in enumerate(items)]
    assert nlvr.evaluate(model, data(broken), "test", 4)["nlvr_accuracy"] != 1.0


# ---------------------------------------------------------------------------------------- referring expressions
# (region logits, IoU with the target per region, right?): region 0 is the global region, never a pick.
REFER_ITEMS = [
    ([0.0, 1.0, 3.0, 2.0], [1.0, 0.1, 0.8, 0.6], True),  # best proposal 2, IoU 0.8
    ([9.0, 2.0, 1.0], [0.9, 0.2, 0.7], False),  # the global region scores highest and overlaps: not picked
    ([-1.0, -5.0, -3.0], [0.3, 0.1, 0.9], True),  # all logits negative: the zero-padded regions never picked
    ([0.0, 1.0, 0.5, 0.2, 0.1], [0.0, 0.5, 0.9, 0.9, 0.9], False),  # IoU exactly 0.5: a miss (> 0.5 counts)
    ([0.0, 0.2, 1.0, 0.3, 0.1], [0.0, 0.9, 0.51, 0.9, 0.9], True),  # IoU 0.51: a hit
    ([5.0, 0.4, 0.3], [0.95, 0.49, 0.6], False),
]


def refer_items(which) -> list[dict]:
    return [{"pairs": [row(REFER_ITEMS[i][0])], "iou": torch.tensor(REFER_ITEMS[i][1])} for i in which]


@pytest.mark.parametrize("which, expected", [
    ([0, 2, 4], 1.0),  # all right
    ([0, 1, 2, 3], 0.5),
    ([0, 1, 2, 3, 4, 5], 3 / 6),
    ([1, 2, 3, 4, 5], 2 / 5),
    ([1, 3, 5], 0.0),
])  # fmt: skip
@pytest.mark.parametrize("batch_size", [1, 2, 6])  # 2 and 6: items of different region counts padded together
def test_refer_accuracy(which, expected, batch_size):
    assert expected == sum(REFER_ITEMS[i][2] for i in which) / len(which)
    model = task_model(refer.forward, vision_logit=nn.Identity())
    out = refer.evaluate(model, data(refer_items(which), collate=refer.collate), "test", batch_size)
    assert out == {"refer_accuracy": pytest.approx(expected)}


# ------------------------------------------------------------------------------------------------ retrieval
WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)  # one word piece each
N_QUERIES, N_POOL = 6, 12
POOL_ORDER = (5, 11, 0, 7, 2, 9, 3, 10, 1, 8, 4, 6)  # pool position -> image code: not the query order
TRUE_IMAGE = (2, 7, 0, 11, 4, 9)  # query caption -> its image's code
# 4-way items: caption 6 + q, row k scored with image code 12 + k; the true pair is row 0
FOUR_WAY = ([0.9, 0.1, 0.2, 0.3], [0.1, 0.9, 0.2, 0.3], [0.5, 0.4, -1.0, 0.49], [0.3, 0.2, 0.1, 0.0])


def retrieval_setup(ranks, tied=()):
    """A score table in which query caption c's own image is outranked by exactly ranks[c] pool images (scored
    above it, or tied with it for captions in `tied`: ties count against the caption), plus the 4-way items."""
    word_ids = [int(t[0][1]) for t in tokenize(list(WORDS))]
    table = torch.zeros(len(WORDS), N_POOL + 4)
    for c, (rank, true) in enumerate(zip(ranks, TRUE_IMAGE)):
        table[c, true] = 0.5
        above = [j for j in range(N_POOL) if j != true][:rank]
        table[c, above] = 0.5 if c in tied else 1.0
    for q, scores in enumerate(FOUR_WAY):
        table[N_QUERIES + q, N_POOL : N_POOL + 4] = torch.tensor(scores)
    images = {f"img{j}": image([[float(j)]]) for j in range(N_POOL)}
    queries = [RetrievalItem(f"img{TRUE_IMAGE[c]}", WORDS[c], "") for c in range(N_QUERIES)]
    four_way = [{"pairs": [row([[float(N_POOL + k)]], word_ids[N_QUERIES + q]) for k in range(4)], "label": 0}
                for q in range(len(FOUR_WAY))]  # fmt: skip
    extra = {"pool": [f"img{j}" for j in POOL_ORDER], "queries": queries, "images": images}
    return ReadOff(table, {w: i for i, w in enumerate(word_ids)}), data(four_way, extra=extra)


RETRIEVAL_CASES = [  # (ranks of the true image per caption, tied captions) -> r@1, r@5, r@10
    ([0] * 6, (), (1.0, 1.0, 1.0)),
    ([0, 0, 0, 7, 7, 7], (), (0.5, 0.5, 1.0)),
    ([0, 3, 4, 5, 9, 10], (), (1 / 6, 3 / 6, 5 / 6)),  # ranks 5 and 10 fall just outside the top 5 / top 10
    ([0, 3, 4, 5, 9, 10], (4,), (1 / 6, 3 / 6, 5 / 6)),  # caption 4 tied with 9 images: rank 9, not 0
    ([1, 0, 11, 6, 2, 10], (0, 2), (1 / 6, 3 / 6, 4 / 6)),
]


@pytest.mark.parametrize("ranks, tied, expected", RETRIEVAL_CASES)
@pytest.mark.parametrize("zero_shot", [False, True])
def test_retrieval_recall_at_k_and_four_way(ranks, tied, expected, zero_shot):
    """Fine-tuned (vil_logit) and zero-shot (alignment head's log-odds) retrieval through `evaluate` on the test
    split: R@1/5/10 over the pool and the 4-way accuracy (items 0, 2, 3 right: 3/4)."""
    bert, d = retrieval_setup(ranks, tied)
    spec = retrieval.ZERO_SHOT if zero_shot else retrieval.TASK
    heads = {"bi_seq_relationship": LogOdds()} if zero_shot else {"vil_logit": nn.Identity()}
    out = spec.evaluate(task_model(spec.forward, bert, **heads), d, "test", 2)
    assert out == {"r@1": pytest.approx(expected[0]), "r@5": pytest.approx(expected[1]),
                   "r@10": pytest.approx(expected[2]), "four_way_accuracy": pytest.approx(3 / 4)}  # fmt: skip
    assert expected == tuple(sum(r < k for r in ranks) / 6 for k in (1, 5, 10))
    assert spec.evaluate(task_model(spec.forward, bert, **heads), d, "val", 2) == {
        "four_way_accuracy": pytest.approx(3 / 4)
    }


def test_retrieval_ranks_each_caption_against_its_own_image():
    """Queries listed with the wrong images (each caption given the next caption's image): the numbers move off
    the oracle, so a ranking that compared a caption with another caption's image would fail the test above."""
    bert, d = retrieval_setup([0] * 6)
    q = d.extra["queries"]
    d.extra["queries"] = [RetrievalItem(q[(c + 1) % 6].image_id, q[c].caption, "") for c in range(6)]
    out = retrieval.evaluate(task_model(retrieval.forward, bert, vil_logit=nn.Identity()), d, "test", 2)
    assert out["r@1"] != pytest.approx(1.0)


def test_retrieval_zero_shot_ranks_by_the_aligned_log_odds_not_its_opposite():
    """Scores that put every true image first for the aligned logit put it last for the other one: a head read
    at the wrong index would give R@1 0, not 1."""
    bert, d = retrieval_setup([0] * 6)
    swapped = FlippedLogOdds()
    good = retrieval.ZERO_SHOT.evaluate(task_model(retrieval.forward, bert, bi_seq_relationship=LogOdds()), d,
                                        "test", 2)  # fmt: skip
    bad = retrieval.ZERO_SHOT.evaluate(task_model(retrieval.forward, bert, bi_seq_relationship=swapped), d,
                                       "test", 2)  # fmt: skip
    assert good["r@1"] == 1.0 and bad["r@1"] == 0.0


# ------------------------------------------------------------------------------------------------------ VQA
VQA_VOCAB = ["red", "blue", "green", "yes", "no", "2"]
# (10 human answers, answer type, stub's answer, VQA score of that answer = min(#humans who gave it / 3, 1))
VQA_ITEMS = [
    (["red"] * 10, "other", "red", 1.0),
    (["blue"] * 2 + ["green"] * 8, "other", "blue", 2 / 3),
    (["Red."] + ["blue"] * 9, "other", "red", 1 / 3),  # answers normalised: "Red." is "red"
    (["yes"] * 3 + ["no"] * 7, "yes/no", "yes", 1.0),
    (["no"] * 4 + ["yes"] * 6, "yes/no", "2", 0.0),
    (["cat"] * 10, "number", "red", 0.0),  # out of the vocabulary: never matched
    (["no"] * 7 + ["yes"] * 3, "yes/no", "no", 1.0),  # 7 humans: 1, not 7/3
    (["2"] * 5 + ["two"] * 5, "number", "2", 1.0),
]


def vqa_data(which, qtypes: bool = True) -> TaskData:
    vocab = {a: i for i, a in enumerate(VQA_VOCAB)}
    recs = [VQAItem(f"q{i}", f"im{i}", "what?", VQA_ITEMS[i][0], VQA_ITEMS[i][1]) for i in which]
    # each question its own image, whose global region carries the stub's answer logits (one-hot on its answer)
    images = {f"im{i}": image([[float(a == VQA_ITEMS[i][2]) for a in VQA_VOCAB]]) for i in which}
    items = vqa.build_items(recs, images, vocab)
    extra = {"qtypes": {"test": [r.qtype for r in recs]}} if qtypes else {}
    return data(items, extra=extra)


@pytest.mark.parametrize("which, expected", [
    ([0, 3, 6, 7], 1.0),
    ([0, 3, 4, 5], 0.5),
    ([1, 2, 4, 5], 0.25),  # 2/3 + 1/3 + 0 + 0
    ([0, 1, 2, 3, 4, 5], 0.5),  # (1 + 2/3 + 1/3 + 1 + 0 + 0) / 6
    (list(range(8)), 5 / 8),
])  # fmt: skip
@pytest.mark.parametrize("batch_size", [1, 3])
def test_vqa_soft_accuracy(which, expected, batch_size):
    assert expected == pytest.approx(sum(VQA_ITEMS[i][3] for i in which) / len(which))
    model = task_model(vqa.forward, vil_prediction=nn.Identity())
    out = vqa.evaluate(model, vqa_data(which, qtypes=False), "test", batch_size)
    assert out == {"vqa_accuracy": pytest.approx(expected)}


def test_vqa_accuracy_per_answer_type():
    model = task_model(vqa.forward, vil_prediction=nn.Identity())
    out = vqa.evaluate(model, vqa_data(range(8)), "test", 3)
    assert out == {
        "vqa_accuracy": pytest.approx(5 / 8),
        "vqa_accuracy_other": pytest.approx((1 + 2 / 3 + 1 / 3) / 3),
        "vqa_accuracy_yes_no": pytest.approx(2 / 3),  # 1, 0, 1
        "vqa_accuracy_number": pytest.approx(0.5),  # 0, 1
    }


def test_vqa_soft_scores_are_min_of_humans_over_three():
    vocab = {a: i for i, a in enumerate(VQA_VOCAB)}
    t = vqa.soft_scores(["red"] * 1 + ["blue"] * 2 + ["green"] * 3 + ["yes"] * 4 + ["cat"] * 5, vocab)
    assert t.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 0.0, 0.0])


# --------------------------------------------------------------------------------- pretraining: colour / shape
PRETRAIN_CAPTIONS = (
    "a red circle near a blue square",  # colours red, blue; shapes circle, square
    "two green stars",  # green; stars
    "a yellow ball",  # yellow; ball
    "an orange triangle and a purple diamond",  # orange, purple; triangle, diamond
)


class MaskedWordStub(nn.Module):
    """A pretraining model stand-in: at each masked position it predicts the caption's true word, except where
    `wrong` maps (caption index, true word) to another word; it calls a caption aligned with its image when its
    tokens are the dataset's own caption for that item (`always_aligned`: every pair)."""

    def __init__(self, dataset, tok, wrong: dict, always_aligned: bool = False):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(vocab_size=tok.vocab_size)
        self.dataset, self.tok, self.wrong, self.always_aligned = dataset, tok, wrong, always_aligned

    def forward_fn(self, core, b, lm_pos):
        """The `forward` hook of evaluate_pretraining: (core, batch, lm_positions) -> alignment and token logits."""
        texts = [int(i) for i in b["text_index"]]
        own = torch.tensor([torch.equal(b["input_ids"][r][b["attention_mask"][r].bool()], self.dataset.ids[t])
                            for r, t in enumerate(texts)])  # fmt: skip
        rel = torch.zeros(len(texts), 2)
        rel[:, ALIGNED_INDEX] = torch.where(own | self.always_aligned, 5.0, -5.0)
        preds = []
        for r, pos in lm_pos.nonzero().tolist():  # row-major: the order of the model's masked-token outputs
            word = self.tok.convert_ids_to_tokens(int(self.dataset.ids[texts[r]][pos]))
            preds.append(self.tok.convert_tokens_to_ids(self.wrong.get((texts[r], word), word)))
        logits = torch.zeros(len(preds), self.tok.vocab_size)
        logits[torch.arange(len(preds)), torch.tensor(preds, dtype=torch.long)] = 1.0
        return SimpleNamespace(seq_relationship_logits=rel, prediction_logits_t=logits)


@pytest.fixture(scope="module")
def caption_dataset():
    tok = get_tokenizer()
    visual = {f"im{i}": image([[float(i)], [0.0]]) for i in range(len(PRETRAIN_CAPTIONS))}
    caps = [Caption(f"im{i}", text) for i, text in enumerate(PRETRAIN_CAPTIONS)]
    return CaptionImageDataset(caps, visual, tok), tok


PRETRAIN_CASES = [  # wrong predictions -> color_acc, shape_acc, shape_name_acc
    ({}, (1.0, 1.0, 1.0)),
    ({(0, "red"): "blue", (1, "green"): "red", (3, "orange"): "orange"}, (4 / 6, 1.0, 1.0)),  # orange right
    ({(0, "blue"): "red", (2, "yellow"): "green", (3, "purple"): "black"}, (0.5, 1.0, 1.0)),
    # "ball" for "circle": wrong word, right shape; "circle" for "square" and "ball" for "diamond": wrong shape
    ({(0, "circle"): "ball", (0, "square"): "circle", (3, "diamond"): "ball"}, (1.0, 3 / 6, 4 / 6)),
    # "star" for "stars", "wedge" for "triangle": other words of the same shape; "square" for "ball": not
    ({(1, "stars"): "star", (2, "ball"): "square", (0, "red"): "square", (3, "triangle"): "wedge"},
     (5 / 6, 3 / 6, 5 / 6)),
]  # fmt: skip


@pytest.mark.parametrize("wrong, expected", PRETRAIN_CASES)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_pretraining_colour_and_shape_word_accuracy(caption_dataset, wrong, expected, batch_size):
    ds, tok = caption_dataset
    stub = MaskedWordStub(ds, tok, wrong)
    out = evaluate_pretraining(stub, ds, tok, batch_size=batch_size, device="cpu", forward=stub.forward_fn)
    assert (out["n_color_acc"], out["n_shape_acc"]) == (
        6,
        6,
    )  # the colour / shape words of the captions above
    assert out["color_acc"] == pytest.approx(expected[0])
    assert out["shape_acc"] == pytest.approx(expected[1])
    assert out["shape_name_acc"] == pytest.approx(expected[2])
    assert out["color_shape_acc"] == pytest.approx((expected[0] + expected[1]) / 2)  # 6 words of each
    assert out["alignment_acc"] == 1.0


def test_pretraining_alignment_accuracy_of_always_aligned_is_one_half(caption_dataset):
    """Every caption is scored with its own image and with another image's caption: a stub that calls every pair
    aligned is right on the positives only."""
    ds, tok = caption_dataset
    stub = MaskedWordStub(ds, tok, {}, always_aligned=True)
    out = evaluate_pretraining(stub, ds, tok, batch_size=2, device="cpu", forward=stub.forward_fn)
    assert out["alignment_acc"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------- tables: percent rows
def test_table_rows_hold_one_hundred_times_the_run_metric(monkeypatch, tmp_path):
    """run_cell turns each fine-tuning run's metrics into long rows: value = 100 x metric, its chance level likewise
    (R@k: k / pool), the zero-shot R@K in its own zs_ columns, metrics with no table column left out."""
    metrics = {  # each with the chance keys its task writes (tasks/*.py)
        "vqa": {"vqa_accuracy": 0.5, "chance": 0.01},
        "vcr": {"q2a": 0.625, "qa2r": 0.5, "q2ar": 0.25, "chance": 0.25, "chance_q2ar": 0.0625},
        "refer": {"refer_accuracy": 0.6, "chance": 0.2},
        "retrieval": {
            "r@1": 1 / 6,
            "r@5": 0.5,
            "r@10": 5 / 6,
            "four_way_accuracy": 0.75,
            "pool": 16,
            "chance_r@1": 1 / 16,
            "chance": 0.25,
        },
        "zeroshot": {
            "r@1": 0.125,
            "r@5": 0.375,
            "r@10": 0.875,
            "four_way_accuracy": 0.5,
            "pool": 8,
            "chance_r@1": 1 / 8,
            "chance": 0.25,
        },  # fmt: skip
        "nlvr": {"nlvr_accuracy": 0.375, "chance": 0.5},
    }
    seen = []

    def fake_finetune(task, init, profile, seed, **kw):
        seen.append(task)
        return {**metrics[task], "config_hash": f"h{task}"}

    monkeypatch.setattr(experiments, "finetune", fake_finetune)
    rows = experiments.run_cell("t1", "vilbert†", "smoke", 3, pretrained=False, root=tmp_path)
    assert seen == list(experiments.TASKS)
    got = {r["column"]: r["value"] for r in rows}
    assert got == pytest.approx({
        "vqa_accuracy": 50.0, "q2a": 62.5, "qa2r": 50.0, "q2ar": 25.0, "refer_accuracy": 60.0,
        "r@1": 100 / 6, "r@5": 50.0, "r@10": 500 / 6, "zs_r@1": 12.5, "zs_r@5": 37.5, "zs_r@10": 87.5,
        "nlvr_accuracy": 37.5,
    })  # fmt: skip
    assert len(rows) == len(got)  # one row per column
    chance = {r["column"]: r["chance"] for r in rows}
    # every column's chance level, in percent: the figures draw it, C2 reads R@1's (R@k: k / pool)
    assert chance == pytest.approx({
        "vqa_accuracy": 1.0, "q2a": 25.0, "qa2r": 25.0, "q2ar": 6.25, "refer_accuracy": 20.0, "r@1": 6.25,
        "r@5": 500 / 16, "r@10": 1000 / 16, "zs_r@1": 12.5, "zs_r@5": 62.5, "zs_r@10": 100.0,
        "nlvr_accuracy": 50.0,
    })  # fmt: skip
    assert all((r["table"], r["row"], r["seed"], r["init"]) == ("t1", "vilbert†", 3, "") for r in rows)
    assert {r["run"] for r in rows if r["column"] == "q2ar"} == {"finetune/vcr-hvcr"}
