"""The real-arm drivers without an arm: the UR servo interpolation as pure functions, and the
clear errors for an unreachable arm or a missing client package; the Robotiq gripper against a
real TCP server speaking the URCap protocol."""

import math
import socket
import sys
import threading
import time

import numpy as np
import pytest

from hardware.franka_arm import FrankaArm
from hardware.gripper_drivers import RobotiqGripper
from hardware.interfaces import GripperCommand
from hardware.ur_rtde_arm import (
    Segment,
    URArm,
    interpolate_segment,
    quat_to_rotvec,
    rotvec_to_quat,
    slerp,
)

UNREACHABLE = "192.0.2.1"  # TEST-NET-1: never assigned, so nothing answers there


def free_port():
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- UR interpolation ----------------------------------------------------------------------


def test_joint_segment_is_linear_in_time_and_holds_its_ends():
    start, goal = np.array([0.0, 1.0, -1.0]), np.array([1.0, 0.0, 1.0])
    segment = Segment(True, (start,), (goal,), start_time=10.0, target_time=10.5)
    np.testing.assert_allclose(interpolate_segment(segment, 9.0)[0], start)
    np.testing.assert_allclose(interpolate_segment(segment, 10.1)[0], [0.2, 0.8, -0.6])
    np.testing.assert_allclose(interpolate_segment(segment, 10.25)[0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(interpolate_segment(segment, 11.0)[0], goal)


def test_segment_with_past_target_time_steps_to_the_goal():
    start, goal = np.zeros(2), np.ones(2)
    segment = Segment(True, (start,), (goal,), start_time=5.0, target_time=4.0)
    np.testing.assert_allclose(interpolate_segment(segment, 5.0)[0], goal)


def test_pose_segment_moves_position_linearly_and_rotates_by_slerp():
    quarter_turn_z = np.array([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)])
    segment = Segment(
        False,
        (np.array([0.3, 0.0, 0.2]), np.array([1.0, 0.0, 0.0, 0.0])),
        (np.array([0.5, 0.2, 0.2]), quarter_turn_z),
        start_time=0.0,
        target_time=1.0,
    )
    position, quat = interpolate_segment(segment, 0.5)
    np.testing.assert_allclose(position, [0.4, 0.1, 0.2])
    eighth_turn_z = [math.cos(math.pi / 8), 0.0, 0.0, math.sin(math.pi / 8)]
    np.testing.assert_allclose(quat, eighth_turn_z, atol=1e-12)


def test_slerp_takes_the_short_way_between_q_and_minus_q():
    quat = np.array([math.cos(0.1), math.sin(0.1), 0.0, 0.0])
    halfway = slerp(np.array([1.0, 0.0, 0.0, 0.0]), -quat, 0.5)
    np.testing.assert_allclose(halfway, [math.cos(0.05), math.sin(0.05), 0.0, 0.0], atol=1e-12)


@pytest.mark.parametrize(
    "rotvec", [[0.0, 0.0, 0.0], [1e-9, 0.0, 0.0], [0.3, -0.2, 0.1], [0.0, 0.0, math.pi - 1e-6]]
)
def test_rotation_vectors_and_quaternions_convert_both_ways(rotvec):
    quat = rotvec_to_quat(np.array(rotvec))
    assert np.linalg.norm(quat) == pytest.approx(1.0)
    np.testing.assert_allclose(quat_to_rotvec(quat), rotvec, atol=1e-9)
    np.testing.assert_allclose(quat_to_rotvec(-quat), rotvec, atol=1e-9)  # sign does not matter


def test_rotvec_to_quat_matches_axis_angle():
    quat = rotvec_to_quat(np.array([0.0, 0.0, math.pi / 2]))
    np.testing.assert_allclose(quat, [math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)])


# ---- clear errors --------------------------------------------------------------------------


