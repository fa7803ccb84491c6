"""bench, cell-eval 0.8.2 and cell-eval2 side by side on one (real, predicted) pair (not a test
module: tests/test_speed_peers.py uses it, and it runs as a script).

The pair is generated in cell-eval's layout, shaped like sci-Plex3 at the `full` size: three cell
types, 16 drugs x 4 doses each (192 conditions), 100-300 cells per condition less up to 40% at the
high doses of active drugs (61-296), 2,000 genes of log-normalised counts (per cell to 10,000,
log1p; 84% zeros), 2,000 control cells per cell type, stored as float32 CSR. obs `perturbation`
holds "<drug>_<dose>" or `control`, obs `cell_type` the cell type. The prediction has as many cells
per condition as the truth (so bench scores exactly its cells) and the same real control cells (so
cell-eval's controls, taken from the prediction, are the real ones, as bench's always are).

Each tool scores the metrics all three compute (`SHARED`, cell-eval's names) in a process of its
own, with the same thread settings, from the same two files: bench through the loader `bench score`
uses and `Evaluator.raw` (raw scores, no references); cell-eval with `MetricsEvaluator` per cell
type (as `cell-eval run --celltype-col` does); cell-eval2 with `compute_metrics` per cell type under
its cell-eval (v1) conventions with per-comparison FDR and unclipped fold changes (cell-eval 0.8.2's
definitions), DE on pdex. The parent times each process (wall seconds: the interpreter's start,
imports, reading, a warm-up, scoring and writing); each process reports its own peak resident
memory (VmHWM) and the seconds of importing the tool, reading the pair, warming up (the same scoring
on a 50-gene slice of one perturbation: numba compiles pdex's kernels there, once per process) and
scoring the pair. Rounds are interleaved, the tools' order rotated each round, and the minimum of
each column per tool is kept; the ratios are also given within each round.

    python tests/peers.py [--size full|small] [--rounds 3] [--threads 1] [--dir DIR]

prints the timing table and the parity table (markdown) and writes `results.json` under DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve()
TOOLS = ("bench", "cell-eval", "cell-eval2")
CONTROL, PERT, CELL_TYPE = "control", "perturbation", "cell_type"

# The metrics all three compute, under cell-eval's names (bench's own name where it differs).
SHARED = ["mse", "mae", "mse_delta", "mae_delta", "pearson_delta", "overlap_at_N", "overlap_at_50", "precision_at_50",
          "de_direction_match", "discrimination_score_l1"]
BENCH_NAME = {"pearson_delta": "delta"}
DE_METRICS = ["overlap_at_N", "overlap_at_50", "precision_at_50", "de_direction_match"]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "POLARS_MAX_THREADS",
                    "RAYON_NUM_THREADS")


@dataclass(frozen=True)
class Shape:
    cell_types: int
    drugs: int
    doses: int
    genes: int
    cells: tuple[int, int]  # cells per condition, low and high
    controls: int  # per cell type

    @property
    def conditions(self) -> int:
        return self.cell_types * self.drugs * self.doses


SIZES = {
    "full": Shape(3, 16, 4, 2000, (100, 300), 2000),  # sci-Plex3-shaped: 192 conditions
    "small": Shape(2, 4, 2, 300, (30, 60), 300),  # the default test run's parity check
}
DOSES_NM = (10, 100, 1000, 10000)
CELL_TYPES = ("A549", "K562", "MCF7")


def log_normalised(rng: np.random.Generator, rate: np.ndarray, n: int) -> np.ndarray:
    """`n` cells of Poisson counts with per-gene `rate` and a cell size factor, normalised per cell to
    10,000 and log1p'd (float32)."""
    size = rng.lognormal(0.0, 0.3, n)[:, None]
    counts = rng.poisson(rate[None, :] * size).astype(np.float32)
    total = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    return np.log1p(counts / total * 1e4).astype(np.float32)


