import json

import pytest

from vilbert_lite import ViLBertConfig
from vilbert_lite.model.config import PRESETS, co_attention_ids

CONFIGS = "vilbert_lite/configs"


def test_official_json_loads_unchanged_and_round_trips(tmp_path):
    c = ViLBertConfig.from_json_file(f"{CONFIGS}/bert_base_6layer_6conect.json")
    assert c == ViLBertConfig.preset("base")
    assert (c.hidden_size, c.v_hidden_size, c.bi_hidden_size, c.v_target_size) == (768, 1024, 1024, 1601)
    assert c.v_biattention_id == [0, 1, 2, 3, 4, 5] and c.t_biattention_id == [6, 7, 8, 9, 10, 11]
    c.to_json_file(tmp_path / "c.json")
    assert ViLBertConfig.from_json_file(tmp_path / "c.json") == c


@pytest.mark.parametrize("n", [2, 4, 6, 8])
def test_depth_configs_match_presets(n):
    c = ViLBertConfig.from_json_file(f"{CONFIGS}/bert_base_{n}layer_{n}conect.json")
    assert c == ViLBertConfig.preset(f"depth{n}")
    assert c.v_num_hidden_layers == n and c.num_co_layers == n
    assert (c.v_biattention_id, c.t_biattention_id) == co_attention_ids(n, 12)


def test_baseline_json_loads():
    c = ViLBertConfig.from_json_file(f"{CONFIGS}/bert_base_baseline.json")
    assert c.hidden_size == 768 and c.num_hidden_layers == 12


def test_unknown_key_and_wrong_type_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="'hiden_size'"):
        ViLBertConfig.from_dict({"hiden_size": 3})
    with pytest.raises(ValueError, match="'v_hidden_size' expects int"):
        ViLBertConfig.from_dict({"v_hidden_size": "1024"})
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        ViLBertConfig.from_json_file(p)


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(v_biattention_id=[0, 1], t_biattention_id=[11]), "equal length"),
        (dict(v_biattention_id=[1, 0, 2, 3, 4, 5]), "strictly increasing"),
        (dict(t_biattention_id=[6, 7, 8, 9, 10, 13]), r"\[0, 12\]"),
        (dict(v_num_attention_heads=7), "not a multiple"),
        (dict(fusion_method="concat"), "fusion_method"),
        (dict(fixed_t_layer=7), "fixed_t_layer"),
    ],
)
def test_invalid_configs(changes, match):
    with pytest.raises(ValueError, match=match):
        ViLBertConfig.preset("base", **changes)


def test_presets_exist_and_are_json_serialisable():
    for name in PRESETS:
        c = ViLBertConfig.preset(name)
        assert ViLBertConfig.from_dict(json.loads(c.to_json_string())) == c
    with pytest.raises(ValueError, match="unknown preset"):
        ViLBertConfig.preset("huge")
