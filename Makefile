VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-quick venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,app]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/locobank demo --out demo

# Two workers, one torch thread each (tests/conftest.py); a file's tests share a worker and its fixtures.
PYTEST := HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2 --dist loadfile

# The whole suite (CI's entry); prints the 15 slowest tests.
test: $(STAMP)
	$(PYTEST) --durations=15

# The quick tier: every module touched, no slow test (under two minutes on two cores).
test-quick: $(STAMP)
	$(PYTEST) -m "not slow" --durations=10

clean:
	rm -rf $(VENV) demo .pytest_cache
