"""The deploy runtime: a chunking policy driving a robot in real time.

A policy trained on a dataset recorded at ``fps`` maps an observation history (``n_obs_steps``
frames, one per policy period) to a chunk of actions. In simulation the world waits for the
policy; on a robot it does not, so the runtime separates the two clocks:

* **Control loop** (the caller's thread), ticking every ``period = 1 / fps`` on a fixed grid
  ``start + k * period``. Each tick has two phases:

  1. *observe* at the tick: read one frame through ``RobotIO.observe``, push it into the
     observation history (at episode start the history is filled with copies of the first frame,
     as ``robopolicy.eval.rollout`` pads), and every ``replan_every`` ticks hand a copy of the
     history to the inference thread;
  2. *act* ``act_delay`` seconds later: collect finished chunks, ask the scheduler for the action
     due now and send it with ``RobotIO.act``.

  The loop never waits for the policy: a tick with no action due sends nothing (the arm keeps
  its last target; the safety layer's watchdog holds it if that lasts).
* **Inference thread**: runs the policy on the newest submitted history; a request submitted
  while it is busy replaces any request still waiting, so it always works on the freshest view.

**Timestamps.** Let ``t0`` be the capture time of the newest frame in a history (the earliest of
its keys' capture times) and ``To = n_obs_steps``. The policy's ``action_pred[i]`` is the action
for step ``i - (To - 1)`` after that frame (``action_pred[To-1]`` is the one the dataset pairs
with it), so it is scheduled for::

    slot(i) = t0 + act_delay + (i - (To - 1)) * period

and sent with ``target_time = slot(i) + period``: it starts at its slot and, like one env step,
is reached one period later. ``act_delay`` (the convention's one parameter) leaves inference
that much time per tick: with inference faster than it, the action paired with the newest frame
is executed, as in simulation; with ``act_delay = 0`` that action is always already late and is
dropped. The chunk is the whole ``action_pred[To-1:]``, so a slow inference still leaves
actions to run; with replanning every ``n_action_steps`` ticks only the first ones are used.

**Scheduling** (``ChunkScheduler``). At time ``now`` the action due is the one with
``|slot - now| <= period / 2``. Actions whose slot has passed by more than half a period are
dropped (counted as ``stale`` if they arrived that late). Without ensembling the newest chunk
covering ``now`` wins; with ``temporal_ensembling`` every chunk's action for ``now`` is averaged
with ACT's weights ``w_i = exp(-decay * i)``, ``i = 0`` for the oldest prediction (ACT, Zhao et
al. 2023), and the policy is queried every tick by default.

**Latency** (``hardware.latency``): observation age at inference start, inference time, command
lateness (send time minus slot), loop jitter (each phase's wake-up minus its scheduled time).

**What was sent.** ``robot_io.act`` returns what reached the robot (``hardware.robot_io.
SentAction``: the arm's safety layer may clamp a command, or forward none). Each is logged
(logger ``hardware.deploy``: DEBUG, INFO when the arm got nothing), counted in
``EpisodeResult.actions_not_forwarded`` and, when recording, kept beside the policy's action
in each frame: ``sent_command`` (the forwarded arm target and gripper opening, float64) and
``sent_forwarded`` (False where the arm got nothing and ``sent_command``'s arm part is zeros).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from hardware.latency import LatencyStats
from hardware.robot_io import SentAction
from robopolicy.eval.rollout import ObservationHistory
from robopolicy.policies.runtime import with_runtime

Predict = Callable[[dict[str, np.ndarray]], np.ndarray]
logger = logging.getLogger(__name__)
SENT_KEYS = ("sent_command", "sent_forwarded")  # per recorded frame: what reached the robot


class ChunkScheduler:
    """Timestamped action chunks in, the action due at a given time out (see the module doc)."""

    def __init__(
        self, period: float, temporal_ensembling: bool = False, ensemble_decay: float = 0.01
    ) -> None:
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"period must be a positive number of seconds, got {period}")
        if not (math.isfinite(ensemble_decay) and ensemble_decay >= 0):
            raise ValueError(f"ensemble_decay must be >= 0, got {ensemble_decay}")
        self.period = float(period)
        self.temporal_ensembling = temporal_ensembling
        self.ensemble_decay = float(ensemble_decay)
        self.chunks: list[tuple[np.ndarray, float]] = []  # (actions (N, Da), slot 0), oldest first
        self.stale = 0  # actions whose slot had passed when their chunk arrived

    def add(self, actions: np.ndarray, first_slot: float, now: float) -> None:
        """Add a chunk whose action ``j`` is due at ``first_slot + j * period``."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[0] == 0:
            raise ValueError(f"a chunk must be (n_actions >= 1, action_dim); got {actions.shape}")
        if not np.isfinite(actions).all():
            raise ValueError("a chunk holds NaN/inf actions; refusing to schedule it")
        if self.chunks and first_slot < self.chunks[-1][1]:
            raise ValueError(
                f"chunk starting at {first_slot:.4f} is older than the newest one "
                f"({self.chunks[-1][1]:.4f}); chunks must arrive in order"
            )
        passed = math.floor((now - self.period / 2 - first_slot) / self.period) + 1
        self.stale += min(max(passed, 0), actions.shape[0])
        self.chunks.append((actions, float(first_slot)))
        self._drop_finished(now)

    def due(self, now: float) -> tuple[np.ndarray, float] | None:
        """``(action, slot)`` for time ``now``, or None when no chunk has an action for it."""
        self._drop_finished(now)
        candidates = []  # each chunk's action for now, oldest chunk first
        for actions, first_slot in self.chunks:
            j = round((now - first_slot) / self.period)
            if 0 <= j < actions.shape[0]:
                candidates.append((actions[j], first_slot + j * self.period))
        if not candidates:
            return None
        if not self.temporal_ensembling:
            return candidates[-1]
        weights = np.exp(-self.ensemble_decay * np.arange(len(candidates)))
        stacked = np.stack([action for action, _ in candidates])
        return weights @ stacked / weights.sum(), candidates[-1][1]

    def clear(self) -> None:
        self.chunks.clear()

    def _drop_finished(self, now: float) -> None:
        """Forget chunks whose last action's slot is more than half a period ago."""
        self.chunks = [
            (actions, first)
            for actions, first in self.chunks
            if first + (actions.shape[0] - 1) * self.period >= now - self.period / 2
        ]


