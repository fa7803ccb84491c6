"""The runner: fit each predictor for each seed, evaluate every epoch, select epochs, save results.

Runs are keyed (bench/cache.py): a finished run with the same key in the run folder is reused, so an
interrupted sweep resumes where it stopped; failed or skipped runs are tried again. The runs themselves
are computed by an executor (bench/executors.py): in this process, a process pool, or Ray tasks.
With `save_predictions`, each run's scored test predictions at its validation-selected epoch are
saved in its folder (bench/predictions.py); a finished run without them is computed again.

Epoch selection is reported two ways: the paper's "epoch" is the one with the best *test* score (the
mean of the paper's six metrics; optimistic, kept for comparability), the honest one is chosen by the
headline score (bench/headline.py) on the validation drugs; the per-epoch evaluation is bench/epochs.py,
and each run's record (result.json) is bench/record.py.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bench.budget import counting
from bench.cache import SCORING_VERSION, data_fingerprints, finished, run_dir, run_key, split_fingerprint, stale_reason
from bench.data.benchmark import Benchmark
from bench.data.combinations import combination_problem
from bench.epochs import EpochLog, FitOutcome, Kept, epoch_channel
from bench.errors import DataUnsuitable
from bench.evaluation import Evaluator, calibrated, input_size_of
from bench.executors import automatic_workers, local_executor
from bench.fingerprint import package_versions
from bench.headline import headline, headline_vs_control, interval
from bench.io import atomic_write_csv, atomic_write_json, dir_mode, replace_dir
from bench.predictions import NO_EPOCH, PREDICTIONS_FILE, predictions_adata, write_predictions
from bench.predictions import UNS_KEY as PREDICTIONS_UNS_KEY
from bench.record import (
    FAILED,
    HEADLINE_COLUMNS,
    OK,
    RESULT_FILE,
    SELECTIONS,
    SKIPPED,
    TEST_SELECTED,
    VAL_SELECTED,
    Failure,
    RunRecord,
    Scores,
    norm_column,
    replicate_column,
)
from bench.schema import Condition
from metrics import get_metrics
from predictors import registry
from predictors.base import Predictor, StopTraining, Task
from splits import Split
from splits.base import TEST, TRAIN, VAL


@dataclass
class RunConfig:
    predictors: list[str]
    split: str = "unseen_drugs"
    seeds: list[int] = field(default_factory=lambda: [0])
    max_epochs: int | None = None
    cache_dir: Path = Path(".bench-cache")
    overrides: dict = field(default_factory=dict)  # predictor name -> option overrides
    force: bool = False  # recompute runs even when a finished run with the same key exists
    patience: int | None = None  # stop training after this many epochs without a validation gain
    time_budget: float | None = None  # stop training after this many seconds of it (equal wall-clock budgets)
    search: bool = False  # choose trainable predictors' options from their search space on validation drugs
    save_predictions: bool = False  # write each run's val-selected test predictions (bench/predictions.py)


@dataclass(frozen=True)
class Job:
    """One (predictor, seed) run of a sweep and its cache key."""

    predictor: str
    seed: int
    key: str
    resources: dict = field(default_factory=dict, compare=False)  # Ray task options (num_cpus, num_gpus)
    peak_bytes: int = field(default=0, compare=False)  # estimated peak memory in a pool process (predictors.base.Memory)


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
            training = self.split.conditions(obs, TRAIN)
            size = input_size_of(self.bench.sc, training, control)  # training cells only
            self._evaluators = (
                Evaluator(self.bench.sc, self.split.conditions(obs, TEST), control, input_size=size, training=training),
                Evaluator(self.bench.sc, val_conditions, control, input_size=size, training=training) if val_conditions else None,
            )
        return self._evaluators


@dataclass
class RunOutput:
    """What one run leaves: its record and, when it succeeded, its per-epoch rows, its per-condition
    scores and (with `save_predictions`) its val-selected test predictions."""

    record: RunRecord
    epochs: pd.DataFrame = field(default_factory=pd.DataFrame)
    conditions: pd.DataFrame = field(default_factory=pd.DataFrame)
    predictions: ad.AnnData | None = None


@dataclass
class _Trial:
    """One candidate of a search: its options, how its fit ended and the predictor's resolved options."""

    options: dict
    outcome: FitOutcome | Failure
    config: dict

    def to_json(self) -> dict:
        if isinstance(self.outcome, Failure):
            return {"options": self.options, "val_headline": None, "error": self.outcome.error}
        return {"options": self.options, "val_headline": self.outcome.best.score}


