"""Run logging: CSV files, console progress lines, optional W&B, evaluation videos (spec 7.3).

Files in the work dir:
  eval.csv   one row per evaluation: step, env_step, episode_reward, episode_success, then the
             other fields logged (episode, episode_length, timing, hybrid-planner fields...);
  train.csv  one row per finished training episode, with the last update's statistics;
  videos/    eval_<step>.mp4 when `save_video` is on.
`step` counts agent steps, `env_step` = step x action_repeat (the unit of the reference result
tables, spec 11). Rows are appended and flushed at once, so a crash loses nothing; a field that
first appears later (e.g. hybrid statistics) widens the file's header in place.

Resuming (`Logger(cfg, resume_rows={"train": n, "eval": m})`) keeps the first n / m rows of the
existing files and drops the rest (rows written after the checkpoint that is being resumed),
so a resumed run's CSVs have neither duplicated nor missing rows. `sync()` fsyncs both files;
the trainer calls it before writing a checkpoint, so every row a checkpoint counts is on disk.

This module only records what the trainer hands it; it never touches the agent.
"""
from __future__ import annotations

import csv
import datetime
import math
import os
import time

import torch

from tdmpc2.config import ConfigError, config_to_dict

CSV_LEADING = ("step", "env_step", "episode_reward", "episode_success")


def to_number(value):
    """A float for a tensor (one device sync per value, once per episode); numbers unchanged."""
    if torch.is_tensor(value):
        return float(value.detach().float().mean().cpu()) if value.numel() else math.nan
    return float(value) if isinstance(value, bool) else value


class CsvLog:
    """An append-only CSV file whose header grows when a new field appears.

    `keep_rows=None` starts a new file (an old one is removed); `keep_rows=n` continues an
    existing file after its first n data rows, dropping any later ones."""

    def __init__(self, path: str, leading=CSV_LEADING, keep_rows: int | None = None):
        self.path, self.fields, self.rows = path, list(leading), 0
        self.missing_rows = 0  # rows a resumed checkpoint counted that the file no longer has
        if keep_rows is None:
            if os.path.exists(path):
                os.remove(path)
        else:
            self._truncate(int(keep_rows))

    def _truncate(self, keep: int) -> None:
        rows, fields = [], []
        if os.path.exists(self.path):
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                fields = list(reader.fieldnames or [])
                for row in reader:
                    if len(rows) == keep:
                        break
                    rows.append(row)
        self.fields += [k for k in fields if k not in self.fields]
        self.rows, self.missing_rows = len(rows), keep - len(rows)
        if not rows:
            if os.path.exists(self.path):
                os.remove(self.path)
            return
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict]) -> None:
        """Replace the file by `rows` under the current header, atomically."""
        tmp = self.path + ".tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, restval="", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def sync(self) -> None:
        """Force the rows written so far to disk."""
        if os.path.exists(self.path):
            with open(self.path, "a") as f:
                os.fsync(f.fileno())

    def write(self, row: dict) -> None:
        new = [k for k in row if k not in self.fields]
        if new:
            self._widen(new)
        is_new_file = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, restval="")
            if is_new_file:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in self.fields})
            f.flush()
        self.rows += 1

    def _widen(self, new_fields: list[str]) -> None:
        rows = []
        if os.path.exists(self.path):
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
        self.fields += new_fields
        if rows:
            self._rewrite(rows)
        elif os.path.exists(self.path):  # a header without rows
            os.remove(self.path)


class VideoRecorder:
    """Collects `env.render` frames of an evaluation episode and writes them as mp4.

    `init(env, enabled)` starts a recording (enabled) or pauses it, keeping the frames so far;
    `save(step)` writes the frames, if any, and clears them."""

    def __init__(self, directory: str, size: int = 384, fps: int = 15):
        self.directory, self.size, self.fps = directory, size, fps
        self.frames: list = []
        self.enabled = False

    def init(self, env, enabled: bool = True) -> None:
        self.enabled = enabled
        if enabled:
            self.frames = []
            self.record(env)

    def record(self, env) -> None:
        if self.enabled:
            self.frames.append(env.render(self.size, self.size))

    def save(self, step: int) -> str | None:
        frames, self.frames, self.enabled = self.frames, [], False
        if not frames:
            return None
        import imageio

        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, f"eval_{step}.mp4")
        imageio.mimsave(path, frames, fps=self.fps, macro_block_size=1)
        return path


