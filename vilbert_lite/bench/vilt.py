"""`vilbert-lite bench vilt`: ViLT's running-time table (ViLT, arXiv 2102.03334, Figure 1) on this machine, region vs grid vs
patch.

One image-text pair, end to end from the raw image, for each way of embedding the image:

    region  proposals (felzenszwalb) -> EfficientNet-Lite0 + RoIAlign (36 regions) -> ViLBERT's region
    embedding
            -> ViLBERT (two streams, co-attention) -> alignment head
    grid    resize + pad -> EfficientNet-Lite0 feature map (Pixel-BERT style) -> Linear per cell -> ViLT
    transformer patch   resize + pad -> Linear per 32 x 32 patch (ViLT) -> the same ViLT transformer

Each stage is timed separately (CUDA synchronised before every clock reading) over `repeats` runs after
`warmup` runs, and the medians are reported: "visual embedding" is everything from the raw image to the visual
tokens that enter the first layer, "transformer" is the rest (text embedding, layers, pooler, head). FLOPs are
counted with torch.utils.flop_counter.FlopCounterMode, 2 per multiply-add, attention through the math kernel
so that it is counted on every device; the proposals (numpy) and RoIAlign's sampling are not matrix products
and count 0. Weights are random: the times do not depend on them. The seed's numbers (ViLT paper, Table 1:
~900 / ~160 / ~15 ms, measured on a P40 GPU with a Faster R-CNN and ResNet detectors) sit next to ours, with
the ratios to the patch row, which are what can be compared across machines.

    result = running_time(preset="base", device="auto")   # dict, also written by `bench()` to
    reports/bench/vilt.json running_time_table(result)                             # pandas table, ours beside
    the seed's
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from vilbert_lite.bench import machine_info, write_json
from vilbert_lite.data.regions import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RegionExtractor,
    load_backbone,
    load_image,
    propose_boxes,
    visual_inputs,
)
from vilbert_lite.data.tokenize import encode
from vilbert_lite.device import resolve_device
from vilbert_lite.errors import UserError
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.heads import ViLBertForPreTraining
from vilbert_lite.repro.reports import markdown
from vilbert_lite.vilt.inputs import GRID_PAD, PIXEL_MEAN, PIXEL_STD, backbone_grid, preprocess
from vilbert_lite.vilt.model import ViLTConfig, ViLTForPreTraining

# ViLT paper, Table 1 (the seed lecture's running-time slide): model (visual + text tokens), params M, GFLOPs,
# ms
SEED_TABLE = {
    "region": ("ViLBERT (36+36)", 274.3, 958.1, 900.0),
    "grid": ("Pixel-BERT-X152 (146+?)", 144.3, 185.8, 160.0),
    "patch": ("ViLT-B/32 (200+40)", 87.4, 55.9, 15.0),
}
DEFAULT_TEXT = "a photo of a small cat with green eyes sitting on a wooden floor next to a wall"


def default_image() -> np.ndarray:
    """A real photo: skimage's `chelsea` (300 x 451, a cat)."""
    from skimage import data  # heavy: only the default sample photo needs scikit-image

    return data.chelsea()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_stages(
    stages: list[tuple[str, Callable]], device: torch.device, repeats: int = 10, warmup: int = 2
) -> dict:
    """Run the stages in order (each gets the previous one's output) warmup + repeats times -> median
    milliseconds per stage and of the per-run totals."""
    runs = []
    with torch.inference_mode():
        for r in range(warmup + repeats):
            x, times = None, {}
            for name, fn in stages:
                _sync(device)
                t0 = time.perf_counter()
                x = fn(x)
                _sync(device)
                times[name] = (time.perf_counter() - t0) * 1e3
            if r >= warmup:
                runs.append(times)
    med = {name: statistics.median(t[name] for t in runs) for name, _ in stages}
    return {"stages_ms": med, "total_ms": statistics.median(sum(t.values()) for t in runs)}


