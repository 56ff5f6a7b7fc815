"""Which device a computation runs on, and moving batches there."""

from __future__ import annotations

from typing import Any

import torch

from vilbert_lite.errors import UserError


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """The device for `spec`: "auto" is cuda if available, else cpu; anything else goes to torch.device.
    A name torch does not know, or cuda on a machine without CUDA, is a UserError."""
    if str(spec) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as e:
        raise UserError(
            f"device {str(spec)!r} is not a device name (expected auto, cpu, cuda or cuda:N)"
        ) from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {str(spec)!r}: CUDA is not available on this machine; use cpu or auto")
    return device


def to_device(x: Any, device: torch.device) -> Any:
    """Move tensors (also inside dicts, lists and tuples) to `device`; other values are returned as is."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    if isinstance(x, list | tuple):
        items = [to_device(v, device) for v in x]
        return type(x)(*items) if hasattr(x, "_fields") else type(x)(items)  # namedtuples too
    return x
