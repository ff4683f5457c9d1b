"""Cost of hybrid planning: act() of the learned-only planner (TD-MPC2), the hybrid planner at
H_c = 10 with the simulated bridge, and pure classical MPC (the solver alone over T_c, receding
horizon), side by side in one run.

Model size 5, CPU, the reference planner settings (512 samples, 6 iterations). All are timed
interleaved over the same env states (a short random-action walk from a reset) and reported as
medians; the ratio hybrid / learned-only is the target (<= 1.5). The hybrid runs at the bridge
weight `--weight` (default 0.5: both the learned tail and the bridge are evaluated, the most
expensive case; at w = 1 the learned tail is skipped). Its time is split into the classical
solve over T_c, simulated prefix scoring (rollouts, rewards, observations, encoding), the
bridges (closed-loop continuation from every prefix's state at H_c) and learned scoring (the
TD-MPC2 value of the tails).

    python benchmarks/hybrid.py                     # cheetah-run and walker-walk
    python benchmarks/hybrid.py --tasks cartpole-balance --size 1 --states 5 --weight 1
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def measure(task: str, size: int, horizon: int, states: int, threads: int, weight: float) -> dict:
    from tdmpc2.config import load_config
    from tdmpc2.envs import make_env
    from tdmpc2.hybrid_tdmpc2 import HybridTDMPC2

    torch.manual_seed(0)
    cfg = load_config(task=task, model_size=size, hybrid_mpc=True, max_classical_horizon=horizon, device="cpu",
                      bridge_weight=weight, transition_schedule="constant")
    env = make_env(cfg)
    agent = HybridTDMPC2(cfg, env)
    solver = agent.hybrid.solver
    obs = env.reset()
    times = {k: [] for k in ("learned", "hybrid", "classical", "ilqg", "sim", "bridge", "tail")}
    T = agent.hybrid.plan_horizon
    warm = None
    for i in range(states + 1):
        for _ in range(3):
            obs, *_ = env.step(env.rand_act())
        with agent.learned_only():
            start = time.perf_counter()
            agent.act(obs, t0=i == 0)
            learned = time.perf_counter() - start
        start = time.perf_counter()
        agent.act(obs, t0=i == 0)
        hybrid = time.perf_counter() - start
        info = agent.hybrid.last_info
        start = time.perf_counter()
        result = solver.plan(agent.hybrid.interface.get_state(), T, warm)
        classical = time.perf_counter() - start
        warm = result.actions[list(range(1, T)) + [T - 1]]
        if i == 0:
            continue  # warm-up
        for key, value in (("learned", learned), ("hybrid", hybrid), ("classical", classical),
                           ("ilqg", info.ilqg_time), ("sim", info.sim_scoring_time),
                           ("bridge", info.bridge_time), ("tail", info.learned_scoring_time)):
            times[key].append(1e3 * value)
    med = {k: statistics.median(v) for k, v in times.items()}
    med.update(task=task, scoring_model=info.scoring_model, solver_model=info.solver_model, sim_steps=info.sim_steps,
               plan_horizon=T)
    return med


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["cheetah-run", "walker-walk"])
    parser.add_argument("--size", type=int, default=5)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--states", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--weight", type=float, default=0.5, help="bridge weight w of the hybrid planner")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"model size {args.size}, H_c = {args.horizon}, w = {args.weight}, torch threads {args.threads}, "
          f"medians over {args.states} states")
    print(f"{'task':<14}{'T_c':>4}{'learned ms':>11}{'hybrid ms':>10}{'ratio':>7}{'solver':>8}{'sim':>8}{'bridge':>8}"
          f"{'tail':>8}{'classical ms':>13}{'sim steps':>10}  solver / scoring model")
    for task in args.tasks:
        r = measure(task, args.size, args.horizon, args.states, args.threads, args.weight)
        print(f"{task:<14}{r['plan_horizon']:>4}{r['learned']:>11.0f}{r['hybrid']:>10.0f}{r['hybrid'] / r['learned']:>6.2f}x"
              f"{r['ilqg']:>8.0f}{r['sim']:>8.0f}{r['bridge']:>8.0f}{r['tail']:>8.0f}{r['classical']:>13.0f}"
              f"{r['sim_steps']:>10}  {r['solver_model']} / {r['scoring_model']}", flush=True)
    print("target: hybrid at H_c = 10 <= 1.5x the learned-only planner")


if __name__ == "__main__":
    main()
