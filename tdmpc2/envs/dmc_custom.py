"""Custom DMControl tasks of the TD-MPC2 benchmark (spec 8.4).

`CUSTOM_TASKS` maps (domain, task) -> a loader `fn(seed) -> control.Environment`; `register()`
fills it (idempotent) and also adds each task to its dm_control domain under the tag "custom",
so `dm_control.suite.load("walker", "walk_backwards")` works as well.

Every reward below is built from `dm_control.utils.rewards.tolerance` exactly as the spec's
table states. Where the table leaves a shaping argument open, the dm_control default is used
(gaussian sigmoid, value 0.1 at the margin); each such choice is named in the task's docstring.

Models: hopper, pendulum and ball-in-cup are the stock models. Walker and cheetah are the stock
models with the ground plane re-centred on the origin and enlarged (`_enlarged_ground`), because
the stock planes start 2 m behind the start position and the backwards tasks run off them.
Reacher-three uses `assets/reacher_three.xml` (written for this project). Each task runs 1000
native control steps (500 agent steps at action repeat 2), like the stock tasks of its domain.
Only the 11 tasks of the benchmark are implemented; the spec's unused extras are not.
"""
from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET

import numpy as np
from dm_control.rl import control
from dm_control.suite import ball_in_cup, cheetah, common, hopper, pendulum, reacher, walker
from dm_control.utils import rewards

ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
INF = float("inf")

CUSTOM_TASKS: dict = {}


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

def _enlarged_ground(xml: bytes | str, geom_name: str, half_length: float) -> str:
    """The model XML with plane `geom_name` centred on x = 0 and `half_length` long each way."""
    root = ET.fromstring(xml)
    plane = next(g for g in root.iter("geom") if g.get("name") == geom_name)
    _, half_width, grid = plane.get("size").split()
    plane.set("pos", "0 0 0")
    plane.set("size", f"{half_length:g} {half_width} {grid}")
    return ET.tostring(root, encoding="unicode")


def walker_model():
    return _enlarged_ground(common.read_model("walker.xml"), "floor", 500.0), common.ASSETS


def cheetah_model():
    return _enlarged_ground(common.read_model("cheetah.xml"), "ground", 500.0), common.ASSETS


def reacher_three_model():
    with open(os.path.join(ASSETS_DIR, "reacher_three.xml")) as f:
        return f.read(), common.ASSETS


# ---------------------------------------------------------------------------------------------
# Reward terms (pure functions of physical quantities)
# ---------------------------------------------------------------------------------------------

def at_most(x, limit, margin, value_at_margin):
    """Linear tolerance of x in (-inf, limit]."""
    return rewards.tolerance(x, bounds=(-INF, limit), margin=margin,
                             value_at_margin=value_at_margin, sigmoid="linear")


def at_least(x, limit, margin, value_at_margin, sigmoid="linear"):
    """Tolerance of x in [limit, inf)."""
    return rewards.tolerance(x, bounds=(limit, INF), margin=margin,
                             value_at_margin=value_at_margin, sigmoid=sigmoid)


def high_enough(height, target=1.2, margin=0.6):
    """Default (gaussian, 0.1 at the margin) tolerance of a height in [target, inf)."""
    return rewards.tolerance(height, bounds=(target, INF), margin=margin)


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------

class WalkerBackwards(walker.PlanarWalker):
    """Walker moving backwards at `speed` or faster: stand term x (5m + 1)/6, m the linear
    tolerance of the horizontal velocity in (-inf, -speed], margin speed/2, 0.5 at the margin."""

    def __init__(self, speed, random=None):
        super().__init__(move_speed=speed, random=random)
        self.speed = speed

    def get_reward(self, physics):
        standing = rewards.tolerance(physics.torso_height(), bounds=(1.2, INF), margin=0.6)
        upright = (1.0 + physics.torso_upright()) / 2.0
        stand = (3.0 * standing + upright) / 4.0
        move = at_most(physics.horizontal_velocity(), -self.speed, self.speed / 2, 0.5)
        return stand * (5.0 * move + 1.0) / 6.0


class CheetahRunBackwards(cheetah.Cheetah):
    """Linear tolerance of the speed in (-inf, -8], margin 8, 0 at the margin."""

    def get_reward(self, physics):
        return at_most(physics.speed(), -8.0, 8.0, 0.0)


