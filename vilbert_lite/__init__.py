"""vilbert_lite: a small, faithful ViLBERT for teaching, analysis and reproduction."""

import importlib

from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.heads import PreTrainingOutput, ViLBertForPreTraining
from vilbert_lite.model.single_stream import (
    SingleStreamForPreTraining,
    SingleStreamModel,
    build_model,
    load_any,
)
from vilbert_lite.model.vilbert import Attentions, HiddenStates, ViLBertModel, ViLBertOutput, layer_schedule

__all__ = [
    "ViLBertConfig",
    "ViLBertModel",
    "ViLBertForPreTraining",
    "ViLBertOutput",
    "PreTrainingOutput",
    "Attentions",
    "HiddenStates",
    "layer_schedule",
    "SingleStreamModel",
    "SingleStreamForPreTraining",
    "build_model",
    "load_any",
    "load_run",
    "Predictor",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    """`load_run` and `Predictor` load on first use: they use every wing (tasks, pretraining, extraction), which
    `import vilbert_lite.model` must not load."""
    if name in ("load_run", "Predictor"):
        return getattr(importlib.import_module("vilbert_lite.predict"), name)
    raise AttributeError(f"module 'vilbert_lite' has no attribute {name!r}")
