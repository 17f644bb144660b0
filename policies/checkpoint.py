"""Checkpoints (safetensors weights + a JSON card) and the step-by-step policy runner.

A checkpoint is a folder:

    policy.safetensors     the policy that acts (the actor, or its moving average): all deployment needs
    critic.safetensors     what training also needs: the critic and its target, and the live actor
                           when the policy is its average; absent for BC without an average
    optimizer.safetensors  the Adam moments, so training resumes where it stopped
    checkpoint.json        task, observation spec, learner config, version, updates, weighting, metrics

A save writes a complete new folder beside the old one, then swaps the two in one atomic rename
(Linux renameat2 RENAME_EXCHANGE; elsewhere two renames, and a reader finds the old folder under
`.<name>.old` in between), so a crash or a kill -9 during a save leaves the previous checkpoint
whole and loadable. Loading never unpickles: safetensors holds tensors only.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from apsconfig import from_dict, to_dict
from policies.config import ActionSampling, LearnerConfig, Weighting
from policies.learner import Learner
from policies.networks import Actor, ObsSpec

FORMAT_VERSION = 1
CARD = "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, malformed, or made for another task or observation layout."""


@dataclass
class CheckpointCard:
    task: str
    spec: ObsSpec
    config: LearnerConfig
    version: int  # policy version, increases with every checkpoint of one training run
    updates: int
    metrics: dict[str, Any]
    weighting: Weighting  # the weighting in use when saved (offline "exp" may have become "indicator")


