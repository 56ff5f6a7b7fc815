import math

import pytest
import torch

from vilbert_lite import ViLBertConfig, ViLBertForPreTraining, ViLBertModel, layer_schedule
from vilbert_lite.model.official import convert_official_state_dict, to_official_state_dict

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
    return ViLBertModel(ViLBertConfig.preset("tiny")).eval()


def test_output_shapes(tiny):
    c = tiny.config
    ids, f, p = inputs(c)
    out = tiny(ids, f, p, output_attentions=True, output_hidden_states=True)
    assert out.sequence_output_t.shape == (3, 9, c.hidden_size)
    assert out.sequence_output_v.shape == (3, 6, c.v_hidden_size)
    for x in (out.pooled_output_t, out.pooled_output_v, out.pooled_output):
        assert x.shape == (3, c.bi_hidden_size)
    a = out.attentions
    assert len(a.text) == c.num_hidden_layers and len(a.vision) == c.v_num_hidden_layers
    assert len(a.t2v) == len(a.v2t) == c.num_co_layers
    assert a.text[0].shape == (3, c.num_attention_heads, 9, 9)
    assert a.vision[0].shape == (3, c.v_num_attention_heads, 6, 6)
    assert a.t2v[0].shape == (3, c.bi_num_attention_heads, 9, 6)
    assert a.v2t[0].shape == (3, c.bi_num_attention_heads, 6, 9)
    # embeddings + one state per layer that updates the stream
    assert len(out.hidden_states.text) == 1 + c.num_hidden_layers + c.num_co_layers
    assert len(out.hidden_states.vision) == 1 + c.v_num_hidden_layers + c.num_co_layers
    assert torch.equal(out.hidden_states.text[-1], out.sequence_output_t)
    assert (out.pooled_output_t >= 0).all()  # ReLU poolers


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
    torch.testing.assert_close(out.sequence_output_t[:, :7], ref.sequence_output_t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.sequence_output_v[:, :5], ref.sequence_output_v, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.pooled_output, ref.pooled_output, atol=1e-5, rtol=1e-5)


def test_attention_rows_sum_to_one_and_padded_keys_get_zero(tiny):
    c = tiny.config
    ids, f, p = inputs(c, B=2, T=8, R=6)
    am = torch.ones(2, 8).long()
    am[0, 5:] = 0
    vm = torch.ones(2, 6).long()
    vm[1, 4:] = 0
    a = tiny(ids, f, p, am, vm, output_attentions=True).attentions
    for maps in (a.text, a.vision, a.t2v, a.v2t):
        for m in maps:
            torch.testing.assert_close(m.sum(-1), torch.ones_like(m.sum(-1)))
    for m in a.text + a.v2t:  # keys are words
        assert m[0, ..., 5:].abs().max() == 0
    for m in a.vision + a.t2v:  # keys are regions
        assert m[1, ..., 4:].abs().max() == 0


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_sdpa_and_explicit_paths_agree(preset):
    torch.manual_seed(1)
    m = ViLBertModel(ViLBertConfig.preset(preset)).eval()
    ids, f, p = inputs(m.config, T=12, R=10)
    am = torch.ones_like(ids)
    am[0, 8:] = 0
    fast = m(ids, f, p, am)
    slow = m(ids, f, p, am, output_attentions=True)
    for name in ("sequence_output_t", "sequence_output_v", "pooled_output"):
        torch.testing.assert_close(getattr(fast, name), getattr(slow, name), atol=1e-5, rtol=1e-5)


OFFICIAL_ORDER = {
    # the official BertEncoder loop written out by hand for the published configs
    2: "T0 T1 T2 T3 T4 T5 T6 T7 T8 T9 C0 T10 V0 C1 V1 T11",
    4: "T0 T1 T2 T3 T4 T5 T6 T7 C0 T8 V0 C1 T9 V1 C2 T10 V2 C3 V3 T11",
    6: "T0 T1 T2 T3 T4 T5 C0 T6 V0 C1 T7 V1 C2 T8 V2 C3 T9 V3 C4 T10 V4 C5 V5 T11",
    8: "T0 T1 T2 T3 C0 T4 V0 C1 T5 V1 C2 T6 V2 C3 T7 V3 C4 T8 V4 C5 T9 V5 C6 T10 V6 C7 V7 T11",
}


