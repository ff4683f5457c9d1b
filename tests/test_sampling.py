"""The predictive-sampling solver: never worse than its warm start, approaches the LQ optimum as
samples grow, reproducible, FAILED with finite actions on NaN rollouts, leaves the live env alone;
`auto` picks the tabled solver; the hybrid planner runs with it; bad names fail in one sentence."""
import numpy as np
import pytest
import torch
from test_classical_solvers import N_U, N_X, LinearQuadratic, Pendulum, lq_optimum

from tdmpc2.classical.sampling import PredictiveSampling, interpolation_matrix
from tdmpc2.config import ConfigError, load_config
from tdmpc2.envs import make_env, make_interface
from tdmpc2.envs.classical_defaults import classical_defaults
from tdmpc2.hybrid_mpc import SOLVERS, SolverStatus, make_classical_solver, solver_from_config

T = 12
X0 = np.array([1.0, -2.0, 0.5, 3.0])


def total_cost(env, x0, U):
    X = env.simulate(x0[None], U[None])[0]
    return float(env.costs(X[:-1], U).sum() + env.terminal_costs(X[-1:])[0])


@pytest.mark.parametrize("kind", ["zero", "linear"])
def test_interpolation_rows_are_convex_weights_and_full_knots_are_the_identity(kind):
    W = interpolation_matrix(10, 4, kind)
    assert W.shape == (10, 4) and np.all(W >= 0)
    np.testing.assert_allclose(W.sum(1), 1.0)
    np.testing.assert_array_equal(interpolation_matrix(7, 7, kind), np.eye(7))
    np.testing.assert_array_equal(interpolation_matrix(5, 1, kind), np.ones((5, 1)))


@pytest.mark.parametrize("objective", ["cost", "reward"])
def test_plan_is_never_worse_than_its_warm_start(objective):
    env = Pendulum()
    for seed in range(4):
        warm = np.random.default_rng(seed).uniform(-1, 1, (30, 1))
        solver = PredictiveSampling(env, iterations=2, samples=8, noise=0.5, knots=4, objective=objective, seed=seed)
        result = solver.plan(np.array([2.5, 0.0]), 30, warm_start=warm)
        own = total_cost(env, np.array([2.5, 0.0]), warm)
        if objective == "reward":  # Pendulum's reward is minus its running cost
            X = env.simulate(np.array([[2.5, 0.0]]), warm[None])[0]
            own = -sum(env.reward(x, u) for x, u in zip(X[:-1], warm))
        assert result.cost <= own + 1e-12
        assert np.all(np.diff(result.cost_history) <= 0) and result.cost_history[0] == pytest.approx(own)
        assert result.status is SolverStatus.MAX_ITERATIONS


def test_approaches_the_riccati_optimum_as_samples_grow():
    env = LinearQuadratic()
    best = total_cost(env, X0, lq_optimum(X0, T))
    start = total_cost(env, X0, np.zeros((T, N_U)))
    gaps = []
    for samples in (4, 32, 256):
        solver = PredictiveSampling(env, iterations=40, samples=samples, noise=0.3, knots=T, seed=0)
        result = solver.plan(X0, T)
        assert result.cost == pytest.approx(total_cost(env, X0, result.actions))  # cost of the returned plan
        gaps.append(result.cost - best)
    assert all(g >= -1e-9 for g in gaps)  # nothing beats the optimum
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.02 * (start - best)


def test_result_shapes_and_zero_gains():
    env = LinearQuadratic()
    result = PredictiveSampling(env, samples=8, knots=3).plan(X0, T)
    assert result.actions.shape == (T, N_U) and result.states.shape == (T + 1, N_X)
    assert result.K.shape == (T, N_U, N_X) and result.k.shape == (T, N_U)
    assert not result.K.any() and not result.k.any() and result.iterations == 1
    np.testing.assert_allclose(result.states, env.simulate(X0[None], result.actions[None])[0])
    assert set(result.timings) >= {"derivatives", "backward", "rollout", "total"}


def test_deterministic_given_a_seed():
    env = Pendulum()
    plans = [PredictiveSampling(env, iterations=3, samples=16, seed=s).plan(np.array([2.0, 0.0]), 20).actions
             for s in (7, 7, 8)]
    np.testing.assert_array_equal(plans[0], plans[1])
    assert not np.array_equal(plans[0], plans[2])


def test_nan_rollouts_fail_with_finite_actions():
    always = Pendulum(nan_when=lambda x, u: True)
    warm = np.full((10, 1), 0.5)
    result = PredictiveSampling(always, samples=8).plan(np.array([0.3, 0.0]), 10, warm_start=warm)
    assert result.status is SolverStatus.FAILED
    assert np.all(np.isfinite(result.actions)) and np.all(np.isfinite(result.states))
    np.testing.assert_array_equal(result.actions, warm)

    some = Pendulum(nan_when=lambda x, u: u[0] > 0.5)  # only some candidates blow up: they are skipped
    result = PredictiveSampling(some, iterations=3, samples=16, noise=0.5).plan(np.array([0.3, 0.0]), 10)
    assert result.status is SolverStatus.MAX_ITERATIONS and np.isfinite(result.cost)
    assert np.all(result.actions <= 0.5)


