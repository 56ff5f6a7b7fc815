"""ViLT beside ViLBERT (issue #15): the model, odd image sizes, whole-word masking, augmentation, word-patch
alignment, checkpoints across model kinds, the running-time bench, heatmaps and the pretraining entry
point."""

import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from vilbert_lite import ViLBertConfig, ViLBertForPreTraining, ViLBertModel
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.pretrain.objectives import aligned_prob, alignment_loss, special_ids
from vilbert_lite.vilt.inputs import preprocess, rand_augment
from vilbert_lite.vilt.model import ViLTConfig, ViLTForPreTraining, ViLTModel
from vilbert_lite.vilt.pretrain import (
    ipot,
    vilt_pretraining_loss,
    whole_word_mask,
    word_patch_distance,
    wordpiece_continuations,
)


def tiny(**kw) -> ViLTConfig:
    return ViLTConfig.preset("tiny", **kw)


def ids_batch(B=2, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (B, T), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    return ids


# ------------------------------------------------------------------------------------------------ config
def test_vilt_pretraining_takes_the_profiles_alignment_weight_on_itm():
    from vilbert_lite.profiles import get_profile
    from vilbert_lite.vilt.pretrain import recipe_weights

    cpu = get_profile("cpu")
    assert recipe_weights(cpu)["itm"] == cpu.pretrain_weights["align"] == 3.0
    assert recipe_weights(cpu, {"itm": 1.0, "wpa": 0.0}) == {"mlm": 1.0, "itm": 1.0, "wpa": 0.0}
    assert recipe_weights(get_profile("smoke")) == {"mlm": 1.0, "itm": 1.0, "wpa": 0.1}


def test_config_json_round_trip_presets_and_errors(tmp_path):
    for name in ("tiny", "mini", "small", "base"):
        c = ViLTConfig.preset(name)
        c.to_json_file(tmp_path / "c.json")
        assert ViLTConfig.from_json_file(tmp_path / "c.json") == c
        assert json.loads(c.to_json_string())["model_type"] == "vilt"
    base = ViLTConfig.preset("base")
    assert (base.hidden_size, base.num_hidden_layers, base.patch_size, base.image_size) == (768, 12, 32, 384)
    mini, vb_mini = ViLTConfig.preset("mini"), ViLBertConfig.preset("mini")  # one recipe for both at `cpu`
    assert mini.hidden_size == vb_mini.hidden_size and mini.initializer_range == vb_mini.initializer_range
    assert mini.hidden_dropout_prob == vb_mini.hidden_dropout_prob == 0.0
    assert mini.attention_probs_dropout_prob == vb_mini.attention_probs_dropout_prob == 0.0
    with pytest.raises(ValueError, match="unknown key 'v_hidden_size'"):
        ViLTConfig.from_dict({"v_hidden_size": 3})
    with pytest.raises(ValueError, match="visual_embed"):
        tiny(visual_embed="region")
    with pytest.raises(ValueError, match="multiple of"):
        tiny(num_attention_heads=3)


# ------------------------------------------------------------------------------------------------ shapes
def test_forward_shapes_patch_and_grid():
    torch.manual_seed(0)
    ids = ids_batch()
    m = ViLTForPreTraining(tiny()).eval()
    out = m(ids, torch.randn(2, 3, 128, 96), output_attentions=True, output_hidden_states=True)
    N = (128 // 16) * (96 // 16)
    assert out.sequence_output_t.shape == (2, 6, 64) and out.sequence_output_v.shape == (2, 1 + N, 64)
    assert out.patch_grid == (8, 6) and out.pooled_output.shape == (2, 64)
    assert out.prediction_logits_t.shape == (2, 6, 30522) and out.seq_relationship_logits.shape == (2, 2)
    assert len(out.attentions) == 3 and out.attentions[0].shape == (2, 2, 6 + 1 + N, 6 + 1 + N)
    assert len(out.hidden_states) == 4
    g = ViLTForPreTraining(tiny(visual_embed="grid", grid_feature_size=112)).eval()
    out = g(ids, grid_features=torch.randn(2, 112, 5, 4), lm_positions=torch.zeros(2, 6, dtype=torch.bool))
    assert out.sequence_output_v.shape == (2, 21, 64) and out.prediction_logits_t.shape == (0, 30522)
    with pytest.raises(ValueError, match="reads grid_features"):
        g(ids, torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="grid_features: expected"):
        g(ids, grid_features=torch.randn(2, 1280, 5, 4))


def test_sdpa_and_explicit_attention_agree():
    torch.manual_seed(0)
    m = ViLTModel(tiny()).eval()
    ids, x = ids_batch(), torch.randn(2, 3, 64, 64)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    a = m(ids, x, attention_mask=mask).sequence_output_v
    b = m(ids, x, attention_mask=mask, output_attentions=True).sequence_output_v
    assert torch.allclose(a, b, atol=1e-5)


# ------------------------------------------------------------------------------------------ odd image sizes
def test_odd_image_sizes_are_resized_or_padded_never_an_error():
    c = tiny()
    tiny_img, odd_img = np.full((5, 7, 3), 200, np.uint8), np.full((37, 50, 3), 90, np.uint8)
    px = preprocess([tiny_img, odd_img], c.image_size, c.patch_size)  # ViLT resize: shorter side to 128
    assert px["pixel_values"].shape[-2:] == (128, 192)  # 128 x 179 and 128 x 173, padded to a multiple of 16
    assert int(px["pixel_mask"][0].sum()) == 128 * 179 and int(px["pixel_mask"][1].sum()) == 128 * 173
    px = preprocess([tiny_img, odd_img], c.image_size, c.patch_size, resize=False)
    assert px["pixel_values"].shape[-2:] == (48, 64)  # 5x7 enlarged to 16x22, 37x50 padded to 48x64
    assert int(px["pixel_mask"][0].sum()) == 16 * 22 and int(px["pixel_mask"][1].sum()) == 37 * 50
    m = ViLTModel(c).eval()
    out = m(ids_batch(), px["pixel_values"], pixel_mask=px["pixel_mask"])
    assert out.visual_mask[0].sum() == 1 + 1 * 2 and out.visual_mask[1].sum() == 1 + 3 * 4
    for shape in [(1, 3, 1, 1), (1, 3, 5, 7), (1, 3, 17, 33)]:  # raw tensors: padded by the model
        out = m(ids_batch(B=1), torch.randn(shape))
        h, w = -(-shape[2] // 16), -(-shape[3] // 16)
        assert out.patch_grid == (h, w) and out.visual_mask.sum() == 1 + h * w
        assert torch.isfinite(out.pooled_output).all()


def test_padding_does_not_move_a_patch():
    torch.manual_seed(0)
    m = ViLTModel(tiny()).eval()
    small, big = torch.randn(1, 3, 48, 64), torch.randn(1, 3, 96, 80)
    alone, mask_a, _ = m.embed_image(small)
    batch = torch.zeros(2, 3, 96, 80)
    batch[0, :, :48, :64], batch[1] = small[0], big[0]
    pmask = torch.zeros(2, 96, 80, dtype=torch.long)
    pmask[0, :48, :64], pmask[1] = 1, 1
    both, mask_b, (h, w) = m.embed_image(batch, pmask)
    grid = both[0, 1:].view(h, w, -1)[:3, :4].reshape(12, -1)  # the small image's 3 x 4 real patches
    assert torch.allclose(grid, alone[0, 1:], atol=1e-6) and torch.allclose(both[0, 0], alone[0, 0])
    assert mask_b[0].sum() == 13 and mask_a.sum() == 13


# ------------------------------------------------------------------------------------------ whole-word
# masking
def test_whole_word_masking_masks_every_wordpiece_of_a_word_together():
    tok = get_tokenizer()
    enc = tok(["a purple hexagon and a cyan diamond on a cream background"] * 64, return_tensors="pt")
    ids, words = enc["input_ids"], enc.word_ids(0)
    assert {len([w for w in words if w == i]) for i in set(words) - {None}} >= {
        1,
        2,
        3,
    }  # he ##xa ##gon, cy ##an
    cont, special = wordpiece_continuations(tok), special_ids(tok)
    chosen_words = total_words = 0
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        masked, labels = whole_word_mask(ids, enc["attention_mask"], cont, special, tok.vocab_size, g)
        chosen = labels != -1
        assert not chosen[:, 0].any() and not chosen[:, -1].any()  # [CLS], [SEP]
        for wid in set(words) - {None}:
            cols = [i for i, w in enumerate(words) if w == wid]
            same = chosen[:, cols]
            assert (same.all(1) | ~same.any(1)).all(), f"word {wid} split"
            fate = masked[:, cols] == tok.mask_token_id
            assert (fate.all(1) | ~fate.any(1)).all()
            chosen_words += int(same[:, 0].sum())
            total_words += len(ids)
        assert (labels[chosen] == ids[chosen]).all() and (masked[~chosen] == ids[~chosen]).all()
    assert 0.12 < chosen_words / total_words < 0.18


# ------------------------------------------------------------------------------------------------
# augmentation
def test_rand_augment_moves_pixels_but_never_changes_a_colour():
    g = torch.Generator().manual_seed(0)
    flat = torch.tensor([0.86, 0.12, 0.14]).view(1, 3, 1, 1).expand(8, 3, 32, 32).clone()  # a red image
    assert torch.allclose(rand_augment(flat, g), flat, atol=1e-5)  # no op may alter a colour
    x = torch.zeros(16, 3, 32, 32)
    x[:, 0, 8:24, 8:24] = 1.0  # a red square on black
    y = rand_augment(x, g, magnitude=15)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    assert (y - x).abs().amax((1, 2, 3)).gt(0.5).sum() >= 8  # most images moved
    assert torch.allclose(y[:, 1:], torch.zeros_like(y[:, 1:]), atol=1e-6)  # green and blue stay 0: still red


# --------------------------------------------------------------------------------------- word-patch alignment
def test_ipot_plan_has_uniform_marginals_and_ignores_padding():
    g = torch.Generator().manual_seed(0)
    C = torch.rand(2, 5, 7, generator=g)
    xm = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    ym = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0, 0]])
    T = ipot(C, xm, ym)
    assert torch.allclose(T.sum(1)[0, :6], torch.full((6,), 1 / 6), atol=1e-5)
    assert torch.allclose(T.sum(2)[0, :4], torch.full((4,), 1 / 4), atol=2e-3)
    assert torch.allclose(T.sum(2)[1], torch.full((5,), 1 / 5), atol=2e-3)
    assert T[0, 4].abs().sum() == 0 and T[0, :, 6].abs().sum() == 0 and T[1, :, 3:].abs().sum() == 0
    t = torch.randn(1, 6, 16, generator=g)  # [CLS] w1..w4 [SEP]
    v = torch.cat([torch.randn(1, 1, 16, generator=g), t[:, 1:5]], 1)  # [IMG] + the words themselves
    same, _ = word_patch_distance(t, torch.ones(1, 6), v, torch.ones(1, 5))
    other, _ = word_patch_distance(t, torch.ones(1, 6), torch.randn(1, 5, 16, generator=g), torch.ones(1, 5))
    assert same < 0.05 < other


