# The two commands a fresh machine needs (README): `make main` and `make test`.
PY := .venv/bin/python

.PHONY: main test test-fast lint bootstrap

bootstrap:
	bash scripts/bootstrap.sh

# The main job on the embedded default task (see README).
main: bootstrap
	MUJOCO_GL=egl $(PY) scripts/main_job.py

# Every test, slow end-to-end ones included (what CI runs).
test: bootstrap
	MUJOCO_GL=egl $(PY) -m pytest -q

# Only the fast tests, for the edit-test loop (target: under 3 minutes on 2 free cores); the ten
# slowest are listed so a test that grows shows up. Wall-clock figures are benchmarks, not
# tests: bench/bench_realtime.py, bench/bench_safety.py.
test-fast: bootstrap
	MUJOCO_GL=egl $(PY) -m pytest -q -m "not slow" --durations=10

lint: bootstrap
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
