"""Actor weights packed for transport (the learner -> policy node topic), and checked on arrival.

A packet is safetensors bytes (tensors only: nothing is unpickled) whose metadata holds the format,
the policy version, the task, the observation spec and a SHA-256 of the tensors (names, dtypes,
shapes and bytes, in name order). `unpack_actor_weights` refuses, with the reason, a packet that
is unreadable, from another format or task, not newer than the running version, whose checksum does
not match, whose names or shapes differ from the running actor's, or that holds NaN or inf.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from policies.networks import ObsSpec

WEIGHTS_FORMAT = "aps-actor-weights/1"


class WeightsError(ValueError):
    """A weights packet that must not be loaded; the text says why."""


@dataclass
class ActorWeights:
    version: int
    task: str
    spec: ObsSpec
    tensors: dict[str, torch.Tensor]


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def pack_actor_weights(actor: torch.nn.Module, version: int, task: str, spec: ObsSpec) -> bytes:
    tensors = {k: v.detach().contiguous().cpu() for k, v in actor.state_dict().items()}
    metadata = {
        "format": WEIGHTS_FORMAT,
        "version": str(int(version)),
        "task": task,
        "spec": json.dumps(spec.to_dict()),
        "sha256": tensors_sha256(tensors),
    }
    return save_bytes(tensors, metadata=metadata)


def unpack_actor_weights(
    data: bytes, actor: torch.nn.Module, task: str, current_version: int
) -> ActorWeights:
    """The checked weights of a packet for `actor` (running `current_version` of `task`)."""
    try:
        tensors = load_bytes(bytes(data))
        metadata = packet_metadata(bytes(data))
    except (SafetensorError, ValueError, json.JSONDecodeError) as err:
        raise WeightsError(f"not a weights packet ({err})") from err
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"format {metadata.get('format')!r}, expected {WEIGHTS_FORMAT!r}")
    try:
        version = int(metadata["version"])
        spec = ObsSpec.from_dict(json.loads(metadata["spec"]))
    except (KeyError, ValueError, TypeError) as err:
        raise WeightsError(f"malformed packet metadata ({err})") from err
    if metadata.get("task") != task:
        raise WeightsError(f"weights for task {metadata.get('task')!r}, the policy runs {task!r}")
    if version <= current_version:
        raise WeightsError(f"version {version} is not newer than the running version {current_version}")
    if tensors_sha256(tensors) != metadata.get("sha256"):
        raise WeightsError("checksum mismatch: the tensors are not the ones the sender packed")
    expected = {k: tuple(v.shape) for k, v in actor.state_dict().items()}
    received = {k: tuple(v.shape) for k, v in tensors.items()}
    if received != expected:
        missing, extra = sorted(set(expected) - set(received)), sorted(set(received) - set(expected))
        shapes = sorted(k for k in set(expected) & set(received) if expected[k] != received[k])
        detail = "; ".join(
            part
            for part in (
                f"missing {missing}" if missing else "",
                f"unexpected {extra}" if extra else "",
                ", ".join(f"{k} is {list(received[k])}, expected {list(expected[k])}" for k in shapes),
            )
            if part
        )
        raise WeightsError(f"weights do not fit the running actor: {detail}")
    bad = sorted(k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if bad:
        raise WeightsError(f"non-finite values (NaN or inf) in {bad}")
    return ActorWeights(version, metadata["task"], spec, tensors)


def packet_metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of safetensors bytes (an 8-byte little-endian length, then JSON)."""
    length = int.from_bytes(data[:8], "little")
    if len(data) < 8 + length:
        raise ValueError("truncated header")
    return json.loads(data[8 : 8 + length]).get("__metadata__", {})
