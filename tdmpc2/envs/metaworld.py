"""Meta-World v3 tasks behind the common env interface (spec 8.3).

Task `mw-<name>` is the goal-observable single-task env `<name>-v3-goal-observable` of metaworld
3.1.1 (gymnasium API), with the reference's protocol on top:

* object and goal re-randomised at every reset, drawn from the env's own seeded generator, so
  the same seed gives the same sequence of episodes;
* after the inner reset, one extra zero-action step whose result is discarded (the reset
  observation is what `reset` returns; the live simulator is one env step further on);
* one agent step = `action_repeat` (2) env steps with the same action, rewards summed,
  observation and `success` from the last one; the inner terminated/truncated flags are ignored;
* `max_episode_steps` (100) agent steps; an episode's success is the flag at its final step.

Actions are cast to float64 and clipped to [-1, 1] before they reach Meta-World, in exactly the
way `MetaWorldInterface` reproduces them. `mw` is the Meta-World env, `model`/`data` its MuJoCo
model and data; planners read the live state through `tdmpc2.envs.make_interface`, never by
stepping this env. `episode_index` counts resets (the interface keys per-episode data on it);
`last_inner_obs` is Meta-World's latest observation (its previous-frame block is state the
interface carries).
"""
from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from tdmpc2.envs.tasks import METAWORLD_TASKS, UnknownTaskError, unknown_task_message

RENDER_CAMERA = "corner2"
RENDER_CAMERA_POS = (0.75, 0.075, 0.7)


def metaworld_env_id(task: str) -> str:
    """'mw-pick-place' -> 'pick-place-v3-goal-observable'."""
    if task not in METAWORLD_TASKS:
        raise UnknownTaskError(unknown_task_message(task, METAWORLD_TASKS))
    return f"{task[len('mw-'):]}-v3-goal-observable"


def make_metaworld(task: str, seed: int):
    """The raw Meta-World env of a task, its goal/object sampling unfrozen and seeded."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

    env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[metaworld_env_id(task)](seed=int(seed))
    env._freeze_rand_vec = False  # new object and goal positions at every reset ...
    env.seeded_rand_vec = True    # ... drawn from env.np_random, which `seed` fixed
    return env


def as_action(action) -> np.ndarray:
    """The float64 action Meta-World receives: a finite (4,) array clipped to [-1, 1]."""
    if torch.is_tensor(action):
        action = action.detach().cpu().numpy()
    action = np.asarray(action, dtype=np.float64)
    if action.shape != (4,):
        raise ValueError(f"Action has shape {action.shape}, expected (4,).")
    if not np.all(np.isfinite(action)):
        raise ValueError("Action contains NaN or infinite entries.")
    return np.clip(action, -1.0, 1.0)


class MetaWorldEnv:
    """A Meta-World v3 task with the TD-MPC2 protocol (see the module docstring)."""

    def __init__(self, task: str, seed: int = 1, action_repeat: int = 2, episode_length: int = 100):
        self.task = task
        self.action_repeat = int(action_repeat)
        self.max_episode_steps = int(episode_length)
        self.mw = make_metaworld(task, seed)
        # Meta-World refuses to step past its own horizon (500); ours may be longer
        self.mw.max_path_length = max(self.mw.max_path_length, self.action_repeat * self.max_episode_steps + 2)
        self.observation_space = spaces.Box(-np.inf, np.inf, (39,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self._rng = np.random.default_rng(seed)
        self._renderer = None
        self.episode_index = 0
        self.last_inner_obs = None  # Meta-World's last observation (float64), reset's extra step included
        self._t = 0

    @property
    def model(self):
        return self.mw.model

    @property
    def data(self):
        return self.mw.data

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start an episode; `seed` reseeds the object/goal generator first (evaluation uses it
        to give several planners the same episodes)."""
        if seed is not None:
            self.mw.np_random = np.random.Generator(np.random.PCG64(int(seed) % 2**32))
        obs, _ = self.mw.reset()
        self.episode_index += 1
        self.last_inner_obs = self.mw.step(np.zeros(4))[0]  # the reference's extra step (discarded)
        self._t = 0
        return torch.as_tensor(obs, dtype=torch.float32)

    def step(self, action):
        action = as_action(action)
        reward = 0.0
        for _ in range(self.action_repeat):
            obs, r, _, _, info = self.mw.step(action)
            self.last_inner_obs = obs
            reward += float(r)
        self._t += 1
        done = self._t >= self.max_episode_steps
        info = {"terminated": torch.tensor(0.0), "success": float(info.get("success", 0.0))}
        return torch.as_tensor(obs, dtype=torch.float32), torch.tensor(reward, dtype=torch.float32), done, info

    def rand_act(self) -> torch.Tensor:
        return torch.as_tensor(self._rng.uniform(-1.0, 1.0, 4), dtype=torch.float32)

    def get_rng_state(self) -> dict:
        """Every RNG of the env (object/goal sampling and `rand_act`), for exact resumption."""
        return {"task": self.mw.np_random.bit_generator.state, "rand_act": self._rng.bit_generator.state}

    def set_rng_state(self, state: dict) -> None:
        self.mw.np_random.bit_generator.state = state["task"]
        self._rng.bit_generator.state = state["rand_act"]

    def render(self, width: int = 384, height: int = 384) -> np.ndarray:
        """RGB frame (height, width, 3) from camera `corner2` moved to the reference's pose."""
        import mujoco

        if self._renderer is None or (self._renderer.width, self._renderer.height) != (width, height):
            self.model.cam(RENDER_CAMERA).pos[:] = RENDER_CAMERA_POS
            self._renderer = mujoco.Renderer(self.model, height=height, width=width)
        self._renderer.update_scene(self.data, camera=RENDER_CAMERA)
        return self._renderer.render()

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
