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
substeps and softened contacts (`solimp[0] = 0`) for the domains listed in `PLANNING_MODELS`,
unless the task's row of `classical_defaults` says `exact`; `"exact"` (and domains not listed)
plan on the env's own physics, so `step` equals `env.step`.

Rewards. For the stock tasks of `dmc_rewards` (cheetah, walker, cartpole, pendulum, hopper,
reacher, finger, ball_in_cup, fish, acrobot) `rollout` and `task_rewards` evaluate the reward
formulas with numpy over the whole batch: the quantities a reward reads from `mjData` are
measured by extra (passive) MuJoCo sensors of a private copy of the task's model, compiled from
the suite's XML (`reward_model`; every array is then copied from the env's model and checked to
have the same shape, physics bit-identical), and read from the `sensordata` that
`mujoco.rollout` records. A rollout step records the sensors of the state *before* its
integration, so the state after control step k is read at physics step k*substeps + 1 and a
rollout runs one trailing physics step. Other tasks (this project's custom tasks, tasks whose
model differs from the suite XML) use `reference_task_rewards`: the task's own `get_reward` on a
scratch physics, state by state. Observations always use the task's own code on the env's model.
"""
from __future__ import annotations

import copy
import os

import mujoco
import mujoco.rollout
import numpy as np

from tdmpc2.classical.interface import EnvironmentInterface
from tdmpc2.envs.classical_defaults import classical_defaults
from tdmpc2.envs.dmc_costs import make_cost, supported_cost_tasks
from tdmpc2.envs.dmc_rewards import Quantities, TaskReward, suite_module, task_reward
from tdmpc2.envs.dmcontrol import flatten_observation, split_task

INTEGRATION = mujoco.mjtState.mjSTATE_INTEGRATION
FULLPHYSICS = mujoco.mjtState.mjSTATE_FULLPHYSICS

# domain -> (substeps per control step, soften contacts); the control step itself is unchanged
PLANNING_MODELS = {
    "walker": (2, True),
    "hopper": (2, True),
    # fish is not listed: on a 2-substep model ~7% of uniformly random action sequences diverge
    # within 10 agent steps (none on the exact model), which corrupts MPPI candidate rewards.
    "quadruped": (2, True),
    "humanoid": (5, True),
    "ball_in_cup": (2, False),  # cup-catch
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


_NOT_COPIED = ("name_", "names", "sensor_", "paths")  # differ once sensors are added; not physics


def _suite_xml(task):
    """(xml, include files) the task's suite module builds its model from, or None."""
    module = suite_module(task)
    if module is None or not hasattr(module, "get_model_and_assets"):
        return None
    xml, assets = module.get_model_and_assets()
    xml = xml.decode() if isinstance(xml, bytes) else xml
    return xml, {os.path.normpath(k): v for k, v in assets.items()}


def reward_model(model: mujoco.MjModel, task, reward: TaskReward):
    """`model` plus the sensors `reward` reads; returns (model, {key: sensordata indices}) or None.

    Sensors the task's XML already has are read where they are (no new model when that is all
    the reward needs). New sensors are appended, unnamed, to a model compiled from the suite's
    XML; every array of `model` is then copied into it (per-episode changes included), after
    checking that all non-sensor arrays have the same shapes (else None: the XML is not the
    env's). The original sensors keep their addresses, so `sensordata[:model.nsensordata]` is
    the env's.
    """
    new = [s for s in reward.sensors if s.kind is not None]
    out, index = model, {}
    if new:
        source = _suite_xml(task)
        if source is None:
            return None
        spec = mujoco.MjSpec.from_string(source[0], include=source[1])
        for s in new:
            spec.add_sensor(type=s.kind, objtype=s.objtype, objname=s.name)
        try:
            out = spec.compile()
        except ValueError:
            return None
        if out.nsensor != model.nsensor + len(new) or \
                not np.array_equal(out.sensor_adr[:model.nsensor], model.sensor_adr):
            return None
        fields = [name for name in dir(model) if not name.startswith(("_",) + _NOT_COPIED)
                  and isinstance(getattr(model, name), np.ndarray)]
        if any(getattr(model, f).shape != getattr(out, f).shape for f in fields):
            return None
        for f in fields:
            getattr(out, f)[...] = getattr(model, f)
        for struct in ("opt", "stat"):  # solver options; statistics that scale solver tolerances
            src, dst = getattr(model, struct), getattr(out, struct)
            for name in dir(src):
                if not name.startswith("_"):
                    value = getattr(src, name)
                    if isinstance(value, np.ndarray):
                        getattr(dst, name)[...] = value
                    elif isinstance(value, (int, float)):
                        setattr(dst, name, value)
    for j, s in enumerate(new):
        sid = model.nsensor + j
        index[s.key] = np.arange(out.sensor_adr[sid], out.sensor_adr[sid] + out.sensor_dim[sid])
    for s in reward.sensors:
        if s.kind is None:
            try:
                sensor = model.sensor(s.name)
            except KeyError:
                return None
            index[s.key] = np.arange(sensor.adr[0], sensor.adr[0] + sensor.dim[0])
    return out, index


