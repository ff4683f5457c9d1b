"""Configuration: load `config.yaml`, reject bad keys and values, fill in derived keys.

Every error is a `ConfigError` whose message is one sentence naming the offending key. The CLI
entry points print it without a traceback. Derived keys (sec. 1.2 of the spec) are computed
only when left null, so they can be overridden (`seed_steps=200`).
"""
from __future__ import annotations

import difflib
import math
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tdmpc2.common.device import MATMUL_PRECISIONS
from tdmpc2.envs.tasks import UnknownTaskError, task_info

CONFIG_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.yaml")

MODEL_SIZES = {  # model_size -> enc_dim, mlp_dim, latent_dim, num_enc_layers, num_q
    1: dict(enc_dim=256, mlp_dim=384, latent_dim=128, num_enc_layers=2, num_q=2),
    5: dict(enc_dim=256, mlp_dim=512, latent_dim=512, num_enc_layers=2, num_q=5),
    19: dict(enc_dim=1024, mlp_dim=1024, latent_dim=768, num_enc_layers=3, num_q=5),
    48: dict(enc_dim=1792, mlp_dim=1792, latent_dim=768, num_enc_layers=4, num_q=5),
    317: dict(enc_dim=4096, mlp_dim=4096, latent_dim=1376, num_enc_layers=5, num_q=8),
}
SCHEDULES = ("linear", "exponential", "step", "constant", "cosine")
CLASSICAL_ALGORITHMS = ("ilqg", "ddp", "lqr", "sampling")


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message is one sentence naming the key."""


def _raw_config() -> DictConfig:
    cfg = OmegaConf.load(CONFIG_PATH)
    cfg.pop("hydra", None)
    return cfg


def known_keys() -> list[str]:
    return list(_raw_config().keys())


def _unknown_key(key: str, known) -> ConfigError:
    near = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean '{near[0]}'?" if near else "."
    return ConfigError(f"Unknown config key '{key}'{hint}")


def load_config(**overrides: Any) -> DictConfig:
    """The finalized config for a notebook, e.g. `load_config(task="cartpole-balance", hybrid_mpc=True)`."""
    cfg = _raw_config()
    for key, value in overrides.items():
        if key not in cfg:
            raise _unknown_key(key, cfg.keys())
        cfg[key] = value
    return finalize(cfg)


def _num(cfg, key, kind=float, low=None, high=None, low_open=False, allow_none=False):
    value = cfg[key]
    if value is None and allow_none:
        return None
    if isinstance(value, str):  # reference convenience: "5*1000" style arithmetic, no eval
        value = _arith(key, value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"Config key '{key}' must be a number, got {value!r}.")
    if kind is int:
        if float(value) != int(value):
            raise ConfigError(f"Config key '{key}' must be an integer, got {value!r}.")
        value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"Config key '{key}' must be finite, got {value!r}.")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"Config key '{key}' must be {'>' if low_open else '>='} {low}, got {value!r}.")
    if high is not None and value > high:
        raise ConfigError(f"Config key '{key}' must be <= {high}, got {value!r}.")
    return value


def _arith(key: str, text: str):
    for op in ("*", "+", "-", "/"):
        parts = text.replace("_", "").split(op)
        if len(parts) == 2 and all(p.strip().lstrip("-").isdigit() for p in parts):
            a, b = (int(p) for p in parts)
            return {"*": a * b, "+": a + b, "-": a - b, "/": a / b}[op]
    try:
        return float(text) if any(c in text for c in ".eE") else int(text.replace("_", ""))
    except ValueError:
        raise ConfigError(f"Config key '{key}' must be a number, got {text!r}.") from None


def _choice(cfg, key, choices):
    value = cfg[key]
    if value not in choices:
        raise ConfigError(f"Config key '{key}' must be one of {', '.join(map(str, choices))}; got {value!r}.")
    return value


def _bool(cfg, key):
    value = cfg[key]
    if not isinstance(value, bool):
        raise ConfigError(f"Config key '{key}' must be true or false, got {value!r}.")
    return value


def _teaching(cfg) -> None:
    """Learning from the simulator (tdmpc2.teaching)."""
    cfg.distill_coef = _num(cfg, "distill_coef", float, low=0)
    cfg.distill_bc_updates = _num(cfg, "distill_bc_updates", int, low=0)
    for key in ("expert_fraction", "learner_episode_prob", "relabel_fraction", "branch_prob", "branch_share",
                "branch_elite_prob"):
        cfg[key] = _num(cfg, key, float, low=0, high=1)
    for key in ("distill_schedule", "expert_schedule"):
        _choice(cfg, key, ("constant", "horizon", "trust"))
    _bool(cfg, "distill_q_filter")
    _choice(cfg, "return_bound", ("none", "expert", "all"))
    from tdmpc2.gate import MODES as GATE_MODES

    _choice(cfg, "learned_gate", GATE_MODES)
    cfg.learned_gate_margin = _num(cfg, "learned_gate_margin", float, low=0)
    if cfg.relabel_fraction > 0 and cfg.learner_episode_prob == 0:
        raise ConfigError("Config key 'relabel_fraction' labels the states of hand-over episodes; it needs "
                          "learner_episode_prob > 0.")
    branching = [k for k in ("branch_prob", "branch_elite_prob") if cfg[k] > 0]
    if branching and cfg.episodic:
        raise ConfigError(f"Config key '{branching[0]}': simulated branches model no early termination; they need "
                          f"episodic=false (set it to 0 for this task).")
    if branching and not 0 < cfg.branch_share < 1:
        raise ConfigError(f"Config key 'branch_share' must be in (0, 1) when {branching[0]} > 0 (a share of every "
                          f"batch drawn from the branches), got {cfg.branch_share}.")
    if cfg.distill_bc_updates > 0 and cfg.seed_policy != "classical":
        raise ConfigError("Config key 'distill_bc_updates' clones the classical seed data into the policy prior; it "
                          "needs seed_policy=classical.")


def _bridge_and_trust(cfg) -> None:
    """bridge_weight: a number in [0, 1], schedule or adaptive; the trust ramp 0 <= low < high,
    smoothing in (0, 1]; hybrid_eval always or expert."""
    _choice(cfg, "hybrid_eval", ("always", "expert"))
    if cfg.bridge_weight not in ("schedule", "adaptive"):
        try:
            cfg.bridge_weight = _num(cfg, "bridge_weight", float, low=0, high=1)
        except ConfigError:
            raise ConfigError(f"Config key 'bridge_weight' must be a number in [0, 1], schedule or adaptive; "
                              f"got {cfg.bridge_weight!r}.") from None
    cfg.adaptive_trust_low = _num(cfg, "adaptive_trust_low", float, low=0)
    cfg.adaptive_trust_high = _num(cfg, "adaptive_trust_high", float, low=0)
    if cfg.adaptive_trust_high <= cfg.adaptive_trust_low:
        raise ConfigError(f"Config key 'adaptive_trust_high' ({cfg.adaptive_trust_high}) must exceed "
                          f"adaptive_trust_low ({cfg.adaptive_trust_low}).")
    cfg.adaptive_smoothing = _num(cfg, "adaptive_smoothing", float, low=0, high=1, low_open=True)


def _classical_defaults(cfg) -> None:
    """Resolve `auto` in classical_algorithm, classical_plan_horizon, ilqg_iterations and the
    sampling_* keys from the per-task table; T_c below max_classical_horizon is an error when set,
    raised to it when auto."""
    from tdmpc2.envs.classical_defaults import classical_defaults

    table = classical_defaults(cfg.task)
    if cfg.classical_algorithm == "auto":
        cfg.classical_algorithm = table.algorithm
    _choice(cfg, "classical_algorithm", CLASSICAL_ALGORITHMS)
    if cfg.ilqg_iterations == "auto":
        cfg.ilqg_iterations = table.iterations
    cfg.ilqg_iterations = _num(cfg, "ilqg_iterations", int, low=1)
    if cfg.classical_plan_horizon == "auto":
        cfg.classical_plan_horizon = max(table.plan_horizon, int(cfg.max_classical_horizon))
    cfg.classical_plan_horizon = _num(cfg, "classical_plan_horizon", int, low=1)
    if cfg.classical_plan_horizon < cfg.max_classical_horizon:
        raise ConfigError(
            f"Config key 'classical_plan_horizon' ({cfg.classical_plan_horizon}) must be at least "
            f"max_classical_horizon ({cfg.max_classical_horizon}): the solver looks at least as far as H_c.")
    _sampling_settings(cfg, table.sampling)


def _sampling_settings(cfg, table) -> None:
    """Resolve `auto` in the sampling_* keys (the sampling solver's settings) from the task's row."""
    for key, kind, low in (("sampling_samples", int, 2), ("sampling_knots", int, 1), ("sampling_noise", float, 0)):
        cfg[key] = getattr(table, key[9:]) if cfg[key] == "auto" else _num(cfg, key, kind, low=low)
    for key, choices in (("sampling_interpolation", ("zero", "linear")), ("sampling_objective", ("cost", "reward"))):
        cfg[key] = getattr(table, key[9:]) if cfg[key] == "auto" else _choice(cfg, key, choices)


def finalize(cfg: DictConfig) -> DictConfig:
    """Validate `cfg` and fill derived keys; returns a new struct-mode config (input untouched)."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    cfg.pop("hydra", None)
    known = set(known_keys())
    for key in cfg.keys():
        if key not in known:
            raise _unknown_key(str(key), known)

    # ---- environment
    if cfg.task in ("mt30", "mt80"):
        raise ConfigError("Config key 'task': multi-task training (mt30/mt80) is not supported yet.")
    try:
        info = task_info(cfg.task)
    except UnknownTaskError as e:
        raise ConfigError(f"Config key 'task': {e}") from None
    _choice(cfg, "obs", ("state",))
    for key in ("episodic", "mpc", "save_csv", "save_video", "save_agent", "enable_wandb",
                "wandb_silent", "hybrid_mpc", "resume"):
        _bool(cfg, key)

    # ---- numbers
    ints = dict(eval_episodes=1, eval_freq=1, steps=1, batch_size=1, buffer_size=1,
                iterations=1, num_samples=2, num_elites=1, num_pi_trajs=0, horizon=1,
                num_bins=2, num_enc_layers=1, enc_dim=1, num_channels=1, mlp_dim=1,
                latent_dim=1, num_q=2, simnorm_dim=1, seed=0, checkpoint_freq=0,
                max_classical_horizon=0, min_classical_horizon=0, transition_steps=1,
                ilqg_line_search_steps=1, hybrid_prefix_samples=1, updates_per_step=1)
    for key, low in ints.items():
        cfg[key] = _num(cfg, key, int, low=low)
    floats = dict(reward_coef=0, value_coef=0, termination_coef=0, consistency_coef=0, rho=0,
                  lr=0, enc_lr_scale=0, grad_clip_norm=0, tau=0, discount_denom=0,
                  discount_min=0, discount_max=0, min_std=0, max_std=0, temperature=0,
                  entropy_coef=0, dropout=0, ilqg_regularization=0, hybrid_prefix_std=0, hybrid_margin=0,
                  ilqg_tolerance=0,
                  finite_diff_eps=0)
    for key, low in floats.items():
        cfg[key] = _num(cfg, key, float, low=low)
    for key in ("lr", "tau", "max_std", "temperature", "finite_diff_eps", "discount_denom"):
        _num(cfg, key, float, low=0, low_open=True)
    for key in ("rho", "tau", "dropout", "discount_min", "discount_max"):
        _num(cfg, key, float, high=1)
    cfg.log_std_min = _num(cfg, "log_std_min")
    cfg.log_std_max = _num(cfg, "log_std_max")
    cfg.vmin, cfg.vmax = _num(cfg, "vmin"), _num(cfg, "vmax")
    if cfg.vmax <= cfg.vmin:
        raise ConfigError(f"Config key 'vmax' must exceed vmin ({cfg.vmin}), got {cfg.vmax}.")
    if cfg.log_std_max <= cfg.log_std_min:
        raise ConfigError("Config key 'log_std_max' must exceed log_std_min.")
    if cfg.min_std > cfg.max_std:
        raise ConfigError("Config key 'min_std' must not exceed max_std.")
    if cfg.num_elites > cfg.num_samples:
        raise ConfigError(f"Config key 'num_elites' ({cfg.num_elites}) must not exceed num_samples ({cfg.num_samples}).")
    if cfg.num_pi_trajs >= cfg.num_samples:
        raise ConfigError(f"Config key 'num_pi_trajs' ({cfg.num_pi_trajs}) must be below num_samples ({cfg.num_samples}).")

    # ---- architecture
    if cfg.model_size is not None:
        size = cfg.model_size
        if isinstance(size, bool) or size not in MODEL_SIZES:
            raise ConfigError(f"Config key 'model_size' must be one of 1, 5, 19, 48, 317 (or null); got {size!r}.")
        for key, value in MODEL_SIZES[size].items():
            cfg[key] = value
    if cfg.latent_dim % cfg.simnorm_dim:
        raise ConfigError(f"Config key 'latent_dim' ({cfg.latent_dim}) must be divisible by simnorm_dim ({cfg.simnorm_dim}).")

    # ---- misc
    if not (cfg.device in ("auto", "cpu", "cuda") or str(cfg.device).startswith("cuda:")):
        raise ConfigError(f"Config key 'device' must be auto, cpu, cuda or cuda:N; got {cfg.device!r}.")
    if cfg.compile not in ("auto", True, False):
        raise ConfigError(f"Config key 'compile' must be auto, true or false; got {cfg.compile!r}.")
    _choice(cfg, "matmul_precision", MATMUL_PRECISIONS)
    for key in ("threads", "mujoco_threads"):
        if cfg[key] != "auto":
            cfg[key] = _num(cfg, key, int, low=1)

    # ---- hybrid
    _choice(cfg, "transition_schedule", SCHEDULES + ("adaptive",))
    _choice(cfg, "scoring_model", ("exact", "planning"))
    _choice(cfg, "seed_policy", ("random", "classical"))
    cfg.seed_noise_std = _num(cfg, "seed_noise_std", float, low=0)
    _teaching(cfg)
    _bool(cfg, "bridge_feedback")
    _bridge_and_trust(cfg)
    _classical_defaults(cfg)
    _choice(cfg, "planning_model", ("default", "exact"))
    if cfg.min_classical_horizon > cfg.max_classical_horizon:
        raise ConfigError(
            f"Config key 'min_classical_horizon' ({cfg.min_classical_horizon}) must not exceed "
            f"max_classical_horizon ({cfg.max_classical_horizon}).")

    # ---- derived keys (only when unset)
    cfg.multitask = False
    cfg.tasks = [cfg.task]
    cfg.task_dim = 0
    if cfg.task_title is None:
        cfg.task_title = cfg.task.replace("-", " ").title()
    if cfg.obs_shape is None:
        cfg.obs_shape = {"state": [info.obs_dim]}
    if cfg.action_dim is None:
        cfg.action_dim = info.action_dim
    if cfg.episode_length is None:
        cfg.episode_length = info.episode_length
    if cfg.action_repeat is None:
        cfg.action_repeat = info.action_repeat
    if cfg.seed_steps is None:
        cfg.seed_steps = max(1000, 5 * cfg.episode_length)
    cfg.seed_steps = _num(cfg, "seed_steps", int, low=1)
    cfg.bin_size = (cfg.vmax - cfg.vmin) / (cfg.num_bins - 1)
    if cfg.discount is None:
        cfg.discount = discount_from_episode_length(cfg.episode_length, cfg.discount_denom,
                                                    cfg.discount_min, cfg.discount_max)
    if cfg.mppi_iterations is None:  # spec 1.2: +2 MPPI iterations for large action spaces
        cfg.mppi_iterations = cfg.iterations + (2 if cfg.action_dim >= 20 else 0)
    if cfg.work_dir is None:
        cfg.work_dir = os.path.join(str(cfg.log_dir), cfg.task, str(cfg.seed), str(cfg.exp_name))
    OmegaConf.set_struct(cfg, True)
    return cfg


def discount_from_episode_length(episode_length: int, denom: float = 5, low: float = 0.95,
                                 high: float = 0.995) -> float:
    """gamma = clip((L/denom - 1) / (L/denom), low, high) (spec 1.2)."""
    frac = episode_length / denom
    return float(min(max((frac - 1) / frac, low), high))


def seed_steps_for(episode_length: int) -> int:
    """seed_steps = max(1000, 5 L) (spec 1.2)."""
    return max(1000, 5 * episode_length)


def config_to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def default_config() -> dict:
    """config.yaml's values before any override or derivation (derived keys are None)."""
    return config_to_dict(_raw_config())
