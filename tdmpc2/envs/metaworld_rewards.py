"""Vectorised Meta-World v3 rewards: reach, push and pick-place on batches of simulated states.

Meta-World evaluates its reward once per env step, in Python, on one simulator (`evaluate_state`,
~1.5-4 ms per agent step with the observation it needs). The hybrid planner scores thousands of
simulated env steps per plan, so this module re-implements the `reward_function_version="v2"`
formulas of three tasks with numpy over a batch. The formulas are Meta-World 3.1.1's (its
`tolerance` with the long-tail sigmoid, the Hamacher product, the caging rewards); the code is
this project's.

Inputs are positions read from `MjData` after the post-step `mj_forward` (exactly what Meta-World
reads there: `data.body(name).xpos`, `data.site(name).xpos`), gathered per env step by
`MetaWorldInterface` into a `Frames` record, plus per-episode constants read once from the
episode copy of the env (target, initial object/hand/tcp positions). Every norm is the same BLAS
dot product `np.linalg.norm` uses (`np.vecdot`), so on this stack the rewards agree with
Meta-World's bit for bit (the tests ask for rtol 1e-9).

`task_reward(mw)` returns the reward of a Meta-World env object when its class and methods are
exactly the stock reach / push / pick-place ones with reward version v2, else None (the
interface then keeps Meta-World's own per-state code).

Per-episode subtleties reproduced here:

* pick-place's `init_left_pad` / `init_right_pad` are *views* of `data.xpos` (gymnasium's
  `get_body_com` returns one), so its caging margins use the *current* pad positions; this is
  detected per episode (`np.shares_memory`) rather than assumed.
* `tcp_opened` is the observation's entry 3: the claw distance / 0.1 clipped to [0, 1] (and to
  the observation box, a no-op); the object position is observation entries 4:7 (unclipped box).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VALUE_AT_MARGIN = 0.1  # Meta-World's (dm_control's) default value of `tolerance` at the margin

# What the rewards and the observation's current block read, by MuJoCo object kind and name.
BODIES = ("hand", "rightclaw", "leftclaw", "obj", "leftpad", "rightpad")
SITES = ("rightEndEffector", "leftEndEffector")
GEOMS = ("objGeom",)


# ---------------------------------------------------------------------------------------------
# Meta-World's reward helpers, for arrays
# ---------------------------------------------------------------------------------------------

def norm(v) -> np.ndarray:
    """Euclidean norm over the last axis, as `np.linalg.norm` of each vector (same dot product)."""
    v = np.asarray(v, dtype=np.float64)
    return np.sqrt(np.vecdot(v, v))


def long_tail_tolerance(x, lower: float, upper: float, margin, value_at_margin: float = VALUE_AT_MARGIN):
    """1 inside [lower, upper]; outside, the long-tail sigmoid of the distance to the interval
    divided by `margin` (0 where `margin` is 0). `margin` may be an array (one per entry)."""
    x = np.asarray(x, dtype=np.float64)
    margin = np.asarray(margin, dtype=np.float64)
    in_bounds = (lower <= x) & (x <= upper)
    scale = np.sqrt(1 / value_at_margin - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(x < lower, lower - x, x - upper) / margin
        # Meta-World squares numpy *scalars*, i.e. calls C `pow(y, 2)`, which can differ from
        # y * y (what `array ** 2` computes) in the last bit; `float_power` calls `pow` per entry
        outside = 1 / (np.float_power(d * scale, 2.0) + 1)
    return np.where(in_bounds, 1.0, np.where(margin == 0, 0.0, outside))


def hamacher(a, b) -> np.ndarray:
    """Hamacher t-norm a b / (a + b - a b), 0 where the denominator is 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    den = a + b - a * b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (a * b) / np.where(den > 0, den, 1.0), 0.0)


def gripper_closed(grip, effort: float = 1.0) -> np.ndarray:
    """min(max(0, u_grip), effort) / effort."""
    return np.minimum(np.maximum(0.0, np.asarray(grip, dtype=np.float64)), effort) / effort


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

