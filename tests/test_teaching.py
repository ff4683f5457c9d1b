"""Learning from the simulator (tdmpc2/teaching.py): classical seeding acts far better than random
actions and repeats under a seed, the policy-prior evaluation leaves the RNG untouched, and bad
settings fail naming the key."""
import warnings

import numpy as np
import pytest
import torch

from tdmpc2.config import ConfigError, load_config
from tdmpc2.envs import make_env
from tdmpc2.hybrid_tdmpc2 import HybridTDMPC2
from tdmpc2.hybrid_trainer import HybridTrainer
from tdmpc2.teaching import PolicyPriorActor

SMALL = dict(model_size=1, num_samples=32, num_elites=4, num_pi_trajs=4, iterations=2, device="cpu",
             hybrid_prefix_samples=4, max_classical_horizon=3, episode_length=100)


def _episode(env, act, seed):
    env.reset(seed=seed)
    total, done, t = 0.0, False, 0
    while not done:
        _, reward, done, _ = env.step(act(t))
        total, t = total + float(reward), t + 1
    return total


def test_classical_seeding_acts_far_better_than_random_and_repeats_under_a_seed():
    cfg = load_config(task="cartpole-balance", hybrid_mpc=True, seed_policy="classical", seed_noise_std=0.3,
                      **{**SMALL, "episode_length": 300})
    env = make_env(cfg)
    agent = HybridTDMPC2(cfg, env)
    trainer = HybridTrainer(cfg, env, agent, buffer=None, logger=None)
    assert trainer.seeder is not None and trainer.seeder.horizon == agent.hybrid.plan_horizon
    torch.manual_seed(0)
    seeded = _episode(env, lambda t: trainer.seeder.act(t0=t == 0)[0], seed=3)
    torch.manual_seed(0)
    again = _episode(env, lambda t: trainer.seeder.act(t0=t == 0)[0], seed=3)
    random = _episode(env, lambda t: env.rand_act(), seed=3)
    assert seeded == again  # the noise comes from torch's RNG: a resumed run repeats it
    assert seeded > 540 and seeded > 2 * random, (seeded, random)  # max 600 in 300 agent steps


def test_seeding_noise_is_applied_and_actions_stay_in_bounds():
    cfg = load_config(task="cartpole-balance", hybrid_mpc=True, seed_policy="classical", seed_noise_std=5.0, **SMALL)
    env = make_env(cfg)
    env.reset(seed=1)
    seeder = HybridTrainer(cfg, env, HybridTDMPC2(cfg, env), None, None).seeder
    actions = torch.stack([seeder.act(t0=i == 0)[0] for i in range(5)])
    assert actions.abs().max() <= 1 and (actions.abs() == 1).any()  # large noise saturates, clipped


def test_policy_prior_actor_is_the_prior_mean_and_leaves_the_rng_alone():
    cfg = load_config(task="cartpole-balance", **SMALL)
    agent = HybridTDMPC2(cfg)
    obs = torch.randn(5)
    state = torch.get_rng_state()
    action = PolicyPriorActor(agent).act(obs)
    assert torch.equal(torch.get_rng_state(), state)
    with torch.no_grad():
        mean = agent.model.pi(agent.model.encode(obs[None])).mean[0]
    assert torch.allclose(action, mean)


