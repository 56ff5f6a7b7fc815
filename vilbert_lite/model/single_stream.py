"""The single-stream baseline (VisualBERT-style): one BERT over the concatenation [text ; regions].

Words get BERT's embeddings (word + position + token type); each region becomes LN(Linear(feature) +
Linear(5-d box) + a learned visual-segment vector) at the text width. N standard TransformerLayers then run
over the joint sequence under the joint padding mask, so every layer mixes the two modalities, and the result
is split back into words (B, T, H) and regions (B, R, H). The official `bert_base_baseline.json`
is plain BERT-base.

Design choices:
- The visual segment is its own embedding, not token type 1 of the text table, so two-segment text (VCR's
  QA→R) stays distinct from regions.
- `pooled_output` is the [CLS] pooler alone (after dropout), as in the official baseline (`basebert.py`):
  the single stream has already fused the modalities inside its layers. `pooled_output_v` (region 0) is
  there for heads that want it. Both poolers map hidden -> bi_hidden (ReLU), so every ViLBERT head fits.
- `joint_config` normalises the config: v_hidden_size = hidden_size (region heads sized from
  config.v_hidden_size fit), no visual or co-attention layers, no frozen layers (a frozen joint layer would
  cut the gradient to the region embeddings).
- `matched_config` picks the joint depth so the pretraining model has as many parameters as ViLBERT's;
  intermediate_size is kept, so BERT weights still load into the first layers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.heads import PreTrainingHeads, ViLBertForPreTraining
from vilbert_lite.model.vilbert import (
    Pooler,
    PreTrainedMixin,
    TextEmbeddings,
    ViLBertModel,
    ViLBertOutput,
    VisualEmbeddings,
    _Recorder,
    init_weights,
    text_layers,
)


def joint_config(c: ViLBertConfig) -> ViLBertConfig:
    """The config a single stream actually uses: regions at the text width, no visual/co-attention layers."""
    return c.replace(
        v_hidden_size=c.hidden_size, v_num_attention_heads=c.num_attention_heads,
        v_intermediate_size=c.intermediate_size, v_num_hidden_layers=0,
        v_biattention_id=[], t_biattention_id=[], fixed_t_layer=0, fixed_v_layer=0,
    )  # fmt: skip


def is_joint_config(c: ViLBertConfig) -> bool:
    return not c.v_biattention_id and c.v_num_hidden_layers == 0 and c.v_hidden_size == c.hidden_size


class SingleStreamVisualEmbeddings(VisualEmbeddings):
    """LN(Linear(feature) + Linear(location) + visual-segment embedding), dropout -- at the text width."""

    def __init__(self, c: ViLBertConfig):
        super().__init__(c)
        self.token_type_embeddings = nn.Embedding(1, c.v_hidden_size)

    def forward(self, visual_feats, visual_pos):
        x = self.image_embeddings(visual_feats) + self.image_location_embeddings(visual_pos)
        return self.dropout(self.LayerNorm(x + self.token_type_embeddings.weight[0]))


class JointEncoder(nn.Module):
    """`encoder.layer.i`: BERT's names, so a Hugging Face BERT's layers load by name."""

    def __init__(self, c: ViLBertConfig):
        super().__init__()
        self.layer = text_layers(c)


class SingleStreamModel(PreTrainedMixin, nn.Module):
    """One BERT over [text ; regions]; same inputs and `ViLBertOutput` as ViLBertModel.

    Attentions: `text` holds the joint maps (B, h, T+R, T+R) of every layer; `t2v` / `v2t` / `vision` hold
    their word→region (B,h,T,R), region→word (B,h,R,T) and region→region (B,h,R,R) blocks. Hidden states:
    the embeddings, then each layer's output split into words and regions.
    """

    def __init__(self, config: ViLBertConfig):
        super().__init__()
        self.config = config = joint_config(config)
        self.embeddings = TextEmbeddings(config)
        self.v_embeddings = SingleStreamVisualEmbeddings(config)
        self.encoder = JointEncoder(config)
        self.t_pooler = Pooler(config.hidden_size, config.bi_hidden_size)
        self.v_pooler = Pooler(config.hidden_size, config.bi_hidden_size)
        self.pooled_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.apply(lambda m: init_weights(m, config.initializer_range))

    # Same three-stage split as ViLBertModel. Every layer here mixes modalities, so the pair-independent
    # prefixes are only the embeddings: retrieval caching saves little for a single stream.
    def text_prefix(self, input_ids, attention_mask=None, token_type_ids=None, task_ids=None, _rec=None):
        """Text embeddings -> (t (B,T,H), additive mask (B,1,1,T)); T grows by one with task tokens."""
        t, t_mask = ViLBertModel.embed_text(self, input_ids, attention_mask, token_type_ids, task_ids)
        (_rec or _Recorder(False, False)).add(t=t)
        return t, t_mask

    def vision_prefix(self, visual_feats, visual_pos, visual_attention_mask=None, _rec=None):
        """Region embeddings -> (v (B,R,H), additive mask (B,1,1,R))."""
        if visual_attention_mask is None:
            visual_attention_mask = visual_feats.new_ones(visual_feats.shape[:2])
        v = self.v_embeddings(visual_feats, visual_pos)
        (_rec or _Recorder(False, False)).add(v=v)
        return v, self.extended_mask(visual_attention_mask)

    def forward_from_prefix(self, t, t_mask, v, v_mask, _rec=None) -> ViLBertOutput:
        """The joint layers over [t ; v], then the split, the poolers and the [CLS] pooled output."""
        rec = _rec or _Recorder(False, False)
        T = t.size(1)
        x, mask = torch.cat([t, v], dim=1), torch.cat([t_mask, v_mask], dim=-1)
        for layer in self.encoder.layer:
            x, a = layer(x, mask, rec.attentions is not None)
            if a is not None:
                rec.add(text=a, t2v=a[..., :T, T:], v2t=a[..., T:, :T], vision=a[..., T:, T:])
            rec.add(t=x[:, :T], v=x[:, T:])
        t, v = x[:, :T], x[:, T:]
        pooled_t, pooled_v = self.t_pooler(t), self.v_pooler(v)
        pooled = self.pooled_dropout(pooled_t)  # the [CLS] pooler: the layers have fused the modalities
        return ViLBertOutput(t, v, pooled_t, pooled_v, pooled, rec.attentions, rec.hidden)

    # ViLBertModel's forward is written against the three stages above: same signature, checks, outputs.
    forward = ViLBertModel.forward
    extended_mask = ViLBertModel.extended_mask

    def init_text_from_bert(self, path: str | os.PathLike) -> list[str]:
        """Copy a local Hugging Face BERT's embeddings and its first layers (as many as both have) by name;
        deeper joint layers stay random. Returns the copied keys."""
        from transformers import BertModel  # heavy: only copying a BERT needs it

        src = BertModel.from_pretrained(str(path), local_files_only=True).state_dict()
        own, copied = self.state_dict(), []
        with torch.no_grad():
            for k, v in src.items():
                if k.startswith("embeddings.position_embeddings"):
                    v = v[: self.config.max_position_embeddings]
                if k not in own or k.startswith("embeddings.position_ids"):
                    continue
                if own[k].shape != v.shape:
                    raise ValueError(f"{path}: {k} is {tuple(v.shape)} in BERT, {tuple(own[k].shape)} here")
                own[k].copy_(v)
                copied.append(k)
        return copied


class SingleStreamForPreTraining(PreTrainedMixin, nn.Module):
    """The single stream with ViLBERT's three pretraining heads (`cls.predictions`, `cls.bi_seq_relationship`,
    `cls.imagePredictions`); same forward signature and `PreTrainingOutput` as ViLBertForPreTraining."""

    def __init__(self, config: ViLBertConfig):
        super().__init__()
        self.bert = SingleStreamModel(config)
        self.config = self.bert.config
        self.cls = PreTrainingHeads(self.config, self.bert.embeddings.word_embeddings.weight)
        self.cls.apply(lambda m: init_weights(m, self.config.initializer_range))
        self.tie_weights()

    # Both only touch self.bert / self.cls / self.config, which have the same names and outputs here.
    tie_weights = ViLBertForPreTraining.tie_weights
    forward = ViLBertForPreTraining.forward


# --------------------------------------------------------------------------------- parameter budget
def _count(cls: type, config: ViLBertConfig) -> int:
    with torch.device("meta"):  # no memory, no initialisation cost
        return cls(config).num_parameters()


def matched_config(vilbert_config: ViLBertConfig) -> ViLBertConfig:
    """A single-stream config whose depth brings SingleStreamForPreTraining's parameter count closest to
    ViLBertForPreTraining(vilbert_config)'s. A config that is already single-stream is returned unchanged."""
    if is_joint_config(vilbert_config):
        return vilbert_config
    target = _count(ViLBertForPreTraining, vilbert_config)
    joint = joint_config(vilbert_config)
    base = _count(SingleStreamForPreTraining, joint.replace(num_hidden_layers=0))
    per_layer = _count(SingleStreamForPreTraining, joint.replace(num_hidden_layers=1)) - base
    return joint.replace(num_hidden_layers=max(1, round((target - base) / per_layer)))


