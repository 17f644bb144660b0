"""ChArUco boards: the spec (YAML through `apsconfig`), printable PNG/PDF, and detection.

Board frame (OpenCV >= 4.6 convention): origin at the top-left chessboard corner of the printed
board, x to the right, y down, z into the board (away from a camera that sees its front).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from apsconfig import save_config

MM_PER_INCH = 25.4
PAPER_MM = {"A4": (210.0, 297.0), "letter": (215.9, 279.4)}


@dataclass
class BoardSpec:
    """What was printed. Measure `square_length_m` on the print: its scale error becomes a translation
    error of the same proportion in hand-eye (intrinsics do not depend on it)."""

    squares_x: int = 9  # chessboard squares along the board's width
    squares_y: int = 6  # chessboard squares along the board's height
    square_length_m: float = 0.03  # side of one square, measured on the print
    marker_length_m: float = 0.022  # side of one ArUco marker, measured on the print
    dictionary: str = "DICT_5X5_100"  # any cv2.aruco.DICT_* name
    legacy_pattern: bool = False  # True for boards made by OpenCV < 4.6 with an even number of rows

    def __post_init__(self) -> None:
        if min(self.squares_x, self.squares_y) < 3:
            raise ValueError(f"a board needs >= 3x3 squares, got {self.squares_x}x{self.squares_y}")
        if not 0 < self.marker_length_m < self.square_length_m:
            raise ValueError(
                f"marker_length_m ({self.marker_length_m}) must lie in (0, square_length_m = "
                f"{self.square_length_m})"
            )
        if not self.dictionary.startswith("DICT_") or not hasattr(cv2.aruco, self.dictionary):
            raise ValueError(f"unknown ArUco dictionary {self.dictionary!r}; use a cv2.aruco.DICT_* name")
        markers = self.squares_x * self.squares_y // 2
        available = len(cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary)).bytesList)
        if markers > available:
            raise ValueError(f"{self.dictionary} has {available} markers, the board needs {markers}")

    @property
    def corner_count(self) -> int:
        """Inner chessboard corners, the points ChArUco detection returns."""
        return (self.squares_x - 1) * (self.squares_y - 1)

    @property
    def size_m(self) -> tuple[float, float]:
        return self.squares_x * self.square_length_m, self.squares_y * self.square_length_m

    def describe(self) -> str:
        return (
            f"{self.squares_x}x{self.squares_y} squares of {self.square_length_m * 1000:g} mm, markers "
            f"{self.marker_length_m * 1000:g} mm, {self.dictionary}"
        )

    def cv_board(self) -> cv2.aruco.CharucoBoard:
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        board = cv2.aruco.CharucoBoard(
            (self.squares_x, self.squares_y), self.square_length_m, self.marker_length_m, dictionary
        )
        board.setLegacyPattern(self.legacy_pattern)
        return board

    def image(self, pixels_per_square: int, margin_px: int) -> np.ndarray:
        """The board as an 8-bit image: exactly `pixels_per_square` per square, white margin around."""
        size = (
            self.squares_x * pixels_per_square + 2 * margin_px,
            self.squares_y * pixels_per_square + 2 * margin_px,
        )
        return self.cv_board().generateImage(size, marginSize=margin_px, borderBits=1)


@dataclass
class PageConfig:
    """How `aps-calibrate board` lays the board out for printing."""

    dpi: int = 300  # of the PNG, about (rounded so a square is whole pixels); the PDF is exact
    paper: Literal["A4", "letter", "fit"] = "A4"  # "fit": a page just the board plus margins
    margin_mm: float = 10.0  # white margin around the board on the page

    def __post_init__(self) -> None:
        if not 72 <= self.dpi <= 1200:
            raise ValueError(f"dpi must lie in [72, 1200], got {self.dpi}")
        if self.margin_mm < 0:
            raise ValueError(f"margin_mm must be >= 0, got {self.margin_mm}")


def write_board(spec: BoardSpec, page: PageConfig, stem: Path) -> list[Path]:
    """Write `stem`.png (at `page.dpi`, one square margin), `stem`.pdf (exact physical size) and
    `stem`.yaml (the spec, for `intrinsics` and `handeye`). Returns the three paths."""
    width_mm, height_mm = (1000 * s for s in spec.size_m)
    page_mm = _page_size_mm(width_mm, height_mm, page)
    pixels_per_square = round(spec.square_length_m * 1000 / MM_PER_INCH * page.dpi)
    # The stated resolution is the one that makes a whole number of pixels exactly one square long.
    png = _png_with_resolution(
        spec.image(pixels_per_square, margin_px=pixels_per_square), pixels_per_square / spec.square_length_m
    )
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf"), stem.with_suffix(".yaml")]
    paths[0].write_bytes(png)
    _write_pdf(paths[1], spec, page_mm, (width_mm, height_mm))
    save_config(spec, paths[2])
    return paths


def _page_size_mm(width_mm: float, height_mm: float, page: PageConfig) -> tuple[float, float]:
    need = (width_mm + 2 * page.margin_mm, height_mm + 2 * page.margin_mm)
    if page.paper == "fit":
        return need[0], need[1] + 8  # room for the caption
    short, long = PAPER_MM[page.paper]
    for candidate in ((short, long), (long, short)):  # portrait, then landscape
        if need[0] <= candidate[0] and need[1] <= candidate[1]:
            return candidate
    raise ValueError(
        f"a {width_mm:.0f} x {height_mm:.0f} mm board does not fit {page.paper} with {page.margin_mm:g} mm "
        "margins; use smaller squares, fewer squares, or page.paper=fit"
    )


def _write_pdf(
    path: Path, spec: BoardSpec, page_mm: tuple[float, float], board_mm: tuple[float, float]
) -> None:
    from reportlab.lib.units import mm
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    # 20 px per mm: edges land within 0.05 mm of where they belong, whatever the printer's resolution.
    pixels_per_square = round(spec.square_length_m * 1000 * 20)
    ok, encoded = cv2.imencode(".png", spec.image(pixels_per_square, margin_px=0))
    assert ok, "OpenCV failed to encode the board as PNG"
    # Uncompressed page content: the placement and size of the board can be read in the file itself.
    pdf = canvas.Canvas(str(path), pagesize=(page_mm[0] * mm, page_mm[1] * mm), pageCompression=0)
    x0, y0 = (page_mm[0] - board_mm[0]) / 2, (page_mm[1] - board_mm[1]) / 2
    pdf.drawImage(
        ImageReader(io.BytesIO(encoded.tobytes())), x0 * mm, y0 * mm, board_mm[0] * mm, board_mm[1] * mm
    )
    pdf.setFont("Helvetica", 7)
    pdf.drawString(
        x0 * mm,
        (y0 - 5) * mm,
        f"ChArUco {spec.describe()}. Print at 100% (no 'fit to page'), then measure a square.",
    )
    pdf.setTitle(f"ChArUco board {spec.describe()}")
    pdf.save()


def _png_with_resolution(image: np.ndarray, pixels_per_metre: float) -> bytes:
    """PNG bytes with a pHYs chunk, so image viewers and print dialogs know the physical size."""
    ok, encoded = cv2.imencode(".png", image)
    assert ok, "OpenCV failed to encode the board as PNG"
    data = encoded.tobytes()
    per_metre = round(pixels_per_metre)
    body = b"pHYs" + struct.pack(">IIB", per_metre, per_metre, 1)
    chunk = struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body))
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    return data[:end_of_ihdr] + chunk + data[end_of_ihdr:]


@dataclass
class BoardDetection:
    """ChArUco corners found in one image."""

    ids: np.ndarray  # [N] corner ids
    object_points: np.ndarray  # [N, 3] float32, board frame, metres
    image_points: np.ndarray  # [N, 2] float32, pixels
    markers: int  # ArUco markers found (corners are interpolated from them)

    def __len__(self) -> int:
        return len(self.ids)


class BoardDetector:
    """OpenCV >= 4.7 `CharucoDetector` for one board spec, with sub-pixel corner refinement."""

    def __init__(self, spec: BoardSpec) -> None:
        self.spec = spec
        self.board = spec.cv_board()
        self._detector = cv2.aruco.CharucoDetector(self.board)

    def detect(self, image: np.ndarray) -> BoardDetection:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        corners, ids, markers, _ = self._detector.detectBoard(gray)
        found = 0 if markers is None else len(markers)
        if ids is None or len(ids) == 0:
            empty = np.zeros((0, 3), np.float32)
            return BoardDetection(np.zeros(0, int), empty, empty[:, :2], found)
        object_points, image_points = self.board.matchImagePoints(corners, ids)
        return BoardDetection(
            ids.reshape(-1).astype(int), object_points.reshape(-1, 3), image_points.reshape(-1, 2), found
        )

    def collinear(self, detection: BoardDetection) -> bool:
        """True when all corners lie on one board row or column: no pose or homography from them."""
        return bool(self.board.checkCharucoCornersCollinear(detection.ids.reshape(-1, 1)))
