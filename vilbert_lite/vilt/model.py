"""ViLT (Kim et al. 2021): one transformer over [words ; image patches], no detector, no CNN.

ViLBERT reads an image as ~36 detector regions; the detector is most of its running time (ViLT, arXiv 2102.03334, Figure 1). ViLT
cuts the image into P x P patches and embeds each with one linear layer, as ViT does, then runs a single
BERT-size transformer over the words and the patches together:

    text   [CLS] w1 .. wT [SEP]  -> BERT embeddings (word + position + segment, LN)    + modality type 0
    image  x (3, H, W) -> N = (H/P)(W/P) patches of 3·P·P pixels -> Linear -> + position of the patch
           [IMG] token first (ViT's class token)                                        + modality type 1
    [text ; image] -> L pre-LN transformer layers -> LN -> tanh(Linear([CLS])) = pooled -> matching head

`visual_embed="grid"` swaps the patch projection for the cells of a CNN feature map (Pixel-BERT style, the
middle row of ViLT's running-time table): each cell of the (C, h, w) map is a visual token, Linear(C
-> hidden), with the same positions, modality type and transformer.

Odd image sizes (never an error):
- `inputs.preprocess` (numpy / PIL / path images) resizes as ViLT does: the shorter side to `config.image_size`, the
  longer side at most 640/384 of that; an image is never smaller than one patch after it.
- the model pads any (B, 3, H, W) tensor on the right and bottom to a multiple of P (an image smaller than a
  patch becomes one padded patch); `pixel_mask` (B, H, W) marks real pixels, a patch with no real pixel is
  masked out of attention, and each image's position embeddings are interpolated to its own patch grid, so
  padding never moves a patch's position.

Names follow Hugging Face's ViltConfig where it has them. `ViLTForPreTraining` adds the masked-token head
(`mlm_score`) and the image-text matching head (`itm_score`, column 0 = "matches", ViLBERT's convention here).
Shapes: B batch, T words, N patches (or grid cells), L = T + 1 + N.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from vilbert_lite.errors import UserError
from vilbert_lite.model.attention import SelfAttention
from vilbert_lite.model.config import checked_fields, read_json
from vilbert_lite.model.heads import LMPredictionHead
from vilbert_lite.model.vilbert import (
    Intermediate,
    PreTrainedMixin,
    TextEmbeddings,
    check_model_type,
    init_weights,
)
from vilbert_lite.profiles import get_profile

VISUAL_EMBEDS = ("patch", "grid")
TIED = ("mlm_score.decoder.weight", "vilt.embeddings.text_embeddings.word_embeddings.weight")


@dataclass
class ViLTConfig:
    """Hyper-parameters of a ViLT single stream. Defaults = ViLT-B/32 (Hugging Face `ViltConfig` names)."""

    model_type: ClassVar[str] = "vilt"
    task_specific_tokens: ClassVar[bool] = False  # read by the shared BERT TextEmbeddings: ViLT has none

    vocab_size: int = 30522
    type_vocab_size: int = 2  # text segments (question / answer)
    modality_type_vocab_size: int = 2  # 0 = text, 1 = image
    max_position_embeddings: int = 40  # ViLT's max_text_len
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1  # ViLT's drop_rate
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    image_size: int = (
        384  # shorter side after resizing; the position table covers image_size/patch_size squared
    )
    patch_size: int = 32
    num_channels: int = 3
    qkv_bias: bool = True
    max_image_length: int = -1  # visual tokens kept per image in training (ViLT samples 200); -1 keeps all
    tie_word_embeddings: bool = False  # ViLT's masked-token decoder has its own weights
    visual_embed: str = "patch"  # "patch" (ViLT) or "grid" (CNN feature-map cells, Pixel-BERT style)
    grid_feature_size: int = 1280  # channels of a grid cell (EfficientNet-Lite0's last conv stage)
    grid_stage: str = "head"  # the backbone stage the grid reads: "head" (stride 32) or "blockN"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise UserError (a ValueError) naming the field when the config cannot describe a working model."""
        if self.hidden_size % self.num_attention_heads:
            raise UserError(
                f"hidden_size/num_attention_heads: {self.hidden_size} is not a multiple of "
                f"{self.num_attention_heads} heads"
            )
        if self.visual_embed not in VISUAL_EMBEDS:
            raise UserError(f"visual_embed must be one of {VISUAL_EMBEDS}, got {self.visual_embed!r}")
        if self.patch_size < 1 or self.image_size < self.patch_size:
            raise UserError(f"patch_size {self.patch_size} must be in [1, image_size={self.image_size}]")
        if self.grid_stage != "head" and not (
            self.grid_stage.startswith("block") and self.grid_stage[5:].isdigit()
        ):
            raise UserError(f"grid_stage must be 'head' or 'blockN', got {self.grid_stage!r}")

    @property
    def bi_hidden_size(self) -> int:
        """The pooled width that task heads read (ViLBERT's name for it): ViLT pools [CLS] at hidden_size."""
        return self.hidden_size

    @property
    def grid_size(self) -> int:
        """Side of the learned position table: image_size / patch_size."""
        return self.image_size // self.patch_size

    # ------------------------------------------------------------------------------- JSON in/out
    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> ViLTConfig:
        """Build from a dict; unknown keys or wrong types raise UserError naming the key."""
        return cls(**checked_fields(cls, d, source, ("model_type", "architectures")))

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> ViLTConfig:
        return cls.from_dict(read_json(path), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "model_type": self.model_type}

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        Path(path).write_text(self.to_json_string())

    def replace(self, **changes) -> ViLTConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **overrides) -> ViLTConfig:
        """`base` (ViLT-B/32), `small`, `mini`, `tiny`: the text-stream sizes of the ViLBERT presets of the
        same name."""
        if name not in PRESETS:
            raise UserError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


