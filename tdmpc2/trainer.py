"""Online single-task trainer (spec 7.1) and its evaluation protocol (spec 7.2).

Loop over agent steps n = 0..steps (inclusive):
  1. n % eval_freq == 0 marks an evaluation as pending;
  2. at an episode boundary: run a pending evaluation; if n > 0 log the finished episode and add
     it to the buffer; reset the env and start a new episode record;
  3. act: random action while n <= seed_steps, else plan (t0 on the episode's first step);
  4. step the env and record the transition;
  5. at n == seed_steps run seed_steps updates (pre-training), after that one update per step
     (`updates_per_step` updates with a larger update-to-data ratio; 1 is TD-MPC2).
Training and evaluation share one env. Checkpoints go to <work_dir>/models/ every
`checkpoint_freq` steps and at the end (agent weights and optimisers: `checkpoint=PATH` loads
one).

Resuming. At the first episode boundary at or after every multiple of `checkpoint_freq` (after
that boundary's evaluation and train row, before the env reset), the trainer also writes
<work_dir>/resume.pt: the agent's state_dict (model, both optimisers, running scale, hybrid
schedule step), the replay buffer with its sampling generator, the step counter, the
pre-training flag, the last update's losses, the RNG states (python, numpy, torch, CUDA, and the
env's via `env.get_rng_state()` when it has one) and the number of rows of each CSV log. Taking
it at an episode boundary means no half-finished episode, planner warm start or per-episode
statistics need saving: the next step resets the env. The file is written atomically (temp
file, fsync, os.replace, fsync of the directory) after the CSV logs are fsynced, so a crash at
any moment leaves either the previous or the new checkpoint, each consistent with the logs. At
the end of training resume.pt becomes a small "complete" marker (no buffer), so the same command
run again reports the finished run instead of training it again. `tdmpc2.train.run` loads it
(see `load_resume_state`); `restore()` puts the state back.

A hybrid agent may expose `update_training_step(step)` (called once per agent step before acting)
and `get_hybrid_info()` (a dict of numbers added to every train/eval log row).
"""
from __future__ import annotations

import glob
import math
import os
import random
import time

import numpy as np
import torch

from tdmpc2.common.buffer import returns_to_go
from tdmpc2.common.checkpoint import atomic_torch_save

RESUME_FILE = "resume.pt"
RESUME_FORMAT = "hybrid-tdmpc2-resume/1"


class EpisodeRecord:
    """The entries of one episode in buffer layout (spec 6): entry 0 holds the initial
    observation with NaN action/reward/terminated, entry k the transition that led to s_k.
    With `provenance`, entries also carry (source, planner action, expert label) (common.buffer):
    -1 and NaN for entry 0 and for steps appended without them."""

    def __init__(self, obs: torch.Tensor, action_dim: int, provenance: bool = False):
        nan = float("nan")
        self.obs, self.action = [obs], [torch.full((action_dim,), nan)]
        self.reward, self.terminated = [torch.tensor(nan)], [torch.tensor(nan)]
        self.success, self.total_reward = 0.0, 0.0
        self.provenance = ([-1], [torch.full((action_dim,), nan)], [torch.full((action_dim,), nan)]) if provenance else None

    @property
    def num_steps(self) -> int:
        return len(self.obs) - 1

    def append(self, obs, action, reward, info, provenance=None) -> None:
        """`provenance`: (source code, planner action or None, expert label or None)."""
        if self.provenance is not None:
            source, planned, label = provenance if provenance is not None else (-1, None, None)
            nan = self.provenance[1][0]
            self.provenance[0].append(int(source))
            self.provenance[1].append(nan if planned is None else planned.detach().cpu().float().reshape(nan.shape))
            self.provenance[2].append(nan if label is None else label.detach().cpu().float().reshape(nan.shape))
        self.obs.append(obs)
        self.action.append(action.detach().cpu().float())
        self.reward.append(torch.as_tensor(reward, dtype=torch.float32))
        self.terminated.append(torch.as_tensor(info.get("terminated", 0.0), dtype=torch.float32))
        self.success = float(info.get("success", 0.0))
        self.total_reward += float(reward)

    @property
    def last_terminated(self) -> bool:
        return self.num_steps > 0 and bool(self.terminated[-1] > 0)

    def to_dict(self, discount: float | None = None) -> dict[str, torch.Tensor]:
        """The episode's fields; with provenance and a `discount`, also its returns to go."""
        out = dict(obs=torch.stack(self.obs), action=torch.stack(self.action),
                   reward=torch.stack(self.reward), terminated=torch.stack(self.terminated))
        if self.provenance is not None:
            source, planned, label = self.provenance
            out.update(source=torch.tensor(source, dtype=torch.long), planner_action=torch.stack(planned),
                       expert_action=torch.stack(label))
            if discount is not None:
                out["return_to_go"] = returns_to_go(out["reward"], discount)
        return out