def parameter_counts(vilbert_config: ViLBertConfig) -> dict:
    """Both pretraining models' parameter counts (tied weights once) and the matched single-stream depth."""
    matched = matched_config(vilbert_config)
    vilbert = _count(ViLBertForPreTraining, vilbert_config)
    single = _count(SingleStreamForPreTraining, matched)
    return {"vilbert": vilbert, "single_stream": single, "single_stream_layers": matched.num_hidden_layers,
            "ratio": single / vilbert}  # fmt: skip


# ------------------------------------------------------------------------------------------ registry
MODEL_KINDS: dict[str, tuple[type, type]] = {
    "vilbert": (ViLBertModel, ViLBertForPreTraining),
    "single_stream": (SingleStreamModel, SingleStreamForPreTraining),
}
_BY_NAME = {cls.__name__: cls for pair in MODEL_KINDS.values() for cls in pair}


def build_model(kind: str, config: ViLBertConfig, pretraining: bool = True) -> nn.Module:
    """A fresh model of `kind` ('vilbert' or 'single_stream'); a single stream gets `matched_config`."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {sorted(MODEL_KINDS)}")
    if kind == "single_stream":
        config = matched_config(config)
    return MODEL_KINDS[kind][1 if pretraining else 0](config)


def kind_of(model: nn.Module) -> str:
    """'vilbert' or 'single_stream' for a model built from MODEL_KINDS."""
    for kind, pair in MODEL_KINDS.items():
        if type(model) in pair:
            return kind
    raise ValueError(f"{type(model).__name__} is not one of {sorted(_BY_NAME)}")


def load_any(directory: str | os.PathLike, **kwargs) -> nn.Module:
    """Load a `save_pretrained` folder as the class named in its config.json's `architectures[0]`."""
    path = Path(directory) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{directory}: no config.json (expected a folder written by save_pretrained)")
    name = (json.loads(path.read_text()).get("architectures") or [None])[0]
    if name not in _BY_NAME:
        raise ValueError(f"{path}: architectures[0] is {name!r}; expected one of {sorted(_BY_NAME)}")
    return _BY_NAME[name].from_pretrained(directory, **kwargs)
