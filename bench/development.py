"""The development data: the generated data sets on which bench's own trainable predictors' defaults
were chosen (PertBERT's, chemCPA's and CPA's, on data seed 0 of both presets). A leaderboard on them
would score those predictors on the data they were tuned on, so the published one uses another seed
(tests/test_published_seed.py)."""

from __future__ import annotations

import re

DEVELOPMENT_DATA_SEEDS = (0,)


def data_seed(meta: dict) -> int | None:
    """The generator seed of a run folder's data (run.json `data.name`: '<set> (seed N)'); None for files."""
    match = re.search(r"\(seed (\d+)\)$", str((meta.get("data") or {}).get("name", "")))
    return int(match.group(1)) if match else None
