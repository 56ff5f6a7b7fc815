"""Which device a computation runs on, moving batches there, and the layout a run was trained in."""

from __future__ import annotations

import platform
from pathlib import Path
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


SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_name() -> str:
    """The processor's model name and the vector instruction sets the math kernels choose between, e.g.
    "AMD EPYC (avx avx2 fma avx512f)" (from /proc/cpuinfo on Linux, else `platform.processor()`)."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    name = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].split() for ln in info if ln.startswith("flags")), [])
    simd = " ".join(f for f in SIMD_FLAGS if f in flags)
    return f"{name} ({simd})" if simd else name


def layout(device: torch.device) -> dict:
    """What a run's floating-point sums depend on besides its seed: the device (its GPU's name), the number of
    torch threads, the torch version and the processor. The same seed in another layout is another sample."""
    out = {"device": str(device), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    out["gpu" if device.type == "cuda" else "cpu"] = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    )
    return out
