"""Torch thread count for PertBERT: one intra-op thread by default, as each run asks its executor for
one CPU; on a shared 2-core machine more threads contend with other processes and run slower."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

DEFAULT_THREADS = 1


@contextmanager
def torch_threads(n: int = DEFAULT_THREADS) -> Iterator[None]:
    """Run torch on `n` intra-op threads, restoring the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
