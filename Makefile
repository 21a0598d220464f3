# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: install run test lint audit bench chromium pdf clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# The site with embedded defaults: SQLite in instance/, the in-process worker,
# and the dev mailbox (SMTP sink on 127.0.0.1:1025, shown at /dev/mailbox).
run: install
	$(BIN)/flask --app contact_site --debug init-db
	$(BIN)/flask --app contact_site --debug run --host 127.0.0.1 --port 5000

test: install chromium
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .

audit: install
	$(BIN)/pip-audit --requirement requirements.txt --disable-pip --no-deps
	$(BIN)/pip-audit  # the installed set, dependencies of dependencies included

bench: install
	$(BIN)/python -m benchmarks.run

# Debian's Chromium for the browser tests (playwright cannot download one here).
chromium:
	@scripts/ensure-chromium

pdf: install
	$(BIN)/python scripts/make_thank_you_pdf.py

clean:
	rm -rf $(VENV) instance/devmail
