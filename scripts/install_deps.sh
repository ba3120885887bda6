#!/usr/bin/env bash
# Installs the system libraries Bastion builds against, from Debian's packages.
# Safe to run repeatedly: it installs only what is missing.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config cmake
  python3 python3-dev python3-venv  # the virtualenv the package is built and tested in
  librocksdb-dev   # the ledger's store
  liblua5.4-dev    # the policy engine
  libyaml-cpp-dev  # configuration
  libfmt-dev       # formatting
  libssl-dev       # SHA-256 (OpenSSL libcrypto)
  libhiredis-dev   # the Redis client of shared (fleet) budgets, limits and breakers
  redis-server     # the Redis the fleet tests start on a loopback port
  libgtest-dev libgmock-dev  # C++ tests
  libbenchmark-dev # C++ benchmarks
  ccache           # compiler cache: rebuilds reuse unchanged objects
  clang libclang-rt-14-dev  # the ASan+UBSan suite and the fuzz targets (libFuzzer, sanitizer runtimes)
  tzdata           # IANA time zones (/usr/share/zoneinfo) for calendar budget windows
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install_deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