# ---------------------------------------------------------------------------------------------- checkpoints
def test_save_load_round_trip_and_the_cross_kind_error(tmp_path):
    torch.manual_seed(0)
    for tied in (True, False):
        m = ViLTForPreTraining(tiny(tie_word_embeddings=tied)).eval()
        m.save_pretrained(tmp_path / f"vilt_{tied}")
        back = ViLTForPreTraining.from_pretrained(tmp_path / f"vilt_{tied}").eval()
        ids, x = ids_batch(), torch.randn(2, 3, 32, 48)
        a, b = m(ids, x), back(ids, x)
        assert torch.equal(a.prediction_logits_t, b.prediction_logits_t)
        assert torch.equal(a.seq_relationship_logits, b.seq_relationship_logits)
        assert (
            back.mlm_score.decoder.weight is back.vilt.embeddings.text_embeddings.word_embeddings.weight
        ) == tied
    core = ViLTModel.from_pretrained(
        tmp_path / "vilt_False"
    ).eval()  # the backbone out of the pretraining model
    assert torch.equal(core(ids, x).pooled_output, m.vilt(ids, x).pooled_output)
    for cls in (ViLBertForPreTraining, ViLBertModel):
        with pytest.raises(ValueError, match=r"ViLT checkpoint \(ViLTForPreTraining\).*ViLBERT model"):
            cls.from_pretrained(tmp_path / "vilt_False")
    ViLBertModel(ViLBertConfig.preset("tiny")).save_pretrained(tmp_path / "vilbert")
    for cls in (ViLTForPreTraining, ViLTModel):
        with pytest.raises(ValueError, match=r"ViLBERT checkpoint \(ViLBertModel\).*ViLT model"):
            cls.from_pretrained(tmp_path / "vilbert")
    assert type(ViLBertModel.from_pretrained(tmp_path / "vilbert")) is ViLBertModel  # ViLBERT still loads


