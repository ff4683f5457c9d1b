"""TD-MPC2 world model (spec sec. 2): encoder h, latent dynamics d, reward R, termination T,
policy prior pi, Q ensemble with Polyak targets. Single-task (task_dim = 0)."""
from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from tdmpc2.common import amx, kernels
from tdmpc2.common import math as m
from tdmpc2.common.layers import Linear, NormedLinear, QEnsemble, SimNorm, init_linear_, mlp


class PolicySample(NamedTuple):
    action: torch.Tensor          # a = tanh(mu + sigma eps), (..., A)
    mean: torch.Tensor            # tanh(mu)
    log_std: torch.Tensor
    entropy: torch.Tensor         # -log p_a, (..., 1)
    scaled_entropy: torch.Tensor  # spec 2.6, (..., 1)


class WorldModel(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int, latent_dim: int = 512, enc_dim: int = 256,
                 num_enc_layers: int = 2, mlp_dim: int = 512, num_q: int = 5, num_bins: int = 101,
                 vmin: float = -10.0, vmax: float = 10.0, simnorm_dim: int = 8, dropout: float = 0.01,
                 log_std_min: float = -10.0, log_std_max: float = 2.0, episodic: bool = False):
        super().__init__()
        self.action_dim, self.latent_dim = action_dim, latent_dim
        self.num_q, self.num_bins, self.vmin, self.vmax = num_q, num_bins, vmin, vmax
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        za = latent_dim + action_dim
        self._encoder = mlp(obs_dim, [enc_dim] * max(num_enc_layers - 1, 1), latent_dim, SimNorm(simnorm_dim))
        self._dynamics = mlp(za, [mlp_dim, mlp_dim], latent_dim, SimNorm(simnorm_dim))
        self._reward = mlp(za, [mlp_dim, mlp_dim], max(num_bins, 1))
        self._termination = mlp(latent_dim, [mlp_dim, mlp_dim], 1) if episodic else None
        self._pi = mlp(latent_dim, [mlp_dim, mlp_dim], 2 * action_dim)
        self._Qs = QEnsemble(num_q, za, mlp_dim, max(num_bins, 1), dropout=dropout)
        init_linear_(self)
        nn.init.zeros_(self._reward[-1].weight)  # zero init of the reward head (spec 2.4)
        self._target_Qs = copy.deepcopy(self._Qs).requires_grad_(False)
        self._target_Qs.eval()
        self._native = False
        self._centres = None  # bin centres for the native two-hot decoding (CPU)

    # ------------------------------------------------------------------ parameters
    def train(self, mode: bool = True):
        super().train(mode)
        self._target_Qs.eval()  # target heads never use dropout
        return self

    def total_params(self) -> int:
        """Trainable parameters (target Q copies excluded), as counted in spec 1.3."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def compile_networks(self) -> None:
        """torch.compile every network in place (`compile=true`); weights and state dict keys
        are unchanged, so checkpoints stay interchangeable with eager models."""
        for net in (self._encoder, self._dynamics, self._reward, self._termination, self._pi,
                    self._Qs, self._target_Qs):
            if net is not None:
                net.compile()

    def use_native_kernels(self, enabled: bool = True) -> bool:
        """Run LayerNorm -> Mish / SimNorm and two-hot decoding with the fused CPU kernels of
        `tdmpc2.common.kernels` (float32 CPU tensors; other tensors take the eager ops, which
        compute the same functions). Returns whether they are on: False when they cannot be
        built (no C compiler), and then the model stays eager."""
        enabled = bool(enabled) and kernels.available()
        if enabled:
            amx.available()  # bfloat16 AMX matmuls for medium-precision inference, where the CPU has them
        self._native = enabled
        for module in self.modules():
            if isinstance(module, (Linear, NormedLinear, QEnsemble)):
                module.native = enabled
        return enabled

    def _decode(self, logits: torch.Tensor) -> torch.Tensor:
        """two_hot_inv of logits (..., num_bins) -> (..., 1)."""
        if self._native and not torch.is_grad_enabled() and kernels.usable(logits):
            if self._centres is None or self._centres.shape[0] != logits.shape[-1]:
                self._centres = torch.linspace(self.vmin, self.vmax, logits.shape[-1])
            return kernels.two_hot_inv(logits, self._centres)
        return m.two_hot_inv(logits, self.vmin, self.vmax)

    @torch.no_grad()
    def soft_update_target_Q(self, tau: float) -> None:
        torch._foreach_lerp_(list(self._target_Qs.parameters()), list(self._Qs.parameters()), tau)

    # ------------------------------------------------------------------ networks
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return self._encoder(obs)

    def next(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self._dynamics(_cat(z, a))

    def reward_logits(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self._reward(_cat(z, a))

    def reward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self._decode(self.reward_logits(z, a))

    def termination_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self._termination(z)

    def reward_and_next(self, z: torch.Tensor, a: torch.Tensor, group: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded reward (N, 1) and next latent (N, D) for actions a (N, A) from latents z: (N, D),
        or (1, D) shared by all, or (M, D) distinct latents with `group (N,)` naming each row's.

        Shared latents (the first planning step) have the latent part of the first layers
        computed once per distinct latent: W [z; a] = (W_z z)[group] + W_a a.
        """
        if group is not None or (z.shape[0] == 1 and a.shape[0] > 1):
            D = self.latent_dim
            rew = _shared_first_layer(self._reward, z, a, D, group)
            nxt = _shared_first_layer(self._dynamics, z, a, D, group)
            return self._decode(rew), nxt
        za = _cat(z, a)
        return self._decode(self._reward(za)), self._dynamics(za)

    def pi(self, z: torch.Tensor) -> PolicySample:
        """Tanh-squashed Gaussian policy prior with the spec's entropy terms (spec 2.6)."""
        mu, raw_log_std = self._pi(z).chunk(2, dim=-1)
        log_std = m.squash_log_std(raw_log_std, self.log_std_min, self.log_std_max)
        eps = torch.randn_like(mu)
        log_pu = m.gaussian_log_prob(eps, log_std)
        action = torch.tanh(mu + eps * log_std.exp())
        log_pa = m.tanh_log_prob_correction(log_pu, action)
        scaled = -log_pa * (self.action_dim * log_pu / (log_pa + 1e-8))
        return PolicySample(action, torch.tanh(mu), log_std, -log_pa, scaled)

    def pi_action(self, z: torch.Tensor) -> torch.Tensor:
        """A stochastic policy sample only (planning fast path; same draws as `pi`)."""
        mu, raw_log_std = self._pi(z).chunk(2, dim=-1)
        log_std = m.squash_log_std(raw_log_std, self.log_std_min, self.log_std_max)
        return torch.tanh(mu + torch.randn_like(mu) * log_std.exp())

    def Q_logits(self, z: torch.Tensor, a: torch.Tensor, heads=None, target: bool = False,
                 detach: bool = False) -> torch.Tensor:
        """Logits (k, ..., N) of the chosen heads (all when None)."""
        net = self._target_Qs if target else self._Qs
        return net(_cat(z, a), heads, detach=detach)

    def Q(self, z: torch.Tensor, a: torch.Tensor, heads: torch.Tensor, reduce: str = "avg",
          target: bool = False, detach: bool = False) -> torch.Tensor:
        """min or avg over the decoded values of the given pair of heads, (..., 1)."""
        q = self._decode(self.Q_logits(z, a, heads, target, detach))
        return q.min(0).values if reduce == "min" else q.mean(0)

    def random_pair(self) -> torch.Tensor:
        """Two distinct Q heads chosen uniformly (one pair per call, shared by the batch)."""
        return torch.randperm(self.num_q)[:2].to(self._Qs.w1.device)


