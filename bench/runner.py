"""The runner: fit each predictor for each seed, evaluate every epoch, select epochs, save results.

Runs are keyed (bench/cache.py): a finished run with the same key in the run folder is reused, so an
interrupted sweep resumes where it stopped; failed or skipped runs are tried again. The runs themselves
are computed by an executor (bench/executors.py): in this process, a process pool, or Ray tasks.
With `save_predictions`, each run's scored test predictions at its validation-selected epoch are
saved in its folder (bench/predictions.py); a finished run without them is computed again.

Epoch selection is reported two ways: the paper's "epoch" is the one with the best *test* score (the
mean of the paper's six metrics; optimistic, kept for comparability), the honest one is chosen by the
headline score (bench/headline.py) on the validation drugs.
"""

from __future__ import annotations

import itertools
import json
import queue
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bench.cache import SCORING_VERSION, data_fingerprints, finished, run_dir, run_key, split_fingerprint, stale_reason
from bench.data.benchmark import Benchmark
from bench.data.combinations import combination_problem
from bench.errors import DataUnsuitable
from bench.evaluation import Evaluator, calibrated, input_size_of
from bench.executors import LocalExecutor
from bench.headline import headline, headline_metrics, interval
from bench.io import atomic_write_csv, atomic_write_json, replace_dir
from bench.predictions import NO_EPOCH, PREDICTIONS_FILE, predictions_adata, write_predictions
from bench.predictions import UNS_KEY as PREDICTIONS_UNS_KEY
from bench.schema import PAPER_METRICS
from metrics import get_metrics
from predictors import registry
from predictors.base import StopTraining, Task
from splits import Split
from splits.base import TEST, TRAIN, VAL


def selection_score(frame: pd.DataFrame) -> pd.Series | float:
    """Mean of the paper's six metrics (per row of per-condition scores, or of aggregates): the
    paper's own (best-test) epoch selection."""
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
    patience: int | None = None  # stop training after this many epochs without a validation gain
    search: bool = False  # choose trainable predictors' options from their search space on validation drugs
    save_predictions: bool = False  # write each run's val-selected test predictions (bench/predictions.py)


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
            size = input_size_of(self.bench.sc, self.split.conditions(obs, TRAIN), control)  # training cells only
            self._evaluators = (
                Evaluator(self.bench.sc, self.split.conditions(obs, TEST), control, input_size=size),
                Evaluator(self.bench.sc, val_conditions, control, input_size=size) if val_conditions else None,
            )
        return self._evaluators


class _EpochLog:
    """Collects the per-epoch evaluations of one run, keeping evaluation time out of epoch time.

    Each epoch scores only what epoch selection needs (the paper's six metrics on the test
    conditions, the headline on the validation conditions) and keeps the scored test predictions of
    the epochs selected so far; the full metric set is computed once, at the selected epochs."""

    def __init__(self, predictor, test_eval: Evaluator, val_eval: Evaluator | None, bar, patience: int | None = None) -> None:
        self.predictor, self.test_eval, self.val_eval, self.bar = predictor, test_eval, val_eval, bar
        self.patience = patience if val_eval is not None else None
        self.stopped_at: int | None = None
        self.rows: list[dict] = []
        self.kept: dict[str, tuple] = {}  # selection -> (score, epoch, sampled test predictions, counts)
        self._mark = time.perf_counter()

    def restart_clock(self) -> None:
        self._mark = time.perf_counter()

    def __call__(self, epoch: int | None, stats: dict) -> None:
        if self.stopped_at is not None:  # a predictor that swallowed the stop: no more evaluations
            raise StopTraining(f"training was stopped after epoch {self.stopped_at}")
        seconds = time.perf_counter() - self._mark
        t0 = time.perf_counter()
        row = {"epoch": epoch, "seconds": seconds, **{f"train_{k}": float(v) for k, v in stats.items()}}
        sets, counts = self.test_eval.collect(self.predictor.predict_many)
        paper = self.test_eval.score(sets, PAPER_METRICS, replicate=False, counts=counts)
        row.update({f"test_{m}": float(paper[m].mean()) for m in PAPER_METRICS})
        row["test_score"] = float(selection_score(paper[PAPER_METRICS].mean().to_frame().T).iloc[0])
        if self.val_eval is not None:
            val_sets, val_counts = self.val_eval.collect(self.predictor.predict_many)
            val = self.val_eval.score(val_sets, headline_metrics(), replicate=False, counts=val_counts)
            row.update({f"val_{m}_norm": calibrated(val, m) for m in headline_metrics()})
            row["val_score"] = headline(val)
        self._keep("test_selected", row["test_score"], epoch, sets, counts)
        self._keep("val_selected", row.get("val_score", len(self.rows)), epoch, sets, counts)
        row["eval_seconds"] = time.perf_counter() - t0
        self.rows.append(row)
        if self.bar is not None and epoch is not None:
            self.bar.set_postfix_str(f"epoch {epoch} val {row.get('val_score', float('nan')):.3f}")
        self._mark = time.perf_counter()
        if self.patience and epoch is not None and epoch - self.kept["val_selected"][1] >= self.patience:
            self.stopped_at = epoch
            raise StopTraining(f"no validation gain for {self.patience} epochs")

    def _keep(self, selection: str, score: float, epoch, sets: dict, counts: dict) -> None:
        """Keep this epoch's test predictions when its score beats every earlier epoch's (ties: the earlier)."""
        best = self.kept.get(selection)
        if best is None or score > best[0]:
            self.kept[selection] = (score, epoch, sets, counts)

    def final_scores(self) -> tuple[dict[str, int | None], pd.DataFrame]:
        """Every metric, with floors and replicate references, at each selected epoch: (selection ->
        epoch, one frame of per-condition rows with a `selection` column)."""
        epochs, frames, done = {}, [], {}
        for selection, (_, epoch, sets, counts) in self.kept.items():
            epochs[selection] = epoch
            if epoch not in done:
                t0 = time.perf_counter()
                done[epoch] = self.test_eval.score(sets, counts=counts)
                self.rows[-1]["eval_seconds"] += time.perf_counter() - t0
            frame = done[epoch].copy()
            frame.insert(0, "epoch", epoch)
            frame.insert(0, "selection", selection)
            frames.append(frame)
        return epochs, pd.concat(frames, ignore_index=True)