def test_bad_teaching_settings_name_the_key():
    with pytest.raises(ConfigError, match="seed_policy"):
        load_config(task="cartpole-balance", seed_policy="expert")
    with pytest.raises(ConfigError, match="seed_noise_std"):
        load_config(task="cartpole-balance", seed_noise_std=-0.1)
    cfg = load_config(task="cheetah-jump", hybrid_mpc=True, seed_policy="classical", **{**SMALL, "episode_length": None})
    env = make_env(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the no-interface warning (warned once per process)
        agent = HybridTDMPC2(cfg, env)
    with pytest.raises(ConfigError, match="seed_policy.*cheetah-jump"):
        HybridTrainer(cfg, env, agent, None, None)


# ---------------------------------------------------------------- teaching mechanisms
from tdmpc2.common.buffer import Buffer, returns_to_go  # noqa: E402
from tdmpc2.teaching import (CLASSICAL, HYBRID, LEARNED, RANDOM, TeachingConfig, decay,  # noqa: E402
                             distillation_loss, lower_bounded, return_bound)
from tdmpc2.tdmpc2 import TDMPC2  # noqa: E402


def labelled_episode(steps, obs_dim, action_dim, sources, gen):
    """An episode with provenance: `sources` (steps,) codes; planner-chosen steps carry a label."""
    nan = float("nan")
    obs = torch.randn(steps + 1, obs_dim, generator=gen)
    action = torch.rand(steps + 1, action_dim, generator=gen) * 2 - 1
    label = torch.rand(steps + 1, action_dim, generator=gen) * 1.6 - 0.8
    source = torch.tensor([-1] + list(sources), dtype=torch.long)
    expert = (source == CLASSICAL) | (source == HYBRID)
    label[~expert] = nan
    action[0] = nan
    reward, terminated = torch.rand(steps + 1, generator=gen), torch.zeros(steps + 1)
    reward[0] = terminated[0] = nan
    return dict(obs=obs, action=action, reward=reward, terminated=terminated, source=source,
                planner_action=label.clone(), expert_action=label, return_to_go=returns_to_go(reward, 0.9))


def test_decay_schedules():
    assert decay("constant", 0.3, 0.9) == 1.0
    assert decay("horizon", 0.3, 0.9) == 0.3 and decay("horizon", 1.5, 0) == 1.0
    assert decay("trust", 0.3, 0.9) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="teaching schedule"):
        decay("linear", 0, 0)


def test_distillation_loss_matches_a_hand_computation():
    mean = torch.tensor([[[0.5, -0.5], [0.0, 0.0]], [[1.0, 1.0], [0.2, 0.2]]])  # (H=2, B=2, A=2)
    nan = float("nan")
    label = torch.tensor([[[0.0, 0.5], [nan, nan]], [[1.0, 0.0], [0.2, 0.2]]])
    rho = torch.tensor([1.0, 0.5])
    # t=0: only entry 0 labelled, ||(0.5, -1)||^2 / 2 = 0.625, mean over B = 0.3125; t=1: (0 + 0.5) / 2 = 0.25
    expected = (1.0 * 0.3125 + 0.5 * 0.25) / 2
    assert distillation_loss(mean, label, rho).item() == pytest.approx(expected)
    keep = torch.tensor([[[True], [True]], [[False], [True]]])  # drops t=1, b=0
    assert distillation_loss(mean, label, rho, keep).item() == pytest.approx(0.3125 / 2)
    assert distillation_loss(mean, torch.full_like(label, nan), rho).item() == 0.0


def small_buffer(sources_per_episode, batch_size=256, seed=0, obs_dim=5, action_dim=1):
    gen = torch.Generator().manual_seed(seed)
    buffer = Buffer(10_000, horizon=3, batch_size=batch_size, seed=seed)
    for sources in sources_per_episode:
        buffer.add(labelled_episode(len(sources), obs_dim, action_dim, sources, gen))
    return buffer


def test_expert_fraction_draws_the_requested_share_and_zero_samples_as_before():
    # 25% of transitions are classical, in runs of 10 steps
    sources = ([CLASSICAL] * 10 + [RANDOM] * 30) * 5
    buffer = small_buffer([sources] * 4, batch_size=1000)
    starts = buffer._expert_slice_starts()
    assert len(starts) > 0
    _, prov = buffer.sample_labelled(0.6)
    first = prov.source[0]
    assert ((first == CLASSICAL)[:600]).all()  # the expert share itself
    p = ((first == CLASSICAL)[600:]).float().mean().item()  # the uniform rest hits experts at about the base rate
    assert abs(p - 0.25) < 4 * (0.25 * 0.75 / 400) ** 0.5, p
    # f = 0 draws exactly the indices the plain sampler draws (no extra random numbers)
    a, b = small_buffer([sources] * 4, seed=3), small_buffer([sources] * 4, seed=3)
    assert torch.equal(a.sample(0.0).obs, b.sample().obs)
    # a buffer without planner data falls back to uniform sampling
    plain = small_buffer([[RANDOM] * 50] * 2)
    _, prov = plain.sample_labelled(0.5)
    assert (prov.source == RANDOM).all() and torch.isnan(prov.expert_action).all()


