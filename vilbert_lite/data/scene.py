"""Scenes of the synthetic world: coloured shapes with boxes and a scene graph, and their rendering (no text:
the texts of every task are texts.py, the world of seeded splits world.py).

Conventions
- Coordinates are pixels, origin top-left, x to the right, y down. Boxes are tight around the drawn polygon.
- `SceneObject.obj_id` is the object's index in `Scene.objects`, which is also the drawing (z) order: later
  objects may partly cover earlier ones, but every object keeps most of its box uncovered (MAX_COVER).
- The scene graph `Scene.relations` holds triples (subject_id, predicate, object_id) for every pair where the
  predicate holds; predicates are PREDICATES, decided from the geometry (`_relation_matrices`):
  left_of / right_of: centres differ in x by more than REL_MARGIN * side; above / below: the same in y;
  near: the gap between the two boxes is below NEAR_GAP * side; larger_than: size "large" vs "small".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from PIL import Image, ImageDraw

from vilbert_lite.profiles import WorldSize

# Saturated, well separated object colours (the backgrounds are pale, so every colour stands out).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "green": (30, 160, 60),
    "blue": (35, 70, 225),
    "yellow": (245, 215, 20),
    "purple": (135, 45, 175),
    "orange": (250, 135, 20),
    "cyan": (20, 205, 215),
    "black": (25, 25, 25),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross", "hexagon")
SIZES = ("small", "large")
# Radius as a fraction of the image side; a shape's box side is 1.8-2 * radius (small 18-24 %, large 30-38 %).
SIZE_RADIUS = {"small": (0.1, 0.12), "large": (0.165, 0.19)}
# Pale background tints (one word each, so captions can say "on a blue background").
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (246, 246, 244),
    "gray": (200, 200, 204),
    "cream": (243, 234, 200),
    "blue": (200, 220, 245),
    "green": (208, 236, 205),
    "pink": (245, 212, 222),
}
BACKGROUND_KINDS = ("plain", "vertical", "horizontal", "diagonal", "radial")
PREDICATES = ("left_of", "right_of", "above", "below", "near", "larger_than")
REL_MARGIN = 0.06  # fraction of the image side: centres closer than this are neither left/right (above/below)
NEAR_GAP = 0.08  # fraction of the image side: boxes closer than this are "near"
MAX_COVER = 0.2  # at most this fraction of an object's box may overlap other objects' boxes (sum over others)


def _unit_polygon(shape: str) -> np.ndarray:
    """The shape's outline as (K, 2) vertices inside [-1, 1]^2, centred on 0, before scaling and rotation."""
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], 1)
    if shape == "square":
        return np.array([[-0.9, -0.9], [0.9, -0.9], [0.9, 0.9], [-0.9, 0.9]])
    if shape == "triangle":
        return np.array([[0.0, -0.95], [1.0, 0.8], [-1.0, 0.8]])
    if shape == "star":
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([r * np.cos(t), r * np.sin(t) + 0.1], 1)
    if shape == "diamond":
        return np.array([[0.0, -1.0], [0.75, 0.0], [0.0, 1.0], [-0.75, 0.0]])
    if shape == "cross":
        a, w = 0.95, 0.34
        return np.array(
            [
                [-w, -a],
                [w, -a],
                [w, -w],
                [a, -w],
                [a, w],
                [w, w],
                [w, a],
                [-w, a],
                [-w, w],
                [-a, w],
                [-a, -w],
                [-w, -w],
            ]
        )
    if shape == "hexagon":
        t = np.arange(6) * np.pi / 3
        return np.stack([np.cos(t), np.sin(t)], 1)
    raise ValueError(f"unknown shape {shape!r}")


def _extents(shape: str) -> np.ndarray:
    """(2 * MAX_ANGLE + 1, 4): the unit polygon's box (x1, y1, x2, y2) at each whole-degree rotation."""
    out = []
    for deg in range(-MAX_ANGLE, MAX_ANGLE + 1):
        t = math.radians(deg)
        p = _UNIT[shape] @ np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
        out.append(np.concatenate([p.min(0), p.max(0)]))
    return np.array(out)


MAX_ANGLE = 15  # shapes other than circles are rotated by a whole number of degrees in [-15, 15]
_UNIT = {s: _unit_polygon(s) for s in SHAPES}
_EXTENT = {s: _extents(s) for s in SHAPES}