def count_flops(stages: list[tuple[str, Callable]]) -> dict[str, int]:
    """FLOPs of each stage (FlopCounterMode, 2 per multiply-add; attention through the math kernel)."""
    flops, x = {}, None
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
        for name, fn in stages:
            with FlopCounterMode(display=False) as counter:
                x = fn(x)
            flops[name] = int(counter.get_total_flops())
    return flops


def _params(*modules: nn.Module | nn.Parameter) -> int:
    seen = {}
    for m in modules:
        for p in [m] if isinstance(m, nn.Parameter) else m.parameters():
            seen[id(p)] = p
    return sum(p.numel() for p in seen.values())


def _text(device, text: str, text_tokens: int) -> dict:
    return {k: v.to(device) for k, v in encode([text], text_tokens).items()}


def region_pipeline(image: np.ndarray, text: dict, preset: str, device: torch.device, max_regions: int = 36):
    """ViLBERT on region features -> (stages, info). Stages: proposals, cnn_roialign, region_embed,
    transformer."""
    ext = RegionExtractor(max_regions=max_regions, device=str(device))
    cfg = ViLBertConfig.preset(preset).replace(v_feature_size=ext.feature_dim, v_target_size=ext.num_classes)
    model = ViLBertForPreTraining(cfg).to(device).eval()
    bert = model.bert

    def cnn_roialign(boxes):
        v = visual_inputs(ext(image, boxes), max_regions)
        return v["visual_feats"][None].to(device), v["visual_pos"][None].to(device)

    def transformer(v):
        t, t_mask = bert.text_prefix(text["input_ids"], text["attention_mask"], text["token_type_ids"])
        return model.cls.bi_seq_relationship(bert.forward_from_prefix(t, t_mask, *v).pooled_output)

    stages = [
        ("proposals", lambda _: propose_boxes(image, max_regions, ext.proposal_params)),
        ("cnn_roialign", cnn_roialign),
        ("region_embed", lambda fv: bert.vision_prefix(*fv)),
        ("transformer", transformer),
    ]
    n_regions = len(propose_boxes(image, max_regions, ext.proposal_params)) + 1  # + the global IMG region
    params = {
        "cnn": _params(ext.model),
        "visual_embed": _params(bert.v_embeddings),
        "text_embed": _params(bert.embeddings),
        "transformer": _params(bert.encoder, bert.t_pooler, bert.v_pooler, model.cls.bi_seq_relationship),
    }
    info = {"model": f"ViLBERT ({preset} preset)", "visual_tokens": n_regions, "params": params,
            "cnn_input": f"{ext.image_size}x{ext.image_size}",
            "region_stage": ext.settings.get("stage", "head")}  # fmt: skip
    return stages, info


