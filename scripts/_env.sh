# Shared by demo.sh and test.sh: system packages, then a virtualenv with the
# package built by `pip install .` (so tests see exactly what users install).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export JOBS="${JOBS:-2}"
export CMAKE_BUILD_PARALLEL_LEVEL="$JOBS"

"$ROOT/scripts/install_deps.sh"

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Installs the package (and the extras named in $1) into the virtualenv.
install_package() {
  local extras="${1:-}"
  echo "== pip install .${extras:+[$extras]}"
  "$VENV/bin/pip" install -q ".${extras:+[$extras]}"
}
