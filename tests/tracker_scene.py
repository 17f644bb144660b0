"""A MuJoCo scene for the privileged tracker's tests: the sim's robot and table (sim/scene.py), a red
5 cm cube with an ArUco marker on its top face, and the side camera, calibrated the way
`aps-calibrate` writes it (camera_info YAML from the MuJoCo fovy, base<-optical-frame YAML from
the MuJoCo camera pose), so the tracker reads real files and real rendered images."""

from __future__ import annotations

from pathlib import Path

import cv2
import mujoco
import numpy as np

from calibration.camera_info import CameraInfo, write_camera_info
from calibration.handeye import HandEyeResult, write_transform
from sim.scene import scene_xml

CUBE_HALF = 0.025
MARKER_ID = 7
MARKER_LENGTH = 0.04  # black square; the white border fills the rest of the 5 cm face
MARKER_GROUP = 2  # geom group of the marker plate, hidden for the colour tracker
WIDTH, HEIGHT, FOVY = 640, 480, 25.0
BASE_FRAME, CAMERA_FRAME = "base_link", "side_color_optical_frame"
CUBE_RGBA = "0.85 0.12 0.10 1"  # sim.pick's red


class TrackerScene:
    """Renders the side camera with the cube at a given pose; writes the calibration files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)
        pixels = 400
        border = round(pixels * (2 * CUBE_HALF - MARKER_LENGTH) / MARKER_LENGTH / 2)
        texture = np.full((pixels + 2 * border,) * 2, 255, np.uint8)
        texture[border:-border, border:-border] = cv2.aruco.generateImageMarker(dictionary, MARKER_ID, pixels)
        cv2.imwrite(str(folder / "marker.png"), texture)
        assets = (
            f'<material name="object" rgba="{CUBE_RGBA}"/>'
            f'<texture name="marker" type="2d" file="{folder / "marker.png"}"/>'
            '<material name="marker" texture="marker"/>'
        )
        h = CUBE_HALF
        objects = f"""
    <body name="object" pos="0.4 0 {h}">
      <freejoint name="object"/>
      <geom name="object" type="box" size="{h} {h} {h}" material="object" mass="0.05"/>
      <geom name="marker" type="box" size="{h} {h} 0.0002" pos="0 0 {h}" material="marker"
            contype="0" conaffinity="0" mass="0" group="{MARKER_GROUP}"/>
    </body>"""
        self.model = mujoco.MjModel.from_xml_string(scene_xml(objects, assets, side_fovy=FOVY))
        self.model.vis.global_.offwidth, self.model.vis.global_.offheight = WIDTH, HEIGHT
        self.data = mujoco.MjData(self.model)
        self.renderer = mujoco.Renderer(self.model, HEIGHT, WIDTH)
        self.camera = self.model.camera("side").id
        self.body = self.model.body("object").id
        self.qpos = self.model.joint("object").qposadr[0]
        mujoco.mj_forward(self.model, self.data)

    def render(self, x: float, y: float, yaw: float, marker: bool = True) -> np.ndarray:
        """RGB image with the cube resting on the table at (x, y), turned by `yaw`."""
        self.data.qpos[self.qpos : self.qpos + 7] = [x, y, CUBE_HALF, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        mujoco.mj_forward(self.model, self.data)
        option = mujoco.MjvOption()
        option.geomgroup[MARKER_GROUP] = int(marker)
        self.renderer.update_scene(self.data, camera=self.camera, scene_option=option)
        return self.renderer.render().copy()

    def object_position(self) -> np.ndarray:
        return self.data.xpos[self.body].copy()

    def object_rotation(self) -> np.ndarray:
        return self.data.xmat[self.body].reshape(3, 3).copy()

    def write_calibration(self) -> tuple[Path, Path]:
        """camera_info YAML (an ideal pinhole from MuJoCo's fovy) and the base<-camera YAML."""
        focal = 0.5 * HEIGHT / np.tan(np.deg2rad(FOVY) / 2)
        # MuJoCo (OpenGL) puts the optical axis at the image's edge-to-edge centre, which is pixel
        # (W - 1) / 2 in OpenCV's convention (pixel centres at integers).
        matrix = np.array([[focal, 0, (WIDTH - 1) / 2], [0, focal, (HEIGHT - 1) / 2], [0, 0, 1]])
        info_path = self.folder / "side.yaml"
        write_camera_info(CameraInfo("side", (WIDTH, HEIGHT), matrix, np.zeros(5)), info_path)
        # MuJoCo camera axes: x right, y up, z backward; the optical frame: x right, y down, z ahead.
        pose = np.eye(4)
        pose[:3, :3] = self.data.cam_xmat[self.camera].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
        pose[:3, 3] = self.data.cam_xpos[self.camera]
        extrinsics_path = self.folder / "side_in_base.yaml"
        result = HandEyeResult("eye_to_hand", "ground-truth", pose, [], 0, 0.0, 0.0)
        write_transform(result, BASE_FRAME, CAMERA_FRAME, extrinsics_path)
        return info_path, extrinsics_path


# Cube poses (x, y, yaw) spread over the pick tasks' spawn area, all in the side camera's view.
POSES = [(0.32, -0.08, 0.2), (0.36, 0.0, -0.5), (0.42, 0.08, 0.7), (0.40, -0.05, 0.0), (0.34, 0.07, -0.3)]
