"""Episode replay buffer (spec 6).

Notation: C = capacity in stored entries, H = horizon, B = batch size, L = steps of an episode,
which is stored as L+1 entries (entry 0: the initial observation with NaN action/reward/
terminated; entry k >= 1: observation s_k with the action a_{k-1}, reward r_{k-1} and flag
d_{k-1} that led to it).

Storage is one pre-allocated ring of C entries. Episodes are written whole at the write
pointer and may wrap around the end of the ring; before writing, the oldest episodes are
evicted *whole* until the new one fits, so a stored episode is never partially overwritten and a
sampled slice only ever covers entries of one complete episode.

Sampling (with replacement): an episode uniformly among those with at least H+1 entries, then a
start offset uniformly in [0, len - (H+1)], then H+1 consecutive entries (indices taken modulo
C). All index arithmetic is vectorised with torch; a sample costs a few tensor ops however large
B is.

Provenance (hybrid-design.md sec. 7, optional): episodes may also carry, per entry, `source`
(who chose the action that led to it: SOURCES, -1 for entry 0 or unknown), `planner_action`
(the planner's action before exploration noise, NaN where no planner acted) and `expert_action`
(the classical or hybrid planner's action at the entry's state, the label of planner
distillation, NaN where there is none) and `return_to_go` (the discounted return from the entry's
transition to the end of its episode, `returns_to_go`; NaN where unknown). The buffer stores them
once the first episode with them arrives, samples them with the batch and saves them with its state.

Expert oversampling: `sample(expert_fraction=f)` draws round(f B) of the B slices uniformly among
the slices whose first transition a planner on the simulator chose (classical or hybrid), the
rest as above; with f = 0 no extra random number is drawn, so sampling is exactly as before.

`benchmarks/buffer.py` compares `sample()` with torchrl's `SliceSampler`; see its docstring.
"""
from __future__ import annotations

from collections import deque
from typing import NamedTuple

import torch

_FIELDS = ("obs", "action", "reward", "terminated")
_PROVENANCE = ("source", "planner_action", "expert_action", "return_to_go")
SOURCES = ("random", "classical", "hybrid", "learned")  # names of the source codes 0, 1, 2, 3
RANDOM, CLASSICAL, HYBRID, LEARNED = range(len(SOURCES))
EXPERT_SOURCES = (CLASSICAL, HYBRID)  # chosen by a planner on the true simulator


def is_expert(source: torch.Tensor) -> torch.Tensor:
    """Whether each source code is a planner on the simulator (EXPERT_SOURCES)."""
    return torch.isin(source, torch.tensor(EXPERT_SOURCES, device=source.device))


class Batch(NamedTuple):
    """A time-major training batch (spec 4.1)."""

    obs: torch.Tensor         # (H+1, B, obs_dim)
    action: torch.Tensor      # (H, B, A)
    reward: torch.Tensor      # (H, B, 1)
    terminated: torch.Tensor  # (H, B, 1)
    task: torch.Tensor | None  # multi-task ids (B,); None for single-task


class Provenance(NamedTuple):
    """Who chose a batch's actions and the planners' labels (time-major like `Batch`)."""

    source: torch.Tensor         # (H, B) source code of action[t] (SOURCES; -1 unknown)
    expert_action: torch.Tensor  # (H, B, A) the planner's label at obs[t], NaN where none
    return_to_go: torch.Tensor   # (H, B, 1) G_t of (obs[t], action[t]), NaN where unknown


def returns_to_go(reward: torch.Tensor, discount: float) -> torch.Tensor:
    """G_k = sum_{j >= k} discount^(j-k) reward[j] per entry of an episode's reward (L+1,) (entry
    0 NaN); all NaN when a reward is negative or not finite. With rewards >= 0 the return of a
    truncated episode is a lower bound of the optimal value of its transitions."""
    out = torch.full_like(reward, float("nan"), dtype=torch.float32)
    r = reward[1:].double()
    if len(r) == 0 or not bool(torch.isfinite(r).all()) or bool((r < 0).any()):
        return out
    g, acc = [0.0] * len(r), 0.0
    for k, value in zip(range(len(r) - 1, -1, -1), reversed(r.tolist())):
        acc = value + discount * acc
        g[k] = acc
    out[1:] = torch.tensor(g, dtype=torch.float32, device=reward.device)
    return out


