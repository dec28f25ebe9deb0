#!/usr/bin/env bash
# The main job: sets up ./.venv (first run: a few minutes), then runs the end-to-end example on the
# embedded MiniLM backbone and tweet-sentiment data. Extra arguments go to `bayeshead demo`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../.ci/venv.sh" dev,plot
cd "$ROOT"
exec bayeshead demo "$@"