def test_provenance_survives_the_buffer_state_dict_and_old_states_load():
    sources = [CLASSICAL] * 5 + [HYBRID] * 5 + [LEARNED] * 5 + [RANDOM] * 5
    buffer = small_buffer([sources, sources[::-1]])
    state = buffer.state_dict()
    restored = Buffer(10_000, horizon=3, batch_size=256)
    restored.load_state_dict(state)
    for a, b in zip(buffer.episodes(), restored.episodes()):
        assert set(a) == set(b) and {"source", "planner_action", "expert_action", "return_to_go"} <= set(a)
        for key in a:
            assert torch.equal(torch.nan_to_num(a[key], 7.0), torch.nan_to_num(b[key], 7.0)), key
    assert restored.source_counts() == {"unknown": 0, "random": 10, "classical": 10, "hybrid": 10, "learned": 10}
    # a state saved before provenance existed loads, and later episodes with provenance mix in
    for key in ("source", "planner_action", "expert_action", "return_to_go"):
        state["data"].pop(key)
    old = Buffer(10_000, horizon=3, batch_size=256)
    old.load_state_dict(state)
    assert not old.has_provenance
    old.add(labelled_episode(20, 5, 1, sources, torch.Generator().manual_seed(1)))
    assert old.source_counts() == {"unknown": 40, "random": 5, "classical": 5, "hybrid": 5, "learned": 5}


def agent_pair(**overrides):
    """A HybridTDMPC2 with a simulator and a plain TDMPC2 with the same weights."""
    cfg = load_config(task="cartpole-balance", hybrid_mpc=True, batch_size=64, **{**SMALL, **overrides})
    torch.manual_seed(0)
    agent = HybridTDMPC2(cfg, make_env(cfg))
    plain = TDMPC2(cfg)
    plain.load_state_dict(agent.state_dict())
    return agent, plain


def prior_gap(agent, buffer):
    """Mean squared distance between tanh(mu(h(obs))) and the labels over every labelled entry."""
    state = buffer.state_dict()["data"]
    labelled = torch.isfinite(state["expert_action"]).all(-1)
    with torch.no_grad():
        mean = agent.model.pi(agent.model.encode(state["obs"][:-1][labelled[1:]])).mean
    return (mean - state["expert_action"][1:][labelled[1:]]).square().mean().item()


def test_distillation_pulls_the_prior_towards_the_planner_and_is_absent_when_off():
    buffer = small_buffer([[CLASSICAL] * 60 + [RANDOM] * 40] * 3, batch_size=64, action_dim=1)
    # off: the update is TD-MPC2's, bit for bit (same weights, same RNG)
    agent, plain = agent_pair()
    torch.manual_seed(1)
    stats = agent.update(buffer)
    torch.manual_seed(1)
    buffer_copy = small_buffer([[CLASSICAL] * 60 + [RANDOM] * 40] * 3, batch_size=64, action_dim=1)
    plain.update(buffer_copy)
    assert "distill_loss" not in stats
    for (name, a), b in zip(agent.model.named_parameters(), plain.model.parameters()):
        assert torch.equal(a, b), name
    # on: the prior's mean moves towards the labels much more than without the term
    gaps = {}
    for coef in (0.0, 5.0):
        agent, _ = agent_pair(distill_coef=coef, distill_schedule="constant")
        buffer = small_buffer([[CLASSICAL] * 60 + [RANDOM] * 40] * 3, batch_size=64, action_dim=1)
        before = prior_gap(agent, buffer)
        torch.manual_seed(2)
        for _ in range(40):
            stats = agent.update(buffer)
        gaps[coef] = prior_gap(agent, buffer) / before
    assert stats["distill_weight"] == 5.0 and 0 < stats["distill_labelled"] < 1
    assert gaps[5.0] < 0.8 and gaps[5.0] < 0.3 * gaps[0.0], gaps  # measured 0.68 against 4.5


def test_q_filter_keeps_only_labels_that_q_prefers(monkeypatch):
    agent, _ = agent_pair(distill_coef=1.0, distill_q_filter=True)
    H, B, A = 3, 8, agent.cfg.action_dim
    zs = torch.randn(H + 1, B, agent.cfg.latent_dim)
    labels = torch.rand(H, B, A) * 2 - 1
    sample = agent.model.pi(zs)
    target = torch.full((A,), 0.3)  # a stand-in critic: Q(z, a) = -||a - 0.3||^2

    def fake_q(z, a, heads, reduce="avg", target_=False, detach=False):
        return -(a - target).square().sum(-1, keepdim=True)
    monkeypatch.setattr(agent.model, "Q", fake_q)
    agent._labels = (1.0, labels)
    loss, stats = agent.policy_extra_loss(zs, sample)
    keep = fake_q(None, labels, None) >= fake_q(None, sample.mean[:H].detach(), None)
    assert 0 < keep.float().mean() < 1
    assert loss.item() == pytest.approx(distillation_loss(sample.mean[:H], labels, agent._rho[:H], keep).item())
    assert stats["distill_kept"].item() == pytest.approx(keep.float().mean().item())