STOP = "stop"  # the reply that ends training early


class EvaluationFailed(RuntimeError):
    """An epoch evaluation failed; the original error is re-raised by the runner after `fit` stops."""


def epoch_channel(log: _EpochLog) -> tuple[Callable[[int, dict], None], Callable[[], BaseException | None]]:
    """Serve the per-epoch evaluations from a thread of their own. The callback handed to the
    predictor holds two queues and nothing else, so no reference leads from a predictor to the
    evaluator and its test cells; `fit` waits while its epoch is evaluated. Returns (callback, close);
    `close()` stops the thread and returns the first evaluation error, if any."""
    requests: queue.Queue = queue.Queue()
    replies: queue.Queue = queue.Queue()
    errors: list[BaseException] = []

    def serve() -> None:
        while (item := requests.get()) is not None:
            try:
                log(*item)
                replies.put(None)
            except StopTraining:
                replies.put(STOP)
            except BaseException as exc:  # noqa: BLE001  handed back to the runner, not to the predictor
                errors.append(exc)
                replies.put(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=serve, name="bench-evaluation", daemon=True)
    thread.start()

    def report(epoch: int, stats: dict) -> None:
        requests.put((epoch, dict(stats)))
        error = replies.get()
        if error == STOP:
            raise StopTraining(f"stopped after epoch {epoch}: no validation gain")
        if error is not None:
            raise EvaluationFailed(error)

    def close() -> BaseException | None:
        requests.put(None)
        thread.join()
        return errors[0] if errors else None

    return report, close


