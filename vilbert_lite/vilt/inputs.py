"""ViLT's visual inputs: images resized and normalised for patches, CNN grid cells, RandAugment without
colour ops, and the world's images or grids cached per run."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from vilbert_lite import runs
from vilbert_lite.data.regions import IMAGENET_MEAN, IMAGENET_STD, load_backbone, load_image
from vilbert_lite.data.store import cache_dir
from vilbert_lite.vilt.model import ViLTConfig

PIXEL_MEAN = (0.5, 0.5, 0.5)  # ViLT normalises pixels to [-1, 1]
PIXEL_STD = (0.5, 0.5, 0.5)
MAX_LONGER_RATIO = 640 / 384  # ViLT: shorter side 384, longer side at most 640
GRID_PAD = 32  # grid images are padded to a multiple of the CNN's largest stride


# ---------------------------------------------------------------------------------------------- images
def resize_for_vilt(img: np.ndarray, size: int, min_side: int = 1) -> np.ndarray:
    """ViLT's resize of an (H, W, 3) uint8 image: shorter side to `size`, longer side at most 640/384 of it
    (aspect kept), and neither side below `min_side` (one patch)."""
    H, W = img.shape[:2]
    s = size / min(H, W)
    s = min(s, size * MAX_LONGER_RATIO / max(H, W))
    h, w = max(min_side, round(H * s)), max(min_side, round(W * s))
    if (h, w) == (H, W):
        return img
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC))


def preprocess(images, image_size: int, patch_size: int, mean=PIXEL_MEAN, std=PIXEL_STD,
               resize: bool = True) -> dict[str, torch.Tensor]:  # fmt: skip
    """Images (arrays, PIL images or paths) -> pixel_values (B, 3, H, W) normalised, pixel_mask (B, H, W)
    long.

    Each image is resized with `resize_for_vilt` (or, with resize=False, only enlarged to one patch when
    smaller), then padded on the right and bottom to the batch's largest size rounded up to a multiple of
    `patch_size`."""
    imgs = [load_image(im) for im in (images if isinstance(images, (list, tuple)) else [images])]
    if resize:
        imgs = [resize_for_vilt(im, image_size, patch_size) for im in imgs]
    else:  # only an image smaller than a patch is enlarged (shorter side to one patch)
        imgs = [
            resize_for_vilt(im, patch_size, patch_size) if min(im.shape[:2]) < patch_size else im
            for im in imgs
        ]
    H = -(-max(im.shape[0] for im in imgs) // patch_size) * patch_size
    W = -(-max(im.shape[1] for im in imgs) // patch_size) * patch_size
    x = torch.zeros(len(imgs), 3, H, W)
    m = torch.zeros(len(imgs), H, W, dtype=torch.long)
    mean, std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    for i, im in enumerate(imgs):
        h, w = im.shape[:2]
        x[i, :, :h, :w] = (torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 - mean) / std
        m[i, :h, :w] = 1
    return {"pixel_values": x, "pixel_mask": m}


def backbone_grid(backbone: nn.Module, x: torch.Tensor, stage: str = "head") -> torch.Tensor:
    """ImageNet-normalised images (B, 3, H, W) -> the EfficientNet-Lite0 feature map of `stage`: "head" (the
    1280-d last conv stage, stride 32) or "blockN" (the output of MBConv block N)."""
    m = backbone
    h = m._swish(m._bn0(m._conv_stem(x)))
    last = len(m._blocks) - 1 if stage == "head" else int(stage[5:])
    for block in m._blocks[: last + 1]:
        h = block(h, drop_connect_rate=None)
    return m._swish(m._bn1(m._conv_head(h))) if stage == "head" else h


@torch.no_grad()
def grid_inputs(
    backbone: nn.Module, images, config: ViLTConfig, resize: bool = True
) -> dict[str, torch.Tensor]:
    """Images -> the grid model's inputs: grid_features (B, C, h, w) from the frozen CNN and grid_mask (B,
    h, w) (cells that see a real pixel). Images are resized like ViLT's, ImageNet-normalised and padded to a
    multiple of GRID_PAD, the CNN's largest stride."""
    device = next(backbone.parameters()).device
    px = preprocess(images, config.image_size, GRID_PAD, IMAGENET_MEAN, IMAGENET_STD, resize)
    fmap = backbone_grid(backbone, px["pixel_values"].to(device), config.grid_stage)
    mask = F.adaptive_max_pool2d(px["pixel_mask"][:, None].float().to(device), fmap.shape[-2:])[:, 0].long()
    return {"grid_features": fmap, "grid_mask": mask}


RAND_AUGMENT_OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "sharpness")


