"""vilbert_lite: a small, faithful ViLBERT for teaching, analysis and reproduction."""

from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.heads import PreTrainingOutput, ViLBertForPreTraining
from vilbert_lite.model.single_stream import (
    SingleStreamForPreTraining,
    SingleStreamModel,
    build_model,
    load_any,
)
from vilbert_lite.model.vilbert import Attentions, HiddenStates, ViLBertModel, ViLBertOutput, layer_schedule
from vilbert_lite.predict import Predictor, load_run

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
