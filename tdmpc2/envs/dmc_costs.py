"""Smooth residual planning costs for DMControl tasks (documented in docs/classical-costs.md).

Many DMControl rewards are indicators or flat far from the goal, so iLQG never plans on them;
each task instead gets residuals built from the same physical quantities as its reward (pole
angle, torso height, tip-to-target vector, speed) with smooth norms. A builder takes the
`DMControlInterface` (for the state layout, the model and `kinematics`) and returns a
`ResidualCost`; residual functions map states `(N, state_dim)` and normalised actions `(N, m)`
to `(N, d)`. `HORIZONS` gives the classical horizon (agent steps) that worked in
`benchmarks/classical.py`.
"""
from __future__ import annotations

import numpy as np

from tdmpc2.classical.costs import Quadratic, ResidualCost, SmoothAbs, Term

HORIZONS = {  # agent steps (x action_repeat x control timestep = seconds)
    "cartpole": 25, "pendulum": 30, "acrobot": 40, "cheetah": 12, "walker": 15, "hopper": 15,
    "reacher": 15, "finger": 15, "cup": 25, "fish": 15,
}


def _tilt(angle):
    """(sin a, cos a - 1): the displacement of a unit pole's tip from upright; |r|^2 = 2 - 2 cos a
    is quadratic in a near upright (cos a - 1 alone would be quartic: no pull near the goal)."""
    return np.stack([np.sin(angle), np.cos(angle) - 1.0], axis=-1)


def _q(iface, joint):
    return iface.model.joint(joint).qposadr[0]


def _v(iface, joint):
    return iface.model.joint(joint).dofadr[0]


def _control(weight=0.1):
    return Term("control", lambda x, u: u, Quadratic(), weight, terminal_weight=0.0)


def _velocity(iface, weight, joints=None):
    idx = [_v(iface, j) for j in joints] if joints else list(range(iface.nv))
    return Term("velocity", lambda x, u: iface.qvel(x)[:, idx], Quadratic(), weight)


# ---- cartpole, pendulum, acrobot: swing up and balance
def cartpole(iface):
    cart, pole = _q(iface, "slider"), _q(iface, "hinge_1")
    return ResidualCost([
        Term("upright", lambda x, u: _tilt(iface.qpos(x)[:, pole]), Quadratic(), 20.0),
        Term("centered", lambda x, u: iface.qpos(x)[:, cart], SmoothAbs(0.2), 2.0),
        _velocity(iface, 0.05),
        _control(0.5),
    ])


def pendulum(iface):
    hinge = _q(iface, "hinge")
    return ResidualCost([
        Term("upright", lambda x, u: _tilt(iface.qpos(x)[:, hinge]), Quadratic(), 10.0),
        _velocity(iface, 0.01),
        _control(0.05),
    ])


def acrobot(iface):
    tip, target = iface.model.site("tip").id, iface.model.site("target").id
    return ResidualCost([
        Term("tip_to_target", lambda x, u: iface.kinematics(x, lambda d: d.site_xpos[tip, [0, 2]] - d.site_xpos[target, [0, 2]]),
             Quadratic(), 10.0),
        _velocity(iface, 0.01),
        _control(0.05),
    ])


# ---- locomotion: height, uprightness, speed
def _planar_body(iface, height_target, speed_target, root_z="rootz", root_x="rootx", root_y="rooty",
                 body="torso", w_height=10.0, w_upright=5.0, w_speed=1.0, w_control=0.1):
    z, pitch, vx = _q(iface, root_z), _q(iface, root_y), _v(iface, root_x)
    z0 = iface.model.body(body).pos[2]
    terms = [
        Term("height", lambda x, u: iface.qpos(x)[:, z] + z0 - height_target, Quadratic(), w_height),
        Term("upright", lambda x, u: _tilt(iface.qpos(x)[:, pitch]), Quadratic(), w_upright),
        _control(w_control),
    ]
    if speed_target is not None:
        terms.append(Term("speed", lambda x, u: iface.qvel(x)[:, vx] - speed_target, SmoothAbs(0.5), w_speed))
    else:
        terms.append(Term("still", lambda x, u: iface.qvel(x)[:, vx], Quadratic(), 0.1))
    return ResidualCost(terms)


def walker(speed):
    return lambda iface: _planar_body(iface, 1.3, speed)


def cheetah(iface):
    vx, pitch = _v(iface, "rootx"), _q(iface, "rooty")
    return ResidualCost([
        Term("speed", lambda x, u: iface.qvel(x)[:, vx] - 10.0, SmoothAbs(1.0), 1.0),
        Term("upright", lambda x, u: _tilt(iface.qpos(x)[:, pitch]), Quadratic(), 0.5),
        _control(0.05),
    ])


