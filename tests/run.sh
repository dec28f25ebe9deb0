#!/usr/bin/env bash
# The test command: sets up ./.venv (first run: a few minutes) and runs the test suite.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k registry`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../.ci/venv.sh" dev,plot
cd "$ROOT"
exec pytest -q "$@"
