"""Simulated branches: counterfactual transitions from the true simulator at the states training
visits (hybrid-design.md sec. 7, learning from the simulator).

Why. The data of a taught run is narrow: the classical expert's actions, a little noise, and the
learner's plans. TD-MPC2's planner then ranks 3-step action sequences with a reward model, a
latent dynamics model and a critic that have seen almost no other actions, and on the hand-over
arm's weights it prefers actions off the data (saturated pushes on cartpole-swingup) whose values
are extrapolations (`benchmarks/teaching_probe.py`, NOTES). The simulator knows what those
actions do. Every training step, with probability `branch_prob`, the trainer snapshots the live
state x_t, draws H actions uniformly in the action bounds, simulates them on the simulator
(`EnvironmentInterface.rollout`, which never disturbs the live env) and stores the H true
transitions as a short episode of their own. A share `branch_share` of every training batch is
then drawn from these branches, the rest from the replay buffer as before; every loss of the
update (consistency, reward, value, policy) sees them like any other slice.

    branch:  o(x_t), (a_0, r_0, o(x_1)), ..., (a_{H-1}, r_{H-1}, o(x_H)),   a_k ~ U[low, high]

Elite branches (`branch_elite_prob`). Random actions show the model what arbitrary actions do;
they need not be the ones its planner overrates. With probability `branch_elite_prob` per step
after pre-training, the learned-only planner (TD-MPC2's MPPI, cold-started) plans at the live
state, one of its elite sequences is drawn by the planner's own weights (as its action selection
draws), and that sequence is simulated and stored like a uniform branch: the model and critic
learn the true outcome of exactly what the planner would do there (DAgger for the model, with
the simulator as the oracle and no environment step spent).

    elite branch:  a_{0..H-1} = elite_k of MPPI(o(x_t)),  k ~ weights

Branches have length H (the update's horizon), so each is exactly one training slice. They do
not count as agent steps: like the hybrid planner's prefixes, they are simulator queries, not
actions taken in the environment. Tasks that terminate early are refused (the interface models no
termination). The draws come from torch's RNG (saved with resume.pt); with `branch_prob=0` no
draw is made and training is exactly as before.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tdmpc2.common.buffer import _FIELDS, SOURCES, Batch, Buffer, Provenance
from tdmpc2.common.mppi import EliteUpdate, gumbel_select

SIMULATED = len(SOURCES)  # source code of a branch transition (after the buffer's random..learned)


@dataclass(frozen=True)
class BranchConfig:
    """The branch keys of a config (numbers only)."""
    branch_prob: float = 0.0
    branch_share: float = 0.25
    branch_elite_prob: float = 0.0

    @classmethod
    def from_config(cls, cfg) -> "BranchConfig":
        return cls(**{k: cfg[k] for k in cls.__dataclass_fields__})

    @property
    def active(self) -> bool:
        return self.branch_prob > 0 or self.branch_elite_prob > 0


def uniform_actions(horizon: int, low: np.ndarray, high: np.ndarray) -> torch.Tensor:
    """(horizon, A) actions uniform in [low, high] from torch's RNG."""
    low_t = torch.as_tensor(np.asarray(low), dtype=torch.float32)
    high_t = torch.as_tensor(np.asarray(high), dtype=torch.float32)
    return low_t + (high_t - low_t) * torch.rand(horizon, low_t.numel())


def drawn_elite(plan: EliteUpdate) -> torch.Tensor:
    """(H, A): one elite sequence of an MPPI result, drawn by its weights (the planner's own
    selection rule, `gumbel_select`)."""
    return plan.elite_actions[:, gumbel_select(plan.weights)]


