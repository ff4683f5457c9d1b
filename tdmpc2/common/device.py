"""Device and thread-count choices, made explicitly and in one place."""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

MATMUL_PRECISIONS = ("highest", "high", "medium")


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> the first CUDA device when present, else CPU. A CUDA request without CUDA fails."""
    from tdmpc2.config import ConfigError

    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"Config key 'device' is '{name}' but no CUDA device is available; use device=cpu or auto.")
    return torch.device(name)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextmanager
def matmul_precision(level: str):
    """float32 matmuls at torch's `level` inside the block, the previous setting restored after.
    highest: float32 everywhere. high: TF32 on CUDA, float32 on CPU. medium: inputs rounded to
    bfloat16 with float32 accumulation (AMX / AVX512-BF16 CPUs and CUDA; float32 elsewhere)."""
    previous = torch.get_float32_matmul_precision()
    if previous == level:
        yield
        return
    torch.set_float32_matmul_precision(level)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)
