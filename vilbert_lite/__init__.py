"""vilbert_lite: a small, faithful ViLBERT for teaching, analysis and reproduction."""

from .config import ViLBertConfig
from .heads import PreTrainingOutput, ViLBertForPreTraining
from .model import Attentions, HiddenStates, ViLBertModel, ViLBertOutput, layer_schedule
from .predict import Predictor, load_run
from .single_stream import SingleStreamForPreTraining, SingleStreamModel, build_model, load_any

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
