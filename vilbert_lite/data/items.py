"""The records every data source yields: the synthetic world and the real-format readers alike.

Text items refer to images by `image_id` (a string); region features live in a feature store keyed by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RegionFeatures:
    """Detector-style regions of one image (the global IMG region is *not* included; collate adds it)."""

    image_id: str
    image_h: int
    image_w: int
    boxes: np.ndarray  # (N, 4) float32, x1 y1 x2 y2 in pixels
    features: np.ndarray  # (N, D) float32
    cls_prob: np.ndarray  # (N, C) float32, rows sum to 1 (the masked-region target)


@dataclass
class Caption:
    image_id: str
    text: str


@dataclass
class VQAItem:
    question_id: str
    image_id: str
    question: str
    answers: list[str]  # 10 human answers (VQA v2 style)
    qtype: str = ""


@dataclass
class RefExp:
    image_id: str
    text: str
    box: tuple[float, float, float, float]  # ground-truth box, pixels
    obj_id: int = -1


@dataclass
class VCRItem:
    image_id: str
    question: str
    answers: list[str]  # 4
    answer_label: int
    rationales: list[str]  # 4
    rationale_label: int


@dataclass
class RetrievalItem:
    image_id: str
    caption: str
    hard_negative: str  # the caption with one attribute changed


@dataclass
class NLVRItem:
    image_ids: tuple[str, str]
    statement: str
    label: bool
    extra: dict = field(default_factory=dict)
