# medsyn developer commands. Activate the virtual environment first (see README).
SHELL := /bin/bash
.PHONY: test nbtest pytest export clean readme check docs trust lab faults

# the one test command: notebooks' inline tests, then the pytest suite
test: nbtest pytest

nbtest:
	nbdev-test --n-workers 1

pytest:
	python -m pytest -q tests

export:
	nbdev-export

clean:
	nbdev-clean

readme:
	python tools/readme.py

# sign the notebooks (nbs/ and the executed ones in runs/) for this user's Jupyter, so that JupyterLab
# opens them trusted: Jupyter trusts only what it signed itself, and a fresh clone is signed by no one
trust:
	nbdev-trust --force-all
	if [ -d runs ]; then find runs -name '*.ipynb' -exec jupyter trust {} +; fi

lab: trust
	jupyter lab

# the documentation site in _docs/ (nbdev's page processing; Quarto if installed, else nbconvert),
# then fail on a missing page, a broken link or image, or an error output
docs:
	python tools/docs.py
	python tools/check_docs.py

# library in sync with notebooks, notebooks clean, README current
check:
	nbdev-export && nbdev-clean
	git diff --exit-code -- medsyn nbs
	test -z "$$(git status --porcelain -- medsyn nbs)"
	python tools/readme.py --check

# every fault-injection, hostile-input and concurrency case (the default pytest run has the quick ones), then the
# reliability table, printed and written into benchmarks/RESULTS.md with pytest's summary line and the commit it ran on.
# About 33 min on a 2-core CPU; each case has a timeout. The table is written even when a case fails (a failed case has no
# row; the summary line counts it), and the target then fails.
FAULTS_LOG ?= benchmarks/faults.jsonl
faults:
	rm -f $(FAULTS_LOG) benchmarks/out/faults.txt
	mkdir -p benchmarks/out
	set -o pipefail; MEDSYN_FAULTS=all MEDSYN_FAULTS_LOG=$(abspath $(FAULTS_LOG)) OMP_NUM_THREADS=1 python -m pytest -q -m faults \
		tests/test_faults.py tests/test_hostile.py tests/test_cluster.py 2>&1 | tee benchmarks/out/faults.txt; rc=$$?; \
	summary="$$(grep -E '(passed|failed)' benchmarks/out/faults.txt | tail -1 | tr -d '=' | xargs)"; \
	commit="$$(git rev-parse --short HEAD)$$(git diff --quiet HEAD -- medsyn tests settings.ini nbs || echo ' plus local changes')"; \
	python tools/faults_table.py $(FAULTS_LOG) --note "pytest: $$summary on commit $$commit."; \
	exit $$(( rc || $$? ))
