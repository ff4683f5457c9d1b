"""HybridTDMPC2: the TD-MPC2 agent whose planner starts on the true simulator.

    cfg = load_config(task="cartpole-balance", hybrid_mpc=True)
    env = make_env(cfg)
    agent = HybridTDMPC2(cfg, env)
    agent.update_training_step(step)          # every step (the trainer does this)
    action = agent.act(obs, t0=True)
    agent.get_hybrid_info()["classical_horizon"]

With `hybrid_mpc=false`, without an env, on a task without a simulator interface, or while the
schedule's H_c is 0, `plan` is exactly TD-MPC2's. Learning (`update`) is TD-MPC2's unchanged.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch

from tdmpc2.hand_over import Trust
from tdmpc2.tdmpc2 import TDMPC2

_WARNED: set = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


class HybridTDMPC2(TDMPC2):
    def __init__(self, cfg, env=None, device=None):
        super().__init__(cfg, device)
        self.env = env
        self.training_step = 0
        self.hybrid = None
        self._learned_only = False
        if not cfg.hybrid_mpc:
            return
        if env is None:
            _warn_once("HybridTDMPC2 got no env: it cannot reach a simulator and plans as plain TD-MPC2.")
            return
        from tdmpc2.envs import make_interface
        from tdmpc2.hybrid_mpc import HybridMPC, solver_from_config

        interface = make_interface(cfg, env)
        if interface is None:
            _warn_once(f"Task '{cfg.task}' has no simulator interface: hybrid_mpc plans as plain TD-MPC2.")
            return
        scorer = interface
        if cfg.scoring_model == "exact" and getattr(interface, "planning", "exact") != "exact":
            scorer = make_interface(cfg, env, planning_model="exact")  # the env's own physics scores
        self.hybrid = HybridMPC.from_config(cfg, self, interface, solver_from_config(cfg, interface), scorer)

    # ------------------------------------------------------------------ schedule
    def update_training_step(self, step: int) -> None:
        """Move the classical horizon along the transition schedule (call every training step)."""
        self.training_step = int(step)
        if self.hybrid is not None:
            self.hybrid.update_step(step)

    @property
    def classical_horizon(self) -> int:
        if self.hybrid is None or self._learned_only:
            return 0
        return self.hybrid.get_classical_horizon()

    @contextmanager
    def learned_only(self):
        """Plan with H_c = 0 (plain TD-MPC2) inside the block, e.g. for the learned-only evaluation."""
        previous, self._learned_only = self._learned_only, True
        try:
            yield self
        finally:
            self._learned_only = previous

    # ------------------------------------------------------------------ planning
    @torch.no_grad()
    def plan(self, obs: torch.Tensor, t0: bool = False, eval_mode: bool = False) -> torch.Tensor:
        if self.classical_horizon == 0:
            if self.hybrid is not None:  # its warm starts are stale once the learned planner acts
                self.hybrid.reset()
            return super().plan(obs, t0=t0, eval_mode=eval_mode)
        return self.hybrid.plan(obs, t0=t0, eval_mode=eval_mode)

    def observe_evaluation(self, learned_return: float, hybrid_return: float, hybrid_horizon: int) -> None:
        """Feed one side-by-side evaluation (hybrid planner at H_c = `hybrid_horizon`) to the trust
        in the learned planner (`tdmpc2.hand_over`)."""
        if self.hybrid is not None:
            self.hybrid.observe_evaluation(learned_return, hybrid_return, self.hybrid.is_expert(hybrid_horizon))

    @property
    def bridge_weight(self) -> float:
        return self.hybrid.bridge_weight() if self.hybrid is not None and self.classical_horizon > 0 else 0.0

    def get_hybrid_info(self) -> dict:
        cfg = self.cfg
        info = dict(hybrid_enabled=self.hybrid is not None, classical_horizon=self.classical_horizon,
                    classical_plan_horizon=cfg.classical_plan_horizon, bridge_weight=self.bridge_weight,
                    max_classical_horizon=cfg.max_classical_horizon, min_classical_horizon=cfg.min_classical_horizon,
                    transition_schedule=cfg.transition_schedule, transition_steps=cfg.transition_steps,
                    current_step=self.training_step, classical_algorithm=cfg.classical_algorithm)
        if self.hybrid is not None:
            trust = self.hybrid.trust
            info.update(trust=trust.value, trust_ratio=trust.ratio, expert_return=trust.expert_return)
        last = self.hybrid.last_info if self.hybrid is not None else None
        if last is not None:
            info.update({f"last_{k}" if k == "classical_horizon" else k: v for k, v in last.as_dict().items()})
        return info

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["hybrid"] = {"training_step": self.training_step}
        if self.hybrid is not None:
            state["hybrid"]["trust"] = self.hybrid.trust.state_dict()
        return state

    def load_state_dict(self, state: dict, source: str = "checkpoint") -> None:
        super().load_state_dict(state, source)
        hybrid = state.get("hybrid") if isinstance(state, dict) else None
        if hybrid is not None:
            if self.hybrid is not None and "trust" in hybrid:
                self.hybrid.trust = Trust.from_state(hybrid["trust"])
            self.update_training_step(int(hybrid["training_step"]))
