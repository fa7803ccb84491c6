"""`bench run`: the main job — every chosen predictor x seed on one split, then the leaderboard."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from bench.commands.clusters import drug_clusters
from bench.commands.data import add_data_arguments, load_benchmark
from bench.data.combinations import is_combination
from bench.errors import BenchError, closest
from bench.executors import EXECUTORS, make_executor
from bench.fingerprint import package_versions
from bench.io import atomic_write_json, atomic_write_text, check_writable, folder_lock, writable_dir
from bench.publish import render_markdown
from bench.runner import RunConfig, run_benchmark
from predictors import registry
from splits import benchmark_split
from splits.base import TEST


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise BenchError(f"{option} '{text}': expected comma-separated integers such as 0,1,2") from None
    if not seeds:
        raise BenchError(f"{option} is empty: expected comma-separated integers such as 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise BenchError(f"{option} '{text}': a seed is repeated")
    return seeds


def parse_overrides(items: list[str], names: list[str]) -> dict[str, dict]:
    """`--set NAME.OPTION=VALUE` items as {predictor: {option: value}}; values are read as JSON
    (numbers, true/false, null, lists), else kept as text. Unknown predictors or options are errors."""
    out: dict[str, dict] = {}
    for item in items:
        target, sep, text = item.partition("=")
        name, dot, option = target.rpartition(".")
        if not sep or not dot or not name or not option:
            raise BenchError(f"--set '{item}': expected NAME.OPTION=VALUE, e.g. BERT.energy_weight=0")
        if name not in names:
            raise BenchError(f"--set '{item}': predictor '{name}' is not among --predictors ({', '.join(names)})")
        cls, _ = registry.predictor_class(name)
        if option not in cls.defaults:
            raise BenchError(f"--set '{item}': {name} has no option '{option}'{closest(option, cls.defaults)}; "
                             f"its options: {', '.join(sorted(cls.defaults))}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out.setdefault(name, {})[option] = value
    return out


DEFAULT_BUDGET = 30  # epochs every trainable predictor may train (equal budgets)
DEFAULT_PATIENCE = 5  # epochs without a validation gain before training stops


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="fit and evaluate predictors on a split; write results and a leaderboard")
    p.add_argument("--predictors", default="all", help="'all' or comma-separated names (see `bench list`)")
    p.add_argument("--split", default="unseen_drugs", help="split name (default: unseen_drugs)")
    p.add_argument("--split-column", default=None, help="use the train/test/ood roles stored in this obs column (CPA files)")
    p.add_argument("--split-seeds", "--split-seed", dest="split_seeds", default="0",
                   help="comma-separated seeds of the drug hold-out; several: one run folder each under --out, "
                        "reported separately and pooled (default: 0)")
    p.add_argument("--folds", type=int, default=None, metavar="K",
                   help="K-fold over the held-out drugs (or families): K runs of the split, fold k's drugs tested in "
                        "folder fold<k>, every drug tested once; pooled into one leaderboard (default: one hold-out)")
    p.add_argument("--fold", type=int, default=None, metavar="k",
                   help="with --folds: run fold k only (0-based), e.g. to spread the folds over machines")
    p.add_argument("--seeds", default="0", help="comma-separated model seeds (default: 0)")
    p.add_argument("--epochs", type=int, default=DEFAULT_BUDGET,
                   help=f"epoch budget of every trainable predictor, the same for all (default: {DEFAULT_BUDGET})")
    p.add_argument("--search", action="store_true",
                   help="choose each trainable predictor's options from its search space by the validation headline "
                        "(one fit per candidate; the search is recorded in result.json)")
    p.add_argument("--patience", type=int, default=DEFAULT_PATIENCE,
                   help=f"stop a trainable predictor after this many epochs without a validation gain; 0: never (default: {DEFAULT_PATIENCE})")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="also stop a trainable predictor once its training (evaluation excluded) has taken this many "
                        "seconds, at the end of that epoch: equal wall-clock budgets (set --epochs high); recorded in "
                        "the run key; seconds depend on the machine, so compare such runs on one machine only")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME.OPTION=VALUE",
                   help="change one option of one predictor (repeatable), e.g. BERT.energy_weight=0; recorded in the "
                        "run key and result.json; `bench list NAME` shows a predictor's options")
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="run folder (default: ./bench-results)")
    p.add_argument("--cache-dir", type=Path, default=Path(".bench-cache"), help="checkpoint cache (default: ./.bench-cache)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: this process, or a process pool with --workers; ray: one Ray task per run (default: local)")
    p.add_argument("--ray-address", default=None,
                   help="address of a running Ray cluster (e.g. ray://head:10001 or auto); default: start a local instance")
    p.add_argument("--workers", type=int, default=None,
                   help="local: size of the process pool (1: this process; default: one per CPU, as many as fit in "
                        "memory, said on the `pool:` line); ray: CPUs of the local instance")
    p.add_argument("--force", action="store_true",
                   help="recompute every run, even finished ones with the same configuration and data")
    p.add_argument("--save-predictions", action="store_true",
                   help="write each run's test predictions at its validation-selected epoch, with the controls it was "
                        "handed, as runs/<predictor>/seed<k>/predictions.h5ad (score them with `bench score --pred`); "
                        "a finished run without that file is computed again")
    add_data_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = registry.resolve(args.predictors)
    seeds = parse_seeds(args.seeds)
    if args.epochs is not None and args.epochs < 1:
        raise BenchError(f"--epochs {args.epochs}: expected a positive integer")
    if args.patience < 0:
        raise BenchError(f"--patience {args.patience}: expected 0 (never stop early) or a positive integer")
    if args.time_budget is not None and not args.time_budget > 0:
        raise BenchError(f"--time-budget {args.time_budget}: expected a positive number of seconds")
    executor = make_executor(args.executor, args.workers, args.ray_address)
    out = check_writable(args.out)
    bench = load_benchmark(args)
    split_seeds = parse_seeds(args.split_seeds, "--split-seeds")
    config = RunConfig(predictors=names, split=args.split, seeds=seeds, max_epochs=args.epochs, cache_dir=args.cache_dir,
                       force=args.force, patience=args.patience or None, search=args.search, time_budget=args.time_budget,
                       overrides=parse_overrides(args.overrides, names), save_predictions=args.save_predictions)
    if args.folds is not None and args.folds < 2:
        raise BenchError(f"--folds {args.folds}: expected at least 2 folds")
    if args.fold is not None and not (args.folds and 0 <= args.fold < args.folds):
        raise BenchError(f"--fold {args.fold}: expected --folds K and a fold in 0..K-1")
    folds = [args.fold] if args.fold is not None else list(range(args.folds)) if args.folds else [None]
    folders = []
    for s in split_seeds:
        base = out if len(split_seeds) == 1 else out / f"split-seed{s}"
        for fold in folds:
            folders.append(base if fold is None else base / f"fold{fold}")
            run_split(args, bench, config, s, folders[-1], executor, fold)
    text = render_markdown(folders)
    atomic_write_text(out / "leaderboard.md", text)
    print(text)
    print(f"results: {out}/ (leaderboard.md, runs/*/seed*/); publish with `bench leaderboard {' '.join(map(str, folders))}`",
          file=sys.stderr)
    return 0


def run_split(args: argparse.Namespace, bench, config: RunConfig, split_seed: int, out: Path, executor,
              fold: int | None = None) -> None:
    """One split seed (and fold) of the main job: hold out drugs, record the run's provenance, run every job."""
    split = benchmark_split(bench, args.split, split_seed, args.split_column, fold, args.folds)
    held_out = [d for d in split.drugs(bench.sc.obs, TEST) if not is_combination(d)]  # combinations: see runner
    absent = bench.missing_in_bulk(held_out) if bench.bulk is not None else []
    if absent:
        print(f"warning: held-out drug(s) absent from the bulk set: {', '.join(absent)}; predictors that need bulk "
              "profiles of every held-out drug are skipped", file=sys.stderr)
    summary = split.summary(bench.sc.obs)
    meta = {
        "command": "bench " + shlex.join(args.argv),
        "split": args.split,
        "split_summary": summary,
        "seeds": config.seeds,
        "predictors": config.predictors,
        "data": bench.describe(),
        "drug_clusters": drug_clusters(bench),
        "versions": package_versions(),
    }
    with folder_lock(writable_dir(out)):  # a second bench writing this run folder stops at once
        atomic_write_json(out / "run.json", meta)
        print(
            f"data: {bench.name}; split {args.split} (split seed {split_seed}"
            + (f", fold {fold + 1} of {args.folds}" if fold is not None else "") + f"): {summary['test_drugs']} test drugs "
            f"({summary['test_conditions']} conditions), {summary['val_drugs']} validation drugs, "
            f"{summary['train_drugs']} training drugs",
            file=sys.stderr,
        )
        run_benchmark(bench, split, config, out, executor)