@dataclass
class ChunkResult:
    """One finished inference: the request's tag, ``action_pred (T, Da)`` and its timing."""

    tag: int
    action_pred: np.ndarray
    capture_time: float
    started: float
    finished: float


class InferenceWorker:
    """Runs ``predict`` on a daemon thread, always on the newest submitted request.

    ``submit`` never blocks; a request waiting while the thread is busy is replaced by a newer
    one. ``poll`` returns finished results and re-raises a failure of ``predict`` on the caller's
    thread. Results carry the request's ``tag`` so a caller can ignore stale episodes.
    """

    def __init__(self, predict: Predict) -> None:
        self._predict = predict
        self._wake = threading.Condition()
        self._request: tuple[int, dict[str, np.ndarray], float] | None = None
        self._results: queue.SimpleQueue[ChunkResult] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="policy-inference", daemon=True)
        self._thread.start()

    def submit(self, tag: int, history: dict[str, np.ndarray], capture_time: float) -> None:
        with self._wake:
            self._request = (tag, history, capture_time)
            self._wake.notify()

    def poll(self) -> list[ChunkResult]:
        if self._error is not None:
            raise RuntimeError("policy inference failed") from self._error
        results = []
        while not self._results.empty():
            results.append(self._results.get())
        return results

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()

    def _serve(self) -> None:
        while True:
            with self._wake:
                while self._request is None and not self._closing:
                    self._wake.wait()
                if self._closing:
                    return
                tag, history, capture_time = self._request
                self._request = None
            started = time.monotonic()
            try:
                action_pred = np.asarray(self._predict(history), dtype=np.float64)
            except BaseException as error:  # surfaced on the control thread by poll()
                self._error = error
                return
            self._results.put(
                ChunkResult(tag, action_pred, capture_time, started, time.monotonic())
            )


def policy_predictor(policy: torch.nn.Module, sampler_options: dict | None = None) -> Predict:
    """``history {key: (1, To, ...)} -> action_pred (T, Da)`` for a robopolicy policy.

    Sampler options set to None are dropped (the policy's defaults apply); ``runtime=onnx`` runs
    the chain on onnxruntime (robopolicy/policies/runtime.py)."""
    policy, options = with_runtime(policy, sampler_options or {})
    keys = list(policy.shape_meta["obs"])
    device = policy.device

    @torch.no_grad()
    def predict(history: dict[str, np.ndarray]) -> np.ndarray:
        batch = {key: torch.from_numpy(history[key]).to(device) for key in keys}
        return policy.predict_action(batch, **options)["action_pred"][0].float().cpu().numpy()

    return predict


@dataclass
class EpisodeResult:
    """One deployed episode: outcome, counts, latency figures and, if asked, the recording."""

    success: bool
    ticks: int  # control ticks run (policy steps)
    actions_sent: int
    missed_ticks: int  # ticks with no action due: the first chunk had not arrived yet, or a gap
    stale_actions: int  # actions dropped because their slot had passed when they arrived
    latency: LatencyStats
    frames: list[dict[str, np.ndarray]] = field(default_factory=list)  # obs + "action" per send
    #   (+ "sent_command", "sent_forwarded": what reached the robot; see the module doc)
    actions_not_forwarded: int = 0  # actions sent whose arm command the safety layer withheld


