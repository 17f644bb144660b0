"""Checkpoints (safetensors weights + a JSON card) and the step-by-step policy runner.

A checkpoint is a folder:

    policy.safetensors     the actor (all that deployment needs)
    critic.safetensors     the critic and its target (to resume or fine-tune online); absent for BC
    optimizer.safetensors  the Adam moments, so training resumes where it stopped
    checkpoint.json        task, observation spec, learner config, version, updates, weighting, metrics

Files are written under temporary names and renamed, so a crash never leaves a half checkpoint
that looks whole. Loading never unpickles: safetensors holds tensors only.
"""

from __future__ import annotations

import json
import os
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
    path.mkdir(parents=True, exist_ok=True)
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
    # Remove the card first: a folder whose card is present holds weights that match it, also while
    # a checkpoint is overwritten by a newer one.
    (path / CARD).unlink(missing_ok=True)
    _atomic(path / "policy.safetensors", lambda tmp: save_file(_contiguous(learner.actor.state_dict()), tmp))
    if learner.critic is not None:
        critic = {f"critic.{k}": v for k, v in learner.critic.state_dict().items()}
        critic |= {f"target.{k}": v for k, v in learner.target_critic.state_dict().items()}
        _atomic(path / "critic.safetensors", lambda tmp: save_file(_contiguous(critic), tmp))
    moments = {
        f"{name}.{index}.{field}": value
        for name, optimizer in learner.optimizers().items()
        for index, state in optimizer.state_dict()["state"].items()
        for field, value in state.items()
    }
    _atomic(path / "optimizer.safetensors", lambda tmp: save_file(_contiguous(moments), tmp))
    _atomic(path / CARD, lambda tmp: Path(tmp).write_text(json.dumps(card, indent=2)))
    return path


def read_card(path: str | Path) -> CheckpointCard:
    card_path = Path(path) / CARD
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
        config = from_dict(LearnerConfig, card["config"])
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


def load_learner(path: str | Path, task: str | None = None) -> tuple[Learner, CheckpointCard]:
    """The whole learner (actor, critic, target), e.g. to go on training online."""
    card = _checked_card(path, task)
    learner = Learner(card.spec, card.config)
    _load_weights(learner.actor, Path(path) / "policy.safetensors")
    if learner.critic is not None:
        tensors = _read_tensors(Path(path) / "critic.safetensors")
        for prefix, module in (("critic.", learner.critic), ("target.", learner.target_critic)):
            weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(weights)
            except RuntimeError as err:
                raise CheckpointError(f"{path}: critic weights do not fit the card ({err})") from err
    if (Path(path) / "optimizer.safetensors").is_file():  # checkpoints before it was saved have none
        _load_optimizers(learner, _read_tensors(Path(path) / "optimizer.safetensors"), path)
    learner.updates, learner.weighting = card.updates, card.weighting
    return learner, card


def _load_optimizers(learner: Learner, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    for name, optimizer in learner.optimizers().items():
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            owner, index, field = key.split(".")
            if owner == name:
                state.setdefault(int(index), {})[field] = value
        try:
            optimizer.load_state_dict({**optimizer.state_dict(), "state": state})
        except (ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"{path}: optimizer state does not fit the learner ({err})") from err


def load_policy(
    path: str | Path, task: str | None = None, sampling: ActionSampling = "component", seed: int = 0
) -> PolicyRunner:
    """The deployable policy: actor weights only, wrapped in the step-by-step runner."""
    card = _checked_card(path, task)
    actor = Actor(card.spec, card.config.network)
    _load_weights(actor, Path(path) / "policy.safetensors")
    return PolicyRunner(actor, card, sampling, seed)


class PolicyRunner:
    """Runs the recurrent actor one control step at a time, for one robot or a batch of sims.

    Call `reset(n)` at every episode start (it zeroes the hidden state), then `act(onboard)` once per
    step with that step's onboard observation: arrays shaped like the spec, or with a leading batch
    axis of n. Actions come back clipped to [-1, 1]. `sampling` picks the action from the policy's
    mixture (`ActionMixture.act`); the draws come from the runner's own seeded generator, so a run
    is reproducible.
    """

    def __init__(
        self, actor: Actor, card: CheckpointCard, sampling: ActionSampling = "component", seed: int = 0
    ) -> None:
        self.actor = actor
        self.card = card
        self.spec = card.spec
        self.sampling = sampling
        self.generator = torch.Generator().manual_seed(seed)
        self.state: torch.Tensor | None = None

    @staticmethod
    def from_learner(
        learner: Learner, task: str, sampling: ActionSampling = "component", seed: int = 0
    ) -> PolicyRunner:
        """A runner over the learner's live actor, for rollouts during training."""
        card = CheckpointCard(task, learner.spec, learner.config, 0, learner.updates, {}, learner.weighting)
        return PolicyRunner(learner.actor, card, sampling, seed)

    @property
    def version(self) -> int:
        return self.card.version

    def reset(self, batch: int = 1) -> None:
        self.state = self.actor.initial_state(batch)

    @torch.no_grad()
    def act(self, onboard: dict[str, np.ndarray]) -> np.ndarray:
        if self.state is None:
            raise RuntimeError("call reset() at the start of an episode before act()")
        batched, inputs = self._validate(onboard)
        sizes = {key: value.shape[0] for key, value in inputs.items()}
        if set(sizes.values()) != {self.state.shape[0]}:
            raise ValueError(f"batch sizes {sizes}, but reset() was for {self.state.shape[0]}")
        dist, self.state = self.actor({k: v[:, None] for k, v in inputs.items()}, self.state)
        action = dist.act(self.sampling, self.generator)
        action = action[:, 0].clamp(-1.0, 1.0).numpy()
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
            inputs[key] = tensor if this_batched else tensor[None]
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
    return {k: v.detach().contiguous() for k, v in tensors.items()}


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(str(tmp))
    with open(tmp, "rb") as handle:  # on disk before the rename, so a power cut leaves no empty file
        os.fsync(handle.fileno())
    os.replace(tmp, path)
