"""Learning from the simulator (hybrid-design.md sec. 7): what the classical planner teaches the
learner, beside the planner (`hybrid_planner`) and the TD update (`tdmpc2`).

Mechanisms (each off by default; off is the behaviour before it existed):

* classical seeding (`seed_policy=classical`): during the seed steps the classical solver acts on
  the simulator in receding horizon over T_c, plus Gaussian noise of std `seed_noise_std` (torch's
  RNG, so a resumed run repeats it); TD-MPC2's pre-training burst follows, then
  `distill_bc_updates` behaviour-cloning updates of the policy prior alone;
* provenance: every transition the hybrid trainer stores records its source (random, classical,
  hybrid, learned), the planner's action before noise and the expert label (`common.buffer`);
* planner distillation (`distill_coef`, `distill_schedule`, `distill_q_filter`): the policy loss
  gains  c d(t) sum_t rho^t mean_B m ||tanh(mu(z_t)) - a*_t||^2 / A  over labelled entries
  (m = 1 where there is a label a*, and, with the Q-filter, where Q(z, a*) >= Q(z, tanh mu)).
  The squashed mean is regressed onto the label (TD3+BC's form): actions live in [-1, 1], so the
  term is O(1) like the Q term that the running scale normalises, and saturated labels
  (bang-bang controls, a* = +-1) stay finite, where the squashed Gaussian's likelihood would need
  atanh(a*) = inf and grows without bound as sigma shrinks;
* expert oversampling (`expert_fraction`, `expert_schedule`): round(f d(t) B) of every batch's
  slices start with a classical or hybrid transition;
* learner hand-over episodes (`learner_episode_prob`, `relabel_fraction`): while H_c > 0, a share
  of training episodes give control to the learned-only planner from a uniformly drawn step; a
  share of those states get the classical planner's action as their label (planned from a
  snapshot of the live state, which is left untouched);
* return lower bounds (`return_bound`: none | expert | all): the Q target of a transition becomes
  max(y_t, G_t), G_t its episode's discounted return to go (`common.buffer.returns_to_go`), on
  the transitions a planner on the simulator chose (`expert`) or on every stored one (`all`).
  With rewards >= 0 (checked per episode) G_t of any episode, truncated or not, is a lower bound
  of the optimal value, so the bound lifts early underestimates of the value of what the expert
  already achieved and is inactive once y_t exceeds it (Monte-Carlo augmented targets, Wilcox et
  al. 2022); branch slices carry no return and keep y_t;
* the policy prior's own return (`PolicyPriorActor`) in every hybrid evaluation.

d(t), the decay of a teaching term, follows `*_schedule`: `constant` (1), `horizon` (the
transition schedule's H_c / max_classical_horizon) or `trust` (1 - the trust in the learned
planner, `tdmpc2.hand_over`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tdmpc2.classical.receding import RecedingHorizon
from tdmpc2.common.buffer import CLASSICAL, HYBRID, LEARNED, RANDOM, is_expert  # noqa: F401  (source codes, re-exported)

DECAYS = ("constant", "horizon", "trust")
RETURN_BOUNDS = ("none", "expert", "all")


def decay(schedule: str, classical_fraction: float, trust: float) -> float:
    """d(t) in [0, 1] of a teaching term for `schedule` (DECAYS)."""
    if schedule == "constant":
        return 1.0
    if schedule == "horizon":
        return min(max(float(classical_fraction), 0.0), 1.0)
    if schedule == "trust":
        return 1.0 - min(max(float(trust), 0.0), 1.0)
    raise ValueError(f"Unknown teaching schedule {schedule!r}; expected one of {', '.join(DECAYS)}.")


def distillation_loss(mean_action: torch.Tensor, label: torch.Tensor, rho: torch.Tensor,
                      keep: torch.Tensor | None = None) -> torch.Tensor:
    """sum_t rho_t / H * mean_B [m ||mean - label||^2 / A] for mean_action and label (H, B, A)
    (label NaN where there is none), rho (H,) and an optional mask keep (H, B, 1); entries
    without a label count as zero, so the term shrinks with the labelled share of the batch."""
    labelled = torch.isfinite(label).all(-1, keepdim=True)
    if keep is not None:
        labelled = labelled & keep
    sq = (mean_action - torch.nan_to_num(label)).square().mean(-1, keepdim=True)
    per_step = (sq * labelled).mean((1, 2))
    return (per_step * rho).mean()


def lower_bounded(targets: torch.Tensor, bound: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(max(targets, bound) where the bound is finite, else targets; the mask of raised
    entries) for targets and bound of one shape."""
    raised = torch.isfinite(bound) & (bound > targets)
    return torch.where(raised, bound, targets), raised


