"""The runner: fit each predictor for each seed, evaluate every epoch, select epochs, save results.

Runs are keyed (bench/cache.py): a finished run with the same key in the run folder is reused, so an
interrupted sweep resumes where it stopped; failed or skipped runs are tried again. The runs themselves
are computed by an executor (bench/executors.py): in this process, a process pool, or Ray tasks.

Epoch selection is reported two ways: the paper's "epoch" is the one with the best *test* score
(optimistic, kept for comparability), the honest one is chosen on the validation drugs. Both use
the selection score: the mean of the paper's six metrics.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bench.cache import data_fingerprints, finished, run_dir, run_key, split_fingerprint
from bench.data.benchmark import Benchmark
from bench.evaluation import Evaluator, normalised
from bench.executors import LocalExecutor
from bench.io import atomic_write_csv, atomic_write_json, replace_dir
from metrics import get_metrics
from predictors import registry
from predictors.base import Task
from splits import Split
from splits.base import TEST, TRAIN, VAL

PAPER_METRICS = ["mean", "mean_DE50", "mean_DE10", "dis", "dis_DE50", "dis_DE10"]


def selection_score(frame: pd.DataFrame) -> pd.Series | float:
    """Mean of the paper's six metrics (per row of per-condition scores, or of aggregates)."""
    return frame[PAPER_METRICS].mean(axis=1)


@dataclass
class RunConfig:
    predictors: list[str]
    split: str = "unseen_drugs"
    seeds: list[int] = field(default_factory=lambda: [0])
    max_epochs: int | None = None
    cache_dir: Path = Path(".bench-cache")
    overrides: dict = field(default_factory=dict)  # predictor name -> option overrides
    force: bool = False  # recompute runs even when a finished run with the same key exists


@dataclass(frozen=True)
class Job:
    """One (predictor, seed) run of a sweep and its cache key."""

    predictor: str
    seed: int
    key: str
    resources: dict = field(default_factory=dict, compare=False)  # Ray task options (num_cpus, num_gpus)


class Sweep:
    """What every run of a sweep shares (data, split, configuration); shipped to each worker once.
    The evaluators are built lazily where the runs happen and are not shipped."""

    def __init__(self, bench: Benchmark, split: Split, config: RunConfig) -> None:
        self.bench, self.split, self.config = bench, split, config
        self._evaluators: tuple[Evaluator, Evaluator | None] | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_evaluators": None}

    def evaluators(self) -> tuple[Evaluator, Evaluator | None]:
        if self._evaluators is None:
            obs, control = self.bench.sc.obs, self.split.control
            val_conditions = self.split.conditions(obs, VAL)
            self._evaluators = (
                Evaluator(self.bench.sc, self.split.conditions(obs, TEST), control),
                Evaluator(self.bench.sc, val_conditions, control) if val_conditions else None,
            )
        return self._evaluators


class _EpochLog:
    """Collects the per-epoch evaluations of one run, keeping evaluation time out of epoch time."""

    def __init__(self, predictor, test_eval: Evaluator, val_eval: Evaluator | None, bar) -> None:
        self.predictor, self.test_eval, self.val_eval, self.bar = predictor, test_eval, val_eval, bar
        self.rows: list[dict] = []
        self.frames: list[pd.DataFrame] = []
        self._mark = time.perf_counter()

    def restart_clock(self) -> None:
        self._mark = time.perf_counter()

    def __call__(self, epoch: int | None, stats: dict) -> None:
        seconds = time.perf_counter() - self._mark
        t0 = time.perf_counter()
        row = {"epoch": epoch, "seconds": seconds, **{f"train_{k}": float(v) for k, v in stats.items()}}
        for role, ev in ((TEST, self.test_eval), (VAL, self.val_eval)):
            if ev is None:
                continue
            frame = ev.score_predictor(self.predictor.predict_many)
            frame.insert(0, "role", role)
            frame.insert(0, "epoch", epoch)
            self.frames.append(frame)
            agg = frame[[m.name for m in ev.metrics]].mean()
            row.update({f"{role}_{k}": float(v) for k, v in agg.items()})
            row[f"{role}_score"] = float(selection_score(agg.to_frame().T).iloc[0])
        row["eval_seconds"] = time.perf_counter() - t0
        self.rows.append(row)
        if self.bar is not None and epoch is not None:
            self.bar.set_postfix_str(f"epoch {epoch} test {row.get('test_score', float('nan')):.3f}")
        self._mark = time.perf_counter()


