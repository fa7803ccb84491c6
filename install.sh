#!/usr/bin/env bash
# Installs bench and everything its predictors and tests need into the active Python 3.11
# environment: the CPU build of torch (from local disk where available), then the project.
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test]"
