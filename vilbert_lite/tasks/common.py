"""What every downstream task shares: the backbone (`--init`), the task model, region features, batching, and
the fine-tuning driver that runs a task through the engine and writes `metrics.json`.

    bert = load_backbone(init, config)             # ViLBERT† (init None) or the backbone of a pretraining run
    model = TaskModel(bert, vqa.forward, **new_heads(config, vil_prediction=SimpleClassifier(bi, 2 * bi, n)))
    logits = model(collate_pairs(items))           # the task's forward: backbone, then heads

A task module (vqa.py, vcr.py, ...) defines a `TaskSpec`: how to build its data (`load`), its heads, its
`forward(model, batch) -> logits`, `loss_fn(model, batch) -> (loss, logs)` and `evaluate(model, data, split,
batch_size) -> {metric: value}`. `run_task` does the rest, the same way for every task.

Backbone hook: `backbone` is "vilbert" (ViLBertModel), "single_stream" (the VisualBERT-style baseline at the
matched depth), None (the kind named in the --init run's config.json, else "vilbert"), or any callable
`factory(config: ViLBertConfig) -> nn.Module` whose forward takes (input_ids, visual_feats, visual_pos,
attention_mask, visual_attention_mask, token_type_ids) and returns sequence_output_t / sequence_output_v /
pooled_output. Models that also have text_prefix / vision_prefix / forward_from_prefix get cached retrieval.
"vilt" / "vilt_grid" (VILT_KINDS) are ViLT's single stream over the image's patches / CNN grid cells
(`vilt.model.ViLTModel`, config a `ViLTConfig`): their items carry "image" or "grid_features" instead of regions
(`vilt.inputs.world_visual`, as in ViLT pretraining), and they fine-tune the tasks that read the pooled
output only (VILT_TASKS).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from vilbert_lite import runs
from vilbert_lite.data.collate import collate_examples
from vilbert_lite.data.regions import RegionExtractor, visual_inputs
from vilbert_lite.data.store import FeatureStore, cache_dir, extract_features
from vilbert_lite.data.tokenize import bert_model_path, encode, encode_pairs
from vilbert_lite.device import resolve_device
from vilbert_lite.errors import UserError
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.single_stream import SingleStreamModel, matched_config
from vilbert_lite.model.vilbert import ViLBertModel, ViLBertOutput, init_weights
from vilbert_lite.pretrain.text_init import apply_text_init
from vilbert_lite.train.engine import evaluate, train
from vilbert_lite.train.state import seed_everything
from vilbert_lite.vilt.inputs import visual_kwargs
from vilbert_lite.vilt.model import ViLTConfig, ViLTModel

MAX_REGIONS = 36  # + the global region: as in pretraining (ViLBERT, arXiv 1908.02265, §3.2)
METRICS_FILE = "metrics.json"
TASK_FILE = "task.json"  # what inference needs and the hashed run config does not hold (predict.load_run)
PROBE_ITEMS = 32  # training items whose loss is measured before and after fine-tuning
VAL_ITEMS = 256  # the per-epoch validation score reads the first ones (the final numbers read all of test)
# Fields that decide parameter shapes: an --init run must agree with the requested model on all of them.
SHAPE_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "max_position_embeddings", "type_vocab_size", "v_feature_size", "v_target_size", "v_hidden_size",
    "v_num_hidden_layers", "v_num_attention_heads", "v_intermediate_size", "bi_hidden_size",
    "bi_num_attention_heads", "v_biattention_id", "t_biattention_id", "task_specific_tokens",
    "visual_embed", "image_size", "patch_size", "grid_feature_size",  # ViLT's (absent from ViLBERT's)
)  # fmt: skip
Backbone = Callable[[ViLBertConfig], nn.Module]
VILT_KINDS = ("vilt", "vilt_grid")  # ViLT over patches, over CNN grid cells
VILT_TASKS = ("vqa", "retrieval", "zeroshot", "nlvr")  # heads on the pooled output only (no region outputs)


# ------------------------------------------------------------------------------------------ backbone
def backbone_factory(backbone: str | Backbone | None = "vilbert") -> Backbone:
    """The backbone hook: "vilbert" | "single_stream" | a callable config -> model (see module docstring)."""
    if callable(backbone):
        return backbone
    if backbone in (None, "vilbert"):
        return ViLBertModel
    if backbone == "single_stream":
        return lambda c: SingleStreamModel(matched_config(c))
    if backbone in VILT_KINDS:  # the config (a ViLTConfig) says patches or grid cells
        return ViLTModel
    raise UserError(
        f"unknown backbone {backbone!r}; use 'vilbert', 'single_stream', 'vilt', 'vilt_grid' or a callable"
    )


def backbone_name(backbone: str | Backbone | None) -> str:
    """A stable name for run configs: the kind, or the callable's qualified name."""
    if backbone is None or isinstance(backbone, str):
        return backbone or "vilbert"
    return f"{getattr(backbone, '__module__', '?')}.{getattr(backbone, '__qualname__', repr(backbone))}"


