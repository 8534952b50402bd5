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
from typing import Protocol

import numpy as np
import torch
from jaxtyping import Float, Int64, UInt8
from PIL import Image
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
    problem = encoded_frame_problem(frame)
    if problem:
        raise SceneError(f"{where}: {problem}; the chunk was not written in the RE10K layout")
    return frame.numpy().tobytes()


def encoded_frame_problem(frame: object) -> str | None:
    """Why a stored chunk frame is not a 1-D uint8 tensor of encoded bytes (None when it is)."""
    if not isinstance(frame, Tensor):
        return f"stored image must be a 1-D uint8 tensor of JPEG/PNG bytes, got {type(frame).__name__}"
    if frame.dtype != torch.uint8 or frame.ndim != 1:
        return (
            "stored image must be a 1-D uint8 tensor of JPEG/PNG bytes, "
            f"got {frame.dtype} {tuple(frame.shape)} (decoded pixels?)"
        )
    return None


def _open_image(data: bytes, where: str) -> Image.Image:
    if not data:
        raise SceneError(f"{where}: the image is empty (0 bytes); re-download or re-extract it")
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise SceneError(
            f"{where}: the image is too large to decode safely ({error}); store the frames downscaled "
            "(e.g. a DL3DV images_4 folder, or ns-process-data --num-downscales)"
        ) from error
    except Exception as error:  # PIL raises many types on garbage input: all mean "not an image"
        raise SceneError(
            f"{where}: not a readable JPEG/PNG image ({type(error).__name__}: {error}); "
            "re-download or re-extract it"
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


def reduced_size(height: int, width: int, reduce: int) -> tuple[int, int]:
    """(height, width) of a frame decoded ``reduce`` times smaller (see :func:`decode_image`)."""
    return max(1, round(height / reduce)), max(1, round(width / reduce))


# PIL modes whose pixels are 16-bit integers (16-bit grayscale PNG/TIFF); "I" is 32-bit, which PIL
# also uses for 16-bit PNGs, so its values are checked against the 16-bit range.
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_FLOAT_TOLERANCE = 1e-3  # float images may overshoot [0, 1] by rounding; more is a range mistake


def _resamplable(image: Image.Image) -> Image.Image:
    """The image in a mode PIL can resample without losing bit depth or transparency."""
    if image.mode in _SIXTEEN_BIT_MODES:
        return image.convert("I")
    if image.mode in ("I", "F"):
        return image
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return image if image.mode == "RGBA" else image.convert("RGBA")
    return image if image.mode in ("RGB", "L") else image.convert("RGB")


def _rgb_pixels(
    image: Image.Image, where: str, background: tuple[float, float, float]
) -> Float[np.ndarray, "height width 3"] | UInt8[np.ndarray, "height width 3"]:
    """Pixels of a :func:`_resamplable` image as RGB: uint8 for 8-bit images without transparency
    (exactly as stored), float32 in [0, 1] otherwise.

    High bit depths are scaled by their own range (16-bit by 65535, float taken as [0, 1]);
    transparency is composited onto ``background`` as Nerfstudio's splatfacto does with its
    background colour (``rgb * alpha + background * (1 - alpha)``).
    """
    if image.mode == "I":
        levels = np.asarray(image).astype(np.float32)
        if levels.min() < 0 or levels.max() > 65535:
            raise SceneError(
                f"{where}: 32-bit integer pixels outside the 16-bit range ({levels.min():.0f}..{levels.max():.0f}); "
                "save the frames as 8- or 16-bit PNG/JPEG"
            )
        return np.repeat((levels / 65535.0)[..., None], 3, axis=-1)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise SceneError(
                f"{where}: the float image has {int((~np.isfinite(values)).sum())} NaN or infinite pixels; "
                "fix or re-export the frame"
            )
        if values.min() < -_FLOAT_TOLERANCE or values.max() > 1.0 + _FLOAT_TOLERANCE:
            raise SceneError(
                f"{where}: float pixels span {values.min():g}..{values.max():g}, expected [0, 1] "
                "(an HDR or 0-255 float image); tone-map or scale it to [0, 1], or save it as 8-bit"
            )
        return np.repeat(values.clip(0.0, 1.0)[..., None], 3, axis=-1)
    if image.mode == "RGBA":
        rgba = np.asarray(image, dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        return rgba[..., :3] * alpha + np.asarray(background, dtype=np.float32) * (1.0 - alpha)
    return np.asarray(image.convert("RGB"))


def decode_image(
    frame: EncodedFrame,
    where: str,
    *,
    expected_hw: tuple[int, int] | None = None,
    reduce: int = 1,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Float[Tensor, "3 height width"]:
    """Decode one frame to float32 RGB in [0, 1].

    8-bit images give their levels divided by 255, as the original does; 16-bit and float images
    and transparency are handled by :func:`_rgb_pixels`. ``expected_hw`` is checked from the header
    before decoding. ``reduce`` > 1 box-filters the image to :func:`reduced_size` while decoding, so
    a huge frame never exists as float pixels (the full extent maps onto the smaller image, so
    normalised intrinsics stay exact).
    """
    image = _open_image(_frame_bytes(frame, where), where)
    width, height = image.size
    if expected_hw is not None and (height, width) != tuple(expected_hw):
        raise SceneError(
            f"{where}: image is {width}x{height} (WxH) but the scene's frames are "
            f"{expected_hw[1]}x{expected_hw[0]}; all frames of a scene must share one size"
        )
    try:
        image.load()  # truncated or corrupt data surfaces here, not at open
        image = _resamplable(image)  # the modes _rgb_pixels reads
        if reduce > 1:
            out_h, out_w = reduced_size(height, width, reduce)
            image = image.resize((out_w, out_h), Image.Resampling.BOX)
        pixels = _rgb_pixels(image, where, background)
    except SceneError:
        raise
    except Exception as error:  # decoders raise many types on corrupt data: all mean "corrupt"
        raise SceneError(
            f"{where}: the image is corrupt ({type(error).__name__}: {error}); re-download or re-extract it"
        ) from error
    rgb = torch.from_numpy(np.array(pixels)).permute(2, 0, 1)  # a writable copy of PIL's buffer
    return rgb.float().div(255) if pixels.dtype == np.uint8 else rgb.float()


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

    def frame_problems(self) -> list[str]:
        """What is wrong with each frame, read from its header alone (nothing is decoded): files that
        are not images, and frames of another size than the scene's. Empty when all frames are fine."""
        problems = []
        for index, frame in enumerate(self.frames):
            where = self.frame_name(index)
            try:
                height, width = read_image_size(frame, where)
            except SceneError as error:
                problems.append(str(error))
                continue
            if (height, width) != (self.height, self.width):
                problems.append(
                    f"{where}: image is {width}x{height} (WxH) but the scene's frames are "
                    f"{self.width}x{self.height}; all frames of a scene must share one size"
                )
        return problems

    def load_images(
        self,
        indices: Sequence[int],
        *,
        reduce: int = 1,
        background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> Float[Tensor, "n 3 height width"]:
        """Decode the given frames to float32 RGB in [0, 1] (see :func:`decode_image`).

        ``reduce`` > 1 decodes every frame ``reduce`` times smaller (:func:`reduced_size`);
        transparent pixels are composited onto ``background``.
        """
        bad = [i for i in indices if not 0 <= i < self.num_frames]
        if bad:
            raise SceneError(
                f"scene {self.key!r} ({self.source}) has {self.num_frames} frames; "
                f"frame indices {bad[:10]} are out of range"
            )
        images = [
            decode_image(
                self.frames[index],
                self.frame_name(index),
                expected_hw=(self.height, self.width),
                reduce=reduce,
                background=background,
            )
            for index in indices
        ]
        if not images:
            return torch.zeros(0, 3, *reduced_size(self.height, self.width, reduce))
        return torch.stack(images)


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