def _height(physics, body):
    return physics.named.data.xpos[body, "z"]


class CheetahRunOneFoot(cheetah.Cheetah):
    """Run on one foot with the other raised: (3 foot_up + 2 torso_up)/5 x (5 s + 1)/6, heights
    >= 1.2 (margin 0.6, default gaussian shaping), s the linear tolerance of the forward speed
    >= 6 (margin 6, 0 at the margin). `raised` is "bfoot" for run-front, "ffoot" for run-back."""

    def __init__(self, raised, random=None):
        super().__init__(random=random)
        self.raised = raised

    def get_reward(self, physics):
        up = (3.0 * high_enough(_height(physics, self.raised))
              + 2.0 * high_enough(_height(physics, "torso"))) / 5.0
        run = at_least(physics.speed(), 6.0, 6.0, 0.0)
        return up * (5.0 * run + 1.0) / 6.0


class CheetahJump(cheetah.Cheetah):
    """Mean of standing on the front foot (back foot raised) and on the back foot (front foot
    raised); each is (5 h + s)/6 with h the tolerance of the mean of torso and raised-foot
    heights >= 1.2 (margin 0.6, gaussian) and s the linear tolerance of the forward speed in
    [-0.5, 0.5] (margin 0.5, default 0.1 at the margin)."""

    def _stand_on_one_foot(self, physics, raised):
        height = high_enough((_height(physics, "torso") + _height(physics, raised)) / 2.0)
        still = rewards.tolerance(physics.speed(), bounds=(-0.5, 0.5), margin=0.5, sigmoid="linear")
        return (5.0 * height + still) / 6.0

    def get_reward(self, physics):
        return 0.5 * (self._stand_on_one_foot(physics, "bfoot")
                      + self._stand_on_one_foot(physics, "ffoot"))


class HopperHopBackwards(hopper.Hopper):
    """Standing (height in [0.6, 2]) x linear tolerance of the speed in (-inf, -1], margin 0.5,
    0.5 at the margin."""

    def __init__(self, random=None):
        super().__init__(hopping=True, random=random)

    def get_reward(self, physics):
        standing = rewards.tolerance(physics.height(), bounds=(0.6, 2.0))
        return standing * at_most(physics.speed(), -1.0, 0.5, 0.5)


class PendulumSpin(pendulum.SwingUp):
    """Linear tolerance of |angular velocity| >= 9, margin 4.5, 0.5 at the margin."""

    def get_reward(self, physics):
        return at_least(abs(physics.angular_velocity().item()), 9.0, 4.5, 0.5)


class CupSpin(ball_in_cup.BallInCup):
    """Spin the ball around the cup without catching it.

    Start: with probability 0.9 the ball position is resampled until it lies in the cup,
    otherwise any collision-free position (the stock sampler's box) is accepted.
    Reward: (ball not in cup) x (d + 2 v)/3, d the linear tolerance of the ball-to-target
    distance >= 0.5 (margin 0.25) and v of the ball speed >= 6 (margin 3), both 0.5 at the
    margin.
    """

    def initialize_episode(self, physics):
        want_in_cup = self.random.uniform() < 0.9
        while True:
            physics.named.data.qpos["ball_x"] = self.random.uniform(-0.2, 0.2)
            physics.named.data.qpos["ball_z"] = self.random.uniform(0.2, 0.5)
            physics.after_reset()
            if physics.data.ncon == 0 and (physics.in_target() or not want_in_cup):
                break
        # skip BallInCup's own sampler, keep the base task's episode set-up
        super(ball_in_cup.BallInCup, self).initialize_episode(physics)

    def get_reward(self, physics):
        distance = at_least(np.linalg.norm(physics.ball_to_target()), 0.5, 0.25, 0.5)
        ball_speed = np.linalg.norm(physics.named.data.qvel[["ball_x", "ball_z"]])
        speed = at_least(ball_speed, 6.0, 3.0, 0.5)
        return (1.0 - physics.in_target()) * (distance + 2.0 * speed) / 3.0


# ---------------------------------------------------------------------------------------------
# Factories: dm_control suite signature (time_limit, random, environment_kwargs)
# ---------------------------------------------------------------------------------------------