def make_pair(shape: Shape, seed: int = 0):
    """(real, predicted) AnnData of the pair (see the module docstring). Drugs change 40-200 genes
    up or down by a dose-dependent factor, more strongly in some cell types; a quarter of the drugs
    are inert; cells per condition fall with dose for the active drugs (toxicity). The prediction
    gets each response partly right: the right genes at 60% of the log effect, a third of them
    missed, plus a few wrong genes, drawn as fresh cells."""
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    g = shape.genes
    base = rng.gamma(0.5, 0.4, g) + 0.005
    real_blocks, pred_blocks, labels, types = [], [], [], []
    for ct in CELL_TYPES[: shape.cell_types]:
        rate = base * rng.lognormal(0.0, 0.3, g)  # each cell type its own baseline
        controls = log_normalised(rng, rate, shape.controls)
        real_blocks.append(controls)
        pred_blocks.append(controls)
        labels += [CONTROL] * shape.controls
        types += [ct] * shape.controls
        sensitivity = rng.uniform(0.5, 1.5)
        for d in range(shape.drugs):
            drug_rng = np.random.default_rng([seed, d])  # a drug hits the same genes in every cell type
            hits = drug_rng.choice(g, drug_rng.integers(40, 201), replace=False)
            signs = drug_rng.choice([-1.0, 1.0], len(hits))
            potency = 0.0 if d % 4 == 3 else drug_rng.uniform(0.5, 1.5)
            missed = hits[: len(hits) // 3]
            wrong = drug_rng.choice(g, 10, replace=False)
            for k, dose in enumerate(DOSES_NM[: shape.doses]):
                strength = potency * sensitivity * (k + 1) / shape.doses
                log_effect = np.zeros(g)
                log_effect[hits] = signs * strength * 1.2
                low, high = shape.cells
                n = int(rng.integers(low, high + 1) * (1.0 - 0.4 * min(strength, 1.0)))
                real_blocks.append(log_normalised(rng, rate * np.exp(log_effect), n))
                guess = 0.6 * log_effect
                guess[missed] = 0.0
                guess[wrong] += 0.5 * strength
                pred_blocks.append(log_normalised(rng, rate * np.exp(guess), n))
                labels += [f"drug{d:02d}_{dose}nM"] * n
                types += [ct] * n
    obs = pd.DataFrame({PERT: pd.Categorical(labels), CELL_TYPE: pd.Categorical(types)}, index=[f"cell{i}" for i in range(len(labels))])
    var = pd.DataFrame(index=[f"gene{j:04d}" for j in range(g)])
    pair = []
    for blocks in (real_blocks, pred_blocks):
        x = sp.csr_matrix(np.concatenate(blocks))
        pair.append(ad.AnnData(x, obs=obs.copy(), var=var.copy()))
    return pair[0], pair[1]


def write_pair(folder: Path, shape: Shape, seed: int = 0) -> tuple[Path, Path]:
    """The pair written as `real.h5ad` and `pred.h5ad` under `folder` (reused when already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    real_path, pred_path = folder / "real.h5ad", folder / "pred.h5ad"
    if not (real_path.exists() and pred_path.exists()):
        real, pred = make_pair(shape, seed)
        real.write_h5ad(real_path)
        pred.write_h5ad(pred_path)
    return real_path, pred_path


# ---------------------------------------------------------------- the three tools, each on the pair


def long_frame(frame: pd.DataFrame, cell_type: str) -> pd.DataFrame:
    """A wide (perturbation x metric) frame as long rows: cell_type, perturbation, metric, value."""
    out = frame.melt(id_vars=[PERT], var_name="metric", value_name="value")
    out.insert(0, CELL_TYPE, cell_type)
    return out


def read_bench(real: Path, pred: Path):
    """Both files read as `bench score --pert-col perturbation --cell-type-key cell_type --control-pert control` reads them."""
    import argparse as _argparse

    from bench.commands.score import obs_keys, read_cells, read_truth

    args = _argparse.Namespace(pert_col=PERT, drug_key=None, cell_type_key=CELL_TYPE, dose_key=None, control=CONTROL)
    keys, one = obs_keys(args)
    truth = read_truth(real, keys, one)
    predicted, _ = read_cells(pred, keys, one)
    return truth, predicted


def score_bench(truth, predicted) -> pd.DataFrame:
    """bench's raw scores of the shared metrics (no references), on the sets `bench score` hands its evaluator."""
    from bench.commands.score import PredictedCells
    from bench.evaluation import Evaluator
    from bench.schema import conditions_of

    shared = sorted(set(conditions_of(truth.obs, control=CONTROL)) & set(conditions_of(predicted.obs, control=CONTROL)))
    evaluator = Evaluator(truth, shared, CONTROL, subset_controls=False, training=[])
    raw = evaluator.raw(PredictedCells(predicted, shared), [BENCH_NAME.get(m, m) for m in SHARED])
    wide = pd.DataFrame({CELL_TYPE: [c.cell_type for c in evaluator.conditions], PERT: [c.drug for c in evaluator.conditions],
                         **{m: raw[BENCH_NAME.get(m, m)].to_numpy() for m in SHARED}})
    return wide.melt(id_vars=[CELL_TYPE, PERT], var_name="metric", value_name="value")


def read_anndata(real: Path, pred: Path):
    import anndata as ad

    return ad.read_h5ad(real), ad.read_h5ad(pred)


def by_cell_type(real, pred):
    """(cell type, real subset, predicted subset), as `cell-eval run --celltype-col` splits a pair."""
    for ct in sorted(real.obs[CELL_TYPE].unique()):
        yield ct, real[(real.obs[CELL_TYPE] == ct).to_numpy()].copy(), pred[(pred.obs[CELL_TYPE] == ct).to_numpy()].copy()


def score_cell_eval(real, pred, threads: int, workdir: Path) -> pd.DataFrame:
    """cell-eval 0.8.2: one `MetricsEvaluator` per cell type (DE by pdex), the shared metrics only."""
    import logging

    from cell_eval import MetricsEvaluator
    from cell_eval._pipeline import MetricPipeline

    logging.getLogger("cell_eval").setLevel(logging.ERROR)
    frames = []
    for ct, real_ct, pred_ct in by_cell_type(real, pred):
        evaluator = MetricsEvaluator(pred_ct, real_ct, control_pert=CONTROL, pert_col=PERT, num_threads=threads,
                                     outdir=str(workdir / f"cell_eval_{ct}"))
        pipeline = MetricPipeline(profile=None)
        pipeline.add_metrics(SHARED)
        pipeline.compute_de_metrics(evaluator.de_comparison)
        pipeline.compute_anndata_metrics(evaluator.anndata_pair)
        frames.append(long_frame(pipeline.get_results().to_pandas(), ct))
    return pd.concat(frames, ignore_index=True)


def score_cell_eval2(real, pred, threads: int) -> pd.DataFrame:
    """cell-eval2: `compute_metrics` per cell type under its cell-eval conventions (v1: log-normalised
    input, geometric-mean fold changes, L1 discrimination with rank / n), DE on pdex, no target gene
    to exclude (drugs have none), on the CPU."""
    import logging
    import warnings
    from dataclasses import replace

    from cell_eval2 import EvalConfig, compute_metrics

    logging.getLogger("cell_eval2").setLevel(logging.ERROR)
    v1 = EvalConfig.v1()
    config = replace(v1, metrics=SHARED, pert_col=PERT, control=CONTROL, input_type="lognorm", num_threads=threads, device="cpu",
                     de=replace(v1.de, backend="pdex", fdr_scope="per_pert", clip_value=None), discrimination=replace(v1.discrimination, exclude_target_gene=False))
    frames = []
    for ct, real_ct, pred_ct in by_cell_type(real, pred):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tidy = compute_metrics(pred_ct, real_ct, config=config).to_pandas()
        wide = tidy.pivot(index="perturbation", columns="metric", values="value").reset_index().rename(columns={"perturbation": PERT})
        frames.append(long_frame(wide, ct))
    return pd.concat(frames, ignore_index=True)


def load(tool: str) -> None:
    """Import the tool's modules (timed apart from reading and scoring)."""
    if tool == "bench":
        import bench.commands.score  # noqa: F401
        import bench.evaluation  # noqa: F401
    else:
        import anndata  # noqa: F401

        if tool == "cell-eval":
            import cell_eval  # noqa: F401
            import cell_eval._pipeline  # noqa: F401
        else:
            import cell_eval2  # noqa: F401


WARM_GENES = 50  # genes of the slice each tool scores first, untimed by the scoring clock (numba compiles pdex's kernels there)


def warm_slice(adata, pert_column: str):
    """The controls and first perturbation of the first cell type, on the first WARM_GENES genes."""
    obs = adata.obs
    ct = sorted(obs[CELL_TYPE].unique())[0]
    first = sorted(set(obs.loc[obs[CELL_TYPE] == ct, pert_column]) - {CONTROL})[0]
    rows = ((obs[CELL_TYPE] == ct) & obs[pert_column].isin([CONTROL, first])).to_numpy()
    return adata[rows, :WARM_GENES].copy()


def score(tool: str, real: Path, pred: Path, threads: int, workdir: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """(long scores, seconds) of one tool in this process: seconds importing the tool, reading the
    pair, warming up (the same scoring on a slice of the pair, `warm_slice`: compiles the peers'
    numba kernels, which every fresh process pays once) and scoring the pair."""
    start = time.perf_counter()
    load(tool)
    loaded = time.perf_counter()
    if tool == "bench":
        from bench.schema import DRUG

        truth, predicted = read_bench(real, pred)
        read = time.perf_counter()
        score_bench(warm_slice(truth, DRUG), warm_slice(predicted, DRUG))
        warm = time.perf_counter()
        frame = score_bench(truth, predicted)
    else:
        real_ad, pred_ad = read_anndata(real, pred)
        read = time.perf_counter()
        if tool == "cell-eval":
            score_cell_eval(warm_slice(real_ad, PERT), warm_slice(pred_ad, PERT), threads, workdir / "warm")
            warm = time.perf_counter()
            frame = score_cell_eval(real_ad, pred_ad, threads, workdir)
        else:
            score_cell_eval2(warm_slice(real_ad, PERT), warm_slice(pred_ad, PERT), threads)
            warm = time.perf_counter()
            frame = score_cell_eval2(real_ad, pred_ad, threads)
    done = time.perf_counter()
    frame = frame[frame[PERT] != CONTROL]
    return frame, {"import_s": loaded - start, "read_s": read - loaded, "warm_s": warm - read, "score_s": done - warm}


# ---------------------------------------------------------------- measuring, in one process per tool


def available(tool: str) -> str | None:
    """None when the tool can run here, else why not."""
    module = {"bench": "bench.evaluation", "cell-eval": "cell_eval", "cell-eval2": "cell_eval2"}[tool]
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    return None if done.returncode == 0 else f"{tool} is not installed ({done.stderr.strip().splitlines()[-1]})"


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({v: str(threads) for v in THREAD_VARIABLES})
    return env


def own_peak_mb() -> float | None:
    """This process's peak resident memory since it started its program (VmHWM), None without
    /proc. Not `ru_maxrss`: Linux carries a forked child's resident size over its exec, so a child's
    ru_maxrss is at least what the parent held when it forked."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def measure(tool: str, real: Path, pred: Path, out: Path, threads: int) -> dict:
    """One tool scoring the pair in a fresh process: wall seconds (start to exit), peak resident MB
    (the process's own VmHWM; `ru_maxrss` from `os.wait4` where /proc is missing, which counts the
    parent's size at the fork too), and the process's own importing, reading and scoring seconds."""
    timing = out.with_suffix(".json")
    command = [sys.executable, str(HERE), "score", tool, str(real), str(pred), str(out), "--threads", str(threads)]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=thread_env(threads), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=HERE.parents[1])
    stderr = process.stderr.read() if process.stderr else b""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{tool} failed ({process.returncode}): {stderr.decode()[-2000:]}")
    inner = json.loads(timing.read_text())
    peak = inner.pop("peak_mb", None)
    return {"wall_s": wall, "peak_mb": usage.ru_maxrss / 1024 if peak is None else peak, **inner}


def load_average() -> float:
    return os.getloadavg()[0]


def side_by_side(folder: Path, shape: Shape, rounds: int = 3, threads: int = 1, tools=TOOLS) -> dict:
    """Every tool on the pair, `rounds` interleaved rounds (order rotated), in processes of their own.
    Returns per tool the rounds' measurements and their minima, the ratios of the minima to bench's,
    the load averages seen, and the path of each tool's scores."""
    real, pred = write_pair(folder / "pair", shape)
    runs: dict[str, list[dict]] = {t: [] for t in tools}
    loads = [load_average()]
    for r in range(rounds):
        order = list(tools[r % len(tools):]) + list(tools[: r % len(tools)])
        for tool in order:
            runs[tool].append(measure(tool, real, pred, folder / f"{tool}.csv", threads))
            loads.append(load_average())
    best = {t: {k: min(run[k] for run in runs[t]) for k in ("wall_s", "import_s", "read_s", "warm_s", "score_s", "peak_mb")} for t in tools}
    ratios, spread = {}, {}
    if "bench" in tools:
        ratios = {t: {k: best[t][k] / best["bench"][k] for k in ("wall_s", "score_s", "peak_mb")} for t in tools}
        # the same ratios within each round (the tools ran back to back): how far the load moved them
        spread = {t: {k: [run[k] / own[k] for run, own in zip(runs[t], runs["bench"])] for k in ("wall_s", "score_s")} for t in tools}
    return {"shape": shape.__dict__ | {"conditions": shape.conditions}, "rounds": rounds, "threads": threads, "runs": runs, "best": best,
            "ratios": ratios, "round_ratios": spread, "load": loads, "scores": {t: str(folder / f"{t}.csv") for t in tools}}


# ---------------------------------------------------------------- parity


def compare(ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """Per shared metric: conditions both define, the largest absolute difference there, and the
    conditions only one of the two defines (NaN on the other side)."""
    key = [CELL_TYPE, PERT, "metric"]
    both = ours.merge(theirs, on=key, suffixes=("_bench", "_peer"), how="outer")
    rows = []
    for metric in SHARED:
        part = both[both["metric"] == metric]
        a, b = part["value_bench"].to_numpy(float), part["value_peer"].to_numpy(float)
        defined = np.isfinite(a) & np.isfinite(b)
        rows.append({"metric": metric, "conditions": int(defined.sum()),
                     "max_abs_diff": float(np.max(np.abs(a[defined] - b[defined]))) if defined.any() else float("nan"),
                     "bench_only": int((np.isfinite(a) & ~np.isfinite(b)).sum()), "peer_only": int((~np.isfinite(a) & np.isfinite(b)).sum())})
    return pd.DataFrame(rows).set_index("metric")


def markdown(result: dict, parity: dict[str, pd.DataFrame]) -> str:
    """The timing table and the parity table, as docs/metrics.md shows them."""
    best, ratios, spread = result["best"], result["ratios"], result["round_ratios"]
    lines = ["| tool | wall s | import s | reading s | warm-up s | scoring s | peak MB | wall / bench's | scoring / bench's | peak / bench's |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def ratio(tool: str, key: str) -> str:
        low, high = min(spread[tool][key]), max(spread[tool][key])
        return f"{ratios[tool][key]:.2f}" + (f" ({low:.2f}-{high:.2f})" if tool != "bench" and len(spread[tool][key]) > 1 else "")

    for tool, b in best.items():
        lines.append(f"| {tool} | {b['wall_s']:.1f} | {b['import_s']:.1f} | {b['read_s']:.1f} | {b['warm_s']:.1f} | {b['score_s']:.1f} | {b['peak_mb']:.0f} "
                     f"| {ratio(tool, 'wall_s')} | {ratio(tool, 'score_s')} | {ratios[tool]['peak_mb']:.2f} |")
    lines += ["", "| metric | " + " | ".join(f"{p}: conditions, max abs diff, only bench / only {p}" for p in parity) + " |",
              "|---|" + "---|" * len(parity)]
    for metric in SHARED:
        cells = [f"{t.loc[metric, 'conditions']}, {t.loc[metric, 'max_abs_diff']:.2g}, {t.loc[metric, 'bench_only']} / {t.loc[metric, 'peer_only']}"
                 for t in parity.values()]
        lines.append(f"| `{metric}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("score", help="score the pair with one tool, in this process (what `measure` runs)")
    one.add_argument("tool", choices=TOOLS)
    one.add_argument("real", type=Path)
    one.add_argument("pred", type=Path)
    one.add_argument("out", type=Path)
    one.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="keep the pair and the scores here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.command == "score":
        frame, seconds = score(args.tool, args.real, args.pred, args.threads, args.out.parent)
        frame.to_csv(args.out, index=False)
        args.out.with_suffix(".json").write_text(json.dumps({**seconds, "peak_mb": own_peak_mb()}))
        return 0
    missing = [why for t in TOOLS if (why := available(t))]
    if missing:
        print("; ".join(missing), file=sys.stderr)
        return 1
    folder = args.dir or Path(tempfile.mkdtemp(prefix="peers-"))
    result = side_by_side(folder, SIZES[args.size], args.rounds, args.threads)
    scores = {t: pd.read_csv(p) for t, p in result["scores"].items()}
    parity = {t: compare(scores["bench"], scores[t]) for t in TOOLS if t != "bench"}
    result["parity"] = {t: p.reset_index().to_dict(orient="records") for t, p in parity.items()}
    (folder / "results.json").write_text(json.dumps(result, indent=1))
    print(f"{args.size}: {SIZES[args.size]}, {args.rounds} rounds, {args.threads} thread(s); load average {result['load']}")
    print(markdown(result, parity))
    print(f"written: {folder / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))
    sys.exit(main())