@pytest.mark.parametrize("n", [2, 4, 6, 8])
def test_layer_order_equals_official(n):
    c = ViLBertConfig.preset(f"depth{n}")
    assert " ".join(f"{s.upper()}{i}" for s, i, _ in layer_schedule(c)) == OFFICIAL_ORDER[n]


def test_execution_follows_schedule_and_fixed_layers_get_no_grad():
    c = ViLBertConfig.preset("small", fixed_t_layer=2)
    m = ViLBertModel(c)
    seen = []
    for kind, layers in (("t", m.encoder.layer), ("v", m.encoder.v_layer), ("c", m.encoder.c_layer)):
        for i, layer in enumerate(layers):
            layer.register_forward_hook(
                lambda mod, a, o, k=kind, i=i: seen.append((k, i, torch.is_grad_enabled()))
            )
    ids, f, p = inputs(c)
    out = m(ids, f, p)
    assert [(k, i) for k, i, _ in seen] == [(k, i) for k, i, _ in m.encoder.schedule]
    assert [g for *_, g in seen] == [not frozen for *_, frozen in m.encoder.schedule]
    out.pooled_output.sum().backward()
    assert m.encoder.layer[0].attention.self.query.weight.grad is None  # frozen
    assert m.encoder.layer[2].attention.self.query.weight.grad is not None


def test_gradients_flow_across_streams_through_co_attention(tiny):
    c = tiny.config
    ids, f, p = inputs(c)
    f = f.clone().requires_grad_(True)
    m = ViLBertModel(c).train(False)
    emb = m.embeddings.word_embeddings.weight
    # text output depends on image features, image output depends on words
    m(ids, f, p).sequence_output_t.sum().backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    m.zero_grad()
    m(ids, f.detach(), p).sequence_output_v.sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_task_tokens():
    c = ViLBertConfig.preset("tiny", task_specific_tokens=True)
    m = ViLBertForPreTraining(c).eval()
    ids, f, p = inputs(c)
    out = m(ids, f, p, task_ids=torch.full((3, 1), 4))
    assert out.sequence_output_t.shape[1] == ids.shape[1] + 1
    assert out.prediction_logits_t.shape == (3, ids.shape[1], c.vocab_size)
    with pytest.raises(ValueError, match="task_ids"):
        m(ids, f, p)


def test_save_load_bit_exact(tmp_path, tiny):
    tiny.save_pretrained(tmp_path)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = ViLBertModel.from_pretrained(tmp_path).eval()
    for k, v in tiny.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    pre = ViLBertForPreTraining(tiny.config)
    pre.save_pretrained(tmp_path / "pre")
    back = ViLBertForPreTraining.from_pretrained(tmp_path / "pre")
    assert back.cls.predictions.decoder.weight is back.bert.embeddings.word_embeddings.weight
    assert torch.equal(back.cls.imagePredictions.decoder.weight, pre.cls.imagePredictions.decoder.weight)
    backbone = ViLBertModel.from_pretrained(tmp_path / "pre")  # the encoder out of a pretraining folder
    assert torch.equal(backbone.v_pooler.dense.weight, pre.bert.v_pooler.dense.weight)


