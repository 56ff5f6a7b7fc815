"""ViLBERT: two BERT-like streams (words, image regions) exchanging information through co-attention.

Module and parameter names follow the official vilbert-multi-task code (`embeddings`, `v_embeddings`,
`encoder.layer/v_layer/c_layer`, `t_pooler`, `v_pooler`, `LayerNorm`, ...), so official checkpoints and
Hugging Face BERT weights load by name. Shapes: B batch, T words, R regions (region 0 = global IMG region).
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_model
from torch import nn

from vilbert_lite.model.attention import CoAttention, SelfAttention
from vilbert_lite.model.config import NUM_TASK_TOKENS, ViLBertConfig

LN_EPS = 1e-12
ACT = {"gelu": F.gelu, "relu": F.relu, "swish": F.silu}


# ----------------------------------------------------------------------------------------- layers
class AddNorm(nn.Module):
    """dense -> dropout -> LayerNorm(· + residual): BERT's `attention.output` and `output` blocks."""

    def __init__(self, d_in: int, d_out: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=LN_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Intermediate(nn.Module):
    """The first half of the feed-forward block: dense + activation."""

    def __init__(self, d_in: int, d_ff: int, act: str):
        super().__init__()
        self.dense = nn.Linear(d_in, d_ff)
        self.act = ACT[act]

    def forward(self, x):
        return self.act(self.dense(x))


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, attn_dropout: float, dropout: float):
        super().__init__()
        self.self = SelfAttention(hidden, heads, attn_dropout)
        self.output = AddNorm(hidden, hidden, dropout)

    def forward(self, x, mask, need_weights=False):
        ctx, probs = self.self(x, mask, need_weights)
        return self.output(ctx, x), probs


class TransformerLayer(nn.Module):
    """A post-LN BERT encoder layer; used for the text stream and (with v_* sizes) the visual stream."""

    def __init__(self, hidden, heads, d_ff, act, attn_dropout, dropout):
        super().__init__()
        self.attention = Attention(hidden, heads, attn_dropout, dropout)
        self.intermediate = Intermediate(hidden, d_ff, act)
        self.output = AddNorm(d_ff, hidden, dropout)

    def forward(self, x, mask, need_weights=False):
        x, probs = self.attention(x, mask, need_weights)
        return self.output(self.intermediate(x), x), probs


class BiOutput(nn.Module):
    """Co-attention output: vision = LN1(dropout(dense1(ctx_v)) + v), text = LN2(dropout(dense2(ctx_t)) + t).

    (The official layer also declares q_dense1/q_dense2, never used in forward; they are left out.)
    """

    def __init__(self, c: ViLBertConfig):
        super().__init__()
        self.dense1 = nn.Linear(c.bi_hidden_size, c.v_hidden_size)
        self.LayerNorm1 = nn.LayerNorm(c.v_hidden_size, eps=LN_EPS)
        self.dropout1 = nn.Dropout(c.v_hidden_dropout_prob)
        self.dense2 = nn.Linear(c.bi_hidden_size, c.hidden_size)
        self.LayerNorm2 = nn.LayerNorm(c.hidden_size, eps=LN_EPS)
        self.dropout2 = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, ctx_v, v, ctx_t, t):
        v = self.LayerNorm1(self.dropout1(self.dense1(ctx_v)) + v)
        t = self.LayerNorm2(self.dropout2(self.dense2(ctx_t)) + t)
        return v, t


class CoAttentionLayer(nn.Module):
    """Exchange keys and values between streams, then each stream's own feed-forward block (post-LN)."""

    def __init__(self, c: ViLBertConfig):
        super().__init__()
        self.biattention = CoAttention(
            c.v_hidden_size, c.hidden_size, c.bi_hidden_size, c.bi_num_attention_heads,
            c.v_attention_probs_dropout_prob, c.attention_probs_dropout_prob,
        )  # fmt: skip
        self.biOutput = BiOutput(c)
        self.v_intermediate = Intermediate(c.v_hidden_size, c.v_intermediate_size, c.v_hidden_act)
        self.v_output = AddNorm(c.v_intermediate_size, c.v_hidden_size, c.v_hidden_dropout_prob)
        self.t_intermediate = Intermediate(c.hidden_size, c.intermediate_size, c.hidden_act)
        self.t_output = AddNorm(c.intermediate_size, c.hidden_size, c.hidden_dropout_prob)

    def forward(self, v, v_mask, t, t_mask, need_weights=False):
        ctx_v, ctx_t, t2v, v2t = self.biattention(v, v_mask, t, t_mask, need_weights)
        v, t = self.biOutput(ctx_v, v, ctx_t, t)
        v = self.v_output(self.v_intermediate(v), v)
        t = self.t_output(self.t_intermediate(t), t)
        return v, t, t2v, v2t


