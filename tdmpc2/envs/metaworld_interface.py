"""`MetaWorldInterface`: a Meta-World v3 task as an `EnvironmentInterface` (hybrid-design.md sec. 4).

State x (float64, `state_dim` = S + 18 + 1), where S = `mj_stateSize(mjSTATE_INTEGRATION)`:

    x[:S]        mj_getState(..., mjSTATE_INTEGRATION): time, qpos, qvel, act, solver warm start,
                 ctrl, applied forces, eq_active, mocap pose, userdata (exact replay needs all)
    x[S:S+18]    `prev`: the previous-frame block of the last observation the env emitted
                 (obs[18:36], i.e. the 18 "current" entries one env step earlier, clipped as in
                 the observation); the current block and the goal follow from the physics
    x[S+18]      `episode`: the wrapper's `episode_index` when the state was taken

Per-episode data. Meta-World rewards and observations read attributes fixed at reset (initial
object/hand/pad positions, the goal, reward normalisers) and reset also edits the model (goal
site, object and fixture poses). The first `get_state()` of an episode takes an episode context:
a detached copy of the Meta-World env with its own copy of the model (`_episode_copy`). All
simulation, rewards and observations of states carrying that episode index run on that copy,
through Meta-World's own code, so they agree with the live env bit for bit; the live env is never
touched. The last `max_episodes` contexts are kept.

Agent step (exactly `MetaWorldEnv.step`): the action is cast to float64 and clipped to [-1, 1];
then `action_repeat` times: mocap position += 0.01 * a[:3], clipped to the mocap box, mocap
quaternion (1, 0, 1, 0), ctrl = (a[3], -a[3]), `frame_skip` (5) physics steps.

Tangent dx (`tangent_dim` = 2 nv + na + 3): [dqpos (nv, via mj_differentiatePos), dqvel, dact,
dmocap_pos]. Time, warm start, ctrl (overwritten every step), the mocap quaternion (constant),
`prev` (read only by the observation of the same state) and `episode` are not degrees of freedom;
`state_add` keeps them from the base state. Jacobians are central differences through batched
`mujoco.rollout` runs whose per-physics-step controls carry ctrl and the mocap pose, so mocap
columns are included (`mjd_transitionFD` would leave them out).

Batched path (`rollout`, `simulate`, `step_batch`, `observations`, `features`) for reach, push and
pick-place (whatever `metaworld_rewards.task_reward` accepts): one `MjData` per episode copy runs
each trajectory with raw MuJoCo calls in exactly the order above (set mocap and ctrl, `mj_step`
x frame_skip, `mj_forward`; `mj_rnePostConstraint` is left out: it writes only cacc/cfrc, which
no later step reads), so states stay bit-identical to the env's. After every env step it copies
the positions Meta-World's reward and observation read (6 body `xpos`, 2 `site_xpos`, the object
geom's `xmat`); rewards are then evaluated for the whole batch with numpy
(`tdmpc2/envs/metaworld_rewards.py`) and the observation blocks with one batched
`Rotation.from_matrix`. A sensor/`mujoco.rollout` formulation is not used: Meta-World's post-step
`mj_forward` rewrites the solver warm start, and `mujoco.rollout` cannot interleave it, so its
states would differ in the last bits. Other tasks (or `vectorized=False`) keep the per-state
path through Meta-World's own code, which also remains behind `step`, `reward`, `observation`
and `step_with_reward`.

Costs: smooth residual costs per task family (reach, push, pick-place, generic), documented in
docs/metaworld-costs.md; the reward is Meta-World's own and is never used for gradients.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass

import mujoco
from mujoco import rollout as mj_rollout
import numpy as np

from tdmpc2.classical.costs import ResidualCost
from tdmpc2.classical.interface import EnvironmentInterface
from tdmpc2.envs import metaworld_rewards as mwr
from tdmpc2.envs.metaworld_costs import make_task_cost

INTEGRATION = mujoco.mjtState.mjSTATE_INTEGRATION
FULLPHYSICS = mujoco.mjtState.mjSTATE_FULLPHYSICS
CONTROL_SPEC = (mujoco.mjtState.mjSTATE_CTRL | mujoco.mjtState.mjSTATE_MOCAP_POS
                | mujoco.mjtState.mjSTATE_MOCAP_QUAT)
MOCAP_QUAT = np.array([1.0, 0.0, 1.0, 0.0])
PREV_SIZE = 18
OBS_SIZE = 39


# ---------------------------------------------------------------------------------------------
# State layout
# ---------------------------------------------------------------------------------------------

def _offset(model, bits_before: int) -> int:
    return mujoco.mj_stateSize(model, bits_before) if bits_before else 0


@dataclass(frozen=True)
class StateLayout:
    """Where each part of the state lives (indices into x)."""
    nq: int
    nv: int
    na: int
    n_integration: int
    qpos: slice
    qvel: slice
    act: slice
    mocap_pos: slice
    prev: slice
    episode: int

    @classmethod
    def of(cls, model) -> "StateLayout":
        S = mujoco.mjtState
        n_int = mujoco.mj_stateSize(model, INTEGRATION)
        start = {bit: _offset(model, int(bit) - 1) for bit in (S.mjSTATE_QPOS, S.mjSTATE_QVEL, S.mjSTATE_ACT,
                                                                S.mjSTATE_MOCAP_POS)}
        return cls(nq=model.nq, nv=model.nv, na=model.na, n_integration=n_int,
                   qpos=slice(start[S.mjSTATE_QPOS], start[S.mjSTATE_QPOS] + model.nq),
                   qvel=slice(start[S.mjSTATE_QVEL], start[S.mjSTATE_QVEL] + model.nv),
                   act=slice(start[S.mjSTATE_ACT], start[S.mjSTATE_ACT] + model.na),
                   mocap_pos=slice(start[S.mjSTATE_MOCAP_POS], start[S.mjSTATE_MOCAP_POS] + 3),
                   prev=slice(n_int, n_int + PREV_SIZE), episode=n_int + PREV_SIZE)

    @property
    def state_dim(self) -> int:
        return self.episode + 1

    @property
    def tangent_dim(self) -> int:
        return 2 * self.nv + self.na + 3


# ---------------------------------------------------------------------------------------------
# Per-episode copy of the Meta-World env
# ---------------------------------------------------------------------------------------------

def _episode_copy(mw):
    """A detached copy of Meta-World env `mw`: own model and data, copied per-episode arrays.

    Built without `copy.copy` (Meta-World's EzPickle would re-run the constructor). Methods run
    unchanged on it; anything it shares with the live env (spaces, RNG, renderer) is read only
    by the code the interface calls. Some attributes are *views* into the live MjData (e.g.
    `init_left_pad = get_body_com("leftpad")` keeps following the pad, and the rewards read it
    that way); those become the same views into the copy's own data.
    """
    shadow = object.__new__(type(mw))
    shadow.model = copy.deepcopy(mw.model)
    shadow.data = mujoco.MjData(shadow.model)
    pairs = [(getattr(mw.data, f), getattr(shadow.data, f)) for f in _array_fields(mw.data)]
    pairs += [(getattr(mw.model, f), getattr(shadow.model, f)) for f in _array_fields(mw.model)]
    for key, value in mw.__dict__.items():
        if key in ("model", "data"):
            continue
        if isinstance(value, np.ndarray):
            value = _same_view(value, pairs)
        shadow.__dict__[key] = value
    return shadow


def _array_fields(obj) -> list[str]:
    return [f for f in dir(obj) if not f.startswith("_") and isinstance(getattr(obj, f, None), np.ndarray)]


def _same_view(value: np.ndarray, pairs) -> np.ndarray:
    """`value` re-pointed into the copy when it views one of the live arrays, else a copy."""
    for live, copied in pairs:
        if live.size and np.shares_memory(value, live):
            offset = value.__array_interface__["data"][0] - live.__array_interface__["data"][0]
            return np.ndarray(value.shape, value.dtype, buffer=copied, offset=offset, strides=value.strides)
    return value.copy()


# ---------------------------------------------------------------------------------------------
# Batched path: per-episode data
# ---------------------------------------------------------------------------------------------

@dataclass
class _Batched:
    """What the batched path needs of one episode copy: the reward, object ids, goal and bounds."""
    reward: mwr.TaskReward
    body_ids: np.ndarray
    site_ids: np.ndarray
    geom_id: int
    goal: np.ndarray
    obs_low: np.ndarray
    obs_high: np.ndarray

    @classmethod
    def of(cls, mw) -> "_Batched | None":
        reward = mwr.task_reward(mw)
        if reward is None:
            return None
        def ids(kind, names):
            return np.array([mujoco.mj_name2id(mw.model, kind, n) for n in names])

        space = mw.sawyer_observation_space
        bodies, sites = ids(mujoco.mjtObj.mjOBJ_BODY, mwr.BODIES), ids(mujoco.mjtObj.mjOBJ_SITE, mwr.SITES)
        geoms = ids(mujoco.mjtObj.mjOBJ_GEOM, mwr.GEOMS)
        if min(bodies.min(), sites.min(), geoms.min()) < 0:  # a model without these names: per state
            return None
        return cls(reward=reward, body_ids=bodies, site_ids=sites, geom_id=int(geoms[0]),
                   goal=np.array(mw._get_pos_goal(), dtype=np.float64),
                   obs_low=np.asarray(space.low, dtype=np.float64), obs_high=np.asarray(space.high, dtype=np.float64))

    def blocks(self, bodies, xmat) -> np.ndarray:
        """Unclipped current-frame observation blocks `B + (18,)` from body positions
        `B + (len(BODIES), 3)` and object geom frames `B + (9,)` (Meta-World's
        `_get_curr_obs_combined_no_goal`: hand, claw distance, object position and quaternion)."""
        from scipy.spatial.transform import Rotation

        frames = mwr.Frames(bodies, np.empty(bodies.shape[:-2] + (0, 3)))
        lead = bodies.shape[:-2]
        out = np.zeros(lead + (PREV_SIZE,))
        out[..., 0:3] = frames.body("hand")
        out[..., 3] = frames.gripper_distance
        out[..., 4:7] = frames.obj
        if out[..., 7:11].size:
            out[..., 7:11] = Rotation.from_matrix(xmat.reshape(-1, 3, 3)).as_quat().reshape(lead + (4,))
        return out


# ---------------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------------

class MetaWorldInterface(EnvironmentInterface):
    """Exact simulator interface of a `MetaWorldEnv` (layout and contracts: module docstring)."""

    action_dim = 4
    central_differences = True

    def __init__(self, env, finite_diff_eps: float = 1e-6, max_episodes: int = 4, nthread: int = 2,
                 cost_family: str | None = None, vectorized: bool = True):
        self.env = env
        self.finite_diff_eps = float(finite_diff_eps)
        self.layout = StateLayout.of(env.model)
        self.state_dim = self.layout.state_dim
        self.action_repeat = int(env.action_repeat)
        self.frame_skip = int(env.mw.frame_skip)
        self.action_scale = float(env.mw.action_scale)
        self.mocap_low = np.asarray(env.mw.mocap_low, dtype=np.float64)
        self.mocap_high = np.asarray(env.mw.mocap_high, dtype=np.float64)
        self.max_episodes = int(max_episodes)
        self._contexts: OrderedDict = OrderedDict()
        self.vectorized = bool(vectorized)  # batched rollouts / rewards / observations where supported
        self._batched: dict = {}  # episode -> _Batched or None (per-state fallback)
        self._nthread = max(1, int(nthread))
        self._rollout = mj_rollout.Rollout(nthread=self._nthread) if self._nthread > 1 else None
        self._cost = make_task_cost(self, cost_family or env.task)

    @classmethod
    def from_config(cls, cfg, env) -> "MetaWorldInterface":
        """Reads `finite_diff_eps` and `mujoco_threads` (threads of the Jacobian rollouts; auto: 2)."""
        threads = getattr(cfg, "mujoco_threads", "auto")
        return cls(env, finite_diff_eps=float(cfg.finite_diff_eps), nthread=2 if threads == "auto" else int(threads))

    @property
    def tangent_dim(self) -> int:
        return self.layout.tangent_dim

    # ---- episode contexts
    def context(self, state):
        """The episode copy of the Meta-World env for `state` (ValueError if it was dropped)."""
        episode = int(state[self.layout.episode])
        if episode not in self._contexts:
            raise ValueError(f"No episode context for episode {episode}: take a state with get_state() "
                             f"during that episode (the last {self.max_episodes} are kept).")
        return self._contexts[episode]

    def _ensure_context(self):
        episode = self.env.episode_index
        if episode not in self._contexts:
            self._contexts[episode] = _episode_copy(self.env.mw)
            while len(self._contexts) > self.max_episodes:
                dropped, _ = self._contexts.popitem(last=False)
                self._batched.pop(dropped, None)
        return self._contexts[episode]

    def batched(self, state) -> _Batched | None:
        """Batched-path data of the episode of `state`, or None where the per-state path is used."""
        if not self.vectorized:
            return None
        episode = int(state[self.layout.episode])
        if episode not in self._batched:
            self._batched[episode] = _Batched.of(self.context(state))
        return self._batched[episode]

    def _episode_groups(self, states):
        """(index, first state) per episode present in `states` (an index of all rows when one)."""
        episodes = states[:, self.layout.episode]
        if len(episodes) == 0 or np.all(episodes == episodes[0]):
            return [(slice(None), states[0])] if len(episodes) else []
        return [(np.flatnonzero(episodes == e), states[np.flatnonzero(episodes == e)[0]])
                for e in np.unique(episodes)]

    # ---- snapshot
    def get_state(self) -> np.ndarray:
        self._ensure_context()
        x = np.empty(self.state_dim)
        mujoco.mj_getState(self.env.model, self.env.data, x[:self.layout.n_integration], INTEGRATION)
        x[self.layout.prev] = self.env.last_inner_obs[18:36]
        x[self.layout.episode] = self.env.episode_index
        return x

    # ---- exact simulation on the episode copy
    def _load(self, mw, state):
        mujoco.mj_setState(mw.model, mw.data, np.asarray(state[:self.layout.n_integration], dtype=np.float64),
                           INTEGRATION)

    def _env_step(self, mw, action):
        """One env step of the loaded data: Meta-World's action-to-mocap map, then frame skip."""
        d = mw.data
        d.mocap_pos[0] = np.clip(d.mocap_pos[0] + action[:3] * self.action_scale, self.mocap_low, self.mocap_high)
        d.mocap_quat[0] = MOCAP_QUAT
        d.ctrl[0], d.ctrl[1] = action[3], -action[3]
        mujoco.mj_step(mw.model, d, nstep=self.frame_skip)

    def _post_step(self, mw):
        """What Meta-World runs after every env step. Not only derived quantities: in MuJoCo 3.3
        `mj_forward` also rewrites the solver warm start, which the next physics step reads."""
        mujoco.mj_rnePostConstraint(mw.model, mw.data)
        mujoco.mj_forward(mw.model, mw.data)

    def _observe(self, mw, prev):
        """Meta-World's clipped float64 observation of the loaded (forwarded) data."""
        obs = np.hstack((mw._get_curr_obs_combined_no_goal(), prev, mw._get_pos_goal()))
        space = mw.sawyer_observation_space
        return np.clip(obs, a_max=space.high, a_min=space.low, dtype=np.float64)

    def _advance(self, state, action, with_reward: bool):
        """Next state (and the summed reward, success flag when asked) of one agent step."""
        state = np.asarray(state, dtype=np.float64)
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        mw = self.context(state)
        self._load(mw, state)
        # the env's _prev_obs entering the step: the unclipped current block of `state`
        # (mj_forward rewrites the warm start, so the state is loaded again afterwards)
        current = None
        if with_reward or self.action_repeat == 1:
            mujoco.mj_forward(mw.model, mw.data)
            current = mw._get_curr_obs_combined_no_goal()
            self._load(mw, state)
        prev_emitted = self._clip_block(mw, current) if self.action_repeat == 1 else None
        reward, success = 0.0, 0.0
        for k in range(self.action_repeat):
            self._env_step(mw, action)
            self._post_step(mw)  # Meta-World forwards after every env step; it moves the warm start
            if with_reward:
                r, info = mw.evaluate_state(self._observe(mw, current), action)
                reward += float(r)
                success = float(info.get("success", 0.0))
            if with_reward or k == self.action_repeat - 2:
                current = mw._get_curr_obs_combined_no_goal()
            if k == self.action_repeat - 2:
                prev_emitted = self._clip_block(mw, current)
        out = np.empty(self.state_dim)
        mujoco.mj_getState(mw.model, mw.data, out[:self.layout.n_integration], INTEGRATION)
        out[self.layout.prev] = prev_emitted
        out[self.layout.episode] = state[self.layout.episode]
        return out, reward, success

    @staticmethod
    def _clip_block(mw, block):
        """A current-frame block as it appears (clipped) in the previous-frame slot of an obs."""
        space = mw.sawyer_observation_space
        return np.clip(block, a_max=space.high[18:36], a_min=space.low[18:36], dtype=np.float64)

    def step(self, state, action) -> np.ndarray:
        return self._advance(state, action, with_reward=False)[0]

    def reward(self, state, action) -> float:
        return self._advance(state, action, with_reward=True)[1]

    def step_with_reward(self, state, action):
        """(next state, reward, success flag at the last env step) of one agent step."""
        return self._advance(state, action, with_reward=True)

    def rollout(self, states, actions):
        """States `(N, T+1, state_dim)` and rewards `(N, T)` (each the sum over the action repeat,
        float64; the env returns it as float32) of open-loop action sequences `(N, T, 4)`."""
        return self._simulate(states, actions, with_reward=True)

    def simulate(self, states, actions):
        return self._simulate(states, actions, with_reward=False)[0]

    def step_batch(self, states, actions):
        actions = np.asarray(actions, dtype=np.float64)
        return self._simulate(states, actions[:, None], with_reward=False)[0][:, 1]

    def _simulate(self, states, actions, with_reward: bool):
        states, actions = np.asarray(states, dtype=np.float64), np.asarray(actions, dtype=np.float64)
        N, T = actions.shape[:2]
        X = np.empty((N, T + 1, self.state_dim))
        R = np.zeros((N, T))
        X[:, 0] = states
        for idx, first in self._episode_groups(states):
            batched = self.batched(first)
            if batched is not None:
                X[idx], R[idx] = self._rollout_batched(batched, self.context(first), states[idx], actions[idx],
                                                       with_reward)
            else:
                X[idx], R[idx] = self._rollout_per_state(states[idx], actions[idx], with_reward)
        return X, R

    def _rollout_per_state(self, states, actions, with_reward: bool = True):
        """The reference path: every agent step through `_advance` (Meta-World's own reward code)."""
        N, T = actions.shape[:2]
        X = np.empty((N, T + 1, self.state_dim))
        R = np.zeros((N, T))
        X[:, 0] = states
        for i in range(N):
            for t in range(T):
                X[i, t + 1], R[i, t], _ = self._advance(X[i, t], actions[i, t], with_reward=with_reward)
        return X, R

    def _rollout_batched(self, b: _Batched, mw, states, actions, with_reward: bool):
        """Batched path (module docstring) for states of one episode."""
        L, model, d = self.layout, mw.model, mw.data
        S, rep, N, T = L.n_integration, self.action_repeat, len(states), actions.shape[1]
        a = np.clip(actions, -1.0, 1.0)
        # mocap targets of every env step, as Meta-World computes them (clip(mocap + 0.01 a))
        mocap = np.empty((N, T, rep, 3))
        m = states[:, L.mocap_pos].copy()
        for t in range(T):
            for k in range(rep):
                m = np.clip(m + a[:, t, :3] * self.action_scale, self.mocap_low, self.mocap_high)
                mocap[:, t, k] = m
        grip = np.ascontiguousarray(a[..., 3])
        X = np.empty((N, T + 1, self.state_dim))
        X[:, 0] = states
        nb, ns = len(b.body_ids), len(b.site_ids)
        bodies, sites, xmat = np.empty((N, T, rep, nb, 3)), np.empty((N, T, rep, ns, 3)), np.empty((N, T, rep, 9))
        first_bodies, first_xmat = np.empty((N, nb, 3)), np.empty((N, 9))  # the input states (repeat 1 only)
        xpos, site_xpos, geom_xmat = d.xpos, d.site_xpos, d.geom_xmat
        mocap_pos, mocap_quat, ctrl = d.mocap_pos, d.mocap_quat, d.ctrl
        bids, sids, gid, F = b.body_ids, b.site_ids, b.geom_id, self.frame_skip
        for i in range(N):
            mujoco.mj_setState(model, d, X[i, 0, :S], INTEGRATION)
            if rep == 1:
                mujoco.mj_kinematics(model, d)
                first_bodies[i], first_xmat[i] = xpos[bids], geom_xmat[gid]
            for t in range(T):
                g = grip[i, t]
                for k in range(rep):
                    mocap_pos[0] = mocap[i, t, k]
                    mocap_quat[0] = MOCAP_QUAT
                    ctrl[0], ctrl[1] = g, -g
                    mujoco.mj_step(model, d, nstep=F)
                    mujoco.mj_forward(model, d)  # as Meta-World does after every env step
                    bodies[i, t, k], sites[i, t, k], xmat[i, t, k] = xpos[bids], site_xpos[sids], geom_xmat[gid]
                mujoco.mj_getState(model, d, X[i, t + 1, :S], INTEGRATION)
        # previous-frame block of each new state: the env step before the agent step's last one
        if rep >= 2:
            prev_bodies, prev_xmat = bodies[:, :, rep - 2], xmat[:, :, rep - 2]
        else:
            prev_bodies = np.concatenate([first_bodies[:, None], bodies[:, :-1, 0]], axis=1)
            prev_xmat = np.concatenate([first_xmat[:, None], xmat[:, :-1, 0]], axis=1)
        X[:, 1:, L.prev] = np.clip(b.blocks(prev_bodies, prev_xmat), b.obs_low[18:36], b.obs_high[18:36])
        X[:, 1:, L.episode] = states[:, None, L.episode]
        R = np.zeros((N, T))
        if with_reward:
            r = b.reward(mwr.Frames(bodies, sites), np.broadcast_to(grip[:, :, None], (N, T, rep)))
            for k in range(rep):  # summed in the env's order
                R = R + r[:, :, k]
        return X, R

    def observation(self, state) -> np.ndarray:
        state = np.asarray(state, dtype=np.float64)
        mw = self.context(state)
        self._load(mw, state)
        mujoco.mj_forward(mw.model, mw.data)
        return self._observe(mw, state[self.layout.prev]).astype(np.float32)

    def observations(self, states) -> np.ndarray:
        """Observations `(N, 39)` float32 of states `(N, state_dim)` (batched where supported)."""
        states = np.asarray(states, dtype=np.float64)
        out = np.empty((len(states), OBS_SIZE), dtype=np.float32)
        for idx, first in self._episode_groups(states):
            b = self.batched(first)
            if b is None:
                out[idx] = np.stack([self.observation(x) for x in states[idx]])
                continue
            bodies, _, xmat = self._kinematics(self.context(first), b, states[idx])
            obs = np.concatenate([b.blocks(bodies, xmat), states[idx][:, self.layout.prev],
                                  np.broadcast_to(b.goal, (len(bodies), 3))], axis=1)
            out[idx] = np.clip(obs, b.obs_low, b.obs_high).astype(np.float32)
        return out

    def _kinematics(self, mw, b: _Batched, states):
        """Body positions, site positions and object geom frames of states (one episode) after
        `mj_kinematics` of their qpos (the same positions `mj_forward` computes)."""
        L, model, d = self.layout, mw.model, mw.data
        N = len(states)
        bodies, sites, xmat = np.empty((N, len(b.body_ids), 3)), np.empty((N, len(b.site_ids), 3)), np.empty((N, 9))
        qpos, xpos, site_xpos, geom_xmat = d.qpos, d.xpos, d.site_xpos, d.geom_xmat
        for i in range(N):
            qpos[:] = states[i, L.qpos]
            mujoco.mj_kinematics(model, d)
            bodies[i], sites[i], xmat[i] = xpos[b.body_ids], site_xpos[b.site_ids], geom_xmat[b.geom_id]
        return bodies, sites, xmat

    # ---- geometry
    def state_difference(self, x1, x0):
        x1, x0 = np.asarray(x1, dtype=np.float64), np.asarray(x0, dtype=np.float64)
        x1, x0 = np.broadcast_arrays(x1, x0)
        L, model = self.layout, self.env.model
        lead = x1.shape[:-1]
        a, b = x1.reshape(-1, self.state_dim), x0.reshape(-1, self.state_dim)
        dq = np.empty((len(a), L.nv))
        for i in range(len(a)):
            mujoco.mj_differentiatePos(model, dq[i], 1.0, b[i, L.qpos], a[i, L.qpos])
        dx = np.concatenate([dq, a[:, L.qvel] - b[:, L.qvel], a[:, L.act] - b[:, L.act],
                             a[:, L.mocap_pos] - b[:, L.mocap_pos]], axis=1)
        return dx.reshape(lead + (self.tangent_dim,))

    def state_add(self, x, dx):
        x, dx = np.asarray(x, dtype=np.float64), np.asarray(dx, dtype=np.float64)
        lead = np.broadcast_shapes(x.shape[:-1], dx.shape[:-1])
        a = np.broadcast_to(x, lead + (self.state_dim,)).reshape(-1, self.state_dim).copy()
        d = np.broadcast_to(dx, lead + (self.tangent_dim,)).reshape(-1, self.tangent_dim)
        L, model, nv = self.layout, self.env.model, self.layout.nv
        for i in range(len(a)):
            qpos = a[i, L.qpos].copy()
            mujoco.mj_integratePos(model, qpos, d[i, :nv], 1.0)
            a[i, L.qpos] = qpos
        a[:, L.qvel] += d[:, nv:2 * nv]
        a[:, L.act] += d[:, 2 * nv:2 * nv + L.na]
        a[:, L.mocap_pos] += d[:, 2 * nv + L.na:]
        return a.reshape(lead + (self.state_dim,))

    # ---- Jacobians: central differences through batched rollouts
    def _physics_inputs(self, states, actions):
        """Rollout inputs of agent steps: initial FULLPHYSICS states `(N, nfull)`, warm starts
        `(N, nv)` and per-physics-step controls `(N, repeat * frame_skip, nu + 7)`."""
        L, model = self.layout, self.env.model
        N = len(states)
        d = mujoco.MjData(model)
        full = np.empty((N, mujoco.mj_stateSize(model, FULLPHYSICS)))
        warm = np.empty((N, L.nv))
        for i in range(N):
            mujoco.mj_setState(model, d, states[i, :L.n_integration], INTEGRATION)
            mujoco.mj_getState(model, d, full[i], FULLPHYSICS)
            warm[i] = d.qacc_warmstart
        a = np.clip(actions, -1.0, 1.0)
        mocap = states[:, L.mocap_pos].copy()
        rows = []
        for _ in range(self.action_repeat):
            mocap = np.clip(mocap + a[:, :3] * self.action_scale, self.mocap_low, self.mocap_high)
            row = np.concatenate([a[:, 3:4], -a[:, 3:4], mocap, np.broadcast_to(MOCAP_QUAT, (N, 4))], axis=1)
            rows.append(np.repeat(row[:, None], self.frame_skip, axis=1))
        return full, warm, np.concatenate(rows, axis=1), mocap

    def _physics_next(self, mw, states, actions):
        """Next (qpos, qvel, act, mocap_pos) of a batch of agent steps, as a reduced state array
        laid out like x (other entries copied from the input)."""
        L = self.layout
        full, warm, control, mocap = self._physics_inputs(states, actions)
        datas = [mujoco.MjData(mw.model) for _ in range(self._nthread)]
        if self._rollout is not None:
            out, _ = self._rollout.rollout(mw.model, datas, full, control, control_spec=int(CONTROL_SPEC),
                                           initial_warmstart=warm)
        else:
            out, _ = mj_rollout.rollout(mw.model, datas[0], full, control, control_spec=int(CONTROL_SPEC),
                                            initial_warmstart=warm)
        last = out[:, -1]  # FULLPHYSICS: time, qpos, qvel, act, plugin
        nxt = np.array(states, dtype=np.float64, copy=True)
        nxt[:, L.qpos] = last[:, 1:1 + L.nq]
        nxt[:, L.qvel] = last[:, 1 + L.nq:1 + L.nq + L.nv]
        nxt[:, L.act] = last[:, 1 + L.nq + L.nv:1 + L.nq + L.nv + L.na]
        nxt[:, L.mocap_pos] = mocap
        return nxt

    def linearize_batch(self, states, actions):
        """A `(N, n, n)`, B `(N, n, m)` of `step` at each (x_t, u_t) by finite differences:
        central (default) or forward (`central_differences = False`, half the rollouts).

        Action nudges are clipped to [-1, 1], so at a bound the difference is one-sided (and
        divided by the step actually taken)."""
        states, actions = np.asarray(states, dtype=np.float64), np.asarray(actions, dtype=np.float64)
        N, n, eps = len(states), self.tangent_dim, self.finite_diff_eps
        k = n + self.action_dim
        lower = -np.eye(k) if self.central_differences else np.zeros((1, k))
        signs = np.concatenate([np.eye(k), lower])  # + nudges, then - nudges (or the nominal)
        P = len(signs)
        xs = self.state_add(np.repeat(states[:, None], P, axis=1), eps * signs[None, :, :n])
        nudges = np.broadcast_to(eps * signs[None, :, n:], (N, P, self.action_dim))
        if not self.central_differences:  # nudge an action at its upper bound downwards
            nudges = np.where(actions[:, None] + nudges > 1.0, -nudges, nudges)
        us = np.clip(actions[:, None] + nudges, -1.0, 1.0)  # (N, P, m)
        nxt = self._physics_next(self.context(states[0]), xs.reshape(N * P, -1),
                                 us.reshape(N * P, -1)).reshape(N, P, -1)
        upper_x, lower_x = nxt[:, :k], (nxt[:, k:] if self.central_differences else nxt[:, k:k + 1])
        upper_u, lower_u = us[:, :k], (us[:, k:] if self.central_differences else us[:, k:k + 1])
        steps = np.full((N, k), (2.0 if self.central_differences else 1.0) * eps)
        steps[:, n:] = np.diagonal((upper_u - lower_u)[:, n:], axis1=1, axis2=2)
        diff = self.state_difference(upper_x, lower_x)  # (N, k, n)
        jac = np.swapaxes(diff, 1, 2) / steps[:, None, :]
        return jac[:, :, :n], jac[:, :, n:]

    # ---- costs (docs/metaworld-costs.md)
    def residual_cost(self) -> ResidualCost:
        return self._cost

    def cost(self, state, action) -> float:
        return float(self.costs(np.asarray(state, dtype=np.float64)[None], np.asarray(action, dtype=np.float64)[None])[0])

    def terminal_cost(self, state) -> float:
        return float(self.terminal_costs(np.asarray(state, dtype=np.float64)[None])[0])

    # ---- kinematic features for the costs
    def features(self, states) -> dict:
        """Positions the costs use, per state: tcp `(N, 3)`, obj `(N, 3)`, goal `(N, 3)`."""
        states = np.asarray(states, dtype=np.float64)
        L = self.layout
        out = {name: np.empty((len(states), 3)) for name in ("tcp", "obj", "goal")}
        groups = self._episode_groups(states)
        if groups and all(self.batched(first) is not None for _, first in groups):
            for idx, first in groups:
                b = self.batched(first)
                bodies, sites, _ = self._kinematics(self.context(first), b, states[idx])
                frames = mwr.Frames(bodies, sites)
                out["tcp"][idx], out["obj"][idx], out["goal"][idx] = frames.tcp, frames.obj, b.goal
            return out
        for i, x in enumerate(states):
            mw = self.context(x)
            mw.data.qpos[:] = x[L.qpos]
            mujoco.mj_kinematics(mw.model, mw.data)
            out["tcp"][i] = mw.tcp_center
            out["obj"][i] = mw._get_pos_objects()[:3]
            out["goal"][i] = mw._get_pos_goal()
        return out


__all__ = ["MetaWorldInterface", "StateLayout"]