# The CPU presets take the layer shapes of ViLBERT's text stream of the same name (config.py) and 16-pixel
# patches on the synthetic world's 128-160 px images (a small object spans about 2 x 2 patches).
_SMALL = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
              max_position_embeddings=64, image_size=160, patch_size=16)  # fmt: skip
PRESETS: dict[str, dict[str, Any]] = {
    "base": {},
    "small": _SMALL,
    # `mini` takes ViLBERT `mini`'s recipe too (config.py): init N(0, 0.05) at width 128, no dropout
    "mini": dict(_SMALL, hidden_size=128, num_attention_heads=4, intermediate_size=512, initializer_range=0.05,
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    "tiny": dict(_SMALL, hidden_size=64, num_hidden_layers=3, num_attention_heads=2, intermediate_size=128,
                 image_size=128),
}  # fmt: skip


def pad_to_multiple(x: torch.Tensor, mask: torch.Tensor | None, P: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) and an optional (B, H, W) real-pixel mask -> both padded on the right/bottom to multiples
    of P (at least P): an image smaller than a patch becomes one partly padded patch."""
    B, _, H, W = x.shape
    mask = torch.ones(B, H, W, dtype=torch.long, device=x.device) if mask is None else mask.long()
    ph, pw = max(P, -(-H // P) * P) - H, max(P, -(-W // P) * P) - W
    if ph or pw:
        x, mask = F.pad(x, (0, pw, 0, ph)), F.pad(mask, (0, pw, 0, ph))
    return x, mask


def to_patches(x: torch.Tensor, P: int) -> torch.Tensor:
    """(B, C, H, W) with H, W multiples of P -> (B, (H/P)(W/P), C·P·P), patches in row-major order."""
    B, C, H, W = x.shape
    p = x.unfold(2, P, P).unfold(3, P, P)  # (B, C, H/P, W/P, P, P)
    return p.permute(0, 2, 3, 1, 4, 5).reshape(B, (H // P) * (W // P), C * P * P)


# ------------------------------------------------------------------------------------------------ model
class ViLTEmbeddings(nn.Module):
    """Text: BERT embeddings. Image: patch (or grid cell) projection + per-patch position + [IMG] token. Both
    get their modality-type embedding; dropout."""

    def __init__(self, c: ViLTConfig):
        super().__init__()
        self.config = c
        self.text_embeddings = TextEmbeddings(c)
        if c.visual_embed == "patch":
            self.patch_embeddings = nn.Linear(c.num_channels * c.patch_size**2, c.hidden_size)
        else:
            self.grid_embeddings = nn.Linear(c.grid_feature_size, c.hidden_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden_size))  # the [IMG] token
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + c.grid_size**2, c.hidden_size))
        self.modality_type_embeddings = nn.Embedding(c.modality_type_vocab_size, c.hidden_size)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def text(self, input_ids, token_type_ids):
        """(B, T) ids -> (B, T, H)."""
        t = self.text_embeddings(input_ids, token_type_ids)
        return t + self.modality_type_embeddings.weight[0]

    def positions(self, h: int, w: int) -> torch.Tensor:
        """The learned G x G position table, bilinearly resized to an h x w grid -> (h*w, H)."""
        G, D = self.config.grid_size, self.config.hidden_size
        table = self.position_embeddings[0, 1:].reshape(1, G, G, D).permute(0, 3, 1, 2)
        if (h, w) != (G, G):
            table = F.interpolate(table, size=(h, w), mode="bilinear", align_corners=True)
        return table[0].flatten(1).T

    def image(self, tokens: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected tokens (B, h, w, H) and their real-pixel flags (B, h, w) -> visual sequence (B, 1+h*w, H)
        with the [IMG] token first, and its mask (B, 1+h*w). Each image's positions are interpolated to its
        own grid of real patches (the top-left rows x cols that hold pixels), as in ViLT."""
        B, h, w, D = tokens.shape
        rows, cols = valid[:, :, 0].sum(1), valid[:, 0, :].sum(1)  # (B,) real patch rows / columns
        pos = tokens.new_zeros(B, h, w, D)
        for r, c in {(int(r), int(c)) for r, c in zip(rows, cols)}:
            same = (rows == r) & (cols == c)
            pos[same, :r, :c] = (
                self.positions(max(r, 1), max(c, 1)).view(max(r, 1), max(c, 1), D)[:r, :c].to(pos.dtype)
            )
        x = (tokens + pos).reshape(B, h * w, D)
        cls = (self.cls_token + self.position_embeddings[:, :1]).expand(B, 1, D).to(x.dtype)
        x = torch.cat([cls, x], 1) + self.modality_type_embeddings.weight[1]
        mask = torch.cat([valid.new_ones(B, 1), valid.reshape(B, h * w)], 1).long()
        return self.dropout(x), mask

    def patches(self, pixel_values, pixel_mask=None):
        """Pixels (B, 3, H, W) [+ mask (B, H, W)] -> (visual sequence, mask, patch grid (h, w))."""
        P = self.config.patch_size
        x, m = pad_to_multiple(pixel_values, pixel_mask, P)
        B, h, w = x.shape[0], x.shape[2] // P, x.shape[3] // P
        tokens = self.patch_embeddings(to_patches(x, P)).view(B, h, w, -1)  # one Linear over 3·P·P pixels
        valid = m.unfold(1, P, P).unfold(2, P, P).amax((-1, -2)).bool()  # (B, h, w): any real pixel
        return (*self.image(tokens, valid), (h, w))

    def grid(self, grid_features, grid_mask=None):
        """CNN map (B, C, h, w) [+ mask (B, h, w)] -> (visual sequence, mask, grid (h, w))."""
        B, _, h, w = grid_features.shape
        valid = (
            torch.ones(B, h, w, dtype=torch.bool, device=grid_features.device)
            if grid_mask is None
            else grid_mask.bool()
        )
        tokens = self.grid_embeddings(grid_features.permute(0, 2, 3, 1))  # (B, h, w, H)
        return (*self.image(tokens, valid), (h, w))


class ViLTLayer(nn.Module):
    """A pre-LN (ViT) transformer layer: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, c: ViLTConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.attention = SelfAttention(c.hidden_size, c.num_attention_heads, c.attention_probs_dropout_prob)
        self.attention_output = nn.Linear(c.hidden_size, c.hidden_size)
        self.layernorm_after = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.intermediate = Intermediate(c.hidden_size, c.intermediate_size, c.hidden_act)
        self.output = nn.Linear(c.intermediate_size, c.hidden_size)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        if not c.qkv_bias:
            for lin in (self.attention.query, self.attention.key, self.attention.value):
                lin.bias = None

    def forward(self, x, mask, need_weights=False):
        ctx, probs = self.attention(self.layernorm_before(x), mask, need_weights)
        x = x + self.dropout(self.attention_output(ctx))
        x = x + self.dropout(self.output(self.intermediate(self.layernorm_after(x))))
        return x, probs


class ViLTPooler(nn.Module):
    """tanh(Linear([CLS])), BERT's pooler (ViLT keeps it; ViLBERT's official poolers use ReLU)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)

    def forward(self, x):
        return torch.tanh(self.dense(x[:, 0]))