# ------------------------------------------------------------------------------------- embeddings
class TextEmbeddings(nn.Module):
    """word + position + token type, LayerNorm, dropout; with task tokens a learned task embedding is
    inserted right after [CLS] (no position embedding), as in 12-in-1."""

    def __init__(self, c: ViLBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        if c.task_specific_tokens:
            self.task_embeddings = nn.Embedding(NUM_TASK_TOKENS, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=LN_EPS)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids, task_ids=None):
        pos = torch.arange(input_ids.size(1), device=input_ids.device)
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(pos)
            + self.token_type_embeddings(token_type_ids)
        )
        if hasattr(self, "task_embeddings"):
            x = torch.cat([x[:, :1], self.task_embeddings(task_ids), x[:, 1:]], dim=1)  # (B, T+1, H)
        return self.dropout(self.LayerNorm(x))


class VisualEmbeddings(nn.Module):
    """LN(Linear(region feature) + Linear(5-d location)), dropout."""

    def __init__(self, c: ViLBertConfig):
        super().__init__()
        self.image_embeddings = nn.Linear(c.v_feature_size, c.v_hidden_size)
        self.image_location_embeddings = nn.Linear(5, c.v_hidden_size)
        self.LayerNorm = nn.LayerNorm(c.v_hidden_size, eps=LN_EPS)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, visual_feats, visual_pos):
        return self.dropout(
            self.LayerNorm(self.image_embeddings(visual_feats) + self.image_location_embeddings(visual_pos))
        )


class Pooler(nn.Module):
    """ReLU(Linear(first position)) -- ReLU, not tanh, as in the official code."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)

    def forward(self, x):
        return F.relu(self.dense(x[:, 0]))


# ---------------------------------------------------------------------------------------- encoder
def layer_schedule(c: ViLBertConfig) -> list[tuple[str, int, bool]]:
    """The official execution order as (stream, layer index, frozen) with stream 't', 'v' or 'c' (co-attention).

    For each pair (v_id, t_id): text layers [t_start, t_id), visual layers [v_start, v_id), co-attention k;
    afterwards the remaining visual layers, then the remaining text layers. Layers below fixed_t_layer /
    fixed_v_layer run under no_grad ("frozen").
    """
    steps, t_start, v_start = [], 0, 0
    for k, (v_end, t_end) in enumerate(zip(c.v_biattention_id, c.t_biattention_id)):
        steps += [("t", i, i < c.fixed_t_layer) for i in range(t_start, t_end)]
        steps += [("v", i, i < c.fixed_v_layer) for i in range(v_start, v_end)]
        steps.append(("c", k, False))
        t_start, v_start = t_end, v_end
    steps += [("v", i, False) for i in range(v_start, c.v_num_hidden_layers)]
    steps += [("t", i, False) for i in range(t_start, c.num_hidden_layers)]
    return steps


def text_layers(c: ViLBertConfig) -> nn.ModuleList:
    """The text stream's BERT layers (`encoder.layer.i`), also the single-stream baseline's joint layers."""
    return nn.ModuleList(
        TransformerLayer(c.hidden_size, c.num_attention_heads, c.intermediate_size, c.hidden_act,
                         c.attention_probs_dropout_prob, c.hidden_dropout_prob)
        for _ in range(c.num_hidden_layers)
    )  # fmt: skip


class Encoder(nn.Module):
    def __init__(self, c: ViLBertConfig):
        super().__init__()
        self.layer = text_layers(c)
        self.v_layer = nn.ModuleList(
            TransformerLayer(c.v_hidden_size, c.v_num_attention_heads, c.v_intermediate_size, c.v_hidden_act,
                             c.v_attention_probs_dropout_prob, c.v_hidden_dropout_prob)
            for _ in range(c.v_num_hidden_layers)
        )  # fmt: skip
        self.c_layer = nn.ModuleList(CoAttentionLayer(c) for _ in range(c.num_co_layers))
        self.schedule = layer_schedule(c)
        first_c = next((i for i, s in enumerate(self.schedule) if s[0] == "c"), len(self.schedule))
        self.prefix_t = [s for s in self.schedule[:first_c] if s[0] == "t"]  # run once per caption
        self.prefix_v = [s for s in self.schedule[:first_c] if s[0] == "v"]  # run once per image
        self.rest = self.schedule[first_c:]

    def run(self, steps, t, t_mask, v, v_mask, rec: _Recorder):
        """Run `steps` of the schedule on the two streams; `rec` collects maps and hidden states."""
        need = rec.attentions is not None
        for kind, i, frozen in steps:
            with torch.no_grad() if frozen else nullcontext():
                if kind == "t":
                    t, a = self.layer[i](t, t_mask, need)
                    rec.add(text=a, t=t)
                elif kind == "v":
                    v, a = self.v_layer[i](v, v_mask, need)
                    rec.add(vision=a, v=v)
                else:
                    v, t, t2v, v2t = self.c_layer[i](v, v_mask, t, t_mask, need)
                    rec.add(t2v=t2v, v2t=v2t, t=t, v=v)
        return t, v


# ----------------------------------------------------------------------------------------- outputs
@dataclass
class Attentions:
    """Attention maps per layer, in execution order. text (B,h,T,T); vision (B,hv,R,R);
    t2v (B,hb,T,R): words attending to regions; v2t (B,hb,R,T): regions attending to words."""

    text: list = field(default_factory=list)
    vision: list = field(default_factory=list)
    t2v: list = field(default_factory=list)
    v2t: list = field(default_factory=list)


@dataclass
class HiddenStates:
    """Each stream's states: the embeddings, then after every layer that updates that stream (co-attention included)."""

    text: list = field(default_factory=list)  # each (B, T, hidden)
    vision: list = field(default_factory=list)  # each (B, R, v_hidden)


