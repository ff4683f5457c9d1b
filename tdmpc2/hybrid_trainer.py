"""The online trainer for HybridTDMPC2: TD-MPC2's loop (tdmpc2.trainer) with two additions.

* Every evaluation scores both planners on the same episodes: the hybrid planner (at the
  schedule's current H_c) and the learned-only planner (H_c = 0). Episode i of both uses the
  same env seed, derived from (seed, step, i); the training env's RNG stream is restored after
  the evaluation, so evaluating never changes the training episodes.
* `hybrid_eval=expert`: the hybrid planner is scored only while the trust needs its return (the
  simulator-only expert's, H_c = max); other evaluations write NaN in its columns and skip its
  episodes, the dearest of an evaluation on a CPU. Skipping them leaves the torch random stream
  of later training in another state than scoring them: same experiment, another draw.
* Every evaluation also plays the same episodes with the policy prior alone (`prior_*`
  columns: a forward pass per step, the RNG left untouched).
* `learned_gate=prior` (`tdmpc2.gate`): the planner is scored with the gate suspended, the
  `gated_*` columns repeat the half (planner or prior) that the previous evaluation chose, with
  `gated_source` 1 for the prior, and this evaluation then moves the gate.
* `seed_policy=classical`: the classical planner on the simulator, plus noise, acts during the
  seed steps (`tdmpc2.teaching`), and `distill_bc_updates` behaviour-cloning updates follow the
  pre-training burst.
* Every stored transition records who chose it (random, classical, hybrid, learned), the
  planner's action before noise and, for planner-chosen or relabelled states, the expert label.
* `learner_episode_prob`: hand-over episodes, where the learned-only planner takes control from
  a random step while H_c > 0 (`tdmpc2.teaching.HandOver`), a share of its states relabelled by
  the classical planner.
* `branch_prob`: simulated branches (`tdmpc2.branches`), counterfactual transitions from the
  simulator at the live state; a share `branch_share` of every batch comes from them.
  `branch_elite_prob`: after pre-training, branches of the learned-only planner's own elites.
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
from contextlib import nullcontext

from tdmpc2.branches import drawn_elite
from tdmpc2.teaching import CLASSICAL, HYBRID, LEARNED, RANDOM, HandOver
from tdmpc2.trainer import OnlineTrainer


class HybridTrainer(OnlineTrainer):
    RECORD_PROVENANCE = True

    def __init__(self, cfg, env, agent, buffer, logger):
        super().__init__(cfg, env, agent, buffer, logger)
        self._plan_stats = _PlanStats()
        self.seeder = _seeder(cfg, agent)
        self.relabeller = _expert(cfg, agent, "relabel_fraction", 0.0) if cfg.relabel_fraction > 0 else None
        self.hand_over = HandOver(cfg.learner_episode_prob, cfg.relabel_fraction, cfg.episode_length)
        self.branches = _branches(cfg, env, agent, buffer)
        self._batches = self.branches.mixed(buffer) if self.branches is not None else buffer
        self._episode_counts = Counter()

    # ---- acting: provenance, hand-over episodes and per-plan statistics between log rows
    def choose_action(self, episode):
        t0 = episode.num_steps == 0
        if self.branches is not None:  # from the live state, before the action changes it
            propose = None
            if self.pretrained:  # elite branches: what the learned-only planner would do here
                propose = lambda: drawn_elite(self.agent.learned_plan(episode.obs[-1]))  # noqa: E731
            uniform, elite = self.branches.maybe_branch(propose)
            self._episode_counts["branches"] += int(uniform) + int(elite)
            self._episode_counts["elite_branches"] += int(elite)
        if not self.pretrained:
            if self.seeder is not None:  # classical seeding (tdmpc2.teaching)
                action, planned = self.seeder.act(t0=t0)
                return self._chose(CLASSICAL, action, planned, planned)
            return self._chose(RANDOM, super().choose_action(episode))
        agent = self.agent
        if t0:
            self.hand_over.new_episode(getattr(agent, "classical_horizon", 0) > 0)
        learner = self.hand_over.learner_acts(episode.num_steps)
        label = self._relabel(episode.num_steps) if learner else None
        hybrid = getattr(agent, "hybrid", None)
        before = hybrid.last_info if hybrid is not None else None
        with agent.learned_only() if learner else nullcontext():
            acting_horizon = getattr(agent, "classical_horizon", 0)
            action = super().choose_action(episode)
        info = hybrid.last_info if hybrid is not None else None
        planned = getattr(agent, "planned_action", None)
        if acting_horizon > 0 and info is not None and info is not before:  # a hybrid plan for this very action
            self._plan_stats.add(info)
            return self._chose(HYBRID, action, planned, planned)
        return self._chose(LEARNED, action, planned, label)

    def _relabel(self, t: int):
        """The classical planner's action at the learner's state at step t, for a drawn share of
        them (None otherwise); planned from a snapshot, so the live state is untouched."""
        if self.relabeller is None:
            return None
        if self.hand_over.start == t:  # the hand-over step: no warm start from another state
            self.relabeller.reset()
        return self.relabeller.label() if self.hand_over.relabel() else None

    def _chose(self, source, action, planned=None, label=None):
        self.last_provenance = (source, planned, label)
        self._episode_counts[source] += 1
        self._episode_counts["relabelled"] += int(source == LEARNED and label is not None)
        return action

    def update_source(self):
        """The replay buffer, or it mixed with the simulated branches (`branch_prob` > 0)."""
        return self._batches

    def resume_state(self, complete: bool = False) -> dict:
        state = super().resume_state(complete)
        if self.branches is not None and not complete:
            state["branches"] = self.branches.state_dict()
        return state

    def restore(self, state: dict) -> None:
        super().restore(state)
        if self.branches is not None and "branches" in state:
            self.branches.load_state_dict(state["branches"])

    def pretrain(self, num_updates: int) -> None:
        """TD-MPC2's pre-training burst, then `distill_bc_updates` behaviour-cloning updates of
        the policy prior on the classical seed data (with seed_policy=classical)."""
        super().pretrain(num_updates)
        bc = int(self.cfg.distill_bc_updates)
        if bc > 0 and self.seeder is not None:
            for _ in range(bc):
                stats = self.agent.behaviour_cloning_update(self.buffer)
            self.logger.progress(f"behaviour cloning: {bc:,} policy updates on the classical seed data, "
                                 f"last loss {float(stats['bc_loss']):.4f}")

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
            counts, self._episode_counts = self._episode_counts, Counter()
            if self.branches is not None:
                out.update(branches=counts["branches"], branches_stored=len(self.branches.store))
                if self.branches.config.branch_elite_prob > 0:
                    out["elite_branches"] = counts["elite_branches"]
            if self.hand_over.probability > 0:
                out.update(learner_steps=counts[LEARNED], relabelled_steps=counts["relabelled"],
                           handover_step=self.hand_over.start if self.hand_over.start is not None else -1)
        return out

    # ---- evaluation of both planners on the same episodes
    def evaluate(self) -> dict[str, float]:
        from tdmpc2.teaching import PolicyPriorActor

        agent = self.agent
        horizon = getattr(agent, "classical_horizon", 0)
        rng = self.env.get_rng_state() if hasattr(self.env, "get_rng_state") else None
        skip = horizon > 0 and hasattr(agent, "needs_hybrid_evaluation") and not agent.needs_hybrid_evaluation(horizon)
        gate = getattr(agent, "gate", None)
        try:
            with agent.gate_suspended() if gate is not None else nullcontext():  # the planner's own score
                hybrid = None if skip else self._run_episodes()
                if horizon > 0:
                    with agent.learned_only():
                        learned = self._run_episodes(record_video=skip)
                else:
                    learned = hybrid
            prior = self._run_episodes(record_video=False, actor=PolicyPriorActor(agent))
        finally:
            if rng is not None:
                self.env.set_rng_state(rng)
        if skip:  # hybrid_eval=expert: the hybrid planner was not scored (NaN in its columns)
            hybrid = {k: float("nan") for k in learned}
        if hasattr(agent, "observe_evaluation"):  # the trust in the learned planner (tdmpc2.hand_over)
            agent.observe_evaluation(learned["episode_reward"], hybrid["episode_reward"], horizon)
        metrics = dict(hybrid)
        metrics.update({f"learned_{k}": v for k, v in learned.items()})
        metrics.update({f"prior_{k}": v for k, v in prior.items() if k != "episode_length"})
        if gate is not None:  # the half chosen before these episodes, then this evaluation moves the gate
            chosen = prior if gate.use_prior else learned
            metrics.update({f"gated_{k}": v for k, v in chosen.items() if k != "episode_length"})
            metrics["gated_source"] = int(gate.use_prior)
            agent.observe_gate(learned["episode_reward"], prior["episode_reward"])
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
    """The classical seeder of `seed_policy=classical`, or None (`random`); fails in one sentence
    when a teaching key is on without a simulator to teach from."""
    from tdmpc2.config import ConfigError

    hybrid = getattr(agent, "hybrid", None)
    if hybrid is None:
        on = [k for k in ("distill_coef", "expert_fraction", "learner_episode_prob") if float(cfg[k]) > 0]
        on += ["return_bound"] if cfg.return_bound != "none" else []
        if on:
            raise ConfigError(f"Config key '{on[0]}': learning from the simulator needs hybrid_mpc=true and a task "
                              f"with a simulator interface; '{cfg.task}' has none here (set it to 0).")
    if cfg.seed_policy != "classical":
        return None
    return _expert(cfg, agent, "seed_policy", cfg.seed_noise_std)


def _branches(cfg, env, agent, buffer):
    """The simulated branches of `branch_prob` > 0 on the env's own physics, or None."""
    from tdmpc2.branches import BranchConfig, SimulatedBranches
    from tdmpc2.config import ConfigError

    config = BranchConfig.from_config(cfg)
    if not config.active:
        return None
    interface = None
    if getattr(agent, "hybrid", None) is not None:
        from tdmpc2.envs import make_interface

        interface = make_interface(cfg, env, planning_model="exact")
    if interface is None:
        key = "branch_prob" if config.branch_prob > 0 else "branch_elite_prob"
        raise ConfigError(f"Config key '{key}': simulated branches need hybrid_mpc=true and a task with a "
                          f"simulator interface; '{cfg.task}' has none here (set it to 0).")
    per_step = int(config.branch_prob > 0) + int(config.branch_elite_prob > 0)  # at most this many branches a step
    # room for every branch of the run, as many entries as the replay at most
    capacity = max(min(int(cfg.buffer_size) // (int(cfg.horizon) + 1), per_step * int(cfg.steps)), 1)
    device = buffer.device if buffer is not None else "cpu"
    return SimulatedBranches(config, interface, cfg.horizon, capacity, device=device, seed=cfg.seed)


def _expert(cfg, agent, key, noise_std):
    """The classical planner on the simulator over T_c (`tdmpc2.teaching.ClassicalExpert`)."""
    from tdmpc2.config import ConfigError
    from tdmpc2.teaching import ClassicalExpert

    hybrid = getattr(agent, "hybrid", None)
    if hybrid is None:
        raise ConfigError(f"Config key '{key}': the classical planner needs hybrid_mpc=true and a task with a "
                          f"simulator interface; '{cfg.task}' has none here.")
    return ClassicalExpert(hybrid.solver, hybrid.interface, hybrid.plan_horizon, noise_std)
