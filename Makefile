# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: `make run` installs what running needs (requirements.txt); everything else
# (tests, lint, benchmarks) adds the tools of requirements-dev.txt.
RUN_STAMP := $(VENV)/.run-$(shell cksum < requirements.txt | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: install catalogues run user test lint audit bench system-packages pdf translations clean

$(RUN_STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.run-* && touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP) requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP) catalogues

# The gettext catalogues, compiled (the .mo files are not committed: they are built).
catalogues: $(RUN_STAMP)
	$(BIN)/pybabel compile --statistics -d translations 2>&1 | grep -v '^compiling' || true

# Extract the marked strings and bring every catalogue up to date.
translations: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -o translations/messages.pot .
	$(BIN)/pybabel update --ignore-obsolete -i translations/messages.pot -d translations
	$(BIN)/pybabel compile -d translations

# The site with embedded defaults: SQLite in instance/, the in-process worker,
# and the dev mailbox (SMTP sink on 127.0.0.1:1025, shown at /dev/mailbox).
run: catalogues
	$(BIN)/flask --app contact_site --debug init-db
	$(BIN)/flask --app contact_site --debug run --host 127.0.0.1 --port 5000

# A console account in the `make run` set-up: make user NAME=ada (asks for a password).
user: catalogues
	@test -n "$(NAME)" || { echo "usage: make user NAME=yourname" >&2; exit 2; }
	$(BIN)/flask --app contact_site --debug init-db
	$(BIN)/flask --app contact_site --debug users create "$(NAME)"

# Four workers: the suite mostly waits (SMTP delays, leases, gunicorn and Celery starts), so
# it overlaps well even on two cores; tests/conftest.py keeps each module on one worker.
test: install system-packages
	$(BIN)/pytest -n 4 --dist loadgroup

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

audit: install
	$(BIN)/pip-audit --requirement requirements.txt --disable-pip --no-deps
	$(BIN)/pip-audit  # the installed set, dependencies of dependencies included

bench: install
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.export_memory
	$(BIN)/python -m benchmarks.webhooks
	$(BIN)/python -m benchmarks.scanning
	$(BIN)/python -m benchmarks.shapes
	$(BIN)/python -m benchmarks.scaleout
	$(BIN)/python -m benchmarks.summary

# Debian packages the tests use: Chromium (playwright cannot download one here), faketime,
# poppler-utils, fonts-noto-cjk.
system-packages:
	@scripts/ensure-system-packages

pdf: install
	$(BIN)/python scripts/make_thank_you_pdf.py

clean:
	rm -rf $(VENV) instance/devmail
