"""Check a task's env config by building its env once, before any work starts.

A bad env kwarg otherwise surfaces only where an env is first built: at the first periodic
evaluation, or, after a whole training run, at the final one. ``check_env_config`` builds the env
in this process (without rendering), closes it, and turns what went wrong into one
``EnvConfigError`` line naming the config key, its value and what is expected:

- an env id that is not registered: the closest registered ids, and the ids of its namespace;
- a kwarg the env does not take: the kwargs its constructor does take;
- a value the env rejects: the env's own message (ours name the argument, its value and the
  allowed values).

Like robopolicy/eval/envs.py it never imports the simulation package: the env is named by its
gymnasium id, registered by importing ``env_modules`` (e.g. ``["sim"]``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Sequence

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

# gym.make's own keyword arguments, accepted beside the env constructor's.
MAKE_KWARGS = frozenset({"render_mode", "disable_env_checker"})


class EnvConfigError(ValueError):
    """An env id or env kwarg in the config that the env does not accept; one line."""


def check_env_config(
    env_id: str,
    env_kwargs: dict,
    env_modules: Sequence[str] = (),
    max_episode_steps: int | None = None,
    key: str = "task",
) -> None:
    """Build the env ``gym.make(env_id, **env_kwargs)`` once and close it; raise one
    ``EnvConfigError`` if it cannot be built. ``key`` is the config node holding ``env_id`` and
    ``env_kwargs`` (for the message, e.g. ``task.env_kwargs.obs_mode``; "" where they are
    top-level keys, as in eval.py's config)."""
    make_checked_env(env_id, env_kwargs, env_modules, max_episode_steps, key).close()


def make_checked_env(
    env_id: str,
    env_kwargs: dict,
    env_modules: Sequence[str] = (),
    max_episode_steps: int | None = None,
    key: str = "task",
) -> gym.Env:
    """``gym.make(env_id, max_episode_steps=..., **env_kwargs)``, or one ``EnvConfigError``."""
    for module in env_modules:
        importlib.import_module(module)
    key = f"{key}." if key else ""  # the message's key prefix: "task." (eval.py: none)
    if env_id not in gym.registry:
        raise EnvConfigError(_unregistered_message(env_id, env_kwargs, env_modules, key))
    accepted = accepted_kwargs(env_id)
    for name, value in env_kwargs.items():
        if accepted is not None and name not in accepted:
            raise EnvConfigError(
                f"{key}env_kwargs.{name}={value!r} is not an argument of {env_id}; expected "
                f"only these kwargs: {', '.join(sorted(accepted))}"
            )
    try:
        return gym.make(env_id, max_episode_steps=max_episode_steps, **env_kwargs)
    except (ValueError, TypeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        named = message.split("=", 1)[0]
        if named in env_kwargs:  # the env's message starts with the argument: name=value ...
            raise EnvConfigError(f"{key}env_kwargs.{message} (env {env_id})") from None
        raise EnvConfigError(
            f"{key}env_kwargs={env_kwargs} rejected by {env_id}: {message}"
        ) from None


def accepted_kwargs(env_id: str) -> frozenset[str] | None:
    """The kwargs the env's constructor takes (with gym.make's own), or None when it takes any
    (``**kwargs``) or cannot be inspected."""
    entry_point = gym.spec(env_id).entry_point
    try:
        creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
        parameters = inspect.signature(creator).parameters.values()
    except (ImportError, AttributeError, TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    names = {p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    return frozenset(names | MAKE_KWARGS)


def _unregistered_message(
    env_id: str, env_kwargs: dict, env_modules: Sequence[str], key: str
) -> str:
    namespace = env_id.split("/")[0] if "/" in env_id else None
    known = sorted(i for i in gym.registry if "/" in i)
    same_namespace = [i for i in known if namespace and i.startswith(namespace + "/")]
    close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.6)
    task = env_kwargs.get("task")
    if isinstance(task, str) and env_id.endswith("/" + task):  # an id named after its task
        where = f"{key}env_kwargs.task={task!r} (env id {env_id!r})"
    else:
        where = f"{key}env_id={env_id!r}"
    imported = f" (after importing {list(env_modules)})" if env_modules else ""
    hint = f"did you mean {', '.join(close)}? " if close else ""
    if same_namespace:
        names = ", ".join(i.split("/", 1)[1] for i in same_namespace)
        expected = f"the {len(same_namespace)} {namespace}/ ids: {names}"
    else:
        expected = f"one of {', '.join(known)}"
    return f"{where} is not registered as an env id{imported}; {hint}expected {expected}"