def model_folder(init: str | Path) -> Path:
    """A pretraining run folder (holding `model/`) or a `save_pretrained` folder -> the folder with the weights."""
    d = Path(init)
    for cand in (d / "model", d):
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    raise FileNotFoundError(
        f"--init {d}: not a pretraining run folder (no model/config.json + model/model.safetensors) "
        "and not a save_pretrained folder; pass a run folder from `vilbert-lite pretrain`, or `none`"
    )


def init_kind(init: str | Path | None) -> str | None:
    """The model kind ('vilbert' / 'single_stream' / 'vilt' / 'vilt_grid') a run folder holds, from its
    config.json (model_type, architectures, visual_embed)."""
    if init is None or str(init).lower() == "none":
        return None
    meta = json.loads((model_folder(init) / "config.json").read_text())
    if meta.get("model_type") == "vilt":
        return "vilt" if meta.get("visual_embed", "patch") == "patch" else "vilt_grid"
    arch = (meta.get("architectures") or [""])[0]
    return "single_stream" if arch.startswith("SingleStream") else "vilbert"


def check_kind(init: str | Path | None, backbone: str | Backbone | None) -> None:
    """A ViLT run fine-tuned as a ViLBERT (or the reverse) fails here, naming both kinds."""
    stored = init_kind(init)
    if (
        stored is None
        or backbone is None
        or callable(backbone)
        or (stored in VILT_KINDS) == (backbone in VILT_KINDS)
    ):
        return
    raise UserError(f"--init {init}: the run holds a {stored} model, which cannot be fine-tuned as backbone "
                    f"{backbone!r}; pass backbone={stored!r} (or None: the run's own kind)")  # fmt: skip


def shape_diff(stored: dict, wanted: dict) -> dict[str, tuple]:
    """{field: (stored, wanted)} for the SHAPE_FIELDS on which two config dicts disagree."""
    return {k: (stored.get(k), wanted.get(k)) for k in SHAPE_FIELDS if stored.get(k) != wanted.get(k)}


