"""The deploy runtime: chunk scheduling and ensembling, latency figures, the inference thread,
the real-time control loop (a deploy through eval.py and the robot server: test_deploy_eval.py)."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from hardware.deploy import ChunkResult, ChunkScheduler, DeployRuntime, InferenceWorker
from hardware.interfaces import ArmCommand, GripperCommand
from hardware.latency import LatencyStats
from hardware.robot_io import SentAction

PERIOD = 0.1


def _chunk(first: float, n: int = 4, dim: int = 2) -> np.ndarray:
    """Actions whose every entry is ``first + j``: action j tells which one it is."""
    return np.repeat((first + np.arange(n, dtype=np.float64))[:, None], dim, axis=1)


# ---- ChunkScheduler ----------------------------------------------------------------------------


def test_scheduler_gives_each_action_at_its_slot_and_nothing_outside_the_chunk():
    scheduler = ChunkScheduler(PERIOD)
    scheduler.add(_chunk(10.0), first_slot=1.0, now=0.99)
    assert scheduler.due(0.9) is None  # before the chunk's first slot (more than half a period)
    for j in range(4):
        for offset in (-0.049, 0.0, 0.049):  # within half a period of the slot
            action, slot = scheduler.due(1.0 + j * PERIOD + offset)
            np.testing.assert_array_equal(action, [10.0 + j, 10.0 + j])
            assert slot == pytest.approx(1.0 + j * PERIOD)
    assert scheduler.due(1.0 + 4 * PERIOD) is None  # past the last action
    assert scheduler.chunks == []  # the finished chunk is forgotten
    assert scheduler.stale == 0


def test_scheduler_drops_and_counts_actions_whose_time_passed_before_they_arrived():
    scheduler = ChunkScheduler(PERIOD)
    # arrives 0.16 s after its first slot: actions 0 (slot 1.0) and 1 (slot 1.1) have passed
    scheduler.add(_chunk(0.0, n=5), first_slot=1.0, now=1.16)
    assert scheduler.stale == 2
    action, slot = scheduler.due(1.16)
    np.testing.assert_array_equal(action, [2.0, 2.0])
    assert slot == pytest.approx(1.2)
    scheduler.add(_chunk(0.0, n=3), first_slot=1.2, now=10.0)  # entirely too late
    assert scheduler.stale == 5
    assert scheduler.due(10.0) is None


def test_scheduler_without_ensembling_lets_the_newest_chunk_win():
    scheduler = ChunkScheduler(PERIOD)
    scheduler.add(_chunk(0.0, n=8), first_slot=0.0, now=0.0)
    scheduler.add(_chunk(100.0, n=8), first_slot=0.3, now=0.3)
    np.testing.assert_array_equal(scheduler.due(0.2)[0], [2.0, 2.0])  # only the old one covers
    np.testing.assert_array_equal(scheduler.due(0.3)[0], [100.0, 100.0])
    np.testing.assert_array_equal(scheduler.due(0.5)[0], [102.0, 102.0])


def test_temporal_ensembling_weights_older_predictions_as_act_does():
    decay = 0.5
    scheduler = ChunkScheduler(PERIOD, temporal_ensembling=True, ensemble_decay=decay)
    scheduler.add(_chunk(0.0, n=8), first_slot=0.0, now=0.0)  # predicts 3 for t=0.3
    scheduler.add(_chunk(20.0, n=8), first_slot=0.1, now=0.1)  # predicts 22 for t=0.3
    scheduler.add(_chunk(40.0, n=8), first_slot=0.3, now=0.3)  # predicts 40 for t=0.3
    action, slot = scheduler.due(0.3)
    weights = np.exp(-decay * np.arange(3))  # w_0 for the oldest prediction
    expected = (weights @ np.array([3.0, 22.0, 40.0])) / weights.sum()
    np.testing.assert_allclose(action, [expected, expected])
    assert slot == pytest.approx(0.3)
    # the oldest chunk ends at t=0.7; after it only two predictions are averaged
    action, _ = scheduler.due(0.8)
    expected = (weights[:2] @ np.array([27.0, 45.0])) / weights[:2].sum()
    np.testing.assert_allclose(action, [expected, expected])


def test_temporal_ensembling_with_zero_decay_is_the_plain_mean():
    scheduler = ChunkScheduler(PERIOD, temporal_ensembling=True, ensemble_decay=0.0)
    scheduler.add(_chunk(0.0), first_slot=0.0, now=0.0)
    scheduler.add(_chunk(10.0), first_slot=0.1, now=0.1)
    np.testing.assert_allclose(scheduler.due(0.2)[0], [(2.0 + 11.0) / 2] * 2)


@pytest.mark.parametrize(
    "actions, first_slot, match",
    [
        (np.zeros((0, 2)), 1.0, "n_actions >= 1"),
        (np.zeros(3), 1.0, "n_actions >= 1"),
        (np.array([[0.0, np.nan]]), 1.0, "NaN"),
        (np.zeros((2, 2)), 0.5, "older than the newest"),
    ],
)
def test_scheduler_refuses_bad_chunks(actions, first_slot, match):
    scheduler = ChunkScheduler(PERIOD)
    scheduler.add(np.zeros((4, 2)), first_slot=1.0, now=1.0)
    with pytest.raises(ValueError, match=match):
        scheduler.add(actions, first_slot=first_slot, now=1.0)


# ---- LatencyStats ------------------------------------------------------------------------------


def test_latency_summary_reports_median_and_p99_in_milliseconds():
    stats = LatencyStats()
    for value in range(1, 101):  # 1..100 ms
        stats.record("inference", value / 1e3)
    stats.record("jitter", -0.002)
    summary = stats.summary()
    assert summary["inference"]["n"] == 100
    assert summary["inference"]["median_ms"] == pytest.approx(50.5)
    assert summary["inference"]["p99_ms"] == pytest.approx(99.01)
    assert summary["inference"]["max_ms"] == pytest.approx(100.0)
    assert summary["jitter"]["median_ms"] == pytest.approx(-2.0)
    assert summary["lateness"] == {
        "n": 0,
        "median_ms": None,
        "p99_ms": None,
        "max_ms": None,
        "mean_ms": None,
    }
    other = LatencyStats()
    other.record("inference", 1.0)
    stats.merge(other)
    assert stats.summary()["inference"]["n"] == 101


def test_latency_rejects_unknown_series_and_non_finite_values():
    stats = LatencyStats()
    with pytest.raises(KeyError, match="unknown latency series 'infrence'"):
        stats.record("infrence", 0.1)
    with pytest.raises(ValueError, match="must be finite"):
        stats.record("inference", float("nan"))


# ---- InferenceWorker ---------------------------------------------------------------------------


def _wait_for(worker: InferenceWorker, count: int, timeout: float = 5.0) -> list:
    results, deadline = [], time.monotonic() + timeout
    while len(results) < count and time.monotonic() < deadline:
        results.extend(worker.poll())
        time.sleep(0.005)
    return results


def test_worker_runs_the_newest_request_and_skips_the_ones_it_replaced():
    release = threading.Event()
    seen = []

    def predict(history):
        seen.append(int(history["x"][0, -1, 0]))
        release.wait(5.0)
        return np.zeros((4, 2))

    worker = InferenceWorker(predict)
    try:
        worker.submit(1, {"x": np.full((1, 2, 1), 1.0)}, capture_time=1.0)
        while not seen:  # the first request is being worked on
            time.sleep(0.001)
        for value in (2.0, 3.0, 4.0):  # queued while busy: each replaces the one before
            worker.submit(1, {"x": np.full((1, 2, 1), value)}, capture_time=value)
        release.set()
        results = _wait_for(worker, 2)
        assert seen == [1, 4]
        assert [r.capture_time for r in results] == [1.0, 4.0]
        assert all(r.finished >= r.started for r in results)
    finally:
        release.set()
        worker.close()


def test_worker_failure_surfaces_on_the_polling_thread():
    def predict(history):
        raise ValueError("observation key 'eef_pos' is missing")

    worker = InferenceWorker(predict)
    try:
        worker.submit(1, {}, capture_time=0.0)
        deadline = time.monotonic() + 5.0
        with pytest.raises(RuntimeError, match="policy inference failed") as error:
            while time.monotonic() < deadline:
                worker.poll()
                time.sleep(0.005)
        assert "eef_pos" in str(error.value.__cause__)
    finally:
        worker.close()


# ---- DeployRuntime on a counting robot ---------------------------------------------------------


class CountingIO:
    """A robot whose observation ``x`` counts the observations made; records every send."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.count = 0
        self.observed: list[float] = []  # when each observation was made
        self.sent: list[tuple[float, np.ndarray, float]] = []  # (send time, action, target)

    def observe(self):
        self.count += 1
        self.observed.append(self.clock())
        return {"x": np.array([self.count], np.float32)}, {"x": self.observed[-1]}

    def act(self, action, target_time):
        self.sent.append((self.clock(), np.array(action), target_time))