@dataclass
class Frames:
    """Positions after one env step, batched over any leading shape `B`.

    bodies `B + (len(BODIES), 3)` (`xpos`), sites `B + (len(SITES), 3)` (`site_xpos`)."""
    bodies: np.ndarray
    sites: np.ndarray

    def body(self, name: str) -> np.ndarray:
        return self.bodies[..., BODIES.index(name), :]

    @property
    def tcp(self) -> np.ndarray:
        """Meta-World's `tcp_center`: (right end effector + left end effector) / 2."""
        return (self.sites[..., 0, :] + self.sites[..., 1, :]) / 2.0

    @property
    def gripper_distance(self) -> np.ndarray:
        """Observation entry 3: |rightclaw - leftclaw| / 0.1 clipped to [0, 1]."""
        return np.clip(norm(self.body("rightclaw") - self.body("leftclaw")) / 0.1, 0.0, 1.0)

    @property
    def obj(self) -> np.ndarray:
        """Observation entries 4:7 for these tasks (`get_body_com("obj")`)."""
        return self.body("obj")


# ---------------------------------------------------------------------------------------------
# Task rewards
# ---------------------------------------------------------------------------------------------

class TaskReward:
    """Reward of one env step from `Frames` (batch shape B) and the gripper action `B`."""

    def __call__(self, frames: Frames, grip) -> np.ndarray:
        raise NotImplementedError


class ReachReward(TaskReward):
    """reach-v3: 10 * tolerance(|tcp - target|, (0, 0.05), margin |hand_init - target|)."""
    TARGET_RADIUS = 0.05

    def __init__(self, mw):
        self.target = np.array(mw._target_pos, dtype=np.float64)
        self.margin = float(np.linalg.norm(mw.hand_init_pos - self.target))

    def __call__(self, frames, grip):
        tcp_to_target = norm(frames.tcp - self.target)
        return 10 * long_tail_tolerance(tcp_to_target, 0.0, self.TARGET_RADIUS, self.margin)


class PushReward(TaskReward):
    """push-v3: Meta-World's generic caging reward (high density), in-place shaping, 10 at the goal."""

    def __init__(self, mw):
        self.target = np.array(mw._target_pos, dtype=np.float64)
        self.radius = float(mw.TARGET_RADIUS)
        self.obj_init = np.array(mw.obj_init_pos, dtype=np.float64)
        init_tcp = np.array(mw.init_tcp, dtype=np.float64)
        self.in_place_margin = float(np.linalg.norm(self.obj_init - self.target))
        # caging parameters of push-v3's call
        self.obj_radius, self.pad_thresh, self.xz_thresh = 0.015, 0.05, 0.005
        xz = [0, 2]
        self.xz_margin = np.linalg.norm(self.obj_init[xz] - init_tcp[xz]) - self.xz_thresh

    def caging(self, frames, obj, grip):
        pad_y = np.stack([frames.body("leftpad")[..., 1], frames.body("rightpad")[..., 1]])  # (2,) + B
        pad_to_obj = np.abs(pad_y - obj[..., 1])
        pad_to_obj_init = np.abs(pad_y - self.obj_init[1])
        margins = np.abs(pad_to_obj_init - self.pad_thresh)
        left, right = (long_tail_tolerance(pad_to_obj[i], self.obj_radius, self.pad_thresh, margins[i])
                       for i in range(2))
        caging_y = hamacher(left, right)
        tcp = frames.tcp
        caging_xz = long_tail_tolerance(norm(tcp[..., [0, 2]] - obj[..., [0, 2]]), 0.0, self.xz_thresh,
                                        self.xz_margin)
        caging = hamacher(caging_y, caging_xz)
        gripping = np.where(caging > 0.97, gripper_closed(grip), 0.0)
        return (hamacher(caging, gripping) + caging) / 2

    def __call__(self, frames, grip):
        obj, tcp_opened = frames.obj, frames.gripper_distance
        tcp_to_obj = norm(obj - frames.tcp)
        target_to_obj = norm(obj - self.target)
        in_place = long_tail_tolerance(target_to_obj, 0.0, self.radius, self.in_place_margin)
        reward = 2 * self.caging(frames, obj, grip)
        near = (tcp_to_obj < 0.02) & (tcp_opened > 0)
        reward = np.where(near, reward + (1.0 + reward + 5.0 * in_place), reward)
        return np.where(target_to_obj < self.radius, 10.0, reward)