def check_init_shape(init: str | Path, config: ViLBertConfig, backbone: str | Backbone | None = None,
                     ignore: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """The --init run's config dict; ValueError naming every size that differs from what the backbone factory
    builds from `config` (fields in `ignore` are not compared)."""
    d = model_folder(init)
    stored = json.loads((d / "config.json").read_text())
    with torch.device("meta"):  # what the factory would build, without allocating it
        wanted = backbone_factory(backbone if backbone is not None else init_kind(init))(
            config
        ).config.to_dict()
    diff = {k: v for k, v in shape_diff(stored, wanted).items() if k not in ignore}
    if diff:
        lines = "; ".join(f"{k}: run {a} vs requested {b}" for k, (a, b) in diff.items())
        raise UserError(f"--init {d}: the run's model has a different shape than the requested one: {lines}")
    return stored


def load_backbone(init: str | Path | None, config: ViLBertConfig, backbone: str | Backbone | None = None,
                  text_from_bert: bool = False) -> nn.Module:  # fmt: skip
    """The backbone a task starts from.

    init None / "none": ViLBERT† -- `factory(config)` with no multimodal pretraining: the text stream from the
    bundled BERT when `text_from_bert` (the gpu profile), a UserError when it does not fit (never a silent
    random text stream; `finetune(text_init=...)` chooses other weights); all else random.
    init RUN_DIR: the backbone saved in RUN_DIR/model (the `bert.` part of a pretraining model). Its shape
    must be the one `factory(config)` builds; otherwise ValueError naming every differing size.
    """
    factory = backbone_factory(backbone if backbone is not None else init_kind(init))
    if init is None or str(init).lower() == "none":
        model = factory(config)
        if text_from_bert and hasattr(model, "init_text_from_bert"):
            try:
                model.init_text_from_bert(bert_model_path())
            except ValueError as e:
                raise UserError(f"this profile starts the text stream from BERT, but the bundled BERT does not "
                                f"fit: {e}; choose a BERT of the model's width (text_init / --text-init) or "
                                "'random'") from e  # fmt: skip
        return model

    d = model_folder(init)
    stored = check_init_shape(init, config, backbone)
    if stored.get("model_type") == "vilt":
        model, prefix = factory(ViLTConfig.from_dict(stored, source=str(d / "config.json"))), "vilt."
    else:
        model, prefix = factory(ViLBertConfig.from_dict(stored, source=str(d / "config.json"))), "bert."
    state = load_file(d / "model.safetensors")
    if any(k.startswith(prefix) for k in state):  # the backbone part of a pretraining model
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(
            f"--init {d}: backbone weights do not match: missing {missing}, unexpected {unexpected}"
        )
    return model


def alignment_head(init: str | Path) -> str:
    """The name of the pretrained image-text alignment head in a run's saved model: ViLBERT's
    `cls.bi_seq_relationship`, ViLT's `itm_score` (both Linear(pooled, 2), column 0 = aligned)."""
    return "itm_score" if init_kind(init) in VILT_KINDS else "cls.bi_seq_relationship"


def load_head_weights(init: str | Path, name: str) -> dict[str, torch.Tensor]:
    """The tensors of one head of a saved model, e.g. name="cls.bi_seq_relationship" -> {weight, bias}."""
    state = load_file(model_folder(init) / "model.safetensors")
    out = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
    if not out:
        raise UserError(f"--init {init}: the saved model has no {name} weights")
    return out


# --------------------------------------------------------------------------------------------- model
class SimpleClassifier(nn.Module):
    """The official 2-layer task MLP: logit_fc = Linear(d_in, d_hid), GeLU, LayerNorm, Linear(d_hid, d_out)."""

    def __init__(self, d_in: int, d_hid: int, d_out: int):
        super().__init__()
        self.logit_fc = nn.Sequential(
            nn.Linear(d_in, d_hid), nn.GELU(), nn.LayerNorm(d_hid, eps=1e-12), nn.Linear(d_hid, d_out)
        )

    def forward(self, x):
        return self.logit_fc(x)


def new_heads(config: ViLBertConfig, **heads: nn.Module) -> dict[str, nn.Module]:
    """Freshly initialised task heads (the official N(0, initializer_range) init), by name."""
    for head in heads.values():
        head.apply(lambda m: init_weights(m, config.initializer_range))
    return heads


class TaskModel(nn.Module):
    """A backbone (`bert`) plus named task heads (official names: vil_prediction, vil_logit, vision_logit, ...).

    `forward(batch)` is the task's `head_forward(model, batch)` (backbone and heads, -> logits), so that the
    whole computation runs inside forward (data parallel sees every parameter)."""

    def __init__(self, bert: nn.Module, head_forward: Callable, **heads: nn.Module):
        super().__init__()
        self.bert = bert
        self.head_forward = head_forward
        for name, head in heads.items():
            self.add_module(name, head)

    def encode(self, batch: dict) -> ViLBertOutput:
        """The backbone on a collated batch (see `collate_pairs`): regions, or a ViLT's pixels / grid cells."""
        if "visual_feats" not in batch:
            return self.bert(batch["input_ids"], attention_mask=batch["attention_mask"],
                             token_type_ids=batch["token_type_ids"], **visual_kwargs(batch))  # fmt: skip
        return self.bert(batch["input_ids"], batch["visual_feats"], batch["visual_pos"], batch["attention_mask"],
                         batch["visual_attention_mask"], batch["token_type_ids"])  # fmt: skip

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head_forward(self, batch)


# ---------------------------------------------------------------------------------------------- data
def tokenize(texts_a: list[str], texts_b: list[str] | None = None, max_length: int = 32) -> list[tuple]:
    """Texts (or pairs) -> per text (input_ids (T_i,), token_type_ids (T_i,)), unpadded; [CLS] a [SEP] (b [SEP])."""
    if not texts_a:
        return []
    enc = encode(texts_a, max_length) if texts_b is None else encode_pairs(texts_a, texts_b, max_length)
    lengths = enc["attention_mask"].sum(1).tolist()
    return [(enc["input_ids"][i, :n], enc["token_type_ids"][i, :n]) for i, n in enumerate(lengths)]


class ImageBank:
    """Model-ready visual inputs per image id (`regions.visual_inputs`, global region first), read once."""

    def __init__(self, store, max_regions: int = MAX_REGIONS):
        self.store, self.max_regions, self._cache = store, max_regions, {}

    def __getitem__(self, image_id: str) -> dict[str, torch.Tensor]:
        if image_id not in self._cache:
            v = visual_inputs(self.store[image_id], self.max_regions)
            v["cls_prob"] = v["cls_prob"][:, :0]  # (R, 0): the tasks never read the class distribution
            self._cache[image_id] = v
        return self._cache[image_id]

    def widths(self) -> tuple[int, int]:
        """(region feature width, class-distribution width) of the stored features."""
        rf = self.store[next(iter(self.store.ids()))]
        return int(rf.features.shape[1]), int(rf.cls_prob.shape[1])


class BlankImageBank:
    """Every image as one zero global region (the IMG token only): a task model that sees the text alone, e.g. VQA's
    question-only (language-prior) baseline. Widths are those of the wrapped bank."""

    def __init__(self, bank):
        self.bank = bank
        self._blank = None

    def __getitem__(self, image_id: str) -> dict[str, torch.Tensor]:
        if self._blank is None:
            d = self.bank.widths()[0]
            self._blank = {"visual_feats": torch.zeros(1, d), "visual_pos": torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0]]),
                           "cls_prob": torch.zeros(1, 0), "boxes": torch.zeros(1, 4), "num_regions": torch.tensor(1)}  # fmt: skip
        return self._blank

    def widths(self) -> tuple[int, int]:
        return self.bank.widths()

    def for_split(self, split: str) -> BlankImageBank:
        return self  # every image is blank, in every split


