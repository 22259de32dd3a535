"""Meta-World's own scripted policies as the registered experts for the Meta-World tasks.

Each v3 task ships a hand-written policy in ``metaworld.policies`` (``reach-v3`` ->
``SawyerReachV3Policy``, looked up in Meta-World's own ``ENV_POLICY_MAP``) that maps the 39-D
goal-observable state to an action. Most solve their task on nearly every goal, some do not
(bench/results/metaworld_experts.json, docs/metaworld.md). We feed the policy our ``state`` key,
clip its action to the action space (some policies exceed it) and pass it through
``sim.experts.TeleopNoise`` for human-like demos (a pause holds the hand still, gripper as is).
"""

from __future__ import annotations

import gymnasium as gym
import metaworld.policies
import numpy as np

from sim.experts import TeleopNoise, TeleopStyle


class MetaWorldExpert:
    """Meta-World's scripted policy for the env's task, with a teleop style."""

    def __init__(self, env: gym.Env, style: TeleopStyle):
        self.policy = metaworld.policies.ENV_POLICY_MAP[env.unwrapped.task]()
        self.noise = TeleopNoise(style, env.action_space)

    @property
    def mode(self) -> int | None:
        return None

    def reset(self, rng: np.random.Generator) -> None:
        self.noise.reset(rng)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        action = np.clip(self.policy.get_action(np.asarray(obs["state"], dtype=np.float64)), -1, 1)
        hold = np.array([0.0, 0.0, 0.0, action[3]], dtype=np.float32)  # a pause: hand still
        return self.noise(action, hold)