def test_official_names_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    c = ViLBertConfig.preset("tiny")
    model = ViLBertForPreTraining(c).eval()
    official = to_official_state_dict(model, old_style=True)  # module. prefix, gamma/beta, dead q_dense
    for name in [
        "module.bert.embeddings.word_embeddings.weight",
        "module.bert.embeddings.LayerNorm.gamma",
        "module.bert.v_embeddings.image_embeddings.weight",
        "module.bert.v_embeddings.image_location_embeddings.weight",
        "module.bert.encoder.layer.0.attention.self.query.weight",
        "module.bert.encoder.layer.0.attention.output.LayerNorm.beta",
        "module.bert.encoder.v_layer.0.intermediate.dense.weight",
        "module.bert.encoder.c_layer.0.biattention.query1.weight",
        "module.bert.encoder.c_layer.0.biattention.value2.bias",
        "module.bert.encoder.c_layer.0.biOutput.dense1.weight",
        "module.bert.encoder.c_layer.0.biOutput.LayerNorm2.gamma",
        "module.bert.encoder.c_layer.0.biOutput.q_dense1.weight",
        "module.bert.encoder.c_layer.0.v_intermediate.dense.weight",
        "module.bert.encoder.c_layer.0.t_output.LayerNorm.gamma",
        "module.bert.t_pooler.dense.weight",
        "module.bert.v_pooler.dense.weight",
        "module.cls.predictions.bias",
        "module.cls.predictions.transform.dense.weight",
        "module.cls.predictions.decoder.weight",
        "module.cls.bi_seq_relationship.weight",
        "module.cls.imagePredictions.decoder.weight",
    ]:
        assert name in official, name
    assert official["module.cls.imagePredictions.decoder.weight"].shape == (c.v_target_size, c.v_hidden_size)
    converted, dropped = convert_official_state_dict(official)
    assert len(dropped) == 4 * c.num_co_layers
    official["module.vil_prediction.logit_fc.0.weight"] = torch.zeros(
        2, 2
    )  # a task head: reported, not fatal
    ckpt = tmp_path / "pytorch_model_9.bin"
    torch.save(official, ckpt)
    cfg = tmp_path / "config.json"
    c.to_json_file(cfg)
    loaded = ViLBertForPreTraining.from_official_checkpoint(ckpt, cfg).eval()
    assert loaded.load_report.unexpected == ["vil_prediction.logit_fc.0.weight"]
    assert loaded.load_report.missing == []
    ids, f, p = inputs(c)
    a, b = model(ids, f, p), loaded(ids, f, p)
    assert torch.equal(a.prediction_logits_t, b.prediction_logits_t)
    assert torch.equal(a.seq_relationship_logits, b.seq_relationship_logits)
    with pytest.raises(ValueError, match="vil_prediction"):
        ViLBertForPreTraining.from_official_checkpoint(ckpt, cfg, strict=True)


def official_parameter_count(c: ViLBertConfig) -> int:
    """Parameters of the official BertForMultiModalPreTraining, counted from its layer list (REFERENCE §1-2)."""
    lin = lambda i, o: i * o + o  # noqa: E731
    ln = lambda d: 2 * d  # noqa: E731
    H, V, BI = c.hidden_size, c.v_hidden_size, c.bi_hidden_size
    bert_layer = lambda h, ff: 4 * lin(h, h) + ln(h) + lin(h, ff) + lin(ff, h) + ln(h)  # noqa: E731
    emb = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * H + ln(H)
    v_emb = lin(c.v_feature_size, V) + lin(5, V) + ln(V)
    co = 3 * lin(V, BI) + 3 * lin(H, BI) + lin(BI, V) + ln(V) + lin(BI, V) + lin(BI, H) + ln(H) + lin(BI, H)
    co += lin(V, c.v_intermediate_size) + lin(c.v_intermediate_size, V) + ln(V)
    co += lin(H, c.intermediate_size) + lin(c.intermediate_size, H) + ln(H)
    body = emb + v_emb + c.num_hidden_layers * bert_layer(H, c.intermediate_size)
    body += c.v_num_hidden_layers * bert_layer(V, c.v_intermediate_size) + c.num_co_layers * co
    body += lin(H, BI) + lin(V, BI)  # poolers
    heads = lin(H, H) + ln(H) + c.vocab_size + lin(BI, 2) + lin(V, V) + ln(V) + lin(V, c.v_target_size)
    return body + heads