def skip_reason(cls: type[Predictor], task: Task, training: list[Condition]) -> str | None:
    """Why a predictor cannot run on a task (its own test, or drug combinations in the split that it
    cannot take; `training`: the split's training conditions), or None: the rule behind every skip."""
    return cls.unavailable(task) or combination_problem(cls, training + task.test_conditions + task.val_conditions)


def run_one(name: str, seed: int, bench: Benchmark, split: Split, test_eval: Evaluator, val_eval: Evaluator | None,
            config: RunConfig, bar=None) -> RunOutput:
    """Fit and evaluate one predictor at one seed (with `config.search`, once per candidate of its
    search space, keeping the candidate with the best validation headline). Never raises for a
    predictor's own failure: the error is recorded in the run's record and the sweep goes on."""
    record = RunRecord(name, seed, split.name)
    try:
        cls, options = registry.predictor_class(name)
        base = {**options, **config.overrides.get(name, {})}
        cls(seed=seed, **base)  # options checked before any fitting
    except Exception as exc:  # noqa: BLE001  a broken plug-in must not stop the sweep
        return RunOutput(record.ended(Failure.of(exc)))
    record.trainable, record.reference = cls.trainable, cls.reference
    task = make_task(cls, bench, split, test_eval, val_eval, config, seed)
    reason = skip_reason(cls, task, task.training_conditions())
    if reason:
        return RunOutput(record.ended(Failure(SKIPPED, reason)))
    searching = config.search and cls.trainable and bool(cls.search_space) and val_eval is not None
    trials = []
    for candidate in (candidates(cls.search_space) if searching else [{}]):
        predictor = cls(seed=seed, **{**base, **candidate})
        outcome = _fit_logged(predictor, task, test_eval, val_eval, config, seed, bar)
        if isinstance(outcome, Failure) and not searching:
            return RunOutput(replace(record, options=predictor.config).ended(outcome))
        trials.append(_Trial(candidate, outcome, predictor.config))
    done = [(t, t.outcome) for t in trials if isinstance(t.outcome, FitOutcome)]  # (trial, its fit)
    if not done:
        first = trials[0].to_json()["error"]
        return RunOutput(record.ended(Failure(FAILED, f"every search candidate failed: {first}")))
    chosen, fit = max(done, key=lambda d: d[1].best.score)  # the first of equals: candidates are in a fixed order
    record.options = chosen.config
    record.scores = _scores(fit, cls.trainable and fit.trained)
    if searching:
        record.search = {"space": cls.search_space, "chosen": chosen.options, "selected_by": "validation headline",
                         "trials": [t.to_json() for t in trials], "seconds": float(sum(f.fit_seconds for _, f in done))}
    saved = _saved_predictions(fit.best, test_eval, bench, record) if config.save_predictions else None
    return RunOutput(record, fit.epochs, fit.conditions, saved)


def _saved_predictions(best: Kept, test_eval: Evaluator, bench: Benchmark, record: RunRecord) -> ad.AnnData:
    """The test predictions scored at the val-selected epoch (capped at the input size, as scored)
    and the controls the predictor was handed, in the input's layout (bench/predictions.py)."""
    sets, counts = best.sets, best.counts
    assert record.seed is not None  # the runner makes every record with its seed
    given = test_eval.control_source()
    controls = {ct: given(ct) for ct in sorted({c.cell_type for c in sets})}
    meta = {"predictor": record.predictor, "seed": int(record.seed), "split": record.split,
            "selection": VAL_SELECTED, "epoch": NO_EPOCH if best.epoch is None else int(best.epoch),
            "input_size": int(test_eval.input_size), "data": bench.name,
            "conditions": np.array([c.key for c in sorted(counts)], dtype=str),
            "n_pred": np.array([counts[c] for c in sorted(counts)], dtype=np.int64)}  # cells returned, before the cap
    return predictions_adata(sets, controls, bench.sc.var_names, test_eval.control, meta)


def candidates(space: dict[str, list]) -> list[dict]:
    """Every combination of a search space's values, in a fixed order (the grid)."""
    keys = sorted(space)
    return [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]


