"""Speed of `DMControlInterface.simulate` vs `rollout` (states + true rewards), before and after
the batched rewards, in one run.

"before" is an interface built with `vectorized_rewards=False`: the task's own `get_reward` on a
scratch physics, state by state, at every control step (the original implementation); "after"
is the default, the reward formulas of `tdmpc2/envs/dmc_rewards.py` on sensors recorded by the
batched `mujoco.rollout`. The four timings of a setting are interleaved, so load changes hit them
alike; milliseconds are medians. Every setting also checks that the two rollouts agree.

    python benchmarks/rollout_speed.py                      # cheetah-run, walker-walk; 65, 512
    python benchmarks/rollout_speed.py --tasks hopper-hop --candidates 512 --repeats 9

Measured (shared 2-core CPU machine, load average ~1, 2 MuJoCo threads, 10 agent steps = 20
control steps, default planning model: walker, hopper and fish 2 substeps per control step;
`--repeats 9` for the first four rows, 5 for the others):

| task | N | simulate before | rollout before | simulate after | rollout after | after: rollout / simulate |
|---|---|---|---|---|---|---|
| cheetah-run | 65 | 4.5 | 26.0 | 4.3 | 4.6 | 1.07 |
| cheetah-run | 512 | 30.5 | 196.0 | 34.6 | 31.5 | 0.91 |
| walker-walk | 65 | 8.7 | 47.2 | 8.5 | 9.0 | 1.05 |
| walker-walk | 512 | 61.2 | 365.3 | 67.6 | 70.4 | 1.04 |
| cartpole-swingup | 512 | 37.3 | 500.0 | 37.8 | 40.5 | 1.07 |
| hopper-hop | 512 | 70.9 | 287.4 | 71.6 | 75.1 | 1.05 |
| fish-swim | 512 | 70.6 | 411.8 | 73.5 | 87.0 | 1.18 |
| acrobot-swingup | 512 | 33.0 | 225.8 | 33.8 | 37.3 | 1.10 |

fish-swim: with uniform actions in [-1, 1], 35 of 512 candidates diverge within 10 agent steps on
the 2-substep planning model (none on the exact model, none with actions in [-0.5, 0.5]); MuJoCo
resets them inside the step, and those control steps' rewards go through the per-state path.
An earlier run at load ~1.3 (5 repeats): cheetah 512: 51 / 220 / 54 / 57 ms; walker 512:
118 / 412 / 120 / 124 ms.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from tdmpc2.config import load_config  # noqa: E402
from tdmpc2.envs import make_env  # noqa: E402
from tdmpc2.envs.dmcontrol_interface import DMControlInterface  # noqa: E402


def _ms(fn):
    tic = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - tic)


def bench(task, candidates, steps, repeats, threads, planning_model):
    cfg = load_config(task=task, seed=1, planning_model=planning_model, mujoco_threads=threads)
    env = make_env(cfg)
    env.reset()
    before = DMControlInterface(env, planning_model=planning_model, threads=threads, cost=False,
                                vectorized_rewards=False)
    after = DMControlInterface(env, planning_model=planning_model, threads=threads, cost=False)
    assert after.vectorized_rewards, f"{task} has no batched reward"
    x0 = after.get_state()
    rows = {}
    for n in candidates:
        states = np.repeat(x0[None], n, axis=0)
        actions = np.random.default_rng(0).uniform(-1, 1, (n, steps, after.action_dim))
        s_b, r_b = before.rollout(states, actions)
        s_a, r_a = after.rollout(states, actions)
        np.testing.assert_array_equal(s_a, s_b)
        np.testing.assert_allclose(r_a, r_b, rtol=1e-9, atol=1e-12)
        times = {k: [] for k in ("simulate before", "rollout before", "simulate after", "rollout after")}
        for _ in range(repeats):
            times["simulate before"].append(_ms(lambda: before.simulate(states, actions)))
            times["rollout before"].append(_ms(lambda: before.rollout(states, actions)))
            times["simulate after"].append(_ms(lambda: after.simulate(states, actions)))
            times["rollout after"].append(_ms(lambda: after.rollout(states, actions)))
        rows[n] = {k: statistics.median(v) for k, v in times.items()}
    before.close()
    after.close()
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["cheetah-run", "walker-walk"])
    parser.add_argument("--candidates", nargs="+", type=int, default=[65, 512])
    parser.add_argument("--steps", type=int, default=10, help="agent steps per candidate")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="MuJoCo rollout threads")
    parser.add_argument("--planning-model", default="default", choices=("default", "exact"))
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f}; {args.steps} agent steps; {args.threads} MuJoCo threads; "
          f"median of {args.repeats}")
    print("| task | N | simulate before | rollout before | simulate after | rollout after "
          "| after: rollout / simulate |")
    print("|---|---|---|---|---|---|---|")
    for task in args.tasks:
        for n, t in bench(task, args.candidates, args.steps, args.repeats, args.threads, args.planning_model).items():
            print(f"| {task} | {n} | {t['simulate before']:.1f} | {t['rollout before']:.1f} | "
                  f"{t['simulate after']:.1f} | {t['rollout after']:.1f} | "
                  f"{t['rollout after'] / t['simulate after']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