def run_trainer(tmp_path, trainer_cls=HybridTrainer, **overrides):
    from tdmpc2.common.logger import Logger

    settings = dict(task="cartpole-balance", hybrid_mpc=True, steps=120, seed_steps=20, eval_freq=1000,
                    eval_episodes=1, batch_size=32, checkpoint_freq=0, save_agent=False, work_dir=str(tmp_path),
                    classical_plan_horizon=6, ilqg_iterations=2, **{**SMALL, "episode_length": 20})
    cfg = load_config(**{**settings, **overrides})
    env = make_env(cfg)
    torch.manual_seed(0)
    agent = HybridTDMPC2(cfg, env)
    trainer = trainer_cls(cfg, env, agent, Buffer(1000, cfg.horizon, cfg.batch_size), Logger(cfg))  # nothing evicted
    trainer.train()
    return trainer


def test_trainer_records_sources_labels_and_hands_episodes_to_the_learner(tmp_path):
    trainer = run_trainer(tmp_path, seed_policy="classical", seed_noise_std=0.3, learner_episode_prob=1.0,
                          relabel_fraction=0.5, transition_steps=10_000)
    episodes = list(trainer.buffer.episodes())
    first = episodes[0]  # the seed episode: classical actions, labelled with the action before noise
    assert (first["source"][1:] == CLASSICAL).all()
    assert torch.equal(first["expert_action"][1:], first["planner_action"][1:])
    noise = first["action"][1:] - first["planner_action"][1:]
    assert 0.1 < noise.std().item() < 0.5  # seed_noise_std 0.3 (clipping shrinks it a little)
    handed = 0
    for episode in episodes[2:]:  # after pre-training (step 20): hybrid, then the learner from a drawn step
        source = episode["source"][1:]
        assert set(source.tolist()) <= {HYBRID, LEARNED}
        switch = int((source == HYBRID).sum())
        assert (source[:switch] == HYBRID).all() and (source[switch:] == LEARNED).all()
        handed += switch < len(source)
        learner_labels = torch.isfinite(episode["expert_action"][1:][source == LEARNED]).all(-1)
        if len(learner_labels) >= 8:
            assert 0 < learner_labels.float().mean() < 1  # about half of the learner's states relabelled
        assert torch.isfinite(episode["planner_action"][1:]).all()  # both planners record their action
    assert handed >= 2


def test_relabelling_leaves_the_live_state_untouched():
    cfg = load_config(task="cartpole-balance", hybrid_mpc=True, learner_episode_prob=1.0, relabel_fraction=1.0,
                      **SMALL)
    env = make_env(cfg)
    env.reset(seed=2)
    trainer = HybridTrainer(cfg, env, HybridTDMPC2(cfg, env), None, None)
    interface = trainer.agent.hybrid.interface
    state = interface.get_state().copy()
    label = trainer.relabeller.label()
    assert torch.isfinite(label).all() and label.abs().max() <= 1
    assert (interface.get_state() == state).all()


def test_teaching_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="relabel_fraction"):
        load_config(task="cartpole-balance", relabel_fraction=0.5)
    with pytest.raises(ConfigError, match="distill_bc_updates"):
        load_config(task="cartpole-balance", distill_bc_updates=10)
    with pytest.raises(ConfigError, match="expert_fraction"):
        load_config(task="cartpole-balance", expert_fraction=1.5)
    with pytest.raises(ConfigError, match="distill_schedule"):
        load_config(task="cartpole-balance", distill_schedule="linear")
    with pytest.raises(ConfigError, match="distill_coef"):
        load_config(task="cartpole-balance", distill_coef=-1)
    cfg = load_config(task="cartpole-balance", distill_coef=1.0, **SMALL)  # hybrid_mpc=false: nothing to teach
    with pytest.raises(ConfigError, match="distill_coef.*hybrid_mpc=true"):
        HybridTrainer(cfg, make_env(cfg), HybridTDMPC2(cfg), None, None)
    assert not TeachingConfig.from_config(load_config(task="cartpole-balance")).active


