"""Hand-eye on synthetic robot and board poses with a known answer, degenerate motions refused,
robot pose files and the transform YAML."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from calibration.board import BoardSpec
from calibration.errors import CalibrationError
from calibration.geometry import (
    angle_deg,
    invert,
    make_pose,
    matrix_from_quaternion,
    quaternion_from_matrix,
)
from calibration.handeye import (
    METHODS,
    HandEyeConfig,
    calibrate_hand_eye,
    load_robot_poses,
    read_transform,
    write_transform,
)
from calibration.synthetic import random_board_pose

SPEC = BoardSpec()
K = np.array([[560.0, 0.0, 324.0], [0.0, 564.0, 236.0], [0.0, 0.0, 1.0]])
SIZE = (640, 480)
HAND_CAMERA = make_pose(np.radians([4.0, -3.0, 88.0]), [0.03, -0.06, 0.05])  # hand<-wrist camera
BASE_BOARD = make_pose(np.radians([180.0, 0.0, 20.0]), [0.5, 0.1, 0.0])  # board on the table
BASE_CAMERA = make_pose(np.radians([-120.0, 5.0, 30.0]), [1.0, 0.2, 0.6])  # fixed camera
HAND_BOARD = make_pose(np.radians([0.0, 0.0, 45.0]), [0.0, 0.0, 0.1])  # board held by the gripper


def jitter(pose: np.ndarray, rng: np.random.Generator, mm: float = 0.5, deg: float = 0.05) -> np.ndarray:
    return pose @ make_pose(np.radians(deg) * rng.normal(size=3), rng.normal(0.0, mm / 1000, 3))


def scene(mode: str, seed: int, count: int = 15, **pose_ranges: float) -> tuple[list, list, np.ndarray]:
    """Noisy robot poses (base<-hand), noisy board poses (camera<-board), and the true X.

    Board poses are drawn so the board is in view; the robot poses follow from the chain."""
    rng = np.random.default_rng(seed)
    ranges = {"max_roll_deg": 60.0, **pose_ranges}
    boards = [random_board_pose(rng, SPEC, K, SIZE, **ranges) for _ in range(count)]
    if mode == "eye_in_hand":  # base<-board = base<-hand . hand<-camera . camera<-board
        truth, hands = HAND_CAMERA, [BASE_BOARD @ invert(b) @ invert(HAND_CAMERA) for b in boards]
    else:  # base<-camera . camera<-board = base<-hand . hand<-board
        truth, hands = BASE_CAMERA, [BASE_CAMERA @ b @ invert(HAND_BOARD) for b in boards]
    return [jitter(h, rng) for h in hands], [jitter(b, rng) for b in boards], truth


def errors(transform: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    mm = 1000 * float(np.linalg.norm(transform[:3, 3] - truth[:3, 3]))
    return mm, angle_deg(transform[:3, :3] @ truth[:3, :3].T)


@pytest.mark.parametrize("mode", ["eye_in_hand", "eye_to_hand"])
def test_recovers_transform_from_noisy_poses(mode: str) -> None:
    robot, boards, truth = scene(mode, seed=0)
    result = calibrate_hand_eye(robot, boards, mode)
    assert sorted(m.method for m in result.methods) == sorted(METHODS)
    assert [m.score_mm for m in result.methods] == sorted(m.score_mm for m in result.methods)
    for m in result.methods:
        mm, deg = errors(m.transform, truth)
        print(f"{mode} {m.method:<10} {mm:.2f} mm {deg:.3f} deg, residuals {m.translation_mm:.2f} mm")
        # The linear methods (Andreff, and Daniilidis' dual quaternions) are the most noise-sensitive.
        assert mm < (2.0 if m.method in ("tsai", "park", "horaud") else 4.0) and deg < 0.5, m.method
    assert result.transform is result.methods[0].transform and result.method == result.methods[0].method
    best_mm, best_deg = errors(result.transform, truth)
    assert best_mm < 2.0 and best_deg < 0.5
    assert result.max_rotation_deg > 60 and result.axis_angle_deg > 45


def test_mispaired_inverted_or_wrong_mode_poses_are_refused() -> None:
    robot, boards, _ = scene("eye_in_hand", seed=1)
    with pytest.raises(CalibrationError, match=r"rotations disagree .* paired with the image"):
        calibrate_hand_eye(robot[1:] + robot[:1], boards, "eye_in_hand")
    with pytest.raises(CalibrationError, match=r"no transform fits .* base<-hand \(not inverted\)"):
        calibrate_hand_eye([invert(r) for r in robot], boards, "eye_in_hand")
    robot, boards, _ = scene("eye_to_hand", seed=1)
    with pytest.raises(CalibrationError, match=r"got eye_in_hand; is it eye_to_hand\?"):
        calibrate_hand_eye(robot, boards, "eye_in_hand")


def test_pure_translation_is_refused() -> None:
    robot, boards, _ = scene("eye_in_hand", seed=2, max_tilt_deg=0.0, max_roll_deg=0.0)
    with pytest.raises(CalibrationError, match=r"degenerate motion.*rotate the gripper 20-40 degrees"):
        calibrate_hand_eye(robot, boards, "eye_in_hand")


def test_rotation_about_a_single_axis_is_refused() -> None:
    robot, boards, _ = scene("eye_in_hand", seed=3, max_tilt_deg=0.0)  # rolls about the optical axis only
    with pytest.raises(CalibrationError, match=r"same axis.*at least two different axes"):
        calibrate_hand_eye(robot, boards, "eye_in_hand")


def test_too_few_or_unpaired_poses_are_refused() -> None:
    robot, boards, _ = scene("eye_in_hand", seed=4, count=4)
    with pytest.raises(CalibrationError, match="4 pose pairs, need >= 5"):
        calibrate_hand_eye(robot, boards, "eye_in_hand")
    with pytest.raises(CalibrationError, match="4 robot poses but 3 board poses"):
        calibrate_hand_eye(robot, boards[:3], "eye_in_hand", HandEyeConfig(min_poses=3))
    bad = [r.copy() for r in robot]
    bad[2][:3, :3] *= 2
    with pytest.raises(ValueError, match=r"robot pose 2: .* not a rotation"):
        calibrate_hand_eye(bad, boards, "eye_in_hand", HandEyeConfig(min_poses=3))


def test_robot_pose_files_yaml_and_csv(tmp_path) -> None:
    pose = make_pose(np.radians([10.0, -20.0, 30.0]), [0.4, -0.1, 0.3])
    qx, qy, qz, qw = quaternion_from_matrix(pose[:3, :3]).tolist()
    (tmp_path / "poses.yaml").write_text(
        yaml.safe_dump(
            {
                "poses": [
                    {"image": "a.png", "translation": [0.4, -0.1, 0.3], "quaternion": [qx, qy, qz, qw]},
                    {"image": "b.png", "matrix": pose.tolist()},
                ]
            }
        )
    )
    loaded = load_robot_poses(tmp_path / "poses.yaml")
    assert [p.image for p in loaded] == ["a.png", "b.png"]
    for p in loaded:
        np.testing.assert_allclose(p.pose, pose, atol=1e-12)
    (tmp_path / "poses.csv").write_text(f"image,x,y,z,qx,qy,qz,qw\nc.png,0.4,-0.1,0.3,{qx},{qy},{qz},{qw}\n")
    np.testing.assert_allclose(load_robot_poses(tmp_path / "poses.csv")[0].pose, pose, atol=1e-12)

    (tmp_path / "mm.csv").write_text("image,x,y,z,qx,qy,qz,qw\nc.png,400,-100,300,0,0,0,1\n")
    with pytest.raises(CalibrationError, match="must be in metres"):
        load_robot_poses(tmp_path / "mm.csv")
    (tmp_path / "short.yaml").write_text(
        "poses:\n  - {image: a.png, translation: [1, 2], quaternion: [0, 0, 0, 1]}\n"
    )
    with pytest.raises(CalibrationError, match="translation needs 3 numbers"):
        load_robot_poses(tmp_path / "short.yaml")


def test_transform_yaml_round_trip(tmp_path) -> None:
    robot, boards, truth = scene("eye_to_hand", seed=5)
    result = calibrate_hand_eye(robot, boards, "eye_to_hand")
    path = tmp_path / "side_camera.yaml"
    write_transform(result, "base_link", "side_color_optical_frame", path)
    document = yaml.safe_load(path.read_text())
    assert document["mode"] == "eye_to_hand" and document["method"] == result.method
    assert set(document["residuals"]) == set(METHODS) and document["date"].startswith("20")
    q = document["rotation"]
    np.testing.assert_allclose(
        matrix_from_quaternion([q["x"], q["y"], q["z"], q["w"]]), result.transform[:3, :3]
    )
    transform = read_transform(path)
    assert (transform.parent_frame, transform.child_frame) == ("base_link", "side_color_optical_frame")
    np.testing.assert_allclose(transform.matrix, result.transform, atol=1e-12)
    assert errors(transform.matrix, truth)[0] < 2.0

    document["translation"]["x"] += 0.01
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(CalibrationError, match="disagrees with translation"):
        read_transform(path)


def test_quaternion_conversions_agree() -> None:
    rng = np.random.default_rng(6)
    for rotvec in [*rng.normal(size=(20, 3)), np.array([np.pi, 0.0, 0.0]), np.zeros(3)]:
        rotation = make_pose(rotvec, np.zeros(3))[:3, :3]
        q = quaternion_from_matrix(rotation)
        assert q[3] >= 0 and np.linalg.norm(q) == pytest.approx(1.0)
        np.testing.assert_allclose(matrix_from_quaternion(q), rotation, atol=1e-12)