def vilt_pipeline(image: np.ndarray, text: dict, preset: str, device: torch.device, visual_embed: str,
                  image_size: int = 384):  # fmt: skip
    """ViLT with patch or grid embeddings -> (stages, info). Stages: resize, [cnn,] visual_embed,
    transformer."""
    cfg = ViLTConfig.preset(preset, image_size=image_size, visual_embed=visual_embed)
    model = ViLTForPreTraining(cfg).to(device).eval()
    vilt, emb = model.vilt, model.vilt.embeddings

    def transformer(v):
        t, t_mask = vilt.embed_text(text["input_ids"], text["attention_mask"], text["token_type_ids"])
        return model.itm_score(vilt.forward_from_embeddings(t, t_mask, v[0], v[1], v[2]).pooled_output)

    def resize(_, mean=PIXEL_MEAN, std=PIXEL_STD, multiple=cfg.patch_size):
        return {k: x.to(device) for k, x in preprocess(image, image_size, multiple, mean, std).items()}

    visual = [emb.cls_token, emb.position_embeddings, emb.modality_type_embeddings]
    if visual_embed == "patch":
        stages = [
            ("resize", resize),
            ("patch_embed", lambda px: vilt.embed_image(px["pixel_values"], px["pixel_mask"])),
        ]
        params = {"cnn": 0, "visual_embed": _params(emb.patch_embeddings, *visual)}
    else:
        backbone = load_backbone(image_size).to(device)

        def cnn(
            px,
        ):  # ImageNet-normalised pixels -> feature map (B, C, h, w) and the cells that see real pixels
            fmap = backbone_grid(backbone, px["pixel_values"], cfg.grid_stage)
            return fmap, F.adaptive_max_pool2d(px["pixel_mask"][:, None].float(), fmap.shape[-2:])[:, 0]

        stages = [
            ("resize", partial(resize, mean=IMAGENET_MEAN, std=IMAGENET_STD, multiple=GRID_PAD)),
            ("cnn", cnn),
            ("grid_embed", lambda fm: vilt.embed_image(grid_features=fm[0], grid_mask=fm[1])),
        ]
        params = {"cnn": _params(*(m for n, m in backbone.named_children() if n != "_fc")),
                  "visual_embed": _params(emb.grid_embeddings, *visual)}  # fmt: skip
    stages.append(("transformer", transformer))
    x = None
    with torch.inference_mode():
        for _, fn in stages[:-1]:
            x = fn(x)
    params["text_embed"] = _params(emb.text_embeddings)
    params["transformer"] = _params(vilt.encoder, vilt.layernorm, vilt.pooler, model.itm_score)
    name = {
        "patch": f"ViLT ({preset} preset, {cfg.patch_size}x{cfg.patch_size} patches)",
        "grid": f"ViLT transformer on EfficientNet-Lite0 grid cells ({preset} preset)",
    }[visual_embed]
    return stages, {"model": name, "visual_tokens": int(x[1].sum()), "params": params,
                    "visual_grid": list(x[2]), "image_size": image_size}  # fmt: skip


def running_time(image: np.ndarray | None = None, text: str = DEFAULT_TEXT, preset: str = "base",
                 device: str | torch.device = "auto", repeats: int = 10, warmup: int = 2,
                 image_size: int = 384, text_tokens: int = 40, max_regions: int = 36) -> dict:  # fmt: skip
    """Time one image-text pair through the region, grid and patch pipelines -> a JSON-able dict (one row
    each: median ms per stage, visual embedding / transformer / total ms, FLOPs, parameters, token counts)."""
    device = resolve_device(device)
    image = default_image() if image is None else image
    txt = _text(device, text, text_tokens)
    rows = {}
    for kind in ("region", "grid", "patch"):
        torch.manual_seed(0)
        if kind == "region":
            stages, info = region_pipeline(image, txt, preset, device, max_regions)
        else:
            stages, info = vilt_pipeline(image, txt, preset, device, kind, image_size)
        timing = time_stages(stages, device, repeats, warmup)
        flops = count_flops(stages)
        st = timing["stages_ms"]
        embed_ms = sum(v for k, v in st.items() if k != "transformer")
        rows[kind] = {**info, "text_tokens": int(txt["input_ids"].shape[1]), **timing,
                      "visual_embed_ms": embed_ms, "transformer_ms": st["transformer"],
                      "flops": flops, "gflops": sum(flops.values()) / 1e9,
                      "params_total": sum(info["params"].values())}  # fmt: skip
    how = ("medians over `repeats` runs after `warmup`; CUDA synchronised around every stage; FLOPs by "
           "FlopCounterMode (2 per multiply-add, attention via the math kernel); random weights")  # fmt: skip
    return {"rows": rows, "image_hw": list(image.shape[:2]), "text": text, "preset": preset,
            "repeats": repeats, "warmup": warmup, "machine": machine_info(device), "seed_table": SEED_TABLE,
            "how": how}  # fmt: skip


