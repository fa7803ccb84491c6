"""Shared fixtures: the generated smoke benchmark and the location of the real data fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.data import Benchmark, load_default

# Each test's runs are computed in its own process (a pool would spawn per `bench run`); the
# automatic choice of workers is tested in tests/test_executors.py.
os.environ.setdefault("BENCH_WORKERS", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def smoke() -> Benchmark:
    """The smoke-size generated benchmark (do not mutate: shared by the whole session)."""
    return load_default("smoke", seed=0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository; tests that need it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present beside the repository")
    return SHARED_DATA