class _Recorder:
    def __init__(self, attentions: bool, hidden: bool):
        self.attentions = Attentions() if attentions else None
        self.hidden = HiddenStates() if hidden else None

    def add(self, t=None, v=None, **maps):
        if self.attentions is not None:
            for k, a in maps.items():
                getattr(self.attentions, k).append(a)
        if self.hidden is not None:
            if t is not None:
                self.hidden.text.append(t)
            if v is not None:
                self.hidden.vision.append(v)


@dataclass
class ViLBertOutput:
    sequence_output_t: torch.Tensor  # (B, T, hidden)
    sequence_output_v: torch.Tensor  # (B, R, v_hidden)
    pooled_output_t: torch.Tensor  # (B, bi_hidden)
    pooled_output_v: torch.Tensor  # (B, bi_hidden)
    pooled_output: torch.Tensor  # (B, bi_hidden) fused ("mul" or "sum"), after dropout
    attentions: Attentions | None = None
    hidden_states: HiddenStates | None = None


# ------------------------------------------------------------------------------------- save / load
class PreTrainedMixin:
    """`save_pretrained(dir)` -> config.json + model.safetensors; `from_pretrained(dir)` loads them."""

    config: ViLBertConfig

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {**self.config.to_dict(), "architectures": [type(self).__name__]}
        for name, write in [
            ("config.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")),
            ("model.safetensors", lambda p: save_model(self, p)),
        ]:
            fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{name}.")
            os.close(fd)
            try:
                write(tmp)
                os.replace(tmp, d / name)  # atomic: a reader never sees half a file
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, strict: bool = True, **config_overrides):
        """Load from a `save_pretrained` folder. A ViLBertModel can be read from a folder of any model that
        contains one under `bert.` (pretraining or task models); other missing weights are an error if strict."""
        d = Path(directory)
        for name in ("config.json", "model.safetensors"):
            if not (d / name).exists():
                raise FileNotFoundError(f"{d}: no {name} (expected a folder written by save_pretrained)")
        check_model_type(d, cls, "vilbert")
        config = ViLBertConfig.from_json_file(d / "config.json").replace(**config_overrides)
        model = cls(config)
        state = load_file(d / "model.safetensors")
        own = model.state_dict()
        if not any(k in own for k in state) and any(k.startswith("bert.") for k in state):
            state = {
                k[5:]: v for k, v in state.items() if k.startswith("bert.")
            }  # backbone out of a full model
        if hasattr(model, "tie_weights") and "cls.predictions.decoder.weight" not in state:
            state["cls.predictions.decoder.weight"] = state.get("bert.embeddings.word_embeddings.weight")
        state = {k: v for k, v in state.items() if v is not None}
        missing, unexpected = model.load_state_dict(state, strict=False)
        unexpected = (
            [k for k in unexpected if not k.startswith("cls.")] if cls is ViLBertModel else unexpected
        )
        if strict and (missing or unexpected):
            raise ValueError(f"{d}: missing keys {missing}; unexpected keys {unexpected}")
        return model

    def num_parameters(self) -> int:
        """Distinct parameters (tied weights counted once)."""
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())


MODEL_TYPES = {"vilbert": "ViLBERT", "vilt": "ViLT"}  # config.json "model_type" -> the kind's name