# ------------------------------------------------------------------------------------------------ learning
@pytest.mark.parametrize("views", [2, 1])
def test_loss_decreases_on_a_fixed_batch(views):
    torch.manual_seed(0)
    tok = get_tokenizer()
    enc = tok([f"a {c} square on a white background" for c in ("red", "cyan", "green", "purple")] * 2,
              return_tensors="pt", padding=True)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    batch = {**enc, "image": torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.uint8),
             "image_index": torch.arange(8)}  # fmt: skip
    model = ViLTForPreTraining(tiny())
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, fused=True)
    cont, special = wordpiece_continuations(tok), special_ids(tok)
    losses = []
    for _ in range(25):
        loss, logs = vilt_pretraining_loss(
            model, batch, cont, special, None, torch.Generator().manual_seed(1), views=views
        )
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert set(logs) >= {"mlm", "itm", "wpa", "align_acc", "mlm_acc"}
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_one_view_is_one_pass_of_b_pairs_masked_after_the_swap():
    """views=1 (ViLBERT's arrangement): the model sees B pairs once; the masked words are the swapped captions'
    (their labels are the words of the caption each image got), matching reads the same pass. views=2: 2B pairs,
    the masked words are the true captions'."""
    from vilbert_lite.pretrain.objectives import swap_captions

    tok = get_tokenizer()
    enc = tok([f"a {c} {s} on a white background" for c in ("red", "cyan", "green", "purple")
               for s in ("star", "square")], return_tensors="pt", padding=True)  # fmt: skip
    batch = {
        **enc,
        "image": torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8),
        "image_index": torch.arange(8),
    }
    model = ViLTForPreTraining(tiny())
    seen = []
    model.register_forward_hook(lambda m, args, kw, out: seen.append((args[0].clone(), kw["lm_positions"])),
                                with_kwargs=True)  # fmt: skip
    cont, special = wordpiece_continuations(tok), special_ids(tok)
    for views, rows in ((1, 8), (2, 16)):
        seen.clear()
        vilt_pretraining_loss(model, batch, cont, special, None, torch.Generator().manual_seed(3), views=views,
                              mask_prob=0.5)  # fmt: skip
        ((ids, lm_pos),) = seen
        assert ids.shape[0] == rows and lm_pos.shape[0] == rows and lm_pos.any()
    sw = swap_captions(batch, torch.Generator().manual_seed(3), 0.5)
    assert (sw["alignment_label"] == 0).any()
    kept = ids[:8] == batch["input_ids"]  # views=2: the first view is the true captions, masked
    assert kept[~lm_pos[:8]].all()
    seen.clear()
    vilt_pretraining_loss(
        model, batch, cont, special, None, torch.Generator().manual_seed(3), views=1, mask_prob=0.5
    )
    ((ids1, lm1),) = seen
    assert (ids1 == sw["input_ids"])[~lm1].all()  # unmasked positions read the swapped captions
    with pytest.raises(ValueError, match="views"):
        vilt_pretraining_loss(model, batch, cont, special, views=3)