def split_images(images, split: str):
    """The image lookup of one split: a real data set's per-split bank (ids repeat across splits), else the one
    shared lookup (the synthetic world's scene ids are unique across splits)."""
    return images.for_split(split) if hasattr(images, "for_split") else images


def pair(text: tuple, visual: dict) -> dict:
    """One (text, image) row: input_ids, token_type_ids and the image's visual inputs."""
    return {"input_ids": text[0], "token_type_ids": text[1], **visual}


def collate_pairs(items: list[dict]) -> dict:
    """Items holding `pairs` (K rows each, K fixed per task) -> one flat batch of B*K rows (text padded, regions
    padded, masks) plus every other key of the items batched (labels stacked)."""
    batch = collate_examples([row for it in items for row in it["pairs"]])
    rest = [{k: v for k, v in it.items() if k != "pairs"} for it in items]
    if rest[0]:
        batch.update(collate_examples(rest))
    return batch


def extract(items: list[tuple[str, Callable]], root: Path, extractor=None, progress: bool = True,
            on_error: str = "stop"):  # fmt: skip
    """Region features of (image_id, loader() -> (image or image path, boxes or None)) items into the feature
    store under `root` (only missing images are loaded and extracted) -> (store, seconds spent). on_error "skip"
    leaves out images that cannot be read and lists them in `store.skipped` (see `store.extract_features`)."""
    t0 = time.perf_counter()
    if extractor is None:
        extractor = RegionExtractor(max_regions=MAX_REGIONS)
    todo = [(i, f) for i, f in items if i not in FeatureStore(root, extractor.settings)]

    def load():
        for image_id, loader in todo:
            image, boxes = loader()
            yield image_id, image, boxes

    store = extract_features(load(), root, extractor, total=len(todo), progress=progress and bool(todo),
                             on_error=on_error)  # fmt: skip
    return store, time.perf_counter() - t0


