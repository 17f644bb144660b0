"""aps-calibrate end to end on files: board, intrinsics from rendered images, hand-eye from rendered
images and a robot pose file; bad input exits with code 2 and a one-line reason."""

from __future__ import annotations

import re
import struct

import cv2
import numpy as np
import pytest
import yaml
from test_calibration_handeye import errors, scene
from test_calibration_intrinsics import DIST, SIZE, SPEC, K

from calibration.board import BoardDetector
from calibration.camera_info import CameraInfo, read_camera_info, write_camera_info
from calibration.cli import main
from calibration.geometry import quaternion_from_matrix
from calibration.handeye import read_transform
from calibration.synthetic import BoardRenderer, random_board_pose

POINTS_PER_MM = 72 / 25.4


@pytest.fixture(scope="module")
def renderer() -> BoardRenderer:
    return BoardRenderer(SPEC, K, DIST, SIZE)


def test_board_png_pdf_and_spec(tmp_path, capsys) -> None:
    assert main(["board", "--out", str(tmp_path / "board"), "page.dpi=200"]) == 0
    assert "270 x 180 mm" in capsys.readouterr().out
    png = (tmp_path / "board.png").read_bytes()
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    square_px = round(0.03 / 0.0254 * 200)
    assert image.shape == (8 * square_px, 11 * square_px)  # one square of margin each side
    per_metre = struct.unpack(">I", png[png.index(b"pHYs") + 4 :][:4])[0]
    assert image.shape[1] / per_metre == pytest.approx(11 * 0.03, rel=1e-4)  # pHYs holds whole pixels/m
    assert len(BoardDetector(SPEC).detect(image)) == SPEC.corner_count
    pdf = (tmp_path / "board.pdf").read_bytes()
    assert b"/MediaBox [ 0 0 841.8898 595.2756 ]" in pdf  # A4 landscape
    width, height = (
        float(v) for v in re.search(rb"([\d.]+) 0 0 ([\d.]+) [\d.]+ [\d.]+ cm\s*/", pdf).groups()
    )
    assert (width, height) == pytest.approx((270 * POINTS_PER_MM, 180 * POINTS_PER_MM), abs=1e-3)
    assert yaml.safe_load((tmp_path / "board.yaml").read_text())["square_length_m"] == 0.03


def test_intrinsics_command_writes_camera_info(renderer: BoardRenderer, tmp_path, capsys) -> None:
    rng = np.random.default_rng(11)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(14):
        pose = random_board_pose(rng, SPEC, K, SIZE, distance_m=(0.3, 0.55))
        cv2.imwrite(str(images / f"{i:03d}.png"), renderer.render(pose, rng))
    cv2.imwrite(str(images / "blurred.png"), renderer.render(pose, rng, blur_sigma=6.0))
    assert main(["board", "--out", str(tmp_path / "board")]) == 0
    out = tmp_path / "wrist.yaml"
    args = ["intrinsics", "--images", str(images), "--board", str(tmp_path / "board.yaml"), "--out", str(out)]
    assert main([*args, "camera_name=wrist", "views.max_blur_px=1.8"]) == 0
    printed = capsys.readouterr().out
    assert "blurred.png" in printed and "+-----+" in printed and "reprojection error" in printed
    info = read_camera_info(out)
    assert info.camera_name == "wrist"
    found = info.camera_matrix[[0, 1, 0, 1], [0, 1, 2, 2]]
    assert np.all(np.abs(found / K[[0, 1, 0, 1], [0, 1, 2, 2]] - 1) < 0.01)


