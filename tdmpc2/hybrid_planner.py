"""HybridMPC: the classical solver on the simulator composed with TD-MPC2's MPPI over the learned
model (hybrid-design.md sec. 2 and 6). Re-exported by `tdmpc2.hybrid_mpc`.

Notation: T_c the classical solver's horizon (`classical_plan_horizon`), H_c <= T_c the hand-over
step, H the learned horizon, N MPPI candidates over H_c + H steps, M simulated prefixes per
iteration, A action dim, w the bridge weight. Candidate actions are time-major `(H_c + H, N, A)`;
`group (N,)` maps each candidate to the simulated prefix it uses (prefix 0 is the nominal).

One plan: the solver plans T_c steps from the live state x0 (warm-started by shifting); its first
H_c actions are the nominal prefix U, the rest with its gains is the classical continuation
(`tdmpc2.hybrid_bridge`). Candidate layout of every MPPI iteration:
  0          the nominal: prefix U, tail = current learned mean;
  1 .. P     policy-prior trajectories: prefix U, tails rolled out by the policy from the latent
             of the nominal's observation at H_c;
  P+1 .. N-1 samples: prefixes from M Gaussian draws around the mean (each shared by about
             (N-P-1)/M candidates), tails drawn independently around the learned mean.
Each candidate's value is exact for its own action sequence:
  G = sum_{t<H_c} g^t r_t + g^{H_c} [ (1 - w) L(z_{H_c}, tail) + w B(x_{H_c}) ],
with true rewards r and the bridge B simulated on the scoring model (the env's own by default),
and L TD-MPC2's value of the tail from z = h(obs(x_{H_c})). At w = 1 the learned part is not
evaluated. The executed action is the first action of an elite drawn by weight among those
better than the nominal by a margin (`hybrid_margin` x max(|G_nominal|, 1)), else the nominal's
own: the plan is never worse than the classical one under the hybrid objective, and the hybrid
leaves the classical plan only for a clear gain (the hybrid value is truncated at T_c, and
gains within the margin measured as noise that cost return later in the episode).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch

from tdmpc2.classical.receding import shifted
from tdmpc2.common.mppi import elite_update, gumbel_select, sample_actions
from tdmpc2.hand_over import Trust, adaptive_horizon, bridge_weight, updated_trust
from tdmpc2.hybrid_bridge import ClassicalContinuation, bridge_returns
from tdmpc2.schedules import classical_horizon

TIE_TOLERANCE = 1e-5  # relative floor of the margin by which a candidate must beat the nominal


@dataclass
class HybridPlanInfo:
    """What one hybrid plan did (numbers only; the trainer logs them)."""
    classical_horizon: int
    plan_horizon: int           # T_c, the solver's lookahead
    bridge_weight: float        # w
    ilqg_cost: float            # the classical solver's cost, iterations, status and seconds
    ilqg_iterations: int
    ilqg_status: str
    ilqg_time: float
    sim_scoring_time: float     # seconds simulating candidate prefixes (+ observations)
    bridge_time: float          # seconds simulating the bridges
    learned_scoring_time: float  # seconds in the learned model scoring tails
    total_time: float
    sim_steps: int              # agent steps simulated for scoring (prefixes + bridges)
    nominal_value: float
    chosen_value: float
    bridge_value: float         # B of the nominal (nan when w = 0)
    chose_nominal: bool         # no candidate beat the nominal
    solver_model: str           # the model the classical solver planned on
    scoring_model: str          # the model that scored prefixes and bridges

    def as_dict(self) -> dict:
        return asdict(self)


class PrefixScores(NamedTuple):
    """Simulated prefixes: discounted true returns (M,), latents at H_c (M, D) or None (w = 1),
    bridge values (M,) or None (w = 0)."""
    returns: torch.Tensor
    latents: torch.Tensor | None
    bridge: torch.Tensor | None


class HybridMPC:
    """Owns the simulator interfaces, the classical solver, the hand-over state and the seeded MPPI."""

    def __init__(self, agent, interface, solver, *, scoring_interface=None, max_classical_horizon: int = 10,
                 min_classical_horizon: int = 0, transition_steps: int = 1_000_000,
                 transition_schedule: str = "linear", plan_horizon: int | None = None,
                 bridge_weight="schedule", bridge_feedback: bool = True, prefix_samples: int = 64,
                 prefix_std: float = 0.3, margin: float = 0.0, trust_low: float = 0.5, trust_high: float = 0.9,
                 trust_smoothing: float = 0.5):
        self.agent, self.interface, self.solver = agent, interface, solver
        self.scorer = scoring_interface if scoring_interface is not None else interface
        self.max_h, self.min_h = int(max_classical_horizon), int(min_classical_horizon)
        self.plan_horizon = max(int(plan_horizon or self.max_h), self.max_h, 1)
        self.transition_steps, self.schedule = int(transition_steps), transition_schedule
        self.bridge_mode, self.bridge_feedback = bridge_weight, bool(bridge_feedback)
        self.prefix_samples, self.prefix_std = int(prefix_samples), float(prefix_std)
        self.margin = max(float(margin), TIE_TOLERANCE)
        self.trust_settings = (float(trust_low), float(trust_high), float(trust_smoothing))
        self.trust = Trust()
        self.step = 0
        self._h = self._scheduled_horizon()
        self._warm: np.ndarray | None = None
        self._prev_mean: torch.Tensor | None = None  # (H_c' + H, A) of the previous hybrid plan
        self.last_info: HybridPlanInfo | None = None

    @classmethod
    def from_config(cls, cfg, agent, interface, solver, scoring_interface=None) -> "HybridMPC":
        return cls(agent, interface, solver, scoring_interface=scoring_interface,
                   max_classical_horizon=cfg.max_classical_horizon, min_classical_horizon=cfg.min_classical_horizon,
                   transition_steps=cfg.transition_steps, transition_schedule=cfg.transition_schedule,
                   plan_horizon=cfg.classical_plan_horizon, bridge_weight=cfg.bridge_weight,
                   bridge_feedback=cfg.bridge_feedback, prefix_samples=cfg.hybrid_prefix_samples,
                   prefix_std=cfg.hybrid_prefix_std, margin=cfg.hybrid_margin, trust_low=cfg.adaptive_trust_low,
                   trust_high=cfg.adaptive_trust_high, trust_smoothing=cfg.adaptive_smoothing)

    # ------------------------------------------------------------------ hand-over
    def _scheduled_horizon(self) -> int:
        if self.schedule == "adaptive":
            return adaptive_horizon(self.trust.value, self.max_h, self.min_h)
        return classical_horizon(self.schedule, self.step, self.max_h, self.min_h, self.transition_steps)

    def update_step(self, step: int) -> None:
        self.step = int(step)
        self._h = self._scheduled_horizon()

    def get_classical_horizon(self) -> int:
        return self._h

    def bridge_weight(self, horizon: int | None = None) -> float:
        """w at H_c = `horizon` (default: the current H_c)."""
        Hc = self._h if horizon is None else int(horizon)
        return bridge_weight(self.bridge_mode, Hc, self.max_h, self.trust.value)

    def is_expert(self, horizon: int | None = None) -> bool:
        """Whether planning at `horizon` is the simulator-only expert (H_c = max, w = 1)."""
        Hc = self._h if horizon is None else int(horizon)
        return Hc == self.max_h > 0 and self.bridge_weight(Hc) == 1.0

    def observe_evaluation(self, learned_return: float, hybrid_return: float, hybrid_was_expert: bool) -> Trust:
        """Update the trust from one side-by-side evaluation; H_c follows when adaptive."""
        self.trust = updated_trust(self.trust, float(learned_return), float(hybrid_return), bool(hybrid_was_expert),
                                   *self.trust_settings)
        self._h = self._scheduled_horizon()
        return self.trust

    def reset(self) -> None:
        """Forget warm starts (a new episode, or the learned planner acted in between)."""
        self._warm, self._prev_mean = None, None

    # ------------------------------------------------------------------ planning
    @torch.no_grad()
    def plan(self, obs: torch.Tensor, t0: bool = False, eval_mode: bool = False,
             horizon: int | None = None) -> torch.Tensor:
        """Action (A,) for obs (1, obs_dim) from the live env's state, with H_c = `horizon` or the
        hand-over's value (> 0)."""
        agent, cfg = self.agent, self.agent.cfg
        Hc = self._h if horizon is None else int(horizon)
        if not 1 <= Hc <= self.plan_horizon:
            raise ValueError(f"HybridMPC.plan needs 1 <= H_c <= classical_plan_horizon ({self.plan_horizon}), "
                             f"got {Hc}; H_c = 0 is plain TD-MPC2.")
        H, A, dev, w = agent.horizon, cfg.action_dim, agent.device, self.bridge_weight(Hc)
        start = time.perf_counter()
        if t0:
            self.reset()
        x0 = self.interface.get_state()

        # 1. classical solve over T_c, warm-started from the previous plan shifted by one step
        result = self.solver.plan(x0, self.plan_horizon, self._warm_start(obs, self.plan_horizon))
        U = np.asarray(result.actions, dtype=np.float64)
        self._warm = shifted(U)
        continuation = ClassicalContinuation.from_plan(result, Hc)
        ilqg_time = time.perf_counter() - start

        # 2. the nominal prefix, simulated once (its return, latent and bridge serve every
        #    iteration), policy tails from its latent at H_c, and the initial sampling distribution
        timer = _Timer()
        nominal = torch.as_tensor(U[:Hc], dtype=torch.float32, device=dev)  # exactly candidate 0's prefix
        scores0 = self._score_prefixes(x0, nominal[None].double().cpu().numpy(), continuation, w, timer)
        P = cfg.num_pi_trajs
        mean = self._initial_mean(nominal, Hc, H, t0)
        std = torch.cat([torch.full((Hc, A), self.prefix_std, device=dev),
                         torch.full((H, A), float(cfg.max_std), device=dev)])

        # 3. seeded MPPI over H_c + H
        N, M, fixed = cfg.num_samples, self.prefix_samples, 1 + P
        if N - fixed < M:
            M = max(N - fixed, 1)
        group = torch.zeros(N, dtype=torch.long, device=dev)
        group[fixed:] = 1 + torch.arange(N - fixed, device=dev) % M
        actions = torch.empty(Hc + H, N, A, device=dev)
        actions[Hc:, 1:fixed] = (agent.policy_trajectories(scores0.latents, H, P) if w < 1
                                 else mean[Hc:, None].expand(H, P, A))
        prefixes = torch.empty(Hc, M + 1, A, device=dev)
        prefixes[:, 0] = nominal
        steps_per_prefix = self.plan_horizon if w > 0 else Hc  # simulated agent steps: prefix (+ bridge)
        sim_steps = steps_per_prefix
        for _ in range(cfg.mppi_iterations):
            sample_actions(mean[:Hc], std[:Hc], M, out=prefixes[:, 1:])
            actions[:Hc] = prefixes[:, group]
            actions[Hc:, 0] = mean[Hc:]
            sample_actions(mean[Hc:], std[Hc:], N - fixed, out=actions[Hc:, fixed:])
            scores = self._score_prefixes(x0, prefixes[:, 1:].transpose(0, 1).double().cpu().numpy(),
                                          continuation, w, timer)
            values = self._hybrid_value(_concat(scores0, scores), group, actions[Hc:], Hc, w, timer)
            sim_steps += M * steps_per_prefix
            nominal_value = values[0, 0].clone()
            plan = elite_update(actions, values, cfg.num_elites, cfg.temperature, cfg.min_std, cfg.max_std)
            mean, std = plan.mean, plan.std

        # 4. act: an elite better than the nominal by the margin, drawn by weight, else the nominal
        action, chosen_value, chose_nominal = self._select(plan, nominal, nominal_value, self.margin)
        agent.planned_action = action.clamp(-1, 1)  # before exploration noise: the distillation label
        if not eval_mode:
            action = action + plan.std[0] * torch.randn_like(action)
        self._prev_mean = plan.mean
        agent._prev_mean.copy_(plan.mean[:H])  # a fresh warm start should the learned planner take over
        agent.last_plan = plan
        self.last_info = HybridPlanInfo(
            classical_horizon=Hc, plan_horizon=self.plan_horizon, bridge_weight=w,
            ilqg_cost=float(result.cost), ilqg_iterations=int(result.iterations),
            ilqg_status=getattr(result.status, "name", str(result.status)).lower(), ilqg_time=ilqg_time,
            sim_scoring_time=timer.seconds["sim"], bridge_time=timer.seconds["bridge"],
            learned_scoring_time=timer.seconds["learned"], total_time=time.perf_counter() - start,
            sim_steps=sim_steps, nominal_value=float(nominal_value), chosen_value=float(chosen_value),
            bridge_value=float(scores0.bridge[0]) if scores0.bridge is not None else float("nan"),
            chose_nominal=chose_nominal, solver_model=str(getattr(self.interface, "planning", "exact")),
            scoring_model=str(getattr(self.scorer, "planning", "exact")))
        return action.clamp(-1, 1)

    def _initial_mean(self, nominal: torch.Tensor, Hc: int, H: int, t0: bool) -> torch.Tensor:
        """Sampling mean over H_c + H: the nominal prefix, then the previous hybrid plan's mean
        shifted by one step at the times the learned tail covers now (zeros where it has none)."""
        mean = torch.zeros(Hc + H, nominal.shape[1], device=nominal.device)
        mean[:Hc] = nominal
        if not t0 and self._prev_mean is not None:
            tail = self._prev_mean[Hc + 1:Hc + 1 + H]
            mean[Hc:Hc + len(tail)] = tail
        return mean

    @staticmethod
    def _select(plan, nominal: torch.Tensor, nominal_value: torch.Tensor, relative_margin: float):
        """(first action, its value, whether it is the nominal's): elites must beat the nominal by
        `relative_margin` x max(|nominal value|, 1)."""
        margin = relative_margin * max(1.0, abs(float(nominal_value)))
        better = (plan.elite_values > nominal_value + margin).float()
        if better.sum() <= 0:
            return nominal[0].clone(), nominal_value, True
        weights = plan.weights * better
        idx = gumbel_select(weights / weights.sum())
        return plan.elite_actions[0, idx], plan.elite_values[idx], False

    def _warm_start(self, obs: torch.Tensor, T: int) -> np.ndarray:
        """The previous classical plan shifted (last action held; T is fixed, so it fits); at an
        episode start, the policy prior's mean actions rolled through the learned model."""
        if self._warm is not None:
            return self._warm
        model = self.agent.model
        z = model.encode(obs)
        out = []
        for _ in range(T):
            a = model.pi(z).mean
            out.append(a)
            z = model.next(z, a)
        return torch.cat(out).double().cpu().numpy()

    # ------------------------------------------------------------------ scoring
    def _score_prefixes(self, x0: np.ndarray, prefixes: np.ndarray, continuation: ClassicalContinuation,
                        w: float, timer) -> PrefixScores:
        """Simulate prefixes (M, H_c, A) from x0 on the scoring model: their discounted true
        returns, the latents of their observations at H_c (w < 1) and their bridges (w > 0)."""
        agent, scorer = self.agent, self.scorer
        M, Hc = prefixes.shape[:2]
        dev, g = agent.device, agent.discount
        with timer("sim"):
            states, rewards = scorer.rollout(np.repeat(x0[None], M, axis=0), prefixes)
            returns = torch.as_tensor(rewards @ (g ** np.arange(Hc)), dtype=torch.float32, device=dev)
            latents = None
            if w < 1:
                obs = torch.as_tensor(scorer.observations(states[:, -1]), dtype=torch.float32, device=dev)
                latents = agent.model.encode(obs)
        bridge = None
        if w > 0:
            with timer("bridge"):
                b, _ = bridge_returns(scorer, states[:, -1], continuation, g, self.bridge_feedback)
                bridge = torch.as_tensor(b, dtype=torch.float32, device=dev)
        return PrefixScores(returns, latents, bridge)

    def _hybrid_value(self, scores: PrefixScores, group: torch.Tensor, tails: torch.Tensor, Hc: int,
                      w: float, timer) -> torch.Tensor:
        """Hybrid values (N, 1) of candidates whose simulated prefix is number group[i] of
        `scores` and whose learned tail is tails (H, N, A)."""
        tail = torch.zeros(tails.shape[1], 1, device=tails.device)
        if w < 1:
            with timer("learned"):
                tail = tail + (1.0 - w) * self.agent.estimate_value(scores.latents, tails, group)
        if w > 0:
            tail = tail + w * scores.bridge[group].unsqueeze(-1)
        return scores.returns[group].unsqueeze(-1) + self.agent.discount ** Hc * tail

    @torch.no_grad()
    def hybrid_values(self, actions: torch.Tensor, x0: np.ndarray | None = None, horizon: int | None = None,
                      weight: float | None = None, continuation: ClassicalContinuation | None = None) -> torch.Tensor:
        """Hybrid values (N, 1) of full candidates `actions` (H_c + H, N, A), each simulated on its
        own from x0 (default: the live state), with bridge weight `weight` (default: the current
        w) and `continuation` (default: the solver's plan from x0, cold-started)."""
        Hc = self._h if horizon is None else int(horizon)
        w = self.bridge_weight(Hc) if weight is None else float(weight)
        x0 = self.interface.get_state() if x0 is None else x0
        if continuation is None and w > 0:
            continuation = ClassicalContinuation.from_plan(self.solver.plan(x0, self.plan_horizon), Hc)
        group = torch.arange(actions.shape[1], device=actions.device)
        scores = self._score_prefixes(x0, actions[:Hc].transpose(0, 1).double().cpu().numpy(), continuation, w,
                                      _Timer())
        return self._hybrid_value(scores, group, actions[Hc:], Hc, w, _Timer())


def _concat(a: PrefixScores, b: PrefixScores) -> PrefixScores:
    return PrefixScores(*(None if x is None else torch.cat([x, y]) for x, y in zip(a, b)))


class _Timer:
    """Accumulates seconds per phase: `with timer("sim"): ...`."""

    def __init__(self):
        self.seconds = {"sim": 0.0, "bridge": 0.0, "learned": 0.0}

    @contextmanager
    def __call__(self, key: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] += time.perf_counter() - start