def test_with_every_mechanism_off_recording_provenance_changes_nothing(tmp_path):
    """Provenance is recorded by every hybrid run; with the teaching keys at their defaults the
    run equals one that records nothing, log row for log row (the planner columns included)."""
    import csv

    class Unrecorded(HybridTrainer):
        RECORD_PROVENANCE = False

    def rows(path):
        with open(path, newline="") as f:
            return [{k: v for k, v in r.items() if not (k.endswith("_time") or k == "steps_per_second")}
                    for r in csv.DictReader(f)]
    recorded = run_trainer(tmp_path / "a", steps=60, eval_freq=40)
    unrecorded = run_trainer(tmp_path / "b", Unrecorded, steps=60, eval_freq=40)
    assert recorded.buffer.has_provenance and not unrecorded.buffer.has_provenance
    for name in ("train.csv", "eval.csv"):
        a, b = rows(tmp_path / "a" / name), rows(tmp_path / "b" / name)
        assert len(a) >= 2 and a == b, name


def test_teaching_probe_replays_saved_weights_with_each_variant(tmp_path):
    """benchmarks/teaching_probe.py rebuilds a run from its config.yaml and checkpoint: prior-only
    keeps a single Gaussian sample, every variant repeats exactly, and a directory that is not a
    run fails in one line."""
    import importlib.util
    import os

    from omegaconf import OmegaConf

    from tdmpc2.tdmpc2 import TDMPC2

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "teaching_probe.py")
    spec = importlib.util.spec_from_file_location("teaching_probe", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)

    cfg = load_config(task="cartpole-balance", **{**SMALL, "episode_length": 30})
    torch.manual_seed(0)
    os.makedirs(tmp_path / "models")
    TDMPC2(cfg).save(str(tmp_path / "models" / "step_0.pt"))
    OmegaConf.save(cfg, tmp_path / "config.yaml")
    checkpoint = str(tmp_path / "models" / "step_0.pt")

    only, _ = probe.variant_actor("prior-only", str(tmp_path), checkpoint)
    assert (only.num_pi_trajs, only.num_samples) == (cfg.num_samples - 1, cfg.num_samples)
    assert isinstance(probe.variant_actor("prior", str(tmp_path), checkpoint)[1], PolicyPriorActor)
    _, pessimist = probe.variant_actor("min-q", str(tmp_path), checkpoint)
    model, z = pessimist.model, torch.randn(7, cfg.latent_dim)
    a = torch.rand(7, cfg.action_dim) * 2 - 1
    with torch.no_grad():
        every = model._decode(model.Q_logits(z, a, torch.arange(model.num_q)))
        assert torch.allclose(model.Q(z, a, model.random_pair(), "avg"), every.min(0).values)
    for variant in probe.VARIANTS:
        first, again = (probe.probe(str(tmp_path), 0, variant, episodes=2) for _ in range(2))
        assert len(first["returns"].split()) == 2 and first["step"] == 0 and first["variant"] == variant
        assert first["mean_return"] == again["mean_return"] and 0 <= first["mean_return"] <= 2 * 30
    with pytest.raises(SystemExit, match="config.yaml"):
        probe.run_config(str(tmp_path / "not_a_run"))


def test_teaching_summary_lists_arms_not_every_seed_has_reached(tmp_path, capsys):
    """benchmarks/teaching.py prints per-seed curves for an arm missing a seed (no IQM row), and
    nothing for an arm all seeds have reached."""
    import importlib.util
    import os

    import pandas as pd

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "teaching.py")
    spec = importlib.util.spec_from_file_location("teaching_study", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)

    def write(arm, seed, values):
        run = tmp_path / "cartpole-swingup" / str(seed) / study.run_name(arm, 10000)
        os.makedirs(run)
        pd.DataFrame(dict(step=[0, 1000, 2000][:len(values)], learned_episode_reward=values)).to_csv(run / "eval.csv")
    for seed in (1, 2):
        write("tdmpc2", seed, [1.0, 2.0, 3.0])
    write("branches", 1, [40.0, 300.4])
    study.report_partial(study.Runs(str(tmp_path)), ["cartpole-swingup"], [1, 2], ["tdmpc2", "branches"], 10000)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.strip() for line in lines] == ["partial cartpole-swingup branches seed 1: 0k:40 1k:300"]


