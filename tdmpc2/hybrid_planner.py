"""HybridMPC: iLQG on the simulator for H_c steps composed with TD-MPC2's MPPI over the learned
model for the H steps after it (hybrid-design.md sec. 2). Re-exported by `tdmpc2.hybrid_mpc`.

Notation: T = H_c + H planned agent steps, N MPPI candidates, M simulated prefixes per
iteration, A action dim. Candidate actions are time-major `(T, N, A)`; `group (N,)` maps each
candidate to the simulated prefix it uses (prefix 0 is always the iLQG nominal U).

Candidate layout of every MPPI iteration:
  0          the iLQG nominal: prefix U, tail = current learned mean;
  1 .. P     policy-prior trajectories: prefix U, tails rolled out by the policy from the latent
             of the observation at H_c (fixed for the whole plan);
  P+1 .. N-1 samples: prefixes from M Gaussian prefix draws around the mean (each shared by
             about (N-P-1)/M candidates), tails drawn independently around the learned mean.
Each candidate's hybrid value is exact for its own action sequence:
  G = sum_{t<H_c} g^t r_t(simulated) + g^{H_c} * TD-MPC2 value of the tail from z = h(obs(x_{H_c})).
The final draw is restricted to elites whose value is at least the nominal's, so the executed
plan is never worse than iLQG's under the hybrid objective.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch

from tdmpc2.common.mppi import elite_update, gumbel_select, sample_actions
from tdmpc2.schedules import classical_horizon


@dataclass
class HybridPlanInfo:
    """What one hybrid plan did (numbers only; the trainer logs them)."""
    classical_horizon: int
    ilqg_cost: float
    ilqg_iterations: int
    ilqg_status: str
    ilqg_time: float            # seconds in the classical solver
    sim_scoring_time: float     # seconds simulating candidate prefixes (+ observations)
    learned_scoring_time: float  # seconds in the learned model scoring tails
    total_time: float
    sim_steps: int              # agent steps simulated for scoring
    nominal_value: float
    chosen_value: float
    scoring_model: str          # which simulator model scored the prefixes ("exact" or a planning model)

    def as_dict(self) -> dict:
        return asdict(self)


class HybridMPC:
    """Owns the simulator interface, the classical solver, the schedule state and the seeded MPPI."""

    def __init__(self, agent, interface, solver, *, max_classical_horizon: int = 10,
                 min_classical_horizon: int = 0, transition_steps: int = 1_000_000,
                 transition_schedule: str = "linear", prefix_samples: int = 64, prefix_std: float = 0.3):
        self.agent, self.interface, self.solver = agent, interface, solver
        self.max_h, self.min_h = int(max_classical_horizon), int(min_classical_horizon)
        self.transition_steps, self.schedule = int(transition_steps), transition_schedule
        self.prefix_samples, self.prefix_std = int(prefix_samples), float(prefix_std)
        self.step = 0
        self._h = classical_horizon(self.schedule, 0, self.max_h, self.min_h, self.transition_steps)
        self._warm: np.ndarray | None = None
        self._prev_mean: torch.Tensor | None = None
        self.last_info: HybridPlanInfo | None = None

    @classmethod
    def from_config(cls, cfg, agent, interface, solver) -> "HybridMPC":
        return cls(agent, interface, solver, max_classical_horizon=cfg.max_classical_horizon,
                   min_classical_horizon=cfg.min_classical_horizon, transition_steps=cfg.transition_steps,
                   transition_schedule=cfg.transition_schedule, prefix_samples=cfg.hybrid_prefix_samples,
                   prefix_std=cfg.hybrid_prefix_std)

    # ------------------------------------------------------------------ schedule
    def update_step(self, step: int) -> None:
        self.step = int(step)
        self._h = classical_horizon(self.schedule, self.step, self.max_h, self.min_h, self.transition_steps)

    def get_classical_horizon(self) -> int:
        return self._h

    def reset(self) -> None:
        """Forget warm starts (a new episode)."""
        self._warm, self._prev_mean = None, None

    # ------------------------------------------------------------------ planning
    @torch.no_grad()
    def plan(self, obs: torch.Tensor, t0: bool = False, eval_mode: bool = False,
             horizon: int | None = None) -> torch.Tensor:
        """Action (A,) for obs (1, obs_dim) from the live env's state, with H_c = `horizon` or the
        schedule's value (> 0)."""
        agent, cfg = self.agent, self.agent.cfg
        Hc = self._h if horizon is None else int(horizon)
        if Hc < 1:
            raise ValueError("HybridMPC.plan needs a classical horizon >= 1; H_c = 0 is plain TD-MPC2.")
        H, A, dev = agent.horizon, cfg.action_dim, agent.device
        start = time.perf_counter()
        if t0:
            self.reset()
        x0 = self.interface.get_state()

        # 1. classical solve, warm-started from the previous plan shifted by one step
        result = self.solver.plan(x0, Hc, self._warm_start(obs, Hc))
        U = np.asarray(result.actions, dtype=np.float64)
        self._warm = np.concatenate([U[1:], U[-1:]])
        ilqg_time = time.perf_counter() - start

        # 2. the nominal prefix, simulated once (its return and latent serve every iteration),
        #    policy tails from its latent at H_c, and the initial sampling distribution
        timer = _Timer()
        nominal = torch.as_tensor(U, dtype=torch.float32, device=dev)  # exactly candidate 0's prefix
        with timer("sim"):
            nominal_return, z_nominal = self._prefix_latents(x0, nominal[None].double().cpu().numpy())
        P = cfg.num_pi_trajs
        pi_tails = agent.policy_trajectories(z_nominal, H, P)
        mean = torch.zeros(Hc + H, A, device=dev)
        mean[:Hc] = nominal
        if not t0 and self._prev_mean is not None:
            shifted = self._prev_mean[1:]
            tail = shifted[Hc:Hc + H]
            mean[Hc:Hc + len(tail)] = tail
        std = torch.cat([torch.full((Hc, A), self.prefix_std, device=dev),
                         torch.full((H, A), float(cfg.max_std), device=dev)])

        # 3. seeded MPPI over H_c + H
        N, M, fixed = cfg.num_samples, self.prefix_samples, 1 + P
        if N - fixed < M:
            M = max(N - fixed, 1)
        group = torch.zeros(N, dtype=torch.long, device=dev)
        group[fixed:] = 1 + torch.arange(N - fixed, device=dev) % M
        actions = torch.empty(Hc + H, N, A, device=dev)
        actions[Hc:, 1:fixed] = pi_tails
        prefixes = torch.empty(Hc, M + 1, A, device=dev)
        prefixes[:, 0] = nominal
        sim_steps = Hc
        for _ in range(cfg.mppi_iterations):
            sample_actions(mean[:Hc], std[:Hc], M, out=prefixes[:, 1:])
            actions[:Hc] = prefixes[:, group]
            actions[Hc:, 0] = mean[Hc:]
            sample_actions(mean[Hc:], std[Hc:], N - fixed, out=actions[Hc:, fixed:])
            with timer("sim"):
                returns, z = self._prefix_latents(x0, prefixes[:, 1:].transpose(0, 1).double().cpu().numpy())
            values = self._hybrid_value(torch.cat([nominal_return, returns]), torch.cat([z_nominal, z]),
                                        group, actions[Hc:], Hc, timer)
            sim_steps += M * Hc
            nominal_value = values[0, 0].clone()
            plan = elite_update(actions, values, cfg.num_elites, cfg.temperature, cfg.min_std, cfg.max_std)
            mean, std = plan.mean, plan.std

        # 4. act: an elite at least as good as the nominal, drawn by weight
        weights = plan.weights * (plan.elite_values >= nominal_value).float()
        if weights.sum() <= 0:  # the nominal is the best candidate but fell outside the elites' float tie
            weights = plan.weights
        idx = gumbel_select(weights / weights.sum())
        action = plan.elite_actions[0, idx]
        if not eval_mode:
            action = action + plan.std[0] * torch.randn_like(action)
        self._prev_mean = plan.mean
        agent.last_plan = plan
        self.last_info = HybridPlanInfo(
            classical_horizon=Hc, ilqg_cost=float(result.cost), ilqg_iterations=int(result.iterations),
            ilqg_status=getattr(result.status, "name", str(result.status)).lower(), ilqg_time=ilqg_time,
            sim_scoring_time=timer.seconds["sim"], learned_scoring_time=timer.seconds["learned"],
            total_time=time.perf_counter() - start, sim_steps=sim_steps,
            nominal_value=float(nominal_value), chosen_value=float(plan.elite_values[idx]),
            scoring_model=str(getattr(self.interface, "planning", "exact")))
        return action.clamp(-1, 1)

    def _warm_start(self, obs: torch.Tensor, Hc: int) -> np.ndarray:
        """The previous classical plan shifted (last action held), resized to H_c; at an episode
        start, the policy prior's mean actions rolled through the learned model."""
        if self._warm is not None:
            warm = self._warm[:Hc]
            if len(warm) < Hc:
                warm = np.concatenate([warm, np.repeat(warm[-1:], Hc - len(warm), axis=0)])
            return warm
        model = self.agent.model
        z = model.encode(obs)
        out = []
        for _ in range(Hc):
            a = model.pi(z).mean
            out.append(a)
            z = model.next(z, a)
        return torch.cat(out).double().cpu().numpy()

    # ------------------------------------------------------------------ scoring
    def _prefix_latents(self, x0: np.ndarray, prefixes: np.ndarray):
        """Simulate prefixes (M, H_c, A) from x0: discounted true returns (M,) and latents (M, D)
        of the observations at H_c."""
        agent = self.agent
        M, Hc = prefixes.shape[:2]
        states, rewards = self.interface.rollout(np.repeat(x0[None], M, axis=0), prefixes)
        discounts = agent.discount ** np.arange(Hc)
        returns = torch.as_tensor(rewards @ discounts, dtype=torch.float32, device=agent.device)
        obs = torch.as_tensor(self.interface.observations(states[:, -1]), dtype=torch.float32,
                              device=agent.device)
        return returns, agent.model.encode(obs)

    def _hybrid_value(self, returns: torch.Tensor, z: torch.Tensor, group: torch.Tensor,
                      tails: torch.Tensor, Hc: int, timer) -> torch.Tensor:
        """Hybrid values (N, 1) of candidates whose simulated H_c-step prefix is number group[i]
        (discounted true returns (M',), latents at H_c (M', D)) and whose learned tail is
        tails (H, N, A)."""
        with timer("learned"):
            tail_values = self.agent.estimate_value(z, tails, group)
        return returns[group].unsqueeze(-1) + self.agent.discount ** Hc * tail_values

    @torch.no_grad()
    def hybrid_values(self, actions: torch.Tensor, x0: np.ndarray | None = None, horizon: int | None = None) -> torch.Tensor:
        """Hybrid values (N, 1) of full candidates `actions` (H_c + H, N, A), each simulated on its
        own from x0 (default: the live state)."""
        Hc = self._h if horizon is None else int(horizon)
        x0 = self.interface.get_state() if x0 is None else x0
        group = torch.arange(actions.shape[1], device=actions.device)
        returns, z = self._prefix_latents(x0, actions[:Hc].transpose(0, 1).double().cpu().numpy())
        return self._hybrid_value(returns, z, group, actions[Hc:], Hc, _Timer())


class _Timer:
    """Accumulates seconds per phase: `with timer("sim"): ...`."""

    def __init__(self):
        self.seconds = {"sim": 0.0, "learned": 0.0}

    @contextmanager
    def __call__(self, key: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] += time.perf_counter() - start