@dataclass(frozen=True)
class SceneObject:
    """One shape in a scene. `box` is the tight box of the drawn polygon: (x1, y1, x2, y2) pixels."""

    obj_id: int
    shape: str
    color: str
    size: str  # "small" | "large"
    box: tuple[float, float, float, float]
    center: tuple[float, float]  # rendering parameters: centre (x, y), radius and rotation (degrees)
    radius: float
    angle: float
    rgb: tuple[int, int, int]  # the drawn fill: COLORS[color] with a little jitter

    def polygon(self) -> np.ndarray:
        """(K, 2) pixel vertices of the outline."""
        a = math.radians(self.angle)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        return _UNIT[self.shape] @ rot.T * self.radius + np.asarray(self.center)


@dataclass
class Scene:
    scene_id: str
    split: str
    width: int
    height: int
    objects: list[SceneObject]
    relations: list[tuple[int, str, int]]  # (subject obj_id, predicate, object obj_id), all that hold
    background: str  # tint name, a key of BACKGROUNDS
    background_kind: str  # one of BACKGROUND_KINDS
    render_seed: int  # seeds the background noise
    extra: dict = field(default_factory=dict)

    @cached_property
    def relation_set(self) -> frozenset[tuple[int, str, int]]:
        return frozenset(self.relations)


def relation_holds(scene: Scene, a: int, pred: str, b: int) -> bool:
    """Whether `objects[a] pred objects[b]` holds in the scene graph (rules: `_relation_matrices`)."""
    if pred not in PREDICATES:
        raise ValueError(f"unknown predicate {pred!r}")
    return (a, pred, b) in scene.relation_set