def test_teaching_summary_archives_each_runs_curve_and_reads_it_without_the_logs(tmp_path):
    """summarise() copies every logged run's evaluations under <out>/curves; with the logs gone (a
    new checkout) the same summary comes from the archive, and a restarted, shorter run neither
    overwrites the archived curve nor replaces it in the summary."""
    import importlib.util
    import os
    import shutil

    import pandas as pd

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "teaching.py")
    spec = importlib.util.spec_from_file_location("teaching_archive", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    logs, out = tmp_path / "logs", tmp_path / "out"
    rng = np.random.default_rng(0)

    def write(seed, steps):
        run = logs / "cartpole-swingup" / str(seed) / study.run_name("bound", 5000)
        os.makedirs(run, exist_ok=True)
        pd.DataFrame(dict(step=steps, episode_reward=rng.uniform(0, 900, len(steps)),
                          learned_episode_reward=rng.uniform(0, 900, len(steps)),
                          prior_episode_reward=rng.uniform(0, 900, len(steps)),
                          eval_classical_horizon=0)).to_csv(run / "eval.csv", index=False)
    for seed in (1, 2, 3):
        write(seed, [0, 1000, 2000])
    args = (["cartpole-swingup"], [1, 2, 3], ["bound"], 5000, str(out), "s")
    study.summarise(str(logs), *args)
    first = pd.read_csv(out / "s.csv")
    archived = pd.read_csv(out / "curves" / "cartpole-swingup" / "2" / "bound.csv")
    assert list(archived.columns) == ["step", "learned_episode_reward", "prior_episode_reward", "episode_reward",
                                      "origin"] and len(archived) == 3
    shutil.rmtree(logs)
    os.remove(out / "s.csv")
    write(1, [0])  # seed 1 restarted from scratch: one evaluation so far
    study.summarise(str(logs), *args)
    again = pd.read_csv(out / "s.csv")
    assert len(first) == len(again) == 9 and np.allclose(first.iqm, again.iqm)
    assert len(pd.read_csv(out / "curves" / "cartpole-swingup" / "1" / "bound.csv")) == 3


# ---------------------------------------------------------------- return lower bounds
def test_returns_to_go_match_direct_sums_and_refuse_negative_rewards():
    reward = torch.tensor([float("nan"), 0.5, 0.0, 1.0, 0.25])
    g = returns_to_go(reward, 0.9)
    assert torch.isnan(g[0])
    for k in range(1, 5):  # the slow reference: the sum written out
        direct = sum(0.9 ** (j - k) * float(reward[j]) for j in range(k, 5))
        assert g[k].item() == pytest.approx(direct, rel=1e-6)
    assert torch.isnan(returns_to_go(torch.tensor([float("nan"), 1.0, -0.1]), 0.9)).all()
    assert torch.isnan(returns_to_go(torch.tensor([float("nan")]), 0.9)).all()


def test_return_bound_raises_only_the_kept_targets_below_their_bound():
    nan = float("nan")
    source = torch.tensor([[CLASSICAL, RANDOM, HYBRID, LEARNED]])  # (H=1, B=4)
    returns = torch.tensor([[[5.0], [5.0], [0.5], [nan]]])
    targets = torch.ones(1, 4, 1)
    assert return_bound("none", source, returns) is None
    assert return_bound("expert", source, None) is None
    expert = return_bound("expert", source, returns)
    assert torch.equal(torch.isfinite(expert).flatten(), torch.tensor([True, False, True, False]))
    raised, mask = lower_bounded(targets, expert)
    assert raised.flatten().tolist() == [5.0, 1.0, 1.0, 1.0] and mask.flatten().tolist() == [True, False, False, False]
    raised, _ = lower_bounded(targets, return_bound("all", source, returns))
    assert raised.flatten().tolist() == [5.0, 5.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="return_bound"):
        return_bound("some", source, returns)


def mean_q(agent, buffer):
    """Mean Q over every stored transition."""
    data = buffer.state_dict()["data"]
    with torch.no_grad():
        z = agent.model.encode(data["obs"][:-1])
        return agent.model.Q(z, torch.nan_to_num(data["action"][1:]), agent.model.random_pair(), "avg").mean().item()


def test_return_bound_lifts_q_towards_the_returns_and_is_absent_when_off():
    episodes = [[CLASSICAL] * 60 + [RANDOM] * 40] * 3
    # the update uses max(y, G) as its targets: checked against TD-MPC2's targets on one batch
    agent, _ = agent_pair(return_bound="expert")
    batch, prov = small_buffer(episodes, batch_size=64, action_dim=1).sample_labelled()
    agent._bound = return_bound("expert", prov.source, prov.return_to_go)
    next_z = agent.model.encode(batch.obs[1:])
    torch.manual_seed(3)
    bounded = agent._td_targets(next_z, batch.reward, batch.terminated)
    torch.manual_seed(3)
    plain = TDMPC2._td_targets(agent, next_z, batch.reward, batch.terminated)
    expected = torch.where(torch.isfinite(agent._bound), torch.maximum(plain, torch.nan_to_num(agent._bound)), plain)
    assert torch.equal(bounded, expected) and (bounded > plain).any()
    # learning: Q rises towards the returns (about 5-9 here, against a fresh Q near 0) with the bound
    qs = {}
    for mode in ("none", "all"):
        agent, _ = agent_pair(return_bound=mode, expert_fraction=0.5, expert_schedule="constant")
        buffer = small_buffer(episodes, batch_size=64, action_dim=1)
        torch.manual_seed(2)
        for _ in range(30):
            stats = agent.update(buffer)
        qs[mode] = mean_q(agent, buffer)
        assert ("return_bound_raised" in stats) == (mode != "none")
    assert stats["return_bound_raised"] > 0.5
    assert qs["all"] > qs["none"] + 0.8, qs  # measured 1.61 against 0.25


def test_trainer_stores_each_episodes_returns_to_go(tmp_path):
    trainer = run_trainer(tmp_path, steps=60, return_bound="all")
    episodes = list(trainer.buffer.episodes())
    assert len(episodes) >= 2
    for episode in episodes:
        expected = returns_to_go(episode["reward"], trainer.agent.discount)
        assert torch.allclose(episode["return_to_go"][1:], expected[1:]) and torch.isnan(episode["return_to_go"][0])
    with pytest.raises(ConfigError, match="return_bound"):
        load_config(task="cartpole-balance", return_bound="mc")


def test_teaching_driver_summarises_the_whole_stage_after_a_partial_launch(tmp_path, monkeypatch):
    """A launch of one arm and one seed must not narrow the stage's summary files to them."""
    import importlib.util
    import os
    import sys

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "teaching.py")
    spec = importlib.util.spec_from_file_location("teaching_driver", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    calls = {}
    monkeypatch.setattr(study, "launch", lambda runs, *a, **k: calls.setdefault("launched", runs))
    monkeypatch.setattr(study, "summarise", lambda log_dir, tasks, seeds, arms, *a, **k:
                        calls.setdefault("summary", (tasks, seeds, arms)))
    monkeypatch.setattr(sys, "argv", ["teaching.py", "--stage", "2", "--arms", "handover", "--seeds", "3",
                                      "--tasks", "pendulum-swingup", "--log-dir", str(tmp_path)])
    study.main()
    assert [(r["name"], r["seed"], r["task"]) for r in calls["launched"]] == [("handover-10k", 3, "pendulum-swingup")]
    tasks, seeds, arms = calls["summary"]
    assert tasks == ["cartpole-swingup", "pendulum-swingup"] and seeds == [1, 2, 3]
    assert arms == ["tdmpc2", "branches", "handover"]
    calls.clear()  # --summarise-only keeps exactly what was asked for
    monkeypatch.setattr(sys, "argv", ["teaching.py", "--stage", "3", "--seeds", "1", "--summarise-only",
                                      "--log-dir", str(tmp_path)])
    study.main()
    assert "launched" not in calls and calls["summary"][1:] == ([1], ["tdmpc2", "branches", "bound"])
    calls.clear()  # stage 4 launches its two arms at 5k and reads the references, never launching them
    monkeypatch.setattr(sys, "argv", ["teaching.py", "--stage", "4", "--seeds", "2", "--tasks", "cartpole-swingup",
                                      "--log-dir", str(tmp_path)])
    study.main()
    launched = {r["name"]: r for r in calls["launched"]}
    assert sorted(launched) == ["tdmpc2-utd3", "utd3"] and all(r["steps"] == 5000 for r in launched.values())
    assert launched["utd3"]["updates_per_step"] == 3 and launched["utd3"]["return_bound"] == "all"
    assert launched["tdmpc2-utd3"]["updates_per_step"] == 3 and not launched["tdmpc2-utd3"]["hybrid_mpc"]
    assert calls["summary"][2] == ["tdmpc2", "bound", "utd3", "tdmpc2-utd3"]
    calls.clear()  # stage 5: the elites arm is utd3 plus elite branches
    monkeypatch.setattr(sys, "argv", ["teaching.py", "--stage", "5", "--seeds", "1", "--tasks", "cartpole-swingup",
                                      "--log-dir", str(tmp_path)])
    study.main()
    (elites,) = calls["launched"]
    assert elites["name"] == "elites" and elites["branch_elite_prob"] == 1.0 and elites["updates_per_step"] == 3
    assert calls["summary"][2] == ["tdmpc2", "utd3", "elites"]
    assert "utd3" not in study.STAGES[1]["arms"]  # stage 1 summarises the screened arms only


def test_teaching_show_prints_a_valid_training_command_for_every_arm(capsys, monkeypatch):
    """--show ARM prints the CLI command of one run of the arm; its overrides are a valid config
    (so the README's command for the best arm cannot drift from the study's settings)."""
    import importlib.util
    import os
    import sys

    from omegaconf import OmegaConf

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "teaching.py")
    spec = importlib.util.spec_from_file_location("teaching_show", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    for arm in study.ARMS:
        monkeypatch.setattr(sys, "argv", ["teaching.py", "--show", arm])
        study.main()
        words = capsys.readouterr().out.split()
        assert words[:3] == ["python", "-m", "tdmpc2.train_hybrid"]
        cfg = load_config(**OmegaConf.to_container(OmegaConf.from_dotlist(words[3:])))  # typed as hydra types them
        assert cfg.hybrid_mpc == (arm not in ("tdmpc2", "tdmpc2-utd3")) and cfg.model_size == 1
        if arm == "elites":
            assert cfg.branch_elite_prob == 1 and cfg.updates_per_step == 3 and cfg.return_bound == "all"


def test_teaching_plot_gives_each_arm_one_colour_in_every_panel(tmp_path, monkeypatch):
    """An arm missing from one task's panels must not hand its colour to the next arm there (the
    legend would name the wrong curve)."""
    import importlib.util
    import os

    import matplotlib.figure
    import pandas as pd

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "teaching.py")
    spec = importlib.util.spec_from_file_location("teaching_plot", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    rows = [dict(task=task, arm=arm, metric=metric, env_step=step, iqm=1.0, ci_low=0.0, ci_high=2.0)
            for task, arms in (("a", ["tdmpc2", "utd3", "elites"]), ("b", ["tdmpc2", "elites"]))
            for arm in arms for metric in study.SUMMARY_METRICS for step in (0, 2000)]
    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: saved.append(fig))
    study.plot(pd.DataFrame(rows), ["a", "b"], ["tdmpc2", "utd3", "elites"], str(tmp_path / "p.png"))
    colours = {}
    for ax in saved[0].axes:
        for line in ax.get_lines():
            colours.setdefault(line.get_label(), set()).add(line.get_color())
    assert sorted(colours) == ["elites", "tdmpc2", "utd3"] and all(len(c) == 1 for c in colours.values())
    assert len(set.union(*colours.values())) == 3


