"""Pretraining heads (official names under `cls.`) and ViLBertForPreTraining.

The heads run only at the positions asked for: pass boolean masks `lm_positions` (B, T) and
`region_positions` (B, R) and the vocabulary / class logits are computed for those rows alone
(a 30522-way decoder over every token is most of a small model's cost otherwise).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.official import load_official_checkpoint
from vilbert_lite.model.vilbert import ACT, LN_EPS, PreTrainedMixin, ViLBertModel, ViLBertOutput, init_weights


class HeadTransform(nn.Module):
    """dense -> activation -> LayerNorm, before a decoder."""

    def __init__(self, hidden: int, act: str):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.act = ACT[act]
        self.LayerNorm = nn.LayerNorm(hidden, eps=LN_EPS)

    def forward(self, x):
        return self.LayerNorm(self.act(self.dense(x)))


class LMPredictionHead(nn.Module):
    """Masked-token prediction: transform, then a decoder tied to the word embeddings, plus a bias."""

    def __init__(self, c: ViLBertConfig, word_embeddings: nn.Parameter):
        super().__init__()
        self.transform = HeadTransform(c.hidden_size, c.hidden_act)
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        self.decoder.weight = word_embeddings
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))

    def forward(self, x):
        return self.decoder(self.transform(x)) + self.bias


class ImagePredictionHead(nn.Module):
    """Masked-region prediction: transform, then logits over the detector's classes (v_target_size)."""

    def __init__(self, c: ViLBertConfig):
        super().__init__()
        self.transform = HeadTransform(
            c.v_hidden_size, c.hidden_act
        )  # the official code uses hidden_act here
        self.decoder = nn.Linear(c.v_hidden_size, c.v_target_size)

    def forward(self, x):
        return self.decoder(self.transform(x))


class PreTrainingHeads(nn.Module):
    def __init__(self, c: ViLBertConfig, word_embeddings: nn.Parameter):
        super().__init__()
        self.predictions = LMPredictionHead(c, word_embeddings)
        self.bi_seq_relationship = nn.Linear(
            c.bi_hidden_size, 2
        )  # alignment: column 0 = caption matches image
        self.imagePredictions = ImagePredictionHead(c)


@dataclass
class PreTrainingOutput(ViLBertOutput):
    prediction_logits_t: torch.Tensor | None = None  # (N_masked_tokens, vocab) or (B, T, vocab)
    prediction_logits_v: torch.Tensor | None = None  # (N_masked_regions, v_target) or (B, R, v_target)
    seq_relationship_logits: torch.Tensor | None = None  # (B, 2): index 0 = aligned (official convention)


class ViLBertForPreTraining(PreTrainedMixin, nn.Module):
    """ViLBERT with the three pretraining heads: masked tokens, masked regions, image-text alignment."""

    def __init__(self, config: ViLBertConfig):
        super().__init__()
        self.config = config
        self.bert = ViLBertModel(config)
        self.cls = PreTrainingHeads(config, self.bert.embeddings.word_embeddings.weight)
        self.cls.apply(lambda m: init_weights(m, config.initializer_range))
        if config.pooler_initializer_range:
            init_weights(self.cls.bi_seq_relationship, config.pooler_initializer_range)
        self.tie_weights()

    def tie_weights(self) -> None:
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def forward(
        self, input_ids, visual_feats, visual_pos, attention_mask=None, visual_attention_mask=None,
        token_type_ids=None, task_ids=None, lm_positions=None, region_positions=None,
        output_attentions=False, output_hidden_states=False,
    ) -> PreTrainingOutput:  # fmt: skip
        """`lm_positions` (B,T) / `region_positions` (B,R) bool: where to run the token / region heads.
        None runs a head over every position; pass an all-False mask to skip it."""
        out = self.bert(input_ids, visual_feats, visual_pos, attention_mask, visual_attention_mask,
                        token_type_ids, task_ids, output_attentions, output_hidden_states)  # fmt: skip
        t, v = out.sequence_output_t, out.sequence_output_v
        if self.config.task_specific_tokens:  # drop the task slot so positions line up with input_ids
            t = torch.cat([t[:, :1], t[:, 2:]], dim=1)
        t = t if lm_positions is None else t[lm_positions]  # (N, H) rows for masked tokens only
        v = v if region_positions is None else v[region_positions]
        return PreTrainingOutput(
            **vars(out),
            prediction_logits_t=self.cls.predictions(t),
            prediction_logits_v=self.cls.imagePredictions(v),
            seq_relationship_logits=self.cls.bi_seq_relationship(out.pooled_output),
        )

    @classmethod
    def from_official_checkpoint(cls, checkpoint_path: str | os.PathLike, config_path: str | os.PathLike,
                                 strict: bool = False):  # fmt: skip
        """Load a vilbert-multi-task `pytorch_model*.bin` (safely: weights_only) with its config JSON."""
        return load_official_checkpoint(cls, checkpoint_path, config_path, strict=strict)
