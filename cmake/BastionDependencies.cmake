# Finds Bastion's system dependencies. Each failure names the Debian package
# that provides the library and the command that installs all of them.

set(_bastion_install_hint "run: sudo scripts/install_deps.sh   (or: apt-get install librocksdb-dev liblua5.4-dev libyaml-cpp-dev libfmt-dev libssl-dev libhiredis-dev redis-server libgtest-dev libbenchmark-dev)")

function(bastion_require found package what)
  if(NOT ${found})
    message(FATAL_ERROR
      "Bastion needs ${what}, which was not found.\n"
      "It comes from the Debian package '${package}'; ${_bastion_install_hint}")
  endif()
endfunction()

find_package(Threads REQUIRED)

find_package(RocksDB CONFIG QUIET)
bastion_require(RocksDB_FOUND librocksdb-dev "RocksDB (the ledger store)")
# The shared library: Debian's static librocksdb.a is not position-independent,
# so it cannot go into the Python extension.
if(TARGET RocksDB::rocksdb-shared)
  set(BASTION_ROCKSDB RocksDB::rocksdb-shared)
else()
  set(BASTION_ROCKSDB RocksDB::rocksdb)
endif()

find_package(OpenSSL QUIET COMPONENTS Crypto)
bastion_require(OpenSSL_FOUND libssl-dev "OpenSSL libcrypto (SHA-256)")

find_package(fmt CONFIG QUIET)
bastion_require(fmt_FOUND libfmt-dev "fmt")

find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(LUA54 QUIET IMPORTED_TARGET lua5.4)
endif()
bastion_require(LUA54_FOUND liblua5.4-dev "Lua 5.4")

if(PkgConfig_FOUND)
  pkg_check_modules(HIREDIS QUIET IMPORTED_TARGET hiredis)
endif()
bastion_require(HIREDIS_FOUND libhiredis-dev "hiredis (the Redis client)")

find_package(yaml-cpp CONFIG QUIET)
bastion_require(yaml-cpp_FOUND libyaml-cpp-dev "yaml-cpp")
if(TARGET yaml-cpp::yaml-cpp)
  set(BASTION_YAML_TARGET yaml-cpp::yaml-cpp)
else()
  set(BASTION_YAML_TARGET yaml-cpp)
endif()

if(BASTION_BUILD_TESTS)
  find_package(GTest CONFIG QUIET)
  if(NOT GTest_FOUND)
    find_package(GTest QUIET)
  endif()
  bastion_require(GTest_FOUND libgtest-dev "GoogleTest")
endif()

if(BASTION_BUILD_BENCHMARKS)
  find_package(benchmark CONFIG QUIET)
  bastion_require(benchmark_FOUND libbenchmark-dev "Google Benchmark")
endif()
