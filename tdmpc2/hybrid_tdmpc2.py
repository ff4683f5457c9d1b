"""HybridTDMPC2: the TD-MPC2 agent whose planner starts on the true simulator.

    cfg = load_config(task="cartpole-balance", hybrid_mpc=True)
    env = make_env(cfg)
    agent = HybridTDMPC2(cfg, env)
    agent.update_training_step(step)          # every step (the trainer does this)
    action = agent.act(obs, t0=True)
    agent.get_hybrid_info()["classical_horizon"]

With `hybrid_mpc=false`, without an env, on a task without a simulator interface, or while the
schedule's H_c is 0, `plan` is exactly TD-MPC2's. Learning (`update`) is TD-MPC2's, plus the
teaching terms of `tdmpc2.teaching` when they are on (expert oversampling of the batch, planner
distillation in the policy loss and return lower bounds on the Q targets; all off by default).
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch

from tdmpc2.common.buffer import is_expert
from tdmpc2.common.device import matmul_precision
from tdmpc2.common.mppi import EliteUpdate
from tdmpc2.gate import PlannerGate
from tdmpc2.hand_over import Trust
from tdmpc2.tdmpc2 import TDMPC2
from tdmpc2.teaching import PolicyPriorActor, TeachingConfig, distillation_loss, lower_bounded, return_bound

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
        self.teaching = TeachingConfig.from_config(cfg)
        self._labels = None  # the expert labels of the batch being learned from (distillation)
        self._bound = self._raised = None  # its Q-target bounds (return_bound), the share they raised
        self.gate = PlannerGate() if cfg.learned_gate == "prior" else None  # tdmpc2.gate
        self._gate_suspended = False
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
    def _flag_set(self, name: str):
        """The boolean attribute `name` is True inside the block, and as before after it."""
        previous = getattr(self, name)
        setattr(self, name, True)
        try:
            yield self
        finally:
            setattr(self, name, previous)

    def learned_only(self):
        """Plan with H_c = 0 (plain TD-MPC2) inside the block, e.g. for the learned-only evaluation."""
        return self._flag_set("_learned_only")

    # ------------------------------------------------------------------ the gate (tdmpc2.gate)
    @property
    def acts_with_prior(self) -> bool:
        """Whether an eval-mode act now returns the prior's mean instead of planning: the gate is
        on, not suspended, prefers the prior, and the agent acts learned-only (H_c = 0)."""
        gate = self.gate
        return (gate is not None and gate.use_prior and not self._gate_suspended
                and self.classical_horizon == 0)

    def gate_suspended(self):
        """Plan whatever the gate says inside the block (the planner's own evaluation)."""
        return self._flag_set("_gate_suspended")

    def observe_gate(self, planner_return: float, prior_return: float) -> None:
        """Feed one evaluation's learned-only planner and prior returns to the gate."""
        if self.gate is not None:
            self.gate = self.gate.observe(planner_return, prior_return, self.cfg.learned_gate_margin)

    @torch.no_grad()
    def act(self, obs, t0: bool = False, eval_mode: bool = False, task=None) -> torch.Tensor:
        """TD-MPC2's act; in eval mode with the gate preferring the prior (`acts_with_prior`),
        the prior alone, acting exactly as the evaluation that scored it (`PolicyPriorActor`)."""
        if eval_mode and self.acts_with_prior:
            return PolicyPriorActor(self).act(obs)
        return super().act(obs, t0=t0, eval_mode=eval_mode, task=task)

    # ------------------------------------------------------------------ planning
    @torch.no_grad()
    def plan(self, obs: torch.Tensor, t0: bool = False, eval_mode: bool = False) -> torch.Tensor:
        if self.classical_horizon == 0:
            if self.hybrid is not None:  # its warm starts are stale once the learned planner acts
                self.hybrid.reset()
            return super().plan(obs, t0=t0, eval_mode=eval_mode)
        return self.hybrid.plan(obs, t0=t0, eval_mode=eval_mode)

    @torch.no_grad()
    def learned_plan(self, obs) -> EliteUpdate:
        """TD-MPC2's MPPI at `obs` from a cold start (as at an episode's first step), returning its
        result and leaving the agent's warm start, last plan and planned action as they were (the
        proposals of simulated elite branches, tdmpc2.branches)."""
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(1, -1)
        with matmul_precision(self.cfg.matmul_precision):
            return self.mppi_from(obs, torch.zeros_like(self._prev_mean))

    def observe_evaluation(self, learned_return: float, hybrid_return: float, hybrid_horizon: int) -> None:
        """Feed one side-by-side evaluation (hybrid planner at H_c = `hybrid_horizon`) to the trust
        in the learned planner (`tdmpc2.hand_over`)."""
        if self.hybrid is not None:
            self.hybrid.observe_evaluation(learned_return, hybrid_return, self.hybrid.is_expert(hybrid_horizon))

    def needs_hybrid_evaluation(self, hybrid_horizon: int) -> bool:
        """Whether an evaluation at H_c = `hybrid_horizon` should score the hybrid planner: always
        with hybrid_eval=always; with hybrid_eval=expert only while the trust has no expert return
        yet or when this evaluation would be one (the trust needs nothing else from it)."""
        if self.hybrid is None or self.cfg.hybrid_eval == "always":
            return True
        return self.hybrid.trust.expert_evals == 0 or self.hybrid.is_expert(hybrid_horizon)

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

    # ------------------------------------------------------------------ learning from the simulator
    def teaching_progress(self) -> tuple[float, float]:
        """(H_c of the transition schedule / max_classical_horizon, trust): what teaching decays follow."""
        if self.hybrid is None:
            return 0.0, 1.0
        return self.hybrid.get_classical_horizon() / max(self.cfg.max_classical_horizon, 1), self.hybrid.trust.value

    def update(self, buffer) -> dict[str, torch.Tensor]:
        """TD-MPC2's update; with expert oversampling, distillation or return bounds on, the batch
        draws its expert share and carries the planner's labels to `policy_extra_loss` and its
        returns to go to `_td_targets`."""
        teach = self.teaching
        if self.hybrid is None or not teach.changes_update:
            return super().update(buffer)
        progress = self.teaching_progress()
        share = teach.expert_share(*progress)
        batch, provenance = buffer.sample_labelled(share)
        weight = teach.distill_weight(*progress)
        self._labels = (weight, provenance.expert_action) if weight > 0 and provenance is not None else None
        if provenance is not None:
            self._bound = return_bound(teach.return_bound, provenance.source, provenance.return_to_go)
        try:
            stats = self.update_on_batch(batch.obs, batch.action, batch.reward, batch.terminated)
        finally:
            self._labels = self._bound = None
        if self._raised is not None:
            stats["return_bound_raised"], self._raised = self._raised, None
        if provenance is not None:
            stats["expert_share"] = is_expert(provenance.source[0]).float().mean()  # slices a planner starts
        stats["expert_fraction"] = torch.tensor(share)
        stats["distill_weight"] = torch.tensor(weight)
        return stats

    def _td_targets(self, next_z, reward, terminated):
        """TD-MPC2's targets, raised to the batch's return bounds (`return_bound`) when it has any."""
        targets = super()._td_targets(next_z, reward, terminated)
        if self._bound is None:
            return targets
        targets, raised = lower_bounded(targets, self._bound)
        self._raised = raised.float().mean()  # the share of targets the bound raised
        return targets

    def policy_extra_loss(self, zs: torch.Tensor, sample):
        """Planner distillation (`tdmpc2.teaching`): pulls tanh(mu) towards the labels of the
        batch, on the latents zs[:-1] the policy loss already uses."""
        if self._labels is None:
            return None
        weight, labels = self._labels
        H = labels.shape[0]
        mean = sample.mean[:H]
        keep = None
        if self.teaching.distill_q_filter:  # keep a label only where Q prefers it to pi's mean
            with torch.no_grad():
                z, pair = zs[:H], self.model.random_pair()
                q_label = self.model.Q(z, torch.nan_to_num(labels), pair, "avg")
                q_mean = self.model.Q(z, mean.detach(), pair, "avg")
                keep = q_label >= q_mean
        loss = distillation_loss(mean, labels, self._rho[:H], keep)
        with torch.no_grad():
            labelled = torch.isfinite(labels).all(-1)
            gap = (mean.detach() - torch.nan_to_num(labels)).square().mean(-1)[labelled]
            stats = dict(distill_loss=loss.detach(), distill_labelled=labelled.float().mean(),
                         distill_mse=gap.mean() if gap.numel() else torch.tensor(float("nan")))
            if keep is not None:
                stats["distill_kept"] = (keep.squeeze(-1) & labelled).float().sum() / labelled.float().sum().clamp(min=1)
        return weight * loss, stats

    def behaviour_cloning_update(self, buffer) -> dict[str, torch.Tensor]:
        """One update of the policy prior alone on the distillation term (the burst that may
        follow classical seeding): labelled slices, latents from the encoder."""
        batch, provenance = buffer.sample_labelled(1.0)
        if provenance is None:
            raise RuntimeError("Behaviour cloning needs a buffer with provenance (the hybrid trainer records it).")
        H = provenance.expert_action.shape[0]
        with torch.no_grad():
            zs = self.model.encode(batch.obs[:H])
        loss = distillation_loss(self.model.pi(zs).mean, provenance.expert_action, self._rho[:H])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model._pi.parameters(), self.cfg.grad_clip_norm)
        self.pi_optim.step()
        self.pi_optim.zero_grad(set_to_none=True)
        return dict(bc_loss=loss.detach())

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["hybrid"] = {"training_step": self.training_step}
        if self.hybrid is not None:
            state["hybrid"]["trust"] = self.hybrid.trust.state_dict()
        if self.gate is not None:
            state["hybrid"]["gate"] = self.gate.state_dict()
        return state

    def load_state_dict(self, state: dict, source: str = "checkpoint") -> None:
        super().load_state_dict(state, source)
        hybrid = state.get("hybrid") if isinstance(state, dict) else None
        if hybrid is not None:
            if self.hybrid is not None and "trust" in hybrid:
                self.hybrid.trust = Trust.from_state(hybrid["trust"])
            if self.gate is not None and "gate" in hybrid:
                self.gate = PlannerGate.from_state(hybrid["gate"])
            self.update_training_step(int(hybrid["training_step"]))
