#!/usr/bin/env bash
# The main job: sets up ./.venv (first run: a few minutes), then runs the quick suite: ten
# uncertainty methods side by side on the embedded MiniLM backbone and tweet-sentiment data
# (table on stdout; JSONs, Markdown/CSV and reliability PNGs in outputs/bench/quick).
# Extra arguments go to `bayeshead bench`, e.g. `--seeds 0 1 2` or `--methods lora+mle polar+vbll`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../.ci/venv.sh" dev,plot
cd "$ROOT"
exec bayeshead bench run quick "$@"
