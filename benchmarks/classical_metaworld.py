"""Pure classical MPC on Meta-World: receding-horizon iLQG on `MetaWorldInterface`.

Every agent step: snapshot the live env, plan `horizon` agent steps with iLQG (warm-started
from the previous plan shifted by one step, last action repeated), apply the first action.
Reports the success rate (Meta-World's flag at the final step, spec 8.3) and the wall-clock
milliseconds per agent step (planning + env step).

    python benchmarks/classical_metaworld.py --tasks mw-reach mw-push --episodes 10

`run_metaworld(tasks, episodes)` returns one row (dict) per task for benchmarks/classical.py.

`--time-rollout` times `MetaWorldInterface.rollout` of one hybrid scoring batch (65 prefixes x 10
agent steps, the planner's default M + 1 = 65 prefixes and H_c = 10) with the per-state path
(before: Meta-World's Python reward and observation code every env step) against the batched
path (after: raw MuJoCo calls + `metaworld_rewards`), and `observations` of the 65 final states.
Measured on the development machine (2 cores with a load average of ~4 from other runs, so
absolute numbers move by +-50 % between runs; single thread; median of 5; mujoco 3.3.0,
metaworld 3.1.1):

    task              rollout 65x10 before    after  speed-up   observations(65) before    after
    mw-reach                        677 ms   148 ms      4.6x                   14.9 ms   0.6 ms
    mw-push                        2138 ms   183 ms     11.7x                   20.3 ms   0.6 ms
    mw-pick-place                  3270 ms   233 ms     14.0x                   24.4 ms   0.8 ms

(two more mw-reach runs, median of 9: 1063 -> 174 ms and 1060 -> 188 ms). The batched path is
bound by the physics itself (10 `mj_step` + 2 `mj_forward` per agent step: ~90 % of its time).
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


def time_rollout(task: str = "mw-reach", samples: int = 65, steps: int = 10, repeats: int = 5,
                 seed: int = 1) -> dict:
    """Median milliseconds of `rollout` (samples x steps agent steps from one live state) and of
    `observations` (samples states), per-state path (before) and batched path (after), run
    alternately; also checks that both paths agree (states bit for bit, rewards to 1e-9)."""
    from tdmpc2.envs.metaworld import MetaWorldEnv
    from tdmpc2.envs.metaworld_interface import MetaWorldInterface

    env = MetaWorldEnv(task, seed=seed)
    interface = MetaWorldInterface(env, nthread=1)
    env.reset()
    rng = np.random.default_rng(seed)
    for _ in range(5):
        env.step(rng.uniform(-1, 1, 4))
    x0 = interface.get_state()
    states = np.repeat(x0[None], samples, axis=0)
    actions = rng.uniform(-1, 1, (samples, steps, interface.action_dim))
    times = {key: [] for key in ("rollout_before", "rollout_after", "obs_before", "obs_after")}

    def timed(key, fn):
        tic = time.perf_counter()
        out = fn()
        times[key].append(1e3 * (time.perf_counter() - tic))
        return out

    for _ in range(repeats):
        X0, R0 = timed("rollout_before", lambda: interface._rollout_per_state(states, actions))
        X1, R1 = timed("rollout_after", lambda: interface.rollout(states, actions))
        O0 = timed("obs_before", lambda: np.stack([interface.observation(x) for x in X1[:, -1]]))
        O1 = timed("obs_after", lambda: interface.observations(X1[:, -1]))
    if not (np.array_equal(X0, X1) and np.allclose(R0, R1, rtol=1e-9, atol=0) and np.array_equal(O0, O1)):
        raise AssertionError("batched and per-state paths disagree")
    return dict(task=task, samples=samples, steps=steps, batched=interface.batched(x0) is not None,
                **{f"{key}_ms": float(np.median(value)) for key, value in times.items()})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-rollout", action="store_true",
                        help="time rollout (65 x 10 agent steps) and observations, before vs after, and exit")
    args = parser.parse_args(argv)
    if args.time_rollout:
        print(f"{'task':<16}{'rollout 65x10 before':>22}{'after':>9}{'speed-up':>10}{'observations(65) before':>26}"
              f"{'after':>9}")
        for task in args.tasks:
            r = time_rollout(task, seed=args.seed)
            print(f"{task:<16}{r['rollout_before_ms']:>19.0f} ms{r['rollout_after_ms']:>6.0f} ms"
                  f"{r['rollout_before_ms'] / r['rollout_after_ms']:>9.1f}x{r['obs_before_ms']:>23.1f} ms"
                  f"{r['obs_after_ms']:>6.1f} ms", flush=True)
        return

    def progress(task, i, ep):
        print(f"{task} episode {i}: success {ep['success']:.0f} return {ep['episode_return']:.1f} "
              f"{ep['ms_per_step']:.0f} ms/step", flush=True)

    rows = run_metaworld(args.tasks, args.episodes, args.horizon, args.iterations, args.seed, progress=progress)
    print(f"{'task':<16}{'success':>9}{'return':>9}{'ms/step':>9}")
    for row in rows:
        print(f"{row['task']:<16}{row['success_rate']:>9.0%}{row['mean_return']:>9.1f}{row['ms_per_step']:>9.0f}")


if __name__ == "__main__":
    main()
