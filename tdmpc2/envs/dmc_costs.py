"""Smooth residual planning costs for DMControl tasks (documented in docs/classical-costs.md).

Many DMControl rewards are indicators or flat far from the goal, so iLQG never plans on them;
each task instead gets residuals built from the same physical quantities as its reward (pole
angle, torso height, tip-to-target vector, speed) with smooth norms. A builder takes the
`DMControlInterface` (for the state layout, the model and `kinematics`) and returns a
`ResidualCost`; residual functions map states `(N, state_dim)` and normalised actions `(N, m)`
to `(N, d)`. The horizon, solver and iterations each task plans with are in the one per-task
table, `tdmpc2/envs/classical_defaults.py`.
"""
from __future__ import annotations

import numpy as np

from tdmpc2.classical.costs import Quadratic, ResidualCost, SmoothAbs, Term


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
def cartpole(balance):
    """Balance: the terminal cost weighs the cart's offset and speed 10x; within a 0.5 s horizon,
    bringing the cart back (first tilting the pole the other way) did not pay off and the cart
    drifted off (734.9 on seed 2). Swing-up keeps the plain weights: the heavy terminal pull on the
    cart stopped the swing at the rails."""
    def build(iface):
        cart, pole, cart_v = _q(iface, "slider"), _q(iface, "hinge_1"), _v(iface, "slider")
        return ResidualCost([
            Term("upright", lambda x, u: _tilt(iface.qpos(x)[:, pole]), Quadratic(), 20.0),
            Term("centered", lambda x, u: iface.qpos(x)[:, cart], SmoothAbs(0.2), 2.0,
                 terminal_weight=20.0 if balance else None),
            Term("cart_still", lambda x, u: iface.qvel(x)[:, cart_v], Quadratic(), 0.1 if balance else 0.0,
                 terminal_weight=1.0 if balance else 0.0),
            _velocity(iface, 0.05),
            _control(0.5),
        ])
    return build


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
    """Ball into the cup over the rim: the ball is pulled to a via point `lift` above the target
    while it is horizontally outside the cup (|dx| beyond the inner half-width), and into the
    target once above it. The cup is kept from sinking below its rest height (else it chased a
    ball lying on the floor). Cup and ball move on slide joints: world positions are qpos + offsets."""
    m = iface.model
    cx, cz, bx, bz = (_q(iface, j) for j in ("cup_x", "cup_z", "ball_x", "ball_z"))
    target = m.body("cup").pos + m.site("target").pos
    ball = m.body("ball").pos
    half = m.site("target").size[0] - m.geom("ball").size[0]  # the reward's horizontal tolerance
    lift = 0.15

    def to_via(x, u):
        q = iface.qpos(x)
        dx = (q[:, bx] + ball[0]) - (q[:, cx] + target[0])
        dz = (q[:, bz] + ball[2]) - (q[:, cz] + target[2])
        outside = 1.0 / (1.0 + np.exp(-(np.abs(dx) - half) / 0.01))
        return np.stack([dx, dz - lift * outside], axis=-1)
    return ResidualCost([
        Term("ball_to_via", to_via, SmoothAbs(0.02), 5.0),
        Term("cup_low", lambda x, u: np.minimum(iface.qpos(x)[:, cz], 0.0), Quadratic(), 100.0),
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


# ---- free-floating bodies: orientation from the root quaternion (vectorised, no kinematics)
def _root_axes(iface, joint="root"):
    """World x- and z-axes of the free joint's body, `(N, 3)` each, from its qpos quaternion."""
    adr = _q(iface, joint) + 3
    def axes(x):
        w, a, b, c = (iface.qpos(x)[:, adr + i] for i in range(4))
        x_axis = np.stack([1 - 2 * (b * b + c * c), 2 * (a * b + w * c), 2 * (a * c - w * b)], axis=-1)
        z_axis = np.stack([2 * (a * c + w * b), 2 * (b * c - w * a), 1 - 2 * (a * a + b * b)], axis=-1)
        return x_axis, z_axis
    return axes


def quadruped(speed):
    """Upright torso (its z-axis to the world's: |r|^2 = 2 - 2 zz, the reward's factor), forward
    speed in the torso frame (the velocimeter's) above `speed`, a standing height, small controls."""
    def build(iface):
        axes, root = _root_axes(iface), _q(iface, "root")
        vel = _v(iface, "root")
        up = np.array([0.0, 0.0, 1.0])

        def forward(x, u):
            return np.sum(axes(x)[0] * iface.qvel(x)[:, vel:vel + 3], axis=-1) - speed
        return ResidualCost([
            Term("upright", lambda x, u: axes(x)[1] - up, Quadratic(), 5.0),
            Term("height", lambda x, u: iface.qpos(x)[:, root + 2] - 0.55, Quadratic(), 2.0),
            Term("speed", forward, SmoothAbs(0.3), 1.0),
            _control(0.02),
        ])
    return build


def humanoid_stand(iface):
    """Head at the reward's 1.4 m, torso upright, centre of mass over the feet, still, small controls
    (the residuals of MJPC's humanoid stand, with the reward's quantities)."""
    head, torso = iface.model.body("head").id, iface.model.body("torso").id
    feet = [iface.model.body(n).id for n in ("left_foot", "right_foot")]
    axes, vel = _root_axes(iface), _v(iface, "root")
    up = np.array([0.0, 0.0, 1.0])

    def balance(d):
        return d.subtree_com[torso, :2] - 0.5 * (d.xpos[feet[0], :2] + d.xpos[feet[1], :2])
    return ResidualCost([
        Term("height", lambda x, u: iface.kinematics(x, lambda d: d.xpos[head, 2:]) - 1.45, SmoothAbs(0.1), 10.0),
        Term("upright", lambda x, u: axes(x)[1] - up, Quadratic(), 3.0),
        Term("balance", lambda x, u: iface.kinematics(x, balance), SmoothAbs(0.1), 2.0),
        Term("still", lambda x, u: iface.qvel(x)[:, vel:vel + 2], Quadratic(), 0.5),
        _velocity(iface, 0.002),
        _control(0.02),
    ])


COSTS = {
    "cartpole-balance": cartpole(True), "cartpole-balance-sparse": cartpole(True),
    "cartpole-swingup": cartpole(False), "cartpole-swingup-sparse": cartpole(False),
    "pendulum-swingup": pendulum, "acrobot-swingup": acrobot, "cheetah-run": cheetah,
    "walker-stand": walker(None), "walker-walk": walker(1.0), "walker-run": walker(8.0),
    "hopper-stand": hopper(0.0), "hopper-hop": hopper(2.0),
    "reacher-easy": reacher, "reacher-hard": reacher,
    "finger-spin": finger_spin, "finger-turn-easy": finger_turn, "finger-turn-hard": finger_turn,
    "cup-catch": cup_catch, "fish-swim": fish_swim,
    "quadruped-walk": quadruped(0.7), "quadruped-run": quadruped(5.5), "humanoid-stand": humanoid_stand,
}


def supported_cost_tasks() -> tuple[str, ...]:
    return tuple(COSTS)


def make_cost(task: str, iface) -> ResidualCost | None:
    """The planning cost of `task` over `iface`, or None if the task has none."""
    build = COSTS.get(task)
    return None if build is None else build(iface)
