"""Episode files sent over a topic, chunk by chunk, and put back together on the other machine. No rclpy.

The recorder sends every finished episode as its file's bytes; the learner writes its own copy. The
file is the unit both sides already trust: complete (the recorder renames it into place only when
the episode has ended), compressed (images lzf in HDF5), and checked on arrival by the SHA-256 of
its bytes and by opening it as an episode. Sending steps instead would re-do the recorder's
synchronisation in the learner and double the DDS traffic while the robot records. A file of any
size goes as chunks of `chunk_bytes` (default 1 MiB: a 60 s two-camera episode is hundreds of MB,
too large for one DDS sample), each a packet:

    b"APSE" | header length (uint32, little-endian) | header (JSON) | payload

    header = {"format": "aps-episode-chunk/1", "transfer": "<sender>-<n>", "name": "episode_000003.h5",
              "index": i, "count": n, "size": <file bytes>, "sha256": <of the whole file>, "attrs": {...}}

`EpisodeAssembler` appends the payloads to a hidden file in its folder (nothing big sits in memory),
and when the last chunk has come, checks size, checksum and format, then renames the file into its
dataset under the next free name: a reader never sees half an episode. A transfer that is joined
mid-way, has a gap, or fails its checks is dropped with the reason, and the next one starts clean.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from policies.dataset_tools import episode_digest
from policies.episodes import EpisodeDataset, EpisodeFile, EpisodeFormatError

MAGIC = b"APSE"
CHUNK_FORMAT = "aps-episode-chunk/1"
DEFAULT_CHUNK_BYTES = 1 << 20
_LENGTH = struct.Struct("<I")


class TransferError(ValueError):
    """A chunk or a finished transfer that cannot become an episode file; the text says why."""


@dataclass
class Chunk:
    transfer: str
    name: str
    index: int
    count: int
    size: int
    sha256: str
    attrs: dict[str, Any]
    payload: bytes


def episode_chunks(
    path: str | Path, transfer: str, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[bytes]:
    """The packets of one episode file, in order. `transfer` names this sending (unique per sender)."""
    path = Path(path)
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    attrs = EpisodeFile(path).attrs  # a file that is no episode is not sent
    size, sha256 = path.stat().st_size, episode_digest(path)
    count = max(1, -(-size // chunk_bytes))
    with open(path, "rb") as handle:
        for index in range(count):
            header = {
                "format": CHUNK_FORMAT, "transfer": transfer, "name": path.name, "index": index,
                "count": count, "size": size, "sha256": sha256, "attrs": attrs if index == 0 else {},
            }  # fmt: skip
            encoded = json.dumps(header).encode()
            yield MAGIC + _LENGTH.pack(len(encoded)) + encoded + handle.read(chunk_bytes)


def parse_chunk(packet: bytes) -> Chunk:
    if packet[:4] != MAGIC or len(packet) < 8:
        raise TransferError("not an episode chunk (no APSE magic): publish with robot_nodes.episode_transfer")
    (length,) = _LENGTH.unpack_from(packet, 4)
    try:
        header = json.loads(packet[8 : 8 + length])
        if header.get("format") != CHUNK_FORMAT:
            raise TransferError(f"chunk format {header.get('format')!r}, this code reads {CHUNK_FORMAT!r}")
        chunk = Chunk(
            str(header["transfer"]), str(header["name"]), int(header["index"]), int(header["count"]),
            int(header["size"]), str(header["sha256"]), dict(header["attrs"]), packet[8 + length :],
        )  # fmt: skip
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        if isinstance(err, TransferError):
            raise
        raise TransferError(f"malformed chunk header ({err})") from err
    if not 0 <= chunk.index < chunk.count or chunk.size < 0:
        raise TransferError(f"chunk {chunk.index} of {chunk.count} (size {chunk.size}) is out of range")
    return chunk


class EpisodeAssembler:
    """Chunks in, episode files out, in the dataset folder `root` (an `EpisodeDataset`). Problems (a
    transfer joined mid-way, a gap, a failed check) go to `warn`, one line per dropped transfer."""

    def __init__(self, root: str | Path, warn: Callable[[str], None]) -> None:
        self.dataset = EpisodeDataset(root)
        self.dataset.root.mkdir(parents=True, exist_ok=True)
        self.warn = warn
        self.partial = self.dataset.root / ".incoming.part"
        self.partial.unlink(missing_ok=True)  # left by a crash: its transfer is gone
        self.current: Chunk | None = None  # the first chunk of the transfer being assembled
        self.received = 0  # chunks of it so far
        self.digest = hashlib.sha256()
        self.handle: BinaryIO | None = None
        self.skipping = ""  # a transfer already reported as dropped: its later chunks pass quietly

    def add(self, packet: bytes) -> Path | None:
        """Take one packet; the episode's path once its last chunk is in and checked, else None."""
        try:
            chunk = parse_chunk(packet)
        except TransferError as err:
            self.warn(str(err))
            return None
        if chunk.index == 0:
            if self.current is not None:
                self.warn(
                    f"{self.current.name} of transfer {self.current.transfer} stopped after "
                    f"{self.received} of {self.current.count} chunks (its sender restarted?): dropped"
                )
                self._drop()
            self._start(chunk)
        elif self.current is None or chunk.transfer != self.current.transfer or chunk.index != self.received:
            if chunk.transfer != self.skipping:
                due = "a first chunk" if self.current is None else f"chunk {self.received}"
                self.warn(
                    f"chunk {chunk.index} of {chunk.count} of {chunk.name} (transfer {chunk.transfer}) "
                    f"came when {due} was due (joined mid-transfer, or chunks lost): that episode is dropped"
                )
            self.skipping = chunk.transfer
            if self.current is not None and self.current.transfer == chunk.transfer:
                self._drop()
            return None
        assert self.handle is not None
        self.handle.write(chunk.payload)
        self.digest.update(chunk.payload)
        self.received += 1
        if self.received < chunk.count:
            return None
        try:
            return self._finish()
        except TransferError as err:
            self.warn(str(err))
            return None

    def _start(self, chunk: Chunk) -> None:
        self.current, self.received, self.digest = chunk, 0, hashlib.sha256()
        self.handle = open(self.partial, "wb")  # noqa: SIM115 (closed in _finish or _drop)

    def _finish(self) -> Path:
        assert self.current is not None and self.handle is not None
        first, digest = self.current, self.digest.hexdigest()
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        self.handle, self.current = None, None
        size = self.partial.stat().st_size
        try:
            if size != first.size or digest != first.sha256:
                raise TransferError(
                    f"{first.name} (transfer {first.transfer}): {size} bytes with SHA-256 {digest[:12]}, the "
                    f"sender sent {first.size} bytes with {first.sha256[:12]}: dropped"
                )
            try:
                EpisodeFile(self.partial)
            except EpisodeFormatError as err:
                message = f"{first.name} (transfer {first.transfer}) is no episode ({err})"
                raise TransferError(message) from err
            path = self.dataset.next_path()
            os.replace(self.partial, path)
        finally:
            self.partial.unlink(missing_ok=True)
        return self.dataset.added(path)

    def _drop(self) -> None:
        if self.handle is not None:
            self.handle.close()
        self.handle, self.current, self.received = None, None, 0
        self.partial.unlink(missing_ok=True)

    def close(self) -> None:
        self._drop()