def run_one(name: str, seed: int, bench: Benchmark, split: Split, test_eval: Evaluator, val_eval: Evaluator | None,
            config: RunConfig, bar=None) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Fit and evaluate one predictor at one seed. Never raises for a predictor's own failure:
    the error is recorded in the result and the sweep goes on."""
    result = {"predictor": name, "seed": seed, "split": split.name, "status": "ok", "error": None}
    empty = pd.DataFrame()
    try:
        cls, options = registry.predictor_class(name)
        predictor = cls(seed=seed, **{**options, **config.overrides.get(name, {})})
    except Exception as exc:  # noqa: BLE001  a broken plug-in must not stop the sweep
        return {**result, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}, empty, empty
    result.update(trainable=cls.trainable, reference=cls.reference, options=predictor.config)
    train_mask = split.mask(TRAIN)
    task = Task(
        train=bench.sc[train_mask].copy(),
        bulk=bench.bulk,
        test_conditions=test_eval.conditions,
        val_conditions=val_eval.conditions if val_eval is not None else [],
        seed=seed,
        control=split.control,
        cache_dir=Path(config.cache_dir),
        max_epochs=config.max_epochs,
        truth=bench.truth,
    )
    reason = cls.unavailable(task)
    if reason:
        return {**result, "status": "skipped", "error": reason}, empty, empty
    log = _EpochLog(predictor, test_eval, val_eval, bar)
    task.on_epoch = log
    t0 = time.perf_counter()
    try:
        _seed_everything(seed)
        log.restart_clock()
        predictor.fit(task)
        fit_seconds = time.perf_counter() - t0 - sum(r["eval_seconds"] for r in log.rows)
        if not log.rows:  # not trainable, or trained without reporting epochs: evaluate once
            log(None, {})
            log.rows[-1]["seconds"] = fit_seconds
    except Exception as exc:  # noqa: BLE001
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        return result, empty, empty
    epochs = pd.DataFrame(log.rows)
    conditions = pd.concat(log.frames, ignore_index=True)
    result.update(_summarise(epochs, conditions, cls.trainable and epochs["epoch"].notna().any()))
    result["fit_seconds"] = float(fit_seconds)
    return result, epochs, conditions


def _summarise(epochs: pd.DataFrame, conditions: pd.DataFrame, trainable: bool) -> dict:
    """Pick the paper's (best-test) and the honest (best-validation) epochs and their test metrics."""
    metric_names = [m.name for m in get_metrics()]
    out: dict = {}
    if trainable:
        test_epoch = epochs.loc[epochs["test_score"].idxmax(), "epoch"]
        val_epoch = epochs.loc[epochs["val_score"].idxmax(), "epoch"] if "val_score" in epochs else epochs["epoch"].iloc[-1]
        out.update(
            best_test_epoch=int(test_epoch),
            val_epoch=int(val_epoch),
            last_epoch=int(epochs["epoch"].iloc[-1]),
            seconds_per_epoch=float(epochs["seconds"].median()),
        )
    else:
        test_epoch = val_epoch = epochs["epoch"].iloc[-1]
        out.update(best_test_epoch=None, val_epoch=None, last_epoch=None, seconds_per_epoch=None)
    for label, epoch in (("val_selected", val_epoch), ("test_selected", test_epoch)):
        sel = conditions[(conditions["role"] == TEST) & _epoch_is(conditions["epoch"], epoch)]
        out[label] = {m: float(sel[m].mean()) for m in metric_names}
        out[label].update({f"{m}_norm": normalised(sel, m) for m in metric_names if f"{m}_floor" in sel})
    return out


