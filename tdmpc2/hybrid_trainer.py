"""The online trainer for HybridTDMPC2: TD-MPC2's loop (tdmpc2.trainer) with two additions.

* Every evaluation scores both planners on the same episodes: the hybrid planner (at the
  schedule's current H_c) and the learned-only planner (H_c = 0). Episode i of both uses the
  same env seed, derived from (seed, step, i); the training env's RNG stream is restored after
  the evaluation, so evaluating never changes the training episodes.
* Every evaluation also plays the same episodes with the policy prior alone (`prior_*`
  columns: a forward pass per step, the RNG left untouched).
* `seed_policy=classical`: the classical planner on the simulator, plus noise, acts during the
  seed steps (`tdmpc2.teaching`).
* Every evaluation feeds the trust in the learned planner (`tdmpc2.hand_over`), which moves
  H_c under `transition_schedule=adaptive` and w under `bridge_weight=adaptive`.
* Every row carries the classical horizon, the bridge weight and the trust; train rows add the
  means over the episode's hybrid plans (counted when a plan was made for the executed action)
  of the solver's cost / iterations / time, of simulated, bridge and learned scoring time, of w,
  of the nominal's bridge value and of how often the nominal itself was executed, the solver's
  status counts, and the agent steps simulated to score candidates and bridges (the solver's
  own rollouts are in its time, not in this count).
"""
from __future__ import annotations

from collections import Counter

from tdmpc2.trainer import OnlineTrainer


class HybridTrainer(OnlineTrainer):
    def __init__(self, cfg, env, agent, buffer, logger):
        super().__init__(cfg, env, agent, buffer, logger)
        self._plan_stats = _PlanStats()
        self.seeder = _seeder(cfg, agent)

    # ---- acting: accumulate per-plan statistics between log rows
    def choose_action(self, episode):
        if not self.pretrained and self.seeder is not None:  # classical seeding (tdmpc2.teaching)
            return self.seeder.act(t0=episode.num_steps == 0)
        hybrid = getattr(self.agent, "hybrid", None)
        before = hybrid.last_info if hybrid is not None else None
        action = super().choose_action(episode)
        info = hybrid.last_info if hybrid is not None else None
        if info is not None and info is not before:  # a hybrid plan made for this very action
            self._plan_stats.add(info)
        return action

    def _hybrid_info(self, kind: str) -> dict:
        """The schedule's state on every row; per-plan means and counts since the last train
        row on train rows (evaluation plans are not counted)."""
        info = super()._hybrid_info(kind)
        out = {"classical_horizon": info.get("classical_horizon", 0),
               "hybrid_enabled": int(bool(info.get("hybrid_enabled", False)))}
        for key in ("bridge_weight", "trust", "trust_ratio", "expert_return"):
            if key in info:
                out[key] = info[key]
        if kind == "train":
            out.update(self._plan_stats.flush())
        return out

    # ---- evaluation of both planners on the same episodes
    def evaluate(self) -> dict[str, float]:
        from tdmpc2.teaching import PolicyPriorActor

        agent = self.agent
        horizon = getattr(agent, "classical_horizon", 0)
        rng = self.env.get_rng_state() if hasattr(self.env, "get_rng_state") else None
        try:
            hybrid = self._run_episodes()
            if horizon > 0:
                with agent.learned_only():
                    learned = self._run_episodes(record_video=False)
            else:
                learned = hybrid
            prior = self._run_episodes(record_video=False, actor=PolicyPriorActor(agent))
        finally:
            if rng is not None:
                self.env.set_rng_state(rng)
        if hasattr(agent, "observe_evaluation"):  # the trust in the learned planner (tdmpc2.hand_over)
            agent.observe_evaluation(learned["episode_reward"], hybrid["episode_reward"], horizon)
        metrics = dict(hybrid)
        metrics.update({f"learned_{k}": v for k, v in learned.items()})
        metrics.update({f"prior_{k}": v for k, v in prior.items() if k != "episode_length"})
        metrics["eval_classical_horizon"] = horizon
        return metrics

    def _eval_reset(self, episode: int):
        """Episode `episode` of an evaluation starts from the same seed for both planners."""
        seed = (self.cfg.seed * 1_000_003 + self.step * 101 + episode) % 2**31
        try:
            return self.env.reset(seed=seed)
        except TypeError:  # an env without seeded resets
            return self.env.reset()


class _PlanStats:
    """Sums of the hybrid planner's per-plan numbers since the last log row."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.plans, self.status = 0, Counter()
        self.sums = dict(ilqg_cost=0.0, ilqg_iterations=0.0, ilqg_time=0.0, sim_scoring_time=0.0,
                         bridge_time=0.0, learned_scoring_time=0.0, sim_steps=0.0, bridge_weight=0.0,
                         chose_nominal=0.0)
        self.bridge_sum, self.bridge_plans = 0.0, 0

    def add(self, info) -> None:
        """Count one `HybridPlanInfo`."""
        self.plans += 1
        self.status[info.ilqg_status] += 1
        for key in self.sums:
            self.sums[key] += float(getattr(info, key))
        if info.bridge_value == info.bridge_value:  # plans with w > 0 have a bridge value
            self.bridge_sum, self.bridge_plans = self.bridge_sum + info.bridge_value, self.bridge_plans + 1

    def flush(self) -> dict:
        if self.plans == 0:
            return {}
        out = {f"mean_{k}": v / self.plans for k, v in self.sums.items() if k != "sim_steps"}
        out["mean_bridge_value"] = self.bridge_sum / self.bridge_plans if self.bridge_plans else float("nan")
        out["planning_sim_steps"] = self.sums["sim_steps"]
        out["hybrid_plans"] = self.plans
        for status in ("converged", "max_iterations", "failed"):
            out[f"ilqg_{status}"] = self.status.get(status, 0)
        self.reset()
        return out


def _seeder(cfg, agent):
    """The classical seeder of `seed_policy=classical`, or None (`random`)."""
    if cfg.seed_policy != "classical":
        return None
    from tdmpc2.config import ConfigError
    from tdmpc2.teaching import ClassicalSeeder

    hybrid = getattr(agent, "hybrid", None)
    if hybrid is None:
        raise ConfigError(f"Config key 'seed_policy': classical seeding needs hybrid_mpc=true and a task with a "
                          f"simulator interface; '{cfg.task}' has none here (use seed_policy=random).")
    return ClassicalSeeder(hybrid.solver, hybrid.interface, hybrid.plan_horizon, cfg.seed_noise_std)
