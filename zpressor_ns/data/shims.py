"""Pure functions that bring an example to the training resolution and augment it.

Resolution: scale so the image covers the output (``s = max(h_out/h, w_out/w)``), resize to
``(round(h s), round(w s))``, then centre-crop (``row = (h_s - h_out) // 2``, ``col = (w_s - w_out) // 2``),
as the original crop shim does. The original updates only fx and fy, which is exact when the principal
point is centred and the crop margin even; here all entries of K follow the crop, so an odd margin
shifts cx/cy by half a pixel, which is where the principal point really lands.

Resampling: the original resizes with PIL's LANCZOS filter on uint8 images. ``"pil_lanczos"`` does
exactly that (use it to evaluate against published numbers); the default ``"bicubic"`` is torch's
antialiased bicubic filter, which runs batched and on any device and differs by a few uint8 levels.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from PIL import Image
from torch import Tensor

from zpressor_ns.types import Example, ViewSet

ResizeMode = Literal["bicubic", "bilinear", "pil_lanczos"]

# A frame decoded smaller (see decode_reduction) stays at least this many times the size it is
# resized to, so the antialiased resize below still sees every detail it keeps.
DECODE_HEADROOM = 2


def decode_reduction(stored_hw: tuple[int, int], out_hw: tuple[int, int]) -> int:
    """Integer factor by which frames of ``stored_hw`` may be decoded smaller before
    :func:`rescale_and_crop` brings them to ``out_hw``: 1 (full size) unless they are at least
    ``2 * DECODE_HEADROOM`` times larger than needed, so usual sizes (RE10K 360x640, DL3DV 540x960
    to 256x448) decode exactly as before and only huge frames (e.g. 8000x8000) are reduced.
    """
    scale = max(out_hw[0] / stored_hw[0], out_hw[1] / stored_hw[1])
    return max(1, int(1.0 / (scale * DECODE_HEADROOM)))


def _resize_pil_lanczos(
    images: Float[Tensor, "n 3 h w"], size: tuple[int, int]
) -> Float[Tensor, "n 3 hs ws"]:
    levels = (images * 255).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    resized = [
        np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.LANCZOS)) for image in levels
    ]
    out = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).to(images.dtype) / 255
    return out.to(images.device)


def resize_images(
    images: Float[Tensor, "*batch 3 h w"], size: tuple[int, int], mode: ResizeMode = "bicubic"
) -> Float[Tensor, "*batch 3 h_new w_new"]:
    """Antialiased resize to ``size`` = (height, width); values stay in [0, 1]."""
    *batch, channels, height, width = images.shape
    if (height, width) == tuple(size):
        return images
    flat = images.reshape(-1, channels, height, width)
    if mode == "pil_lanczos":
        out = _resize_pil_lanczos(flat, size)
    elif mode in ("bicubic", "bilinear"):
        out = F.interpolate(flat, size=size, mode=mode, align_corners=False, antialias=True).clamp(0, 1)
    else:
        raise ValueError(f"unknown resize mode {mode!r}; choose bicubic, bilinear or pil_lanczos")
    return out.reshape(*batch, channels, *size)


def rescale_and_crop(
    images: Float[Tensor, "*batch 3 h w"],
    K: Float[Tensor, "*batch 3 3"],
    out_hw: tuple[int, int],
    mode: ResizeMode = "bicubic",
) -> tuple[Float[Tensor, "*batch 3 h_out w_out"], Float[Tensor, "*batch 3 3"]]:
    """Resize to cover ``out_hw`` and centre-crop to it; normalised K follows the crop exactly."""
    height, width = images.shape[-2:]
    out_h, out_w = out_hw
    if min(height, width, out_h, out_w) <= 0:
        raise ValueError(f"cannot rescale {height}x{width} images to {out_h}x{out_w}")
    scale = max(out_h / height, out_w / width)
    scaled_h, scaled_w = round(height * scale), round(width * scale)
    resized = resize_images(images, (scaled_h, scaled_w), mode)
    row, col = (scaled_h - out_h) // 2, (scaled_w - out_w) // 2
    cropped = resized[..., row : row + out_h, col : col + out_w]

    # Normalised coordinates of the scaled image -> pixels -> shifted by the crop -> normalised again.
    crop = torch.tensor(
        [[scaled_w / out_w, 0.0, -col / out_w], [0.0, scaled_h / out_h, -row / out_h], [0.0, 0.0, 1.0]],
        dtype=K.dtype,
        device=K.device,
    )
    return cropped, crop @ K


def oriented_shape(shape: tuple[int, int], frame_hw: tuple[int, int]) -> tuple[int, int]:
    """``shape`` = (height, width) turned to the orientation of frames of size ``frame_hw``.

    A landscape shape on portrait frames (or the reverse) would centre-crop a strip of a third of the
    frame or less (64x128 of 1920x1080 portrait frames keeps 28% of their height); turned, the whole
    frame is seen. Square shapes or frames keep ``shape``.
    """
    height, width = shape
    frame_height, frame_width = frame_hw
    if height == width or frame_height == frame_width or (height > width) == (frame_height > frame_width):
        return height, width
    return width, height


def flip_views(views: ViewSet) -> ViewSet:
    """Mirror a view set left-right: images, cameras (world x mirrored too) and intrinsics."""
    mirror = torch.diag(
        torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=views["c2w"].dtype, device=views["c2w"].device)
    )
    # In the mirrored image u' = 1 - u, and the camera's x axis is reversed: K' = A K diag(-1, 1, 1).
    flip_u = torch.tensor(
        [[-1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=views["K"].dtype, device=views["K"].device
    )
    return {
        **views,
        "image": views["image"].flip(-1),
        "c2w": mirror @ views["c2w"] @ mirror,
        "K": flip_u @ views["K"] @ mirror[:3, :3].to(views["K"].dtype),
    }


def random_flip(example: Example, rng: torch.Generator) -> Example:
    """With probability 1/2, mirror all context and target views (training augmentation)."""
    if torch.rand((), generator=rng) < 0.5:
        return example
    return {**example, "context": flip_views(example["context"]), "target": flip_views(example["target"])}


def rescale_example(example: Example, out_hw: tuple[int, int], mode: ResizeMode = "bicubic") -> Example:
    """Apply :func:`rescale_and_crop` to the context and target views."""
    out = dict(example)
    for part in ("context", "target"):
        images, K = rescale_and_crop(example[part]["image"], example[part]["K"], out_hw, mode)
        out[part] = {**example[part], "image": images, "K": K}
    return out
