"""Perturbation data sets: the embedded generator, loaders and the Benchmark container."""

from bench.data.benchmark import Benchmark, load_default

__all__ = ["Benchmark", "load_default"]
