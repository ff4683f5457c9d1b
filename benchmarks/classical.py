"""Pure classical MPC on the true simulator: iLQG in receding horizon, no learning.

    python benchmarks/classical.py --tasks cartpole-balance walker-stand --episodes 3
    python benchmarks/classical.py --quick            # every task with a cost, 100 agent steps

Each agent step: snapshot the live env, plan `horizon` agent steps with iLQG warm-started from the
previous plan shifted by one step (last action held), apply the first action. Prints the episode
return (the env's reward, summed) and the median wall time per agent step (planning only), with
MuJoCo on one thread. Targets: cartpole-balance >= 950, pendulum-swingup >= 850,
walker-stand >= 950 at <= 60 ms per agent step on one core.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tdmpc2.config import load_config  # noqa: E402
from tdmpc2.envs import make_env, make_interface  # noqa: E402
from tdmpc2.envs.dmc_costs import COSTS, default_horizon  # noqa: E402
from tdmpc2.hybrid_mpc import make_classical_solver  # noqa: E402

ITERATIONS = {"walker": 2, "cheetah": 2, "hopper": 2, "fish": 1, "finger": 2}  # per agent step (else 3)


def run_episode(task, seed, steps, horizon, iterations, algorithm, planning_model):
    cfg = load_config(task=task, seed=seed, planning_model=planning_model, mujoco_threads=1)
    env = make_env(cfg)
    iface = make_interface(cfg, env)
    solver = make_classical_solver(algorithm, iface, iterations=iterations, line_search_steps=cfg.ilqg_line_search_steps,
                                   regularization=cfg.ilqg_regularization, tolerance=cfg.ilqg_tolerance)
    env.reset()
    plan, total, times, statuses = None, 0.0, [], {}
    for _ in range(steps):
        tic = time.perf_counter()
        warm = None if plan is None else np.concatenate([plan[1:], plan[-1:]])
        result = solver.plan(iface.get_state(), horizon, warm_start=warm)
        plan = result.actions
        times.append(time.perf_counter() - tic)
        statuses[result.status.value] = statuses.get(result.status.value, 0) + 1
        _, reward, done, _ = env.step(torch.as_tensor(plan[0], dtype=torch.float32))
        total += float(reward)
        if done:
            break
    iface.close()
    return total, 1e3 * float(np.median(times)), statuses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(COSTS), help="tasks with a cost (default: all)")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--steps", type=int, default=500, help="agent steps per episode")
    parser.add_argument("--quick", action="store_true", help="100 agent steps per episode, one episode")
    parser.add_argument("--horizon", type=int, default=None, help="override the per-task horizon")
    parser.add_argument("--iterations", type=int, default=None, help="iLQG iterations per agent step")
    parser.add_argument("--algorithm", default="ilqg", choices=("ilqg", "ddp", "lqr"))
    parser.add_argument("--planning-model", default="default", choices=("default", "exact"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    steps, episodes = (100, 1) if args.quick else (args.steps, args.episodes)
    print(f"{'task':26s} {'H':>3s} {'it':>3s} {'return (median)':>16s} {'ms/step (median)':>17s}  statuses")
    for task in args.tasks:
        if task not in COSTS:
            print(f"{task:26s} skipped: no classical cost")
            continue
        horizon = args.horizon or default_horizon(task)
        iterations = args.iterations or ITERATIONS.get(task.split("-")[0], 3)
        results = [run_episode(task, args.seed + e, steps, horizon, iterations, args.algorithm, args.planning_model)
                   for e in range(episodes)]
        returns = [r[0] for r in results]
        ms = float(np.median([r[1] for r in results]))
        statuses = {}
        for r in results:
            for k, v in r[2].items():
                statuses[k] = statuses.get(k, 0) + v
        print(f"{task:26s} {horizon:3d} {iterations:3d} {np.median(returns):16.1f} {ms:17.1f}  {statuses}", flush=True)


if __name__ == "__main__":
    main()