def extract_files(files: dict[str, Path], root: Path, extractor=None, progress: bool = True,
                  on_error: str = "stop"):  # fmt: skip
    """Region features of image files (image_id -> path, proposal boxes) into the feature store under `root` ->
    (store, seconds). New images are extracted, and so are stored ones whose file changed since; stored images
    whose file is gone are dropped (`store.refresh`), so an id always means the file that is there now."""
    t0 = time.perf_counter()
    if extractor is None:
        extractor = RegionExtractor(max_regions=MAX_REGIONS)
    items = [(i, p, None) for i, p in files.items()]
    store = extract_features(items, root, extractor, progress=progress, on_error=on_error)
    return store, time.perf_counter() - t0


def world_features(world, kind: str, splits=("train", "val", "test"), extractor=None, progress: bool = True):
    """Region features of the world's images in `splits`, cached: kind "gt" (ground-truth boxes, shared with
    pretraining's store) or "proposals" (`propose_boxes`, for referring expressions) -> (store, seconds)."""
    if kind not in ("gt", "proposals"):
        raise ValueError(f"kind must be 'gt' or 'proposals', got {kind!r}")
    key = world.key  # sizes, seed and the world's version: a re-rendered world is another cache
    root = cache_dir() / "features" / (f"world-{key}" if kind == "gt" else f"world-{key}-proposals")
    ids = [s.scene_id for split in splits for s in world.scenes[split]]
    items = [(i, lambda i=i: (world.image(i), world.gt_boxes(i) if kind == "gt" else None)) for i in ids]
    return extract(items, root, extractor, progress)


# ---------------------------------------------------------------------------------------------- tasks
@dataclass
class TaskData:
    """A task's datasets (lists of items for `collate`), plus what its heads and metrics need (`info`)."""

    train: Any
    val: Any
    test: Any
    collate: Callable = collate_pairs
    info: dict = field(default_factory=dict)  # numbers for metrics.json: chance levels, counts, ...
    extra: dict = field(default_factory=dict)  # what the metrics need at run time (vocabulary, pools, ...)
    eval_split: str = "test"  # where the final numbers come from ("val" for real data without a test split)


@dataclass(frozen=True)
class TaskSpec:
    """One downstream task. `loss_fn` None means no fine-tuning (zero-shot)."""

    name: str
    metrics: tuple[str, ...]  # reported by name; the first is the headline
    load: Callable[..., TaskData]  # (source: Source) -> TaskData
    heads: Callable[..., dict[str, nn.Module]]  # (config, data, init) -> {name: module}
    forward: Callable[..., torch.Tensor]  # (task model, batch) -> logits: the backbone, then the heads
    evaluate: Callable[..., dict[str, float]]  # (model, data, split, batch_size) -> {metric: value}
    loss_fn: Callable | None = None  # (model, batch) -> (loss, {name: float})
    features: str = "gt"  # region features: "gt" boxes or "proposals"
    batch_scale: float = 1.0  # items per batch = profile batch_size x this (official: 64 vs VQA's 256)
    description: str = ""


