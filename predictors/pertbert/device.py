"""Where PertBERT computes: a CUDA GPU when torch sees one, else the CPU. A GPU is never required."""

from __future__ import annotations

import torch

from bench.errors import BenchError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cpu' or 'cuda[:k]' as asked (cuda must exist)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"PertBERT: device '{name}' asked for, but torch sees no CUDA GPU")
    return device


def gpu_request() -> dict:
    """Executor resources of one PertBERT run: a GPU where this process sees one (read when the
    class is defined, in the process that plans the sweep), nothing more otherwise."""
    return {"num_gpus": 1} if torch.cuda.is_available() else {}