class DeployRuntime:
    """Runs ``policy`` on the robot behind ``robot_io`` at ``fps``; see the module doc.

    ``robot_io`` needs ``observe() -> (obs {key: one frame}, capture_times {key: s})`` and
    ``act(action (Da,), target_time)`` (``hardware.robot_io.RobotIO``). ``predict`` overrides the
    policy call (``policy_predictor(policy, sampler_options)`` by default).
    """

    def __init__(
        self,
        robot_io,
        policy: torch.nn.Module,
        fps: float,
        act_delay: float = 0.03,
        replan_every: int | None = None,
        temporal_ensembling: bool = False,
        ensemble_decay: float = 0.01,
        sampler_options: dict | None = None,
        predict: Predict | None = None,
    ) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps}")
        self.period = 1.0 / fps
        if not 0 <= act_delay < self.period:
            raise ValueError(
                f"act_delay must be in [0, period={self.period:.4f} s), got {act_delay}"
            )
        self.n_obs_steps = policy.n_obs_steps
        chunk_length = policy.horizon - policy.n_obs_steps + 1
        if replan_every is None:
            replan_every = 1 if temporal_ensembling else policy.n_action_steps
        if not 1 <= replan_every <= chunk_length:
            raise ValueError(
                f"replan_every must be in [1, {chunk_length}] (the chunk's actions from the "
                f"newest frame on), got {replan_every}"
            )
        self.robot_io = robot_io
        self.act_delay = float(act_delay)
        self.replan_every = int(replan_every)
        self.scheduler = ChunkScheduler(self.period, temporal_ensembling, ensemble_decay)
        self.worker = InferenceWorker(predict or policy_predictor(policy, sampler_options))
        self._episode = 0

    def run_episode(
        self,
        max_ticks: int,
        is_success: Callable[[], bool] | None = None,
        record: bool = False,
    ) -> EpisodeResult:
        """Run up to ``max_ticks`` control ticks, ending early once ``is_success()`` (checked at
        every tick's observation and once a period after the last tick) is true."""
        if max_ticks < 1:
            raise ValueError(f"max_ticks must be >= 1, got {max_ticks}")
        self._episode += 1
        self.scheduler.clear()
        self.scheduler.stale = 0
        latency = LatencyStats()
        history = ObservationHistory(self.n_obs_steps)
        frames: list[dict[str, np.ndarray]] = []
        sent = missed = ticks = withheld = 0
        success = False
        start = time.monotonic()
        while ticks < max_ticks:
            scheduled = start + ticks * self.period
            latency.record("jitter", _sleep_until(scheduled) - scheduled)
            obs, capture_times = self.robot_io.observe()
            batched = {key: np.asarray(value)[None] for key, value in obs.items()}
            if ticks == 0:
                history.reset(batched)
            else:
                history.push(batched)
                if is_success is not None and is_success():
                    success = True
                    break
            if ticks % self.replan_every == 0:
                capture_time = min(capture_times.values())
                self.worker.submit(self._episode, history.stacked(), capture_time)
            ticks += 1

            act_at = scheduled + self.act_delay
            latency.record("jitter", _sleep_until(act_at) - act_at)
            self._collect(latency)
            due = self.scheduler.due(time.monotonic())
            if due is None:
                missed += 1
                continue
            action, slot = due
            outcome = self.robot_io.act(action, slot + self.period)
            latency.record("lateness", time.monotonic() - slot)
            sent += 1
            withheld += _log_sent(ticks, action, outcome)
            if record:
                frames.append({**obs, "action": action.astype(np.float32), **_sent_keys(outcome)})
        if not success:
            _sleep_until(start + ticks * self.period)
            success = is_success is not None and bool(is_success())
        return EpisodeResult(
            success=success,
            ticks=ticks,
            actions_sent=sent,
            missed_ticks=missed,
            stale_actions=self.scheduler.stale,
            latency=latency,
            frames=frames,
            actions_not_forwarded=withheld,
        )

    def close(self) -> None:
        """Stop the inference thread (the robot is the caller's to close)."""
        self.worker.close()

    def _collect(self, latency: LatencyStats) -> None:
        """Schedule the chunks finished since the last tick (other episodes' are ignored)."""
        for result in self.worker.poll():
            if result.tag != self._episode:
                continue
            latency.record("observation_age", result.started - result.capture_time)
            latency.record("inference", result.finished - result.started)
            first_slot = result.capture_time + self.act_delay
            chunk = result.action_pred[self.n_obs_steps - 1 :]
            self.scheduler.add(chunk, first_slot, time.monotonic())


def _log_sent(tick: int, action: np.ndarray, outcome: object) -> int:
    """Log what reached the robot for ``action``; 1 if the arm got nothing, else 0."""
    if not isinstance(outcome, SentAction):  # an IO that does not report what it sent
        return 0
    if not outcome.arm_forwarded:
        logger.info("tick %d: the arm's safety layer forwarded nothing for %s", tick, action)
        return 1
    logger.debug("tick %d: action %s sent as %s", tick, action, outcome.vector())
    return 0


def _sent_keys(outcome: object) -> dict[str, np.ndarray]:
    """The recorded frame's ``sent_command`` and ``sent_forwarded`` (none for an IO that does not
    report what it sent)."""
    if not isinstance(outcome, SentAction):
        return {}
    command, forwarded = SENT_KEYS
    return {command: outcome.vector(), forwarded: np.bool_(outcome.arm_forwarded)}


def _sleep_until(when: float) -> float:
    """Sleep until ``when`` (monotonic seconds); returns the time actually woken."""
    while (left := when - time.monotonic()) > 0:
        time.sleep(left)
    return time.monotonic()