def test_hybrid_eval_expert_scores_the_hybrid_planner_only_when_the_trust_needs_it(tmp_path):
    """hybrid_eval=expert: the first evaluation (H_c = max, the expert) scores the hybrid planner;
    later ones at 0 < H_c < max write NaN for it and still score the learned-only planner and the
    prior and update the trust; at H_c = 0 both columns are the learned planner's."""
    import math

    import pandas as pd

    run_trainer(tmp_path, hybrid_eval="expert", eval_freq=40, transition_steps=100)
    rows = pd.read_csv(tmp_path / "eval.csv")
    assert len(rows) >= 4 and rows.eval_classical_horizon.iloc[0] == rows.eval_classical_horizon.max() > 0
    assert math.isfinite(rows.episode_reward.iloc[0]) and rows.expert_return.iloc[0] == rows.episode_reward.iloc[0]
    middle = rows[(rows.eval_classical_horizon > 0) & (rows.index > 0)]
    last = rows[rows.eval_classical_horizon == 0]
    assert len(middle) >= 2 and middle.episode_reward.isna().all()
    assert middle.learned_episode_reward.notna().all() and middle.prior_episode_reward.notna().all()
    assert (rows.expert_return == rows.episode_reward.iloc[0]).all() and rows.trust.notna().all()
    assert len(last) >= 1 and (last.episode_reward == last.learned_episode_reward).all()
    with pytest.raises(ConfigError, match="hybrid_eval"):
        load_config(task="cartpole-balance", hybrid_eval="sometimes")
