"""The policy node's core: a checkpoint's recurrent actor, fed onboard frames, one episode at a time.

No rclpy: the node (`policy_node.py`) hands it stamps and numpy arrays. The core decides when to
act: only on a frame set that it can place, by its stamp, in an episode whose start event it has
(or in the one episode that the first frames start when events are off), only on one newer than
the last it acted on and not older than `max_frame_age`; it resets the recurrent state and the
action draws at each episode start, where new weights (checked when they arrived) are swapped in.
Per-episode draw seeds (`draw_seed`) make a run reproducible: the same checkpoint, episode seed and
base seed give the same actions in-process.

Frames and episode events come on different topics, in either order. A frame set belongs to the
latest started episode at or before its stamp, unless that episode has ended before the stamp or
announced (`until_ns`) that it has no frame so late: then it belongs to an episode whose start has
not arrived yet, and waits for it. So the first frames of a new episode are never acted on with the
old episode's recurrent state and draws, whatever the order of arrival, as long as episodes carry a
horizon (the lockstep sim's do). Open-ended episodes (until_ns 0) rely on the events coming first.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from policies.checkpoint import load_policy
from policies.config import ActionSampling
from policies.images import fit_image
from policies.weights import WeightsError, unpack_actor_weights
from robot_nodes.messages import MessageError, stale_reason
from sim.scene import ARM_JOINTS, FINGER_JOINTS, FINGER_OPEN

JOINTS_KEY = "joints"
TopicKind = Literal["image", "joint_state", "vectors"]


@dataclass
class JointsLayout:
    """How the onboard `joints` vector is read from joint_states (the sim's `ArmEnv.joints()`)."""

    arm: list[str] = field(default_factory=lambda: list(ARM_JOINTS))  # arm joint angles, in this order
    gripper: list[str] = field(default_factory=lambda: list(FINGER_JOINTS))  # finger joints, averaged
    gripper_open: float = FINGER_OPEN  # a finger joint's position when fully open: opening = mean / this

    def __post_init__(self) -> None:
        if self.gripper_open <= 0:
            raise ValueError(f"gripper_open must be > 0, got {self.gripper_open}")

    def vector(self, positions: dict[str, float]) -> np.ndarray:
        arm = np.array([positions[name] for name in self.arm], dtype=np.float64)
        if not self.gripper:
            return arm.astype(np.float32)
        opening = np.mean([positions[name] for name in self.gripper]) / self.gripper_open
        return np.append(arm, opening).astype(np.float32)

    def positions(self, vector: np.ndarray) -> dict[str, float]:
        """Joint positions whose `vector` is `vector` (each finger at the opening): its inverse."""
        values = np.asarray(vector, dtype=np.float64)
        size = len(self.arm) + bool(self.gripper)
        if values.shape != (size,):
            raise ValueError(f"a joints vector of this layout has {size} values, got shape {values.shape}")
        positions = {name: float(v) for name, v in zip(self.arm, values, strict=False)}
        return positions | {name: float(values[-1]) * self.gripper_open for name in self.gripper}


@dataclass
class PolicyNodeConfig:
    READ_ONLY: ClassVar[tuple[str, ...]] = (
        "checkpoint", "task", "topics", "privileged_topics", "joints", "act_on", "reliable_sensors",
        "control_hz", "startup_timeout",
    )  # fmt: skip

    checkpoint: str = ""  # folder of an aps-pretrain checkpoint (policy.safetensors + checkpoint.json)
    task: str = ""  # the task this graph runs; a checkpoint for another task is refused (empty: any)
    sampling: ActionSampling = "component"  # how actions are drawn from the mixture (mode: deterministic)
    seed: int = 0  # base of the per-episode action-draw seeds
    # onboard key -> topic, as key=topic; unnamed keys: <camera>/color/image_raw, joint_states,
    # onboard_vectors (labelled Float32MultiArray) for other vectors
    topics: list[str] = field(default_factory=list)
    # topics that carry privileged state: the policy refuses to start if it would subscribe to one
    privileged_topics: list[str] = field(
        default_factory=lambda: ["privileged_state", "privileged", "object_pose"]
    )
    joints: JointsLayout = field(default_factory=JointsLayout)
    # frames: act on each new complete frame set (lockstep sims, sensors at the control rate);
    # timer: act at control_hz on the freshest frame set
    act_on: Literal["frames", "timer"] = "frames"
    control_hz: float = 10.0  # ticks per second when act_on is timer
    sync_tolerance: float = 0.01  # seconds: the most the stamps of one frame set may differ
    max_frame_age: float = 0.2  # seconds: older frame sets are stale and never acted on
    # crop_resize: a camera image of another size is centre-cropped to the checkpoint's aspect ratio
    # and resized to its size (policies.images.fit_image: a 640x480 RealSense feeds an 84x84 policy);
    # exact: such an image is refused
    image_fit: Literal["crop_resize", "exact"] = "crop_resize"
    episodes_from_events: bool = True  # false: one episode from the first frames (deploy without a recorder)
    startup_timeout: float = 10.0  # seconds to wait for a publisher on every needed topic
    reliable_sensors: bool = False  # reliable sensor QoS (lockstep graphs); else sensor-data QoS

    def __post_init__(self) -> None:
        if not self.checkpoint:
            raise ValueError("checkpoint is not set: give the folder of a checkpoint (checkpoint:=runs/...)")
        for entry in self.topics:
            key, sep, topic = entry.partition("=")
            if not sep or not key or not topic:
                raise ValueError(f"topics entry {entry!r} must look like key=topic")
        if min(self.control_hz, self.sync_tolerance, self.max_frame_age, self.startup_timeout) <= 0:
            raise ValueError("control_hz, sync_tolerance, max_frame_age and startup_timeout must be > 0")


def draw_seed(base: int, episode_seed: int) -> int:
    """The action-draw seed of one episode: independent streams for distinct (base, episode) pairs."""
    return int(np.random.SeedSequence([base & 0xFFFFFFFF, episode_seed & 0xFFFFFFFF]).generate_state(1)[0])


def default_topic(key: str, is_image: bool) -> str:
    if is_image:
        return f"{key}/color/image_raw"  # realsense-ros's name; the camera is named after the key
    return "joint_states" if key == JOINTS_KEY else "onboard_vectors"


@dataclass
class Episode:
    index: int
    seed: int
    start_ns: int  # stamp of its first observation
    until_ns: int = 0  # no frame of it is stamped later (0: open-ended)
    end_ns: int | None = None  # stamp of its last observation, once it has ended

    def acts_on(self, stamp_ns: int) -> bool:
        """Whether frames stamped `stamp_ns` are this episode's and still need an action (its last
        observation needs none: the episode is over)."""
        if stamp_ns < self.start_ns or (self.until_ns and stamp_ns > self.until_ns):
            return False
        return self.end_ns is None or stamp_ns < self.end_ns


class FrameBuffer:
    """The last few messages of each topic with their stamps, and the freshest synchronised set."""

    def __init__(self, topics: list[str], depth: int = 8) -> None:
        self.messages: dict[str, deque[tuple[int, object]]] = {t: deque(maxlen=depth) for t in topics}

    def add(self, topic: str, stamp_ns: int, message: object) -> str | None:
        """Store a message; an out-of-order one is dropped and the reason returned."""
        buffer = self.messages[topic]
        if buffer and stamp_ns < buffer[-1][0]:
            return f"{topic}: out-of-order stamp {stamp_ns} < {buffer[-1][0]}, message dropped"
        buffer.append((stamp_ns, message))
        return None

    def freshest_set(self, tolerance_ns: int) -> tuple[int, dict[str, object]] | None:
        """(stamp, topic -> message) of the newest set whose stamps lie within `tolerance_ns`: the
        slowest topic's newest message and, from each other topic, its message nearest to it."""
        if any(not buffer for buffer in self.messages.values()):
            return None
        pivot = min(buffer[-1][0] for buffer in self.messages.values())
        chosen: dict[str, object] = {}
        stamps = []
        for topic, buffer in self.messages.items():
            stamp, message = min(buffer, key=lambda item: abs(item[0] - pivot))
            if abs(stamp - pivot) > tolerance_ns:
                return None
            chosen[topic] = message
            stamps.append(stamp)
        return max(stamps), chosen


class PolicyCore:
    def __init__(self, config: PolicyNodeConfig) -> None:
        self.config = config
        self.runner = load_policy(config.checkpoint, config.task or None, config.sampling, config.seed)
        self.task = self.runner.card.task
        self.spec = self.runner.spec
        self.version = self.runner.version
        overrides = dict(entry.split("=", 1) for entry in config.topics)
        unknown = sorted(set(overrides) - set(self.spec.onboard))
        privileged = sorted(set(overrides) & set(self.spec.privileged))
        if privileged:
            raise ValueError(f"topics maps privileged key(s) {privileged}: the policy sees onboard keys only")
        if unknown:
            raise ValueError(
                f"topics names key(s) {unknown}; the checkpoint's onboard keys: {sorted(self.spec.onboard)}"
            )
        self.key_topics = {
            key: overrides.get(key, default_topic(key, spec.is_image))
            for key, spec in self.spec.onboard.items()
        }
        self.topic_kinds: dict[str, TopicKind] = {}
        for key, topic in self.key_topics.items():
            kind: TopicKind = (
                "image"
                if self.spec.onboard[key].is_image
                else "joint_state"
                if key == JOINTS_KEY
                else "vectors"
            )
            if self.topic_kinds.setdefault(topic, kind) != kind:
                raise ValueError(f"topic {topic!r} is mapped to keys of different message types")
        forbidden = sorted(set(self.topic_kinds) & set(config.privileged_topics))
        if forbidden:
            raise ValueError(
                f"the policy would subscribe to privileged topic(s) {forbidden}; "
                "map its keys to onboard topics"
            )
        self.frames = FrameBuffer(list(self.topic_kinds))
        self.episode: Episode | None = None  # the one the recurrent state belongs to
        self.known: dict[int, Episode] = {}  # started episodes from events, by index
        self.pending_weights = None
        self.last_acted_ns: int | None = None

    # --- episodes -----------------------------------------------------------------------------
    def on_episode_start(self, index: int, seed: int, start_ns: int, until_ns: int = 0) -> None:
        self.known.setdefault(index, Episode(index, seed, start_ns, until_ns))
        # episodes that started before the one acting are over: keep the few that may still matter
        current = self.episode.start_ns if self.episode is not None else start_ns
        self.known = {i: e for i, e in self.known.items() if e.start_ns >= min(current, start_ns)}

    def on_episode_end(self, index: int, end_ns: int) -> None:
        if index in self.known:
            self.known[index].end_ns = end_ns

    def episode_of(self, stamp_ns: int) -> Episode | None:
        """The started episode whose frames these are, or None (between episodes, or an episode
        whose start event has not come yet)."""
        started = [e for e in self.known.values() if e.start_ns <= stamp_ns]
        if not started:
            return None
        latest = max(started, key=lambda e: e.start_ns)
        return latest if latest.acts_on(stamp_ns) else None

    def start_episode(self, episode: Episode) -> None:
        """Recurrent state and draws reset; weights that arrived since the last episode go in."""
        if self.pending_weights is not None:
            self.runner.actor.load_state_dict(self.pending_weights.tensors)
            self.version = self.pending_weights.version
            self.pending_weights = None
        self.runner.reset()
        self.runner.generator.manual_seed(draw_seed(self.config.seed, episode.seed))
        self.episode = episode

    def on_config(self, config: PolicyNodeConfig) -> None:
        """Settings changed at run time (the read-only ones cannot change): sampling, the draw seeds
        of later episodes, frame tolerances, image fitting."""
        self.config = config
        self.runner.sampling = config.sampling

    # --- weights ------------------------------------------------------------------------------
    def offer_weights(self, data: bytes) -> str:
        """Check a weights packet now, swap it in at the next episode start. Raises WeightsError."""
        newest = self.pending_weights.version if self.pending_weights is not None else self.version
        weights = unpack_actor_weights(data, self.runner.actor, self.task, newest)
        self.pending_weights = weights
        return f"weights version {weights.version} accepted; they act from the next episode on"

    # --- acting -------------------------------------------------------------------------------
    def ready(self, stamp_ns: int, now_ns: int) -> str | None:
        """None when a frame set stamped `stamp_ns` should be acted on, else why not (a log line, or
        an empty string for the ordinary case of no news)."""
        if not self.config.episodes_from_events and not self.known:
            self.known[0] = Episode(0, 0, stamp_ns)  # the whole run is one episode
        episode = self.episode_of(stamp_ns)
        if episode is None:
            return ""  # between episodes, or the start event of these frames' episode is still to come
        if episode is not self.episode:
            if self.episode is not None and episode.start_ns < self.episode.start_ns:
                return ""  # late frames of an episode that is over
            self.start_episode(episode)
        if self.last_acted_ns is not None and stamp_ns <= self.last_acted_ns:
            return ""  # acted on it already
        return stale_reason("frames (the freshest complete set)", stamp_ns, now_ns, self.config.max_frame_age)

    def fit(self, key: str, value: np.ndarray) -> np.ndarray:
        """One onboard array as the policy takes it: a camera image fitted to the checkpoint's size
        (`image_fit`); anything else must have the checkpoint's shape. MessageError if it cannot."""
        spec = self.spec.onboard[key]
        if spec.is_image and self.config.image_fit == "crop_resize" and value.ndim == len(spec.shape):
            value = fit_image(value, spec.shape[:2])
        if value.shape != spec.shape:
            hint = " (set image_fit:=crop_resize to fit camera images)" if spec.is_image else ""
            raise MessageError(f"{key} has shape {value.shape}, the policy needs {spec.shape}{hint}")
        return value

    def act(self, stamp_ns: int, onboard: dict[str, np.ndarray]) -> np.ndarray:
        self.last_acted_ns = stamp_ns
        return self.runner.act(onboard).astype(np.float32)


__all__ = ["FrameBuffer", "JointsLayout", "PolicyCore", "PolicyNodeConfig", "WeightsError", "draw_seed"]
