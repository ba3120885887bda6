#!/usr/bin/env bash
# Runs every test: the C++ suite (plain, then under ASan+UBSan and TSan) and
# the Python suite against the installed wheel.
#   BASTION_SANITIZERS=0 scripts/test.sh   skips the two sanitizer builds
#   scripts/test.sh --soak                 also runs the long soak tests
source "$(dirname "$0")/_env.sh"
SOAK=""
[ "${1:-}" = "--soak" ] && SOAK="--soak"

cpp_suite() {  # name, extra cmake args...
  local name="$1"; shift
  echo "== C++ tests ($name)"
  cmake -S . -B "build/test-$name" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DBASTION_BUILD_TESTS=ON "$@" > "build/cmake-$name.log" \
    || { cat "build/cmake-$name.log"; exit 1; }
  cmake --build "build/test-$name" -j "$JOBS"
  ctest --test-dir "build/test-$name" --output-on-failure -j "$JOBS" --timeout 600
}

mkdir -p build
cpp_suite plain
if [ "${BASTION_SANITIZERS:-1}" != "0" ]; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    cpp_suite asan -DBASTION_ASAN=ON
  cpp_suite tsan -DBASTION_TSAN=ON  # TSAN_OPTIONS (suppressions) come from CTest
fi

install_package test
echo "== Python tests (against the installed wheel)"
cd "$ROOT/tests/python"  # keeps the source tree's python/ off sys.path
"$VENV/bin/python" -m pytest -c "$ROOT/pyproject.toml" --rootdir "$ROOT" "$ROOT/tests/python" $SOAK