def simulate_branch(interface, state: np.ndarray, actions: torch.Tensor) -> dict[str, torch.Tensor]:
    """The branch from `state` under `actions` (H, A) as a buffer episode of H+1 entries (entry 0:
    the observation at `state`, NaN action and reward), computed on the simulator alone."""
    acts = actions.detach().cpu().double().numpy()
    states, rewards = interface.rollout(np.asarray(state, dtype=np.float64)[None], acts[None])
    obs = torch.as_tensor(np.asarray(interface.observations(states[0])), dtype=torch.float32)
    nan = torch.full((1, acts.shape[1]), float("nan"))
    return dict(obs=obs, action=torch.cat([nan, actions.detach().cpu().float()]),
                reward=torch.cat([torch.tensor([float("nan")]), torch.as_tensor(rewards[0], dtype=torch.float32)]),
                terminated=torch.cat([torch.tensor([float("nan")]), torch.zeros(acts.shape[0])]))


class BranchStore:
    """A ring of up to `capacity` branches of H+1 entries each (buffer layout: entry 0 has NaN
    action and reward), sampled uniformly with replacement by its own generator. Every branch is
    exactly one training slice, so a sample is one gather."""

    def __init__(self, capacity: int, horizon: int, device="cpu", seed: int = 0):
        if capacity < 1:
            raise ValueError(f"A branch store needs room for at least one branch, got capacity {capacity}.")
        self.capacity, self.horizon, self.device = int(capacity), int(horizon), torch.device(device)
        self._generator = torch.Generator().manual_seed(int(seed))
        self._data: dict[str, torch.Tensor] | None = None  # (capacity, H+1, ...) per field, on the CPU
        self._size = self._write = self.added = 0

    def __len__(self) -> int:
        return self._size

    def add(self, branch: dict[str, torch.Tensor]) -> None:
        if branch["obs"].shape[0] != self.horizon + 1:
            raise ValueError(f"A branch has horizon+1 = {self.horizon + 1} entries, got {branch['obs'].shape[0]}.")
        if self._data is None:
            self._allocate({k: branch[k].shape for k in _FIELDS})
        for k in _FIELDS:
            self._data[k][self._write] = branch[k]
        self._write = (self._write + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)
        self.added += 1

    def _allocate(self, shapes: dict) -> None:
        self._data = {k: torch.full((self.capacity, *shape), float("nan")) for k, shape in shapes.items()}

    def sample(self, k: int) -> Batch:
        """k branches as a time-major batch on `device`."""
        if self._size == 0:
            raise RuntimeError("The branch store is empty; add branches before sampling.")
        idx = torch.randint(self._size, (int(k),), generator=self._generator)
        d, out = self._data, self.device
        take = lambda key: d[key][idx].transpose(0, 1).to(out)  # noqa: E731  (k, H+1, ...) -> (H+1, k, ...)
        return Batch(obs=take("obs"), action=take("action")[1:], reward=take("reward")[1:].unsqueeze(-1),
                     terminated=take("terminated")[1:].unsqueeze(-1), task=None)

    def state_dict(self) -> dict:
        """The filled slots as they lie in the ring, the write position and the generator (a
        store of the same capacity resumes bit-identically)."""
        data = {k: v[:self._size].clone() for k, v in self._data.items()} if self._data is not None else None
        return dict(format="branches-1", data=data, write=self._write, added=self.added,
                    generator=self._generator.get_state())

    def load_state_dict(self, state: dict) -> None:
        self._data, self._size, self._write, self.added = None, 0, 0, 0
        if "lengths" in state:  # the first format (branches kept in an episode Buffer, oldest first)
            n = len(state["lengths"])
            state = dict(data={k: v.reshape(n, self.horizon + 1, *v.shape[1:])
                               for k, v in state["data"].items() if k in _FIELDS} if n else None,
                         write=n, added=state["num_eps"], generator=state["generator"])
        data, n = state["data"], 0 if state["data"] is None else len(state["data"]["obs"])
        if n:
            if n == self.capacity:  # the same ring: keep its layout
                kept, self._write = data, int(state["write"]) % self.capacity
            else:  # oldest first, then the newest that fit
                order = (int(state["write"]) + torch.arange(n)) % n
                kept = {k: data[k][order][-self.capacity:] for k in _FIELDS}
                self._write = len(kept["obs"]) % self.capacity
            self._size = len(kept["obs"])
            self._allocate({k: kept[k].shape[1:] for k in _FIELDS})
            for k in _FIELDS:
                self._data[k][:self._size] = kept[k]
        self.added = int(state["added"])
        self._generator.set_state(state["generator"])



