"""`DMControlInterface`: classical planning on the MuJoCo simulator behind a `DMControlEnv`.

State layout (`state_dim` entries): `mj_getState(..., mjSTATE_INTEGRATION)` (time, qpos, qvel,
act, qacc_warmstart, ctrl, applied forces, eq_active, mocap, userdata, plugin state) followed
by the values of the model's acceleration-stage sensors (touch, force). The tail is what
dm_control's legacy step leaves in `sensordata` (computed before the last substep's
integration), so `observation(x)` reproduces observations that read touch sensors (finger,
hopper) exactly. Tangent (`2 nv + na`): d qpos (via `mj_differentiatePos`), d qvel, d act.

One agent step = `action_repeat` control steps x `substeps` `mj_step`s with ctrl held. All
simulation runs on private `MjData` (the live env is only read by `get_state`):
- `step`/`step_batch` (small batches) loop `mj_step` in place and are exact, warm start included;
- `simulate`/`rollout`/`linearize_batch` batch trajectories in C through `mujoco.rollout`,
  threaded over `mujoco_threads` MjData. Physics is bit-identical to `step`, but rollout output
  has no solver warm start: intermediate states carry the initial state's `qacc_warmstart`
  (restarting from one of them differs from the continuing trajectory by solver tolerance).

Planning model (`planning_model="default"`): a private copy of the model with fewer, longer
substeps and softened contacts (`solimp[0] = 0`) for the domains listed in `PLANNING_MODELS`;
`"exact"` (and domains not listed) plan on the env's own model, so `step` equals `env.step`.
Rewards and observations are always evaluated with the task's own code on the env's model.
"""
from __future__ import annotations

import copy
import os

import mujoco
import mujoco.rollout
import numpy as np

from tdmpc2.classical.interface import EnvironmentInterface
from tdmpc2.envs.dmc_costs import make_cost, supported_cost_tasks
from tdmpc2.envs.dmcontrol import flatten_observation, split_task

INTEGRATION = mujoco.mjtState.mjSTATE_INTEGRATION
FULLPHYSICS = mujoco.mjtState.mjSTATE_FULLPHYSICS

# domain -> (substeps per control step, soften contacts); the control step itself is unchanged
PLANNING_MODELS = {
    "walker": (2, True),
    "hopper": (2, True),
    "fish": (2, False),
    "quadruped": (2, True),
    "humanoid": (5, True),
}


class UnsupportedTaskError(ValueError):
    """The task has no classical planning cost."""


def _element_slices(model, spec: int) -> dict[int, slice]:
    """Slice of each mjtState element (bit) inside a state vector of layout `spec`."""
    out, start = {}, 0
    for bit in range(mujoco.mjtState.mjNSTATE.value):
        if spec & (1 << bit):
            size = mujoco.mj_stateSize(model, 1 << bit)
            out[1 << bit] = slice(start, start + size)
            start += size
    return out


def make_planning_model(model: mujoco.MjModel, substeps: int, n_sub: int, soft_contacts: bool) -> mujoco.MjModel:
    """A copy of `model` whose `substeps` steps span the control step of `n_sub` original steps."""
    plan = copy.copy(model)
    plan.opt.timestep = model.opt.timestep * n_sub / substeps
    if soft_contacts:
        plan.geom_solimp[:, 0] = 0.0
        plan.jnt_solimp[:, 0] = 0.0
        if plan.npair:
            plan.pair_solimp[:, 0] = 0.0
    return plan


