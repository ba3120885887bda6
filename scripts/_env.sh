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

# Compiler cache: the C++ test trees and the wheel's build reuse each other's
# objects and those of earlier runs on this machine (~/.cache/ccache).
if command -v ccache >/dev/null; then
  export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache
  export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1
  export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
  export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-8G}"
fi

# Installs the package (and the extras named in $1) into the virtualenv.
install_package() {
  local extras="${1:-}"
  echo "== pip install .${extras:+[$extras]}"
  # The build backend lives in the venv (no isolated build environment), so the
  # extension's include paths stay the same from one build to the next and the
  # compiler cache hits.
  "$VENV/bin/pip" install -q "scikit-build-core>=0.10" "pybind11>=2.12"
  "$VENV/bin/pip" install -q --no-build-isolation ".${extras:+[$extras]}"
}
