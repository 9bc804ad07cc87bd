# Set-up and checks on a fresh Debian machine (run as root for the kernel and BIRD tests).
#   make test   installs apt packages and the venv, then runs lint, type checks and the tests
#   make lab    installs the same, then runs the lab's default scenario
#   make lock   re-resolves requirements/*.lock (exact versions + hashes) from pyproject.toml
PYTHON ?= python3
VENV   ?= .venv
APT_PACKAGES = iptables ipset bird2 iproute2 iputils-ping netcat-openbsd conntrack docker-compose
PYTEST_ARGS ?=
# The lock is resolved by a pinned uv against PyPI as it stood at LOCK_DATE, so the same inputs give
# the same lock. To take newer releases: make lock LOCK_DATE=$$(date -u +%F), run the tests, commit.
UV_VERSION = 0.13.9
LOCK_DATE ?= 2026-12-06
LOCK_ARGS = --generate-hashes --universal --python-version 3.11 \
  --exclude-newer $(LOCK_DATE)T00:00:00Z --custom-compile-command "make lock" -q

# VPP: the lab and the tests marked realvpp use it when the `vpp` binary is installed. Beside a
# clone on our machines, ../shared/vpp holds FD.io VPP 26.06 built from source as one package; users
# install FD.io's own packages instead (README, "VPP"). Without VPP, the lab uses the kernel and the
# real-VPP tests skip, saying why.
VPP_DEB ?= ../shared/vpp/vpp-local_26.06_amd64.deb

.PHONY: deps apt vpp venv lint test lab lock proto clean

deps: apt vpp venv

apt:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	else echo "not root or no apt-get: skipping apt packages (root-only tests will skip)"; fi

vpp:
	@if command -v vpp >/dev/null; then echo "VPP: $$(vpp --version 2>/dev/null | head -1)"; \
	elif [ -f "$(VPP_DEB)" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing VPP from $(VPP_DEB)"; apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$$(realpath $(VPP_DEB))"; \
	else echo "VPP not installed (no $(VPP_DEB), or not root): the lab uses the kernel, real-VPP tests skip"; fi

venv: $(VENV)/.installed

# Installs exactly what requirements/dev.lock says (hashes checked), then the project itself without
# resolving anything: no upstream release can change what CI runs.
$(VENV)/.installed: requirements/dev.lock pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/pip install -q --require-hashes --no-deps -r requirements/dev.lock
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e .
	@echo "resolved versions:"; $(VENV)/bin/python --version; $(VENV)/bin/pip freeze --exclude-editable | paste -sd' '
	touch $@

lock:
	@test -x .lock-tools/bin/uv || { $(PYTHON) -m venv .lock-tools && .lock-tools/bin/pip install -q uv==$(UV_VERSION); }
	.lock-tools/bin/uv pip compile pyproject.toml requirements/build.in $(LOCK_ARGS) -o requirements/runtime.lock
	.lock-tools/bin/uv pip compile pyproject.toml requirements/build.in --extra dev $(LOCK_ARGS) -o requirements/dev.lock

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy vppagent felix_shim

test: deps lint
	@$(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc = 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

# The default scenario on VPP per node when the vpp binary is installed, else on the kernel
# (--driver auto); then the Services scenario, VPP only: without VPP it prints SKIP and why (exit 4).
lab: deps
	$(VENV)/bin/vppagent lab run --driver auto
	$(VENV)/bin/vppagent lab run --driver auto services || [ $$? -eq 4 ]

proto: venv
	$(VENV)/bin/python scripts/gen_proto.py

clean:
	rm -rf $(VENV) .lock-tools build *.egg-info .pytest_cache .mypy_cache .ruff_cache