def _epoch_is(column: pd.Series, epoch) -> pd.Series:
    return column.isna() if epoch is None or pd.isna(epoch) else column == epoch


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def save_run(out_dir: Path, result: dict, epochs: pd.DataFrame, conditions: pd.DataFrame) -> Path:
    """Write one run's files into OUT/runs/<predictor>/seed<k>/ atomically (a whole folder rename)."""
    final = run_dir(out_dir, result["predictor"], result["seed"])
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".seed{result['seed']}.", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; results are meant to be shared
    try:
        atomic_write_json(tmp / "result.json", result)
        if not epochs.empty:
            atomic_write_csv(tmp / "epochs.csv", epochs)
        if not conditions.empty:
            atomic_write_csv(tmp / "conditions.csv", conditions)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_results(out_dir: Path) -> list[dict]:
    """Every run's result.json under a run folder."""
    return [json.loads(p.read_text()) for p in sorted(Path(out_dir).glob("runs/*/seed*/result.json"))]


def execute(sweep: Sweep, job: Job, bar=None) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Compute one job of a sweep (in whichever process the executor chose) and stamp its key."""
    if bar is not None:
        bar.set_description(f"{job.predictor} seed {job.seed}")
    test_eval, val_eval = sweep.evaluators()
    result, epochs, conditions = run_one(job.predictor, job.seed, sweep.bench, sweep.split, test_eval, val_eval,
                                         sweep.config, bar)
    return {**result, "run_key": job.key}, epochs, conditions


def plan(bench: Benchmark, split: Split, config: RunConfig) -> list[Job]:
    """Every predictor x seed job of a sweep with its cache key and resource request."""
    data, split_fp = data_fingerprints(bench), split_fingerprint(split)
    metric_names = [m.name for m in get_metrics()]
    jobs = []
    for name in config.predictors:
        try:
            cls, options = registry.predictor_class(name)
            resolved = {"class": f"{cls.__module__}:{cls.__qualname__}",
                        **cls.defaults, **options, **config.overrides.get(name, {})}
            resources = {"num_cpus": 1, **getattr(cls, "resources", {})}
        except Exception:  # noqa: BLE001  run_one records why it cannot be created
            resolved, resources = {}, {"num_cpus": 1}
        for seed in config.seeds:
            key = run_key(name, resolved, split_fp, seed, config.max_epochs, metric_names, data)
            jobs.append(Job(name, seed, key, resources))
    return jobs


def run_benchmark(bench: Benchmark, split: Split, config: RunConfig, out_dir: Path, executor=None) -> list[dict]:
    """The main job: every predictor x seed on one split. Finished runs with the same key are reused
    (unless `config.force`); the others go to the executor and are saved as each one completes."""
    executor = executor or LocalExecutor()
    jobs = plan(bench, split, config)
    results: dict[Job, dict] = {}
    for job in jobs:
        done = None if config.force else finished(out_dir, job.predictor, job.seed, job.key)
        if done is not None:
            results[job] = done
    pending = [job for job in jobs if job not in results]
    tqdm.write(f"runs: {len(results)} reused (finished, same key), {len(pending)} to compute", file=sys.stderr)
    with tqdm(total=len(pending), desc="runs", unit="run", dynamic_ncols=True) as bar:
        work = partial(execute, bar=bar) if executor.in_process else execute
        for job, output in executor.map(work, Sweep(bench, split, config), pending, lambda j: j.resources):
            if isinstance(output, BaseException):
                result = {"predictor": job.predictor, "seed": job.seed, "split": split.name, "status": "failed",
                          "error": f"{type(output).__name__}: {output}", "run_key": job.key}
                output = (result, pd.DataFrame(), pd.DataFrame())
            result = output[0]
            save_run(out_dir, *output)
            if result["status"] != "ok":
                tqdm.write(f"{job.predictor} (seed {job.seed}) {result['status']}: {result['error']}", file=sys.stderr)
            results[job] = result
            bar.update(1)
    return [results[job] for job in jobs]
