"""The robot server in its own process, real ZeroMQ sockets, real clients (some in processes
that get killed): the proxies behave like local devices, the watchdog stops the arm when the
policy process dies, the e-stop latches, and fuzzed input does not take the server down.

What the watchdog test measures: a client process streams pose commands at 100 Hz and is
SIGKILLed. The server-side safety layer records, on the host's monotonic clock (shared by all
processes), when it last forwarded a command and when its watchdog made the arm hold. The
figure is ``hold - last_forward - watchdog_timeout``: how long after the deadline the arm was
told to hold, which must be at most 2 control periods; we also check the arm then stays put
and is stopped ``stop_after`` later.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import msgpack
import numpy as np
import pytest
import zmq
from server_process import run_server

from hardware.client import RemoteError, connect
from hardware.interfaces import Arm, ArmCommand, Robot
from hardware.protocol import ARRAY_EXT, encode
from hardware.robot_io import RobotIO
from hardware.server import RobotServer, serve

TOKEN = "test-token-16-chars-or-more"
PERIOD = 0.01  # the sim's control period
WATCHDOG, STOP_AFTER = 0.25, 1.0  # the sim robot's default limits
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE_META = {
    "obs": {"eef_pos": {"shape": [3]}, "object_state": {"shape": [9]}},
    "action": {"shape": [7]},
}


def start_server(
    log_path, *extra: str, obs_mode: str = "state", address: str = "tcp://127.0.0.1:*"
) -> tuple[subprocess.Popen, str]:
    """A server process and the endpoint to reach it at (over loopback, also when it binds every
    interface)."""
    command = [
        sys.executable,
        "-m",
        "hardware.server",
        f"+env_kwargs={{obs_mode: {obs_mode}, image_size: 32}}",
        f"address={address}",
        *extra,
    ]
    log = open(log_path, "w")  # noqa: SIM115 (the server writes it until the end)
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO)
    line = server.stdout.readline()
    assert line.startswith("ready "), (line, log_path.read_text()[-2000:])
    return server, line.split()[1].replace("tcp://0.0.0.0:", "tcp://127.0.0.1:")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server bound to every interface (a public bind: it needs the token), reached over
    loopback."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    process, endpoint = start_server(log_path, f"token={TOKEN}", address="tcp://0.0.0.0:*")
    yield process, endpoint, log_path
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


@pytest.fixture
def robot(server):
    _, endpoint, _ = server
    robot = connect(endpoint, TOKEN, timeout=5.0)
    robot.reset_episode(0)
    yield robot
    robot.close()


def stream(arm, offset: np.ndarray, seconds: float) -> None:
    """Command the hand ``offset`` away from where it is now, every 20 ms for ``seconds``."""
    start = arm.read_state()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        target = ArmCommand.pose(start.ee_position + offset, start.ee_quat, time.monotonic() + 0.3)
        arm.send_command(target)
        time.sleep(0.02)


def test_client_proxies_behave_like_the_local_robot(robot):
    assert set(robot.arms) == {"arm"}
    assert set(robot.sensors) == {"object_state", "object_pos", "eef_to_object", "object_to_goal"}
    assert robot.info["env_id"] == "robopolicy/PushCube-v0" and robot.info["control_hz"] == 100
    io = RobotIO(robot, STATE_META, "ee_delta")
    obs, times = io.observe()
    assert obs["eef_pos"].dtype == np.float32 and obs["object_state"].shape == (9,)
    assert all(abs(time.monotonic() - stamp) < 0.2 for stamp in times.values())
    start = obs["eef_pos"]
    t0 = time.monotonic()
    for i in range(5):  # 10 Hz, +x at full speed: 5 cm per action
        io.act(np.array([1.0, 0, 0, 0, 0, 0, 1.0]), t0 + 0.1 * (i + 1))
        time.sleep(max(0.0, t0 + 0.1 * (i + 1) - time.monotonic()))
    time.sleep(0.1)
    moved = io.observe()[0]["eef_pos"] - start
    assert 0.15 < moved[0] < 0.3 and abs(moved[1]) < 0.02, moved
    assert robot.grippers["gripper"].read_state().opening < 0.5  # +1: closing
    info = robot.task_info()
    assert info["is_success"] in (True, False) and info["seed"] == 0


def test_camera_frames_through_the_server(tmp_path):
    process, endpoint = start_server(tmp_path / "server.log", obs_mode="rgbd")
    try:
        with connect(endpoint, timeout=5.0) as robot:
            assert set(robot.cameras) == {"scene", "wrist"}
            frame = robot.cameras["wrist"].read()
            now = time.monotonic()
            meta = {
                "obs": {
                    "scene_rgb": {"shape": [32, 32, 3], "type": "rgb"},
                    "scene_depth": {"shape": [32, 32, 1], "type": "depth"},
                },
                "action": {"shape": [7]},
            }
            obs, times = RobotIO(robot, meta, "ee_delta").observe()
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    assert frame.color.shape == (32, 32, 3) and frame.color.dtype == np.uint8
    assert frame.depth.shape == (32, 32) and frame.depth.dtype == np.float32
    # same clock on both sides: ordered, and recent (generous: a loaded CI machine lags)
    assert frame.capture_time <= frame.receive_time <= now and now - frame.capture_time < 3.0
    assert obs["scene_rgb"].std() > 0 and 0 < obs["scene_depth"].min() < 5
    assert times["scene_rgb"] == times["scene_depth"]  # one frame read once


def test_connect_names_the_address_it_cannot_reach():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=address):
        connect(address, timeout=0.5)
    assert time.monotonic() - started < 2.0


def test_serving_beyond_loopback_needs_a_token_and_arms_need_a_safety_layer():
    with pytest.raises(ValueError, match="needs a shared token of at least 16 characters"):
        serve(Robot(), "tcp://0.0.0.0:5555", token=None)
    for token, given in (("", "an empty token"), ("short-token", "a token of 11 characters")):
        for address in ("tcp://0.0.0.0:5555", "tcp://127.0.0.1:5555"):  # refused on any bind
            with pytest.raises(ValueError, match=f"{given} is refused"):
                serve(Robot(), address, token=token)
        with pytest.raises(ValueError, match=f"{given} is refused"):
            RobotServer(Robot(), token)

    class BareArm(Arm):
        read_state = send_command = hold = stop = close = None

    with pytest.raises(ValueError, match="not behind a SafetyLayer"):
        RobotServer(Robot(arms={"bare": BareArm()}))


@pytest.mark.parametrize(
    ("extra", "env", "refusal"),
    [
        (["token=''"], {}, "an empty token is refused"),
        ([], {"ROBOT_SERVER_TOKEN": ""}, "an empty token is refused"),
        (["token=fifteen-chars.."], {}, "a token of 15 characters is refused"),
        ([], {}, "needs a shared token of at least 16 characters"),
    ],
    ids=["empty", "empty-env", "short", "missing"],
)
@pytest.mark.parametrize("address", ["tcp://0.0.0.0:5599", "tcp://192.0.2.1:5599"])
def test_public_bind_without_a_valid_token_exits_with_one_line(extra, env, refusal, address):
    environment = {key: value for key, value in os.environ.items() if key != "ROBOT_SERVER_TOKEN"}
    started = time.monotonic()
    done = run_server(f"address={address}", *extra, env={**environment, **env})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("server.py: error: ") and refusal in done.stderr
    assert time.monotonic() - started < 30  # refused before the robot is built


def test_short_token_is_refused_on_loopback_too():
    done = run_server("token=short")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("server.py: error: a token of 5 characters is refused")


def test_wrong_empty_short_or_missing_token_is_refused_on_a_public_bind(server, robot):
    _, endpoint, _ = server
    for token in (None, "", "short", "wrong-token-of-the-right-length", TOKEN[:-1], TOKEN + "x"):
        with pytest.raises(RemoteError, match="missing or wrong token"):
            connect(endpoint, token, timeout=5.0)
    context = zmq.Context.instance()
    requester = context.socket(zmq.REQ)
    requester.setsockopt(zmq.LINGER, 0)
    requester.connect(endpoint)
    try:  # the ops that matter most, tokenless or with an empty token: none is answered
        for request in (
            {"op": "describe"},
            {"op": "arm.estop", "device": "arm", "args": {"reason": "intruder"}},
            {"op": "arm.reset_estop", "device": "arm"},
            {"op": "arm.estop", "device": "arm", "token": ""},
        ):
            requester.send(encode(request))
            assert requester.poll(5000)
            reply = msgpack.unpackb(requester.recv())
            assert reply == {"ok": False, "error": "rejected request: missing or wrong token"}
    finally:
        requester.close()
    assert not robot.arms["arm"].safety(last=0)["estopped"]


def test_huge_quaternion_through_the_server_leaves_the_arm_controllable(server, robot):
    """Issue 17: ``[1e300, 1e300, 0, 0]`` used to pass the layer as ``[0, 0, 0, 0]``, put NaN
    into the sim arm's control, and the arm refused every command from then on."""
    arm = robot.arms["arm"]
    start = arm.read_state()
    for quat in ([1e300, 1e300, 0.0, 0.0], [1.7976931348623157e308] * 4, [1e-300, 0, 0, 0]):
        sent = arm.send_command(ArmCommand.pose(start.ee_position, quat, time.monotonic() + 0.1))
        assert sent is None or abs(np.linalg.norm(sent.ee_quat) - 1) < 1e-12, quat
    status = arm.safety(last=3)
    assert "ee quaternion has no direction" in status["interventions"][-1][2]  # the 1e-300 one
    time.sleep(0.2)
    state = arm.read_state()
    assert np.isfinite(state.joint_positions).all() and np.isfinite(state.ee_quat).all()
    before = state.ee_position
    stream(arm, np.array([0.0, 0.03, 0.0]), 0.5)  # and it still moves where it is told
    assert arm.read_state().ee_position[1] - before[1] > 0.02
    sent = arm.send_command(ArmCommand.pose(before, start.ee_quat, time.monotonic() + 0.1))
    assert sent is not None and np.isfinite(sent.ee_position).all()


