"""Crash-safe checkpoint files."""
from __future__ import annotations

import os

import torch


def atomic_torch_save(obj, path: str) -> None:
    """torch.save to a temp file in the same directory, fsync, rename over `path`, fsync the
    directory: `path` is always either the old or the new complete file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
