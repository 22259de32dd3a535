"""Corruption harness: damaged copies of small valid stores through the checks of
``datasets/inspect.py verify=true`` (``verify_dataset(images="full")``) and train.py's pre-flight
(``check_dataset(images="presence")`` with its default size below which images are decoded
too), plus ``ReplayBuffer.open`` (what every other entry point
does first).

The faults are in ``dataset_faults.py``; each is applied to a directory store and to a zip store
(zip-file faults to the zip only). A copy counts as damaged when what zarr reads from it differs
from the original (attributes, array metadata, values; unreadable counts as different): a bit flip
that leaves every value as it was is no damage. For every copy: no exception but ``DatasetError``
escapes, a damaged copy is reported by --verify, and the originals are unchanged (file hashes).
Bit flips inside a chunk are caught by the CRC-32 every chunk of robopolicy's writer carries
(blosc itself keeps no checksum). The pre-flight decodes images too when they total at most
``data.preflight_decode_images_mb`` (these small stores); above that it reads only the 16-byte
header of image chunks, and damage inside an image chunk's payload then stops training at that
frame with one line naming it (robopolicy/data/frame_reader.py); --verify reports it up front.

The full harness is slow (``-m slow``, ~570 copies) and writes the counts per class to
bench/results/dataset_corruption.json; the default suite runs one fault per class in-process,
and a slow test runs one per class through the real entry points as subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr
from dataset_faults import BASES, Fault, all_faults

from robopolicy.config.run import DataConfig
from robopolicy.data import DatasetError, ReplayBuffer
from robopolicy.data.store import open_read_store, pack_directory_to_zip, unpack_zip_to_directory
from robopolicy.data.verify import check_dataset, verify_dataset

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "dataset_corruption.json"
KINDS = ("dir", "zip")
PREFLIGHT_DECODE_BYTES = DataConfig.preflight_decode_images_mb * 2**20  # train.py's default
BIT_FLIPS = ("chunk_bitflip", "image_payload")  # the classes where a copy may be undamaged


@dataclass
class Bases:
    """The valid stores, keyed by (base name, "dir" | "zip"), with their content and hashes."""

    paths: dict[tuple[str, str], Path]
    content: dict[tuple[str, str], dict | None]
    hashes: dict[tuple[str, str], dict[str, str]]

    def unchanged(self) -> bool:
        return all(_hashes(path) == self.hashes[key] for key, path in self.paths.items())


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> Bases:
    root = tmp_path_factory.mktemp("bases")
    paths = {}
    for name, write in BASES.items():
        for kind, suffix in (("dir", ".zarr"), ("zip", ".zarr.zip")):
            paths[name, kind] = root / f"{name}{suffix}"
            write(paths[name, kind])
    assert all(verify_dataset(path).ok for path in paths.values())
    content = {key: _content(path) for key, path in paths.items()}
    return Bases(paths, content, {key: _hashes(path) for key, path in paths.items()})


def _hashes(path: Path) -> dict[str, str]:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def _content(path: Path) -> dict | None:
    """Everything zarr reads from the store (attributes, array shapes, dtypes, values), or None
    when it cannot read it: the oracle for "is this copy damaged"."""
    try:
        warnings.simplefilter("ignore")  # zarr warns about a folder without .zarray
        root = zarr.open_group(open_read_store(path), mode="r")
        out: dict = {"": json.dumps(dict(root.attrs), sort_keys=True)}
        for name in ("data", "meta"):
            group = root[name]
            out[name] = json.dumps(dict(group.attrs), sort_keys=True)
            for key, array in group.arrays():
                values = np.asarray(array[...])
                out[f"{name}/{key}"] = (array.shape, str(array.dtype), values.tobytes())
        return out
    except Exception:  # the oracle: anything zarr cannot read is damaged
        return None
    finally:
        warnings.resetwarnings()


def make_copy(fault: Fault, kind: str, bases: Bases, out: Path) -> Path:
    """A damaged copy of the ``kind`` base store in ``out``."""
    base = bases.paths[fault.base, kind]
    if kind == "dir":
        path = out / "case.zarr"
        shutil.copytree(base, path)
        fault.damage(path)
    elif fault.raw_zip:
        path = out / "case.zarr.zip"
        shutil.copy(base, path)
        fault.damage(path)
    else:
        staging, path = out / "staging", out / "case.zarr.zip"
        unpack_zip_to_directory(base, staging)
        fault.damage(staging)
        pack_directory_to_zip(staging, path)
    return path


@dataclass
class Outcome:
    fault: Fault
    kind: str
    damaged: bool
    full: str | None  # the first problem --verify reports (None: none)
    preflight: str | None  # the pre-flight's DatasetError (None: it passed)
    tracebacks: list[str]

    @property
    def undetectable(self) -> bool:
        return self.damaged and self.full is None


def run_case(fault: Fault, kind: str, bases: Bases, out: Path) -> Outcome:
    path = make_copy(fault, kind, bases, out)
    damaged = _content(path) != bases.content[fault.base, kind]
    tracebacks, full, preflight = [], None, None
    try:
        report = verify_dataset(path, images="full")
        full = str(report.problems[0]) if report.problems else None
    except Exception as error:
        tracebacks.append(f"verify: {type(error).__name__}: {error}")
    try:
        check_dataset(path, images="presence", decode_images_up_to=PREFLIGHT_DECODE_BYTES)
    except DatasetError as error:
        preflight = str(error)
    except Exception as error:
        tracebacks.append(f"pre-flight: {type(error).__name__}: {error}")
    try:
        ReplayBuffer.open(path)
    except DatasetError:
        pass
    except Exception as error:
        tracebacks.append(f"open: {type(error).__name__}: {error}")
    return Outcome(fault, kind, damaged, full, preflight, tracebacks)


def check_outcome(outcome: Outcome) -> None:
    label = f"{outcome.fault.cls} {outcome.fault.name} ({outcome.kind})"
    assert not outcome.tracebacks, f"{label}: {outcome.tracebacks}"
    for line in (outcome.full, outcome.preflight):
        assert line is None or "\n" not in line, f"{label}: {line!r}"
    assert not outcome.undetectable, f"{label}: damaged, and --verify accepted it"
    if outcome.damaged:  # these stores are far below the size up to which images are decoded
        assert outcome.preflight is not None, f"{label}: pre-flight missed {outcome.full}"


def cases(one_per_class: bool = False) -> list[tuple[Fault, str]]:
    chosen, seen = [], set()
    for fault in all_faults():
        for kind in ("zip",) if fault.raw_zip else KINDS:
            if one_per_class and (fault.cls, kind) in seen:
                continue
            seen.add((fault.cls, kind))
            chosen.append((fault, kind))
    return chosen


def _run_all(chosen, bases: Bases, tmp_path: Path) -> list[Outcome]:
    outcomes = []
    for index, (fault, kind) in enumerate(chosen):
        out = tmp_path / f"case{index}"
        out.mkdir()
        outcomes.append(run_case(fault, kind, bases, out))
        shutil.rmtree(out)
    return outcomes


def summarize(outcomes: list[Outcome]) -> dict[str, dict[str, int]]:
    table: dict[str, Counter] = defaultdict(Counter)
    for o in outcomes:
        row = table[o.fault.cls]
        row["copies"] += 1
        row["damaged"] += o.damaged
        row["identical (no damage)"] += not o.damaged
        row["reported by --verify"] += o.damaged and o.full is not None
        row["reported by pre-flight"] += o.damaged and o.preflight is not None
        row["raw tracebacks"] += bool(o.tracebacks)
        row["accepted by --verify"] += o.undetectable
        row["accepted by pre-flight"] += o.damaged and o.preflight is None
    total = Counter()
    for row in table.values():
        total.update(row)
    return {**{cls: dict(row) for cls, row in sorted(table.items())}, "total": dict(total)}


def test_one_fault_per_class_is_reported(bases, tmp_path):
    outcomes = _run_all(cases(one_per_class=True), bases, tmp_path)
    for outcome in outcomes:
        check_outcome(outcome)
    assert {o.fault.cls for o in outcomes} == {f.cls for f in all_faults()}
    assert all(o.damaged for o in outcomes if o.fault.cls not in BIT_FLIPS)
    assert bases.unchanged(), "an original store was modified"


@pytest.mark.slow
def test_corruption_harness(bases, tmp_path):
    start = time.perf_counter()
    outcomes = _run_all(cases(), bases, tmp_path)
    seconds = time.perf_counter() - start
    counts = summarize(outcomes)
    undetectable = Counter(f"{o.fault.name.split(' seed')[0]}" for o in outcomes if o.undetectable)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "what": "damaged copies of a 4-episode store (directory and zip) through "
                "verify_dataset(images='full') (= inspect.py verify=true) and "
                "check_dataset(images='presence', decode_images_up_to=1 GiB) (= train.py's "
                "pre-flight at its default data.preflight_decode_images_mb); tests/"
                "test_dataset_corruption.py",
                "seconds": round(seconds, 1),
                "counts": counts,
                "undetectable_bit_flips_by_chunk": dict(sorted(undetectable.items())),
            },
            indent=2,
        )
        + "\n"
    )
    print(json.dumps(counts, indent=1))
    for outcome in outcomes:
        check_outcome(outcome)
    assert counts["total"]["damaged"] >= 300
    assert counts["total"]["raw tracebacks"] == 0
    assert counts["total"]["accepted by --verify"] == counts["total"]["accepted by pre-flight"] == 0
    assert bases.unchanged(), "an original store was modified"


# ----------------------------------------------------------------------------- entry points
def _subprocess(args: list[str], tmp_path: Path, traceback: bool = False):
    env = {
        k: v for k, v in os.environ.items() if k not in ("ROBOPOLICY_TRACEBACK", "HYDRA_FULL_ERROR")
    }
    env |= {"OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl"}
    if traceback:
        env["ROBOPOLICY_TRACEBACK"] = "1"
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def _one_line_error(done, path: Path, program: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: dataset "), done.stderr
    assert str(path) in lines[0], lines[0]
    return lines[0]


def _entry_point_cases() -> list[tuple[Fault, str]]:
    """One fault per class, directory stores (zip for zip faults)."""
    chosen, seen = [], set()
    for fault, kind in cases():
        if fault.cls not in seen:
            seen.add(fault.cls)
            chosen.append((fault, kind))
    return chosen


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "kind"), _entry_point_cases(), ids=[f.cls for f, _ in _entry_point_cases()]
)
def test_entry_points_refuse_with_one_line(bases, tmp_path, fault, kind):
    path = make_copy(fault, kind, bases, tmp_path)
    done = _subprocess(["datasets/inspect.py", f"path={path}", "verify=true"], tmp_path)
    _one_line_error(done, path, "inspect.py")
    done = _subprocess(["datasets/inspect.py", f"path={path}", f"out={tmp_path / 'o'}"], tmp_path)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    if done.returncode != 0:
        _one_line_error(done, path, "inspect.py")
    run_dir = tmp_path / "run"
    overrides = [
        "+experiment=main_job",
        f"task.dataset_path={path}",
        "obs_keys=[pos]",
        "algo.num_steps=2",
        f"hydra.run.dir={run_dir}",
    ]
    done = _subprocess(["train.py", *overrides], tmp_path)
    _one_line_error(done, path, "train.py")
    assert not (run_dir / "checkpoints").exists() and "[train] dataset verified" not in done.stdout
    assert bases.unchanged()


@pytest.mark.slow
def test_traceback_variable_shows_the_stack(bases, tmp_path):
    fault = next(f for f in all_faults() if f.cls == "chunk_truncated")
    path = make_copy(fault, "dir", bases, tmp_path)
    done = _subprocess(
        ["datasets/inspect.py", f"path={path}", "verify=true"], tmp_path, traceback=True
    )
    assert done.returncode != 0 and "Traceback" in done.stderr and "DatasetError" in done.stderr
