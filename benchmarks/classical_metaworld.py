"""Pure classical MPC on Meta-World: receding-horizon iLQG on `MetaWorldInterface`.

Every agent step: snapshot the live env, plan `horizon` agent steps with iLQG (warm-started
from the previous plan shifted by one step, last action repeated), apply the first action.
Reports the success rate (Meta-World's flag at the final step, spec 8.3) and the wall-clock
milliseconds per agent step (planning + env step).

    python benchmarks/classical_metaworld.py --tasks mw-reach mw-push --episodes 10

`run_metaworld(tasks, episodes)` returns one row (dict) per task for benchmarks/classical.py.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

DEFAULT_TASKS = ("mw-reach", "mw-push", "mw-pick-place")


def run_episode(env, interface, solver, horizon: int) -> dict:
    """One episode of receding-horizon iLQG; success, return and seconds per agent step."""
    env.reset()
    warm = np.zeros((horizon, interface.action_dim))
    total, steps, done, info, plan_seconds = 0.0, 0, False, {"success": 0.0}, 0.0
    start = time.perf_counter()
    while not done:
        tic = time.perf_counter()
        result = solver.plan(interface.get_state(), horizon, warm_start=warm)
        plan_seconds += time.perf_counter() - tic
        action = result.actions[0]
        warm = np.concatenate([result.actions[1:], result.actions[-1:]])
        _, reward, done, info = env.step(action)
        total += float(reward)
        steps += 1
    seconds = time.perf_counter() - start
    return dict(success=float(info["success"]), episode_return=total, ms_per_step=1e3 * seconds / steps,
                plan_ms_per_step=1e3 * plan_seconds / steps)


def run_metaworld(tasks=DEFAULT_TASKS, episodes: int = 10, horizon: int = 5, iterations: int = 2,
                  seed: int = 1, central_differences: bool = False, progress=None) -> list[dict]:
    """Success rate and ms per agent step of receding-horizon iLQG on each Meta-World task.

    `progress`, if given, is called with (task, episode index, episode dict) after every episode.
    """
    from tdmpc2.envs.metaworld import MetaWorldEnv
    from tdmpc2.envs.metaworld_interface import MetaWorldInterface
    from tdmpc2.hybrid_mpc import iLQG

    rows = []
    for task in tasks:
        env = MetaWorldEnv(task, seed=seed)
        interface = MetaWorldInterface(env)
        interface.central_differences = central_differences
        solver = iLQG(interface, iterations=iterations, line_search_steps=6, regularization=1e-6, tolerance=1e-6)
        results = []
        for i in range(episodes):
            results.append(run_episode(env, interface, solver, horizon))
            if progress is not None:
                progress(task, i, results[-1])
        rows.append(dict(task=task, solver="ilqg", horizon=horizon, iterations=iterations, episodes=episodes,
                         success_rate=float(np.mean([r["success"] for r in results])),
                         mean_return=float(np.mean([r["episode_return"] for r in results])),
                         ms_per_step=float(np.mean([r["ms_per_step"] for r in results])),
                         plan_ms_per_step=float(np.mean([r["plan_ms_per_step"] for r in results]))))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    def progress(task, i, ep):
        print(f"{task} episode {i}: success {ep['success']:.0f} return {ep['episode_return']:.1f} "
              f"{ep['ms_per_step']:.0f} ms/step", flush=True)

    rows = run_metaworld(args.tasks, args.episodes, args.horizon, args.iterations, args.seed, progress=progress)
    print(f"{'task':<16}{'success':>9}{'return':>9}{'ms/step':>9}")
    for row in rows:
        print(f"{row['task']:<16}{row['success_rate']:>9.0%}{row['mean_return']:>9.1f}{row['ms_per_step']:>9.0f}")


if __name__ == "__main__":
    main()