def run_one(name: str, seed: int, bench: Benchmark, split: Split, test_eval: Evaluator, val_eval: Evaluator | None,
            config: RunConfig, bar=None) -> tuple[dict, pd.DataFrame, pd.DataFrame, ad.AnnData | None]:
    """Fit and evaluate one predictor at one seed (with `config.search`, once per candidate of its
    search space, keeping the candidate with the best validation headline): (result, epochs,
    per-condition scores, the val-selected test predictions with `config.save_predictions`, else
    None). Never raises for a predictor's own failure: the error is recorded in the result and the
    sweep goes on."""
    result = {"predictor": name, "seed": seed, "split": split.name, "status": "ok", "error": None}
    empty = pd.DataFrame()
    try:
        cls, options = registry.predictor_class(name)
        base = {**options, **config.overrides.get(name, {})}
        cls(seed=seed, **base)  # options checked before any fitting
    except Exception as exc:  # noqa: BLE001  a broken plug-in must not stop the sweep
        return {**result, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}, empty, empty, None
    result.update(trainable=cls.trainable, reference=cls.reference)
    task = make_task(cls, bench, split, test_eval, val_eval, config, seed)
    split_conditions = task.training_conditions() + task.test_conditions + task.val_conditions
    reason = cls.unavailable(task) or combination_problem(cls, split_conditions)
    if reason:
        return {**result, "status": "skipped", "error": reason}, empty, empty, None
    searching = config.search and cls.trainable and bool(cls.search_space) and val_eval is not None
    trials = []
    for candidate in (candidates(cls.search_space) if searching else [{}]):
        predictor = cls(seed=seed, **{**base, **candidate})
        outcome = _fit_logged(predictor, task, test_eval, val_eval, config, seed, bar)
        if isinstance(outcome, dict):  # a failure
            if not searching:
                return {**result, "options": predictor.config, **outcome}, empty, empty, None
            trials.append({"options": candidate, "val_headline": None, "error": outcome["error"]})
            continue
        trials.append({"options": candidate, "val_headline": outcome[0].kept["val_selected"][0], "outcome": outcome,
                       "config": predictor.config})
    done = [t for t in trials if "outcome" in t]
    if not done:
        return {**result, "status": "failed", "error": "every search candidate failed: " + trials[0]["error"]}, empty, empty, None
    chosen = max(done, key=lambda t: t["val_headline"])  # the first of equals: candidates are in a fixed order
    log, fit_seconds, selected, conditions = chosen["outcome"]
    epochs = pd.DataFrame(log.rows)
    result["options"] = chosen["config"]
    result.update(_summarise(epochs, conditions, selected, cls.trainable and epochs["epoch"].notna().any()))
    result["fit_seconds"] = float(fit_seconds)
    result["stopped_early_at"] = log.stopped_at
    result["eval_seconds"] = float(epochs["eval_seconds"].sum())
    if searching:
        result["search"] = {"space": cls.search_space, "chosen": chosen["options"], "selected_by": "validation headline",
                            "trials": [{k: v for k, v in t.items() if k in ("options", "val_headline", "error")} for t in trials],
                            "seconds": float(sum(t["outcome"][1] for t in done))}
    saved = _saved_predictions(log, test_eval, bench, result) if config.save_predictions else None
    return result, epochs, conditions, saved


def _saved_predictions(log: _EpochLog, test_eval: Evaluator, bench: Benchmark, result: dict) -> ad.AnnData:
    """The test predictions scored at the val-selected epoch (capped at the input size, as scored)
    and the controls the predictor was handed, in the input's layout (bench/predictions.py)."""
    _, epoch, sets, counts = log.kept["val_selected"]
    given = test_eval.control_source()
    controls = {ct: given(ct) for ct in sorted({c.cell_type for c in sets})}
    meta = {"predictor": result["predictor"], "seed": int(result["seed"]), "split": result["split"],
            "selection": "val_selected", "epoch": NO_EPOCH if epoch is None else int(epoch),
            "input_size": int(test_eval.input_size), "data": bench.name,
            "conditions": np.array([c.key for c in sorted(counts)], dtype=str),
            "n_pred": np.array([counts[c] for c in sorted(counts)], dtype=np.int64)}  # cells returned, before the cap
    return predictions_adata(sets, controls, bench.sc.var_names, test_eval.control, meta)


def candidates(space: dict[str, list]) -> list[dict]:
    """Every combination of a search space's values, in a fixed order (the grid)."""
    keys = sorted(space)
    return [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]


def _fit_logged(predictor, task: Task, test_eval: Evaluator, val_eval: Evaluator | None, config: RunConfig, seed: int,
                bar) -> tuple | dict:
    """Fit one predictor with its epochs evaluated: (log, fit seconds, selected epochs, per-condition
    frame), or a failure record {status, error, traceback}."""
    log = _EpochLog(predictor, test_eval, val_eval, bar, config.patience)
    task.on_epoch, close = epoch_channel(log)
    t0 = time.perf_counter()
    try:
        _seed_everything(seed)
        log.restart_clock()
        try:
            predictor.fit(task)
        except StopTraining:
            pass  # early stop: the selected epochs' predictions are kept
        finally:
            error = close()
        if error is not None:
            raise error
        fit_seconds = time.perf_counter() - t0 - sum(r["eval_seconds"] for r in log.rows)
        if not log.rows:  # not trainable, or trained without reporting epochs: evaluate once
            log(None, {})
            log.rows[-1]["seconds"] = fit_seconds
        selected, conditions = log.final_scores()
    except DataUnsuitable as exc:
        return {"status": "skipped", "error": str(exc)}
    except Exception as exc:  # noqa: BLE001
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    return log, fit_seconds, selected, conditions


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