@dataclass
class ViLTOutput:
    sequence_output_t: torch.Tensor  # (B, T, H)
    sequence_output_v: torch.Tensor  # (B, 1+N, H): the [IMG] token, then the patches (or grid cells)
    pooled_output: torch.Tensor  # (B, H): tanh(Linear(text [CLS]))
    visual_mask: torch.Tensor  # (B, 1+N) long, 1 = real
    patch_grid: tuple[int, int]  # (h, w): visual token 1 + k is patch row k // w, column k % w (no sampling)
    attentions: list | None = None  # per layer (B, heads, L, L), L = T + 1 + N, text first
    hidden_states: list | None = None  # the embeddings, then every layer's output, each (B, L, H)
    prediction_logits_t: torch.Tensor | None = None  # (N_masked, vocab) or (B, T, vocab)
    seq_relationship_logits: torch.Tensor | None = None  # (B, 2): column 0 = the caption matches the image


class ViLTPreTrainedMixin(PreTrainedMixin):
    """`save_pretrained` as ViLBERT's (config.json with model_type "vilt" + model.safetensors);
    `from_pretrained` refuses a ViLBERT folder with a message naming both kinds."""

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, strict: bool = True, **config_overrides):
        """Load a `save_pretrained` folder; a ViLTModel can be read from a ViLTForPreTraining folder."""
        d = Path(directory)
        for name in ("config.json", "model.safetensors"):
            if not (d / name).exists():
                raise FileNotFoundError(f"{d}: no {name} (expected a folder written by save_pretrained)")
        meta = check_model_type(d, cls, "vilt")
        model = cls(ViLTConfig.from_dict(meta, source=str(d / "config.json")).replace(**config_overrides))
        state = load_file(d / "model.safetensors")
        if cls is ViLTModel and not any(k in model.state_dict() for k in state):
            state = {
                k[5:]: v for k, v in state.items() if k.startswith("vilt.")
            }  # the backbone of a full model
        missing, unexpected = model.load_state_dict(state, strict=False)
        if getattr(model, "tied", False):  # safetensors stores one of the two names of the tied matrix
            missing = [k for k in missing if not (set(TIED) - {k}) & set(state)]
        if strict and (missing or unexpected):
            raise ValueError(f"{d}: missing keys {missing}; unexpected keys {unexpected}")
        return model