@dataclass
class Source:
    """Where a task's data comes from: the synthetic world (with a feature store) or real files."""

    kind: str  # "synthetic" | "vqa_v2"
    images: Any  # image_id -> visual inputs (an ImageBank)
    world: Any = None  # synthetic: the World
    records: dict = field(default_factory=dict)  # real data: {"train": [...], "val": [...]} records
    # the task's data options (Profile.task_data), e.g. {"per_scene": 4}
    options: dict = field(default_factory=dict)


def per_scene_option(source: Source, task: str) -> int:
    """The task data option `per_scene` (items per scene, Profile.task_data), 1 when not set."""
    per_scene = source.options.get("per_scene", 1)
    if not isinstance(per_scene, int) or isinstance(per_scene, bool) or per_scene < 1:
        raise UserError(f"{task}: task data option per_scene must be an integer >= 1, got {per_scene!r}")
    return per_scene


def evaluate_batches(model: TaskModel, items, collate, step: Callable, batch_size: int) -> list:
    """`step(model, batch)` over the items in order, eval mode, no grad, on the model's device."""
    device = next(model.parameters()).device
    return evaluate(model, items, collate, step, batch_size, device, progress=False)


def probe_loss(model: TaskModel, loss_fn: Callable, items: list, collate: Callable, batch_size: int) -> float:
    """Mean training loss over fixed items in eval mode (no dropout): the same number before and after
    fine-tuning shows whether training lowered it."""
    losses = evaluate_batches(model, items, collate, lambda m, b: (loss_fn(m, b)[0].item(), len(b["input_ids"])),
                              batch_size)  # fmt: skip
    return sum(v * n for v, n in losses) / max(sum(n for _, n in losses), 1)


def feature_record(images, boxes: str) -> dict:
    """Where an image bank's region features come from: the feature store, its extractor settings (None
    when read from an LMDB), the boxes ("gt", "proposals" or "given"); kind "pixels" for ViLT's images."""
    blank = isinstance(images, BlankImageBank)
    bank = images.bank if blank else images
    bank = getattr(bank, "banks", {}).get("train", bank)  # VQA v2: the training split's bank
    store = getattr(bank, "store", None)
    if store is None:
        return {"kind": "pixels"}
    return {"kind": "regions", "store": str(getattr(store, "path", "")),
            "settings": getattr(store, "settings", None), "boxes": boxes,
            "max_regions": bank.max_regions, "blank_images": blank}  # fmt: skip


def write_task_file(out: Path, spec: TaskSpec, source: Source, data: TaskData, config, init, backbone,
                    run_cfg: dict) -> None:  # fmt: skip
    """Write out/task.json for `predict.load_run`: the task, the backbone's kind and the config it is built
    from (the --init run's, if any), the answer vocabulary (VQA) and where the region features came from."""
    has_init = init is not None and str(init).lower() != "none"
    kind = backbone if backbone is not None else (init_kind(init) if has_init else "vilbert")
    model = json.loads((model_folder(init) / "config.json").read_text()) if has_init else config.to_dict()
    d = run_cfg["data"]
    boxes = spec.features if d["kind"] == "synthetic" else "proposals" if "train_images" in d else "given"
    info = {"task": spec.name, "backbone": backbone_name(kind), "model": model, "init": run_cfg["init"],
            "features": feature_record(source.images, boxes), "version": 1}  # fmt: skip
    if "vocab" in data.extra:
        info["answers"] = list(data.extra["vocab"])
    runs.write_json(out / TASK_FILE, info)


def read_metrics(out: str | Path) -> dict:
    """The metrics.json of a finished fine-tuning run folder."""
    return json.loads((Path(out) / METRICS_FILE).read_text())


# chance level of each metric, from the keys a task writes into metrics.json
CHANCE_KEY = {"vqa_accuracy": "chance", "q2a": "chance", "qa2r": "chance", "q2ar": "chance_q2ar",
              "refer_accuracy": "chance", "r@1": "chance_r@1", "four_way_accuracy": "chance",
              "nlvr_accuracy": "chance"}  # fmt: skip


