"""Dataset QA: measures of a demonstration dataset that predict how well a policy trains on it.

``assess_quality(buffer, chunking, settings)`` returns a ``QualityReport``:

- coverage, per end-padding rule of the sampler (``robopolicy/data/sampler.py``): the share of
  each episode's steps that serve as a window's conditioning step at the policy's chunking,
  pooled as ``conditioning_coverage`` pools it, and the episodes whose last step never is one;
- action divergence (after Belkhale et al. 2023, "Data Quality in Imitation Learning"): for up
  to ``query_steps`` steps drawn at random, the ``neighbours`` nearest states of *other*
  episodes in the low-dim observation space (each dimension standardized), and the mean distance
  from the step's action to theirs. Actions are measured as the policy sees them under its
  default ``limits`` normalization (robopolicy/data/normalizer.py): each dimension in units of
  half its range over the dataset, so a dimension spans 2; a distance is the RMS over action
  dimensions. Demonstrators who agree give ~0; a gripper opened in one demo and closed in the
  other gives 2 / sqrt(action dims) (0.76 for 7);
- action modes at those steps: the step's action and its neighbours', clustered (average
  linkage, cut at ``mode_distance``); a mode is a cluster holding at least ``mode_min_share`` of
  them, so a lone noisy action is no mode;
- per episode: length, jerk (mean |third difference| of the action, in those units) and idle
  share (the share of steps at which no action dimension moves more than ``idle_threshold``: a
  dimension whose hold action is ``"zero"``, a delta, moves by its value, any other by its
  change), each with its outliers by a robust rule (``robust_outliers``);
- the expert: the share of successful episodes (a per-episode ``success`` field, where the
  store has one: datasets/collect.py keeps only successes and records none), episodes sharing a
  seed, each collection run's settings (provenance) and the spread of episode lengths;
- flags: one line per measure out of range, naming the value and the threshold.

Nothing is printed or written here: ``quality_report.py`` and ``quality_plots.py`` do that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial import cKDTree

from robopolicy.data.errors import DatasetError
from robopolicy.data.reader import ReplayBuffer
from robopolicy.data.sampler import (
    END_PADDING,
    conditioning_coverage,
    conditioning_steps,
    pad_after_for,
)

LAST_K = 5  # the pooled coverage's "last k steps of each episode" (as the coverage table's)
MIN_SCALE = 1e-8  # a dimension whose std or half range is below this is constant: unscaled
MAD_TO_STD = 1.4826  # the median absolute deviation of a normal distribution, times this: its std
MEAN_AD_TO_STD = 1.2533  # the same for the mean absolute deviation (stands in where the MAD is 0)
RUN_FIELDS = ("source", "first_seed", "injected_noise_std", "teleop_style", "dagger_checkpoint")
LISTED = 12  # episode indices written out in a flag line before "... (n more)"


class QualitySettings(Protocol):
    """What this module reads: robopolicy/config/dataset_tools.py QualityConfig, which documents
    each setting and holds its default."""

    end_padding: str
    coverage_min: float
    neighbours: int
    query_steps: int
    seed: int
    divergence_threshold: float
    divergence_quantile: float
    divergence_share_max: float
    mode_distance: float
    mode_min_share: float
    multimodal_share_max: float
    outlier_k: float
    idle_threshold: float


@dataclass
class Coverage:
    """Conditioning-step coverage under one end-padding rule."""

    rule: str
    pooled: dict[str, float]  # conditioning_coverage: steps, last_k, episodes_with_last_step
    per_episode: np.ndarray  # share of each episode's steps that are conditioning steps
    tail_never_trained: np.ndarray  # episodes whose last step is no conditioning step


@dataclass
class Divergence:
    """Action divergence and action modes at the query steps."""

    neighbours: int  # neighbours per query (fewer than asked where other episodes hold fewer)
    queries: np.ndarray  # the query steps (indices into the whole dataset), ascending
    per_query: np.ndarray  # mean distance from each query's action to its neighbours' actions
    modes: np.ndarray  # action modes among each query's action and its neighbours'
    mean: float
    quantile: float  # per_query's settings.divergence_quantile quantile
    share_above: float  # share of queries whose divergence exceeds the threshold
    multimodal_share: float  # share of queries with at least two modes
    max_modes: int


@dataclass
class EpisodeStats:
    """Per-episode measures and their outliers."""

    length: np.ndarray  # steps
    jerk: np.ndarray  # mean |third difference| of the scaled action (NaN: under 4 steps)
    idle: np.ndarray  # share of steps without motion (NaN: a 1-step episode)
    outliers: dict[str, np.ndarray]  # measure (a field name above) -> episode indices


@dataclass
class Expert:
    """What the store says about the demonstrator."""

    success_share: float | None  # None: no per-episode success field
    shared_seed: np.ndarray | None  # episodes whose seed another episode has (None: no seeds)
    runs: list[dict]  # per collection run: first_episode and its RUN_FIELDS from provenance
    length_spread: dict[str, float]  # min, median, max, iqr of the episode lengths


@dataclass
class QualityReport:
    """Every measure of the module docstring, and the flags they raise."""

    chunking: tuple[int, int, int]  # horizon, n_obs_steps, n_action_steps
    end_padding: str  # the rule training uses, the one whose coverage is flagged
    coverage: dict[str, Coverage]  # every rule of END_PADDING
    divergence: Divergence | None
    divergence_note: str  # why divergence is None ("" when it is not)
    episodes: EpisodeStats
    expert: Expert
    flags: list[str] = field(default_factory=list)


def assess_quality(
    buffer: ReplayBuffer, chunking: tuple[int, int, int], settings: QualitySettings
) -> QualityReport:
    """Every measure of the module docstring for a dataset with at least one episode."""
    lengths = buffer.episode_lengths
    actions = half_ranges(read_finite(buffer, "action"))
    states = low_dim_states(buffer)
    divergence, note = None, ""
    if states is None:
        note = "no low-dim observation key"
    elif buffer.n_episodes < 2:
        note = "a single episode (neighbours come from other episodes)"
    else:
        episode_of = np.repeat(np.arange(buffer.n_episodes), lengths)
        divergence = action_divergence(states, actions, episode_of, settings)
    report = QualityReport(
        chunking=chunking,
        end_padding=settings.end_padding,
        coverage={rule: episode_coverage(lengths, *chunking, rule) for rule in END_PADDING},
        divergence=divergence,
        divergence_note=note,
        episodes=episode_stats(actions, lengths, zero_hold_dims(buffer), settings),
        expert=expert_info(buffer),
    )
    report.flags = quality_flags(report, settings)
    return report


# ----------------------------------------------------------------------------- coverage
def episode_coverage(
    lengths: np.ndarray, horizon: int, n_obs_steps: int, n_action_steps: int, rule: str
) -> Coverage:
    pad_after = pad_after_for(rule, horizon, n_obs_steps, n_action_steps)
    covered = np.array(
        [len(conditioning_steps(int(n), horizon, n_obs_steps, pad_after)) for n in lengths]
    )
    per_episode = covered / lengths
    pooled = conditioning_coverage(lengths, horizon, n_obs_steps, n_action_steps, rule, LAST_K)
    # the conditioning steps are always an episode's first ones: short of all, the last is missed
    return Coverage(rule, pooled, per_episode, np.flatnonzero(covered < lengths))


# ----------------------------------------------------------------------------- divergence
def read_finite(buffer: ReplayBuffer, key: str) -> np.ndarray:
    """The array ``key`` as (steps, values per step); a ``DatasetError`` where it holds NaN or
    inf (no measure here means anything then)."""
    values = buffer.read_all(key).reshape(buffer.n_steps, -1)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):
        raise DatasetError(
            buffer.path,
            f"{len(bad)} step(s) hold NaN or inf, the first step {bad[0]}; the QA report needs "
            "finite values (verify=true lists every problem)",
            f"data/{key}",
        )
    return values


def standardized(values: np.ndarray) -> np.ndarray:
    """``values`` (N, D) with zero mean and unit std per dimension (constant ones: 0)."""
    values = values.astype(np.float64)
    return (values - values.mean(axis=0)) / _floored(values.std(axis=0))


def half_ranges(values: np.ndarray) -> np.ndarray:
    """``values`` (N, D) in units of each dimension's half range (the policy's ``limits``
    normalization, robopolicy/data/normalizer.py: a range of 2), not shifted."""
    values = values.astype(np.float64)
    return values / _floored(np.ptp(values, axis=0) / 2)


def _floored(scale: np.ndarray) -> np.ndarray:
    """``scale`` with 1 where a dimension is constant (below ``MIN_SCALE``)."""
    return np.where(scale < MIN_SCALE, 1.0, scale)


def low_dim_states(buffer: ReplayBuffer) -> np.ndarray | None:
    """Every low-dim observation of every step side by side, standardized per dimension
    (None: the dataset has none)."""
    keys = [
        key
        for key, spec in buffer.shape_meta["obs"].items()
        if spec["type"] == "low_dim" and key in buffer.data
    ]
    if not keys:
        return None
    columns = [read_finite(buffer, key) for key in keys]
    return standardized(np.concatenate(columns, axis=1))


def action_divergence(
    states: np.ndarray, actions: np.ndarray, episode_of: np.ndarray, settings: QualitySettings
) -> Divergence:
    """Divergence and modes at ``settings.query_steps`` random steps (module docstring)."""
    n_steps = len(states)
    rng = np.random.default_rng(settings.seed)
    queries = np.sort(rng.choice(n_steps, size=min(settings.query_steps, n_steps), replace=False))
    k = min(settings.neighbours, n_steps - int(np.bincount(episode_of).max()))
    neighbours = other_episode_neighbours(states, episode_of, queries, k)
    rms = actions / np.sqrt(actions.shape[1])  # Euclidean distances of these are RMS distances
    per_query = np.linalg.norm(rms[neighbours] - rms[queries, None], axis=-1).mean(axis=1)
    modes = np.array(
        [
            count_modes(rms[np.r_[query, row]], settings.mode_distance, settings.mode_min_share)
            for query, row in zip(queries, neighbours, strict=True)
        ]
    )
    return Divergence(
        neighbours=k,
        queries=queries,
        per_query=per_query,
        modes=modes,
        mean=float(per_query.mean()),
        quantile=float(np.quantile(per_query, settings.divergence_quantile)),
        share_above=float(np.mean(per_query > settings.divergence_threshold)),
        multimodal_share=float(np.mean(modes >= 2)),
        max_modes=int(modes.max()),
    )


def other_episode_neighbours(
    states: np.ndarray, episode_of: np.ndarray, queries: np.ndarray, k: int
) -> np.ndarray:
    """(len(queries), k) indices of the ``k`` states nearest each query step among the steps of
    the other episodes, nearest first. The nearest states overall are mostly the query's own
    episode's, so the search widens (x4) until ``k`` others are among them; at its widest (every
    step) there always are, as ``k`` is at most the steps outside the longest episode."""
    tree = cKDTree(states)
    found = np.empty((len(queries), k), dtype=np.int64)
    pending = np.arange(len(queries))
    depth = 4 * k
    while len(pending):
        depth = min(depth, len(states))
        _, index = tree.query(states[queries[pending]], k=depth)
        index = index.reshape(len(pending), depth)
        other = episode_of[index] != episode_of[queries[pending], None]
        done = other.sum(axis=1) >= k
        first_others = np.argsort(~other, axis=1, kind="stable")[:, :k]  # keeps distance order
        found[pending[done]] = np.take_along_axis(index, first_others, axis=1)[done]
        pending = pending[~done]
        depth *= 4
    return found


def count_modes(actions: np.ndarray, distance: float, min_share: float) -> int:
    """Clusters of ``actions`` (average linkage cut at ``distance``) holding at least
    ``min_share`` of them; at least 1 (actions all scattered are no structure, not 0 modes)."""
    labels = fcluster(linkage(actions, method="average"), distance, criterion="distance")
    sizes = np.bincount(labels)
    return max(1, int(np.sum(sizes >= min_share * len(actions))))


# ----------------------------------------------------------------------------- episodes
def zero_hold_dims(buffer: ReplayBuffer) -> np.ndarray:
    """Per action dimension: whether its hold action is 0 (a delta; shape_meta.action.hold)."""
    hold = buffer.shape_meta["action"].get("hold")
    n_dims = int(np.prod(buffer.shape_meta["action"]["shape"]))
    return np.array([kind == "zero" for kind in hold]) if hold else np.zeros(n_dims, bool)


def episode_stats(
    actions: np.ndarray, lengths: np.ndarray, zero_dims: np.ndarray, settings: QualitySettings
) -> EpisodeStats:
    """Length, jerk and idle share per episode; outliers of each (length: both ways; jerk and
    idle: high only) by ``robust_outliers`` at ``settings.outlier_k``."""
    episodes = np.split(actions, np.cumsum(lengths)[:-1])
    jerk = np.array(
        [np.abs(np.diff(a, 3, axis=0)).mean() if len(a) > 3 else np.nan for a in episodes]
    )
    idle = np.array([idle_share(a, zero_dims, settings.idle_threshold) for a in episodes])
    k = settings.outlier_k
    outliers = {
        "length": robust_outliers(lengths, k, both_sides=True),
        "jerk": robust_outliers(jerk, k, both_sides=False),
        "idle": robust_outliers(idle, k, both_sides=False),
    }
    return EpisodeStats(lengths, jerk, idle, outliers)


def idle_share(actions: np.ndarray, zero_dims: np.ndarray, threshold: float) -> float:
    """Share of steps 1.. at which no dimension moves more than ``threshold`` (module doc)."""
    if len(actions) < 2:
        return np.nan
    motion = np.where(zero_dims, np.abs(actions[1:]), np.abs(np.diff(actions, axis=0)))
    return float(np.mean(motion.max(axis=1) <= threshold))


def robust_outliers(values: np.ndarray, k: float, both_sides: bool) -> np.ndarray:
    """Indices whose modified z-score (x - median) / (1.4826 MAD) exceeds ``k`` (in absolute
    value with ``both_sides``; Iglewicz and Hoaglin's rule). Where over half the values are
    equal (MAD 0) the mean absolute deviation, times 1.2533, is the scale; NaN is never out."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return np.zeros(0, dtype=np.int64)
    median = np.median(finite)
    deviation = np.abs(finite - median)
    scale = MAD_TO_STD * np.median(deviation)
    if scale == 0:
        scale = MEAN_AD_TO_STD * np.mean(deviation)
    if scale == 0:
        return np.zeros(0, dtype=np.int64)
    z = (values - median) / scale
    return np.flatnonzero((np.abs(z) if both_sides else z) > k)


# ----------------------------------------------------------------------------- expert
def expert_info(buffer: ReplayBuffer) -> Expert:
    meta = buffer.episode_meta
    success = meta.get("success")
    seeds = meta.get("seed")
    shared = None
    if seeds is not None:
        _, inverse, counts = np.unique(seeds, return_inverse=True, return_counts=True)
        shared = np.flatnonzero(counts[inverse] > 1)
    provenance = buffer.attrs.get("provenance", {})
    runs = [{"first_episode": 0, **provenance}, *provenance.get("appends", [])]
    runs = [
        {"first_episode": run["first_episode"], **{f: run[f] for f in RUN_FIELDS if f in run}}
        for run in runs
        if any(f in run for f in RUN_FIELDS)
    ]
    lengths = buffer.episode_lengths
    low, median, high = np.quantile(lengths, [0.25, 0.5, 0.75])
    spread = {
        "min": int(lengths.min()),
        "median": float(median),
        "max": int(lengths.max()),
        "iqr": float(high - low),
    }
    return Expert(
        success_share=None if success is None else float(np.mean(success.astype(bool))),
        shared_seed=shared,
        runs=runs,
        length_spread=spread,
    )


# ----------------------------------------------------------------------------- flags
def quality_flags(report: QualityReport, settings: QualitySettings) -> list[str]:
    """One line per measure out of range: the measure, its value and the threshold."""
    flags = []
    coverage = report.coverage[report.end_padding]
    steps, missed = coverage.pooled["steps"], len(coverage.tail_never_trained)
    if steps < settings.coverage_min:
        horizon, n_obs, n_act = report.chunking
        flags.append(
            f"coverage (data.end_padding={report.end_padding}, horizon {horizon}, {n_obs} obs "
            f"steps, {n_act} executed actions): {steps:.0%} of steps serve as a conditioning "
            f"step < {settings.coverage_min:.0%}; {missed} of {len(coverage.per_episode)} "
            "episodes never train on their last step"
        )
    divergence = report.divergence
    if divergence is not None and divergence.share_above > settings.divergence_share_max:
        flags.append(
            f"action divergence: {divergence.share_above:.0%} of {len(divergence.queries)} "
            f"query steps are > {settings.divergence_threshold:g} (RMS, action half ranges) from "
            f"their neighbours in other episodes (> {settings.divergence_share_max:.0%}); mean "
            f"{divergence.mean:.2f}, q{settings.divergence_quantile:g} {divergence.quantile:.2f}"
        )
    if divergence is not None and divergence.multimodal_share > settings.multimodal_share_max:
        flags.append(
            f"action modes: {divergence.multimodal_share:.0%} of query steps have >= 2 modes "
            f"(> {settings.multimodal_share_max:.0%}; at most {divergence.max_modes}): a "
            "unimodal policy (regression) averages them"
        )
    for measure, indices in report.episodes.outliers.items():
        if len(indices):
            values = getattr(report.episodes, measure)
            flags.append(outlier_flag(measure, values, indices, settings.outlier_k))
    expert = report.expert
    if expert.success_share is not None and expert.success_share < 1:
        flags.append(f"expert success: {expert.success_share:.0%} of episodes succeed (< 100%)")
    if expert.shared_seed is not None and len(expert.shared_seed):
        flags.append(
            f"seeds: {len(expert.shared_seed)} episodes share their seed with another (the "
            f"same demonstration twice?): episodes {listed(expert.shared_seed)}"
        )
    return flags


def outlier_flag(measure: str, values: np.ndarray, indices: np.ndarray, k: float) -> str:
    flagged = values[indices]
    return (
        f"episode {measure} outliers (modified z-score > {k:g}): {len(indices)} episodes, "
        f"{measure} {flagged.min():.3g}..{flagged.max():.3g} against a median of "
        f"{np.nanmedian(values):.3g}: episodes {listed(indices)}"
    )


def listed(indices: np.ndarray) -> str:
    """Episode indices as text, the first ``LISTED`` of them and a count of the rest."""
    text = ", ".join(str(int(i)) for i in indices[:LISTED])
    return text + (f", ... ({len(indices) - LISTED} more)" if len(indices) > LISTED else "")