def check_model_type(directory: str | os.PathLike, cls: type, expected: str) -> dict:
    """A save_pretrained folder's config.json as a dict; ValueError naming both model kinds when its model_type
    (absent in ViLBERT folders: "vilbert") is another kind of MODEL_TYPES than `expected`."""
    path = Path(directory) / "config.json"
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    found = meta.get("model_type", "vilbert")
    if found != expected and found in MODEL_TYPES:
        arch = (meta.get("architectures") or ["?"])[0]
        raise ValueError(
            f"{directory}: this is a {MODEL_TYPES[found]} checkpoint ({arch}); it cannot be loaded into "
            f"{cls.__name__}, a {MODEL_TYPES[expected]} model. Load it with a {MODEL_TYPES[found]} class."
        )
    return meta


def init_weights(module: nn.Module, std: float) -> None:
    """The official initialisation: N(0, initializer_range) for Linear/Embedding, zero bias, LN = (1, 0)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ------------------------------------------------------------------------------------------- model
class ViLBertModel(PreTrainedMixin, nn.Module):
    """The two-stream encoder: embeddings -> interleaved text / visual / co-attention layers -> poolers -> fusion."""

    def __init__(self, config: ViLBertConfig):
        super().__init__()
        self.config = config
        self.embeddings = TextEmbeddings(config)
        self.v_embeddings = VisualEmbeddings(config)
        self.encoder = Encoder(config)
        self.t_pooler = Pooler(config.hidden_size, config.bi_hidden_size)
        self.v_pooler = Pooler(config.v_hidden_size, config.bi_hidden_size)
        self.fusion_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.apply(lambda m: init_weights(m, config.initializer_range))
        if config.pooler_initializer_range:
            for pooler in (self.t_pooler, self.v_pooler):
                init_weights(pooler.dense, config.pooler_initializer_range)

    # The forward pass is split in three so retrieval can run the pair-independent prefixes once per
    # caption / once per image: text_prefix and vision_prefix never look at the other stream.
    def embed_text(self, input_ids, attention_mask=None, token_type_ids=None, task_ids=None):
        """Text embeddings -> (t (B,T,H), additive mask (B,1,1,T)); T grows by one with task tokens."""
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        token_type_ids = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        if self.config.task_specific_tokens:
            if task_ids is None:
                raise ValueError("task_ids (B, 1) is required when config.task_specific_tokens is set")
            attention_mask = torch.cat(
                [attention_mask[:, :1], attention_mask], dim=1
            )  # the task slot is real
        return self.embeddings(input_ids, token_type_ids, task_ids), self.extended_mask(attention_mask)

    def text_prefix(self, input_ids, attention_mask=None, token_type_ids=None, task_ids=None, _rec=None):
        """Text embeddings + text layers before the first co-attention -> (t (B,T,H), additive mask (B,1,1,T))."""
        t, t_mask = self.embed_text(input_ids, attention_mask, token_type_ids, task_ids)
        rec = _rec or _Recorder(False, False)
        rec.add(t=t)
        t, _ = self.encoder.run(self.encoder.prefix_t, t, t_mask, None, None, rec)
        return t, t_mask

    def vision_prefix(self, visual_feats, visual_pos, visual_attention_mask=None, _rec=None):
        """Region embeddings + visual layers before the first co-attention -> (v (B,R,Hv), mask (B,1,1,R))."""
        if visual_attention_mask is None:
            visual_attention_mask = visual_feats.new_ones(visual_feats.shape[:2])
        v = self.v_embeddings(visual_feats, visual_pos)
        v_mask = self.extended_mask(visual_attention_mask)
        rec = _rec or _Recorder(False, False)
        rec.add(v=v)
        _, v = self.encoder.run(self.encoder.prefix_v, None, None, v, v_mask, rec)
        return v, v_mask

    def forward_from_prefix(self, t, t_mask, v, v_mask, _rec=None) -> ViLBertOutput:
        """The co-attention part and the rest of both streams, then poolers and fusion."""
        rec = _rec or _Recorder(False, False)
        t, v = self.encoder.run(self.encoder.rest, t, t_mask, v, v_mask, rec)
        pooled_t, pooled_v = self.t_pooler(t), self.v_pooler(v)
        fused = pooled_t * pooled_v if self.config.fusion_method == "mul" else pooled_t + pooled_v
        return ViLBertOutput(t, v, pooled_t, pooled_v, self.fusion_dropout(fused), rec.attentions, rec.hidden)

    def forward(
        self, input_ids, visual_feats, visual_pos, attention_mask=None, visual_attention_mask=None,
        token_type_ids=None, task_ids=None, output_attentions=False, output_hidden_states=False,
    ) -> ViLBertOutput:  # fmt: skip
        check_inputs(self.config, input_ids, visual_feats, visual_pos, attention_mask, visual_attention_mask,
                     token_type_ids)  # fmt: skip
        rec = _Recorder(output_attentions, output_hidden_states)
        t, t_mask = self.text_prefix(input_ids, attention_mask, token_type_ids, task_ids, rec)
        v, v_mask = self.vision_prefix(visual_feats, visual_pos, visual_attention_mask, rec)
        return self.forward_from_prefix(t, t_mask, v, v_mask, rec)

    def extended_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, L) of 1 = real / 0 = pad -> additive (B, 1, 1, L): 0 or -10000 (the official convention)."""
        dtype = self.v_embeddings.image_embeddings.weight.dtype
        return (1.0 - mask[:, None, None, :].to(dtype)) * -10000.0

    def init_text_from_bert(self, path: str | os.PathLike) -> list[str]:
        """Copy a local Hugging Face BERT folder's embeddings and layers into the text stream; returns the keys."""
        from transformers import BertModel  # heavy: only copying a BERT needs it

        bert = BertModel.from_pretrained(str(path), local_files_only=True)
        bc, c = bert.config, self.config
        diffs = [
            f"{k}: BERT {getattr(bc, k)} vs ViLBERT {getattr(c, k)}"
            for k in (
                "hidden_size",
                "num_attention_heads",
                "intermediate_size",
                "vocab_size",
                "type_vocab_size",
            )
            if getattr(bc, k) != getattr(c, k)
        ]
        if bc.num_hidden_layers < c.num_hidden_layers:
            diffs.append(
                f"num_hidden_layers: BERT has {bc.num_hidden_layers} < ViLBERT {c.num_hidden_layers}"
            )
        if bc.max_position_embeddings < c.max_position_embeddings:
            diffs.append(
                f"max_position_embeddings: BERT {bc.max_position_embeddings} < {c.max_position_embeddings}"
            )
        if diffs:
            raise ValueError(f"{path}: BERT does not fit the text stream: " + "; ".join(diffs))
        src = bert.state_dict()
        own = self.state_dict()
        copied = []
        with torch.no_grad():
            for k, v in src.items():
                if k.startswith("embeddings.position_embeddings"):
                    v = v[: c.max_position_embeddings]
                if k in own and not k.startswith("embeddings.position_ids"):
                    own[k].copy_(v)
                    copied.append(k)
        return copied