class _Episode(NamedTuple):
    start: int   # ring index of entry 0
    length: int  # number of stored entries (L+1)
    index: int   # running episode number 0, 1, 2, ...


class Buffer:
    """A circular buffer of whole episodes that samples time-major slices of H+1 entries.

    `device` is where sampled batches are returned (the agent's device); `storage_device`
    (default: `device`) is where the ring lives.
    """

    def __init__(self, capacity: int, horizon: int, batch_size: int, device="cpu", seed: int = 0,
                 storage_device=None):
        if capacity < horizon + 1:
            raise ValueError(f"Buffer capacity ({capacity}) must hold at least horizon+1 = {horizon + 1} entries.")
        self.capacity, self.horizon, self.batch_size = int(capacity), int(horizon), int(batch_size)
        self.device = torch.device(device)
        self.storage_device = torch.device(storage_device) if storage_device is not None else self.device
        self._generator = torch.Generator(device=self.storage_device)
        self._generator.manual_seed(int(seed))
        self._storage: dict[str, torch.Tensor] | None = None  # allocated on the first add
        self._episodes: deque[_Episode] = deque()
        self._num_eps = 0      # episodes ever added (the next episode's index)
        self._write = 0        # ring index where the next episode starts
        self._size = 0         # entries currently stored
        self._valid: tuple[torch.Tensor, torch.Tensor] | None = None  # (starts, lengths) cache
        self._expert_starts: torch.Tensor | None = None  # ring indices of slices starting with an expert transition

    @classmethod
    def from_config(cls, cfg, device) -> "Buffer":
        """capacity = min(buffer_size, steps) entries, returned on `device`; stored there too
        unless that is a GPU without 2.5x the storage size free (spec 6)."""
        capacity = max(min(int(cfg.buffer_size), int(cfg.steps)), int(cfg.horizon) + 1)
        entry_bytes = 4 * (cfg.obs_shape["state"][0] + cfg.action_dim + 2) + 8
        storage = storage_device_for(capacity * entry_bytes, torch.device(device))
        return cls(capacity, cfg.horizon, cfg.batch_size, device=device, seed=cfg.seed,
                   storage_device=storage)

    # ---- sizes
    @property
    def num_eps(self) -> int:
        """Episodes ever added (the running episode counter, spec 7.3)."""
        return self._num_eps

    @property
    def num_stored_eps(self) -> int:
        return len(self._episodes)

    def __len__(self) -> int:
        """Entries currently stored."""
        return self._size

    # ---- writing
    def add(self, episode: dict[str, torch.Tensor]) -> int:
        """Store one whole episode (dict of obs (L+1, obs_dim), action (L+1, A), reward (L+1,),
        terminated (L+1,)); returns its episode index."""
        length = self._check_episode(episode)
        if self._storage is None:
            self._allocate(episode)
        self._evict_until_free(length)
        idx = (self._write + torch.arange(length, device=self.storage_device)) % self.capacity
        if "source" in episode and "source" not in self._storage:
            self._allocate_provenance(episode["planner_action"].shape[1:])
        for key in self._stored_fields():
            shape = (length, *self._storage[key].shape[1:])
            value = episode.get(key)
            if value is None:  # an episode without provenance in a buffer with it
                self._storage[key][idx] = -1 if key == "source" else float("nan")
            else:
                self._storage[key][idx] = value.to(self.storage_device, self._storage[key].dtype).reshape(shape)
        self._storage["episode"][idx] = self._num_eps
        self._episodes.append(_Episode(self._write, length, self._num_eps))
        self._write = (self._write + length) % self.capacity
        self._size += length
        self._num_eps += 1
        self._valid = self._expert_starts = None
        return self._num_eps - 1

    def _check_episode(self, episode) -> int:
        missing = [k for k in _FIELDS if k not in episode]
        if missing:
            raise KeyError(f"Episode lacks the field(s) {', '.join(missing)}.")
        length = int(episode["obs"].shape[0])
        if any(int(episode[k].shape[0]) != length for k in _FIELDS):
            raise ValueError("Episode fields must all have the same number of entries (L+1).")
        if length > self.capacity:
            raise ValueError(f"Episode of {length} entries does not fit a buffer of capacity {self.capacity}.")
        return length

    def _allocate(self, episode):
        c, dev = self.capacity, self.storage_device
        self._storage = {
            "obs": torch.full((c, *episode["obs"].shape[1:]), float("nan"), device=dev),
            "action": torch.full((c, *episode["action"].shape[1:]), float("nan"), device=dev),
            "reward": torch.full((c,), float("nan"), device=dev),
            "terminated": torch.full((c,), float("nan"), device=dev),
            "episode": torch.full((c,), -1, dtype=torch.long, device=dev),
        }

    def _allocate_provenance(self, action_shape):
        c, dev = self.capacity, self.storage_device
        self._storage["source"] = torch.full((c,), -1, dtype=torch.long, device=dev)
        for key in ("planner_action", "expert_action"):
            self._storage[key] = torch.full((c, *action_shape), float("nan"), device=dev)
        self._storage["return_to_go"] = torch.full((c,), float("nan"), device=dev)

    @property
    def has_provenance(self) -> bool:
        return self._storage is not None and "source" in self._storage

    def _stored_fields(self) -> tuple[str, ...]:
        return _FIELDS + (_PROVENANCE if self.has_provenance else ())

    def _evict_until_free(self, length: int):
        while self._size + length > self.capacity:
            oldest = self._episodes.popleft()
            self._size -= oldest.length
        if not self._episodes:  # empty ring: restart at 0 so episodes stay contiguous
            self._write = 0

    # ---- sampling
    def sample_indices(self, expert_fraction: float = 0.0, batch_size: int | None = None) -> torch.Tensor:
        """Ring indices of B slices, time-major: (H+1, B) on the storage device; the first
        round(expert_fraction B) slices start with an expert transition when there are any.
        B is `batch_size`, by default the buffer's."""
        B = self.batch_size if batch_size is None else int(batch_size)
        starts, lengths = self._valid_episodes()
        gen, dev = self._generator, self.storage_device
        expert = self._expert_slice_starts() if expert_fraction > 0 else None
        num_expert = int(round(float(expert_fraction) * B)) if expert is not None and len(expert) else 0
        num_uniform = B - num_expert
        ep = torch.randint(len(starts), (num_uniform,), generator=gen, device=dev)
        num_offsets = (lengths[ep] - self.horizon).to(torch.float64)  # len - (H+1) + 1
        offset = (torch.rand(num_uniform, generator=gen, device=dev, dtype=torch.float64)
                  * num_offsets).long()
        offset = torch.minimum(offset, num_offsets.long() - 1)
        first = starts[ep] + offset
        if num_expert:
            first = torch.cat([expert[torch.randint(len(expert), (num_expert,), generator=gen, device=dev)], first])
        steps = torch.arange(self.horizon + 1, device=dev)
        return (first.unsqueeze(0) + steps.unsqueeze(1)) % self.capacity

    def sample(self, expert_fraction: float = 0.0, batch_size: int | None = None) -> Batch:
        """B slices of H+1 entries as (obs (H+1,B,obs), action (H,B,A), reward (H,B,1),
        terminated (H,B,1), task None), on `device`."""
        return self.sample_labelled(expert_fraction, batch_size)[0]

    def sample_labelled(self, expert_fraction: float = 0.0,
                        batch_size: int | None = None) -> tuple[Batch, Provenance | None]:
        """`sample` and the slices' provenance (None when the buffer stores none)."""
        idx = self.sample_indices(expert_fraction, batch_size)
        s, out = self._storage, self.device
        nb = out.type == "cuda"
        provenance = None
        if "source" in s:
            provenance = Provenance(source=s["source"][idx[1:]].to(out, non_blocking=nb),
                                    expert_action=s["expert_action"][idx[1:]].to(out, non_blocking=nb),
                                    return_to_go=s["return_to_go"][idx[1:]].unsqueeze(-1).to(out, non_blocking=nb))
        batch = Batch(
            obs=s["obs"][idx].to(out, non_blocking=nb),
            action=s["action"][idx[1:]].to(out, non_blocking=nb),
            reward=s["reward"][idx[1:]].unsqueeze(-1).to(out, non_blocking=nb),
            terminated=s["terminated"][idx[1:]].unsqueeze(-1).to(out, non_blocking=nb),
            task=None,
        )
        return batch, provenance

    def _expert_slice_starts(self) -> torch.Tensor | None:
        """Ring indices of entry 0 of every sampleable slice whose first action (entry 1) a
        planner on the simulator chose; None without provenance."""
        if not self.has_provenance:
            return None
        if self._expert_starts is None:
            starts, lengths = self._valid_episodes()
            dev, found = self.storage_device, []
            source = self._storage["source"]
            for start, length in zip(starts.tolist(), lengths.tolist()):
                first = start + torch.arange(length - self.horizon, device=dev)  # every slice start
                chosen = source[(first + 1) % self.capacity]
                found.append(first[is_expert(chosen)])
            self._expert_starts = torch.cat(found) if found else torch.zeros(0, dtype=torch.long, device=dev)
        return self._expert_starts

    def source_counts(self) -> dict[str, int]:
        """Stored transitions per source (entries 1..L of every episode), plus `unknown`; empty
        without provenance."""
        if not self.has_provenance:
            return {}
        names = ("unknown",) + SOURCES  # unknown (-1): stored before provenance was recorded
        counts = dict.fromkeys(names, 0)
        for e in self._episodes:
            idx = (e.start + torch.arange(1, e.length, device=self.storage_device)) % self.capacity
            values = torch.bincount(self._storage["source"][idx] + 1, minlength=len(names))
            for name, n in zip(names, values.tolist()):
                counts[name] += n
        return counts

    def _valid_episodes(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._valid is None:
            eps = [e for e in self._episodes if e.length >= self.horizon + 1]
            if not eps:
                raise RuntimeError(f"The buffer holds no episode of at least horizon+1 = {self.horizon + 1} "
                                   "entries yet; add episodes before sampling.")
            dev = self.storage_device
            self._valid = (torch.tensor([e.start for e in eps], device=dev),
                           torch.tensor([e.length for e in eps], device=dev))
        return self._valid

    # ---- persistence
    def episodes(self):
        """Stored episodes, oldest first, as dicts of tensors (copies gathered from the ring)."""
        keys = self._stored_fields()
        for e in self._episodes:
            idx = (e.start + torch.arange(e.length, device=self.storage_device)) % self.capacity
            yield {k: self._storage[k][idx] for k in keys}

    def state_dict(self) -> dict:
        """The stored episodes (compact, oldest first, on CPU), counters and RNG state.

        Loading into a buffer of another capacity keeps the newest episodes that fit.
        """
        eps = list(self.episodes())
        keys = self._stored_fields()
        data = {k: torch.cat([e[k] for e in eps]).cpu() if eps else None for k in keys}
        return {
            "data": data,
            "lengths": [e.length for e in self._episodes],
            "indices": [e.index for e in self._episodes],
            "num_eps": self._num_eps,
            "generator": self._generator.get_state(),
            "generator_device": self.storage_device.type,
        }

    def load_state_dict(self, state: dict) -> None:
        self._storage, self._episodes, self._size, self._write, self._valid = None, deque(), 0, 0, None
        self._expert_starts = None
        keys = [k for k in _FIELDS + _PROVENANCE if state["data"].get(k) is not None]
        offset = 0
        for length, index in zip(state["lengths"], state["indices"]):
            episode = {k: state["data"][k][offset:offset + length] for k in keys}
            self._num_eps = index
            self.add(episode)
            offset += length
        self._num_eps = int(state["num_eps"])
        if state.get("generator_device") == self.storage_device.type:  # RNG states differ per device
            self._generator.set_state(state["generator"])


def storage_device_for(num_bytes: int, device: torch.device) -> torch.device:
    """`device` if it is the CPU or a GPU with 2.5x `num_bytes` free, else the CPU."""
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    return device if 2.5 * num_bytes < free else torch.device("cpu")
