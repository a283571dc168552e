# faceid: the two commands a newcomer types are `make demo` and `make test`.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
# Spinning OpenMP threads fight OpenBLAS and each other on small machines (see README).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: all deps configure build test demo bench tsan clean

all: build

deps:
	@scripts/install-deps.sh

# FACEID_DATA=DIR (a folder holding lfw_deepfunneled/, att_orl/, scenes/ ..., like
# ../shared/data) points the tests at face data outside the default place; given, or with
# CMAKE_FLAGS, the build is configured again so the value takes effect.
configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ] || [ -n "$(FACEID_DATA)$(CMAKE_FLAGS)" ]; then \
	  cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	    $(if $(FACEID_DATA),-DFACEID_DATA_DIR=$(abspath $(FACEID_DATA))) $(CMAKE_FLAGS); \
	fi

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900

demo: build
	@scripts/demo.sh

bench: build
	@scripts/bench.sh

# ThreadSanitizer build of the server, store and index code with a fake embedder
# (LibTorch, OpenMP and OpenBLAS are not instrumented). Not part of `make test`.
tsan: deps
	cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFACEID_TSAN=ON \
	  -DFACEID_BUILD_BENCH=OFF
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=1" \
	  OMP_NUM_THREADS=1 ctest --output-on-failure -L tsan

clean:
	rm -rf $(BUILD_DIR) build-tsan