class OnlineTrainer:
    """Runs spec 7.1 with `env`, `agent`, `buffer` and `logger`; `train()` returns the final
    checkpoint path (or None)."""

    PRETRAIN_REPORT_SECONDS = 10.0
    RECORD_PROVENANCE = False  # store who chose each action (common.buffer); the hybrid trainer does

    def __init__(self, cfg, env, agent, buffer, logger):
        self.cfg, self.env, self.agent, self.buffer, self.logger = cfg, env, agent, buffer, logger
        self.step = 0
        self.pretrained = False
        self.eval_pending = False
        self._start = time.time()
        self._elapsed_before = 0.0   # training time of the runs this one resumes
        self._last_update: dict = {}
        self._resumed_at_boundary = False
        self.last_provenance = None  # (source, planner action, label) of the last chosen action
        freq = int(cfg.checkpoint_freq)
        self._next_resume_step = freq if freq > 0 else None

    # ---- main loop
    def train(self) -> str | None:
        cfg, self._start = self.cfg, time.time() - self._elapsed_before
        episode, done = None, True
        while self.step <= cfg.steps:
            if self._resumed_at_boundary:  # this boundary's eval, train row and checkpoint are done
                self._resumed_at_boundary = False
            else:
                if self.step % cfg.eval_freq == 0:
                    self.eval_pending = True
                if done:
                    if self.eval_pending:
                        self.log_eval(self.evaluate())
                        self.eval_pending = False
                    if self.step > 0:
                        self.finish_episode(episode)
                    self.maybe_save_resume()
            if done:
                episode = EpisodeRecord(self.env.reset(), cfg.action_dim, self.RECORD_PROVENANCE)
            self._notify_step()
            action = self.choose_action(episode)
            obs, reward, done, info = self.env.step(action)
            episode.append(obs, action, reward, info, self.last_provenance)
            self.run_updates()
            self.step += 1
            self.maybe_checkpoint()
        path = self.save_checkpoint("final") if cfg.save_agent else None
        self.save_resume(complete=True)
        return path

    def choose_action(self, episode: EpisodeRecord) -> torch.Tensor:
        if self.pretrained:
            return self.agent.act(episode.obs[-1], t0=episode.num_steps == 0)
        return self.env.rand_act()

    def run_updates(self) -> None:
        """Pre-train with `seed_steps` updates at step seed_steps, then `updates_per_step` updates
        per step (1, TD-MPC2's, by default; the pre-training burst does not scale with it).

        With the default seed_steps (5 episodes) this is spec 7.1 exactly. A smaller seed_steps
        (a smoke run, e.g. seed_steps=200 with 500-step episodes) postpones pre-training to the
        first step at which the buffer holds a whole episode; actions stay random until then.
        """
        if self.pretrained:
            for _ in range(self.cfg.updates_per_step):
                self._last_update = self.agent.update(self.update_source())
        elif self.step >= self.cfg.seed_steps and self.buffer.num_stored_eps > 0:
            self.pretrain(self.cfg.seed_steps)
            self.pretrained = True

    def update_source(self):
        """What updates sample their batches from: the replay buffer (the hybrid trainer may mix in
        simulated branches)."""
        return self.buffer

    def pretrain(self, num_updates: int) -> None:
        """The seed-phase pre-training, with a progress line every ~10 s."""
        self.logger.progress(f"pretraining: {num_updates:,} updates on {len(self.buffer):,} seed entries")
        start = last_report = time.time()
        for i in range(num_updates):
            self._last_update = self.agent.update(self.update_source())
            if time.time() - last_report >= self.PRETRAIN_REPORT_SECONDS:
                last_report = time.time()
                rate = (i + 1) / (last_report - start)
                self.logger.progress(f"pretraining: {i + 1:,}/{num_updates:,} updates, {rate:.1f} updates/s, "
                                     f"ETA {(num_updates - i - 1) / rate:.0f}s")
        self.logger.progress(f"pretraining done in {time.time() - start:.0f}s")

    def finish_episode(self, episode: EpisodeRecord) -> None:
        if episode.last_terminated and not self.cfg.episodic:
            raise RuntimeError("The env reported a termination but episodic=false; set episodic=true "
                               "for tasks that terminate early.")
        index = self.buffer.add(episode.to_dict(self.agent.discount if episode.provenance is not None else None))
        metrics = dict(episode_reward=episode.total_reward, episode_success=episode.success,
                       episode_length=episode.num_steps + 1,  # stored entries (spec 7.3)
                       episode_terminated=float(episode.last_terminated))
        self.logger.log({**self._common(episode=index + 1), **metrics, **self._last_update,
                         **self._hybrid_info("train")}, "train")

    # ---- evaluation (spec 7.2)
    def evaluate(self) -> dict[str, float]:
        return self._run_episodes()

    def _run_episodes(self, record_video: bool = True, actor=None) -> dict[str, float]:
        """`eval_episodes` episodes with the planner (or `actor`, anything with the agent's `act`)
        in eval mode; means of return, final-step success and length. The first episode is
        filmed when videos are on."""
        actor = self.agent if actor is None else actor
        rewards, successes, lengths = [], [], []
        video = self.logger.video if record_video else None
        for i in range(self.cfg.eval_episodes):
            obs, done, total, t = self._eval_reset(i), False, 0.0, 0
            if video is not None:
                video.init(self.env, enabled=i == 0)
            while not done:
                action = actor.act(obs, t0=t == 0, eval_mode=True)
                obs, reward, done, info = self.env.step(action)
                total, t = total + float(reward), t + 1
                if video is not None:
                    video.record(self.env)
            rewards.append(total)
            successes.append(float(info.get("success", 0.0)))
            lengths.append(t)
        return dict(episode_reward=_nanmean(rewards), episode_success=_nanmean(successes),
                    episode_length=_nanmean(lengths))

    def _eval_reset(self, episode: int) -> torch.Tensor:
        """Reset for evaluation episode `episode` (the shared env, spec 7.2)."""
        return self.env.reset()

    def log_eval(self, metrics: dict) -> None:
        self.logger.log({**self._common(), **metrics, **self._hybrid_info("eval")}, "eval")
        self.logger.log_video(self.step)

    # ---- checkpoints
    def maybe_checkpoint(self) -> None:
        freq = self.cfg.checkpoint_freq
        if freq and self.step % freq == 0 and self.step < self.cfg.steps:
            self.save_checkpoint(f"step_{self.step}")

    def save_checkpoint(self, name: str) -> str:
        """Save the agent's weights to <work_dir>/models/<name>.pt (`agent.save` writes atomically)."""
        directory = os.path.join(str(self.cfg.work_dir), "models")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{name}.pt")
        self.agent.save(path)
        return path

    # ---- resuming
    def maybe_save_resume(self) -> None:
        """Write resume.pt at this episode boundary if a multiple of checkpoint_freq was passed."""
        if self._next_resume_step is None or self.step < self._next_resume_step:
            return
        freq = int(self.cfg.checkpoint_freq)
        self._next_resume_step = (self.step // freq + 1) * freq
        if self.step < self.cfg.steps:
            self.save_resume()

    def resume_state(self, complete: bool = False) -> dict:
        """Everything `restore` needs to continue this run from the current episode boundary;
        a finished run (`complete`) stores no agent or buffer."""
        from tdmpc2.config import config_to_dict

        state = dict(format=RESUME_FORMAT, complete=complete, step=self.step,
                     pretrained=self.pretrained, eval_pending=self.eval_pending,
                     elapsed=time.time() - self._start,
                     logs=self.logger.row_counts(), config=config_to_dict(self.cfg))
        if not complete:
            state.update(agent=self.agent.state_dict(), buffer=self.buffer.state_dict(),
                         last_update={k: v.detach().cpu() if torch.is_tensor(v) else v
                                      for k, v in self._last_update.items()},
                         rng=capture_rng(self.env))
        return state

    def save_resume(self, complete: bool = False) -> str | None:
        """Write <work_dir>/resume.pt atomically; agents without `state_dict` (test stubs) skip it."""
        if not hasattr(self.agent, "state_dict"):
            return None
        self.logger.sync()
        path = os.path.join(str(self.cfg.work_dir), RESUME_FILE)
        atomic_torch_save(self.resume_state(complete), path)
        return path

    def restore(self, state: dict) -> None:
        """Continue from a resume state (`load_resume_state`): the loop restarts at the saved
        episode boundary with the env reset and every RNG as it was."""
        self.agent.load_state_dict(state["agent"], "The resume checkpoint")
        self.buffer.load_state_dict(state["buffer"])
        self.step, self.pretrained = int(state["step"]), bool(state["pretrained"])
        self.eval_pending = bool(state["eval_pending"])
        freq = int(self.cfg.checkpoint_freq)  # may differ from the interrupted run's
        self._next_resume_step = (self.step // freq + 1) * freq if freq > 0 else None
        self._elapsed_before = float(state["elapsed"])
        self._last_update = dict(state["last_update"])
        self._resumed_at_boundary = self.step > 0
        restore_rng(state["rng"], self.env)

    # ---- helpers
    def _common(self, episode: int | None = None) -> dict:
        elapsed = time.time() - self._start
        return dict(step=self.step, episode=self.buffer.num_eps if episode is None else episode,
                    elapsed_time=elapsed, steps_per_second=self.step / max(elapsed, 1e-9))

    def _notify_step(self) -> None:
        if hasattr(self.agent, "update_training_step"):
            self.agent.update_training_step(self.step)

    def _hybrid_info(self, kind: str) -> dict:
        """Extra numbers for a `kind` ("train" or "eval") log row from a hybrid agent."""
        info = getattr(self.agent, "get_hybrid_info", None)
        return dict(info()) if info is not None else {}


def remove_stale_temp_files(work_dir: str) -> None:
    """Temp files of checkpoints a killed run was writing (never read; safe to delete)."""
    for pattern in (f"{RESUME_FILE}.tmp.*", os.path.join("models", "*.pt.tmp*")):
        for path in glob.glob(os.path.join(glob.escape(work_dir), pattern)):
            try:
                os.remove(path)
            except OSError:
                pass


def capture_rng(env) -> dict:
    """The RNG states of python, numpy, torch (CPU, and CUDA when in use) and of `env`, in a
    form `torch.load(weights_only=True)` accepts (numpy arrays become lists)."""
    state = {"python": random.getstate(), "numpy": _to_plain(np.random.get_state()),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if hasattr(env, "get_rng_state"):
        state["env"] = _to_plain(env.get_rng_state())
    return state


def restore_rng(state: dict, env) -> None:
    random.setstate(_python_rng_state(state["python"]))
    np.random.set_state(_from_plain(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    if "env" in state and hasattr(env, "set_rng_state"):
        env.set_rng_state(_from_plain(state["env"]))


def _python_rng_state(state):
    version, internal, gauss = state
    return int(version), tuple(int(x) for x in internal), gauss


def _to_plain(value):
    """numpy arrays and scalars -> tagged python lists/numbers, recursively."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_plain(v) for v in value)
    return value


def _from_plain(value):
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"])
        return {k: _from_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_from_plain(v) for v in value)
    return value


def _nanmean(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan
