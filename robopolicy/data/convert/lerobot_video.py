"""LeRobot's camera videos: decode frames from an mp4, encode frames into one, measure PSNR.

Both directions go through ``imageio-ffmpeg`` (already a dependency: it ships an ffmpeg binary
with the AV1 encoder ``libsvtav1`` and decoder ``libdav1d`` that LeRobot's videos need), piping
raw RGB frames in and out, so no other video library is needed.

Decoding seeks to the first frame wanted by time: LeRobot addresses a frame by its timestamp in
the file (``from_timestamp`` of the episode's segment, which is 0 for v2.x's one file per episode,
plus the frame's ``timestamp``); frame ``k`` of a constant-rate file sits at ``k / fps``. ffmpeg's
input seek is frame-accurate when transcoding (it decodes from the previous key frame and drops
frames before the target), and we seek half a frame early so a timestamp rounded down still
lands on its frame.

Encoding uses LeRobot's defaults (``VideoSettings``), so exported videos decode in LeRobot as
the ones it records do. The codec is lossy: ``psnr`` measures how far the decoded frames are
from the frames given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from robopolicy.data.errors import DatasetError


@dataclass(frozen=True)
class VideoSettings:
    """How exported camera streams are encoded (LeRobot 0.3's own defaults for recording)."""

    codec: str = "libsvtav1"  # AV1, what LeRobot records with; h264 (libx264) also opens there
    pix_fmt: str = "yuv420p"  # 4:2:0 chroma: what LeRobot and most decoders expect
    gop: int = 2  # a key frame every 2 frames: cheap random access, as LeRobot sets it
    crf: int = 30  # constant-quality factor (lower: better and larger); LeRobot uses 30


def _frame_size(meta: dict, path: Path) -> tuple[int, int]:
    width, height = meta.get("size", (0, 0))
    if not width or not height:
        raise DatasetError(path, "ffmpeg found no video stream")
    return int(height), int(width)


def decode_frames(
    path: Path, start_time: float, n_frames: int, fps: float, shape: tuple[int, ...], key: str
) -> np.ndarray:
    """``n_frames`` consecutive RGB frames ``(n, H, W, 3)`` uint8 from ``start_time`` seconds.

    Raises ``DatasetError`` naming the file and the feature when the file is missing or does not
    decode, when its frame size is not ``shape`` (the feature's ``(H, W, 3)``), or when it holds
    fewer frames than asked for.
    """
    if not path.is_file():
        raise DatasetError(path, f"no such video file (feature {key})")
    seek = max(0.0, start_time - 0.5 / fps)
    reader = imageio_ffmpeg.read_frames(
        str(path),
        pix_fmt="rgb24",
        input_params=["-ss", f"{seek:.6f}"],
        output_params=["-fps_mode", "passthrough"],
    )
    frames = []
    try:
        height, width = _frame_size(next(reader), path)
        if (height, width, 3) != tuple(shape):
            raise DatasetError(
                path, f"frames are {height}x{width}x3, info.json says {list(shape)}", key
            )
        for raw in reader:
            frames.append(np.frombuffer(raw, np.uint8).reshape(height, width, 3))
            if len(frames) == n_frames:
                break
    except (OSError, RuntimeError, StopIteration) as error:
        raise DatasetError(path, f"cannot decode ({error})".replace("\n", " "), key) from None
    finally:
        reader.close()
    if len(frames) < n_frames:
        raise DatasetError(
            path,
            f"holds {len(frames)} frames from {start_time:.3f} s, the episode needs {n_frames}",
            key,
        )
    return np.stack(frames)


class VideoEncoder:
    """An ffmpeg process encoding frames into one mp4, fed episode by episode (v3.0 puts many
    episodes in one file); ``n_frames`` counts what it was given, so the next episode's segment
    starts at ``n_frames / fps``."""

    def __init__(self, path: Path, height: int, width: int, fps: float, settings: VideoSettings):
        self.path = path
        self.n_frames = 0
        self._writer = imageio_ffmpeg.write_frames(
            str(path),
            (width, height),
            fps=fps,
            codec=settings.codec,
            pix_fmt_in="rgb24",
            pix_fmt_out=settings.pix_fmt,
            quality=None,
            macro_block_size=1,  # never rescale: the frame size is part of the feature
            ffmpeg_log_level="error",
            output_params=["-g", str(settings.gop), "-crf", str(settings.crf)],
        )
        self._writer.send(None)  # start ffmpeg

    def add(self, frames: np.ndarray) -> None:
        for frame in frames:
            self._writer.send(np.ascontiguousarray(frame))
        self.n_frames += len(frames)

    def close(self) -> None:
        self._writer.close()


def encode_frames(path: Path, frames: np.ndarray, fps: float, settings: VideoSettings) -> None:
    """Write ``frames`` ``(n, H, W, 3)`` uint8 as an mp4 at ``fps`` (even H and W for 4:2:0)."""
    encoder = VideoEncoder(path, frames.shape[1], frames.shape[2], fps, settings)
    encoder.add(frames)
    encoder.close()


@dataclass
class PSNR:
    """Peak signal-to-noise ratio of decoded frames against the originals, accumulated."""

    squared_error: float = 0.0
    n_values: int = 0
    worst_frame_db: float = math.inf

    def add(self, original: np.ndarray, decoded: np.ndarray) -> None:
        diff = original.astype(np.float64) - decoded.astype(np.float64)
        per_frame = (diff**2).reshape(len(diff), -1).mean(axis=1)
        self.squared_error += float((diff**2).sum())
        self.n_values += diff.size
        self.worst_frame_db = min(self.worst_frame_db, _db(float(per_frame.max())))

    @property
    def db(self) -> float:
        """PSNR over every pixel added so far (inf when identical)."""
        return _db(self.squared_error / max(1, self.n_values))


def _db(mse: float) -> float:
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
