# ndmptools: `make demo` and `make test` do all the set-up on a fresh Debian machine (as root).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages the tests use: the format oracle, file systems, ACL/xattr tools, udev mocks,
# the shells and man-page tools that check the generated completions and man pages, sshd and ssh
# for ndmpcopy over ssh, and Amanda's ndmjob (amanda-server), the DMA the NDMP server is tested against.
DEBIAN_TEST_PACKAGES := dump e2fsprogs xfsprogs acl attr btrfs-progs umockdev util-linux zsh fish groff-base man-db openssh-server openssh-client amanda-server

.PHONY: demo test lint docs check-docs clean venv

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "ndmptools needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python venv support is missing: installing python3-venv"; \
	  apt-get install -y python3-venv >/dev/null || { apt-get update >/dev/null && apt-get install -y python3-venv >/dev/null; }; \
	  rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	@$(BIN)/python -m pip install --quiet --upgrade pip

venv: $(BIN)/python

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

# A level-0 dump of a sample tree to a file, a restore into a new folder, and a compare.
demo: $(VENV)/.installed
	$(BIN)/python scripts/demo.py demo

# Installs what the tests need, then runs them all; a skipped test fails (NDMPTOOLS_NO_SKIP).
test: $(VENV)/.installed
	@missing=""; for p in $(DEBIAN_TEST_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 || \
	  { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing >/dev/null; }; \
	fi
	NDMPTOOLS_NO_SKIP=1 $(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check ndmptools tests scripts
	$(BIN)/ruff format --check ndmptools tests scripts

# Regenerate man/ and completions/ from the Click tree (a test checks they are current).
docs: $(VENV)/.installed
	$(BIN)/python scripts/gen_docs.py

check-docs: $(VENV)/.installed
	$(BIN)/python scripts/gen_docs.py --check

clean:
	rm -rf $(VENV) demo .pytest_cache .hypothesis build *.egg-info
