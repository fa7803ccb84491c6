#!/usr/bin/env bash
# Installs bench (distribution bench-perturb) and everything its predictors, tests and lint steps need
# into the active Python 3.11 environment: torch 2.13.0 (a CPU build where the package index in use
# serves one, as a local mirror does; from PyPI on Linux it is the CUDA build: install torch first with
# --index-url https://download.pytorch.org/whl/cpu for the CPU one), then the project with its test
# extras (pytest, ruff, import-linter, mypy) and the peer packages the parity and speed tests compare
# with (cell-eval in `test`, cell-eval2 in `peers`).
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test,peers]"
# The CPA stack (predictors CPA, CPA_transfer): cpa-tools 0.8.8 declares Python < 3.11, so its pinned
# dependencies come first and cpa-tools itself without dependency resolution; predictors/cpa_compat.py
# bridges the remaining anndata/torch incompatibilities at run time.
python -m pip install --quiet "scvi-tools==0.20.3" "pytorch-lightning==1.9.5" "lightning>=2.2,<2.3" \
    "jax==0.4.30" "jaxlib==0.4.30" "chex==0.1.86" "optax==0.2.2" "flax==0.8.5" "numpyro==0.15.3" \
    "setuptools<81" "ray[tune]" rdkit adjustText seaborn mudata
python -m pip install --quiet --no-deps --ignore-requires-python "cpa-tools==0.8.8"
# biolord and scGen (predictors biolord, scGen) on the same scvi-tools 0.20.3: pinned, without
# dependency resolution (every other dependency is installed above), with the two small packages
# biolord declares besides; predictors/scvi_compat.py bridges scgen's imports from older scvi-tools.
python -m pip install --quiet --no-deps "biolord==0.0.3" "scgen==2.1.0" "session-info==1.0.1" "stdlib-list==0.12.0"