def running_time_table(result: dict):
    """The result as a table: our rows (visual embedding / transformer / total ms, GFLOPs, M params) beside
    the seed's, each with its ratio to the patch row."""
    rows, base = result["rows"], result["rows"]["patch"]
    seed_base = SEED_TABLE["patch"]
    out = []
    for kind, r in rows.items():
        model, s_params, s_gflops, s_ms = SEED_TABLE[kind]
        out.append({
            "visual embed": kind, "ours: model": r["model"],
            "tokens (visual+text)": f"{r['visual_tokens']}+{r['text_tokens']}",
            "params (M)": r["params_total"] / 1e6, "GFLOPs": r["gflops"],
            "visual embed (ms)": r["visual_embed_ms"], "transformer (ms)": r["transformer_ms"],
            "total (ms)": r["total_ms"], "× patch": r["total_ms"] / base["total_ms"],
            "seed: model": model, "seed params (M)": s_params, "seed GFLOPs": s_gflops,
            "seed time (ms)": s_ms, "seed × patch": s_ms / seed_base[3],
        })  # fmt: skip
    return pd.DataFrame(out).set_index("visual embed")


def plot_running_time(result: dict, title: str | None = None, save=None):
    """Bars, log scale: the visual embedding and transformer milliseconds of our three rows, beside the seed's
    totals (ViLT paper, Table 1)."""
    from matplotlib.figure import Figure  # matplotlib loads only when a figure is drawn

    rows = result["rows"]
    kinds = list(rows)
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(kinds))
    embed = np.array([rows[k]["visual_embed_ms"] for k in kinds])
    trans = np.array([rows[k]["transformer_ms"] for k in kinds])
    bars = [("ours: visual embedding", embed, "C1"), ("ours: transformer", trans, "C0"),
            ("seed (ViLT paper): total", np.array([SEED_TABLE[k][3] for k in kinds]), "0.7")]  # fmt: skip
    for j, (label, ms, color) in enumerate(bars):
        ax.barh(y + (j - 1) * 0.27, ms, 0.25, color=color, label=label)
        for i, v in enumerate(ms):
            ax.text(v, y[i] + (j - 1) * 0.27, f" {v:.1f} ms", va="center", fontsize=7)
    ax.set_yticks(y, [f"{k}\n{rows[k]['visual_tokens']}+{rows[k]['text_tokens']} tokens" for k in kinds])
    ax.set_xscale("log")
    ax.set_xlim(right=ax.get_xlim()[1] * 4)
    ax.set(xlabel="milliseconds per image-text pair (log scale)",
           title=title or f"running time, {result['machine']['device']}, preset {result['preset']}")  # fmt: skip
    ax.legend(fontsize=8, loc="lower right")
    ax.invert_yaxis()
    if save:
        fig.savefig(save, dpi=110)
    return fig


def bench(argv: list[str]) -> int:
    """`vilbert-lite bench vilt`: region / grid / patch running time of one image-text pair ->
    reports/bench/vilt.json (+ vilt.md, the table beside the seed's numbers)."""
    ap = argparse.ArgumentParser(prog="vilbert-lite bench vilt", description=bench.__doc__)
    ap.add_argument(
        "--preset", default="base", help="ViLBERT and ViLT preset (base = ViLT-B/32, official ViLBERT)"
    )
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=384, help="shorter side for the grid and patch models")
    ap.add_argument("--image", help="an image file (default: skimage's chelsea photo)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="reports/bench/vilt.json")
    a = ap.parse_args(argv)
    if a.repeats < 1 or a.warmup < 0 or a.image_size < 32:
        raise UserError(f"need --repeats >= 1, --warmup >= 0 and --image-size >= 32, got {a.repeats}, {a.warmup}, "
                        f"{a.image_size}")  # fmt: skip
    image = None
    if a.image:
        image = load_image(a.image)
    result = running_time(image, preset=a.preset, device=a.device, repeats=a.repeats, warmup=a.warmup,
                          image_size=a.image_size)  # fmt: skip
    table = running_time_table(result)
    out = Path(a.out)
    write_json(out, result)
    out.with_suffix(".md").write_text(markdown(table.round(2)) + "\n")
    print(markdown(table.round(2)))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0