CLIENT = """
import sys, time
import numpy as np
from hardware.client import connect
from hardware.interfaces import ArmCommand
robot = connect(sys.argv[1], sys.argv[2], timeout=5.0)
arm = robot.arms["arm"]
start = arm.read_state()
for i in range(10**9):
    now = time.monotonic()
    offset = np.array([0.03 * np.sin(now), 0.0, 0.0])
    arm.send_command(ArmCommand.pose(start.ee_position + offset, start.ee_quat, now + 0.02))
    if i == 20:
        print("streaming", flush=True)
    time.sleep(0.01)
"""


def test_watchdog_stops_the_arm_when_the_policy_process_is_killed(server, robot, tmp_path):
    _, endpoint, _ = server
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(CLIENT))
    client = subprocess.Popen(
        [sys.executable, str(script), endpoint, TOKEN], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert client.stdout.readline().strip() == "streaming"
        time.sleep(0.5)
        client.kill()  # SIGKILL: no goodbye
        client.wait(timeout=5)
        killed = time.monotonic()  # the policy process is gone by now
    finally:
        if client.poll() is None:
            client.kill()
    arm = robot.arms["arm"]
    deadline = time.monotonic() + 2.0
    while arm.safety(last=0)["mode"] == "active" and time.monotonic() < deadline:
        time.sleep(0.005)
    held_state = arm.read_state()
    time.sleep(STOP_AFTER + 3 * PERIOD)
    status = arm.safety(last=5)
    holds = [t for t, kind, _ in status["interventions"] if kind == "watchdog_hold" and t > killed]
    stops = [t for t, kind, _ in status["interventions"] if kind == "stop" and t > killed]
    last_forward = status["last_forward_time"]
    assert len(holds) == 1 and len(stops) == 1, status
    late = holds[0] - last_forward - WATCHDOG
    print(
        f"\nlast command forwarded {killed - last_forward:.4f} s before the client was reaped; "
        f"hold {holds[0] - killed:.4f} s after that, {late * 1000:.1f} ms after the watchdog "
        f"deadline (limit {2 * PERIOD * 1000:.0f} ms); stop {stops[0] - holds[0]:.3f} s after hold"
    )
    assert last_forward <= killed
    assert 0 < late <= 2 * PERIOD
    assert STOP_AFTER <= stops[0] - holds[0] <= STOP_AFTER + 2 * PERIOD
    assert status["mode"] == "stopped"
    drift = np.linalg.norm(arm.read_state().ee_position - held_state.ee_position)
    assert drift < 0.005  # held in place, not moving on towards an old target


def test_estop_latches_through_the_server(server, robot):
    process, _, _ = server
    arm = robot.arms["arm"]
    for trigger in ("signal", "request"):
        if trigger == "signal":
            os.kill(process.pid, signal.SIGUSR1)
        else:
            arm.estop("test request")
        deadline = time.monotonic() + 2.0
        while not arm.safety(last=0)["estopped"] and time.monotonic() < deadline:
            time.sleep(0.005)
        before = arm.read_state().ee_position
        replaced = arm.safety(last=0)["summary"].get("estop_replaced", 0)
        stream(arm, np.array([0.05, 0.0, 0.0]), 0.5)
        status = arm.safety(last=1)
        # every command streamed meanwhile (~25; fewer on a loaded machine) was replaced
        assert status["estopped"] and status["summary"]["estop_replaced"] >= replaced + 5
        assert np.linalg.norm(arm.read_state().ee_position - before) < 0.003, trigger
        arm.reset()
        stream(arm, np.array([0.05, 0.0, 0.0]), 0.5)
        assert not arm.safety(last=0)["estopped"]
        assert arm.read_state().ee_position[0] - before[0] > 0.03, trigger
        robot.reset_episode(0)


def fuzz_messages(rng: np.random.Generator) -> list[bytes]:
    """Thousands of bad requests: random bytes, truncated requests, wrong types and shapes,
    NaN and huge arrays, unknown ops/devices/extension types, missing or wrong tokens."""
    now = time.monotonic()

    def array(values) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    good = {
        "op": "arm.send_command",
        "device": "arm",
        "token": TOKEN,
        "args": {
            "target_time": now,
            "ee_position": array([0.0, 0, 0.2]),
            "ee_quat": array([1.0, 0, 0, 0]),
        },
    }
    bad_requests = [
        [],
        "arm.read_state",
        {"op": 5, "token": TOKEN},
        {"op": "nope", "token": TOKEN},
        {"op": "arm.read_state", "token": TOKEN},  # no device
        {"op": "arm.read_state", "device": "left", "token": TOKEN},
        {"op": "arm.read_state", "device": ["arm"], "token": TOKEN},
        {"op": "describe", "device": "arm", "token": TOKEN},
        {"op": "describe", "token": TOKEN, "extra": 1},
        {"op": "describe", "token": 1234},
        {"op": "describe"},  # no token
        {"op": "describe", "token": "wrong"},
        {"op": "describe", "token": "x" * 10_000},
        {"op": "task.reset_episode", "token": TOKEN, "args": {"seed": -1}},
        {"op": "task.reset_episode", "token": TOKEN, "args": {"seed": True}},
        {"op": "task.reset_episode", "token": TOKEN, "args": {"seed": 2**63}},
        {"op": "task.reset_episode", "token": TOKEN, "args": []},
        {
            "op": "gripper.send_command",
            "device": "gripper",
            "token": TOKEN,
            "args": {"opening": 3.0, "target_time": now},
        },
        {
            "op": "gripper.send_command",
            "device": "gripper",
            "token": TOKEN,
            "args": {"opening": float("nan"), "target_time": now},
        },
    ]
    for args in (
        {"target_time": "soon", "ee_position": array([0, 0, 0.2]), "ee_quat": array([1, 0, 0, 0])},
        {"target_time": float("inf"), "joint_positions": array(np.zeros(7))},
        {"target_time": now, "joint_positions": array(np.full(7, np.nan))},
        {"target_time": now, "joint_positions": array(np.zeros(5))},
        {"target_time": now, "joint_positions": np.zeros((7, 1))},
        {"target_time": now, "joint_positions": np.zeros(7, dtype=np.uint8)},
        {"target_time": now, "ee_position": array([0, 0, 0.2, 1]), "ee_quat": array([1, 0, 0, 0])},
        {
            "target_time": now,
            "ee_position": array([np.inf, 0, 0.2]),
            "ee_quat": array([1, 0, 0, 0]),
        },
        {"target_time": now, "ee_position": array([0, 0, 0.2])},
        {
            "target_time": now,
            "joint_positions": array(np.zeros(7)),
            "ee_position": array([0, 0, 0]),
        },
        {"target_time": now, "joint_positions": [0.0] * 7},
        {"target_time": now, "gain": 3},
    ):
        bad_requests.append({**good, "args": args})
    messages = [encode(request) for request in bad_requests] * 20
    packed_good = encode(good)
    for _ in range(1000):
        messages.append(rng.bytes(int(rng.integers(0, 300))))
        messages.append(packed_good[: int(rng.integers(0, len(packed_good)))])
    header = {key: good[key] for key in ("op", "device", "token")}
    for claim in (
        ["<f8", [10**9], b"\0" * 8],  # a billion elements claimed
        ["<f8", [7], b"\0" * 3],  # bytes do not match the shape
        ["<f8", [2] * 6, b""],  # too many dimensions
        ["<f8", "7", b""],
        ["O", [7], b"\0" * 56],  # Python objects: never
    ):
        array_claim = msgpack.ExtType(ARRAY_EXT, msgpack.packb(claim))
        args = {"target_time": now, "joint_positions": array_claim}
        messages += [msgpack.packb({**header, "args": args})] * 25
    unknown_ext = {"target_time": now, "joint_positions": msgpack.ExtType(99, b"\0")}
    messages += [msgpack.packb({**header, "args": unknown_ext})] * 25
    messages.append(b"\x91" * 100_000)  # 100,000 nested one-element lists
    big = np.zeros(100_000)  # 800 kB: over the request limit, under libzmq's hard limit
    messages += [encode({**good, "args": {"target_time": now, "joint_positions": big}})] * 5
    return messages


def test_fuzzed_messages_get_error_replies_and_the_server_keeps_serving(server, robot):
    process, endpoint, log_path = server
    context = zmq.Context.instance()
    requester = context.socket(zmq.REQ)
    requester.setsockopt(zmq.LINGER, 0)
    requester.connect(endpoint)
    messages = fuzz_messages(np.random.default_rng(3))
    errors = 0
    for message in messages:
        requester.send(message)
        assert requester.poll(5000), "no reply to a bad message"
        reply = msgpack.unpackb(requester.recv())
        assert reply["ok"] is False and reply["error"]
        errors += 1
    dealer = context.socket(zmq.DEALER)  # no REQ envelope, or several frames
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    for frames in ([b"garbage"], [b"", b"a", b"b"], [b"x", b"y", b"z"]):
        dealer.send_multipart(frames)
        assert dealer.poll(5000)
        assert msgpack.unpackb(dealer.recv_multipart()[-1])["ok"] is False
        errors += 1
    dealer.send_multipart([b"", b"\0" * (2 * 1024 * 1024)])  # over the hard limit: dropped
    for _ in range(20):  # raw TCP garbage, no ZMTP handshake
        host, port = endpoint[len("tcp://") :].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=2) as raw:
            raw.sendall(np.random.default_rng(_).bytes(1000))
    requester.close()
    dealer.close()

    assert process.poll() is None  # still up
    logged = log_path.read_text().count("rejected request")
    print(f"\n{errors} bad messages answered with errors; {logged} rejections logged")
    assert errors > 2000 and logged >= errors
    arm = robot.arms["arm"]  # and a well-behaved client is still served correctly
    before = arm.read_state()
    stream(arm, np.array([0.0, 0.03, 0.0]), 0.5)
    assert arm.read_state().ee_position[1] - before.ee_position[1] > 0.02
    assert RobotIO(robot, STATE_META, "ee_delta").observe()[0]["object_state"].shape == (9,)


def test_server_of_an_unreachable_configured_arm_exits_with_one_clear_line():
    """`hardware=ur5e` builds the configured UR arm; with no arm there, one line names it."""
    done = run_server("hardware=ur5e", timeout=120)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("server.py: error: ") and "192.168.1.10" in last
    assert "Traceback" not in done.stderr