# ----------------------------------------------------------------------------------------------- augmentation
def rand_augment(x: torch.Tensor, generator: torch.Generator | None = None, n_ops: int = 2,
                 magnitude: float = 9.0) -> torch.Tensor:  # fmt: skip
    """RandAugment without colour ops or cutout on images (B, 3, H, W) in [0, 1]: each image gets `n_ops` ops
    drawn from RAND_AUGMENT_OPS (with replacement), each at `magnitude` of 30 with a random sign: shear up to
    0.3, translation up to 0.45 of the side, rotation up to 30 degrees, sharpness factor 1 +- 0.9
    (torchvision's scales). The geometric ops are composed into one affine warp per image (edges repeat the
    border: no black fill, which would read as a black object); colours are never changed."""
    B, _, H, W = x.shape
    m = magnitude / 30
    ops = torch.randint(len(RAND_AUGMENT_OPS), (B, n_ops), generator=generator)
    sign = torch.randint(0, 2, (B, n_ops), generator=generator).float() * 2 - 1
    theta = torch.eye(3).repeat(B, 1, 1)  # output -> input coordinates, normalised to [-1, 1]
    sharp = torch.ones(B)
    for k in range(n_ops):
        step = torch.eye(3).repeat(B, 1, 1)
        for i, name in enumerate(RAND_AUGMENT_OPS):
            sel, s = ops[:, k] == i, sign[:, k]
            if name == "shear_x":
                step[sel, 0, 1] = (0.3 * m * s)[sel] * H / W
            elif name == "shear_y":
                step[sel, 1, 0] = (0.3 * m * s)[sel] * W / H
            elif name == "translate_x":
                step[sel, 0, 2] = (2 * 0.45 * m * s)[sel]
            elif name == "translate_y":
                step[sel, 1, 2] = (2 * 0.45 * m * s)[sel]
            elif name == "rotate":
                a = torch.deg2rad(30 * m * s)[sel]
                step[sel, 0, 0], step[sel, 0, 1] = torch.cos(a), -torch.sin(a) * H / W
                step[sel, 1, 0], step[sel, 1, 1] = torch.sin(a) * W / H, torch.cos(a)
            elif name == "sharpness":
                sharp[sel] = sharp[sel] * (1 + 0.9 * m * s)[sel]
        theta = theta @ step
    theta, sharp = theta.to(x), sharp.to(x).view(B, 1, 1, 1)
    grid = F.affine_grid(theta[:, :2], list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    kernel = (
        torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], device=x.device, dtype=x.dtype) / 13
    )  # PIL's SMOOTH
    smooth = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel.expand(3, 1, 3, 3), groups=3)
    return (smooth + sharp * (x - smooth)).clamp(0, 1)


def visual_kwargs(batch: dict, generator: torch.Generator | None = None, augment: bool = False) -> dict:
    """A collated batch's image part -> the model's visual keyword arguments: "image" (B, 3, H, W) uint8
    becomes normalised pixel_values (augmented if asked), "grid_features" (B, C, h, w) is passed on as
    float."""
    if "image" in batch:
        x = batch["image"].float() / 255
        if augment:
            x = rand_augment(x, generator)
        mean, std = (torch.tensor(s, device=x.device).view(1, 3, 1, 1) for s in (PIXEL_MEAN, PIXEL_STD))
        return {"pixel_values": (x - mean) / std, "pixel_mask": batch.get("pixel_mask")}
    return {"grid_features": batch["grid_features"].float(), "grid_mask": batch.get("grid_mask")}


# ------------------------------------------------------------------------------------------------------ data
def world_visual(
    world, image_ids: list[str], config: ViLTConfig, progress: bool = False
) -> tuple[dict, dict]:
    """image_id -> dataset item keys for `config.visual_embed`: {"image": (3, H, W) uint8} (patch), or
    {"grid_features": (C, h, w) float16} from the frozen EfficientNet-Lite0 (grid), cached under
    <cache>/grid/ by world, stage and size. Returns (the map, info)."""
    t0 = time.perf_counter()
    if config.visual_embed == "patch":
        visual = {
            i: {"image": torch.from_numpy(np.ascontiguousarray(world.image(i).transpose(2, 0, 1)))}
            for i in image_ids
        }
        return visual, {"seconds": round(time.perf_counter() - t0, 2), "cached": False}

    path = cache_dir() / "grid" / f"world-{world.key}-{config.grid_stage}-{config.image_size}.pt"
    cached = torch.load(path, weights_only=True) if path.exists() else {}
    todo = [i for i in image_ids if i not in cached]
    if todo:
        backbone = load_backbone(config.image_size)
        mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in (IMAGENET_MEAN, IMAGENET_STD))
        for s in tqdm(range(0, len(todo), 32), desc="grid", disable=not progress):
            ids = todo[s : s + 32]
            x = torch.stack([torch.from_numpy(world.image(i)) for i in ids]).permute(0, 3, 1, 2).float() / 255
            with torch.no_grad():
                fmap = backbone_grid(backbone, (x - mean) / std, config.grid_stage).half()
            cached.update(zip(ids, fmap))
        runs.atomic_torch_save(cached, path)
    visual = {i: {"grid_features": cached[i]} for i in image_ids}
    return visual, {"seconds": round(time.perf_counter() - t0, 2), "cached": not todo, "path": str(path)}


def grid_width(config: ViLTConfig) -> int:
    """Channels of one grid cell of `config` (its `grid_feature_size`): the width of the EfficientNet-Lite0
    stage `config.grid_stage` that `world_visual` stores, read from the backbone without running it."""
    m = load_backbone(config.image_size)
    stage = config.grid_stage
    return m._fc.in_features if stage == "head" else m._blocks[int(stage[5:])]._block_args.output_filters