def test_handeye_command_from_images_and_pose_file(renderer: BoardRenderer, tmp_path, capsys) -> None:
    robot, boards, truth = scene("eye_in_hand", seed=12, count=12)
    rng = np.random.default_rng(12)
    for i, board in enumerate(boards):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), renderer.render(board, rng))
    entries = [
        {"image": f"{i:02d}.png", "translation": r[:3, 3].tolist(),
         "quaternion": quaternion_from_matrix(r[:3, :3]).tolist()}
        for i, r in enumerate(robot)
    ]  # fmt: skip
    (tmp_path / "poses.yaml").write_text(yaml.safe_dump({"poses": entries}))
    write_camera_info(CameraInfo("wrist", SIZE, K, DIST), tmp_path / "wrist.yaml")
    (tmp_path / "board.yaml").write_text(yaml.safe_dump({"squares_x": 9, "squares_y": 6}))
    out = tmp_path / "wrist_in_hand.yaml"
    args = [
        "handeye", "--mode", "eye-in-hand", "--images", str(tmp_path),
        "--poses", str(tmp_path / "poses.yaml"), "--camera-info", str(tmp_path / "wrist.yaml"),
        "--board", str(tmp_path / "board.yaml"),
    ]  # fmt: skip
    assert main([*args, "--out", str(out), "camera_frame=wrist_color_optical_frame"]) == 0
    printed = capsys.readouterr().out
    assert all(method in printed for method in ("tsai", "park", "horaud", "andreff", "daniilidis"))
    transform = read_transform(out)
    assert (transform.parent_frame, transform.child_frame) == ("tool0", "wrist_color_optical_frame")
    mm, deg = errors(transform.matrix, truth)
    print(f"hand-eye from rendered images: {mm:.2f} mm, {deg:.3f} deg")
    assert mm < 2.0 and deg < 0.5

    entries[3]["image"] = "missing.png"
    (tmp_path / "poses.yaml").write_text(yaml.safe_dump({"poses": entries}))
    assert main([*args, "--out", str(out)]) == 2
    assert "names images not in" in capsys.readouterr().err


def test_bad_input_exits_2_with_one_line(renderer: BoardRenderer, tmp_path, capsys) -> None:
    assert main(["board", "--out", str(tmp_path / "board")]) == 0
    board = ["--board", str(tmp_path / "board.yaml")]
    (tmp_path / "empty").mkdir()
    assert main(["intrinsics", "--images", str(tmp_path / "empty"), *board]) == 2
    assert "no images" in capsys.readouterr().err
    noise = np.random.default_rng(13).integers(0, 255, (SIZE[1], SIZE[0]), dtype=np.uint8)
    for i in range(3):
        cv2.imwrite(str(tmp_path / "empty" / f"{i}.png"), noise)
    assert main(["intrinsics", "--images", str(tmp_path / "empty"), *board]) == 2
    err = capsys.readouterr().err
    assert "no board found in any of the 3 images" in err and err.count("\n") == 1
    assert main(["intrinsics", "--images", str(tmp_path), *board, "min_views=2"]) == 2
    assert "min_views must be >= 4" in capsys.readouterr().err

    # A gripper that only translates: the board keeps its orientation in every image.
    robot, boards, _ = scene("eye_in_hand", seed=14, count=6, max_tilt_deg=0.0, max_roll_deg=0.0)
    rng = np.random.default_rng(14)
    lines = ["image,x,y,z,qx,qy,qz,qw"]
    for i, (r, b) in enumerate(zip(robot, boards, strict=True)):
        cv2.imwrite(str(tmp_path / f"t{i}.png"), renderer.render(b, rng))
        lines.append(f"t{i}.png," + ",".join(str(v) for v in [*r[:3, 3], *quaternion_from_matrix(r[:3, :3])]))
    (tmp_path / "poses.csv").write_text("\n".join(lines) + "\n")
    write_camera_info(CameraInfo("wrist", SIZE, K, DIST), tmp_path / "wrist.yaml")
    args = ["--images", str(tmp_path), "--poses", str(tmp_path / "poses.csv"), *board]
    assert (
        main(["handeye", "--mode", "eye-in-hand", *args, "--camera-info", str(tmp_path / "wrist.yaml")]) == 2
    )
    assert "rotate the gripper 20-40 degrees about at least two different axes" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["handeye", *args])  # no --mode
    assert exit_info.value.code == 2