class DMControlInterface(EnvironmentInterface):
    """Exact snapshots, fast batched rollouts, Jacobians, rewards and costs of a DMControl task."""

    _MODEL_FIELDS = ("body_pos", "body_quat", "geom_pos", "geom_quat", "geom_size", "site_pos",
                     "site_quat", "site_size")  # what tasks move between episodes (targets)

    def __init__(self, env, planning_model: str = "default", finite_diff_eps: float = 1e-6,
                 threads: int | str = "auto", cost: bool = True):
        if planning_model not in ("default", "exact"):
            raise ValueError(f"planning_model must be 'default' or 'exact', got {planning_model!r}.")
        self.env, self.task_name = env, env.task
        self.physics = env.physics
        self.task = env.dmc.task
        self.model = env.physics.model.ptr
        self.action_repeat = int(env.action_repeat)
        self.n_sub = int(env.dmc._n_sub_steps)
        self.finite_diff_eps = float(finite_diff_eps)
        self.action_dim = self.model.nu
        self._low, self._high = env._low, env._high

        domain, _ = split_task(env.task)
        substeps, soft = PLANNING_MODELS.get(domain, (self.n_sub, False))
        self.planning = planning_model if domain in PLANNING_MODELS else "exact"  # which model `step` uses
        if self.planning == "exact":
            self.plan_model, self.substeps = self.model, self.n_sub
        else:
            self.plan_model, self.substeps = make_planning_model(self.model, substeps, self.n_sub, soft), substeps
        self.steps_per_action = self.action_repeat * self.substeps

        m = self.model
        self._int = _element_slices(m, INTEGRATION)
        self._full = _element_slices(m, FULLPHYSICS)
        self._n_int = mujoco.mj_stateSize(m, INTEGRATION)
        self._n_full = mujoco.mj_stateSize(m, FULLPHYSICS)
        self._acc = np.array([i for s in range(m.nsensor) if m.sensor_needstage[s] == mujoco.mjtStage.mjSTAGE_ACC
                              for i in range(m.sensor_adr[s], m.sensor_adr[s] + m.sensor_dim[s])], dtype=int)
        self.state_dim = self._n_int + len(self._acc)
        self.nq, self.nv, self.na = m.nq, m.nv, m.na
        self._quaternions = m.nq != m.nv or np.any(np.isin(m.jnt_type, (mujoco.mjtJoint.mjJNT_BALL,)))
        self.qpos_slice = self._int[mujoco.mjtState.mjSTATE_QPOS]
        self.qvel_slice = self._int[mujoco.mjtState.mjSTATE_QVEL]
        self.act_slice = self._int[mujoco.mjtState.mjSTATE_ACT]
        self._warm = self._int[mujoco.mjtState.mjSTATE_WARMSTART]
        self._ctrl = self._int[mujoco.mjtState.mjSTATE_CTRL]

        self._data = mujoco.MjData(self.plan_model)          # exact single-trajectory stepping
        self._kin = mujoco.MjData(self.model)                # kinematic features for costs
        self._scratch = self.physics.copy(share_model=True)  # rewards and observations
        nthread = max(1, min(os.cpu_count() or 1, 4)) if threads == "auto" else int(threads)
        self._thread_data = [mujoco.MjData(self.plan_model) for _ in range(nthread)]
        self._pool = mujoco.rollout.Rollout(nthread=nthread) if nthread > 1 else None
        self._cost = make_cost(env.task, self) if cost else None
        if cost and self._cost is None:
            raise UnsupportedTaskError(
                f"Task '{env.task}' has no classical planning cost; supported: {', '.join(supported_cost_tasks())}.")

    @classmethod
    def from_config(cls, cfg, env) -> "DMControlInterface":
        """Reads `planning_model`, `finite_diff_eps` and `mujoco_threads` of the config."""
        return cls(env, planning_model=cfg.planning_model, finite_diff_eps=cfg.finite_diff_eps,
                   threads=cfg.mujoco_threads)

    def close(self):
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the pool may already be gone
            pass

    # ---- sizes and geometry
    @property
    def tangent_dim(self) -> int:
        return 2 * self.nv + self.na

    def to_native(self, actions: np.ndarray) -> np.ndarray:
        """[-1, 1] actions (any leading shape) -> actuator controls, as the env maps them."""
        actions = np.clip(actions, -1.0, 1.0)
        return self._low + (actions + 1.0) * 0.5 * (self._high - self._low)

    def qpos(self, states):
        return states[..., self.qpos_slice]

    def qvel(self, states):
        return states[..., self.qvel_slice]

    def state_difference(self, x1, x0):
        x1, x0 = np.broadcast_arrays(np.asarray(x1, dtype=np.float64), np.asarray(x0, dtype=np.float64))
        if self._quaternions:
            flat1, flat0 = x1.reshape(-1, x1.shape[-1]), x0.reshape(-1, x0.shape[-1])
            dq = np.empty((len(flat1), self.nv))
            for i in range(len(flat1)):
                mujoco.mj_differentiatePos(self.model, dq[i], 1.0, flat0[i, self.qpos_slice], flat1[i, self.qpos_slice])
            dq = dq.reshape(x1.shape[:-1] + (self.nv,))
        else:
            dq = x1[..., self.qpos_slice] - x0[..., self.qpos_slice]
        rest = x1[..., self.qvel_slice.start:self.act_slice.stop] - x0[..., self.qvel_slice.start:self.act_slice.stop]
        return np.concatenate([dq, rest], axis=-1)

    def state_add(self, x, dx):
        x, dx = np.asarray(x, dtype=np.float64), np.asarray(dx, dtype=np.float64)
        shape = np.broadcast_shapes(x.shape[:-1], dx.shape[:-1])
        out = np.array(np.broadcast_to(x, shape + x.shape[-1:]))
        dx = np.broadcast_to(dx, shape + dx.shape[-1:])
        if self._quaternions:
            flat, dflat = out.reshape(-1, out.shape[-1]), dx.reshape(-1, dx.shape[-1])
            for i in range(len(flat)):
                q = flat[i, self.qpos_slice].copy()
                mujoco.mj_integratePos(self.model, q, dflat[i, :self.nv], 1.0)
                flat[i, self.qpos_slice] = q
            out = flat.reshape(out.shape)
        else:
            out[..., self.qpos_slice] += dx[..., :self.nv]
        out[..., self.qvel_slice.start:self.act_slice.stop] += dx[..., self.nv:]
        return out

    # ---- validation
    def _states(self, states, batched: bool) -> np.ndarray:
        states = np.asarray(states, dtype=np.float64)
        want = 2 if batched else 1
        if states.ndim != want or states.shape[-1] != self.state_dim:
            shape = "(N, state_dim)" if batched else "(state_dim,)"
            raise ValueError(f"state has shape {states.shape}, expected {shape} with state_dim = {self.state_dim}.")
        if not np.all(np.isfinite(states)):
            raise ValueError("state contains NaN or infinite entries.")
        return states

    def _actions(self, actions, shape) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != shape:
            raise ValueError(f"actions have shape {actions.shape}, expected {shape}.")
        if not np.all(np.isfinite(actions)):
            raise ValueError("actions contain NaN or infinite entries.")
        return actions

    # ---- exact stepping
    def _sync_planning_model(self):
        """Copy what tasks change per episode (targets) from the env's model into the copy."""
        if self.plan_model is not self.model:
            for name in self._MODEL_FIELDS:
                getattr(self.plan_model, name)[:] = getattr(self.model, name)

    def get_state(self) -> np.ndarray:
        self._sync_planning_model()
        data = self.physics.data.ptr
        out = np.empty(self.state_dim)
        mujoco.mj_getState(self.model, data, out[:self._n_int], INTEGRATION)
        out[self._n_int:] = data.sensordata[self._acc]
        return out

    def _load(self, model, data, state):
        mujoco.mj_setState(model, data, state[:self._n_int], INTEGRATION)

    def _read(self, model, data) -> np.ndarray:
        out = np.empty(self.state_dim)
        mujoco.mj_getState(model, data, out[:self._n_int], INTEGRATION)
        out[self._n_int:] = data.sensordata[self._acc]
        return out

    def step(self, state, action) -> np.ndarray:
        state = self._states(state, batched=False)
        action = self._actions(action, (self.action_dim,))
        return self._step(state, self.to_native(action))

    def _step(self, state, native):
        self._load(self.plan_model, self._data, state)
        self._data.ctrl[:] = native
        mujoco.mj_step(self.plan_model, self._data, nstep=self.steps_per_action)
        return self._read(self.plan_model, self._data)

    def step_batch(self, states, actions) -> np.ndarray:
        states = self._states(states, batched=True)
        actions = self._actions(actions, (len(states), self.action_dim))
        if len(states) >= 64:  # large batches: C rollout (exact physics, warm start as documented)
            return self._simulate(states, actions[:, None])[0][:, -1]
        native = self.to_native(actions)
        return np.stack([self._step(x, u) for x, u in zip(states, native)])

    # ---- batched rollouts in C
    def _run(self, states, native_ctrl, nstep):
        """mujoco.rollout from INTEGRATION states; returns FULLPHYSICS states and sensordata."""
        init = np.empty((len(states), self._n_full))
        for bit, sl in self._full.items():
            init[:, sl] = states[:, self._int[bit]]
        warm = np.ascontiguousarray(states[:, self._warm])
        ctrl = np.ascontiguousarray(native_ctrl)
        if self._pool is not None:
            return self._pool.rollout(self.plan_model, self._thread_data, init, ctrl, nstep=nstep,
                                      initial_warmstart=warm)
        return mujoco.rollout.rollout(self.plan_model, self._thread_data[0], init, ctrl, nstep=nstep,
                                      initial_warmstart=warm)

    def _simulate(self, states, actions, every: int | None = None):
        """States every `every` physics steps (default: each agent step), INTEGRATION layout.

        Returns (states (N, K+1, state_dim), native controls (N, T, nu)) with K recorded points.
        """
        N, T, _ = actions.shape
        every = every or self.steps_per_action
        native = self.to_native(actions)
        ctrl = np.repeat(native, self.steps_per_action, axis=1)
        full, sensors = self._run(states, ctrl, T * self.steps_per_action)
        full, sensors = full[:, every - 1::every], sensors[:, every - 1::every]
        K = full.shape[1]
        out = np.repeat(states[:, None], K + 1, axis=1)
        for bit, sl in self._full.items():
            out[:, 1:, self._int[bit]] = full[:, :, sl]
        out[:, 1:, self._ctrl] = np.repeat(native, self.steps_per_action // every, axis=1)
        out[:, 1:, self._n_int:] = sensors[:, :, self._acc]
        return out, native

    def _trajectory_inputs(self, states, actions):
        states = self._states(states, batched=True)
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 3 or actions.shape[0] != len(states) or actions.shape[2] != self.action_dim:
            raise ValueError(f"actions have shape {actions.shape}, expected ({len(states)}, T, {self.action_dim}).")
        if actions.shape[1] == 0:
            raise ValueError("rollout horizon must be at least 1 agent step, got 0.")
        return states, self._actions(actions, actions.shape)

    def simulate(self, states, actions) -> np.ndarray:
        states, actions = self._trajectory_inputs(states, actions)
        return self._simulate(states, actions)[0]

    def rollout(self, states, actions) -> tuple[np.ndarray, np.ndarray]:
        """`(N, state_dim)`, `(N, T, m)` -> `(states (N, T+1, state_dim), rewards (N, T))`.

        Rewards are the task's own, summed over the action repeat (evaluated at every control
        step); states are those at agent-step boundaries.
        """
        states, actions = self._trajectory_inputs(states, actions)
        N, T, _ = actions.shape
        ctl, _ = self._simulate(states, actions, every=self.substeps)  # (N, T*repeat + 1, sd)
        rewards = self.task_rewards(ctl[:, 1:].reshape(N * T * self.action_repeat, -1))
        rewards = rewards.reshape(N, T, self.action_repeat).sum(-1)
        return ctl[:, ::self.action_repeat], rewards

    # ---- task reward and observation (the task's own code on a scratch physics)
    def _scratch_at(self, state):
        data = self._scratch.data.ptr
        mujoco.mj_setState(self.model, data, state[:self._n_int], INTEGRATION)
        mujoco.mj_step1(self.model, data)  # what dm_control's legacy step leaves: position and velocity stages
        data.sensordata[self._acc] = state[self._n_int:]
        return self._scratch

    def task_rewards(self, states) -> np.ndarray:
        """The task's reward in each of `states (N, state_dim)` (one control step's reward)."""
        return np.array([float(self.task.get_reward(self._scratch_at(x))) for x in states])

    def reward(self, state, action) -> float:
        traj, rewards = self.rollout(self._states(state, batched=False)[None],
                                     np.asarray(action, dtype=np.float64)[None, None])
        return float(rewards[0, 0])

    def observation(self, state) -> np.ndarray:
        """The env's observation in `state`, float32 like the env's."""
        state = self._states(state, batched=False)
        obs = self.task.get_observation(self._scratch_at(state))
        return flatten_observation(obs).astype(np.float32)

    def observations(self, states) -> np.ndarray:
        states = self._states(states, batched=True)
        return np.stack([flatten_observation(self.task.get_observation(self._scratch_at(x))) for x in states]
                        ).astype(np.float32)

    # ---- kinematic features for costs
    def kinematics(self, states, read) -> np.ndarray:
        """`read(data)` after `mj_kinematics` (+ com, velocities) at each state: `(N, ...)`."""
        data, out = self._kin, []
        for x in states:
            data.qpos[:] = x[self.qpos_slice]
            data.qvel[:] = x[self.qvel_slice]
            mujoco.mj_kinematics(self.model, data)
            mujoco.mj_comPos(self.model, data)
            out.append(np.array(read(data), dtype=np.float64))
        return np.array(out)

    # ---- costs
    def residual_cost(self):
        return self._cost

    def cost(self, state, action) -> float:
        self._require_cost()
        return float(self.costs(self._states(state, batched=False)[None], np.asarray(action, dtype=np.float64)[None])[0])

    def terminal_cost(self, state) -> float:
        self._require_cost()
        return float(self.terminal_costs(self._states(state, batched=False)[None])[0])

    def _require_cost(self):
        if self._cost is None:
            raise UnsupportedTaskError(f"Task '{self.task_name}' has no classical planning cost.")

    # ---- Jacobians of the whole agent step: forward differences through one batched rollout
    def linearize_batch(self, states, actions):
        """A `(N, n, n)`, B `(N, n, m)` of the agent step at each (state, action)."""
        n = self.tangent_dim
        xs, us, steps = self._perturbations(np.asarray(states, dtype=np.float64), np.asarray(actions, dtype=np.float64))
        N, P = xs.shape[:2]
        nxt = self._simulate(xs.reshape(N * P, -1), us.reshape(N * P, 1, -1))[0][:, -1].reshape(N, P, -1)
        diff = self.state_difference(nxt[:, 1:], nxt[:, :1])
        jac = np.swapaxes(diff, 1, 2) / steps[:, None, :]
        return jac[:, :, :n], jac[:, :, n:]

