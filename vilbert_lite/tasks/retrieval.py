"""Caption-based image retrieval, fine-tuned and zero-shot (ViLBERT, arXiv 1908.02265, §4).

    train    the paper's 4-way choice per caption: (caption, its image), (random caption, image),
             (caption, random image), (hard-negative caption, image); one alignment score per row, softmax
             over the 4, cross-entropy (the true pair is option 0; rows are scored independently)
    head     fine-tuned: vil_logit = Linear(bi, 1) on the fused pooled output
             zero-shot:  the pretrained alignment head cls.bi_seq_relationship, no fine-tuning; a pair's score
             is P(aligned), ranked by its log-odds (same order, no saturation at 1.0)
    metrics  R@1/5/10: each test caption (up to MAX_QUERIES) ranks a pool of POOL_SIZE test images (its own
             among them; ties count against it), and four_way_accuracy on fixed 4-way test items;
             chance R@1 = 1/pool

Ranking N captions against M images is N*M forward passes. `score_matrix` runs what does not depend on the
pair once: the text layers before the first co-attention once per caption (`text_prefix`), the visual
embedding and visual layers before it once per image (`vision_prefix`); then batches of pairs go through
`forward_from_prefix`. `bench` measures pairs/s with and without this caching (reports/bench/retrieval.json).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vilbert_lite.data.collate import collate_examples, pad_text
from vilbert_lite.data.regions import collate_visual
from vilbert_lite.errors import UserError
from vilbert_lite.pretrain.objectives import ALIGNED_INDEX
from vilbert_lite.tasks.common import (
    Source,
    TaskData,
    TaskSpec,
    alignment_head,
    evaluate_batches,
    load_head_weights,
    new_heads,
    pair,
    tokenize,
)

MAX_LENGTH = 32  # official 30
POOL_SIZE = 100  # images ranked per caption (the official code ranks 1,000)
MAX_QUERIES = 50  # captions ranked over the pool (the first ones of the pool's images): 50 x 100 pairs
N_WAY = 4


# ---------------------------------------------------------------------------------------------------- data
class FourWay(torch.utils.data.Dataset):
    """4-way items over (caption, hard negative, image) triples. The random caption and random image are drawn
    per access from the global torch RNG (training: new negatives every epoch, restored on resume), or fixed
    once from `generator` (evaluation)."""

    def __init__(self, records, images, generator: torch.Generator | None = None):
        self.images = [images[r.image_id] for r in records]
        self.captions = tokenize([r.caption for r in records], max_length=MAX_LENGTH)
        self.hard = tokenize([r.hard_negative for r in records], max_length=MAX_LENGTH)
        n = len(records)
        self.fixed = None
        if generator is not None and n > 1:  # (n, 2) partner indices, never the item itself
            self.fixed = (
                torch.arange(n)[:, None] + 1 + torch.randint(n - 1, (n, 2), generator=generator)
            ) % n

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int) -> dict:
        n = len(self)
        j, k = (
            self.fixed[i].tolist()
            if self.fixed is not None
            else ((i + 1 + torch.randint(n - 1, (2,))) % n).tolist()
        )
        v, cap = self.images[i], self.captions[i]
        rows = [pair(cap, v), pair(self.captions[j], v), pair(cap, self.images[k]), pair(self.hard[i], v)]
        return {"pairs": rows, "label": 0}


def load(source: Source) -> TaskData:
    if source.kind != "synthetic":
        raise UserError("retrieval runs on the synthetic world only (data='synthetic')")
    w = source.world
    recs = {s: w.retrieval(s) for s in ("train", "val", "test")}
    g = torch.Generator().manual_seed(0)  # the same fixed evaluation items for every run
    pool_ids = [s.scene_id for s in w.scenes["test"][:POOL_SIZE]]
    in_pool = set(pool_ids)
    queries = [r for r in recs["test"] if r.image_id in in_pool][:MAX_QUERIES]
    info = {"n_train": len(recs["train"]), "n_eval": len(queries), "pool": len(pool_ids),
            "chance_r@1": 1 / max(len(pool_ids), 1), "chance": 1 / N_WAY}  # fmt: skip
    data = TaskData(FourWay(recs["train"], source.images), FourWay(recs["val"], source.images, g),
                    FourWay(recs["test"], source.images, g), info=info)  # fmt: skip
    data.extra.update(pool=pool_ids, queries=queries, images=source.images)  # for R@K
    return data


# --------------------------------------------------------------------------------------------------- model
def heads(config, data: TaskData, init=None) -> dict:
    """vil_logit (bi -> 1). With a pretraining run it starts as the alignment head's log-odds
    (w_aligned - w_other): the paper scores retrieval pairs "as in pretraining"; random for init none."""
    head = new_heads(config, vil_logit=nn.Linear(config.bi_hidden_size, 1))
    if init is not None and str(init).lower() != "none":
        w = load_head_weights(init, alignment_head(init))
        a, o = ALIGNED_INDEX, 1 - ALIGNED_INDEX
        head["vil_logit"].load_state_dict({"weight": (w["weight"][a] - w["weight"][o])[None],
                                           "bias": (w["bias"][a] - w["bias"][o])[None]})  # fmt: skip
    return head


def zero_shot_heads(config, data: TaskData, init=None) -> dict:
    """The pretraining alignment head (bi_hidden -> 2), from the --init run; random for init none. Named
    bi_seq_relationship here whatever the run called it."""
    head = nn.Linear(config.bi_hidden_size, 2)
    if init is None or str(init).lower() == "none":
        return new_heads(config, bi_seq_relationship=head)
    head.load_state_dict(load_head_weights(init, alignment_head(init)))  # ViLBERT's or ViLT's (itm_score)
    return {"bi_seq_relationship": head}


def pair_score(m, pooled: torch.Tensor) -> torch.Tensor:
    """(N, bi) fused pooled outputs -> (N,) alignment scores (vil_logit, or the log-odds of P(aligned))."""
    if hasattr(m, "vil_logit"):
        return m.vil_logit(pooled).squeeze(-1)
    logits = m.bi_seq_relationship(pooled)
    return logits[:, ALIGNED_INDEX] - logits[:, 1 - ALIGNED_INDEX]


def forward(m, batch) -> torch.Tensor:
    """-> scores (B, 4) of the 4 rows of each item."""
    return pair_score(m, m.encode(batch).pooled_output).view(-1, N_WAY)


def loss_fn(model, batch) -> tuple[torch.Tensor, dict]:
    scores = model(batch)
    loss = F.cross_entropy(scores, batch["label"])
    return loss, {"four_way_accuracy": float((scores.argmax(1) == batch["label"]).float().mean())}


# ---------------------------------------------------------------------------------------------- ranking
@torch.no_grad()
def score_matrix(m, texts: dict, images: dict, cache: bool = True, batch_size: int = 256) -> torch.Tensor:
    """Alignment score of every caption with every image -> (N, M).

    texts: input_ids / attention_mask / token_type_ids (N, T); images: visual_feats (M, R, D), visual_pos
    (M, R, 5), visual_attention_mask (M, R) -- or a ViLT's image (M, 3, H, W) / grid_features (M, C, h, w).
    cache=True runs text_prefix once per caption and vision_prefix once per image and only the rest per pair
    (models that have them); otherwise the whole model runs per pair (`m.encode`). Same scores either way.
    """
    bert, device = m.bert, next(m.parameters()).device
    texts = {k: texts[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids")}
    keys = [k for k in ("visual_feats", "visual_pos", "visual_attention_mask", "image", "grid_features")
            if k in images]  # fmt: skip
    images = {k: images[k].to(device) for k in keys}
    N, M = len(texts["input_ids"]), len(images[keys[0]])
    ci = torch.arange(N, device=device).repeat_interleave(M)  # (N*M,) caption of each pair
    ii = torch.arange(M, device=device).repeat(N)  # (N*M,) image of each pair
    cache = cache and hasattr(bert, "text_prefix")
    if cache:
        t, t_mask = _chunked(lambda s: bert.text_prefix(texts["input_ids"][s], texts["attention_mask"][s],
                                                        texts["token_type_ids"][s]), N, batch_size)  # fmt: skip
        v, v_mask = _chunked(lambda s: bert.vision_prefix(images["visual_feats"][s], images["visual_pos"][s],
                                                          images["visual_attention_mask"][s]), M, batch_size)  # fmt: skip
    scores = []
    for s in range(0, N * M, batch_size):
        c, i = ci[s : s + batch_size], ii[s : s + batch_size]
        if cache:
            out = bert.forward_from_prefix(t[c], t_mask[c], v[i], v_mask[i])
        else:
            out = m.encode({**{k: v[c] for k, v in texts.items()}, **{k: v[i] for k, v in images.items()}})
        scores.append(pair_score(m, out.pooled_output).float())
    return torch.cat(scores).view(N, M)


def _chunked(fn, n: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [fn(slice(s, s + batch_size)) for s in range(0, n, batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def recall_at(scores: torch.Tensor, truth: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    """scores (N, M), truth (N,) image index of each caption -> {"r@k": share ranked in the top k}.
    rank = images scoring at least as high as the true one, minus itself (pessimistic on ties)."""
    true = scores.gather(1, truth[:, None])  # (N, 1)
    rank = (scores >= true).sum(1) - 1
    return {f"r@{k}": float((rank < k).float().mean()) for k in ks}


def rank_pool(model, data: TaskData, batch_size: int = 256, cache: bool = True) -> dict[str, float]:
    """R@1/5/10 of the test captions over the image pool."""
    pool, queries, images = data.extra["pool"], data.extra["queries"], data.extra["images"]
    index = {k: i for i, k in enumerate(pool)}
    texts = tokenize([q.caption for q in queries], max_length=MAX_LENGTH)
    text_batch = pad_text([t[0] for t in texts], [t[1] for t in texts])
    image_batch = collate_examples([images[k] for k in pool])  # regions padded, or a ViLT's pixels stacked
    was_training = model.training
    model.eval()
    scores = score_matrix(model, text_batch, image_batch, cache, batch_size)
    model.train(was_training)
    return recall_at(scores.cpu(), torch.tensor([index[q.image_id] for q in queries]))


def evaluate(model, data: TaskData, split: str, batch_size: int) -> dict:
    """val: the 4-way accuracy (cheap, every epoch); test: R@1/5/10 over the pool and the 4-way accuracy."""
    items = {"val": data.val, "test": data.test, "train": data.train}[split]
    right = evaluate_batches(
        model, items, data.collate, lambda m, b: (m(b).argmax(1) == b["label"]).cpu(), batch_size
    )
    out = {"four_way_accuracy": float(torch.cat(right).float().mean())}
    if split == "test":
        out = {**rank_pool(model, data, max(batch_size, 256)), **out}
    return out


TASK = TaskSpec(
    name="retrieval",
    metrics=("r@1", "r@5", "r@10", "four_way_accuracy"),
    load=load,
    heads=heads,
    forward=forward,
    evaluate=evaluate,
    loss_fn=loss_fn,
    batch_scale=0.25,
    description="caption-based image retrieval: 4-way alignment training, R@1/5/10 over an image pool",
)
ZERO_SHOT = TaskSpec(
    name="zeroshot",
    metrics=("r@1", "r@5", "r@10", "four_way_accuracy"),
    load=load,
    heads=zero_shot_heads,
    forward=forward,
    evaluate=evaluate,
    loss_fn=None,
    description="zero-shot retrieval with the pretrained alignment head, no fine-tuning",
)


def random_inputs(config, n_captions: int, n_images: int, tokens: int, regions: int, seed: int = 0):
    """Random captions (N, T) of varied length and images (M, R+1) of varied region counts, valid boxes."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(tokens // 2, tokens + 1, (n_captions,), generator=g)
    ids = [torch.cat([torch.tensor([101]), torch.randint(1000, config.vocab_size, (int(n) - 2,), generator=g),
                      torch.tensor([102])]) for n in lengths]  # fmt: skip
    texts = pad_text(ids)
    n_reg = torch.randint(max(1, regions // 2), regions + 1, (n_images,), generator=g)
    imgs = []
    for r in n_reg.tolist():
        xy = torch.rand(r + 1, 2, generator=g) * 0.5
        wh = torch.rand(r + 1, 2, generator=g) * 0.5
        pos = torch.cat([xy, xy + wh, (wh[:, :1] * wh[:, 1:])], 1)
        imgs.append({"visual_feats": torch.rand(r + 1, config.v_feature_size, generator=g), "visual_pos": pos,
                     "cls_prob": torch.zeros(r + 1, 0), "boxes": torch.zeros(r + 1, 4), "num_regions": torch.tensor(r + 1)})  # fmt: skip
    return texts, collate_visual(imgs)