class SimulatedBranches:
    """The branches of a training run: `maybe_branch()` every step, `mixed(buffer)` for the
    update, `state_dict()` for resume.pt."""

    def __init__(self, config: BranchConfig, interface, horizon: int, capacity: int, device="cpu", seed: int = 0):
        self.config, self.interface, self.horizon = config, interface, int(horizon)
        self.store = BranchStore(capacity, horizon, device=device, seed=seed + 7919)
        self.low, self.high = interface.action_bounds()

    def maybe_branch(self, propose=None) -> tuple[bool, bool]:
        """With probability branch_prob, simulate one uniform branch from the live state; then,
        when `propose` (() -> (H, A) planner actions) is given, with probability branch_elite_prob
        one branch of its actions. Returns (uniform added, elite added). With branch_elite_prob
        = 0 no further random draw is made."""
        uniform = float(torch.rand(())) < self.config.branch_prob
        if uniform:
            self._add(uniform_actions(self.horizon, self.low, self.high))
        elite = (propose is not None and self.config.branch_elite_prob > 0
                 and float(torch.rand(())) < self.config.branch_elite_prob)
        if elite:
            self._add(propose())
        return uniform, elite

    def _add(self, actions: torch.Tensor) -> None:
        self.store.add(simulate_branch(self.interface, self.interface.get_state(), actions))

    def mixed(self, buffer: Buffer) -> "MixedBatches":
        return MixedBatches(buffer, self.store, self.config.branch_share)

    def state_dict(self) -> dict:
        return self.store.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.store.load_state_dict(state)


def concat_batches(first: Batch, second: Batch) -> Batch:
    """Two time-major batches side by side (along B)."""
    return Batch(*(torch.cat([a, b], dim=1) for a, b in zip(first[:4], second[:4])), task=None)


class MixedBatches:
    """Samples like a `Buffer`: B - k slices from `main` (with its expert share and provenance)
    and k = round(share B) from the `branches` store once it holds any. Branch slices carry
    source `SIMULATED`, no expert label and no return to go."""

    def __init__(self, main: Buffer, branches: BranchStore, share: float):
        self.main, self.branches, self.share = main, branches, float(share)

    def num_branch_slices(self) -> int:
        return int(round(self.share * self.main.batch_size)) if len(self.branches) else 0

    def sample_labelled(self, expert_fraction: float = 0.0) -> tuple[Batch, Provenance | None]:
        k = self.num_branch_slices()
        B = self.main.batch_size
        # the expert share stays a share of the whole batch, drawn from the replay part
        replay_expert = min(float(expert_fraction) * B / (B - k), 1.0) if k < B and expert_fraction else 0.0
        batch, provenance = self.main.sample_labelled(replay_expert, B - k)
        if k == 0:
            return batch, provenance
        extra = self.branches.sample(k)
        batch = concat_batches(batch, extra)
        if provenance is not None:
            H, A = extra.action.shape[0], extra.action.shape[-1]
            dev = provenance.source.device
            provenance = Provenance(
                source=torch.cat([provenance.source, torch.full((H, k), SIMULATED, dtype=torch.long, device=dev)], 1),
                expert_action=torch.cat([provenance.expert_action,
                                         torch.full((H, k, A), float("nan"), device=dev)], 1),
                return_to_go=torch.cat([provenance.return_to_go, torch.full((H, k, 1), float("nan"), device=dev)], 1))
        return batch, provenance

    def sample(self, expert_fraction: float = 0.0) -> Batch:
        return self.sample_labelled(expert_fraction)[0]