class ViLTModel(ViLTPreTrainedMixin, nn.Module):
    """Embeddings -> pre-LN transformer over [text ; image] -> final LayerNorm -> pooler."""

    def __init__(self, config: ViLTConfig):
        super().__init__()
        self.config = config
        self.embeddings = ViLTEmbeddings(config)
        self.encoder = nn.ModuleDict(
            {"layer": nn.ModuleList(ViLTLayer(config) for _ in range(config.num_hidden_layers))}
        )
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = ViLTPooler(config.hidden_size)
        self.apply(lambda m: init_weights(m, config.initializer_range))
        for p in (self.embeddings.cls_token, self.embeddings.position_embeddings):
            nn.init.normal_(p, std=config.initializer_range)

    # Split in stages so the running-time bench can time the visual embedding apart from the transformer.
    def embed_text(self, input_ids, attention_mask=None, token_type_ids=None):
        """-> (t (B, T, H), mask (B, T))."""
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        token_type_ids = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        return self.embeddings.text(input_ids, token_type_ids), attention_mask.long()

    def embed_image(self, pixel_values=None, pixel_mask=None, grid_features=None, grid_mask=None):
        """-> (v (B, 1+N, H), mask (B, 1+N), grid (h, w)). Pass pixels for a patch model, a CNN map for a grid
        model. In training with max_image_length > 0, that many visual tokens are sampled per image (real ones
        first), as ViLT does."""
        c = self.config
        given = (
            "pixel_values"
            if pixel_values is not None
            else "grid_features"
            if grid_features is not None
            else None
        )
        want = "pixel_values" if c.visual_embed == "patch" else "grid_features"
        if given != want:
            raise ValueError(f"a visual_embed={c.visual_embed!r} ViLT reads {want}, got {given or 'neither'}")
        if c.visual_embed == "patch":
            if pixel_values.dim() != 4 or pixel_values.shape[1] != c.num_channels:
                raise ValueError(
                    f"pixel_values: expected (B, {c.num_channels}, H, W), got {tuple(pixel_values.shape)}"
                )
            v, mask, grid = self.embeddings.patches(pixel_values, pixel_mask)
        else:
            if grid_features.dim() != 4 or grid_features.shape[1] != c.grid_feature_size:
                raise ValueError(
                    f"grid_features: expected (B, {c.grid_feature_size}, h, w), "
                    f"got {tuple(grid_features.shape)}"
                )
            v, mask, grid = self.embeddings.grid(grid_features, grid_mask)
        keep = c.max_image_length
        if self.training and 0 < keep < v.shape[1] - 1:
            score = (
                torch.rand(mask.shape[0], v.shape[1] - 1, device=v.device) + mask[:, 1:]
            )  # real tokens first
            idx = score.topk(keep, dim=1).indices.sort(1).values + 1  # (B, keep) positions after [IMG]
            idx = torch.cat([idx.new_zeros(idx.shape[0], 1), idx], 1)
            v, mask = v.gather(1, idx[..., None].expand(-1, -1, v.shape[-1])), mask.gather(1, idx)
        return v, mask, grid

    def forward_from_embeddings(self, t, t_mask, v, v_mask, grid=(0, 0), output_attentions=False,
                                output_hidden_states=False) -> ViLTOutput:  # fmt: skip
        """The transformer over [t ; v] under the joint padding mask, the final LayerNorm and the pooler."""
        T = t.shape[1]
        x, m = torch.cat([t, v], 1), torch.cat([t_mask, v_mask], 1)  # (B, L, H), (B, L)
        add = (1.0 - m[:, None, None, :].to(x.dtype)) * -10000.0  # (B, 1, 1, L), the package's convention
        attentions = [] if output_attentions else None
        hidden = [x] if output_hidden_states else None
        for layer in self.encoder["layer"]:
            x, a = layer(x, add, output_attentions)
            if output_attentions:
                attentions.append(a)
            if output_hidden_states:
                hidden.append(x)
        x = self.layernorm(x)
        return ViLTOutput(x[:, :T], x[:, T:], self.pooler(x), v_mask, tuple(grid), attentions, hidden)

    def forward(self, input_ids, pixel_values=None, attention_mask=None, token_type_ids=None, pixel_mask=None,
                grid_features=None, grid_mask=None, output_attentions=False,
                output_hidden_states=False) -> ViLTOutput:  # fmt: skip
        if input_ids.dim() != 2 or input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                "input_ids: expected (B, T) with T <= max_position_embeddings="
                f"{self.config.max_position_embeddings}, "
                f"got {tuple(input_ids.shape)}"
            )
        t, t_mask = self.embed_text(input_ids, attention_mask, token_type_ids)
        v, v_mask, grid = self.embed_image(pixel_values, pixel_mask, grid_features, grid_mask)
        return self.forward_from_embeddings(
            t, t_mask, v, v_mask, grid, output_attentions, output_hidden_states
        )