def _environment(physics, task, time_limit, environment_kwargs, control_timestep=None):
    kwargs = dict(environment_kwargs or {})
    if control_timestep is not None:
        kwargs.setdefault("control_timestep", control_timestep)
    return control.Environment(physics, task, time_limit=time_limit, **kwargs)


def _walker_backwards(speed, time_limit=25, random=None, environment_kwargs=None):
    physics = walker.Physics.from_xml_string(*walker_model())
    return _environment(physics, WalkerBackwards(speed, random=random), time_limit,
                        environment_kwargs, control_timestep=0.025)


def _cheetah(make_task, time_limit=10, random=None, environment_kwargs=None):
    physics = cheetah.Physics.from_xml_string(*cheetah_model())
    return _environment(physics, make_task(random=random), time_limit, environment_kwargs)


def _hopper_hop_backwards(time_limit=20, random=None, environment_kwargs=None):
    physics = hopper.Physics.from_xml_string(*hopper.get_model_and_assets())
    return _environment(physics, HopperHopBackwards(random=random), time_limit,
                        environment_kwargs, control_timestep=0.02)


def _reacher_three(target_size, time_limit=20, random=None, environment_kwargs=None):
    physics = reacher.Physics.from_xml_string(*reacher_three_model())
    return _environment(physics, reacher.Reacher(target_size, random=random), time_limit,
                        environment_kwargs)


def _cup_spin(time_limit=20, random=None, environment_kwargs=None):
    physics = ball_in_cup.Physics.from_xml_string(*ball_in_cup.get_model_and_assets())
    return _environment(physics, CupSpin(random=random), time_limit, environment_kwargs,
                        control_timestep=0.02)


def _pendulum_spin(time_limit=20, random=None, environment_kwargs=None):
    physics = pendulum.Physics.from_xml_string(*pendulum.get_model_and_assets())
    return _environment(physics, PendulumSpin(random=random), time_limit, environment_kwargs)


_FACTORIES = {  # (domain, task) -> (dm_control domain module, factory)
    ("walker", "walk_backwards"): (walker, functools.partial(_walker_backwards, 1.0)),
    ("walker", "run_backwards"): (walker, functools.partial(_walker_backwards, 8.0)),
    ("cheetah", "run_backwards"): (cheetah, functools.partial(_cheetah, CheetahRunBackwards)),
    ("cheetah", "run_front"): (cheetah, functools.partial(
        _cheetah, functools.partial(CheetahRunOneFoot, "bfoot"))),
    ("cheetah", "run_back"): (cheetah, functools.partial(
        _cheetah, functools.partial(CheetahRunOneFoot, "ffoot"))),
    ("cheetah", "jump"): (cheetah, functools.partial(_cheetah, CheetahJump)),
    ("hopper", "hop_backwards"): (hopper, _hopper_hop_backwards),
    ("reacher", "three_easy"): (reacher, functools.partial(_reacher_three, 0.05)),
    ("reacher", "three_hard"): (reacher, functools.partial(_reacher_three, 0.015)),
    ("ball_in_cup", "spin"): (ball_in_cup, _cup_spin),
    ("pendulum", "spin"): (pendulum, _pendulum_spin),
}


def _loader(factory, seed):
    return factory(random=seed)


def _suite_factory(name, factory):
    """`factory` under the function name dm_control's task registry uses as the task name."""
    def suite_factory(time_limit=None, random=None, environment_kwargs=None):
        kwargs = {} if time_limit is None else {"time_limit": time_limit}
        return factory(random=random, environment_kwargs=environment_kwargs, **kwargs)
    suite_factory.__name__ = name
    return suite_factory


def register():
    """Fill `CUSTOM_TASKS` and add the tasks to their dm_control domains (idempotent)."""
    for (domain, task), (module, factory) in _FACTORIES.items():
        CUSTOM_TASKS[(domain, task)] = functools.partial(_loader, factory)
        if task not in module.SUITE:
            module.SUITE.add("custom")(_suite_factory(task, factory))


def load(domain: str, task: str, seed: int):
    """The dm_control environment of a stock or custom task, its task RNG seeded with `seed`."""
    register()
    if (domain, task) in CUSTOM_TASKS:
        return CUSTOM_TASKS[(domain, task)](seed)
    from dm_control import suite

    return suite.load(domain, task, task_kwargs={"random": seed}, visualize_reward=False)
