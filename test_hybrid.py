"""Smoke check of hybrid-tdmpc2 (under 2 minutes on a CPU): exits non-zero on any failure.

    python test_hybrid.py

1. builds a hybrid agent on cartpole-balance (model size 1, small planner),
2. prints the classical horizon over training for every transition schedule,
3. selects actions at several classical horizons (including 0 = plain TD-MPC2),
4. checks that bad configurations are rejected with clear one-sentence messages.
"""
from __future__ import annotations

import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

FAILURES: list[str] = []


def check(name: str):
    def wrap(fn):
        start = time.time()
        try:
            fn()
            print(f"[ ok ] {name} ({time.time() - start:.1f}s)")
        except Exception as e:  # a smoke test reports every failure and keeps going
            FAILURES.append(name)
            print(f"[FAIL] {name}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3)
        return fn
    return wrap


def main() -> int:
    import numpy as np
    import torch

    from tdmpc2.config import ConfigError, load_config
    from tdmpc2.envs import make_env
    from tdmpc2.hybrid_tdmpc2 import HybridTDMPC2
    from tdmpc2.schedules import SCHEDULES, classical_horizon

    torch.set_num_threads(1)
    small = dict(task="cartpole-balance", hybrid_mpc=True, model_size=1, num_samples=128, num_elites=16,
                 num_pi_trajs=8, iterations=3, hybrid_prefix_samples=16, device="cpu", transition_steps=1000)
    state = {}

    @check("create a hybrid agent")
    def _():
        cfg = load_config(**small)
        env = make_env(cfg)
        agent = HybridTDMPC2(cfg, env)
        info = agent.get_hybrid_info()
        assert info["hybrid_enabled"] and info["classical_horizon"] == cfg.max_classical_horizon, info
        state.update(cfg=cfg, env=env, agent=agent)

    @check("schedules over training")
    def _():
        steps = [0, 100, 250, 500, 750, 999, 1000, 2000]
        print(f"        {'step':>12}" + "".join(f"{s:>6}" for s in steps))
        for kind in SCHEDULES:
            hs = [classical_horizon(kind, s, 10, 0, 1000) for s in steps]
            print(f"        {kind:>12}" + "".join(f"{h:>6}" for h in hs))
            assert hs[0] == 10 and all(b <= a for a, b in zip(hs, hs[1:]))
            assert kind == "constant" or hs[-2] == 0

    @check("actions at classical horizons 10, 5, 2, 0")
    def _():
        agent, env = state["agent"], state["env"]
        obs = env.reset()
        for step, expected in [(0, 10), (500, 5), (800, 2), (1000, 0)]:
            agent.update_training_step(step)
            assert agent.classical_horizon == expected, (step, agent.classical_horizon)
            start = time.time()
            action = agent.act(obs, t0=True, eval_mode=True)
            assert action.shape == (1,) and torch.all(action.abs() <= 1) and torch.isfinite(action).all()
            info = agent.get_hybrid_info()
            extra = (f" iLQG {info['ilqg_status']}, cost {info['ilqg_cost']:.3g}, value {info['chosen_value']:.3f}"
                     if expected else " (plain TD-MPC2)")
            print(f"        H_c={expected:<2} action {np.round(action.numpy(), 3)} in {1e3 * (time.time() - start):.0f} ms{extra}")
            obs, *_ = env.step(action)

    @check("bad configurations are rejected with clear messages")
    def _():
        bad = [dict(min_classical_horizon=12, max_classical_horizon=3), dict(max_classical_horizon=-2),
               dict(transition_schedule="sigmoid"), dict(classical_algorithm="cem"), dict(transition_steps=0),
               dict(transiton_steps=10), dict(task="cartpol-balance")]
        for overrides in bad:
            try:
                load_config(**{**small, **overrides})
            except ConfigError as e:
                message = str(e)
                assert "\n" not in message and message.endswith((".", "?")), message
                print(f"        {overrides} -> {message}")
            else:
                raise AssertionError(f"{overrides} was accepted")

    print(f"\n{'FAILED: ' + ', '.join(FAILURES) if FAILURES else 'all smoke checks passed'}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
