"""The published leaderboard is not computed on the development data (bench/development.py): no
published board's generated data set has a data seed on which the predictors' defaults were chosen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.development import DEVELOPMENT_DATA_SEEDS, data_seed
from bench.pages import MANIFEST

PUBLISHED = Path(__file__).resolve().parents[1] / "leaderboard" / MANIFEST


def published_boards() -> dict[str, list[dict]]:
    """Board name -> the run.json of each of its run folders, as leaderboard/published.json lists them."""
    return json.loads(PUBLISHED.read_text()).get("splits", {}) if PUBLISHED.exists() else {}


@pytest.mark.skipif(not published_boards(), reason="leaderboard/published.json lists no board")
def test_no_published_board_is_on_a_development_data_seed():
    seeds = {name: data_seed(meta) for name, metas in published_boards().items() for meta in metas}
    development = sorted(name for name, seed in seeds.items() if seed in DEVELOPMENT_DATA_SEEDS)
    assert not development, (f"published on a development data seed {DEVELOPMENT_DATA_SEEDS} (the predictors' defaults were "
                             f"chosen there; publish with --data-seed 1): {', '.join(development)}")


def test_the_data_seed_is_read_from_the_data_name():
    assert data_seed({"data": {"name": "synthetic-default-realistic (seed 1)"}}) == 1
    assert data_seed({"data": {"name": "synthetic-smoke-easy (seed 0)"}}) == 0
    assert data_seed({"data": {"name": "sciplex3.h5ad"}}) is None and data_seed({}) is None
