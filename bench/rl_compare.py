"""RL fine-tuning compared: every method, every seed, from its base policy; one figure.

    .venv/bin/python bench/rl_compare.py --base outputs/base/diffusion_pushcube/checkpoints/\
latest.safetensors --methods dppo dsrl --seeds 0 1 2 --out outputs/rl_compare

Each (method, seed) is the user's own command, ``train.py algo=<method> checkpoint=<base>
seed=<seed>``, run one after another into ``<out>/<method>_seed<seed>`` (a run whose
``eval.json`` exists is not run again, so an interrupted sweep continues where it stopped).
Extra Hydra overrides for every run go after ``--``. ``--launcher NAME`` runs each method's
remaining seeds as one ``train.py -m`` sweep through conf/hydra/launcher/NAME.yaml instead
(``slurm``: one cluster job per seed, e.g. ``--launcher slurm -- hydra.launcher.partition=gpu``;
bench/sweep_launch.py), into the same ``<out>/<method>_seed<seed>`` directories. Methods that
need their own base or settings get them per method: ``--base dppo=A.safetensors
dsrl=B.safetensors`` and ``--method-overrides dsrl=+experiment=dsrl_push_cube_mix``
(repeatable; one override each). From each run's ``metrics.jsonl`` (rows with ``env_steps`` and
``eval/success_rate``, logged by every RL algorithm) it then writes

* ``<out>/success_vs_env_steps.png``: evaluation success against environment steps, one line
  per run, coloured by method and labelled with its base (DSRL's first point is its base's
  success; DPPO and ReinFlow evaluate first after ``algo.eval_every`` iterations);
* ``<out>/summary.json``: per run, its base, the env steps and wall-clock seconds at which
  evaluation success first reached ``--target`` (None if never), the env steps trained, and the
  final evaluation (train.py's ``eval.json``: success rate and Wilson interval over
  ``eval.n_episodes`` episodes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import sweep_launch  # noqa: E402

COLOURS = {"dppo": "tab:blue", "dsrl": "tab:orange", "reinflow": "tab:green"}


def read_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def eval_points(rows: list[dict]) -> list[tuple[float, float, float | None]]:
    """``(env_steps, success_rate, wall_s)`` of each evaluation row, in logged order."""
    return [
        (row["env_steps"], row["eval/success_rate"], row.get("time/wall_s"))
        for row in rows
        if "eval/success_rate" in row and "env_steps" in row
    ]


def first_reaching(points, target: float) -> tuple[float | None, float | None]:
    for env_steps, success, wall in points:
        if success >= target:
            return env_steps, wall
    return None, None


def bases_per_method(entries: list[str], methods: list[str]) -> dict[str, str]:
    """``--base``: one checkpoint for every method, or ``METHOD=CHECKPOINT`` for each."""
    if len(entries) == 1 and entries[0].partition("=")[0] not in methods:
        return dict.fromkeys(methods, entries[0])
    bases = {}
    for entry in entries:
        method, _, checkpoint = entry.partition("=")
        if method not in methods or not checkpoint:
            raise SystemExit(f"--base {entry!r}: expected METHOD=CHECKPOINT, METHOD in {methods}")
        bases[method] = checkpoint
    missing = [method for method in methods if method not in bases]
    if missing:
        raise SystemExit(f"--base names no checkpoint for {missing}")
    return bases


def overrides_per_method(entries: list[str], methods: list[str]) -> dict[str, list[str]]:
    """``--method-overrides``: ``METHOD=OVERRIDE`` entries grouped by method."""
    grouped: dict[str, list[str]] = {method: [] for method in methods}
    for entry in entries:
        method, _, override = entry.partition("=")
        if method not in grouped or not override:
            raise SystemExit(
                f"--method-overrides {entry!r}: expected METHOD=OVERRIDE, METHOD in {methods}"
            )
        grouped[method].append(override)
    return grouped


def base_label(base: str) -> str:
    """A short name for a base checkpoint: its run directory, or the file name."""
    path = Path(base)
    return path.parent.parent.name if path.parent.name == "checkpoints" else path.stem


def run_method(method: str, seed: int, base: str, out: Path, overrides: list[str]) -> Path:
    run_dir = out / f"{method}_seed{seed}"
    if (run_dir / "eval.json").exists():
        print(f"{run_dir}: done already", flush=True)
        return run_dir
    command = [
        sys.executable,
        "train.py",
        f"algo={method}",
        f"checkpoint={base}",
        f"seed={seed}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    print("$ " + " ".join(command), flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    terminal = run_dir / "terminal.out"  # train.py's own log is Hydra's train.log beside it
    with terminal.open("w") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{method} seed {seed} failed; see {terminal}")
    return run_dir


def sweep_method(method: str, seeds: list[int], base: str, out: Path, args, overrides) -> None:
    """The seeds of ``method`` not done yet, as one sweep through ``args.launcher``."""
    todo = [seed for seed in seeds if not (out / f"{method}_seed{seed}" / "eval.json").exists()]
    if not todo:
        print(f"{method}: every seed done already", flush=True)
        return
    method_arguments = [f"algo={method}", f"checkpoint={base}", *overrides]
    command = sweep_launch.multirun_command(
        method_arguments, todo, args.launcher, out, f"{method}_seed${{seed}}"
    )
    print("$ " + " ".join([sys.executable, *command]), flush=True)
    with (out / f"{method}_sweep.out").open("w") as log:  # each job's train.log in its run
        done = subprocess.run(
            [sys.executable, *command], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    if done.returncode != 0:
        print(f"FAILED: a {method} job; see {out / f'{method}_sweep.out'}", flush=True)


def run_all(args, bases: dict[str, str], method_overrides: dict[str, list[str]], out: Path):
    """Every (method, seed) run not done yet: one after another, or one sweep per method."""
    for method in args.methods:
        overrides = [*method_overrides[method], *args.overrides]
        if args.launcher:
            sweep_method(method, args.seeds, bases[method], out, args, overrides)
            continue
        for seed in args.seeds:
            try:
                run_method(method, seed, bases[method], out, overrides)
            except RuntimeError as error:
                print(f"FAILED: {error}", flush=True)


def plot(
    runs: dict[tuple[str, int], Path], bases: dict[str, str], path: Path, target: float
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    labelled = set()
    for (method, _seed), run_dir in sorted(runs.items()):
        points = eval_points(read_rows(run_dir))
        if not points:
            continue
        steps, success, _ = zip(*points, strict=True)
        label = None if method in labelled else f"{method} (base {base_label(bases[method])})"
        labelled.add(method)
        axis.plot(steps, success, color=COLOURS.get(method), alpha=0.8, marker=".", label=label)
    axis.axhline(target, color="grey", linestyle="--", linewidth=1)
    axis.set_xlabel("environment steps")
    axis.set_ylabel("evaluation success rate")
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--base", nargs="+", required=True, help="CHECKPOINT, or METHOD=CHECKPOINT per method"
    )
    parser.add_argument("--methods", nargs="+", default=["dppo", "dsrl"])
    parser.add_argument(
        "--method-overrides", nargs="*", default=[], help="METHOD=OVERRIDE, one Hydra override"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "outputs" / "rl_compare"))
    parser.add_argument("--target", type=float, default=0.9, help="success rate to time")
    parser.add_argument("--plot-only", action="store_true", help="only redraw from the runs")
    sweep_launch.add_launcher_argument(parser)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run (after --)")
    args = parser.parse_args()
    bases = bases_per_method(args.base, args.methods)
    method_overrides = overrides_per_method(args.method_overrides, args.methods)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.plot_only:
        run_all(args, bases, method_overrides, out)
    runs = {}
    for method in args.methods:
        for seed in args.seeds:
            run_dir = out / f"{method}_seed{seed}"
            if (run_dir / "metrics.jsonl").exists():
                runs[(method, seed)] = run_dir
            else:
                print(f"{run_dir}: no metrics.jsonl, left out", flush=True)
    summary = []
    for (method, seed), run_dir in sorted(runs.items()):
        points = eval_points(read_rows(run_dir))
        steps, wall = first_reaching(points, args.target)
        final = run_dir / "eval.json"
        entry = {"method": method, "seed": seed, "base": bases[method]}
        resolved = run_dir.resolve()  # through the links of a sweep assembled by hand
        where = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved
        entry.update(run_dir=str(where), evaluations=len(points))
        entry["env_steps_trained"] = max(row.get("env_steps", 0) for row in read_rows(run_dir))
        entry.update(env_steps_to_target=steps, wall_s_to_target=wall)
        if final.exists():
            result = json.loads(final.read_text())
            entry.update(
                final_success=result["success_rate"],
                final_ci95=result["success_ci95"],
                final_episodes=result["n_episodes"],
            )
        summary.append(entry)
        print(json.dumps(entry), flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(runs, bases, out / "success_vs_env_steps.png", args.target)
    print(f"figure: {out / 'success_vs_env_steps.png'}; summary: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
