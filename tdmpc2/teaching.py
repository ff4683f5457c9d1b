"""Learning from the simulator (hybrid-design.md sec. 7): what the classical planner teaches the
learner, beside the planner (`hybrid_planner`) and the TD update (`tdmpc2`).

Built so far:
* classical seeding (`seed_policy=classical`): during the seed steps the classical solver acts on
  the simulator in receding horizon over its own horizon T_c, with Gaussian exploration noise
  of std `seed_noise_std` (drawn from torch's RNG, so a resumed run repeats it); TD-MPC2's
  pre-training burst follows unchanged;
* the policy prior's own return (`PolicyPriorActor`): the evaluation scores the prior alone, one
  forward pass per step, beside the hybrid and learned-only planners.
Not built yet (issue 10): transition provenance, planner distillation, expert oversampling and
learner hand-over episodes.
"""
from __future__ import annotations

import torch

from tdmpc2.classical.receding import RecedingHorizon


class ClassicalSeeder:
    """Receding-horizon classical control on the simulator plus exploration noise."""

    def __init__(self, solver, interface, horizon: int, noise_std: float):
        self.controller = RecedingHorizon(solver, interface, horizon)
        self.interface, self.noise_std = interface, float(noise_std)

    @property
    def horizon(self) -> int:
        return self.controller.horizon

    def act(self, t0: bool) -> torch.Tensor:
        """The solver's first action from the live state (warm-started by shifting), plus noise,
        clipped to the action bounds."""
        if t0:
            self.controller.reset()
        action = torch.as_tensor(self.controller.plan().actions[0], dtype=torch.float32)
        if self.noise_std > 0:
            action = action + self.noise_std * torch.randn_like(action)
        low, high = self.interface.action_bounds()
        return torch.clamp(action, torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32))


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