def return_bound(mode: str, source: torch.Tensor, returns: torch.Tensor | None) -> torch.Tensor | None:
    """The returns to go (H, B, 1) kept as Q-target bounds under `mode` (RETURN_BOUNDS; NaN where
    none), from the batch's source codes (H, B); None when nothing is bounded."""
    if mode == "none" or returns is None:
        return None
    if mode == "all":
        return returns
    if mode == "expert":
        return torch.where(is_expert(source).unsqueeze(-1), returns, torch.full_like(returns, float("nan")))
    raise ValueError(f"Unknown return_bound {mode!r}; expected one of {', '.join(RETURN_BOUNDS)}.")


@dataclass(frozen=True)
class TeachingConfig:
    """The teaching keys of a config (numbers only)."""
    distill_coef: float = 0.0
    distill_schedule: str = "trust"
    distill_q_filter: bool = False
    distill_bc_updates: int = 0
    expert_fraction: float = 0.0
    expert_schedule: str = "trust"
    learner_episode_prob: float = 0.0
    relabel_fraction: float = 0.0
    return_bound: str = "none"

    @classmethod
    def from_config(cls, cfg) -> "TeachingConfig":
        return cls(**{k: cfg[k] for k in cls.__dataclass_fields__})

    @property
    def active(self) -> bool:
        """Whether any mechanism acting after the seed phase is on."""
        return self.changes_update or self.learner_episode_prob > 0

    @property
    def changes_update(self) -> bool:
        """Whether a mechanism acting inside update() is on (the batch, the policy loss, the Q targets)."""
        return self.distill_coef > 0 or self.expert_fraction > 0 or self.return_bound != "none"

    def distill_weight(self, classical_fraction: float, trust: float) -> float:
        return self.distill_coef * decay(self.distill_schedule, classical_fraction, trust) if self.distill_coef else 0.0

    def expert_share(self, classical_fraction: float, trust: float) -> float:
        if not self.expert_fraction:
            return 0.0
        return self.expert_fraction * decay(self.expert_schedule, classical_fraction, trust)


class ClassicalExpert:
    """Receding-horizon classical control on the simulator from the live state: the seeder
    (with noise) and the relabeller (without)."""

    def __init__(self, solver, interface, horizon: int, noise_std: float = 0.0):
        self.controller = RecedingHorizon(solver, interface, horizon)
        self.interface, self.noise_std = interface, float(noise_std)

    @property
    def horizon(self) -> int:
        return self.controller.horizon

    def reset(self) -> None:
        self.controller.reset()

    def label(self) -> torch.Tensor:
        """The solver's first action from the live state (warm-started by shifting), in bounds."""
        action = torch.as_tensor(self.controller.plan().actions[0], dtype=torch.float32)
        return self._clip(action)

    def act(self, t0: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(action to apply, the planner's action before noise): the label plus Gaussian noise,
        clipped to the action bounds."""
        if t0:
            self.reset()
        planned = self.label()
        action = planned + self.noise_std * torch.randn_like(planned) if self.noise_std > 0 else planned
        return self._clip(action), planned

    def _clip(self, action: torch.Tensor) -> torch.Tensor:
        low, high = self.interface.action_bounds()
        return torch.clamp(action, torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32))


class HandOver:
    """Learner hand-over episodes: per episode, whether and from which step the learned-only
    planner acts, and which of its states get a classical label. Draws come from torch's RNG
    (saved with resume.pt) and only when the probability is above 0."""

    def __init__(self, probability: float, relabel_fraction: float, episode_length: int):
        self.probability, self.relabel_fraction = float(probability), float(relabel_fraction)
        self.episode_length = int(episode_length)
        self.start: int | None = None  # the current episode's hand-over step, None: no hand-over

    def new_episode(self, hybrid_acting: bool) -> None:
        self.start = None
        if self.probability > 0 and hybrid_acting and float(torch.rand(())) < self.probability:
            self.start = int(torch.randint(self.episode_length, ()))

    def learner_acts(self, t: int) -> bool:
        return self.start is not None and t >= self.start

    def relabel(self) -> bool:
        return self.relabel_fraction > 0 and float(torch.rand(())) < self.relabel_fraction


class PolicyPriorActor:
    """Acts with the mean of the agent's policy prior: no planning, one forward pass per step."""

    def __init__(self, agent):
        self.agent = agent

    @torch.no_grad()
    def act(self, obs, t0: bool = False, eval_mode: bool = True, task=None) -> torch.Tensor:
        """tanh(mu(h(obs))); the RNG the policy draws from is put back, so scoring the prior
        never changes the training run's random stream."""
        agent = self.agent
        obs = torch.as_tensor(obs, dtype=torch.float32, device=agent.device).reshape(1, -1)
        with torch.random.fork_rng(devices=[agent.device] if agent.device.type == "cuda" else []):
            return agent.model.pi(agent.model.encode(obs)).mean[0].cpu()
