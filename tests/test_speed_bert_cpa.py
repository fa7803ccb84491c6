"""Fine-tuning speed of PertBERT (`BERT`) and `CPA` side by side on the same generated data.

Each benchmark fits the predictor for two epochs and records, in extra_info, the seconds of the
second epoch alone (the harness's per-epoch clock: set-up falls into the first) and the training
cells it covered, so epoch seconds and cells/second compare like with like. The suite runs these
once as tests (benchmarks disabled, smoke data). Measure for real, both in one command so they share
the machine's load: `OMP_NUM_THREADS=1 pytest --benchmark-enable tests/test_speed_bert_cpa.py`;
SPEED_BENCH_DATA=default (or full) measures on that generated benchmark instead, and
SPEED_BENCH_PREDICTORS=cVAE,BERT_nobulk,... on other trainable predictors. With
SPEED_BENCH_EPOCHS=1 (one round, for the full size) the one epoch is timed from the start of `fit`,
its set-up included. Where /proc is readable, extra_info also holds the process's peak resident
memory while the predictor fitted (`peak_rss_gib`, sampled every 0.1 s, the data included).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

import pytest

from bench.data import load_default
from predictors import registry
from predictors.base import Task
from splits import get_split
from splits.base import TEST, TRAIN, VAL

EPOCHS = int(os.environ.get("SPEED_BENCH_EPOCHS", "2"))
PREDICTORS = os.environ.get("SPEED_BENCH_PREDICTORS", "BERT,CPA").split(",")


@contextmanager
def peak_rss(out: dict):
    """Sample this process's resident memory every 0.1 s while the block runs; `out['gib']` = peak."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        yield
        return
    page, done, peak = os.sysconf("SC_PAGE_SIZE"), threading.Event(), [0]

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], int(statm.read_text().split()[1]) * page)
            done.wait(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        out["gib"] = peak[0] / 2**30


@pytest.fixture(scope="module")
def task(smoke) -> Task:
    size = os.environ.get("SPEED_BENCH_DATA", "smoke")
    data = smoke if size == "smoke" else load_default(size, seed=0)
    split = get_split("unseen_drugs", data.sc, seed=0)
    obs = data.sc.obs
    return Task(train=data.sc[split.mask(TRAIN)].copy(), bulk=data.bulk, test_conditions=split.conditions(obs, TEST),
                val_conditions=split.conditions(obs, VAL), cache_dir=tempfile.mkdtemp(), max_epochs=EPOCHS)


@pytest.mark.benchmark(group="fine-tuning epoch")
@pytest.mark.parametrize("name", PREDICTORS)
def test_fine_tuning_epoch(benchmark, task, name):
    if name.startswith("CPA") and importlib.util.find_spec("cpa") is None:
        pytest.skip("cpa-tools is not installed")
    time_epochs(benchmark, task, name)


@pytest.mark.benchmark(group="CPA epoch: R² bookkeeping")
@pytest.mark.parametrize("r2", ["grouped", "cpa-tools loop"])
def test_cpa_epoch_r2_bookkeeping(benchmark, task, r2, monkeypatch):
    """CPA's epoch with bench's grouped R² (predictors/cpa_metrics.py) against cpa-tools' own
    per-group loop, which it replaces; both log the same values and learn the same weights."""
    if importlib.util.find_spec("cpa") is None:
        pytest.skip("cpa-tools is not installed")
    if r2 == "cpa-tools loop":
        import predictors.cpa_model as cpa_model

        monkeypatch.setattr(cpa_model, "fast_r2", lambda module: nullcontext())
    time_epochs(benchmark, task, "CPA")


def time_epochs(benchmark, task: Task, name: str) -> None:
    """Fit `name` (3 rounds after a warm-up; one round with SPEED_BENCH_EPOCHS=1) and record the
    second epoch's seconds, the cells it covered and the peak memory in extra_info."""
    epochs: list[tuple[float, dict]] = []
    started: list[float] = []
    memory: dict = {}

    def fit() -> None:
        epochs.clear()
        run = replace(task, on_epoch=lambda epoch, stats: epochs.append((time.perf_counter(), stats)))
        started[:] = [time.perf_counter()]
        with peak_rss(memory):
            registry.create(name, seed=0).fit(run)

    single = EPOCHS == 1
    benchmark.pedantic(fit, rounds=1 if single else 3, iterations=1, warmup_rounds=0 if single else 1)
    assert len(epochs) == EPOCHS
    seconds = epochs[0][0] - started[0] if single else epochs[1][0] - epochs[0][0]
    cells = epochs[-1][1].get("cells", task.train.n_obs)  # CPA's epoch passes over every training cell
    benchmark.extra_info.update(epoch_seconds=seconds, cells_per_epoch=cells, cells_per_second=cells / seconds)
    if "gib" in memory:
        benchmark.extra_info["peak_rss_gib"] = memory["gib"]
    assert cells == task.train.n_obs  # either way an epoch covers every training cell once
