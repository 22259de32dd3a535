# The two commands a fresh machine needs (README): `make main` and `make test`.
PY := .venv/bin/python

.PHONY: main test test-fast lint bootstrap

bootstrap:
	bash scripts/bootstrap.sh

# The main job on the embedded default task (see README).
main: bootstrap
	MUJOCO_GL=egl $(PY) scripts/main_job.py

# Tests run in parallel worker processes (pytest-xdist): one per core, at most 4 (each slow RL
# test starts up to 16 env workers of its own).
PARALLEL := --numprocesses=auto --maxprocesses=4

# Every test, slow end-to-end ones included (what CI runs); the 25 slowest are listed.
test: bootstrap
	MUJOCO_GL=egl $(PY) -m pytest -q $(PARALLEL) --durations=25

# Only the fast tests, for the edit-test loop (target: under 3 minutes on 2 free cores); the ten
# slowest are listed so a test that grows shows up. Wall-clock figures are benchmarks, not
# tests: bench/bench_realtime.py, bench/bench_safety.py.
test-fast: bootstrap
	MUJOCO_GL=egl $(PY) -m pytest -q -m "not slow" $(PARALLEL) --durations=10

lint: bootstrap
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