class TinyPolicy:
    """What DeployRuntime reads from a policy: To=2, Ta=2, horizon 6 (chunks of 5 actions)."""

    n_obs_steps = 2
    n_action_steps = 2
    horizon = 6


def _echo_predict(delay: float, histories: list):
    """action_pred[i] = (newest x) * 10 + i - (To - 1): names the frame and step it is for."""

    def predict(history):
        histories.append(history["x"].copy())
        time.sleep(delay)
        newest = float(history["x"][0, -1, 0])
        return (newest * 10 + np.arange(TinyPolicy.horizon) - 1)[:, None].repeat(3, axis=1)

    return predict


def test_runtime_sends_the_action_paired_with_each_frame_on_time():
    io, histories = CountingIO(), []
    runtime = DeployRuntime(
        io, TinyPolicy(), fps=1 / PERIOD, act_delay=0.03, predict=_echo_predict(0.0, histories)
    )
    try:
        result = runtime.run_episode(max_ticks=8, record=True)
    finally:
        runtime.close()
    # replanning every n_action_steps=2 ticks, from frames 1, 3, 5, 7
    np.testing.assert_array_equal(histories[0][0, :, 0], [1, 1])  # padded with the first frame
    np.testing.assert_array_equal(histories[1][0, :, 0], [2, 3])
    assert result.ticks == 8 and result.actions_sent == 8 and result.missed_ticks == 0
    # tick k sends step k - replan tick of the chunk from frame (replan tick + 1)
    expected = [10, 11, 30, 31, 50, 51, 70, 71]
    assert [float(action[0]) for _, action, _ in io.sent] == expected
    # each action is due within half a period of its send and is to be reached one period
    # after its slot (exact timing: the virtual-clock tests below; jitter on this machine:
    # bench/bench_realtime.py)
    for when, _, target in io.sent:
        assert PERIOD / 2 - 0.04 < target - when <= 1.5 * PERIOD
    figures = result.latency.summary()
    assert figures["inference"]["n"] == 4 and figures["lateness"]["n"] == 8
    assert figures["jitter"]["n"] == 16  # two phases per tick
    assert [frame["x"][0] for frame in result.frames] == list(range(1, 9))
    assert [frame["action"][0] for frame in result.frames] == expected