def hopper(speed):
    def build(iface):
        torso, foot = iface.model.body("torso").id, iface.model.body("foot").id
        pitch, vx = _q(iface, "rooty"), _v(iface, "rootx")
        terms = [
            Term("height", lambda x, u: iface.kinematics(x, lambda d: d.xipos[torso, 2] - d.xipos[foot, 2]) - 1.0,
                 Quadratic(), 10.0),
            Term("upright", lambda x, u: _tilt(iface.qpos(x)[:, pitch]), Quadratic(), 5.0),
            _control(0.1),
        ]
        if speed:
            terms.append(Term("speed", lambda x, u: iface.qvel(x)[:, vx] - speed, SmoothAbs(0.5), 1.0))
        return ResidualCost(terms)
    return build


# ---- reaching: a point to a target
def reacher(iface):
    finger, target = iface.model.geom("finger").id, iface.model.geom("target").id
    return ResidualCost([
        Term("finger_to_target",
             lambda x, u: iface.kinematics(x, lambda d: d.geom_xpos[finger, :2] - d.geom_xpos[target, :2]),
             SmoothAbs(0.02), 5.0),
        _velocity(iface, 0.01),
        _control(0.01),
    ])


def finger_spin(iface):
    hinge = _v(iface, "hinge")
    return ResidualCost([
        Term("spin", lambda x, u: iface.qvel(x)[:, hinge] + 20.0, SmoothAbs(1.0), 1.0),
        _control(0.01),
    ])


def finger_turn(iface):
    tip, target = iface.model.site("tip").id, iface.model.site("target").id
    touch = iface.model.site("touchtop").id
    return ResidualCost([
        Term("tip_to_target",
             lambda x, u: iface.kinematics(x, lambda d: d.site_xpos[tip, [0, 2]] - d.site_xpos[target, [0, 2]]),
             SmoothAbs(0.02), 5.0),
        Term("finger_to_tip",
             lambda x, u: iface.kinematics(x, lambda d: d.site_xpos[touch, [0, 2]] - d.site_xpos[tip, [0, 2]]),
             SmoothAbs(0.05), 0.5),
        _control(0.01),
    ])


def cup_catch(iface):
    ball, target = iface.model.body("ball").id, iface.model.site("target").id
    return ResidualCost([
        Term("ball_to_target",
             lambda x, u: iface.kinematics(x, lambda d: d.xpos[ball, [0, 2]] - d.site_xpos[target, [0, 2]]),
             SmoothAbs(0.05), 5.0),
        _velocity(iface, 0.01),
        _control(0.05),
    ])


def fish_swim(iface):
    mouth, target, torso = iface.model.geom("mouth").id, iface.model.geom("target").id, iface.model.body("torso").id
    return ResidualCost([
        Term("mouth_to_target",
             lambda x, u: iface.kinematics(x, lambda d: d.geom_xpos[mouth] - d.geom_xpos[target]),
             SmoothAbs(0.05), 5.0),
        Term("upright", lambda x, u: iface.kinematics(x, lambda d: d.xmat[torso, 8]) - 1.0, Quadratic(), 1.0),
        _control(0.05),
    ])


COSTS = {
    "cartpole-balance": cartpole, "cartpole-balance-sparse": cartpole,
    "cartpole-swingup": cartpole, "cartpole-swingup-sparse": cartpole,
    "pendulum-swingup": pendulum, "acrobot-swingup": acrobot, "cheetah-run": cheetah,
    "walker-stand": walker(None), "walker-walk": walker(1.0), "walker-run": walker(8.0),
    "hopper-stand": hopper(0.0), "hopper-hop": hopper(2.0),
    "reacher-easy": reacher, "reacher-hard": reacher,
    "finger-spin": finger_spin, "finger-turn-easy": finger_turn, "finger-turn-hard": finger_turn,
    "cup-catch": cup_catch, "fish-swim": fish_swim,
}


def supported_cost_tasks() -> tuple[str, ...]:
    return tuple(COSTS)


def make_cost(task: str, iface) -> ResidualCost | None:
    """The planning cost of `task` over `iface`, or None if the task has none."""
    build = COSTS.get(task)
    return None if build is None else build(iface)


def default_horizon(task: str) -> int:
    """Classical horizon (agent steps) that worked for `task` in the benchmark."""
    return HORIZONS[task.split("-")[0]]
