"""DMControl tasks behind the common env interface (spec 8.1-8.2).

One agent step applies the action `action_repeat` (2) times and returns the summed reward.
Observations are the suite's observation dict, each entry flattened, concatenated in dict
order, float32. Actions live in [-1, 1] and are mapped affinely onto the actuator ranges.
"""
from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from tdmpc2.envs.tasks import DMCONTROL_TASKS, UnknownTaskError, unknown_task_message

_DOMAIN_ALIASES = {"cup": "ball_in_cup", "pointmass": "point_mass"}


def split_task(task: str) -> tuple[str, str]:
    """'walker-walk-backwards' -> ('walker', 'walk_backwards'); aliases cup -> ball_in_cup."""
    domain, _, name = task.replace("-", "_").partition("_")
    return _DOMAIN_ALIASES.get(domain, domain), name


def load_suite_env(task: str, seed: int):
    """The raw dm_control `control.Environment` of a task (custom tasks included)."""
    from dm_control import suite

    from tdmpc2.envs import dmc_custom  # registers the custom tasks into the suite

    domain, name = split_task(task)
    dmc_custom.register()
    if (domain, name) not in suite.ALL_TASKS and (domain, name) not in dmc_custom.CUSTOM_TASKS:
        raise UnknownTaskError(unknown_task_message(task, DMCONTROL_TASKS))
    return dmc_custom.load(domain, name, seed)


def flatten_observation(obs: dict) -> np.ndarray:
    return np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in obs.values()])


class DMControlEnv:
    """A DMControl task with action repeat, [-1, 1] actions and flat float32 observations.

    `dmc` is the wrapped dm_control environment and `physics` its physics; planners read the
    live state through `tdmpc2.envs.make_interface`, never by stepping this env.
    """

    def __init__(self, task: str, seed: int = 1, action_repeat: int = 2, episode_length: int = 500):
        self.task = task
        self.action_repeat = int(action_repeat)
        self.max_episode_steps = int(episode_length)
        self.dmc = load_suite_env(task, seed)
        spec = self.dmc.action_spec()
        self._low = np.asarray(spec.minimum, dtype=np.float64)
        self._high = np.asarray(spec.maximum, dtype=np.float64)
        obs_dim = sum(int(np.prod(s.shape)) for s in self.dmc.observation_spec().values())
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (len(self._low),), np.float32)
        self._rng = np.random.default_rng(seed)
        self._t = 0

    @property
    def physics(self):
        return self.dmc.physics

    def to_native(self, action: np.ndarray) -> np.ndarray:
        """Map a [-1, 1] action onto the actuator ranges (affine, per dimension)."""
        action = np.clip(action, -1.0, 1.0)
        return self._low + (action + 1.0) * 0.5 * (self._high - self._low)

    def _obs(self, time_step) -> torch.Tensor:
        return torch.as_tensor(flatten_observation(time_step.observation), dtype=torch.float32)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start an episode; `seed` reseeds the task's initial-state RNG first (evaluation uses it
        to give several planners the same episodes)."""
        if seed is not None:
            self.dmc.task.random.seed(int(seed) % 2**32)
        self._t = 0
        return self._obs(self.dmc.reset())

    def get_rng_state(self) -> dict:
        """Every RNG of the env (the task's and the one behind `rand_act`), for exact resumption."""
        return {"task": self.dmc.task.random.get_state(), "rand_act": self._rng.bit_generator.state}

    def set_rng_state(self, state: dict) -> None:
        self.dmc.task.random.set_state(state["task"])
        self._rng.bit_generator.state = state["rand_act"]

    def step(self, action):
        action = np.asarray(action.detach().cpu() if torch.is_tensor(action) else action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"Action has shape {action.shape}, expected {self.action_space.shape}.")
        if not np.all(np.isfinite(action)):
            raise ValueError("Action contains NaN or infinite entries.")
        native = self.to_native(action)
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self.dmc.step(native)
            reward += time_step.reward or 0.0
        self._t += 1
        done = self._t >= self.max_episode_steps
        info = {"terminated": torch.tensor(0.0), "success": 0.0}
        return self._obs(time_step), torch.tensor(reward, dtype=torch.float32), done, info

    def rand_act(self) -> torch.Tensor:
        return torch.as_tensor(self._rng.uniform(-1.0, 1.0, self.action_space.shape), dtype=torch.float32)

    def render(self, width: int = 384, height: int = 384, camera_id: int | None = None) -> np.ndarray:
        if camera_id is None:
            camera_id = 2 if self.task.startswith("quadruped") else 0
        return self.physics.render(height, width, camera_id=camera_id)

    def close(self):
        pass
