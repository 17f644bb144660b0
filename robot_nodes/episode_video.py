"""Episode images to video (PyAV) and image strips, for `aps-dataset view` and the LeRobot export.

    with VideoEncoder("ep.mp4", fps=10, width=64, height=32) as video:
        video.add(frame)                                      # HxWx3 uint8 RGB
    frames = decode_video("ep.mp4")                           # [N, H, W, 3] uint8
    write_episode_video(episode, "ep.mp4")                    # every camera of an episode, side by side

Videos are yuv420p (what players and LeRobot's decoders expect): libx264 (h264) plays everywhere,
libsvtav1 (AV1) is LeRobot's default and about half the size.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np

from policies.episodes import Episode

CODECS = {"h264": "libx264", "av1": "libsvtav1"}


class VideoEncoder:
    def __init__(
        self,
        path: str | Path,
        fps: float,
        width: int,
        height: int,
        codec: str = "h264",
        crf: int = 30,
        gop: int = 2,
    ) -> None:
        import av

        if codec not in CODECS:
            raise ValueError(f"video codec {codec!r}: use one of {sorted(CODECS)}")
        if width % 2 or height % 2:
            raise ValueError(f"yuv420p video needs an even width and height, got {width}x{height}")
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration otherwise
        self.path = Path(path)
        self.container = av.open(str(self.path), "w")
        rate = Fraction(fps).limit_denominator(1001)
        options = {"crf": str(crf), "g": str(gop)} | ({"preset": "10"} if codec == "av1" else {})
        self.stream = self.container.add_stream(CODECS[codec], rate=rate, options=options)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.frames = 0
        self.bytes = 0  # of the packets muxed so far (the file appears once the encoder emits any)

    def add(self, frame: np.ndarray) -> None:
        import av

        expected = (self.stream.height, self.stream.width, 3)
        if frame.shape != expected or frame.dtype != np.uint8:
            raise ValueError(
                f"video frame must be uint8{list(expected)}, got {frame.dtype}{list(frame.shape)}"
            )
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.frames
        self._mux(self.stream.encode(video_frame))
        self.frames += 1

    def _mux(self, packets: list) -> None:
        for packet in packets:
            self.bytes += packet.size
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is not None:
            self._mux(self.stream.encode())
            self.container.close()
            self.container = None

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, kind: type | None, value: BaseException | None, trace: TracebackType | None) -> None:
        self.close()
        if kind is not None:
            self.path.unlink(missing_ok=True)


def decode_video(path: str | Path) -> np.ndarray:
    """Every frame of a video's first stream as [N, H, W, 3] uint8 RGB."""
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def side_by_side(images: list[np.ndarray], height: int | None = None) -> np.ndarray:
    """Camera images left to right at one height (the tallest, or `height`), padded to even sizes
    for yuv420p video. Grey images become RGB."""
    import cv2

    height = height or max(image.shape[0] for image in images)
    scaled = []
    for image in images:
        image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
        width = max(1, round(image.shape[1] * height / image.shape[0]))
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
        scaled.append(image)
    joined = np.concatenate(scaled, axis=1)
    return np.pad(joined, ((0, joined.shape[0] % 2), (0, joined.shape[1] % 2), (0, 0)))


def episode_cameras(episode: Episode) -> list[tuple[str, str]]:
    """(part, key) of every camera an episode holds, onboard first (a third-person view is privileged)."""
    return [
        (part, key) for part in ("onboard", "privileged")
        for key, value in getattr(episode, part).items() if value.dtype == np.uint8 and value.ndim == 4
    ]  # fmt: skip


def episode_frame(episode: Episode, step: int, height: int | None = None) -> np.ndarray:
    """The episode's cameras at `step`, side by side."""
    return side_by_side([getattr(episode, part)[key][step] for part, key in episode_cameras(episode)], height)


def write_episode_video(
    episode: Episode, path: str | Path, fps: float = 0.0, codec: str = "h264", height: int | None = None
) -> Path:
    """Every observation of `episode`, its cameras side by side, as a video at the episode's fps (or
    `fps`); written under a hidden name and renamed when complete, so a crash leaves no half video."""
    if not episode_cameras(episode):
        raise ValueError("the episode has no camera images to make a video of")
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp{path.suffix}")
    first = episode_frame(episode, 0, height)
    with VideoEncoder(
        temporary, fps or float(episode.attrs.get("fps", 10.0)), first.shape[1], first.shape[0], codec
    ) as video:
        for step in range(len(episode) + 1):
            video.add(episode_frame(episode, step, height))
    os.replace(temporary, path)
    return path