def _relation_matrices(boxes: np.ndarray, sizes: list[str], side: int) -> dict[str, np.ndarray]:
    """{predicate: (N, N) bool}, entry [a, b] = "object a pred object b" (the module docstring has the rules)."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    m = REL_MARGIN * side
    gx = np.maximum(
        0, np.maximum(boxes[:, None, 0], boxes[None, :, 0]) - np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    )
    gy = np.maximum(
        0, np.maximum(boxes[:, None, 1], boxes[None, :, 1]) - np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    )
    large = np.array([z == "large" for z in sizes])
    rel = {
        "left_of": cx[None, :] - cx[:, None] > m,
        "right_of": cx[:, None] - cx[None, :] > m,
        "above": cy[None, :] - cy[:, None] > m,
        "below": cy[:, None] - cy[None, :] > m,
        "near": np.hypot(gx, gy) < NEAR_GAP * side,
        "larger_than": large[:, None] & ~large[None, :],
    }
    np.fill_diagonal(rel["near"], False)
    return rel


def generate_scene(rng: np.random.Generator, scene_id: str, split: str, side: int,
                   object_counts: tuple[float, ...] = WorldSize.object_counts) -> Scene:  # fmt: skip
    """Sample one scene: n objects (n = 1, 2, ... drawn with weights `object_counts`), placed by rejection so that
    each keeps >= 1 - MAX_COVER of its box free (a full canvas may stop early, never below min(n, 2))."""
    w = np.asarray(object_counts, float)
    want, tries = int(rng.choice(len(w), p=w / w.sum())) + 1, 60
    objects: list[SceneObject] = []
    boxes = np.zeros((0, 4))  # (n, 4) boxes of the placed objects
    cover = np.zeros(0)  # (n,) box area of each placed object overlapped by the others
    while len(objects) < want:
        color, shape = str(rng.choice(list(COLORS))), str(rng.choice(SHAPES))
        if objects and rng.random() < 0.3:  # repeat an attribute now and then: counting and disambiguation
            other = objects[int(rng.integers(len(objects)))]
            color, shape = (other.color, shape) if rng.random() < 0.5 else (color, other.shape)
        size = "large" if rng.random() < 0.4 else "small"
        # all candidate placements at once; the second half falls back to "small"
        lo, hi = np.array([SIZE_RADIUS[size]] * (tries // 2) + [SIZE_RADIUS["small"]] * (tries // 2)).T
        radius = rng.uniform(lo, hi) * side  # (T,)
        angle = np.zeros(tries, int) if shape == "circle" else rng.integers(-MAX_ANGLE, MAX_ANGLE + 1, tries)
        center = rng.uniform(radius + 2, side - radius - 2, (2, tries)).T  # (T, 2)
        cand = np.tile(center, 2) + radius[:, None] * _EXTENT[shape][angle + MAX_ANGLE]  # (T, 4) boxes
        w = np.minimum(cand[:, None, 2], boxes[None, :, 2]) - np.maximum(cand[:, None, 0], boxes[None, :, 0])
        h = np.minimum(cand[:, None, 3], boxes[None, :, 3]) - np.maximum(cand[:, None, 1], boxes[None, :, 1])
        ov = np.clip(w, 0, None) * np.clip(h, 0, None)  # (T, n) overlap with each placed box
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        ok = (ov.sum(1) <= MAX_COVER * area(cand)) & ((cover + ov) <= MAX_COVER * area(boxes)).all(1)
        if not ok.any():  # the canvas is full: stop here (but keep at least two objects when two were wanted)
            if len(objects) >= 2:
                break
            continue
        i = int(np.argmax(ok))
        rgb = tuple(int(v) for v in np.clip(np.array(COLORS[color]) + rng.integers(-12, 13, size=3), 0, 255))
        box = tuple(float(v) for v in cand[i])
        size = size if i < tries // 2 else "small"
        objects.append(
            SceneObject(
                len(objects),
                shape,
                color,
                size,
                box,
                tuple(center[i].tolist()),
                float(radius[i]),
                float(angle[i]),
                rgb,
            )
        )
        boxes, cover = np.vstack([boxes, cand[i]]), np.append(cover + ov[i], ov[i].sum())
    rel = _relation_matrices(boxes, [o.size for o in objects], side)
    n = len(objects)
    return Scene(
        scene_id=scene_id,
        split=split,
        width=side,
        height=side,
        objects=objects,
        relations=[(a, p, b) for a in range(n) for b in range(n) for p in PREDICATES if rel[p][a, b]],
        background=str(rng.choice(list(BACKGROUNDS))),
        background_kind=str(rng.choice(BACKGROUND_KINDS)),
        render_seed=int(rng.integers(2**31 - 1)),
    )


def _background(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 background: the tint, a gentle gradient (kind) and light pixel noise."""
    h, w = scene.height, scene.width
    tint = np.array(BACKGROUNDS[scene.background], np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = {
        "plain": np.zeros((h, w), np.float32),
        "vertical": yy / h,
        "horizontal": xx / w,
        "diagonal": (xx + yy) / (w + h),
        "radial": np.hypot(xx / w - 0.5, yy / h - 0.5) * 1.4,
    }[scene.background_kind]
    strength = float(rng.uniform(18, 40))  # darken towards one end, keeping the tint's hue
    img = tint[None, None, :] * (1 - strength / 255.0 * ramp[..., None])
    return img + rng.normal(0, float(rng.uniform(1, 5)), (h, w, 1)).astype(np.float32)


def render(scene: Scene) -> np.ndarray:
    """Draw the scene: (H, W, 3) uint8. Deterministic (the noise comes from `scene.render_seed`)."""
    rng = np.random.default_rng(scene.render_seed)
    bg = np.clip(_background(scene, rng), 0, 255).astype(np.uint8)
    img = Image.fromarray(bg, "RGB")
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:  # z-order = list order
        outline = tuple(int(v * 0.6) for v in obj.rgb)
        draw.polygon([tuple(p) for p in obj.polygon().tolist()], fill=obj.rgb, outline=outline)
    out = np.asarray(img, np.int16) + rng.integers(-3, 4, (scene.height, scene.width, 1), dtype=np.int16)
    return np.clip(out, 0, 255).astype(np.uint8)


def visible_masks(scene: Scene) -> np.ndarray:
    """(N, H, W) bool: the pixels where each object is visible (drawn and not covered by later objects)."""
    label = Image.new("I", (scene.width, scene.height), -1)
    draw = ImageDraw.Draw(label)
    for obj in scene.objects:
        draw.polygon([tuple(p) for p in obj.polygon().tolist()], fill=obj.obj_id)
    lab = np.asarray(label)
    return (
        np.stack([lab == i for i in range(len(scene.objects))])
        if scene.objects
        else np.zeros((0,) + lab.shape, bool)
    )