def test_the_profiles_vilt_recipe_reaches_the_config_and_the_run_key(tmp_path, monkeypatch):
    from dataclasses import replace

    from vilbert_lite import profiles
    from vilbert_lite.vilt.model import resolve_vilt_config
    from vilbert_lite.vilt.pretrain import pretrain_vilt

    smoke = profiles.get_profile("smoke")
    assert resolve_vilt_config("smoke").patch_size == 16
    monkeypatch.setitem(
        profiles._PROFILES, "smoke", replace(smoke, vilt_recipe={"views": 1, "config": {"patch_size": 32}})
    )
    assert resolve_vilt_config("smoke").patch_size == 32
    assert resolve_vilt_config("smoke", config_overrides={"patch_size": 16}).patch_size == 16
    monkeypatch.setenv("VILBERT_LITE_CACHE", str(tmp_path / "cache"))
    run = pretrain_vilt("smoke", 0, tmp_path / "runs", train_overrides={"max_steps": 1}, progress=False)
    rc = json.loads((run / "run_config.json").read_text())
    assert rc["views"] == 1 and rc["model"]["patch_size"] == 32
    two = pretrain_vilt(
        "smoke", 0, tmp_path / "runs", train_overrides={"max_steps": 1}, progress=False, views=2
    )
    assert two != run and "views" not in json.loads((two / "run_config.json").read_text())


