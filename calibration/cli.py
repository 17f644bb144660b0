"""aps-calibrate: ChArUco boards, camera intrinsics and hand-eye calibration.

    aps-calibrate board --out calib/board                              # board.png, board.pdf, board.yaml
    aps-calibrate board --out calib/board board.squares_x=7 page.paper=letter
    aps-calibrate intrinsics --images calib/wrist --board calib/board.yaml --out calib/wrist.yaml \\
        camera_name=wrist
    aps-calibrate handeye --mode eye-in-hand --images calib/he --poses calib/he/poses.yaml \\
        --camera-info calib/wrist.yaml --board calib/board.yaml --out calib/wrist_in_hand.yaml

Settings are typed configs (`apsconfig`): `--config file.yaml`, then key=value overrides. Bad input
exits with code 2 and a one-line message saying what to do. Guide: calibration/README.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apsconfig import ConfigError, config_help, load_config
from calibration.board import BoardSpec, PageConfig, write_board
from calibration.camera_info import CameraInfo, read_camera_info, write_camera_info
from calibration.errors import CalibrationError
from calibration.geometry import angle_deg, quaternion_from_matrix
from calibration.handeye import (
    HandEyeConfig,
    HandEyeResult,
    board_poses,
    calibrate_hand_eye,
    load_robot_poses,
    write_transform,
)
from calibration.intrinsics import (
    IntrinsicsConfig,
    IntrinsicsResult,
    calibrate_images,
    read_image,
    read_images,
)

PROG = "aps-calibrate"


@dataclass
class BoardCommandConfig:
    board: BoardSpec = field(default_factory=BoardSpec)
    page: PageConfig = field(default_factory=PageConfig)


def _parsers() -> dict[str, argparse.ArgumentParser]:
    def command(name: str, summary: str, settings: type) -> argparse.ArgumentParser:
        return argparse.ArgumentParser(
            prog=f"{PROG} {name}",
            description=summary,
            epilog=config_help(settings),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    board = command("board", "printable ChArUco board (PNG, PDF) and its spec (YAML)", BoardCommandConfig)
    board.add_argument("--out", type=Path, default=Path("board"), help="path stem: writes .png, .pdf, .yaml")

    intrinsics = command(
        "intrinsics", "camera matrix and distortion from board images -> ROS camera_info", IntrinsicsConfig
    )
    intrinsics.add_argument("--images", type=Path, required=True, help="folder of board images")
    intrinsics.add_argument("--board", type=Path, required=True, help="board spec YAML from `board`")
    intrinsics.add_argument("--out", type=Path, default=Path("camera_info.yaml"), help="ROS camera_info YAML")

    handeye = command(
        "handeye", "camera pose in the gripper (eye-in-hand) or base (eye-to-hand) frame", HandEyeConfig
    )
    handeye.add_argument("--mode", choices=("eye-in-hand", "eye-to-hand"), required=True)
    handeye.add_argument("--images", type=Path, required=True, help="folder of the images named in --poses")
    handeye.add_argument("--poses", type=Path, required=True, help="robot poses, YAML or CSV (see README)")
    handeye.add_argument("--camera-info", type=Path, required=True, help="camera_info YAML from `intrinsics`")
    handeye.add_argument("--board", type=Path, required=True, help="board spec YAML from `board`")
    handeye.add_argument("--out", type=Path, default=Path("hand_eye.yaml"), help="transform YAML")

    for sub in (board, intrinsics, handeye):
        sub.add_argument("--config", type=Path, help="YAML of the command's settings")
        sub.add_argument("overrides", nargs="*", help="key=value settings, e.g. min_views=15")
    return {"board": board, "intrinsics": intrinsics, "handeye": handeye}


def main(argv: list[str] | None = None) -> int:
    parsers = _parsers()
    top = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog="commands: " + "; ".join(f"{name}: {p.description}" for name, p in parsers.items()),
    )
    top.add_argument("command", choices=parsers)
    top.add_argument("arguments", nargs=argparse.REMAINDER, help="see aps-calibrate COMMAND -h")
    command = top.parse_args(argv)
    # Per-command parser, so key=value overrides may come before or after the options.
    args = parsers[command.command].parse_intermixed_args(command.arguments)
    run = {"board": _board, "intrinsics": _intrinsics, "handeye": _handeye}[command.command]
    try:
        return run(args)
    except (CalibrationError, ConfigError, ValueError) as err:
        print(f"{PROG} {command.command}: {err}", file=sys.stderr)
        return 2


def _board(args: argparse.Namespace) -> int:
    config = load_config(BoardCommandConfig, args.config, args.overrides)
    png, pdf, spec_path = write_board(config.board, config.page, args.out)
    width, height = (1000 * s for s in config.board.size_m)
    print(
        f"ChArUco {config.board.describe()}: {width:g} x {height:g} mm, {config.board.corner_count} corners"
    )
    print(
        f"wrote {png} (~{config.page.dpi} dpi), {pdf} ({config.page.paper}, exact size), {spec_path} (spec)"
    )
    print("Print the PDF at 100% scale, glue it flat on a rigid plate, measure a square and put the")
    print(f"measured size in {spec_path} (square_length_m, marker_length_m scaled the same).")
    return 0


def _intrinsics(args: argparse.Namespace) -> int:
    config = load_config(IntrinsicsConfig, args.config, args.overrides)
    spec = load_config(BoardSpec, args.board)
    result = calibrate_images(read_images(args.images), spec, config)
    info = CameraInfo(config.camera_name, result.image_size, result.camera_matrix, result.dist_coeffs)
    write_camera_info(info, args.out)
    print(_intrinsics_report(result))
    print(f"wrote {args.out}")
    return 0


def _intrinsics_report(result: IntrinsicsResult) -> str:
    lines = [f"{'view':<24} {'corners':>7} {'blur px':>7} {'error px':>8}"]
    worst = max(v.rms_px for v in result.views)
    for v in result.views:
        flag = "  <- worst" if v.rms_px == worst else ""
        lines.append(f"{v.name:<24} {v.corners:>7d} {v.blur_px:>7.2f} {v.rms_px:>8.3f}{flag}")
    rejected = [d for d in result.decisions if not d.kept]
    if rejected:
        lines.append(f"\nnot used ({len(rejected)}):")
        lines += [f"  {d.name:<22} {d.reason}" for d in rejected]
    lines += ["", result.coverage.render()]
    lines += [f"hint: {hint}" for hint in result.coverage.missing()]
    k, s = result.camera_matrix, result.std_devs
    width, height = result.image_size
    lines += [
        "",
        f"{len(result.views)} views of {len(result.decisions)} images, {width}x{height}",
        f"fx = {k[0, 0]:.2f} ± {s[0]:.2f}   fy = {k[1, 1]:.2f} ± {s[1]:.2f}   "
        f"cx = {k[0, 2]:.2f} ± {s[2]:.2f}   cy = {k[1, 2]:.2f} ± {s[3]:.2f}   (px, one sigma)",
        "distortion (plumb_bob k1 k2 p1 p2 k3): " + " ".join(f"{d:.5f}" for d in result.dist_coeffs),
        f"reprojection error: {result.rms_px:.3f} px RMS -> {_quality(result.rms_px)}",
    ]
    return "\n".join(lines)


def _quality(rms_px: float) -> str:
    if rms_px < 0.3:
        return "excellent"
    if rms_px < 0.5:
        return "good"
    if rms_px < 1.0:
        return "usable; look at the worst views and the coverage"
    return "poor: check the board spec and flatness, focus, motion blur (see calibration/README.md)"


def _handeye(args: argparse.Namespace) -> int:
    config = load_config(HandEyeConfig, args.config, args.overrides)
    mode = args.mode.replace("-", "_")
    spec = load_config(BoardSpec, args.board)
    camera = read_camera_info(args.camera_info)
    robot = load_robot_poses(args.poses)
    missing = [p.image for p in robot if not (args.images / p.image).is_file()]
    if missing:
        raise CalibrationError(f"{args.poses} names images not in {args.images}: {missing[:5]}")
    frames = ((p.image, read_image(args.images / p.image)) for p in robot)
    boards = board_poses(frames, spec, camera, config.max_view_error_px)
    used = [p for p in robot if p.image in boards.poses]
    print(f"{'image':<24} {'board error px':>14}")
    for name, error in boards.errors_px.items():
        print(f"{name:<24} {error:>14.3f}")
    for name, reason in boards.rejected.items():
        print(f"{name:<24} not used: {reason}")
    result = calibrate_hand_eye([p.pose for p in used], [boards.poses[p.image] for p in used], mode, config)
    parent = config.hand_frame if mode == "eye_in_hand" else config.base_frame
    print(_handeye_report(result, parent, config.camera_frame))
    write_transform(result, parent, config.camera_frame, args.out)
    print(f"wrote {args.out}")
    return 0


def _handeye_report(result: HandEyeResult, parent: str, child: str) -> str:
    best = result.transform
    lines = [
        f"\n{result.poses} poses; largest rotation between poses {result.max_rotation_deg:.0f} deg, "
        f"rotation axes up to {result.axis_angle_deg:.0f} deg apart",
        f"{'method':<11} {'AX=XB rot deg':>13} {'AX=XB mm':>9} {'vs best mm':>10} {'vs best deg':>11}",
    ]
    for m in result.methods:
        offset_mm = 1000 * np.linalg.norm(m.transform[:3, 3] - best[:3, 3])
        offset_deg = angle_deg(m.transform[:3, :3] @ best[:3, :3].T)
        residuals = f"{m.rotation_deg:>13.3f} {m.translation_mm:>9.2f}"
        lines.append(f"{m.method:<11} {residuals} {offset_mm:>10.2f} {offset_deg:>11.3f}")
    x, y, z = best[:3, 3]
    q = quaternion_from_matrix(best[:3, :3])
    lines += [
        f"best: {result.method}. {child} in {parent}:",
        f"  translation xyz = {x:.4f} {y:.4f} {z:.4f} m",
        "  rotation xyzw   = " + " ".join(f"{v:.5f}" for v in q),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
