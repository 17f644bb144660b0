"""Images of a ChArUco board as a camera with known intrinsics, distortion and pose would see it.

The tests calibrate from these images and compare with the truth; anyone can do the same to check
a pipeline end to end. Rendering is inverse mapping: every output pixel is undistorted to a ray
(once per camera), the ray meets the board plane (a homography per pose), and the board texture is
sampled there. Rendering at twice the size and averaging down keeps edges anti-aliased.
"""

from __future__ import annotations

import cv2
import numpy as np

from calibration.board import BoardSpec
from calibration.geometry import make_pose

SUPERSAMPLE = 2
TEXTURE_PX_PER_SQUARE = 120


class BoardRenderer:
    def __init__(
        self,
        spec: BoardSpec,
        camera_matrix: np.ndarray,
        dist_coeffs: np.ndarray,
        image_size: tuple[int, int],
        background: int = 90,
    ) -> None:
        self.spec = spec
        self.camera_matrix = np.asarray(camera_matrix, float)
        self.dist_coeffs = np.asarray(dist_coeffs, float)
        self.image_size = image_size
        self.background = background
        margin = TEXTURE_PX_PER_SQUARE // 2  # white paper around the board
        self.texture = spec.image(TEXTURE_PX_PER_SQUARE, margin)
        # Board metres -> texture pixel coordinates (pixel centres are integers).
        scale = TEXTURE_PX_PER_SQUARE / spec.square_length_m
        self._board_to_texture = np.array([[scale, 0, margin - 0.5], [0, scale, margin - 0.5], [0, 0, 1]])
        self._rays = self._pixel_rays()

    def _pixel_rays(self) -> np.ndarray:
        """[3, H*W] undistorted normalised rays of the supersampled image's pixel centres."""
        width, height = (SUPERSAMPLE * s for s in self.image_size)
        k = self.camera_matrix.copy()
        k[:2] *= SUPERSAMPLE
        k[:2, 2] += (SUPERSAMPLE - 1) / 2  # pixel centres of the fine grid, in fine pixels
        u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
        pixels = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
        normalised = cv2.undistortPointsIter(pixels, k, self.dist_coeffs, None, None, criteria).reshape(-1, 2)
        return np.vstack([normalised.T, np.ones(len(normalised))]).astype(np.float32)

    def render(
        self,
        board_in_camera: np.ndarray,
        rng: np.random.Generator,
        noise_std: float = 2.0,
        blur_sigma: float = 0.0,
    ) -> np.ndarray:
        """8-bit grey image of the board at `board_in_camera` (4x4), with Gaussian pixel noise and blur."""
        homography = board_in_camera[:3][:, [0, 1, 3]]  # board (x, y, 1) -> camera ray
        mapping = (self._board_to_texture @ np.linalg.inv(homography)).astype(np.float32) @ self._rays
        in_front = mapping[2] > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            coords = np.where(in_front, mapping[:2] / mapping[2], -1e6)
        width, height = (SUPERSAMPLE * s for s in self.image_size)
        fine = cv2.remap(
            self.texture,
            coords[0].reshape(height, width).astype(np.float32),
            coords[1].reshape(height, width).astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=self.background,
        )
        image = cv2.resize(fine, self.image_size, interpolation=cv2.INTER_AREA).astype(np.float32)
        if blur_sigma > 0:
            image = cv2.GaussianBlur(image, (0, 0), blur_sigma)
        image += rng.normal(0.0, noise_std, image.shape).astype(np.float32)
        return np.clip(image, 0, 255).round().astype(np.uint8)


def random_board_pose(
    rng: np.random.Generator,
    spec: BoardSpec,
    camera_matrix: np.ndarray,
    image_size: tuple[int, int],
    distance_m: tuple[float, float] = (0.35, 0.6),
    max_tilt_deg: float = 35.0,
    max_roll_deg: float = 30.0,
) -> np.ndarray:
    """A board-in-camera pose (4x4) with the whole board inside the image: centre anywhere in the
    image, tilted up to `max_tilt_deg` about its x and y axes and rolled about its normal."""
    centre = np.array([*spec.size_m, 0.0]) / 2
    k_inv = np.linalg.inv(camera_matrix)
    for _ in range(1000):
        tilt_x, tilt_y = np.radians(rng.uniform(-max_tilt_deg, max_tilt_deg, 2))
        roll = np.radians(rng.uniform(-max_roll_deg, max_roll_deg))
        rotation = (
            cv2.Rodrigues(np.array([0.0, 0.0, roll]))[0]
            @ cv2.Rodrigues(np.array([tilt_x, 0.0, 0.0]))[0]
            @ cv2.Rodrigues(np.array([0.0, tilt_y, 0.0]))[0]
        )
        target = rng.uniform([0, 0], image_size)
        ray = k_inv @ np.array([*target, 1.0])
        position = ray / ray[2] * rng.uniform(*distance_m)
        pose = make_pose(rotation, position - rotation @ centre)
        if _board_inside(pose, spec, camera_matrix, image_size):
            return pose
    raise RuntimeError("no board pose fits the image; use a larger distance range")


def _board_inside(
    pose: np.ndarray, spec: BoardSpec, camera_matrix: np.ndarray, size: tuple[int, int]
) -> bool:
    width, height = spec.size_m
    margin = 0.5 * spec.square_length_m  # keep the white border in view too
    outline = np.array(
        [[x, y, 0.0, 1.0] for x in (-margin, width + margin) for y in (-margin, height + margin)]
    )
    camera = (pose @ outline.T)[:3]
    pixels = (camera_matrix @ camera)[:2] / camera[2]
    return bool(np.all(pixels >= 5) and np.all(pixels[0] <= size[0] - 5) and np.all(pixels[1] <= size[1] - 5))