class VirtualTime:
    """Stands in for the ``time`` module inside ``hardware.deploy``: ``sleep`` moves a virtual
    clock on instead of waiting, so the control loop's schedule is exact on any machine."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


class VirtualWorker:
    """``InferenceWorker`` on the virtual clock: a request runs as soon as the worker is free
    and finishes ``delay`` virtual seconds later; one submitted while it is busy waits, replaced
    by any newer one (as on the real worker's thread)."""

    def __init__(self, predict, clock: VirtualTime, delay: float) -> None:
        self.predict, self.clock, self.delay = predict, clock, delay
        self.free_at = -np.inf
        self.running = None  # (tag, history, capture_time, started)
        self.waiting = None  # (tag, history, capture_time, submitted)
        self.done: list[ChunkResult] = []

    def _advance(self) -> None:
        """Finish (and start) requests up to the clock's now."""
        while True:
            if self.running is None and self.waiting is not None:
                tag, history, capture_time, submitted = self.waiting
                self.running = (tag, history, capture_time, max(submitted, self.free_at))
                self.waiting = None
            if self.running is None or self.running[3] + self.delay > self.clock.now:
                return
            tag, history, capture_time, started = self.running
            action_pred = np.asarray(self.predict(history), dtype=np.float64)
            finished = started + self.delay
            self.done.append(ChunkResult(tag, action_pred, capture_time, started, finished))
            self.running, self.free_at = None, finished

    def submit(self, tag, history, capture_time) -> None:
        self._advance()  # a request waiting when the running one finished started then
        self.waiting = (tag, history, capture_time, self.clock.now)
        self._advance()

    def poll(self) -> list[ChunkResult]:
        self._advance()
        finished, self.done = self.done, []
        return finished

    def close(self) -> None:
        pass


def _virtual_runtime(monkeypatch, delay: float, histories: list, io_class=None):
    """A DeployRuntime on a CountingIO (or ``io_class``) whose loop and inference both run on
    one virtual clock."""
    import hardware.deploy as deploy

    clock = VirtualTime()
    io, predict = (io_class or CountingIO)(clock.monotonic), _echo_predict(0.0, histories)
    runtime = DeployRuntime(io, TinyPolicy(), fps=1 / PERIOD, act_delay=0.03, predict=predict)
    runtime.worker.close()  # the real thread: replaced by one on the virtual clock
    runtime.worker = VirtualWorker(predict, clock, delay)
    monkeypatch.setattr(deploy, "time", clock)
    return clock, io, runtime


def test_runtime_on_a_virtual_clock_acts_exactly_on_schedule(monkeypatch):
    clock, io, runtime = _virtual_runtime(monkeypatch, 0.0, [])
    start = clock.now
    result = runtime.run_episode(max_ticks=8, record=True)
    assert result.ticks == 8 and result.actions_sent == 8 and result.missed_ticks == 0
    np.testing.assert_allclose(io.observed, start + PERIOD * np.arange(8), rtol=0, atol=1e-9)
    sends = np.array([when for when, _, _ in io.sent])
    np.testing.assert_allclose(sends, start + 0.03 + PERIOD * np.arange(8), rtol=0, atol=1e-9)
    targets = np.array([target for _, _, target in io.sent])
    np.testing.assert_allclose(targets, sends + PERIOD, rtol=0, atol=1e-9)  # one period later
    assert [float(action[0]) for _, action, _ in io.sent] == [10, 11, 30, 31, 50, 51, 70, 71]
    figures = result.latency.summary()
    assert figures["jitter"]["n"] == 16 and abs(figures["jitter"]["max_ms"]) < 1e-6
    assert figures["lateness"]["n"] == 8 and abs(figures["lateness"]["max_ms"]) < 1e-6
    assert clock.now == pytest.approx(start + 8 * PERIOD)  # the episode ends a period after


class ReportingIO(CountingIO):
    """Also reports what reached the robot, as ``RobotIO.act`` does: the arm's safety layer
    halves every action (a clamp) and forwards nothing for every third."""

    def act(self, action, target_time):
        super().act(action, target_time)
        requested = ArmCommand.joints(action, target_time)
        forwarded = ArmCommand.joints(action / 2, target_time) if len(self.sent) % 3 else None
        return SentAction(requested, forwarded, GripperCommand(0.25, target_time))


def test_runtime_records_what_was_sent_beside_each_action(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG, logger="hardware.deploy")
    clock, io, runtime = _virtual_runtime(monkeypatch, 0.0, [], io_class=ReportingIO)
    result = runtime.run_episode(max_ticks=6, record=True)
    assert result.actions_sent == 6 and result.actions_not_forwarded == 2  # sends 3 and 6
    forwarded = [bool(frame["sent_forwarded"]) for frame in result.frames]
    assert forwarded == [True, True, False, True, True, False]
    for frame, (_, action, _) in zip(result.frames, io.sent, strict=True):
        np.testing.assert_array_equal(frame["action"], action.astype(np.float32))
        arm_part = action / 2 if frame["sent_forwarded"] else np.zeros(3)
        np.testing.assert_array_equal(frame["sent_command"], [*arm_part, 0.25])
        assert frame["sent_command"].dtype == np.float64
    logged = [r.getMessage() for r in caplog.records if r.name == "hardware.deploy"]
    assert len(logged) == 6 and sum("forwarded nothing" in line for line in logged) == 2


def test_runtime_keeps_ticking_while_inference_is_slow_and_drops_late_actions(monkeypatch):
    histories = []
    clock, io, runtime = _virtual_runtime(monkeypatch, 0.25, histories)
    start = clock.now
    result = runtime.run_episode(max_ticks=8)
    figures = result.latency.summary()
    # the loop never waits for inference: every tick observes on schedule
    assert abs(figures["jitter"]["max_ms"]) < 1e-6
    np.testing.assert_allclose(io.observed, start + PERIOD * np.arange(8), rtol=0, atol=1e-9)
    # frame 1's chunk (t = 0) is ready at 0.25 s: ticks 0-2 (acting at 0.03, 0.13, 0.23 s) have
    # nothing to send, and at 0.33 s its actions for steps 0-2 have passed (stale). Frame 3's
    # request waited for the worker: ready at 0.5 s, its steps 0-2 (0.23-0.43 s) have passed;
    # it covers ticks 5-6, and nothing covers tick 7 (frame 5's is ready at 0.75 s)
    assert [round((when - start - 0.03) / PERIOD) for when, _, _ in io.sent] == [3, 4, 5, 6]
    assert [float(action[0]) for _, action, _ in io.sent] == [13.0, 14.0, 33.0, 34.0]
    assert result.missed_ticks == 4 and result.actions_sent == len(io.sent) == 4
    assert result.stale_actions == 6
    assert [int(h[0, -1, 0]) for h in histories] == [1, 3]  # frames 5 and 7 are still queued
    assert figures["inference"]["n"] == 2 and figures["inference"]["median_ms"] == pytest.approx(
        250
    )
    assert figures["observation_age"]["max_ms"] == pytest.approx(50)  # frame 3 waited 0.05 s


def test_runtime_ends_the_episode_at_success():
    io = CountingIO()
    runtime = DeployRuntime(io, TinyPolicy(), fps=1 / PERIOD, predict=_echo_predict(0.0, []))
    try:
        result = runtime.run_episode(max_ticks=50, is_success=lambda: io.count >= 4)
    finally:
        runtime.close()
    assert result.success and result.ticks == 3 and io.count == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fps": 0.0}, "fps must be a positive number"),
        ({"act_delay": 0.1}, "act_delay must be in"),
        ({"replan_every": 6}, r"replan_every must be in \[1, 5\]"),
    ],
)
def test_runtime_rejects_bad_settings(kwargs, match):
    settings = {"fps": 10.0, "act_delay": 0.03, **kwargs}
    with pytest.raises(ValueError, match=match):
        DeployRuntime(CountingIO(), TinyPolicy(), predict=_echo_predict(0.0, []), **settings)
