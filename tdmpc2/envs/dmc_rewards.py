"""Vectorised DMControl task rewards: the suite's `get_reward` formulas on batches of states.

dm_control evaluates a task's reward once per control step, in Python, on one physics. The
hybrid planner needs the rewards of thousands of simulated control steps per plan, so this
module re-implements the reward formulas of the stock tasks with numpy over a batch. Every
quantity a reward reads from `mjData` (body/geom/site positions and frames, subtree velocities)
is measured by a MuJoCo sensor: the interface adds the sensors a task asks for to its own copy
of the model (sensors are passive, the physics is unchanged), and takes their values from
the `sensordata` that `mujoco.rollout` records. Sensor values are copies of the `mjData`
fields (`framepos` of an `xbody` is `xpos`, of a `body` is `xipos`, `framezaxis` is the third
column of `xmat`, ...), so the inputs are bit-identical to what `get_reward` reads and the
formulas agree to rounding (reordered sums and norms; ~1e-16).

`task_reward(task, model)` returns a `TaskReward` for a task whose class is exactly one of the
stock classes below (subclasses, e.g. this project's custom tasks, override `get_reward` and are
not matched), or None. A `TaskReward` lists its `sensors` and maps a `Quantities` (sensor
values, qpos, qvel, ctrl, and the env's model for per-episode constants such as target sizes)
to rewards `(M,)`.

Covered: cheetah-run; walker-stand/walk/run; cartpole-balance/balance_sparse/swingup/
swingup_sparse (any number of poles); pendulum-swingup; hopper-stand/hop; reacher-easy/hard;
finger-spin/turn_easy/turn_hard; ball_in_cup-catch; fish-upright/swim; acrobot-swingup/
swingup_sparse.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import mujoco
import numpy as np

SENS = mujoco.mjtSensor
OBJ = mujoco.mjtObj


# ---- dm_control.utils.rewards.tolerance, for arrays
def _sigmoid(d, value_at_1: float, kind: str):
    """1 at d = 0, `value_at_1` at d = 1, decaying with |d| (dm_control's sigmoid family)."""
    if kind in ("cosine", "linear", "quadratic"):
        if not 0 <= value_at_1 < 1:
            raise ValueError(f"value_at_margin must be in [0, 1) for a {kind} sigmoid, got {value_at_1}.")
    elif not 0 < value_at_1 < 1:
        raise ValueError(f"value_at_margin must be in (0, 1) for a {kind} sigmoid, got {value_at_1}.")
    if kind == "gaussian":
        s = np.sqrt(-2 * np.log(value_at_1))
        return np.exp(-0.5 * (d * s) ** 2)
    if kind == "hyperbolic":
        return 1 / np.cosh(d * np.arccosh(1 / value_at_1))
    if kind == "long_tail":
        return 1 / ((d * np.sqrt(1 / value_at_1 - 1)) ** 2 + 1)
    if kind == "reciprocal":
        return 1 / (np.abs(d) * (1 / value_at_1 - 1) + 1)
    if kind == "cosine":
        z = d * (np.arccos(2 * value_at_1 - 1) / np.pi)
        with np.errstate(invalid="ignore"):
            c = np.cos(np.pi * z)
        return np.where(np.abs(z) < 1, (1 + c) / 2, 0.0)
    if kind == "linear":
        z = d * (1 - value_at_1)
        return np.where(np.abs(z) < 1, 1 - z, 0.0)
    if kind == "quadratic":
        z = d * np.sqrt(1 - value_at_1)
        return np.where(np.abs(z) < 1, 1 - z ** 2, 0.0)
    if kind == "tanh_squared":
        return 1 - np.tanh(d * np.arctanh(np.sqrt(1 - value_at_1))) ** 2
    raise ValueError(f"unknown sigmoid {kind!r}.")


def tolerance(x, bounds=(0.0, 0.0), margin: float = 0.0, sigmoid: str = "gaussian",
              value_at_margin: float = 0.1) -> np.ndarray:
    """1 inside the closed interval `bounds`, decaying with the distance to it over `margin`
    (0 outside when `margin` is 0). Same formula and defaults as dm_control's; always an array."""
    lower, upper = bounds
    if lower > upper:
        raise ValueError("tolerance: lower bound above upper bound.")
    if margin < 0:
        raise ValueError("tolerance: margin must be non-negative.")
    x = np.asarray(x, dtype=np.float64)
    inside = (lower <= x) & (x <= upper)
    if margin == 0:
        return np.where(inside, 1.0, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):  # inf bounds: the unused branch is inf/nan
        d = np.where(x < lower, lower - x, x - upper) / margin
        return np.where(inside, 1.0, _sigmoid(d, value_at_margin, sigmoid))


# ---- what a reward reads
@dataclass(frozen=True)
class Sensor:
    """A sensor a reward reads: `kind=None` names a sensor the model already has (`name`);
    otherwise the interface adds an unnamed sensor of type `kind` on object (`objtype`, `name`)."""
    key: str
    kind: mujoco.mjtSensor | None
    objtype: mujoco.mjtObj | None
    name: str


def xpos(key, body):        # data.xpos[body]
    return Sensor(key, SENS.mjSENS_FRAMEPOS, OBJ.mjOBJ_XBODY, body)


def xipos(key, body):       # data.xipos[body] (centre of mass)
    return Sensor(key, SENS.mjSENS_FRAMEPOS, OBJ.mjOBJ_BODY, body)


def xzaxis(key, body):      # data.xmat[body][[2, 5, 8]] (xz, yz, zz)
    return Sensor(key, SENS.mjSENS_FRAMEZAXIS, OBJ.mjOBJ_XBODY, body)


def geom_pos(key, geom):    # data.geom_xpos[geom]
    return Sensor(key, SENS.mjSENS_FRAMEPOS, OBJ.mjOBJ_GEOM, geom)


def geom_axis(key, geom, axis):  # column `axis` of data.geom_xmat[geom]
    kind = (SENS.mjSENS_FRAMEXAXIS, SENS.mjSENS_FRAMEYAXIS, SENS.mjSENS_FRAMEZAXIS)[axis]
    return Sensor(key, kind, OBJ.mjOBJ_GEOM, geom)


def site_pos(key, site):    # data.site_xpos[site]
    return Sensor(key, SENS.mjSENS_FRAMEPOS, OBJ.mjOBJ_SITE, site)


def existing(key, name):    # data.sensordata[name] of a sensor in the task's XML
    return Sensor(key, None, None, name)


@dataclass
class Quantities:
    """Inputs of a batched reward: sensor values by key `(M, dim)`, qpos `(M, nq)`, qvel
    `(M, nv)`, ctrl `(M, nu)` (the control held during the step that led to the state) and the
    env's model (constants a task sets per episode, e.g. target sizes)."""
    sensors: dict
    qpos: np.ndarray
    qvel: np.ndarray
    ctrl: np.ndarray
    model: mujoco.MjModel

    def __getitem__(self, key):
        return self.sensors[key]


@dataclass
class TaskReward:
    sensors: list
    evaluate: Callable[[Quantities], np.ndarray]
    name: str = ""

    def __call__(self, q: Quantities) -> np.ndarray:
        return np.asarray(self.evaluate(q), dtype=np.float64)


def _norm(v):
    """Euclidean norm over the last axis, as sqrt of the sum of squares (np.linalg.norm of a vector)."""
    return np.sqrt(np.sum(v * v, axis=-1))


# ---- the tasks (formulas of dm_control 1.0.28's suite, constants read from its modules)
def _cheetah(task, model):
    from dm_control.suite import cheetah as mod
    return TaskReward([existing("v", "torso_subtreelinvel")], lambda q: tolerance(
        q["v"][:, 0], bounds=(mod._RUN_SPEED, math.inf), margin=mod._RUN_SPEED, value_at_margin=0,
        sigmoid="linear"), "cheetah")


def _walker(task, model):
    from dm_control.suite import walker as mod
    speed = task._move_speed

    def reward(q):
        standing = tolerance(q["pos"][:, 2], bounds=(mod._STAND_HEIGHT, math.inf), margin=mod._STAND_HEIGHT / 2)
        upright = (1 + q["z"][:, 2]) / 2
        stand = (3 * standing + upright) / 4
        if speed == 0:
            return stand
        move = tolerance(q["v"][:, 0], bounds=(speed, math.inf), margin=speed / 2, value_at_margin=0.5,
                         sigmoid="linear")
        return stand * (5 * move + 1) / 6
    return TaskReward([xpos("pos", "torso"), xzaxis("z", "torso"), existing("v", "torso_subtreelinvel")],
                      reward, "walker")


def _cartpole(task, model):
    poles = [model.body(i).name for i in range(2, model.nbody)]  # named.data.xmat[2:]
    cart = model.joint("slider").qposadr[0]
    sensors = [xzaxis(f"pole{i}", p) for i, p in enumerate(poles)]

    def reward(q):
        cos = np.stack([q[f"pole{i}"][:, 2] for i in range(len(poles))], axis=1)
        x = q.qpos[:, cart]
        if task._sparse:
            return tolerance(x, task._CART_RANGE) * np.prod(tolerance(cos, task._ANGLE_COSINE_RANGE), axis=1)
        upright = (cos + 1) / 2
        centered = (1 + tolerance(x, margin=2)) / 2
        small_control = (4 + tolerance(q.ctrl, margin=1, value_at_margin=0, sigmoid="quadratic")[:, 0]) / 5
        small_velocity = (1 + np.min(tolerance(q.qvel[:, 1:], margin=5), axis=1)) / 2
        return np.mean(upright, axis=1) * small_control * small_velocity * centered
    return TaskReward(sensors, reward, "cartpole")


def _pendulum(task, model):
    from dm_control.suite import pendulum as mod
    return TaskReward([xzaxis("z", "pole")], lambda q: tolerance(q["z"][:, 2], (mod._COSINE_BOUND, 1)), "pendulum")


def _hopper(task, model):
    from dm_control.suite import hopper as mod

    def reward(q):
        standing = tolerance(q["torso"][:, 2] - q["foot"][:, 2], (mod._STAND_HEIGHT, 2))
        if task._hopping:
            return standing * tolerance(q["v"][:, 0], bounds=(mod._HOP_SPEED, math.inf), margin=mod._HOP_SPEED / 2,
                                        value_at_margin=0.5, sigmoid="linear")
        small_control = np.mean(tolerance(q.ctrl, margin=1, value_at_margin=0, sigmoid="quadratic"), axis=1)
        return standing * ((small_control + 4) / 5)
    return TaskReward([xipos("torso", "torso"), xipos("foot", "foot"), existing("v", "torso_subtreelinvel")],
                      reward, "hopper")


def _reacher(task, model):
    def reward(q):
        radii = q.model.geom("target").size[0] + q.model.geom("finger").size[0]
        return tolerance(_norm(q["target"][:, :2] - q["finger"][:, :2]), (0, radii))
    return TaskReward([geom_pos("target", "target"), geom_pos("finger", "finger")], reward, "reacher")


def _finger_spin(task, model):
    from dm_control.suite import finger as mod
    return TaskReward([existing("w", "hinge_velocity")],
                      lambda q: (q["w"][:, 0] <= -mod._SPIN_VELOCITY).astype(np.float64), "finger-spin")


def _finger_turn(task, model):
    def reward(q):
        spinner = q["spinner"][:, [0, 2]]
        to_target = (q["target"][:, [0, 2]] - spinner) - (q["tip"][:, [0, 2]] - spinner)
        dist = _norm(to_target) - q.model.site("target").size[0]
        return (dist <= 0).astype(np.float64)
    return TaskReward([existing("tip", "tip"), existing("target", "target"), existing("spinner", "spinner")],
                      reward, "finger-turn")


def _ball_in_cup(task, model):
    def reward(q):
        offset = np.abs(q["target"][:, [0, 2]] - q["ball"][:, [0, 2]])
        limit = q.model.site("target").size[[0, 2]] - q.model.geom("ball").size[0]
        return np.all(offset < limit, axis=1).astype(np.float64)
    return TaskReward([site_pos("target", "target"), xpos("ball", "ball")], reward, "ball_in_cup")


def _fish_upright(task, model):
    return TaskReward([xzaxis("z", "torso")], lambda q: tolerance(q["z"][:, 2], bounds=(1, 1), margin=1),
                      "fish-upright")


def _fish_swim(task, model):
    def reward(q):
        v = q["target"] - q["mouth"]  # world frame; projected on the mouth's axes (v . geom_xmat)
        local = np.stack([np.sum(v * q[f"axis{k}"], axis=1) for k in range(3)], axis=1)
        radii = q.model.geom("mouth").size[0] + q.model.geom("target").size[0]
        in_target = tolerance(_norm(local), bounds=(0, radii), margin=2 * radii)
        return (7 * in_target + 0.5 * (q["z"][:, 2] + 1)) / 8
    return TaskReward([geom_pos("target", "target"), geom_pos("mouth", "mouth"), xzaxis("z", "torso")]
                      + [geom_axis(f"axis{k}", "mouth", k) for k in range(3)], reward, "fish-swim")


def _acrobot(task, model):
    def reward(q):
        radius = q.model.site("target").size[0]
        return tolerance(_norm(q["target"] - q["tip"]), bounds=(0, radius), margin=0 if task._sparse else 1)
    return TaskReward([site_pos("target", "target"), site_pos("tip", "tip")], reward, "acrobot")


_BUILDERS = {  # (suite module, class name) -> builder(task, model)
    ("cheetah", "Cheetah"): _cheetah,
    ("walker", "PlanarWalker"): _walker,
    ("cartpole", "Balance"): _cartpole,
    ("pendulum", "SwingUp"): _pendulum,
    ("hopper", "Hopper"): _hopper,
    ("reacher", "Reacher"): _reacher,
    ("finger", "Spin"): _finger_spin,
    ("finger", "Turn"): _finger_turn,
    ("ball_in_cup", "BallInCup"): _ball_in_cup,
    ("fish", "Upright"): _fish_upright,
    ("fish", "Swim"): _fish_swim,
    ("acrobot", "Balance"): _acrobot,
}


def suite_module(task):
    """The dm_control suite module defining the task's class (its XML comes from there), or None."""
    import importlib

    module = type(task).__module__
    prefix = "dm_control.suite."
    if not module.startswith(prefix):
        return None
    return importlib.import_module(module)


def task_reward(task, model) -> TaskReward | None:
    """The vectorised reward of a stock dm_control task (exact class match), else None."""
    module = suite_module(task)
    if module is None:
        return None
    key = (module.__name__.rsplit(".", 1)[-1], type(task).__name__)
    builder = _BUILDERS.get(key)
    if builder is None or type(task) is not getattr(module, key[1], None):
        return None
    return builder(task, model)


def supported_reward_classes() -> list[str]:
    return [f"{m}.{c}" for m, c in _BUILDERS]
