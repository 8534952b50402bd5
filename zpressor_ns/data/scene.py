"""What every scene reader returns: cameras up front, images decoded only when asked for.

A :class:`Scene` holds the cameras of all frames (small) and, per frame, where its encoded image
lives: a uint8 tensor of JPEG/PNG bytes (the chunk formats) or a file path (folder formats). Decoding
happens in :meth:`Scene.load_images`, so a sampler can pick 20 frames of a 300-frame scene and only
those 20 are decoded.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from jaxtyping import Float, Int64
from PIL import Image, UnidentifiedImageError
from torch import Tensor


class SceneError(ValueError):
    """A scene that cannot be used; the message names the file or scene and what to do about it."""


# Encoded image bytes (chunk formats) or an image file (folder formats).
EncodedFrame = Tensor | Path


def _frame_bytes(frame: EncodedFrame, where: str) -> bytes:
    if isinstance(frame, Path):
        try:
            return frame.read_bytes()
        except OSError as error:
            raise SceneError(
                f"{where}: cannot read image file {frame} ({error}); restore the file"
            ) from error
    if frame.dtype != torch.uint8 or frame.ndim != 1:
        raise SceneError(
            f"{where}: stored image must be a 1-D uint8 tensor of JPEG/PNG bytes, "
            f"got {frame.dtype} {tuple(frame.shape)}; the chunk was not written in the RE10K layout"
        )
    return frame.numpy().tobytes()


def _open_image(data: bytes, where: str) -> Image.Image:
    if not data:
        raise SceneError(f"{where}: the image is empty (0 bytes); re-download or re-extract it")
    try:
        return Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError) as error:
        raise SceneError(
            f"{where}: not a readable JPEG/PNG image ({error}); re-download or re-extract it"
        ) from error


def read_json_file(path: Path) -> object:
    """Parse a JSON file, turning every failure into a :class:`SceneError` that names it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise SceneError(f"{path} does not exist; restore or regenerate it") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SceneError(
            f"{path}: cannot read the JSON file ({error}); regenerate or re-download it"
        ) from error


def read_image_size(frame: EncodedFrame, where: str) -> tuple[int, int]:
    """(height, width) of an encoded image from its header alone (nothing is decoded)."""
    width, height = _open_image(_frame_bytes(frame, where), where).size
    if width <= 0 or height <= 0:
        raise SceneError(f"{where}: the image has zero size ({width}x{height}); re-export it")
    return height, width


def decode_image(frame: EncodedFrame, where: str) -> Float[Tensor, "3 height width"]:
    """Decode one frame to float32 RGB in [0, 1] (uint8 levels divided by 255, as the original does)."""
    image = _open_image(_frame_bytes(frame, where), where)
    try:
        image.load()  # truncated or corrupt data surfaces here, not at open
        rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as error:
        raise SceneError(f"{where}: the image is corrupt ({error}); re-download or re-extract it") from error
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255)


@dataclass
class Scene:
    """One scene: cameras of every frame (eager) and its encoded frames (decoded lazily)."""

    key: str
    c2w: Float[Tensor, "frame 4 4"]  # OpenCV camera-to-world, float32, sanitised
    K: Float[Tensor, "frame 3 3"]  # normalised intrinsics
    timestamps: Int64[Tensor, " frame"]
    height: int  # image size of the frames as stored
    width: int
    source: str  # the file or folder the scene came from, for messages
    frames: Sequence[EncodedFrame]

    def __post_init__(self) -> None:
        n = len(self.frames)
        if n == 0:
            raise SceneError(f"scene {self.key!r} in {self.source} has no frames; drop it from the dataset")
        shapes = {"c2w": (n, 4, 4), "K": (n, 3, 3), "timestamps": (n,)}
        for name, shape in shapes.items():
            if tuple(getattr(self, name).shape) != shape:
                raise SceneError(
                    f"scene {self.key!r} in {self.source}: {name} has shape "
                    f"{tuple(getattr(self, name).shape)}, expected {shape} for {n} frames"
                )

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def frame_name(self, index: int) -> str:
        """How messages name a frame: scene, frame number and, for files, the path."""
        frame = self.frames[index]
        where = f"scene {self.key!r} frame {index}"
        return f"{where} ({frame})" if isinstance(frame, Path) else f"{where} (in {self.source})"

    def load_images(self, indices: Sequence[int]) -> Float[Tensor, "n 3 height width"]:
        """Decode the given frames to float32 RGB in [0, 1]."""
        bad = [i for i in indices if not 0 <= i < self.num_frames]
        if bad:
            raise SceneError(
                f"scene {self.key!r} ({self.source}) has {self.num_frames} frames; "
                f"frame indices {bad[:10]} are out of range"
            )
        images = []
        for index in indices:
            image = decode_image(self.frames[index], self.frame_name(index))
            if tuple(image.shape[1:]) != (self.height, self.width):
                raise SceneError(
                    f"{self.frame_name(index)}: image is {image.shape[2]}x{image.shape[1]} (WxH) but the "
                    f"scene's frames are {self.width}x{self.height}; all frames of a scene must share one size"
                )
            images.append(image)
        if not images:
            return torch.zeros(0, 3, self.height, self.width)
        return torch.stack(images)


@runtime_checkable
class SceneReader(Protocol):
    """A dataset on disk: scene keys in a stable order, and each scene on demand."""

    layout: str

    def keys(self) -> list[str]:
        """Scene keys in a stable order (sorted by storage file, then key; see each reader)."""
        ...

    def scene(self, key: str) -> Scene:
        """Load one scene's cameras; raises :class:`SceneError` naming the file and the fix."""
        ...


def field_of_view_deg(K: Float[Tensor, "*batch 3 3"]) -> Float[Tensor, "*batch 2"]:
    """Horizontal and vertical field of view in degrees of normalised intrinsics (any principal point)."""
    fx, fy = K[..., 0, 0], K[..., 1, 1]
    cx, cy = K[..., 0, 2], K[..., 1, 2]
    fov_x = torch.atan(cx / fx) + torch.atan((1 - cx) / fx)
    fov_y = torch.atan(cy / fy) + torch.atan((1 - cy) / fy)
    return torch.stack([fov_x, fov_y], dim=-1) * (180.0 / math.pi)
