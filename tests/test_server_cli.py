"""robopolicy-server's command line (robopolicy_cli/server.py): key=value arguments like every
program, a bad one refused in one line with exit status 2 before any robot is built, --help
naming where the keys are documented and the robots; and the arguments eval.py starts the
server with read back as the values it meant (the server itself: test_robot_server.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from server_process import run_server

from robopolicy.config import validate
from robopolicy.config.locate import conf_dir, conf_options
from robopolicy_cli import server
from robopolicy_cli.command import override

REPO = Path(__file__).resolve().parents[1]
PROGRAM = "robopolicy-server"
TRACEBACK_VARIABLES = ("HYDRA_FULL_ERROR", "ROBOPOLICY_TRACEBACK")  # set: errors with their stack


@pytest.fixture
def cli(monkeypatch):
    """``server.main`` in this process as ``robopolicy-server``, errors as users see them; the
    robots it would build (none, for a refused command line)."""
    for variable in TRACEBACK_VARIABLES:  # set and empty: run_hydra_main's setting is undone
        monkeypatch.setenv(variable, "")
    monkeypatch.delenv("ROBOT_SERVER_TOKEN", raising=False)
    monkeypatch.setattr(sys, "argv", [f"/usr/bin/{PROGRAM}"])
    built = []
    monkeypatch.setattr(server, "build_robot", lambda *args: built.append(args))
    return built


BAD_ARGUMENTS = [  # a command line and the start of the line that refuses it
    (["seed=abc"], "seed=abc: expected an integer"),
    (["address=nope"], "address=nope: expected an endpoint to bind"),
    (["bogus=1"], "bogus=1: no such key; expected one of env_id, env_kwargs"),
    (["robot=real"], "robot=real: expected one of sim"),
    (["hardware=nothere"], "hardware=nothere: Could not find 'hardware/nothere'"),
    (["hardware=ur5e", "env_id=robopolicy/Stack-v0"], "env_id=robopolicy/Stack-v0: a key of"),
    (["+limits={max_joint_speed: 1.0}"], "limits.max_joint_speed=1.0: no such limit"),
    (["camera_fps=0"], "camera_fps=0.0: expected a number > 0"),
    (["seed"], "seed: expected KEY=VALUE arguments"),
    (["address=tcp://0.0.0.0:5599"], "binding tcp://0.0.0.0:5599 (not loopback) needs a"),
    (["token=short"], "a token of 5 characters is refused"),
]


@pytest.mark.parametrize(
    ("argv", "line"), BAD_ARGUMENTS, ids=[" ".join(argv) for argv, _ in BAD_ARGUMENTS]
)
def test_a_bad_argument_is_one_line_with_status_2_and_no_robot_is_built(cli, capsys, argv, line):
    with pytest.raises(SystemExit) as stopped:
        server.main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and cli == []
    assert err.startswith(f"{PROGRAM}: error: {line}") and err.count("\n") == 1, err


def test_the_module_entry_point_refuses_in_one_line_too():
    quiet = {key: value for key, value in os.environ.items() if key not in TRACEBACK_VARIABLES}
    done = run_server("seed=abc", env=quiet)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "server.py: error: seed=abc: expected an integer\n"


def test_help_names_the_keys_documentation_the_robots_and_the_token(cli, capsys):
    with pytest.raises(SystemExit) as stopped:
        server.main(["--help"])
    shown = capsys.readouterr().out
    assert stopped.value.code == 0 and cli == []
    assert shown.startswith(f"usage: {PROGRAM} [KEY=VALUE ...]")
    assert "robopolicy/config/hardware.py ServerConfig" in shown and "conf/server.yaml" in shown
    assert f"hardware=NAME (conf/hardware/): {', '.join(conf_options('hardware'))}" in shown
    assert "ur5e" in shown and "push_cube" in shown and "ROBOT_SERVER_TOKEN" in shown


def _server_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return validate(compose(config_name="server", overrides=overrides))


def test_overrides_read_back_as_the_values_written():
    kwargs = {
        "obs_mode": "rgb",
        "camera_names": ["scene", "wrist"],
        "odd": 'it\'s "a" \\ ${not.an.interpolation}, {x: [1]} = y\\',
        "nested": {"scale": [0.5, -1e-07, float("inf")], "on": True, "off": None},
        "empty": "",
    }
    cfg = _server_config([override("+env_kwargs", kwargs), override("token", "\"'" * 8)])
    assert cfg.env_kwargs == kwargs and cfg.token == "\"'" * 8
    with pytest.raises(ValueError, match="mapping key 'null'"):
        override("+env_kwargs", {"null": 1})  # Hydra would read that key as None


def test_eval_starts_the_server_with_its_robot_and_the_token_out_of_sight(monkeypatch, tmp_path):
    from robopolicy_cli import eval as eval_cli

    started = {}
    monkeypatch.setattr(
        eval_cli.subprocess, "Popen", lambda command, **kwargs: started.update(kwargs, c=command)
    )
    hardware = {"seed": 3, "limits": {"max_joint_velocity": 1.5}, "camera_fps": 5.0}
    env_kwargs = {"obs_mode": "rgb", "camera_names": ["scene", "wrist"], "image_size": 32}
    settings = SimpleNamespace(port=5599, token="t" * 20)
    _, address = eval_cli.start_server(
        hardware, "robopolicy/PushCube-v0", env_kwargs, settings, tmp_path
    )
    command = started["c"]
    assert command[1:3] == ["-m", "hardware.server"] and settings.token not in str(command)
    assert started["env"]["ROBOT_SERVER_TOKEN"] == settings.token
    cfg = _server_config(command[3:])
    assert (cfg.robot, cfg.address, cfg.env_id) == ("sim", address, "robopolicy/PushCube-v0")
    assert cfg.env_kwargs == env_kwargs
    assert (cfg.seed, cfg.limits, cfg.camera_fps) == (3, hardware["limits"], 5.0)
