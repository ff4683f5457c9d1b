"""Device and thread-count choices, made explicitly and in one place."""
from __future__ import annotations

import os

import torch


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