def _cat(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    if z.shape[:-1] != a.shape[:-1]:
        z = z.expand(*a.shape[:-1], z.shape[-1])
    return torch.cat([z, a], dim=-1)


def _shared_first_layer(net: nn.Sequential, z: torch.Tensor, a: torch.Tensor, D: int,
                        group: torch.Tensor | None = None) -> torch.Tensor:
    first = net[0]
    latent_part = first.matmul(z, slice(0, D), first.bias)
    if group is not None:
        h = first.norm_act(first.matmul(a, slice(D, None), latent_part[group]))
    else:  # one latent: its part is the bias of the action part
        h = first.norm_act(first.matmul(a, slice(D, None)), latent_part.reshape(-1))
    for layer in net[1:]:
        h = layer(h)
    return h


def build_world_model(cfg) -> WorldModel:
    return WorldModel(
        obs_dim=cfg.obs_shape["state"][0], action_dim=cfg.action_dim, latent_dim=cfg.latent_dim,
        enc_dim=cfg.enc_dim, num_enc_layers=cfg.num_enc_layers, mlp_dim=cfg.mlp_dim, num_q=cfg.num_q,
        num_bins=cfg.num_bins, vmin=cfg.vmin, vmax=cfg.vmax, simnorm_dim=cfg.simnorm_dim,
        dropout=cfg.dropout, log_std_min=cfg.log_std_min, log_std_max=cfg.log_std_max,
        episodic=cfg.episodic)
