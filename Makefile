# One task runner. `make test` and `make run` work on a fresh Debian machine as root:
# they install the system packages and a virtualenv, both idempotent and quick the second time.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STATE := $(CURDIR)/.state
SYS_PKGS := runc conmon catatonit busybox-static umoci skopeo golang-github-containers-common \
            docker-registry vim git etcd-server etcd-client openssl \
            containernetworking-plugins iptables gcc libc6-dev
ROOTFS := $(STATE)/rootfs/busybox

.PHONY: deps sysdeps venv rootfs image config test run down bench lint completions clean fuzz

deps: sysdeps venv

# apt-get only when a package is missing: `update` once, then install.
sysdeps:
	@if ! dpkg -s $(SYS_PKGS) >/dev/null 2>&1; then \
	  echo "installing system packages: $(SYS_PKGS)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYS_PKGS) >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lint,dist]'
	touch $@

rootfs: $(ROOTFS)/bin/busybox

$(ROOTFS)/bin/busybox: | sysdeps
	deploy/mkrootfs-busybox.sh $(ROOTFS)

# The demo image: busybox:latest built offline from busybox-static (reproducible, so the
# same digest every time: importing it again changes nothing), imported into the store.
image: deps
	deploy/mkimage-busybox.sh $(STATE)/oci >/dev/null
	$(VENV)/bin/reconciler image import --state-dir $(STATE)/lib oci:$(STATE)/oci:busybox:latest

# The suite, after the lint that CI holds us to: ruff over everything, mypy --strict over
# the package and the tests.
test: deps lint
	$(PY) -m pytest

# `make run` writes the demo's settings into the user's config file (unless a file of
# someone else's is there), so every `reconciler` command in another terminal finds the
# demo's state dir, runc root and manifests without a flag; `make clean` removes it.
CONFIG := $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/reconciler/config.yaml
CONFIG_MARK := \# written by make run

config:
	@mkdir -p $(dir $(CONFIG))
	@if [ -e $(CONFIG) ] && ! grep -q '^$(CONFIG_MARK)' $(CONFIG); then \
	  echo "$(CONFIG) is not make run's: left alone (pass --state-dir $(STATE)/lib" \
	       "--runc-root $(STATE)/runc --manifests $(CURDIR)/manifests" \
	       "--policy $(CURDIR)/deploy/policy-demo.yaml)"; \
	else \
	  printf '%s in %s\nstateDir: %s\nruncRoot: %s\nmanifests: %s\npolicy: %s\n' \
	    '$(CONFIG_MARK)' '$(CURDIR)' '$(STATE)/lib' '$(STATE)/runc' '$(CURDIR)/manifests' \
	    '$(CURDIR)/deploy/policy-demo.yaml' > $(CONFIG); \
	  echo "settings for every reconciler command: $(CONFIG) (reconciler config view)"; \
	fi

run: deps rootfs image config
	mkdir -p $(STATE)/lib
	$(VENV)/bin/reconciler run

# Remove the demo's containers and their networks (the daemon leaves them running when it
# stops, by design).
down: venv
	@$(PY) -c 'import anyio; from reconciler.runtime.runc import RuncRuntime; \
	from reconciler.daemon.network import Networks; \
	rt = RuncRuntime(state_dir="$(STATE)/lib", runc_root="$(STATE)/runc"); \
	print("removed:", *anyio.run(rt.remove_all) or ["nothing"]); \
	net = Networks("$(STATE)/lib"); \
	print("released:", *anyio.run(net.recover, []) + anyio.run(net.prune) or ["nothing"])'

# The benchmark's peers: podman (`podman run -d`, `podman kube play`) and catatonit, which
# podman builds kube play's infra (pause) image from. apt-get only when one is missing.
BENCH_PKGS := podman catatonit

.PHONY: benchdeps
benchdeps:
	@if ! dpkg -s $(BENCH_PKGS) >/dev/null 2>&1; then \
	  echo "installing the benchmark's peers: $(BENCH_PKGS)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BENCH_PKGS) >/dev/null; \
	fi

bench: deps rootfs benchdeps
	$(PY) bench/run.py --rootfs $(ROOTFS)
	$(PY) bench/network.py --rootfs $(ROOTFS)
	$(PY) bench/probes.py --rootfs $(ROOTFS)
	$(PY) bench/userns.py --rootfs $(ROOTFS)

# Part of `make test` (and so of CI): ruff over everything, mypy --strict over the package
# and the tests, and the layer contract (pyproject's [tool.importlinter]).
lint: deps
	$(VENV)/bin/ruff check reconciler tests bench
	$(VENV)/bin/mypy reconciler tests
	$(VENV)/bin/lint-imports

# The manifest fuzzer at full strength (issue 15): 8,500 random examples per target, 51,000 in all.
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -p no:cacheprovider --timeout=0 \
	  --hypothesis-show-statistics -rxX tests/manifest/test_fuzz.py

# Shell completions (bash, zsh, fish) and the man page, generated from the real parser at
# build time (shtab, argparse-manpage: the `dist` extra) into build/; deploy/install-files.sh
# installs them.
completions: venv
	PYTHON=$(PY) deploy/mkcompletions.sh build

clean:
	rm -rf $(VENV) build *.egg-info
	@if grep -qx '$(CONFIG_MARK) in $(CURDIR)' $(CONFIG) 2>/dev/null; then rm $(CONFIG); fi
