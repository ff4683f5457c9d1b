"""The online trainer for HybridTDMPC2: TD-MPC2's loop (tdmpc2.trainer) with two additions.

* Every evaluation scores both planners on the same episodes: the hybrid planner (at the
  schedule's current H_c) and the learned-only planner (H_c = 0). Episode i of both uses the
  same env seed, derived from (seed, step, i); the training env's RNG stream is restored after
  the evaluation, so evaluating never changes the training episodes.
* Every row carries the classical horizon; train rows add the means over the episode's plans
  of iLQG cost / iterations / time and of simulated and learned scoring time, the iLQG status
  counts, and the agent steps simulated to score candidates (iLQG's own rollouts are in its
  time, not in this count).
"""
from __future__ import annotations

from collections import Counter

from tdmpc2.trainer import OnlineTrainer


class HybridTrainer(OnlineTrainer):
    def __init__(self, cfg, env, agent, buffer, logger):
        super().__init__(cfg, env, agent, buffer, logger)
        self._plan_stats = _PlanStats()

    # ---- acting: accumulate per-plan statistics between log rows
    def choose_action(self, episode):
        action = super().choose_action(episode)
        if self.step > self.cfg.seed_steps:
            self._plan_stats.add(self.agent)
        return action

    def _hybrid_info(self, kind: str) -> dict:
        """The schedule's state on every row; per-plan means and counts since the last train
        row on train rows (evaluation plans are not counted)."""
        info = super()._hybrid_info(kind)
        out = {"classical_horizon": info.get("classical_horizon", 0),
               "hybrid_enabled": int(bool(info.get("hybrid_enabled", False)))}
        if kind == "train":
            out.update(self._plan_stats.flush())
        return out

    # ---- evaluation of both planners on the same episodes
    def evaluate(self) -> dict[str, float]:
        agent = self.agent
        hybrid_active = getattr(agent, "classical_horizon", 0) > 0
        rng = self.env.get_rng_state() if hasattr(self.env, "get_rng_state") else None
        try:
            hybrid = self._run_episodes()
            if hybrid_active:
                with agent.learned_only():
                    learned = self._run_episodes(record_video=False)
            else:
                learned = hybrid
        finally:
            if rng is not None:
                self.env.set_rng_state(rng)
        metrics = dict(hybrid)
        metrics.update({f"learned_{k}": v for k, v in learned.items()})
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
                         learned_scoring_time=0.0, sim_steps=0.0)

    def add(self, agent) -> None:
        hybrid = getattr(agent, "hybrid", None)
        info = hybrid.last_info if hybrid is not None else None
        if info is None or getattr(agent, "classical_horizon", 0) == 0:
            return
        self.plans += 1
        self.status[info.ilqg_status] += 1
        for key in self.sums:
            self.sums[key] += float(getattr(info, key))

    def flush(self) -> dict:
        if self.plans == 0:
            return {}
        out = {f"mean_{k}": v / self.plans for k, v in self.sums.items() if k != "sim_steps"}
        out["planning_sim_steps"] = self.sums["sim_steps"]
        out["hybrid_plans"] = self.plans
        for status in ("converged", "max_iterations", "failed"):
            out[f"ilqg_{status}"] = self.status.get(status, 0)
        self.reset()
        return out
