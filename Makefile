# berth — build, demo, test and benchmark entry points.
# Everything the project needs is installed here (never by hand), so that a
# fresh Debian 12 machine with Python 3.11, Rust and apt can run
# `make demo` and `make test` as root.

# Debian's own interpreter when there is one: it is built with PGO and LTO and runs
# the daemon and the CLI about 1.5x faster than a plain source build (pyenv's).
PYTHON      ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV        := $(CURDIR)/.venv
VPY         := $(VENV)/bin/python
DEB_PACKAGES := python3-venv busybox-static iproute2 iptables docker.io docker-registry skopeo apache2-utils tini ca-certificates
DEMO_ROOT   ?= /var/lib/berth
DEMO_HOST   ?= unix:///run/berth/berth.sock
ROOTFS      := examples/busybox/rootfs.tar

export PATH := $(VENV)/bin:$(HOME)/.cargo/bin:$(PATH)

.PHONY: all deps venv build demo test test-rust test-python bench clean

all: build

# System packages: only touch apt when something is missing.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	    dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	        apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VPY):
	$(PYTHON) -m venv $(VENV)

venv: $(VPY)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "maturin>=1.5,<2" "setuptools>=68" "wheel" "aiohttp>=3.9" "zstandard>=0.22" "xxhash>=3.4" "pyroute2>=0.7" "bcrypt>=4" \
	    "pytest>=8" "pytest-benchmark>=4" "pytest-timeout>=2" "docker>=7" "matplotlib>=3.7"

build: deps venv
	cd $(CURDIR) && VIRTUAL_ENV=$(VENV) $(VENV)/bin/maturin develop --release -q
	cargo build --release -q -p berth-monitor
	install -m 0755 target/release/berth-monitor $(VENV)/bin/berth-monitor
	$(VPY) -m pip install -q --no-build-isolation -e cli
	# pip's `berth` script starts Python with site; ours (-S) starts faster.
	$(VPY) -m berth_cli.launcher $(VENV)/bin/berth
	# Bytecode ahead of time: the CLI runs thousands of times in scripts, and
	# PYTHONDONTWRITEBYTECODE environments would otherwise compile on every start.
	$(VPY) -m compileall -q cli/berth_cli pycore/berth

$(ROOTFS): examples/busybox/make-rootfs.sh
	sh examples/busybox/make-rootfs.sh $@

# Starts berthd (through the CLI's auto-start), imports the busybox example
# image and runs a command in it.
demo: build $(ROOTFS)
	BERTH_ROOT=$(DEMO_ROOT) BERTH_HOST=$(DEMO_HOST) sh examples/demo.sh

test: build $(ROOTFS) test-rust test-python

test-rust:
	cargo test --release --workspace -q

test-python:
	$(VPY) -m pytest -q --timeout=600 tests

bench: build $(ROOTFS)
	$(VPY) benchmarks/run.py --update-readme

clean:
	rm -rf target $(VENV) $(ROOTFS)