def test_tiny_vilt_learns_a_toy_matching_task():
    """Caption "[CLS] <colour> [SEP]", image = a 32 x 32 field of one of 4 colours; matched half the time."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    colours = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    cfg = tiny(
        vocab_size=2010, initializer_range=0.05, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    model = ViLTForPreTraining(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    hits = []
    for _ in range(150):
        img_c = torch.randint(4, (32,), generator=g)
        match = torch.rand(32, generator=g) < 0.5
        word = torch.where(match, img_c, (img_c + torch.randint(1, 4, (32,), generator=g)) % 4)
        ids = torch.stack([torch.full((32,), 101), 2000 + word, torch.full((32,), 102)], 1)
        x = colours[img_c][:, :, None, None].expand(32, 3, 32, 32) + 0.1 * torch.randn(
            32, 3, 32, 32, generator=g
        )
        logits = model(ids, x, lm_positions=torch.zeros(32, 3, dtype=torch.bool)).seq_relationship_logits
        loss = alignment_loss(logits, match.long())
        loss.backward()
        opt.step()
        opt.zero_grad()
        hits.append(((aligned_prob(logits) > 0.5) == match).float().mean().item())
    assert np.mean(hits[-30:]) > 0.9, f"accuracy over the last 30 steps {np.mean(hits[-30:]):.3f}"


# ------------------------------------------------------------------------------------------ bench, heatmaps
def test_running_time_bench_writes_json_and_table(tmp_path):
    from vilbert_lite.bench.vilt import bench, plot_running_time

    out = tmp_path / "vilt.json"
    argv = ["--preset", "tiny", "--repeats", "2", "--warmup", "0", "--image-size", "64", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    assert bench(argv) == 0
    r = json.loads(out.read_text())
    assert set(r["rows"]) == {"region", "grid", "patch"}
    for row in r["rows"].values():
        assert row["total_ms"] > 0 and row["transformer_ms"] > 0 and row["visual_embed_ms"] > 0
        assert row["flops"]["transformer"] > 0 and row["gflops"] > 0 and row["params_total"] > 0
    assert r["rows"]["region"]["flops"]["cnn_roialign"] > r["rows"]["patch"]["flops"]["patch_embed"] > 0
    assert r["rows"]["grid"]["flops"]["cnn"] > 0 and r["rows"]["region"]["visual_tokens"] <= 37
    table = out.with_suffix(".md").read_text()
    assert "seed time (ms)" in table and "900.00" in table and "60.00" in table  # the seed's 900 ms, 900/15
    assert isinstance(plot_running_time(r), Figure)


def test_word_patch_heatmaps_one_map_per_word():
    from vilbert_lite.viz.vilt import (
        plot_augmentations,
        plot_visual_tokens,
        plot_word_patch_heatmaps,
        word_patch_maps,
    )

    torch.manual_seed(0)
    tok = get_tokenizer()
    img = np.random.default_rng(0).integers(0, 255, (100, 150, 3)).astype(np.uint8)
    m = ViLTForPreTraining(tiny())
    for source in ("attention", "transport"):
        maps = word_patch_maps(m, tok, img, "a cyan hexagon", source=source)
        assert maps.words == ["a", "cyan", "hexagon"] and maps.maps.shape == (3, 8, 12)
        assert np.allclose(maps.maps.sum((1, 2)), 1, atol=1e-5) and (maps.maps >= 0).all()
        assert maps.image.shape == (128, 192, 3) and maps.cell == (16.0, 16.0)
    assert isinstance(plot_word_patch_heatmaps(maps), Figure)
    assert isinstance(plot_visual_tokens(img, np.array([[10, 10, 50, 40]]), 32, 16), Figure)
    assert isinstance(plot_augmentations(img, n=3), Figure)


# ------------------------------------------------------------------------------------------------ pretraining
def test_pretrain_vilt_smoke_run_and_reuse(tmp_path, monkeypatch):
    from vilbert_lite.vilt.pretrain import load_vilt, plan_pretrain_vilt, pretrain_vilt
    from vilbert_lite.viz.vilt import accuracy_table

    monkeypatch.setenv("VILBERT_LITE_CACHE", str(tmp_path / "cache"))
    done = {}
    for embed in ("patch", "grid"):
        run = done[embed] = pretrain_vilt(
            "smoke", 0, tmp_path / "runs", embed, train_overrides={"max_steps": 2}, progress=False
        )
        ev = json.loads((run / "eval.json").read_text())
        assert {"alignment_acc", "mlm_acc", "color_acc", "shape_acc", "color_shape_acc"} <= set(ev)
        assert ev["steps"] == 2 and ev["n_val_captions"] == 48
        assert load_vilt(run).config.visual_embed == embed
        assert pretrain_vilt("smoke", 0, tmp_path / "runs", embed, train_overrides={"max_steps": 2}) == run
        assert (
            plan_pretrain_vilt("smoke", 0, tmp_path / "runs", embed, train_overrides={"max_steps": 2})[0]
            == run
        )
    assert (tmp_path / "cache" / "grid").is_dir()
    table = accuracy_table(done)
    assert list(table.columns) == ["patch", "grid"] and table.loc["optimizer steps"].tolist() == [2, 2]
    assert 0 <= table.iloc[0, 0] <= 1
    with pytest.raises(ValueError, match="augment"):
        pretrain_vilt("smoke", 0, tmp_path / "runs", "grid", augment=True)


def test_command_line_wiring(capsys):
    from vilbert_lite.cli import main

    for argv in (["vilt", "--help"], ["bench", "vilt", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "vilbert-lite vilt" in out and "--embed {patch,grid}" in out and "vilbert-lite bench vilt" in out
    # fine-tuning a ViLT from the command line: a region task is refused in one line, before any data work
    assert main(["finetune", "vcr", "--init", "none", "--backbone", "vilt", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "vilbert-lite finetune: error:" in err and "vqa, retrieval, zeroshot, nlvr" in err


# ------------------------------------------------------------------------------------------- fine-tuning
def _saved_vilt_run(path, visual_embed="patch"):
    from vilbert_lite.vilt.model import resolve_vilt_config

    torch.manual_seed(0)
    pre = ViLTForPreTraining(resolve_vilt_config("smoke", visual_embed)).eval()
    pre.save_pretrained(path / "model")
    return pre


def test_a_vilt_run_fine_tunes_the_pooled_output_tasks_with_its_own_backbone_and_matching_head(tmp_path):
    from vilbert_lite.tasks import finetune
    from vilbert_lite.tasks.common import alignment_head, init_kind, load_backbone
    from vilbert_lite.tasks.retrieval import heads, zero_shot_heads

    run = tmp_path / "run"
    pre = _saved_vilt_run(run)
    assert init_kind(run) == "vilt" and alignment_head(run) == "itm_score"
    bert = load_backbone(run, pre.config, "vilt")
    assert type(bert) is ViLTModel
    for k, v in pre.vilt.state_dict().items():
        assert torch.equal(bert.state_dict()[k], v), k
    # ViLT's itm_score, under its ViLBERT name
    head = zero_shot_heads(pre.config, None, run)["bi_seq_relationship"]
    assert torch.equal(head.weight, pre.itm_score.weight) and head.in_features == pre.config.hidden_size
    vil = heads(pre.config, None, run)["vil_logit"]  # fine-tuned retrieval starts from the matching log-odds
    x = torch.randn(3, pre.config.hidden_size)
    logits = pre.itm_score(x)
    torch.testing.assert_close(vil(x)[:, 0], logits[:, 0] - logits[:, 1])

    m = finetune("nlvr", run, "smoke", 0, root=tmp_path, progress=False, train_overrides={"max_steps": 2})
    assert m["backbone"] == "vilt" and 0 <= m["nlvr_accuracy"] <= 1 and m["train_loss_start"] > 0
    run_cfg = json.loads(next((tmp_path / "finetune").glob("nlvr-*/run_config.json")).read_text())
    assert run_cfg["model"]["model_type"] == "vilt" and run_cfg["data"]["features"] == "patch"
    zs = finetune("zeroshot", run, "smoke", 0, root=tmp_path, progress=False)
    assert zs["backbone"] == "vilt" and 0 <= zs["r@1"] <= 1 and zs["pool"] > 1


def test_vilt_fine_tuning_refuses_region_tasks_and_the_other_model_family(tmp_path):
    from vilbert_lite.errors import UserError
    from vilbert_lite.tasks import finetune

    run = tmp_path / "vilt"
    _saved_vilt_run(run)
    for task in ("vcr", "refer"):
        with pytest.raises(UserError, match="vqa, retrieval, zeroshot, nlvr"):
            finetune(task, run, "smoke", 0, root=tmp_path, progress=False)
    with pytest.raises(UserError, match="holds a vilt model.*backbone 'vilbert'"):
        finetune("vqa", run, "smoke", 0, backbone="vilbert", root=tmp_path, progress=False)
    ViLBertForPreTraining(ViLBertConfig.preset("tiny")).save_pretrained(tmp_path / "vilbert" / "model")
    with pytest.raises(UserError, match="holds a vilbert model.*backbone 'vilt_grid'"):
        finetune("vqa", tmp_path / "vilbert", "smoke", 0, backbone="vilt_grid", root=tmp_path, progress=False)
    with pytest.raises(UserError, match="question-only"):
        finetune("vqa", None, "smoke", 0, backbone="vilt", blank_images=True, root=tmp_path, progress=False)
    assert not (tmp_path / "finetune").exists()  # every refusal comes before any run folder


def test_retrieval_scores_of_a_vilt_are_its_per_pair_matching_scores():
    """score_matrix over captions x images (no prefix caching for a single stream) gives, for every pair,
    the score of that pair alone through the task model."""
    from vilbert_lite.data.collate import pad_text
    from vilbert_lite.tasks.common import TaskModel
    from vilbert_lite.tasks.retrieval import forward, heads, pair_score, score_matrix

    torch.manual_seed(0)
    config = tiny(image_size=32, patch_size=16)
    m = TaskModel(ViLTModel(config), forward, **heads(config, None, None)).eval()
    texts = pad_text([ids_batch(1, 5, s)[0] for s in range(3)] + [ids_batch(1, 7, 9)[0]])
    images = {"image": torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)}
    scores = score_matrix(m, texts, images, batch_size=3)
    assert scores.shape == (4, 2)
    with torch.no_grad():
        for c in range(4):
            for i in range(2):
                one = {k: v[c : c + 1] for k, v in texts.items()} | {"image": images["image"][i : i + 1]}
                torch.testing.assert_close(scores[c, i], pair_score(m, m.encode(one).pooled_output)[0])


def test_accuracy_against_time_scatter_draws_a_point_per_row_and_column():
    import pandas as pd

    from vilbert_lite.repro import vilt_table

    long = pd.DataFrame([dict(row=row, seed=s, column=col, value=10.0 * i + s, chance=5.0)
                         for i, row in enumerate(vilt_table.ROWS) for s in range(3)
                         for col in ("vqa_accuracy", "r@1")])  # fmt: skip
    summary = vilt_table.summarize(long)
    ms = {"region": 900.0, "grid": 160.0, "patch": 15.0}
    timing = {"rows": {k: {"total_ms": v} for k, v in ms.items()}}
    fig = vilt_table.plot_accuracy_vs_time(summary, timing, long)
    assert len(fig.axes) == 2 and all(len(ax.lines) >= 4 for ax in fig.axes)  # 3 points (+ bars) + chance
    with pytest.raises(ValueError, match="unknown row"):
        vilt_table.run_cell("nope", "smoke", 0)


def test_vilt_table_trains_the_costliest_cells_first_and_returns_rows_in_table_order(monkeypatch, tmp_path):
    """Two workers finish together when the long cells start first (patch, then grid, then region); the long
    DataFrame still comes out in the table's row order."""
    from vilbert_lite.repro import experiments, vilt_table

    assert set(vilt_table.COST_ORDER) == set(vilt_table.ROWS)
    started = []

    def job(args):
        row, _, seed, _ = args
        started.append((row, seed))
        return [dict(row=row, seed=seed, column="VQA", value=float(seed), chance=0.0, init="i", run="r")]

    monkeypatch.setattr(vilt_table, "_job", job)
    monkeypatch.setattr(experiments, "prepare_data", lambda profile: None)
    long = vilt_table.run_table("smoke", [0, 1], root=tmp_path, progress=False)
    assert started == [(row, s) for row in vilt_table.COST_ORDER for s in (0, 1)]
    assert list(long.row) == [row for row in vilt_table.ROWS for _ in (0, 1)]
