import inspect
import json

import pytest
import torch

from vilbert_lite import ViLBertConfig, ViLBertForPreTraining, ViLBertModel
from vilbert_lite.model.single_stream import (
    MODEL_KINDS,
    SingleStreamForPreTraining,
    SingleStreamModel,
    build_model,
    kind_of,
    load_any,
    matched_config,
    parameter_counts,
)

torch.set_num_threads(2)


def inputs(c, B=3, T=9, R=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, c.vocab_size, (B, T), generator=g)
    feats = torch.randn(B, R, c.v_feature_size, generator=g)
    xy = torch.rand(B, R, 2, generator=g) * 0.5
    wh = torch.rand(B, R, 2, generator=g) * 0.5
    pos = torch.cat([xy, xy + wh, (wh[..., :1] * wh[..., 1:])], dim=-1)
    return ids, feats, pos


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return SingleStreamModel(ViLBertConfig.preset("tiny")).eval()


def test_shapes_attentions_and_hidden_states(tiny):
    c = tiny.config
    assert c.v_hidden_size == c.hidden_size and c.num_co_layers == 0
    out = tiny(*inputs(c), output_attentions=True, output_hidden_states=True)
    H, h, L = c.hidden_size, c.num_attention_heads, c.num_hidden_layers
    assert out.sequence_output_t.shape == (3, 9, H) and out.sequence_output_v.shape == (3, 6, H)
    for x in (out.pooled_output_t, out.pooled_output_v, out.pooled_output):
        assert x.shape == (3, c.bi_hidden_size)
    torch.testing.assert_close(out.pooled_output, out.pooled_output_t)  # eval: [CLS] pooler, no dropout
    a = out.attentions
    assert len(a.text) == len(a.t2v) == len(a.v2t) == len(a.vision) == L
    assert a.text[0].shape == (3, h, 15, 15)
    assert a.t2v[0].shape == (3, h, 9, 6) and a.v2t[0].shape == (3, h, 6, 9)
    assert a.vision[0].shape == (3, h, 6, 6)
    torch.testing.assert_close(a.text[0].sum(-1), torch.ones(3, h, 15))
    assert len(out.hidden_states.text) == len(out.hidden_states.vision) == 1 + L
    assert torch.equal(out.hidden_states.vision[-1], out.sequence_output_v)
    # the explicit (maps) path and the fused SDPA path agree
    fast = tiny(*inputs(c))
    torch.testing.assert_close(fast.sequence_output_v, out.sequence_output_v, atol=1e-5, rtol=1e-5)


def test_padding_leaves_real_positions_unchanged(tiny):
    c = tiny.config
    ids, f, p = inputs(c, B=2, T=7, R=5)
    ref = tiny(ids, f, p)
    ids_pad = torch.cat([ids, torch.randint(1, 100, (2, 4))], 1)
    f_pad = torch.cat([f, torch.randn(2, 3, c.v_feature_size)], 1)
    p_pad = torch.cat([p, torch.rand(2, 3, 5)], 1)
    am = torch.cat([torch.ones(2, 7), torch.zeros(2, 4)], 1).long()
    vm = torch.cat([torch.ones(2, 5), torch.zeros(2, 3)], 1).long()
    out = tiny(ids_pad, f_pad, p_pad, attention_mask=am, visual_attention_mask=vm)
    tol = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.sequence_output_t[:, :7], ref.sequence_output_t, **tol)
    torch.testing.assert_close(out.sequence_output_v[:, :5], ref.sequence_output_v, **tol)
    torch.testing.assert_close(out.pooled_output, ref.pooled_output, **tol)


def test_prefix_caching_matches_forward(tiny):
    ids, f, p = inputs(tiny.config)
    t, tm = tiny.text_prefix(ids)
    v, vm = tiny.vision_prefix(f, p)
    assert torch.equal(tiny.forward_from_prefix(t, tm, v, vm).pooled_output, tiny(ids, f, p).pooled_output)


def test_same_forward_signature_as_vilbert():
    sig = inspect.signature
    assert sig(SingleStreamModel.forward) == sig(ViLBertModel.forward)
    assert sig(SingleStreamForPreTraining.forward) == sig(ViLBertForPreTraining.forward)
    for name in ("text_prefix", "vision_prefix", "forward_from_prefix"):
        assert sig(getattr(SingleStreamModel, name)) == sig(getattr(ViLBertModel, name))


