"""Train HybridTDMPC2 online (hydra entry point).

    python train_hybrid.py task=cartpole-balance hybrid_mpc=true            # from tdmpc2/
    python -m tdmpc2.train_hybrid task=cheetah-run hybrid_mpc=true max_classical_horizon=8 \\
        transition_steps=500000 transition_schedule=exponential
    python tdmpc2/train_hybrid.py task=walker-walk hybrid_mpc=false         # plain TD-MPC2

Same config keys, logs and checkpoints as tdmpc2/train.py; the trainer steps the transition
schedule, logs the hybrid metrics and evaluates both the hybrid and the learned-only planner.
"""
from __future__ import annotations

import os
import sys

if not __package__:  # run by path: tdmpc2/tdmpc2.py would shadow the package `tdmpc2`
    _HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    sys.path.insert(0, os.path.dirname(_HERE))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from tdmpc2.hybrid_tdmpc2 import HybridTDMPC2  # noqa: E402
from tdmpc2.hybrid_trainer import HybridTrainer  # noqa: E402
from tdmpc2.train import hydra_argv, launch  # noqa: E402


def make_hybrid(cfg: DictConfig, env) -> HybridTDMPC2:
    return HybridTDMPC2(cfg, env)


@hydra.main(config_path=".", config_name="config", version_base=None)
def _hydra_main(cfg: DictConfig) -> None:
    launch(cfg, make_hybrid, trainer_cls=HybridTrainer)


def main() -> None:
    sys.argv = hydra_argv(sys.argv)
    _hydra_main()


if __name__ == "__main__":
    main()