class Logger:
    """Writes train/eval metrics of one run; `log(metrics, "train" | "eval")`."""

    def __init__(self, cfg, resume_rows: dict | None = None):
        self.work_dir = str(cfg.work_dir)
        os.makedirs(self.work_dir, exist_ok=True)
        self.action_repeat, self.total_steps = int(cfg.action_repeat), int(cfg.steps)
        self.save_csv = bool(cfg.save_csv)
        self.csv = {cat: CsvLog(os.path.join(self.work_dir, f"{cat}.csv"),
                                keep_rows=None if resume_rows is None else resume_rows.get(cat, 0))
                    for cat in ("train", "eval")}
        self.video = (VideoRecorder(os.path.join(self.work_dir, "videos"))
                      if cfg.save_video else None)
        self._wandb = _init_wandb(cfg) if cfg.enable_wandb else None
        self._start = time.time()

    def log(self, metrics: dict, category: str = "train") -> None:
        """Log one row; `metrics` must hold `step`, other fields are free (tensors allowed)."""
        row = {k: to_number(v) for k, v in metrics.items()}
        row["env_step"] = int(row["step"]) * self.action_repeat
        if self.save_csv:
            self.csv[category].write(row)
        if self._wandb is not None:
            self._wandb.log({f"{category}/{k}": v for k, v in row.items()
                             if isinstance(v, (int, float))}, step=int(row["step"]))
        print(self._console_line(row, category), flush=True)

    def row_counts(self) -> dict[str, int]:
        """Data rows written to each CSV file (what a checkpoint records for resuming)."""
        return {cat: log.rows for cat, log in self.csv.items()}

    def sync(self) -> None:
        """fsync the CSV files (called before a checkpoint is written)."""
        if self.save_csv:
            for log in self.csv.values():
                log.sync()

    def progress(self, text: str) -> None:
        """A free-form console line (e.g. seed-phase pretraining progress)."""
        print(f"{'':<6}{text}  [{_clock(time.time() - self._start)}]", flush=True)

    def log_video(self, step: int) -> None:
        if self.video is None:
            return
        path = self.video.save(step)
        if path and self._wandb is not None:
            self._wandb.log({"eval/video": self._wandb.Video(path, format="mp4")}, step=step)

    def finish(self, agent_path: str | None = None) -> None:
        if self._wandb is None:
            return
        if agent_path:
            artifact = self._wandb.Artifact(f"{self._wandb.run.name}-model", type="model")
            artifact.add_file(agent_path)
            self._wandb.log_artifact(artifact)
        self._wandb.finish()

    def _console_line(self, row: dict, category: str) -> str:
        step = int(row["step"])
        elapsed = row.get("elapsed_time", time.time() - self._start)
        sps = row.get("steps_per_second", step / max(elapsed, 1e-9))
        eta = (self.total_steps - step) / sps if sps > 0 else math.inf
        hybrid = ""
        if "learned_episode_reward" in row:  # hybrid evaluations: both planners side by side
            hybrid = (f"[hybrid H_c={int(row.get('eval_classical_horizon', row.get('classical_horizon', 0)))}]  "
                      f"learned-only R: {row['learned_episode_reward']:8.1f}  ")
        return (f"{category:<6}E: {int(row.get('episode', 0)):>5}  S: {step:>9,}  "
                f"ES: {row['env_step']:>10,}  R: {row.get('episode_reward', math.nan):8.1f}  {hybrid}"
                f"SR: {row.get('episode_success', math.nan):5.2f}  T: {_clock(elapsed)}  "
                f"SPS: {sps:6.1f}  ETA: {_clock(eta)}")


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--:--"
    return str(datetime.timedelta(seconds=int(seconds)))


def _init_wandb(cfg):
    try:
        import wandb
    except ImportError:
        raise ConfigError("Config key 'enable_wandb' is true but the wandb package is not installed "
                          "(pip install wandb, or set enable_wandb=false).") from None
    if not os.environ.get("WANDB_API_KEY") and "WANDB_MODE" not in os.environ:
        os.environ["WANDB_MODE"] = "offline"  # works without an account; sync later if wanted
    if cfg.wandb_silent:
        os.environ["WANDB_SILENT"] = "true"
    wandb.init(project=cfg.wandb_project, entity=cfg.wandb_entity, dir=str(cfg.work_dir),
               name=f"{cfg.task}-{cfg.exp_name}-{cfg.seed}", group=str(cfg.exp_name),
               config=config_to_dict(cfg))
    return wandb