@pytest.mark.parametrize("ip", ["127.0.0.1", UNREACHABLE])
def test_ur_arm_that_cannot_be_reached_fails_fast_naming_its_address(ip):
    pytest.importorskip("rtde_control")
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=rf"UR arm \(RTDE\) at {ip}:30004 is unreachable"):
        URArm(ip, connect_timeout=0.5)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("ip", ["127.0.0.1", UNREACHABLE])
def test_franka_arm_that_cannot_be_reached_fails_fast_naming_its_address(ip):
    pytest.importorskip("franky")
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=rf"Franka arm \(FCI\) at {ip}:1337 is unreachable"):
        FrankaArm(ip, connect_timeout=0.5)
    assert time.monotonic() - started < 2.0


def test_missing_client_packages_are_named(monkeypatch):
    for module in ("rtde_control", "rtde_receive", "franky"):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError, match=r"needs the 'ur_rtde' package: pip install ur_rtde=="):
        URArm("127.0.0.1")
    with pytest.raises(ImportError, match=r"'franky-control' package: pip install franky-control"):
        FrankaArm("127.0.0.1")


def test_ur_arm_rejects_gains_outside_the_servo_range():
    with pytest.raises(ValueError, match=r"gain must be in \[100, 2000\]; got 50"):
        URArm("127.0.0.1", gain=50)
    with pytest.raises(ValueError, match=r"lookahead_time must be in \[0.03, 0.2\] s; got 0.5"):
        URArm("127.0.0.1", lookahead_time=0.5)


def test_drivers_name_the_kinematics_they_lack_before_connecting():
    with pytest.raises(
        ValueError, match=r"URArm model 'ur10e' has no kinematics; known: \['ur5e'\]"
    ):
        URArm("127.0.0.1", model="ur10e")
    with pytest.raises(ValueError, match="a tool offset needs 3 entries"):
        URArm("127.0.0.1", tcp_offset=(0.0, 0.1))
    with pytest.raises(ValueError, match="a tool offset needs 3 entries"):
        FrankaArm("127.0.0.1", ee_offset=(0.0, 0.0, 0.1, 0.0))


# ---- Robotiq over a real socket ------------------------------------------------------------


class URCapServer:
    """A loopback stand-in for the Robotiq URCap: keeps registers, answers SET/GET lines."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.registers: dict[str, int] = {"POS": 0}
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:  # the driver's reachability probe connects once before the real session
            connection, _ = self.listener.accept()
            with connection, connection.makefile("rw") as stream:
                for line in stream:
                    words = line.split()
                    self.lines.append(line.strip())
                    if words[0] == "SET":
                        self.registers[words[1]] = int(words[2])
                        stream.write("ack\n")
                    else:
                        stream.write(f"{words[1]} {self.registers[words[1]]}\n")
                    stream.flush()


def test_robotiq_gripper_activates_maps_openings_and_reads_back(monkeypatch):
    server = URCapServer()
    monkeypatch.setattr("hardware.gripper_drivers.ROBOTIQ_PORT", server.port)
    gripper = RobotiqGripper("127.0.0.1", speed=200, force=50)
    try:
        assert server.lines[:4] == ["SET ACT 1", "SET GTO 1", "SET SPE 200", "SET FOR 50"]
        gripper.send_command(GripperCommand(opening=0.25, target_time=time.monotonic()))
        assert server.registers["POS"] == round(0.75 * 255)
        state = gripper.read_state()
        assert state.opening == pytest.approx(1 - 191 / 255)
        assert state.width == pytest.approx(state.opening * 0.085)
        gripper.send_command(GripperCommand(opening=7.0, target_time=time.monotonic()))
        assert server.registers["POS"] == 0  # clipped to fully open
    finally:
        gripper.close()


def test_robotiq_gripper_on_a_closed_port_names_it():
    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("hardware.gripper_drivers.ROBOTIQ_PORT", port)
        with pytest.raises(ConnectionError, match=f"Robotiq gripper .* at 127.0.0.1:{port}"):
            RobotiqGripper("127.0.0.1", connect_timeout=0.5)