def test_base_parameter_count_is_official_minus_dead_q_dense():
    c = ViLBertConfig.preset("base")
    with torch.device("meta"):
        m = ViLBertForPreTraining(c)
    dead = c.num_co_layers * ((c.bi_hidden_size * c.v_hidden_size + c.v_hidden_size)
                              + (c.bi_hidden_size * c.hidden_size + c.hidden_size))  # fmt: skip
    assert official_parameter_count(c) == 250_044_029  # ≈ 250M, as REFERENCE §1 says
    assert m.num_parameters() == official_parameter_count(c) - dead
    assert math.isclose(dead / 1e6, 11.02, abs_tol=0.01)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda ids, f, p: (ids, f[..., :10], p), "visual_feats"),
        (lambda ids, f, p: (ids, f, p[..., :4]), "visual_pos"),
        (lambda ids, f, p: (ids, f, p * 3), r"\[0, 1\]"),
        (lambda ids, f, p: (ids.float(), f, p), "input_ids"),
        (lambda ids, f, p: (ids, f[:2], p[:2]), "visual_feats"),
    ],
)
def test_bad_input_names_the_argument(tiny, mutate, match):
    ids, f, p = inputs(tiny.config)
    with pytest.raises(ValueError, match=match):
        tiny(*mutate(ids, f, p))


def test_bad_mask_shapes(tiny):
    ids, f, p = inputs(tiny.config)
    with pytest.raises(ValueError, match="visual_attention_mask"):
        tiny(ids, f, p, visual_attention_mask=torch.ones(3, 2))
    with pytest.raises(ValueError, match="attention_mask"):
        tiny(ids, f, p, attention_mask=torch.ones(3, 2))


def test_heads_run_only_at_given_positions():
    c = ViLBertConfig.preset("tiny")
    m = ViLBertForPreTraining(c).eval()
    ids, f, p = inputs(c)
    lm = torch.zeros_like(ids, dtype=torch.bool)
    lm[0, 2] = lm[2, 5] = True
    rg = torch.zeros(3, 6, dtype=torch.bool)
    rg[1, 3] = True
    out = m(ids, f, p, lm_positions=lm, region_positions=rg)
    assert out.prediction_logits_t.shape == (2, c.vocab_size)
    assert out.prediction_logits_v.shape == (1, c.v_target_size)
    full = m(ids, f, p)
    torch.testing.assert_close(out.prediction_logits_t[1], full.prediction_logits_t[2, 5])
    assert out.seq_relationship_logits.shape == (3, 2)


def test_text_stream_from_pretrained_bert_reproduces_bert_hidden_states():
    from transformers import BertModel

    from vilbert_lite.data.tokenize import bert_model_path

    path = bert_model_path()
    # MiniLM-L6-H384: the text stream takes its sizes; co-attention after text layer 3
    c = ViLBertConfig.preset("small", hidden_size=384, num_attention_heads=12, intermediate_size=1536,
                             max_position_embeddings=512, v_biattention_id=[0, 1, 2], t_biattention_id=[3, 4, 5])  # fmt: skip
    m = ViLBertModel(c).eval()
    copied = m.init_text_from_bert(path)
    assert "encoder.layer.5.output.LayerNorm.weight" in copied
    bert = BertModel.from_pretrained(str(path), local_files_only=True).eval()
    ids, f, p = inputs(c, T=10)
    am = torch.ones_like(ids)
    am[1, 7:] = 0
    with torch.no_grad():
        ref = bert(input_ids=ids, attention_mask=am, output_hidden_states=True).hidden_states
        hs = m(ids, f, p, attention_mask=am, output_hidden_states=True).hidden_states.text
    for i in range(4):  # embeddings + the 3 text layers before the first co-attention
        torch.testing.assert_close(hs[i], ref[i], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="hidden_size"):
        ViLBertModel(ViLBertConfig.preset("tiny")).init_text_from_bert(path)