class PickPlaceReward(TaskReward):
    """pick-place-v3: its own caging reward, Hamacher product with in-place, lift bonus, 10 at goal."""
    TARGET_RADIUS = 0.05

    def __init__(self, mw):
        self.target = np.array(mw._target_pos, dtype=np.float64)
        self.obj_init = np.array(mw.obj_init_pos, dtype=np.float64)
        init_tcp = np.array(mw.init_tcp, dtype=np.float64)
        self.in_place_margin = np.linalg.norm(self.obj_init - self.target)
        self.pad_margin, self.xz_success, self.obj_radius = 0.05, 0.005, 0.015
        init_obj_xz = self.obj_init + np.array([0.0, -self.obj_init[1], 0.0])
        init_tcp_xz = init_tcp + np.array([0.0, -init_tcp[1], 0.0])
        self.xz_margin = np.linalg.norm(init_obj_xz - init_tcp_xz, ord=2) - self.xz_success
        # `init_left_pad` / `init_right_pad`: views of the pads (follow them) or fixed positions
        self.init_pads = {}
        for side in ("left", "right"):
            value = getattr(mw, f"init_{side}_pad")
            live = isinstance(value, np.ndarray) and np.shares_memory(value, mw.data.xpos)
            self.init_pads[side] = None if live else np.array(value, dtype=np.float64)

    def _init_pad_y(self, frames, side):
        fixed = self.init_pads[side]
        return frames.body(f"{side}pad")[..., 1] if fixed is None else fixed[1]

    def caging(self, frames, obj, grip):
        obj_y = obj[..., 1]
        left_margin = np.abs(np.abs(obj_y - self._init_pad_y(frames, "left")) - self.pad_margin)
        right_margin = np.abs(np.abs(obj_y - self._init_pad_y(frames, "right")) - self.pad_margin)
        right = long_tail_tolerance(obj_y - frames.body("rightpad")[..., 1], self.obj_radius, self.pad_margin,
                                    right_margin)
        left = long_tail_tolerance(frames.body("leftpad")[..., 1] - obj_y, self.obj_radius, self.pad_margin,
                                   left_margin)
        y_caging = hamacher(left, right)
        tcp = frames.tcp
        zero = np.zeros_like(obj_y)
        tcp_xz = tcp + np.stack([zero, -tcp[..., 1], zero], axis=-1)
        obj_xz = obj + np.stack([zero, -obj_y, zero], axis=-1)
        x_z_caging = long_tail_tolerance(norm(tcp_xz - obj_xz), 0.0, self.xz_success, self.xz_margin)
        caging = hamacher(y_caging, x_z_caging)
        gripping = np.where(caging > 0.97, np.minimum(np.maximum(0.0, grip), 1.0), 0.0)
        return (hamacher(caging, gripping) + caging) / 2

    def __call__(self, frames, grip):
        obj, tcp, tcp_opened = frames.obj, frames.tcp, frames.gripper_distance
        obj_to_target = norm(obj - self.target)
        tcp_to_obj = norm(obj - tcp)
        in_place = long_tail_tolerance(obj_to_target, 0.0, self.TARGET_RADIUS, self.in_place_margin)
        reward = hamacher(self.caging(frames, obj, np.asarray(grip, dtype=np.float64)), in_place)
        lifted = (tcp_to_obj < 0.02) & (tcp_opened > 0) & (obj[..., 2] - 0.01 > self.obj_init[2])
        reward = np.where(lifted, reward + (1.0 + 5.0 * in_place), reward)
        return np.where(obj_to_target < self.TARGET_RADIUS, 10.0, reward)


# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------

def _stock_classes():
    from metaworld.envs.sawyer_pick_place_v3 import SawyerPickPlaceEnvV3
    from metaworld.envs.sawyer_push_v3 import SawyerPushEnvV3
    from metaworld.envs.sawyer_reach_v3 import SawyerReachEnvV3

    return ((SawyerReachEnvV3, ReachReward), (SawyerPushEnvV3, PushReward), (SawyerPickPlaceEnvV3, PickPlaceReward))


# methods whose stock definitions the formulas above assume
_METHODS = ("evaluate_state", "compute_reward", "_gripper_caging_reward", "_get_pos_objects", "_get_quat_objects",
            "tcp_center", "get_endeff_pos", "_get_curr_obs_combined_no_goal", "get_body_com")


def task_reward(mw) -> TaskReward | None:
    """The vectorised reward of Meta-World env `mw` (an episode copy or the live env), or None when
    it is not a stock reach / push / pick-place v3 env with reward version v2."""
    for cls, reward in _stock_classes():
        if not isinstance(mw, cls):
            continue
        if getattr(mw, "reward_function_version", None) != "v2":
            return None
        if any(getattr(type(mw), name, None) is not getattr(cls, name, None) for name in _METHODS):
            return None
        if int(getattr(mw, "_obs_obj_max_len", 14)) != 14:
            return None
        return reward(mw)
    return None


__all__ = ["BODIES", "SITES", "GEOMS", "Frames", "TaskReward", "ReachReward", "PushReward", "PickPlaceReward",
           "task_reward", "norm", "long_tail_tolerance", "hamacher", "gripper_closed"]
