"""Use a trained run on new images: answer a question, rank captions or images, point at what a phrase names.

    p = load_run("runs/finetune/vqa-<hash>")                 # a finished fine-tune run, or a pretraining run
    p.answer("photo.png", "what colour is the shape?")       # vqa: [("red", 0.93), ("blue", 0.04), ...]
    p.rank("photo.png", ["a red circle", "a blue star"])     # retrieval, pretraining: [("a red circle", 0.9)]
    p.rank(["a.png", "b.png"], "a red circle")               # images for one caption: [(1, 0.88), (0, 0.12)]
    p.point("photo.png", "the small red circle")             # refer: ((x1, y1, x2, y2), 0.87)

    vilbert-lite ask RUN --image photo.png --question "what colour is the shape?" [--top-k 5]
    vilbert-lite ask RUN --image photo.png --captions "a red circle" "a blue star"
    vilbert-lite ask RUN --image a.png b.png --captions "a red circle"
    vilbert-lite ask RUN --image photo.png --expression "the small red circle"

An image is a path, a PIL image, an HxWx3 uint8 array, or the dict `Predictor.visual` returned (regions
already extracted: ask it many things at the cost of one extraction). Region features are extracted on the
fly by a `RegionExtractor` rebuilt from the settings the run's feature store recorded (task.json of a
fine-tune run, features.json of a pretraining run): the same backbone stage, image size, RoIAlign and
proposal parameters, so the model reads features of the kind it was trained on. A new image has no
ground-truth boxes, so its regions are proposals (`regions.propose_boxes`) unless `boxes=` are given; runs
trained on the synthetic world's ground-truth boxes (vqa, retrieval, pretraining) then see boxes of another
kind than in training.

Scores (ViLBERT, arXiv 1908.02265, §3-§4): answer -- sigmoid of each answer's logit (the VQA head is trained
with BCE on soft scores); point -- sigmoid of the region's logit (BCE against IoU targets); rank -- P(aligned)
from the pretraining alignment head, each pair on its own (pretraining and zeroshot runs), or for a fine-tuned
retrieval run the softmax of its alignment scores over the candidates (its training objective picks the true
pair among four).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from vilbert_lite import runs
from vilbert_lite.data.collate import pad_text
from vilbert_lite.data.regions import BACKBONE, RegionExtractor, collate_visual, visual_inputs
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.device import resolve_device, to_device
from vilbert_lite.errors import UserError
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.single_stream import load_any
from vilbert_lite.pretrain.captions import alignment_score
from vilbert_lite.pretrain.data import MAX_SEQ_LENGTH
from vilbert_lite.tasks import get_task, refer, retrieval, vqa
from vilbert_lite.tasks.common import (
    MAX_REGIONS,
    METRICS_FILE,
    TASK_FILE,
    TaskData,
    TaskModel,
    backbone_factory,
    collate_pairs,
    load_backbone,
    pair,
    tokenize,
)
from vilbert_lite.tasks.retrieval import score_matrix

FINETUNED = ("vqa", "refer", "retrieval", "zeroshot")  # the fine-tune tasks a Predictor serves
NEEDS = {"answer": ("vqa",), "rank": ("retrieval", "zeroshot", "pretraining"), "point": ("refer",)}
CLI_OPTION = {"answer": "--question", "rank": "--captions", "point": "--expression"}


# ------------------------------------------------------------------------------------------------ loading
def _listed(names: tuple[str, ...], last: str = "or") -> str:
    """('a', 'b', 'c') -> 'a, b or c'."""
    return f"{', '.join(names[:-1])} {last} {names[-1]}" if len(names) > 1 else names[0]


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e}); expected the {what} a run writes") from e


def region_extractor(settings: dict | None, device, where: str):
    """A RegionExtractor with the recorded `settings` (a feature store's settings.json) -> the extractor.
    Settings that the rebuilt extractor does not reproduce (another weights file, version) are named in a
    warning; settings from another extractor, or none, are a UserError (pass `extractor=` to `load_run`)."""
    if not settings:
        raise UserError(f"{where}: no region extractor settings recorded (the run read precomputed "
                        "features); pass extractor= to load_run")  # fmt: skip
    if settings.get("backbone") != BACKBONE:
        raise UserError(f"{where}: the run's features came from another extractor than the built-in "
                        f"{BACKBONE} one (settings {sorted(settings)}); "
                        "pass extractor= to load_run")  # fmt: skip
    ext = RegionExtractor(
        max_regions=settings.get("max_regions", 36), device=str(device),
        image_size=settings.get("image_size", 224), pool_size=settings.get("pool_size", 7),
        sampling_ratio=settings.get("sampling_ratio", 2), proposal_params=settings.get("proposals"),
        stage=settings.get("stage", "head"),  # stores written before stages existed pooled the head
    )  # fmt: skip
    differ = sorted(k for k in settings if ext.settings.get(k) != settings[k])
    if differ:
        warnings.warn(f"{where}: the rebuilt region extractor differs from the run's in {differ}; its "
                      "features may differ from those the model was trained on", stacklevel=3)  # fmt: skip
    return ext


def _finetune_model(run: Path, info: dict):
    """The TaskModel of a finished fine-tune run: the recorded backbone and heads, weights from model.pt (a
    zeroshot run has none: its backbone and alignment head come from its --init run)."""
    task, kind = info["task"], info.get("backbone")
    if task not in FINETUNED:
        raise UserError(f"{run} is a {task} run; load_run serves {', '.join(FINETUNED)} and pretraining runs")
    if kind not in ("vilbert", "single_stream") or info["features"].get("kind") != "regions":
        raise UserError(f"{run}: backbone {kind!r} reads no region features; load_run serves vilbert and "
                        "single_stream runs")  # fmt: skip
    config = ViLBertConfig.from_dict(info["model"], source=str(run / "task.json"))
    spec = get_task(task)
    n_answers = len(info.get("answers", []))
    data = TaskData([], [], [], info={"n_answers": n_answers})  # what the heads are sized by
    weights = run / "model.pt"
    if weights.is_file():
        bert = backbone_factory(kind)(config)
        model = TaskModel(bert, spec.forward, **spec.heads(bert.config, data, None))
        state = torch.load(weights, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise UserError(f"{weights}: weights do not fit the recorded model: missing {missing[:5]}, "
                            f"unexpected {unexpected[:5]}")  # fmt: skip
        return model
    if task != "zeroshot":
        raise UserError(f"{run}: no model.pt; not a finished {task} run")
    init = info.get("init", "none")
    if init == "none":
        raise UserError(f"{run}: a zeroshot run with init none has random heads; nothing to load")
    if not Path(init).is_dir():
        raise UserError(f"{run}: its --init run {init} is gone; a zeroshot run reads its model from there")
    bert = load_backbone(init, config, kind)
    return TaskModel(bert, spec.forward, **spec.heads(bert.config, data, init))


def _pretraining_model(run: Path):
    """The pretraining model of a finished run and its extractor settings (features.json, else the
    store's settings.json)."""
    if not runs.is_done(run) or not (run / "model" / "config.json").is_file():
        raise UserError(f"{run}: not a finished pretraining run (no DONE and model/); finish it with "
                        "`vilbert-lite pretrain` (it resumes)")  # fmt: skip
    if _read_json(run / "model" / "config.json", "model config").get("model_type") == "vilt":
        raise UserError(f"{run}: a ViLT run reads pixels, not region features; load_run serves ViLBERT runs")
    feats = _read_json(run / "features.json", "features record") if (run / "features.json").is_file() else {}
    settings = feats.get("settings")
    store_settings = Path(feats.get("store", "")) / "settings.json"
    if settings is None and feats.get("store") and store_settings.is_file():
        settings = _read_json(store_settings, "feature store settings")
    return load_any(run / "model"), settings


def load_run(path: str | Path, device: str = "auto", extractor=None) -> Predictor:
    """A finished fine-tune run folder (vqa, refer, retrieval, zeroshot) or pretraining run folder -> a
    Predictor on `device`. extractor: a region extractor to use instead of the one rebuilt from the run's
    recorded settings (anything with `extract_many`, as for `finetune`)."""
    run = Path(path)
    if not run.is_dir():
        raise UserError(f"{run}: no such run folder")
    if not (run / runs.RUN_CONFIG).is_file():
        raise UserError(f"{run}: not a run folder (no {runs.RUN_CONFIG}); expected a folder written by "
                        "`vilbert-lite finetune` or `vilbert-lite pretrain`")  # fmt: skip
    kind = _read_json(run / runs.RUN_CONFIG, "run config").get("kind", "")
    dev = resolve_device(device)
    if kind == "finetune":
        if not (run / METRICS_FILE).is_file():
            raise UserError(f"{run}: not a finished run (no {METRICS_FILE}); finish it with "
                            "`vilbert-lite finetune` (it resumes)")  # fmt: skip
        if not (run / TASK_FILE).is_file():
            raise UserError(f"{run}: no {TASK_FILE} (the run finished before runs recorded it); run the "
                            "same finetune command again to add it (the finished run is reused, not "
                            "retrained)")  # fmt: skip
        info = _read_json(run / TASK_FILE, "task record")
        model, task, feats = _finetune_model(run, info), info["task"], info["features"]
        settings, max_regions = feats.get("settings"), feats.get("max_regions", MAX_REGIONS)
        blank, answers = feats.get("blank_images"), info.get("answers")
    elif kind.startswith("pretrain"):
        (model, settings), task = _pretraining_model(run), "pretraining"
        max_regions, blank, answers = MAX_REGIONS, kind.startswith("pretrain_text_only"), None
    else:
        raise UserError(f"{run}: a {kind!r} run; load_run serves fine-tune and pretraining runs")
    if extractor is None:
        extractor = region_extractor(settings, dev, str(run))
    p = Predictor(run, task, model.to(dev).eval(), extractor, answers, max_regions, bool(blank), dev)
    width = getattr(extractor, "feature_dim", None)
    if width is not None:
        p.check_width(int(width))
    return p


# ---------------------------------------------------------------------------------------------- predictor
class Predictor:
    """A trained run that answers: its model (eval mode, on `device`), task, and region extractor."""

    def __init__(self, path: Path, task: str, model, extractor, answers: list[str] | None, max_regions: int,
                 blank_images: bool, device: torch.device):  # fmt: skip
        self.path, self.task, self.model, self.extractor = path, task, model, extractor
        self.answers, self.max_regions, self.device = answers, max_regions, device
        self.blank_images = blank_images  # trained on text alone (every image one zero region)
        lengths = {"vqa": vqa.MAX_LENGTH, "refer": refer.MAX_LENGTH, "pretraining": MAX_SEQ_LENGTH}
        self.max_length = lengths.get(task, retrieval.MAX_LENGTH)  # text tokens, as in training

    def __repr__(self) -> str:
        return f"Predictor({self.task} run {self.path}, {self.v_feature_size}-d regions, {self.device})"

    @property
    def v_feature_size(self) -> int:
        bert = getattr(self.model, "bert", self.model)
        return int(bert.config.v_feature_size)

    def check_width(self, width: int) -> None:
        """A UserError naming both widths when the extractor's features do not fit the model."""
        if width != self.v_feature_size:
            raise UserError(f"{self.path}: the region extractor gives {width}-d features but the model reads "
                            f"{self.v_feature_size}-d ones (v_feature_size); use the extractor the run was "
                            "trained with")  # fmt: skip

    def _need(self, method: str) -> None:
        if self.task not in NEEDS[method]:
            raise UserError(
                f"{self.path} is a {self.task} run; {method}() needs a {_listed(NEEDS[method])} run"
            )

    # ---------------------------------------------------------------------------------------- inputs
    def visual(self, image: Any, boxes=None) -> dict[str, torch.Tensor]:
        """One image -> its model inputs (`regions.visual_inputs`: global region 0, then the regions). boxes:
        (N, 4) pixels, or None for proposals (a new image's ground-truth boxes are unknown)."""
        if isinstance(image, dict):
            return image  # already extracted
        name = Path(image).name if isinstance(image, (str, Path)) else "image"
        rf = next(iter(self.extractor.extract_many([(name, image, boxes)], progress=False)))
        self.check_width(int(rf.features.shape[1]))
        v = visual_inputs(rf, self.max_regions)
        if self.blank_images:  # trained on text alone: the image is one zero global region, as in training
            v = {"visual_feats": torch.zeros_like(v["visual_feats"][:1]), "visual_pos": v["visual_pos"][:1],
                 "cls_prob": v["cls_prob"][:1] * 0, "boxes": v["boxes"][:1],
                 "num_regions": torch.tensor(1)}  # fmt: skip
        return v

    def _text(self, text: str, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{what} must be a non-empty string, got {text!r}")
        return tokenize([text], max_length=self.max_length)[0]

    @torch.no_grad()
    def logits(self, image: Any, text: str, boxes=None) -> torch.Tensor:
        """The task head on one image and one text -> answer logits (n_answers,) for vqa, one logit per
        region (R,) for refer (region 0 is the global one)."""
        batch = collate_pairs([{"pairs": [pair(self._text(text, "text"), self.visual(image, boxes))]}])
        return self.model(to_device(batch, self.device))[0].float().cpu()

    # ---------------------------------------------------------------------------------------- asking
    def answer(self, image: Any, question: str, top_k: int = 5, boxes=None) -> list[tuple[str, float]]:
        """The top_k answers to a question about the image, most likely first -> [(answer, P)] (vqa runs)."""
        self._need("answer")
        if not isinstance(top_k, int) or top_k < 1:
            raise UserError(f"top_k must be an integer >= 1, got {top_k!r}")
        self._text(question, "question")
        probs = self.logits(image, question, boxes).sigmoid()  # (n_answers,)
        p, i = probs.topk(min(top_k, len(probs)))
        return [(self.answers[j], float(s)) for s, j in zip(p.tolist(), i.tolist())]

    def point(self, image: Any, expression: str, boxes=None) -> tuple[tuple[float, ...], float]:
        """The region a referring expression names -> (box (x1, y1, x2, y2) in pixels, sigmoid of its logit)
        (refer runs); the global region 0 never counts."""
        self._need("point")
        self._text(expression, "expression")
        v = self.visual(image, boxes)
        logits = self.logits(v, expression)  # (R,)
        if len(logits) < 2:
            raise UserError("point(): the image has no regions besides the global one")
        i = int(logits[1:].argmax()) + 1
        return tuple(float(x) for x in v["boxes"][i]), float(logits[i].sigmoid())

    @torch.no_grad()
    def rank(self, images: Any, texts: str | list[str], boxes=None) -> list[tuple[Any, float]]:
        """Rank captions for one image -> [(caption, score)], or several images (a list) for one caption ->
        [(image index, score)], best first (retrieval, zeroshot and pretraining runs; the scores: see the
        module docstring). boxes: the one image's boxes (N, 4) in pixels, None for proposals."""
        self._need("rank")
        many = isinstance(images, (list, tuple))
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts or (many and not images):
            raise UserError("rank() needs at least one caption and one image")
        if many and len(texts) != 1:
            raise UserError(f"rank() ranks several images for one caption, got {len(texts)} captions")
        tokens = [self._text(t, "caption") for t in texts]
        visuals = [self.visual(im) for im in images] if many else [self.visual(images, boxes)]
        if self.task == "pretraining":
            v = collate_visual(visuals) if many else visuals[0]
            scores = alignment_score(self.model, get_tokenizer(), v, texts * len(visuals), self.max_length)
        else:
            text_batch = pad_text([t[0] for t in tokens], [t[1] for t in tokens])
            s = score_matrix(self.model, text_batch, collate_visual(visuals)).cpu()  # (N texts, M images)
            s = s[0] if many else s[:, 0]
            scores = s.softmax(0) if self.task == "retrieval" else s.sigmoid()  # zeroshot: log-odds -> P
        keys = list(range(len(visuals))) if many else texts
        return sorted(zip(keys, scores.tolist()), key=lambda kv: -kv[1])


# ---------------------------------------------------------------------------------------------------- CLI
def _print_rows(rows: list[tuple[Any, float]]) -> None:
    width = max(len(str(k)) for k, _ in rows)
    for k, s in rows:
        print(f"{str(k):<{width}}  {s:.3f}")


def cli(argv: list[str]) -> int:
    """`vilbert-lite ask RUN --image PATH (--question TEXT | --captions TEXT... | --expression TEXT)`"""
    ap = argparse.ArgumentParser(prog="vilbert-lite ask", description=__doc__.splitlines()[0])
    ap.add_argument(
        "run", help="a finished fine-tune run (vqa, refer, retrieval, zeroshot) or pretraining run"
    )
    ap.add_argument("--image", nargs="+", required=True,
                    help="image file; several only with one --captions text (ranks the images)")  # fmt: skip
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--question", help="vqa runs: a question about the image")
    what.add_argument("--captions", nargs="+", help="retrieval, zeroshot, pretraining runs: captions to rank")
    what.add_argument("--expression", help="refer runs: a phrase naming one region of the image")
    ap.add_argument("--top-k", type=int, default=5, help="vqa: how many answers (default 5)")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    a = ap.parse_args(argv)
    method = "answer" if a.question is not None else "rank" if a.captions is not None else "point"
    if len(a.image) > 1 and method != "rank":
        raise UserError(f"{CLI_OPTION[method]} takes one --image, got {len(a.image)}")
    p = load_run(a.run, a.device)
    if p.task not in NEEDS[method]:
        right = next(m for m, tasks in NEEDS.items() if p.task in tasks)
        raise UserError(f"{a.run} is a {p.task} run: ask it with {CLI_OPTION[right]} ({CLI_OPTION[method]} "
                        f"is for {_listed(NEEDS[method], 'and')} runs)")  # fmt: skip
    if method == "answer":
        _print_rows(p.answer(a.image[0], a.question, a.top_k))
    elif method == "point":
        box, score = p.point(a.image[0], a.expression)
        print("box    " + " ".join(f"{x:.1f}" for x in box) + "  (x1 y1 x2 y2, pixels)")
        print(f"score  {score:.3f}")
    elif len(a.image) > 1:
        _print_rows([(a.image[i], s) for i, s in p.rank(a.image, a.captions[0])])
    else:
        _print_rows(p.rank(a.image[0], a.captions))
    return 0


__all__ = ["Predictor", "load_run", "region_extractor", "cli"]
