"""The TD-MPC2 agent (spec sec. 4-5): MPPI planning in latent space and the TD update.

`act` plans with MPPI over the learned model (or samples the policy prior when `mpc=false`);
`update` performs one gradient step on a batch from the replay buffer. Neither does any I/O.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F

from tdmpc2.common import math as m
from tdmpc2.common import upstream
from tdmpc2.common.checkpoint import atomic_torch_save
from tdmpc2.common.device import matmul_precision, resolve_device
from tdmpc2.common.mppi import EliteUpdate, elite_update, gumbel_select, sample_actions
from tdmpc2.common.scale import RunningScale
from tdmpc2.common.world_model import build_world_model

CHECKPOINT_FORMAT = "hybrid-tdmpc2/1"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit this agent; the message is one sentence."""


class TDMPC2:
    """TD-MPC2 agent. `cfg` is a finalized config (`tdmpc2.config.load_config` / `finalize`)."""

    def __init__(self, cfg, device: torch.device | str | None = None):
        self.cfg = cfg
        self.device = torch.device(device) if device is not None else resolve_device(cfg.device)
        self.model = build_world_model(cfg).to(self.device)
        if cfg.compile is True:  # torch.compile: slower than the fused kernels on CPU (common/kernels.py)
            self.model.compile_networks()
        elif cfg.compile == "auto" and self.device.type == "cpu":
            self.model.use_native_kernels()  # fused CPU kernels; stays eager when they cannot be built
        model = self.model
        self.optim = torch.optim.Adam([
            {"params": model._encoder.parameters(), "lr": cfg.lr * cfg.enc_lr_scale},
            {"params": model._dynamics.parameters()},
            {"params": model._reward.parameters()},
            {"params": model._termination.parameters() if model._termination is not None else []},
            {"params": model._Qs.parameters()},
        ], lr=cfg.lr, fused=True)  # fused: one kernel per parameter (the same Adam), faster on CPU and CUDA
        self.pi_optim = torch.optim.Adam(model._pi.parameters(), lr=cfg.lr, eps=1e-5, fused=True)
        self._model_params = [p for g in self.optim.param_groups for p in g["params"]]
        self.model.eval()
        self.scale = RunningScale(cfg.tau, self.device)
        self.discount = float(cfg.discount)
        self.horizon = int(cfg.horizon)
        self._rho = cfg.rho ** torch.arange(self.horizon + 1, dtype=torch.float32, device=self.device)
        self._prev_mean = torch.zeros(self.horizon, cfg.action_dim, device=self.device)
        self.last_plan: EliteUpdate | None = None
        self.planned_action: torch.Tensor | None = None  # the last plan's action before exploration noise

    # ================================================================== acting
    @torch.no_grad()
    def act(self, obs: torch.Tensor, t0: bool = False, eval_mode: bool = False, task=None) -> torch.Tensor:
        """Action in [-1, 1]^A for one observation (a CPU tensor)."""
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(1, -1)
        with matmul_precision(self.cfg.matmul_precision):
            if self.cfg.mpc:
                return self.plan(obs, t0=t0, eval_mode=eval_mode).cpu()
            sample = self.model.pi(self.model.encode(obs))
            return (sample.mean if eval_mode else sample.action)[0].cpu()

    @torch.no_grad()
    def plan(self, obs: torch.Tensor, t0: bool = False, eval_mode: bool = False) -> torch.Tensor:
        """MPPI over the learned model (spec sec. 5) for obs (1, obs_dim)."""
        mean = torch.zeros_like(self._prev_mean)
        if not t0:
            mean[:-1] = self._prev_mean[1:]
        result = self.mppi_from(obs, mean)
        self._prev_mean.copy_(result.mean)
        return self.select_action(result, eval_mode)

    def mppi_from(self, obs: torch.Tensor, mean: torch.Tensor) -> EliteUpdate:
        """The MPPI result at obs (1, obs_dim) from the warm start `mean` (H, A), with the policy
        prior's trajectories among the candidates; no state of the agent changes."""
        z = self.model.encode(obs)
        pi_actions = self.policy_trajectories(z, self.horizon, self.cfg.num_pi_trajs)
        return self.mppi(lambda actions: self.estimate_value(z, actions), mean, pi_actions)

    def policy_trajectories(self, z: torch.Tensor, horizon: int, num: int) -> torch.Tensor:
        """(horizon, num, A) stochastic rollouts of the policy prior through the learned dynamics."""
        actions = torch.empty(horizon, num, self.cfg.action_dim, device=self.device)
        if num == 0:
            return actions
        z = z.expand(num, -1)
        for t in range(horizon - 1):
            actions[t] = self.model.pi_action(z)
            z = self.model.next(z, actions[t])
        actions[-1] = self.model.pi_action(z)
        return actions

    def mppi(self, value_fn, mean: torch.Tensor, fixed: torch.Tensor) -> EliteUpdate:
        """`mppi_iterations` rounds of sampling around `mean` (T, A), scoring with `value_fn`
        (actions (T, N, A) -> values (N, 1)) and refitting to the elites. The `fixed` candidates
        (T, P, A) are part of every round. The std starts at max_std."""
        cfg = self.cfg  # read once: an OmegaConf lookup costs ~10-20 us, 36 of them per plan otherwise
        N, elites, temperature = cfg.num_samples, cfg.num_elites, cfg.temperature
        min_std, max_std = cfg.min_std, cfg.max_std
        T, A = mean.shape
        P = fixed.shape[1]
        std = torch.full_like(mean, max_std)
        actions = torch.empty(T, N, A, device=self.device)
        actions[:, :P] = fixed
        result = None
        for _ in range(cfg.mppi_iterations):
            sample_actions(mean, std, N - P, out=actions[:, P:])
            values = value_fn(actions)
            result = elite_update(actions, values, elites, temperature, min_std, max_std)
            mean, std = result.mean, result.std
        return result

    def select_action(self, result: EliteUpdate, eval_mode: bool) -> torch.Tensor:
        """First action of an elite drawn by weight, plus std-scaled noise when training."""
        self.last_plan = result
        action = result.elite_actions[0, gumbel_select(result.weights)]
        self.planned_action = action.clamp(-1, 1)
        if not eval_mode:
            action = action + result.std[0] * torch.randn_like(action)
        return action.clamp(-1, 1)

    def estimate_value(self, z: torch.Tensor, actions: torch.Tensor, group: torch.Tensor | None = None) -> torch.Tensor:
        """G = sum_t g^t (1 - k_t) r_t + g^H (1 - k_H) avg-of-2 Q(z_H, pi(z_H)), (N, 1), for
        actions (H, N, A) from latents z (1 or N, D), or (M, D) with `group (N,)` giving each
        candidate's row of z (the first step then runs once per distinct latent)."""
        heads = self.model.random_pair()
        value = torch.zeros(actions.shape[1], 1, device=self.device)
        alive = torch.ones_like(value) if self.cfg.episodic else None
        discount = 1.0
        for t in range(actions.shape[0]):
            reward, z = self.model.reward_and_next(z, actions[t], group if t == 0 else None)
            if alive is not None:
                value = value + discount * alive * reward
                alive = alive * (torch.sigmoid(self.model.termination_logits(z)) <= 0.5).float()
            else:
                value = value + discount * reward
            discount *= self.discount
        terminal = self.model.Q(z, self.model.pi_action(z), heads, "avg")
        if alive is not None:
            terminal = alive * terminal
        return value + discount * terminal

    # ================================================================== training
    def update(self, buffer) -> dict[str, torch.Tensor]:
        """One gradient step (spec 4.8) on `buffer.sample()`; returns detached statistics."""
        obs, action, reward, terminated, _task = buffer.sample()
        return self.update_on_batch(obs, action, reward, terminated)

    def update_on_batch(self, obs, action, reward, terminated) -> dict[str, torch.Tensor]:
        """obs (H+1, B, S), action (H, B, A), reward (H, B, 1), terminated (H, B, 1); float32
        matmuls at `matmul_precision`."""
        with matmul_precision(self.cfg.matmul_precision):
            return self._update_on_batch(obs, action, reward, terminated)

    def _update_on_batch(self, obs, action, reward, terminated) -> dict[str, torch.Tensor]:
        cfg, model, H = self.cfg, self.model, self.horizon
        with torch.no_grad():
            next_z = model.encode(obs[1:])
            td_targets = self._td_targets(next_z, reward, terminated)

        model.train()
        zs = torch.empty(H + 1, *next_z.shape[1:], device=self.device)
        z = zs[0] = model.encode(obs[0])
        consistency = 0.0
        for t in range(H):
            z = model.next(z, action[t])
            consistency = consistency + self._rho[t] * F.mse_loss(z, next_z[t])
            zs[t + 1] = z
        rho = self._rho[:H]
        reward_ce = m.soft_ce(model.reward_logits(zs[:-1], action), reward, cfg.vmin, cfg.vmax)
        q_ce = m.soft_ce(model.Q_logits(zs[:-1], action), td_targets.unsqueeze(0), cfg.vmin, cfg.vmax)
        consistency_loss = consistency / H
        reward_loss = (reward_ce.mean((1, 2)) * rho).sum() / H
        value_loss = (q_ce.mean((2, 3)) * rho).sum() / (H * cfg.num_q)
        if model._termination is not None:
            termination_loss = F.binary_cross_entropy_with_logits(model.termination_logits(zs[1:]), terminated)
        else:
            termination_loss = torch.zeros((), device=self.device)
        total = (cfg.consistency_coef * consistency_loss + cfg.reward_coef * reward_loss
                 + cfg.termination_coef * termination_loss + cfg.value_coef * value_loss)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self._model_params, cfg.grad_clip_norm)
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)

        pi_stats = self._update_pi(zs.detach())
        model.soft_update_target_Q(cfg.tau)
        model.eval()
        stats = dict(consistency_loss=consistency_loss, reward_loss=reward_loss, value_loss=value_loss,
                     termination_loss=termination_loss, total_loss=total, grad_norm=grad_norm, **pi_stats)
        return {k: v.detach() for k, v in stats.items()}

    @torch.no_grad()
    def _td_targets(self, next_z, reward, terminated):
        """y_t = r_t + g (1 - d_t) min-of-2 target Q(z'_{t+1}, a'), a' ~ pi(z'_{t+1})."""
        next_action = self.model.pi_action(next_z)
        q = self.model.Q(next_z, next_action, self.model.random_pair(), "min", target=True)
        return reward + self.discount * (1 - terminated) * q

    def _update_pi(self, zs: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, model = self.cfg, self.model
        sample = model.pi(zs)
        q = model.Q(zs, sample.action, model.random_pair(), "avg", detach=True)
        self.scale.update(q[0])
        q = self.scale(q)
        per_step = (-cfg.entropy_coef * sample.scaled_entropy - q).mean((1, 2))
        pi_loss = (per_step * self._rho).mean()
        extra = self.policy_extra_loss(zs, sample)
        (pi_loss if extra is None else pi_loss + extra[0]).backward()
        pi_grad_norm = torch.nn.utils.clip_grad_norm_(model._pi.parameters(), cfg.grad_clip_norm)
        self.pi_optim.step()
        self.pi_optim.zero_grad(set_to_none=True)
        return dict(pi_loss=pi_loss, pi_grad_norm=pi_grad_norm, pi_entropy=sample.entropy.mean(),
                    pi_scaled_entropy=sample.scaled_entropy.mean(), pi_scale=self.scale.value.clone(),
                    **(extra[1] if extra is not None else {}))

    def policy_extra_loss(self, zs: torch.Tensor, sample) -> tuple[torch.Tensor, dict] | None:
        """A term added to the policy loss and its statistics, or None (TD-MPC2: none); the hybrid
        agent adds planner distillation here (`tdmpc2.teaching`)."""
        return None

    # ================================================================== checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "model": self.model.state_dict(),
                "optim": self.optim.state_dict(), "pi_optim": self.pi_optim.state_dict(),
                "scale": self.scale.state_dict(), "prev_mean": self._prev_mean.clone()}

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        if not isinstance(state, dict) or "model" not in state:
            raise CheckpointError(f"{source} is not a hybrid-tdmpc2 checkpoint (no model weights found).")
        if upstream.is_upstream_state(state):  # a released upstream TD-MPC2 checkpoint: rename its keys
            try:
                state = {"model": upstream.convert_upstream_model(
                    state["model"], self.model.state_dict(), self.cfg.log_std_min, self.cfg.log_std_max)}
            except upstream.UpstreamError as e:
                raise CheckpointError(f"{source} is an upstream TD-MPC2 checkpoint that does not fit this "
                                      f"agent: {e}.") from None
        own = self.model.state_dict()
        theirs = state["model"]
        missing = [k for k in own if k not in theirs]
        extra = [k for k in theirs if k not in own]
        if missing or extra:
            key = (missing or extra)[0]
            raise CheckpointError(f"{source} was saved for a different architecture: parameter '{key}' "
                                  f"is {'missing from it' if missing else 'unknown to this agent'}.")
        for key, value in own.items():
            if tuple(theirs[key].shape) != tuple(value.shape):
                raise CheckpointError(
                    f"{source} was saved for a different architecture (task or model size): parameter "
                    f"'{key}' has shape {tuple(theirs[key].shape)} there but {tuple(value.shape)} here.")
        self.model.load_state_dict(theirs)
        if "optim" in state:
            self.optim.load_state_dict(state["optim"])
            self.pi_optim.load_state_dict(state["pi_optim"])
        if "scale" in state:
            self.scale.load_state_dict(state["scale"])
        if "prev_mean" in state:
            self._prev_mean.copy_(state["prev_mean"])

    def save(self, path: str, extra: dict | None = None) -> None:
        """Write a checkpoint atomically (a crash mid-write never leaves a corrupt file at `path`)."""
        from omegaconf import OmegaConf

        state = self.state_dict()
        state["config"] = OmegaConf.to_container(self.cfg, resolve=True)
        if extra:
            state.update(extra)
        atomic_torch_save(state, path)

    def load(self, path_or_state) -> dict[str, Any]:
        """Load a checkpoint written by `save` (path) or a state dict; returns the raw state."""
        if isinstance(path_or_state, dict):
            state, source = path_or_state, "The given state dict"
        else:
            source = f"Checkpoint '{path_or_state}'"
            if not os.path.isfile(path_or_state):
                raise CheckpointError(f"{source} does not exist.")
            try:
                state = torch.load(path_or_state, map_location=self.device, weights_only=True)
            except Exception as e:  # unreadable, truncated or foreign file
                raise CheckpointError(f"{source} could not be read ({type(e).__name__}); it is corrupt or "
                                      "not a hybrid-tdmpc2 checkpoint.") from None
        self.load_state_dict(state, source)
        return state