def check_inputs(c: ViLBertConfig, input_ids, visual_feats, visual_pos, attention_mask, visual_attention_mask,
                 token_type_ids) -> None:  # fmt: skip
    """Raise ValueError naming the argument and the expected shape or range."""

    def bad(name, got, want):
        raise ValueError(f"{name}: expected {want}, got {got}")

    if input_ids.dim() != 2 or input_ids.dtype not in (torch.long, torch.int32, torch.int64):
        bad("input_ids", f"{tuple(input_ids.shape)} {input_ids.dtype}", "a (B, T) integer tensor")
    B, T = input_ids.shape
    if T > c.max_position_embeddings:
        bad("input_ids", f"length {T}", f"at most max_position_embeddings={c.max_position_embeddings} tokens")
    if visual_feats.dim() != 3 or visual_feats.shape[0] != B or visual_feats.shape[2] != c.v_feature_size:
        bad("visual_feats", tuple(visual_feats.shape), f"(B={B}, R, v_feature_size={c.v_feature_size})")
    R = visual_feats.shape[1]
    if tuple(visual_pos.shape) != (B, R, 5):
        bad(
            "visual_pos", tuple(visual_pos.shape), f"(B={B}, R={R}, 5) = [x1/W, y1/H, x2/W, y2/H, area/(W*H)]"
        )
    if not torch.compiler.is_compiling() and ((visual_pos < -1e-4) | (visual_pos > 1 + 1e-4)).any():
        bad("visual_pos", f"values in [{visual_pos.min().item():.3g}, {visual_pos.max().item():.3g}]",
            "normalised box coordinates in [0, 1]")  # fmt: skip
    for name, m, shape in [("attention_mask", attention_mask, (B, T)), ("token_type_ids", token_type_ids, (B, T)),
                           ("visual_attention_mask", visual_attention_mask, (B, R))]:  # fmt: skip
        if m is not None and tuple(m.shape) != shape:
            bad(name, tuple(m.shape), shape)
    if token_type_ids is not None and T and int(token_type_ids.max()) >= c.type_vocab_size:
        bad("token_type_ids", int(token_type_ids.max()), f"ids < type_vocab_size={c.type_vocab_size}")