def _fit_logged(predictor, task: Task, test_eval: Evaluator, val_eval: Evaluator | None, config: RunConfig, seed: int,
                bar) -> FitOutcome | Failure:
    """Fit one predictor with its epochs evaluated: its outcome, or how it ended without one."""
    log = EpochLog(predictor, test_eval, val_eval, bar, config.patience, config.time_budget)
    task.on_epoch, close = epoch_channel(log)
    t0 = time.perf_counter()
    try:
        _seed_everything(seed)
        log.restart_clock()
        with counting() as budget:
            try:
                predictor.fit(task)
            except StopTraining:
                pass  # early stop: the selected epochs' predictions are kept
            finally:
                error = close()
        if error is not None:
            raise error
        outcome = log.outcome(time.perf_counter() - t0 - log.eval_seconds())
        return replace(outcome, gradient_steps=budget.gradient_steps, n_parameters=budget.n_parameters)
    except DataUnsuitable as exc:
        return Failure(SKIPPED, str(exc))
    except Exception as exc:  # noqa: BLE001
        return Failure.of(exc, with_traceback=True)


# What of the data's annotations a predictor may see: dataset metadata only. Truth (generating
# parameters) and DE lists computed on the held-out drugs stay with the harness.
TASK_UNS_KEYS = ("bench_dataset",)


def make_task(cls, bench: Benchmark, split: Split, test_eval: Evaluator, val_eval: Evaluator | None,
              config: RunConfig, seed: int) -> Task:
    """The task a predictor fits on: training cells only, stripped of annotations about held-out
    drugs, and the generating parameters only for predictors that declare `needs=("truth",)`."""
    train = bench.sc[split.mask(TRAIN)].copy()
    train.uns = {k: v for k, v in bench.sc.uns.items() if k in TASK_UNS_KEYS}
    bulk = bench.bulk
    if bulk is not None and "bench_truth" in bulk.uns:
        bulk = bulk.copy()
        del bulk.uns["bench_truth"]
    return Task(
        train=train,
        bulk=bulk,
        test_conditions=list(test_eval.conditions),
        val_conditions=list(val_eval.conditions) if val_eval is not None else [],
        seed=seed,
        control=split.control,
        cache_dir=Path(config.cache_dir),
        max_epochs=config.max_epochs,
        truth=bench.truth if "truth" in cls.needs else None,
    )


def _scores(fit: FitOutcome, trained: bool) -> Scores:
    """The selected epochs, the seconds and, for each selection, every metric's mean over test
    conditions, its calibrated aggregate, its replicate reference and the headline with its
    drug-bootstrap interval."""
    metric_names = [m.name for m in get_metrics()]
    selections = {}
    for label in SELECTIONS:
        sel = fit.at(label)
        selections[label] = {m: float(sel[m].mean()) for m in metric_names}
        selections[label].update({norm_column(m): calibrated(sel, m) for m in metric_names})
        selections[label].update({norm_column(replicate_column(m)): calibrated(sel.assign(**{m: sel[replicate_column(m)]}), m)
                                  for m in metric_names if sel[replicate_column(m)].notna().any()})
        low, high = interval(sel)
        selections[label].update(zip(HEADLINE_COLUMNS, (headline(sel), low, high, headline_vs_control(sel))))
    scores = Scores(selections, fit_seconds=float(fit.fit_seconds), eval_seconds=fit.eval_seconds,
                    stopped_early_at=fit.stopped_early_at, gradient_steps=fit.gradient_steps, n_parameters=fit.n_parameters)
    if trained:  # else the epochs and seconds per epoch stay None
        test_epoch, val_epoch = fit.selected[TEST_SELECTED], fit.selected[VAL_SELECTED]
        assert test_epoch is not None and val_epoch is not None  # a fit that reported epochs selects numbered ones
        scores.best_test_epoch, scores.val_epoch = int(test_epoch), int(val_epoch)
        scores.last_epoch, scores.seconds_per_epoch = fit.last_epoch, fit.seconds_per_epoch
    return scores


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def save_run(out_dir: Path, output: RunOutput) -> Path:
    """Write one run's files into OUT/runs/<predictor>/seed<k>/ atomically (a whole folder rename),
    its saved predictions (predictions.h5ad) too when it has them."""
    record = output.record
    assert record.predictor is not None and record.seed is not None  # the runner makes every record with both
    final = run_dir(out_dir, record.predictor, record.seed)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".seed{record.seed}.", dir=final.parent))
    tmp.chmod(dir_mode())  # mkdtemp makes it private; results are shared as a plain mkdir would make them
    try:
        atomic_write_json(tmp / RESULT_FILE, record.to_json())
        if not output.epochs.empty:
            atomic_write_csv(tmp / "epochs.csv", output.epochs)
        if not output.conditions.empty:
            atomic_write_csv(tmp / "conditions.csv", output.conditions)
        if output.predictions is not None:
            write_predictions(tmp, output.predictions)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def saved_predictions(out_dir: Path, job: Job) -> bool:
    """Whether a job's run folder holds its saved predictions."""
    return (run_dir(out_dir, job.predictor, job.seed) / PREDICTIONS_FILE).is_file()


