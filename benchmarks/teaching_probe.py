"""What limits a trained run's learned-only planner? Offline probes on its saved weights.

For every `models/step_N.pt` asked for, the run's own config (task, model size, planner settings)
rebuilds the agent, and the same seeded evaluation episodes are played by:

  planner     the learned-only planner: MPPI over the learned model (H_c = 0), as evaluated online
  prior       the policy prior alone: tanh of its mean, one forward pass per step
  prior-only  MPPI whose candidates all come from the policy prior (num_pi_trajs = num_samples - 1,
              so one Gaussian sample is left): the learned model and Q only choose among the
              prior's own trajectories

  min-q       the planner with a pessimistic terminal value: the minimum over all Q heads instead of
              the mean of two drawn heads (the ensemble's disagreement discounts candidates the
              data never showed)

If `prior-only` beats `planner`, the learned model's values rank the Gaussian candidates (actions
the data never showed) above the prior's; if `prior` beats `prior-only`, they misrank the prior's
trajectories too; if `min-q` beats `planner`, the misranking is the heads' optimism off the data.

    python benchmarks/teaching_probe.py --runs logs/teaching/cartpole-swingup/1/handover-10k \
        --steps 4000 5000 6000 --out results/teaching/probe.csv

A step without a checkpoint in a run is skipped with a message. Eval mode, 1 torch thread, torch
seeded per episode, so a probe repeats exactly.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tdmpc2.config import load_config  # noqa: E402

PLANNER_KEYS = ("task", "seed", "episode_length", "model_size", "num_samples", "iterations", "num_elites",
                "num_pi_trajs", "horizon", "temperature", "min_std", "max_std", "matmul_precision")
VARIANTS = ("planner", "prior", "prior-only", "min-q")


def run_config(run_dir: str, **overrides):
    """The run's planner settings (config.yaml of its work dir) as a CPU config, plus overrides."""
    from omegaconf import OmegaConf

    path = os.path.join(run_dir, "config.yaml")
    if not os.path.exists(path):
        raise SystemExit(f"{run_dir} has no config.yaml: not a training run's work dir.")
    saved = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    keys = {k: saved[k] for k in PLANNER_KEYS if k in saved}
    return load_config(device="cpu", **{**keys, **overrides})


def variant_actor(variant: str, run_dir: str, checkpoint: str):
    """(config, actor) playing `variant` with the checkpoint's weights."""
    from tdmpc2.tdmpc2 import TDMPC2
    from tdmpc2.teaching import PolicyPriorActor

    cfg = run_config(run_dir)
    if variant == "prior-only":
        cfg = run_config(run_dir, num_pi_trajs=cfg.num_samples - 1)
    agent = TDMPC2(cfg)
    agent.load(checkpoint)
    if variant == "min-q":
        _pessimistic_terminal_value(agent)
    return cfg, PolicyPriorActor(agent) if variant == "prior" else agent


def _pessimistic_terminal_value(agent) -> None:
    """Planning's terminal value (the only "avg" Q query in act) becomes the min over all heads."""
    model, every = agent.model, torch.arange(agent.model.num_q)
    q = model.Q

    def pessimistic(z, a, heads, reduce="avg", **kwargs):
        return q(z, a, every, "min", **kwargs) if reduce == "avg" else q(z, a, heads, reduce, **kwargs)

    model.Q = pessimistic


def probe(run_dir: str, step: int, variant: str, episodes: int) -> dict:
    from tdmpc2.envs import make_env
    from tdmpc2.evaluate import episode_seed, play_episode

    checkpoint = os.path.join(run_dir, "models", f"step_{step}.pt")
    cfg, actor = variant_actor(variant, run_dir, checkpoint)
    env = make_env(cfg)
    returns, start = [], time.time()
    for episode in range(episodes):
        torch.manual_seed(episode)
        returns.append(play_episode(actor, env, episode_seed(cfg.seed, episode))["episode_reward"])
    row = dict(run=os.path.relpath(run_dir), task=cfg.task, seed=cfg.seed, step=step, variant=variant,
               mean_return=statistics.mean(returns), episodes=episodes,
               returns=" ".join(f"{r:.0f}" for r in returns), seconds=round(time.time() - start, 1))
    print(f"{row['run']} step {step} {variant:10s} {row['mean_return']:7.1f}  [{row['returns']}]", flush=True)
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="work dirs of training runs (with models/step_N.pt)")
    p.add_argument("--steps", type=int, nargs="+", required=True, help="checkpoint steps to probe")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--out", help="CSV to write (default: print only)")
    a = p.parse_args()
    if a.episodes < 1:
        raise SystemExit("--episodes must be at least 1.")
    torch.set_num_threads(1)
    rows = []
    for run in a.runs:
        for step in a.steps:
            if not os.path.exists(os.path.join(run, "models", f"step_{step}.pt")):
                print(f"skip {run} step {step}: no models/step_{step}.pt", flush=True)
                continue
            rows += [probe(run, step, variant, a.episodes) for variant in a.variants]
    if a.out and rows:
        import pandas as pd

        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        pd.DataFrame(rows).to_csv(a.out, index=False)
        print(f"wrote {a.out} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