def save_checkpoint(
    learner: Learner, path: str | Path, task: str, version: int, metrics: dict[str, Any] | None = None
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    card = {
        "format": FORMAT_VERSION,
        "task": task,
        "spec": learner.spec.to_dict(),
        "config": to_dict(learner.config),
        "version": version,
        "updates": learner.updates,
        "weighting": learner.weighting,
        "metrics": metrics or {},
    }
    new = Path(tempfile.mkdtemp(prefix=f".{path.name}.new-", dir=path.parent))
    new.chmod(0o755)  # mkdtemp's 0700 would make the checkpoint private to this user
    try:
        save_file(_contiguous(learner.policy.state_dict()), new / "policy.safetensors")
        training: dict[str, torch.Tensor] = {}
        if learner.policy is not learner.actor:  # the live actor, apart from its average
            training |= {f"actor.{k}": v for k, v in learner.actor.state_dict().items()}
        if learner.critic is not None:
            training |= {f"critic.{k}": v for k, v in learner.critic.state_dict().items()}
            training |= {f"target.{k}": v for k, v in learner.target_critic.state_dict().items()}
        if training:
            save_file(_contiguous(training), new / "critic.safetensors")
        moments = {
            f"{name}.{index}.{field}": value
            for name, optimizer in learner.optimizers().items()
            for index, state in optimizer.state_dict()["state"].items()
            for field, value in state.items()
        }
        save_file(_contiguous(moments), new / "optimizer.safetensors")
        (new / CARD).write_text(json.dumps(card, indent=2))
        for file in new.iterdir():  # on disk before the swap, so a power cut leaves no empty file
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        _swap_in(new, path)
    finally:
        shutil.rmtree(new, ignore_errors=True)  # after a swap: the previous checkpoint
    return path


def _swap_in(new: Path, path: Path) -> None:
    """Make the folder `new` the folder `path` in one step; `new` then holds what `path` held."""
    if not path.exists():
        os.replace(new, path)
    elif not _exchange(new, path):
        old = _previous(path)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(new, path)
        os.replace(old, new)
    _fsync_dir(path.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux's renameat2(RENAME_EXCHANGE). Written by hand through
    ctypes because the standard library has no binding; False where the call or the file system
    lacks it."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _previous(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _resolve(path: str | Path) -> Path:
    """The checkpoint folder to read: `path`, or the previous one while a save without an atomic
    exchange is between its two renames."""
    path = Path(path)
    return _previous(path) if not path.exists() and _previous(path).is_dir() else path


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_card(path: str | Path) -> CheckpointCard:
    card_path = _resolve(path) / CARD
    if not card_path.is_file():
        raise CheckpointError(f"{path}: no {CARD}; not a checkpoint folder (or an incomplete one)")
    try:
        card = json.loads(card_path.read_text())
        if not isinstance(card, dict):
            raise CheckpointError(f"{card_path}: expected a JSON object")
        if card.get("format") != FORMAT_VERSION:
            raise CheckpointError(
                f"{card_path}: format {card.get('format')!r}, this code reads {FORMAT_VERSION}"
            )
        # demo_fraction moved to the trainer's config (policies.trainer.TrainerConfig)
        config = from_dict(LearnerConfig, {k: v for k, v in card["config"].items() if k != "demo_fraction"})
        weighting = card.get("weighting", config.weighting)  # cards before it was saved have none
        if weighting not in get_args(Weighting):
            raise CheckpointError(f"{card_path}: unknown weighting {weighting!r}")
        return CheckpointCard(
            task=card["task"],
            spec=ObsSpec.from_dict(card["spec"]),
            config=config,
            version=int(card["version"]),
            updates=int(card["updates"]),
            metrics=card.get("metrics", {}),
            weighting=weighting,
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{card_path}: malformed checkpoint card ({err})") from err


def policy_digest(path: str | Path) -> str:
    """SHA-256 of what a deployed policy is made of (the actor's weights and the card): two checkpoint
    folders with the same digest act alike, wherever they lie."""
    folder = _resolve(path)
    digest = hashlib.sha256()
    for name in ("policy.safetensors", CARD):
        file = folder / name
        if not file.is_file():
            raise CheckpointError(f"{path}: no {name}; not a checkpoint folder (or an incomplete one)")
        digest.update(name.encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_learner(
    path: str | Path,
    task: str | None = None,
    device: torch.device | str = "cpu",
    fresh_optimizer: bool = False,
) -> tuple[Learner, CheckpointCard]:
    """The whole learner (actor, critic, target, Adam moments), e.g. to go on training online. A
    checkpoint without optimizer state is refused unless `fresh_optimizer` says to start Adam anew."""
    card = _checked_card(path, task)
    folder = _resolve(path)
    learner = Learner(card.spec, card.config, device)
    _load_weights(learner.policy, folder / "policy.safetensors")
    modules = [("critic.", learner.critic), ("target.", learner.target_critic)] if learner.critic else []
    if learner.policy is not learner.actor:
        modules.append(("actor.", learner.actor))
    if modules:
        tensors = _read_tensors(folder / "critic.safetensors")
        for prefix, module in modules:
            weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(weights)
            except RuntimeError as err:
                raise CheckpointError(f"{path}: training weights do not fit the card ({err})") from err
    if not fresh_optimizer:
        if not (folder / "optimizer.safetensors").is_file():
            raise CheckpointError(
                f"{path}: no optimizer.safetensors, so training cannot resume where it stopped; "
                "load with fresh_optimizer=True to start Adam afresh from these weights"
            )
        _load_optimizers(learner, _read_tensors(folder / "optimizer.safetensors"), card.updates, path)
    learner.updates, learner.weighting = card.updates, card.weighting
    return learner, card


def _load_optimizers(
    learner: Learner, tensors: dict[str, torch.Tensor], updates: int, path: str | Path
) -> None:
    """Adam moments back into the optimizers, checked: every parameter has its step and moments, of
    its shape (none before the first update), and nothing else is in the file."""
    states: dict[str, dict[int, dict[str, torch.Tensor]]] = {name: {} for name in learner.optimizers()}
    for key, value in tensors.items():
        owner, _, rest = key.partition(".")
        index, _, field = rest.partition(".")
        if owner not in states or not index.isdigit() or field not in ("step", "exp_avg", "exp_avg_sq"):
            raise CheckpointError(f"{path}: optimizer.safetensors holds an unknown entry {key!r}")
        states[owner].setdefault(int(index), {})[field] = value
    for name, optimizer in learner.optimizers().items():
        params = optimizer.param_groups[0]["params"]
        state = states[name]
        expected = set(range(len(params))) if updates > 0 else set()
        if set(state) != expected or any(len(fields) != 3 for fields in state.values()):
            raise CheckpointError(
                f"{path}: optimizer state for {name} covers {len(state)} of {len(expected)} parameters "
                "(the file does not belong to this learner, or is damaged)"
            )
        for index, fields in state.items():
            for field in ("exp_avg", "exp_avg_sq"):
                if fields[field].shape != params[index].shape:
                    raise CheckpointError(
                        f"{path}: {name} moment {index}.{field} is {list(fields[field].shape)}, "
                        f"its parameter {list(params[index].shape)}"
                    )
        optimizer.load_state_dict({**optimizer.state_dict(), "state": state})


def load_policy(
    path: str | Path, task: str | None = None, sampling: ActionSampling = "component", seed: int = 0
) -> PolicyRunner:
    """The deployable policy: actor weights only, wrapped in the step-by-step runner."""
    card = _checked_card(path, task)
    actor = Actor(card.spec, card.config.network)
    _load_weights(actor, _resolve(path) / "policy.safetensors")
    return PolicyRunner(actor, card, sampling, seed)


def draw_seed(base: int, episode_seed: int) -> int:
    """The action-draw seed of one episode: independent streams for distinct (base, episode) pairs."""
    return int(np.random.SeedSequence([base & 0xFFFFFFFF, episode_seed & 0xFFFFFFFF]).generate_state(1)[0])


class PolicyRunner:
    """Runs the recurrent actor one control step at a time, for one robot or a batch of sims.

    Call `reset(n)` at every episode start (it zeroes the hidden state), then `act(onboard)` once per
    step with that step's onboard observation: arrays shaped like the spec, or with a leading batch
    axis of n. Actions come back clipped to [-1, 1]. `sampling` picks the action from the policy's
    mixture (`ActionMixture.act`); the draws come from the runner's own seeded generator, so a run
    is reproducible. `reset(n, episode_seeds)` gives each episode its own draws, seeded by
    `draw_seed(seed, episode seed)`: an episode's actions then depend on its seed alone, not on the
    batch it runs in nor on the episodes before it (in-process, in vectorised sims or in a node).
    """

    def __init__(
        self, actor: Actor, card: CheckpointCard, sampling: ActionSampling = "component", seed: int = 0
    ) -> None:
        self.actor = actor
        self.card = card
        self.spec = card.spec
        self.sampling = sampling
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.episode_generators: list[torch.Generator] | None = None
        self.state: torch.Tensor | None = None
        self.device = next(actor.parameters()).device

    @staticmethod
    def from_learner(
        learner: Learner, task: str, sampling: ActionSampling = "component", seed: int = 0
    ) -> PolicyRunner:
        """A runner over the learner's live policy (the actor or its average), for rollouts in training."""
        card = CheckpointCard(task, learner.spec, learner.config, 0, learner.updates, {}, learner.weighting)
        return PolicyRunner(learner.policy, card, sampling, seed)

    @property
    def version(self) -> int:
        return self.card.version

    def reset(self, batch: int = 1, episode_seeds: Sequence[int] | None = None) -> None:
        self.state = self.actor.initial_state(batch).to(self.device)
        if episode_seeds is None:
            self.episode_generators = None
            return
        if len(episode_seeds) != batch:
            raise ValueError(f"{len(episode_seeds)} episode seeds for a batch of {batch}")
        self.episode_generators = [
            torch.Generator().manual_seed(draw_seed(self.seed, s)) for s in episode_seeds
        ]

    @torch.no_grad()
    def act(self, onboard: dict[str, np.ndarray]) -> np.ndarray:
        if self.state is None:
            raise RuntimeError("call reset() at the start of an episode before act()")
        batched, inputs = self._validate(onboard)
        sizes = {key: value.shape[0] for key, value in inputs.items()}
        if set(sizes.values()) != {self.state.shape[0]}:
            raise ValueError(f"batch sizes {sizes}, but reset() was for {self.state.shape[0]}")
        dist, self.state = self.actor({k: v[:, None] for k, v in inputs.items()}, self.state)
        action = dist.act(self.sampling, self.episode_generators or self.generator)
        action = action[:, 0].clamp(-1.0, 1.0).cpu().numpy()
        return action if batched else action[0]

    def _validate(self, onboard: dict[str, np.ndarray]) -> tuple[bool, dict[str, torch.Tensor]]:
        expected = self.spec.onboard
        if set(onboard) != set(expected):
            raise ValueError(f"onboard keys {sorted(onboard)} do not match the policy's {sorted(expected)}")
        batched = None
        inputs = {}
        for key, spec in expected.items():
            value = np.asarray(onboard[key])
            this_batched = value.shape[1:] == spec.shape
            if value.shape != spec.shape and not this_batched:
                raise ValueError(
                    f"onboard/{key}: shape {value.shape}, expected {spec.shape} (or [N, *{spec.shape}])"
                )
            if spec.is_image and value.dtype != np.uint8:
                raise ValueError(f"onboard/{key}: images must be uint8 rgb, got {value.dtype}")
            if not spec.is_image and not np.all(np.isfinite(value)):
                raise ValueError(f"onboard/{key}: holds NaN or inf")
            if batched is not None and batched != this_batched:
                raise ValueError("mix of batched and unbatched onboard arrays")
            batched = this_batched
            tensor = torch.from_numpy(np.ascontiguousarray(value))
            tensor = tensor if spec.is_image else tensor.float()
            inputs[key] = (tensor if this_batched else tensor[None]).to(self.device)
        return bool(batched), inputs


def _checked_card(path: str | Path, task: str | None) -> CheckpointCard:
    card = read_card(path)
    if task is not None and card.task != task:
        raise CheckpointError(f"{path}: checkpoint was trained on task {card.task!r}, not {task!r}")
    return card


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: unreadable weights ({err})") from err


def _load_weights(module: torch.nn.Module, path: Path) -> None:
    try:
        module.load_state_dict(_read_tensors(path))
    except RuntimeError as err:  # shape or key mismatch
        raise CheckpointError(f"{path}: weights do not fit the network in the card ({err})") from err


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
