#!/usr/bin/env bash
# Installs every Debian 12 package faceid needs to build, test and run.
# Idempotent: when everything is present it only runs dpkg-query and exits (under a second).
set -euo pipefail

packages=(
  cmake ninja-build g++ make pkg-config ccache
  libtorch-dev
  libfaiss-dev libopenblas0-pthread
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libopencv-dev opencv-data
  libdlib-dev libdlib-data
  libjpeg62-turbo-dev libpng-dev libwebp-dev libtiff-dev
  libsqlite3-dev sqlite3 libssl-dev libabsl-dev
  libspdlog-dev libfmt-dev
  libcli11-dev nlohmann-json3-dev
  libplplot-dev plplot-driver-cairo
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-torch python3-grpcio python3-grpc-tools python3-protobuf python3-numpy
)

if [ ! -r /etc/os-release ] || ! grep -qE '^ID=debian' /etc/os-release \
   || ! grep -qE '^VERSION_ID="12"' /etc/os-release; then
  echo "install-deps: this script supports Debian 12 (bookworm) only." >&2
  echo "install-deps: on another system install the packages listed in $0 by hand." >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages are installed."
  exit 0
fi

echo "install-deps: missing ${#missing[@]} package(s): ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "install-deps: run as root (or install sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done."