def test_heads_run_only_at_given_positions_and_task_tokens():
    c = ViLBertConfig.preset("tiny", task_specific_tokens=True)
    m = SingleStreamForPreTraining(c).eval()
    ids, f, p = inputs(c)
    task = torch.full((3, 1), 4)
    lm = torch.zeros_like(ids, dtype=torch.bool)
    lm[0, 2] = lm[2, 5] = True
    rg = torch.zeros(3, 6, dtype=torch.bool)
    rg[1, 3] = True
    out = m(ids, f, p, task_ids=task, lm_positions=lm, region_positions=rg)
    assert out.sequence_output_t.shape == (3, 10, c.hidden_size)  # + the task slot
    assert out.prediction_logits_t.shape == (2, c.vocab_size)
    assert out.prediction_logits_v.shape == (1, c.v_target_size)
    assert out.seq_relationship_logits.shape == (3, 2)
    full = m(ids, f, p, task_ids=task)
    torch.testing.assert_close(out.prediction_logits_t[1], full.prediction_logits_t[2, 5])
    torch.testing.assert_close(out.prediction_logits_v[0], full.prediction_logits_v[1, 3])
    assert m.cls.predictions.decoder.weight is m.bert.embeddings.word_embeddings.weight


def test_gradients_reach_text_and_visual_embeddings():
    c = ViLBertConfig.preset("tiny")
    m = SingleStreamForPreTraining(c)
    out = m(*inputs(c))
    (out.seq_relationship_logits.sum() + out.prediction_logits_v.sum()).backward()
    for p in (m.bert.embeddings.word_embeddings.weight, m.bert.v_embeddings.image_embeddings.weight,
              m.bert.v_embeddings.image_location_embeddings.weight, m.bert.v_embeddings.token_type_embeddings.weight):  # fmt: skip
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_save_load_bit_exact_and_load_any(tmp_path):
    c = matched_config(ViLBertConfig.preset("tiny"))
    ids, f, p = inputs(c)
    for pretraining in (True, False):
        m = build_model("single_stream", c, pretraining=pretraining).eval()
        d = tmp_path / type(m).__name__
        m.save_pretrained(d)
        assert json.loads((d / "config.json").read_text())["architectures"] == [type(m).__name__]
        for loaded in (type(m).from_pretrained(d), load_any(d)):
            assert type(loaded) is type(m) and kind_of(loaded) == "single_stream"
            assert loaded.config == m.config
            a, b = m(ids, f, p), loaded.eval()(ids, f, p)
            assert torch.equal(a.pooled_output, b.pooled_output)
            assert torch.equal(a.sequence_output_v, b.sequence_output_v)
    # the backbone alone, read out of a pretraining model's folder (its bert.* weights)
    backbone = SingleStreamModel.from_pretrained(tmp_path / "SingleStreamForPreTraining")
    assert backbone.config.num_hidden_layers == c.num_hidden_layers
    v = build_model("vilbert", ViLBertConfig.preset("tiny"), pretraining=False)
    v.save_pretrained(tmp_path / "v")
    assert type(load_any(tmp_path / "v")) is ViLBertModel and kind_of(v) == "vilbert"
    (tmp_path / "v" / "config.json").write_text(json.dumps({"architectures": ["Nope"]}))
    with pytest.raises(ValueError, match="SingleStreamModel"):
        load_any(tmp_path / "v")
    with pytest.raises(ValueError, match="single_stream"):
        build_model("two_stream", c)


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_parameter_budget_matches_vilbert(preset):
    c = ViLBertConfig.preset(preset)
    counts = parameter_counts(c)
    assert abs(counts["ratio"] - 1) < 0.10, counts
    m = matched_config(c)
    assert matched_config(m) is m  # already single-stream: unchanged
    if preset == "tiny":  # the chosen depth is the best one
        with torch.device("meta"):
            for d in (-1, 1):
                other = SingleStreamForPreTraining(m.replace(num_hidden_layers=m.num_hidden_layers + d))
                n = other.num_parameters()
                assert abs(n - counts["vilbert"]) >= abs(counts["single_stream"] - counts["vilbert"])
    assert set(MODEL_KINDS) == {"vilbert", "single_stream"}


def test_init_from_bert_copies_the_first_layers():
    from vilbert_lite.data.tokenize import bert_model_path

    c = ViLBertConfig.preset("small", hidden_size=384, num_attention_heads=12, intermediate_size=1536,
                             max_position_embeddings=512, num_hidden_layers=7)  # fmt: skip
    m = SingleStreamModel(c)
    copied = m.init_text_from_bert(bert_model_path())  # MiniLM: 6 layers of 7
    assert {"encoder.layer.5.output.LayerNorm.weight", "embeddings.word_embeddings.weight"} <= set(copied)
    assert not any(k.startswith("encoder.layer.6.") for k in copied)
    with pytest.raises(ValueError, match="word_embeddings"):
        SingleStreamModel(ViLBertConfig.preset("tiny")).init_text_from_bert(bert_model_path())