def execute(sweep: Sweep, job: Job, bar=None) -> RunOutput:
    """Compute one job of a sweep (in whichever process the executor chose) and stamp its key."""
    if bar is not None:
        bar.set_description(f"{job.predictor} seed {job.seed}")
    test_eval, val_eval = sweep.evaluators()
    output = run_one(job.predictor, job.seed, sweep.bench, sweep.split, test_eval, val_eval, sweep.config, bar)
    if output.predictions is not None:
        training = sorted(test_eval.training_drugs())
        output.predictions.uns[PREDICTIONS_UNS_KEY].update(run_key=job.key, scoring_version=SCORING_VERSION, training_drugs=training)
    output.record.run_key, output.record.scoring_version, output.record.versions = job.key, SCORING_VERSION, package_versions()
    return output


def plan(bench: Benchmark, split: Split, config: RunConfig) -> list[Job]:
    """Every predictor x seed job of a sweep with its cache key, resource request and estimated peak memory."""
    data, split_fp = data_fingerprints(bench), split_fingerprint(split)
    size = bench.dense_bytes
    metric_names = [m.name for m in get_metrics()]
    jobs = []
    for name in config.predictors:
        try:
            cls, options = registry.predictor_class(name)
            resolved = {"class": f"{cls.__module__}:{cls.__qualname__}",
                        **cls.defaults, **options, **config.overrides.get(name, {})}
            resources = {"num_cpus": 1, **getattr(cls, "resources", {})}
            search = getattr(cls, "search_space", {})
        except Exception:  # noqa: BLE001  run_one records why it cannot be created
            resolved, resources, search = {}, {"num_cpus": 1}, {}
        peak = registry.memory(name).peak(size)
        for seed in config.seeds:
            tuning = {"patience": config.patience, "search": search if config.search else None}
            if config.time_budget is not None:  # absent otherwise, so runs without one keep their keys
                tuning["time_budget"] = config.time_budget
            key = run_key(name, {**resolved, **tuning}, split_fp, seed, config.max_epochs, metric_names, data)
            jobs.append(Job(name, seed, key, resources, peak))
    return jobs


def run_benchmark(bench: Benchmark, split: Split, config: RunConfig, out_dir: Path, executor=None) -> list[dict]:
    """The main job: every predictor x seed on one split. Finished runs with the same key are reused
    (unless `config.force`); the others go to the executor and are saved as each one completes.
    Returns every job's record as its result.json holds it."""
    jobs = plan(bench, split, config)
    results: dict[Job, dict] = {}
    unsaved: list[Job] = []
    for job in jobs:
        done = None if config.force else finished(out_dir, job.predictor, job.seed, job.key)
        if done is not None and config.save_predictions and not saved_predictions(out_dir, job):
            unsaved.append(job)  # finished, but its predictions were not kept: computed again to keep them
        elif done is not None:
            results[job] = done
    pending = [job for job in jobs if job not in results]
    choice = None
    if executor is None:  # the local executor, as many processes as the CPUs and the memory allow
        choice = automatic_workers([(job.predictor, job.peak_bytes) for job in pending])
        executor = local_executor(choice.workers)
    tqdm.write(f"runs: {len(results)} reused (finished, same key), {len(pending)} to compute"
               + (f" {executor.where}" if pending else ""), file=sys.stderr)
    if choice is not None and pending:
        tqdm.write(f"pool: {executor.where}: {choice.why}", file=sys.stderr)
    for job in pending:
        why = None if config.force else stale_reason(out_dir, job.predictor, job.seed, job.key)
        if job in unsaved:
            why = f"it was run without --save-predictions, so it has no {PREDICTIONS_FILE}"
        if why:
            tqdm.write(f"{job.predictor} (seed {job.seed}): recomputed: {why}", file=sys.stderr)
    with tqdm(total=len(pending), desc="runs", unit="run", dynamic_ncols=True) as bar:
        work = partial(execute, bar=bar) if executor.in_process else execute
        for job, output in executor.map(work, Sweep(bench, split, config), pending, lambda j: j.resources):
            if isinstance(output, BaseException):
                output = RunOutput(RunRecord(job.predictor, job.seed, split.name, run_key=job.key).ended(Failure.of(output)))
            save_run(out_dir, output)
            record = output.record
            if record.status != OK:
                tqdm.write(f"{job.predictor} (seed {job.seed}) {record.status}: {record.error}", file=sys.stderr)
            results[job] = record.to_json()
            bar.update(1)
    return [results[job] for job in jobs]