def test_bad_settings_and_names_fail_in_one_sentence():
    env = LinearQuadratic()
    with pytest.raises(ValueError, match="supported: ilqg, ddp, lqr, sampling"):
        make_classical_solver("mppi", env)
    with pytest.raises(ValueError, match="objective"):
        PredictiveSampling(env, objective="value")
    with pytest.raises(ValueError, match="interpolation"):
        PredictiveSampling(env, interpolation="cubic")
    with pytest.raises(ConfigError, match="classical_algorithm.*sampling"):
        load_config(task="cheetah-run", classical_algorithm="predictive")
    with pytest.raises(ConfigError, match="sampling_objective"):
        load_config(task="cheetah-run", sampling_objective="value")
    with pytest.raises(ConfigError, match="sampling_samples"):
        load_config(task="cheetah-run", sampling_samples=1)


def test_auto_picks_the_tabled_solver_and_its_settings():
    for task in ("quadruped-walk", "cartpole-swingup", "walker-stand", "pendulum-swingup"):
        table = classical_defaults(task)
        cfg = load_config(task=task, mujoco_threads=1)
        assert cfg.classical_algorithm == table.algorithm
        assert cfg.classical_plan_horizon == max(table.plan_horizon, cfg.max_classical_horizon)
        assert cfg.ilqg_iterations == table.iterations
        assert cfg.sampling_samples == table.sampling.samples
        assert cfg.sampling_objective == table.sampling.objective
    assert classical_defaults("quadruped-walk").algorithm == "sampling"  # at least one task uses it
    cfg = load_config(task="quadruped-walk", mujoco_threads=1)
    env = make_env(cfg)
    env.reset()
    iface = make_interface(cfg, env)
    solver = solver_from_config(cfg, iface)
    assert isinstance(solver, SOLVERS["sampling"]) and solver.samples == cfg.sampling_samples
    override = load_config(task="quadruped-walk", classical_algorithm="ilqg", sampling_samples=9)
    assert override.classical_algorithm == "ilqg" and override.sampling_samples == 9


def test_the_live_env_is_never_mutated():
    cfg = load_config(task="hopper-stand", seed=3, mujoco_threads=1, planning_model="exact")
    env = make_env(cfg)
    env.reset()
    iface = make_interface(cfg, env)
    for _ in range(3):
        env.step(env.rand_act())
    before = iface.get_state()
    result = PredictiveSampling(iface, iterations=2, samples=8, knots=3, objective="reward").plan(before, 6)
    np.testing.assert_array_equal(iface.get_state(), before)
    action = result.actions[0].astype(np.float32).astype(np.float64)
    expected = iface.step(before, action)  # exact stepping from the snapshot = what the env does next
    env.step(torch.as_tensor(action, dtype=torch.float32))
    np.testing.assert_array_equal(iface.get_state(), expected)


def test_hybrid_planner_runs_with_the_sampling_solver_on_a_contact_task():
    from tdmpc2.hybrid_tdmpc2 import HybridTDMPC2

    cfg = load_config(task="hopper-stand", hybrid_mpc=True, model_size=1, num_samples=32, num_elites=4,
                      num_pi_trajs=4, iterations=2, device="cpu", hybrid_prefix_samples=4,
                      max_classical_horizon=3, classical_algorithm="sampling", classical_plan_horizon=5,
                      ilqg_iterations=1, sampling_samples=8, mujoco_threads=1)
    env = make_env(cfg)
    obs = env.reset()
    torch.manual_seed(0)
    agent = HybridTDMPC2(cfg, env)
    assert isinstance(agent.hybrid.solver, PredictiveSampling)
    for step in range(3):
        agent.update_training_step(step)
        obs, _, _, _ = env.step(agent.act(obs, t0=step == 0))
    info = agent.get_hybrid_info()
    assert info["classical_horizon"] == 3
    assert info["ilqg_status"] == "max_iterations" and info["ilqg_iterations"] == 1
    assert np.isfinite(info["ilqg_cost"]) and info["ilqg_time"] > 0


def test_benchmark_appends_rows_resumes_and_rejects_tasks_without_a_cost(tmp_path, capsys):
    import csv
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "classical.py")
    spec = importlib.util.spec_from_file_location("classical_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = str(tmp_path / "classical.csv")
    args = ["--tasks", "pendulum-swingup", "--steps", "2", "--csv", out, "--algorithm", "sampling", "--quiet"]
    bench.main(args)
    bench.main(args)  # the finished row is skipped, not run again
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["solver"] == "sampling" and float(rows[0]["load_avg"]) >= 0
    assert "already in" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="supported: .*pendulum-swingup"):
        bench.main(["--tasks", "pendulum-spin", "--steps", "2"])
