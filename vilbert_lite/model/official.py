"""Import checkpoints of the official vilbert-multi-task code.

Our parameter names equal the official ones, so the mapping is small: strip `module.` (DataParallel),
rename old-style LayerNorm `gamma`/`beta` to `weight`/`bias`, drop the co-attention layers' dead
`q_dense1`/`q_dense2`, and re-tie the masked-token decoder to the word embeddings. Checkpoints are pickles:
they are read with `torch.load(weights_only=True)`, which refuses to execute code.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

import torch

from vilbert_lite.model.config import ViLBertConfig

log = logging.getLogger(__name__)

DEAD_KEYS = re.compile(r"\.biOutput\.q_dense[12]\.")


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)  # our keys the checkpoint lacked (left as initialised)
    unexpected: list[str] = field(
        default_factory=list
    )  # checkpoint keys we have no place for (e.g. task heads)
    dropped: list[str] = field(default_factory=list)  # the dead q_dense weights

    def __str__(self) -> str:
        return f"missing={self.missing} unexpected={self.unexpected} dropped={len(self.dropped)} dead q_dense tensors"


def convert_official_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official names -> ours. Returns (state dict, dropped keys)."""
    out, dropped = {}, []
    for key, value in state.items():
        k = key[len("module.") :] if key.startswith("module.") else key
        if "LayerNorm" in k:
            k = re.sub(r"\.gamma$", ".weight", k)
            k = re.sub(r"\.beta$", ".bias", k)
        if DEAD_KEYS.search(k):
            dropped.append(key)
            continue
        out[k] = value
    return out, dropped


def to_official_state_dict(model: torch.nn.Module, old_style: bool = False) -> dict[str, torch.Tensor]:
    """Ours -> the official layout (adds zero q_dense weights; `old_style` adds `module.` and gamma/beta).
    Used to export, and to test the import against a state dict with the official names."""
    c: ViLBertConfig = model.config
    state = {}
    for k, v in model.state_dict().items():
        state[k] = v.clone()
    prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
    for i in range(c.num_co_layers):
        base = f"{prefix}encoder.c_layer.{i}.biOutput."
        state[base + "q_dense1.weight"] = torch.zeros(c.v_hidden_size, c.bi_hidden_size)
        state[base + "q_dense1.bias"] = torch.zeros(c.v_hidden_size)
        state[base + "q_dense2.weight"] = torch.zeros(c.hidden_size, c.bi_hidden_size)
        state[base + "q_dense2.bias"] = torch.zeros(c.hidden_size)
    if old_style:
        renamed = {}
        for k, v in state.items():
            if "LayerNorm" in k:
                k = re.sub(r"\.weight$", ".gamma", k)
                k = re.sub(r"\.bias$", ".beta", k)
            renamed["module." + k] = v
        state = renamed
    return state


def load_official_checkpoint(cls, checkpoint_path, config_path, strict: bool = False):
    """Build `cls` from an official config JSON and load an official checkpoint into it.

    Returns the model; the LoadReport is attached as `model.load_report` and logged. With strict=True,
    any missing or unexpected key raises ValueError listing them.
    """
    config = ViLBertConfig.from_json_file(config_path)
    model = cls(config)
    if not os.path.exists(checkpoint_path):
        raise FileNotFoundError(f"{checkpoint_path}: no such checkpoint")
    try:
        raw = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except Exception as e:  # an unsafe pickle or a corrupt file
        raise ValueError(f"{checkpoint_path}: cannot be read as a weights-only checkpoint ({e})") from e
    if isinstance(raw, dict) and "model_state_dict" in raw:
        raw = raw["model_state_dict"]
    state, dropped = convert_official_state_dict(raw)
    own = model.state_dict()
    if not any(k in own for k in state) and any("bert." + k in own for k in state):
        state = {"bert." + k: v for k, v in state.items()}  # a bare BertModel checkpoint into a full model
    wrong = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
             for k, v in state.items() if k in own and own[k].shape != v.shape]  # fmt: skip
    if wrong:
        raise ValueError(f"{checkpoint_path}: shapes differ from {config_path}: " + "; ".join(wrong))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
        missing = [k for k in missing if k != "cls.predictions.decoder.weight"]
    report = LoadReport(sorted(missing), sorted(unexpected), dropped)
    if strict and (report.missing or report.unexpected):
        raise ValueError(f"{checkpoint_path}: {report}")
    if report.missing or report.unexpected:
        log.warning("loaded %s with %s", checkpoint_path, report)
    model.load_report = report
    return model
