"""shelf-search: find the red target among distractors in a 2 x 3 shelf cabinet and look at it.

The cabinet's compartments are open only at the front, so from the home pose (high, looking down)
the wrist camera sees the cabinet's top and nothing inside: the arm must lower the camera, turn it
level and look into the right compartment. Success: the target is seen in the wrist image, centred
and large enough. Privileged: where the target is, and the boxes an ideal detector would report in
the wrist camera and in a fixed overview camera; the dense reward is shaped from the wrist box (area,
distance to the image centre, a bonus inside the central region), as real privileged detectors give.
Action: end-effector deltas (x, y, z, pitch); the gripper is not used.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from sim.base import ArmEnv
from sim.camera import Detection, detect_box
from sim.config import RewardType
from sim.rewards import StepOutcome, Vectors
from sim.scene import fmt, lookat_xyaxes

FRONT, BACK = 0.50, 0.70  # cabinet depth along x
COLUMNS = np.array([-0.22, 0.0, 0.22])  # compartment centres along y
COLUMN_WIDTH = 0.22
FLOORS = (0.0, 0.155)  # compartment floor heights (the lower one is the table)
ROW_HEIGHT = 0.14
BOARD = 0.015
TARGET_HALF = np.array([0.02, 0.02, 0.03])
NUM_PLACES = len(COLUMNS) * len(FLOORS)
NUM_DISTRACTORS = 3
DISTRACTOR_COLOURS = np.array([[0.15, 0.6, 0.2], [0.15, 0.3, 0.8], [0.85, 0.75, 0.1], [0.6, 0.6, 0.6]])
GOAL_AREA = 0.04  # share of the wrist image the target's visible box must cover
CENTRE_RADIUS = 0.15  # the box centre must lie this close to the image centre (image-normalised)
OVERVIEW_POS, OVERVIEW_TARGET = np.array([0.1, -0.05, 0.25]), np.array([0.6, 0.0, 0.14])
PRIVILEGED_REWARD_KEYS = ("target_box_wrist",)


def privileged_outcome(
    previous: Vectors | None, action: np.ndarray | None, current: Vectors, reward_type: RewardType | None
) -> StepOutcome:
    """Success and reward from the wrist detector's box alone (`target_box_wrist`, as the env and a
    recorder both see it): success when the target is seen centred and large enough; the dense reward
    grows with the box's area and closeness to the image centre, with a bonus inside the centre."""
    _, _, _, _, area, offset, visible = (float(v) for v in current["target_box_wrist"])
    success = visible > 0.5 and area >= GOAL_AREA and offset <= CENTRE_RADIUS
    if (reward_type or ShelfSearchEnv.default_reward) == "sparse" or success:
        return StepOutcome(float(success), success)
    if visible <= 0.5:
        return StepOutcome(0.0, False)
    centred = offset <= CENTRE_RADIUS
    reward = 0.4 * min(area / GOAL_AREA, 1.0) + 0.3 * max(0.0, 1.0 - offset / 0.5) + 0.2 * centred
    return StepOutcome(float(reward), False)


def place_centre(place: int) -> np.ndarray:
    """Centre of the floor of compartment `place` (row-major: row = place // 3, column = place % 3)."""
    row, column = divmod(place, len(COLUMNS))
    return np.array([(FRONT + BACK) / 2, COLUMNS[column], FLOORS[row] + (BOARD if row else 0.0)])