class DMControlInterface(EnvironmentInterface):
    """Exact snapshots, fast batched rollouts, Jacobians, rewards and costs of a DMControl task."""

    _MODEL_FIELDS = ("body_pos", "body_quat", "geom_pos", "geom_quat", "geom_size", "site_pos",
                     "site_quat", "site_size", "dof_damping")  # what tasks change between episodes

    def __init__(self, env, planning_model: str = "default", finite_diff_eps: float = 1e-6,
                 threads: int | str = "auto", cost: bool = True, vectorized_rewards: bool = True):
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

        # the batched reward and the model that carries its sensors (None: per-state fallback)
        self._reward, self._reward_index, base = None, None, self.model
        reward = task_reward(self.task, self.model) if vectorized_rewards else None
        built = reward_model(self.model, self.task, reward) if reward is not None else None
        if built is not None:
            self._reward, (base, self._reward_index) = reward, built

        domain, _ = split_task(env.task)
        substeps, soft = PLANNING_MODELS.get(domain, (self.n_sub, False))
        if planning_model == "default":  # the per-task table may ask for the exact model
            planning_model = classical_defaults(env.task).planning_model
        self.planning = planning_model if domain in PLANNING_MODELS else "exact"  # which model `step` uses
        if self.planning == "exact":
            self.plan_model, self.substeps = base, self.n_sub
        else:
            self.plan_model, self.substeps = make_planning_model(base, substeps, self.n_sub, soft), substeps
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
    @property
    def vectorized_rewards(self) -> bool:
        """Whether `rollout`/`task_rewards` use the batched formulas (else the task's own code)."""
        return self._reward is not None

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
        native = self.to_native(actions)
        ctrl = np.repeat(native, self.steps_per_action, axis=1)
        full, sensors = self._run(states, ctrl, ctrl.shape[1])
        return self._assemble(states, full, sensors, native, every or self.steps_per_action), native

    def _assemble(self, states, full, sensors, native, every):
        """INTEGRATION states `(N, K+1, state_dim)` every `every` steps from rollout output."""
        full, sensors = full[:, every - 1::every], sensors[:, every - 1::every]
        K = full.shape[1]
        out = np.repeat(states[:, None], K + 1, axis=1)
        self._fill(out[:, 1:], full, sensors, np.repeat(native, self.steps_per_action // every, axis=1))
        return out

    def _fill(self, out, full, sensors, ctrl):
        """Write rollout records (FULLPHYSICS states, their sensordata, ctrl) into INTEGRATION
        states `out` (which supply the warm start)."""
        for bit, sl in self._full.items():
            out[..., self._int[bit]] = full[..., sl]
        out[..., self._ctrl] = ctrl
        out[..., self._n_int:] = sensors[..., self._acc]

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
        R, s = self.action_repeat, self.substeps
        if self._reward is None:
            ctl, _ = self._simulate(states, actions, every=s)  # (N, T*R + 1, sd)
            rewards = self.reference_task_rewards(ctl[:, 1:].reshape(N * T * R, -1))
            return ctl[:, ::R], rewards.reshape(N, T, R).sum(-1)
        native = self.to_native(actions)
        ctrl = np.repeat(native, self.steps_per_action, axis=1)
        P = ctrl.shape[1]
        # one trailing step: its recorded sensors are those of the final state
        full, sensors = self._run(states, np.concatenate([ctrl, ctrl[:, -1:]], axis=1), P + 1)
        out = self._assemble(states, full[:, :P], sensors[:, :P], native, self.steps_per_action)
        # state after control step k = 1..T*R: record k*s - 1; its sensors: record k*s
        K = T * R
        after, read = full[:, s - 1:P:s], sensors[:, s::s]
        ctrl_k = np.repeat(native, R, axis=1)
        q = Quantities(
            sensors={k: read[..., idx].reshape(N * K, -1) for k, idx in self._reward_index.items()},
            qpos=after[..., self._full[mujoco.mjtState.mjSTATE_QPOS]].reshape(N * K, -1),
            qvel=after[..., self._full[mujoco.mjtState.mjSTATE_QVEL]].reshape(N * K, -1),
            ctrl=ctrl_k.reshape(N * K, -1), model=self.model)
        rewards = self._reward(q).reshape(N, K)
        # MuJoCo resets a diverging simulation inside mj_step (the time restarts), after which
        # the recorded sensors are those of the reset state: evaluate those steps state by state
        clock = full[..., self._full[mujoco.mjtState.mjSTATE_TIME].start]
        bad = np.argwhere(clock[:, s::s] != clock[:, s - 1:P:s] + self.plan_model.opt.timestep)
        if len(bad):
            x = np.repeat(states[:, None], K, axis=1)[bad[:, 0], bad[:, 1]]
            self._fill(x, after[bad[:, 0], bad[:, 1]], sensors[:, s - 1:P:s][bad[:, 0], bad[:, 1]],
                       ctrl_k[bad[:, 0], bad[:, 1]])
            rewards[bad[:, 0], bad[:, 1]] = self.reference_task_rewards(x)
        return out, rewards.reshape(N, T, R).sum(-1)

    # ---- task reward and observation (the task's own code on a scratch physics)
    def _scratch_at(self, state):
        data = self._scratch.data.ptr
        mujoco.mj_setState(self.model, data, state[:self._n_int], INTEGRATION)
        mujoco.mj_step1(self.model, data)  # what dm_control's legacy step leaves: position and velocity stages
        data.sensordata[self._acc] = state[self._n_int:]
        return self._scratch

    def task_rewards(self, states) -> np.ndarray:
        """The task's reward in each of `states (N, state_dim)` (one control step's reward, with
        the state's ctrl as the control of that step). Batched where the task has a vectorised
        reward: a one-step rollout records the sensors of the states themselves."""
        states = self._states(states, batched=True)
        if self._reward is None:
            return self.reference_task_rewards(states)
        full, sensors = self._run(states, states[:, None, self._ctrl], 1)
        q = Quantities(sensors={k: sensors[:, 0, idx] for k, idx in self._reward_index.items()},
                       qpos=states[:, self.qpos_slice], qvel=states[:, self.qvel_slice],
                       ctrl=states[:, self._ctrl], model=self.model)
        rewards = self._reward(q)
        clock = full[:, 0, self._full[mujoco.mjtState.mjSTATE_TIME].start]
        bad = clock != states[:, self._int[mujoco.mjtState.mjSTATE_TIME].start] + self.plan_model.opt.timestep
        if np.any(bad):  # diverging states: MuJoCo reset them before recording the sensors
            rewards[bad] = self.reference_task_rewards(states[bad])
        return rewards

    def reference_task_rewards(self, states) -> np.ndarray:
        """The task's own `get_reward` on a scratch physics, state by state (exact, slow)."""
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