class ViLTForPreTraining(ViLTPreTrainedMixin, nn.Module):
    """ViLT with the masked-token head (`mlm_score`) and the image-text matching head (`itm_score`)."""

    def __init__(self, config: ViLTConfig):
        super().__init__()
        self.config = config
        self.vilt = ViLTModel(config)
        words = self.vilt.embeddings.text_embeddings.word_embeddings.weight
        self.tied = config.tie_word_embeddings
        self.mlm_score = LMPredictionHead(
            config, words if self.tied else nn.Parameter(torch.empty_like(words))
        )
        self.itm_score = nn.Linear(config.hidden_size, 2)
        self.mlm_score.apply(lambda m: init_weights(m, config.initializer_range))
        self.itm_score.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(self, input_ids, pixel_values=None, attention_mask=None, token_type_ids=None, pixel_mask=None,
                grid_features=None, grid_mask=None, lm_positions=None, output_attentions=False,
                output_hidden_states=False) -> ViLTOutput:  # fmt: skip
        """`lm_positions` (B, T) bool: where to run the token head (None: everywhere; all False: nowhere)."""
        out = self.vilt(input_ids, pixel_values, attention_mask, token_type_ids, pixel_mask, grid_features,
                        grid_mask, output_attentions, output_hidden_states)  # fmt: skip
        t = out.sequence_output_t if lm_positions is None else out.sequence_output_t[lm_positions]
        out.prediction_logits_t = self.mlm_score(t)
        out.seq_relationship_logits = self.itm_score(out.pooled_output)
        return out


# ------------------------------------------------------------------------------------------------------ runs
def resolve_vilt_config(
    profile, visual_embed: str = "patch", config_overrides: dict | None = None
) -> ViLTConfig:
    """The profile's (a name or a resolved `Profile`) ViLT: the preset named like its ViLBERT preset, at the world's image size, with the
    profile's recipe (`Profile.vilt_recipe["config"]`), then overrides."""
    prof = get_profile(profile)
    base = {**ViLTConfig.preset(prof.model_preset).to_dict(), "image_size": prof.world.image_size,
            **prof.vilt_recipe.get("config", {}), "visual_embed": visual_embed}  # fmt: skip
    return ViLTConfig.from_dict({**base, **(config_overrides or {})}, source="config_overrides")
