#!/usr/bin/env bash
# Runs every test: the C++ suite (plain, then under ASan+UBSan with the fuzz
# targets' short runs, and TSan) and the Python suite against the installed wheel.
#   BASTION_SANITIZERS=0 scripts/test.sh   skips the two sanitizer builds
#   scripts/test.sh --soak                 also runs the long soak tests
#   BASTION_FUZZ_SECONDS=60 scripts/test.sh   fuzzes each target longer (default 15)
source "$(dirname "$0")/_env.sh"
SOAK=""
[ "${1:-}" = "--soak" ] && SOAK="--soak"

cpp_suite() {  # name, build type, extra cmake args...
  local name="$1" type="$2"; shift 2
  local start=$SECONDS
  echo "== C++ tests ($name)"
  cmake -S . -B "build/test-$name" -DCMAKE_BUILD_TYPE="$type" \
    -DBASTION_BUILD_TESTS=ON "$@" > "build/cmake-$name.log" \
    || { cat "build/cmake-$name.log"; exit 1; }
  cmake --build "build/test-$name" -j "$JOBS"
  ctest --test-dir "build/test-$name" --output-on-failure -j "$JOBS" --timeout 600
  echo "== C++ tests ($name): $((SECONDS - start)) s"
}

mkdir -p build
# Release, as the wheel is built: the compiler cache then serves the core's
# objects to the wheel's build instead of compiling them a second time.
cpp_suite plain Release
if [ "${BASTION_SANITIZERS:-1}" != "0" ]; then
  # Built with clang so that the fuzz targets (tests/fuzz) share its objects;
  # each target runs its seeds and then fuzzes briefly, as one more test.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    cpp_suite asan-clang RelWithDebInfo -DBASTION_ASAN=ON -DBASTION_FUZZ=ON \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DBASTION_FUZZ_SECONDS="${BASTION_FUZZ_SECONDS:-15}"
  cpp_suite tsan RelWithDebInfo -DBASTION_TSAN=ON  # TSAN_OPTIONS (suppressions) come from CTest
fi

start=$SECONDS
install_package test
echo "== pip install: $((SECONDS - start)) s"
echo "== Python tests (against the installed wheel)"
cd "$ROOT/tests/python"  # keeps the source tree's python/ off sys.path
"$VENV/bin/python" -m pytest -c "$ROOT/pyproject.toml" --rootdir "$ROOT" "$ROOT/tests/python" $SOAK