def _summarise(epochs: pd.DataFrame, conditions: pd.DataFrame, selected: dict, trainable: bool) -> dict:
    """The selected epochs and, for each selection, every metric's mean over test conditions, its
    calibrated aggregate, its replicate reference and the headline with its drug-bootstrap interval."""
    metric_names = [m.name for m in get_metrics()]
    out: dict = {}
    if trainable:
        out.update(
            best_test_epoch=int(selected["test_selected"]),
            val_epoch=int(selected["val_selected"]),
            last_epoch=int(epochs["epoch"].iloc[-1]),
            seconds_per_epoch=float(epochs["seconds"].median()),
        )
    else:
        out.update(best_test_epoch=None, val_epoch=None, last_epoch=None, seconds_per_epoch=None)
    for label in ("val_selected", "test_selected"):
        sel = conditions[conditions["selection"] == label]
        out[label] = {m: float(sel[m].mean()) for m in metric_names}
        out[label].update({f"{m}_norm": calibrated(sel, m) for m in metric_names})
        out[label].update({f"{m}_replicate_norm": calibrated(sel.assign(**{m: sel[f"{m}_replicate"]}), m)
                           for m in metric_names if sel[f"{m}_replicate"].notna().any()})
        low, high = interval(sel)
        out[label].update(headline=headline(sel), headline_low=low, headline_high=high)
    return out


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def save_run(out_dir: Path, result: dict, epochs: pd.DataFrame, conditions: pd.DataFrame,
             predictions: ad.AnnData | None = None) -> Path:
    """Write one run's files into OUT/runs/<predictor>/seed<k>/ atomically (a whole folder rename),
    its saved predictions (predictions.h5ad) too when given."""
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
        if predictions is not None:
            write_predictions(tmp, predictions)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def saved_predictions(out_dir: Path, job: Job) -> bool:
    """Whether a job's run folder holds its saved predictions."""
    return (run_dir(out_dir, job.predictor, job.seed) / PREDICTIONS_FILE).is_file()


def load_results(out_dir: Path) -> list[dict]:
    """Every run's result.json under a run folder."""
    return [json.loads(p.read_text()) for p in sorted(Path(out_dir).glob("runs/*/seed*/result.json"))]


def execute(sweep: Sweep, job: Job, bar=None) -> tuple[dict, pd.DataFrame, pd.DataFrame, ad.AnnData | None]:
    """Compute one job of a sweep (in whichever process the executor chose) and stamp its key."""
    if bar is not None:
        bar.set_description(f"{job.predictor} seed {job.seed}")
    test_eval, val_eval = sweep.evaluators()
    result, epochs, conditions, saved = run_one(job.predictor, job.seed, sweep.bench, sweep.split, test_eval, val_eval,
                                                sweep.config, bar)
    if saved is not None:
        saved.uns[PREDICTIONS_UNS_KEY].update(run_key=job.key, scoring_version=SCORING_VERSION)
    return {**result, "run_key": job.key, "scoring_version": SCORING_VERSION}, epochs, conditions, saved


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
            search = getattr(cls, "search_space", {})
        except Exception:  # noqa: BLE001  run_one records why it cannot be created
            resolved, resources, search = {}, {"num_cpus": 1}, {}
        for seed in config.seeds:
            tuning = {"patience": config.patience, "search": search if config.search else None}
            key = run_key(name, {**resolved, **tuning}, split_fp, seed, config.max_epochs, metric_names, data)
            jobs.append(Job(name, seed, key, resources))
    return jobs


def run_benchmark(bench: Benchmark, split: Split, config: RunConfig, out_dir: Path, executor=None) -> list[dict]:
    """The main job: every predictor x seed on one split. Finished runs with the same key are reused
    (unless `config.force`); the others go to the executor and are saved as each one completes."""
    executor = executor or LocalExecutor()
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
    tqdm.write(f"runs: {len(results)} reused (finished, same key), {len(pending)} to compute", file=sys.stderr)
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
                result = {"predictor": job.predictor, "seed": job.seed, "split": split.name, "status": "failed",
                          "error": f"{type(output).__name__}: {output}", "run_key": job.key}
                output = (result, pd.DataFrame(), pd.DataFrame(), None)
            result = output[0]
            save_run(out_dir, *output)
            if result["status"] != "ok":
                tqdm.write(f"{job.predictor} (seed {job.seed}) {result['status']}: {result['error']}", file=sys.stderr)
            results[job] = result
            bar.update(1)
    return [results[job] for job in jobs]