def chance_of(metric: str, metrics: dict) -> float | None:
    """The chance level of one metric of a task's metrics dict (R@5 / R@10: k / pool), None if unknown."""
    if metric in ("r@5", "r@10") and metrics.get("pool"):
        return min(int(metric[2:]) / metrics["pool"], 1.0)
    key = CHANCE_KEY.get(metric)
    return metrics.get(key) if key else None


def run_task(spec: TaskSpec, source: Source, config: ViLBertConfig, init: str | Path | None, train_cfg,
             run_cfg: dict, out: Path, backbone: str | Backbone | None = None, text_from_bert: bool = False,
             progress: bool = True, resume: bool = True, text_init=None) -> dict:  # fmt: skip
    """Fine-tune `spec` in the run folder `out` (or reuse it when it already finished with this config) and
    write out/metrics.json: task, split, seed, init, each metric, config hash, wall time, per-epoch history,
    and out/task.json (what `predict.load_run` needs; added to a reused run that lacks it). text_init: a
    ViLBERT†'s `text_init.TextInit` (instead of `text_from_bert`), recorded in out/text_init.json."""
    h = runs.config_hash(run_cfg)
    runs.prepare_run(out, run_cfg)
    if resume and (out / METRICS_FILE).exists():
        m = read_metrics(out)
        if m.get("config_hash") == h:
            if not (out / TASK_FILE).exists():  # finished before runs recorded it
                write_task_file(out, spec, source, spec.load(source), config, init, backbone, run_cfg)
            return m
    t0 = time.perf_counter()
    data = spec.load(source)
    write_task_file(out, spec, source, data, config, init, backbone, run_cfg)
    seed_everything(train_cfg.seed)  # the heads' initialisation depends on the seed only
    bert = load_backbone(init, config, backbone, text_from_bert and text_init is None)
    if init is None and text_init is not None:  # ViLBERT†: the text stream from the chosen BERT (or random)
        runs.write_json(out / "text_init.json", apply_text_init(bert, text_init))
    model = TaskModel(bert, spec.forward, **spec.heads(getattr(bert, "config", config), data, init))
    bs = train_cfg.batch_size
    history, train_wall, probe = [], 0.0, {}
    if spec.loss_fn is not None:
        with torch.random.fork_rng():  # fixed probe items (retrieval draws negatives), global RNG untouched
            torch.manual_seed(0)
            items = [data.train[i] for i in range(min(PROBE_ITEMS, len(data.train)))]
        val = replace(data, val=[data.val[i] for i in range(min(VAL_ITEMS, len(data.val)))])
        model.to(resolve_device(train_cfg.device))
        probe["train_loss_start"] = probe_loss(model, spec.loss_fn, items, data.collate, bs)
        prep = time.perf_counter() - t0  # data, model and probe; the training time is the engine's
        result = train(model, data.train, data.collate, spec.loss_fn, train_cfg, out, resume=resume,
                       eval_fn=lambda m: spec.evaluate(m, val, "val", bs), progress=progress,
                       desc=f"finetune {spec.name}")  # fmt: skip
        history, train_wall = result["history"], prep + result["wall_time_s"]  # (survives a resume)
        t0 = time.perf_counter()
        probe["train_loss_end"] = probe_loss(model, spec.loss_fn, items, data.collate, bs)
    else:
        model.to(resolve_device(train_cfg.device))
    scores = spec.evaluate(model, data, data.eval_split, bs)
    metrics = {
        "task": spec.name, "split": data.eval_split, "seed": run_cfg["seed"], "init": run_cfg["init"],
        "profile": run_cfg["profile"], "backbone": run_cfg["backbone"], "data": run_cfg["data"]["kind"],
        **scores, **{k: v for k, v in data.info.items() if isinstance(v, (int, float, str))}, **probe,
        "config_hash": h, "wall_time_s": round(train_wall + time.perf_counter() - t0, 2),
        "parameters": sum(p.numel() for p in model.parameters()), "history": history,
    }  # fmt: skip
    runs.write_json(out / METRICS_FILE, metrics)
    return metrics