class ShelfSearchEnv(ArmEnv):
    task_name = "shelf-search"
    onboard_cameras = ("wrist",)
    privileged_vectors: ClassVar[dict[str, int]] = {
        "target_pos": 3,
        "target_place": NUM_PLACES,
        "target_box_wrist": 7,
        "target_box_fixed": 7,
    }
    default_reward = "dense"
    ee_axes = ("x", "y", "z", "pitch")
    has_gripper = False
    home_pos = np.array([0.25, 0.0, 0.42])  # looking straight down, in front of the cabinet
    workspace = (np.array([0.2, -0.3, 0.03]), np.array([0.46, 0.3, 0.45]))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._wrist = self.model.camera("wrist").id
        self._fixed = self.model.camera("overview").id
        self._target_geom = self.model.geom("target").id
        self._object_bodies = [self.model.body(n).id for n in ["target", *self._distractor_names()]]

    @staticmethod
    def _distractor_names() -> list[str]:
        return [f"distractor{i}" for i in range(NUM_DISTRACTORS)]

    def _objects_xml(self) -> str:
        wood = 'rgba="0.45 0.33 0.22 1"'
        half_width = len(COLUMNS) * COLUMN_WIDTH / 2
        depth, mid_x = (BACK - FRONT) / 2, (FRONT + BACK) / 2
        top = FLOORS[1] + BOARD + ROW_HEIGHT
        parts = [f'<geom type="box" size="0.008 {half_width} {top / 2}" pos="{BACK} 0 {top / 2}" {wood}/>']
        for z in (FLOORS[1] + BOARD / 2, top + BOARD / 2):  # the middle and top boards
            parts.append(
                f'<geom type="box" size="{depth} {half_width} {BOARD / 2}" pos="{mid_x} 0 {z}" {wood}/>'
            )
        for y in (-half_width, *(COLUMNS[:-1] + COLUMN_WIDTH / 2), half_width):
            parts.append(
                f'<geom type="box" size="{depth} 0.006 {top / 2}" pos="{mid_x} {y} {top / 2}" {wood}/>'
            )
        size = fmt(TARGET_HALF)
        bodies = [
            f'<body name="target"><geom name="target" type="box" size="{size}" rgba="0.85 0.1 0.1 1"/></body>'
        ]
        for name in self._distractor_names():
            bodies.append(f'<body name="{name}"><geom type="box" size="{size}" rgba="0.5 0.5 0.5 1"/></body>')
        overview = lookat_xyaxes(OVERVIEW_POS, OVERVIEW_TARGET)
        camera = f'<camera name="overview" pos="{fmt(OVERVIEW_POS)}" xyaxes="{overview}" fovy="60"/>'
        return "\n".join(['<body name="cabinet">', *parts, "</body>", *bodies, camera])

    def _reset_task(self, rng: np.random.Generator) -> None:
        places = rng.permutation(NUM_PLACES)[: 1 + NUM_DISTRACTORS]
        self.target_place = int(places[0])
        for body, place in zip(self._object_bodies, places, strict=True):
            jitter = np.array([rng.uniform(-0.04, 0.04), rng.uniform(-0.05, 0.05), TARGET_HALF[2]])
            self.model.body_pos[body] = place_centre(int(place)) + jitter
            yaw = rng.uniform(-0.4, 0.4)
            self.model.body_quat[body] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        colours = DISTRACTOR_COLOURS[rng.permutation(len(DISTRACTOR_COLOURS))[:NUM_DISTRACTORS]]
        for body, colour in zip(self._object_bodies[1:], colours, strict=True):
            geom = self.model.body_geomadr[body]
            self.model.geom_rgba[geom, :3] = colour * (
                rng.uniform(0.85, 1.15, 3) if self.config.randomize else 1
            )

    def target_pos(self) -> np.ndarray:
        return self.data.xpos[self._object_bodies[0]].copy()

    def detection(self, camera: str = "wrist") -> Detection:
        cam = self._wrist if camera == "wrist" else self._fixed
        return detect_box(self.model, self.data, cam, self._target_geom, self.config.image_size)

    def _outcome(self, privileged: dict[str, np.ndarray]) -> tuple[bool, float]:
        outcome = privileged_outcome(None, None, privileged, self.reward_type)
        return outcome.success, outcome.reward

    def _privileged(self) -> dict[str, np.ndarray]:
        return {
            "target_pos": self.target_pos().astype(np.float32),
            "target_place": np.eye(NUM_PLACES, dtype=np.float32)[self.target_place],
            "target_box_wrist": self.detection("wrist").vector(),
            "target_box_fixed": self.detection("fixed").vector(),
        }
