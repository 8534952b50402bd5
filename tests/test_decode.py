"""Decoding frames: bit depths, transparency, NaN, oversized images and the reduction for huge ones.

Every image here is written with PIL in the format a user's capture may hold (16-bit PNG, float
TIFF, RGBA PNG, palette PNG), and the expected pixels are computed from the written arrays.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zpressor_ns.data.scene import SceneError, decode_image, reduced_size
from zpressor_ns.data.shims import decode_reduction, rescale_and_crop


def write_image(path: Path, image: Image.Image, image_format: str) -> Path:
    image.save(path, format=image_format)
    return path


def gradient(height: int, width: int) -> np.ndarray:
    """Values in [0, 1] spanning the whole range, different along rows and columns."""
    rows, cols = np.mgrid[0:height, 0:width]
    return ((rows * width + cols) / (height * width - 1)).astype(np.float64)


def test_sixteen_bit_png_is_scaled_by_its_own_range(tmp_path):
    levels = (gradient(6, 10) * 65535).round().astype(np.uint16)
    path = write_image(tmp_path / "depth16.png", Image.fromarray(levels), "PNG")
    assert Image.open(path).mode == "I;16"  # what PIL reads back; convert("RGB") would clip at 255
    image = decode_image(path, "frame")
    expected = torch.from_numpy(levels.astype(np.float32) / 65535).expand(3, -1, -1)
    assert image.shape == (3, 6, 10)
    assert torch.allclose(image, expected, atol=1e-6)
    assert 0.45 < image.mean() < 0.55  # not "almost white"


def test_float_tiff_keeps_its_values_and_nan_is_refused(tmp_path):
    values = gradient(6, 10).astype(np.float32)
    path = write_image(tmp_path / "linear.tif", Image.fromarray(values), "TIFF")
    image = decode_image(path, "frame")
    assert torch.allclose(image, torch.from_numpy(values).expand(3, -1, -1))  # not "almost black"

    values[2, 3] = np.nan
    nan_path = write_image(tmp_path / "nan.tif", Image.fromarray(values), "TIFF")
    with pytest.raises(SceneError, match=r"scene 's' frame 4.*1 NaN or infinite pixels"):
        decode_image(nan_path, "scene 's' frame 4")

    hdr_path = write_image(
        tmp_path / "hdr.tif", Image.fromarray(gradient(6, 10).astype(np.float32) * 255), "TIFF"
    )
    with pytest.raises(SceneError, match=r"hdr frame.*0\.\.255.*expected \[0, 1\]"):
        decode_image(hdr_path, "hdr frame")


@pytest.mark.parametrize("background", [(0.0, 0.0, 0.0), (1.0, 0.5, 0.25)])
def test_rgba_is_composited_onto_the_background_as_nerfstudio_does(tmp_path, background):
    rgb = (gradient(6, 10)[..., None] * [255, 128, 64]).round().astype(np.uint8)
    alpha = np.zeros((6, 10), dtype=np.uint8)
    alpha[:, 5:] = 255
    alpha[0, 0] = 128
    path = write_image(tmp_path / "cutout.png", Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "PNG")
    image = decode_image(path, "frame", background=background)
    # splatfacto's composite_with_background: alpha * rgb + (1 - alpha) * background, in [0, 1].
    a = torch.from_numpy(alpha).float() / 255
    colour = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    expected = colour * a + torch.tensor(background).view(3, 1, 1) * (1 - a)
    assert torch.allclose(image, expected, atol=1e-6)
    assert torch.allclose(image[:, 3, 2], torch.tensor(background))  # transparent: the background, not black


def test_palette_transparency_is_composited_and_opaque_images_are_unchanged(tmp_path):
    palette = Image.new("P", (4, 3), 1)
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.info["transparency"] = 0
    path = write_image(tmp_path / "palette.png", palette, "PNG")
    image = decode_image(path, "frame", background=(1.0, 1.0, 1.0))
    assert torch.allclose(image[:, 0, 0], torch.ones(3))
    assert torch.allclose(image[:, 1, 1], torch.tensor([200, 100, 50]) / 255)

    levels = (gradient(5, 7)[..., None] * [255, 200, 90]).round().astype(np.uint8)
    for name in ("plain.png", "plain.jpg"):
        path = write_image(
            tmp_path / name, Image.fromarray(levels), "PNG" if name.endswith("png") else "JPEG"
        )
        expected = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1) / 255
        assert torch.equal(decode_image(path, "frame", background=(1.0, 1.0, 1.0)), expected)


def test_a_decompression_bomb_is_a_scene_error_naming_the_frame(tmp_path, monkeypatch):
    path = write_image(tmp_path / "huge.png", Image.new("RGB", (40, 40)), "PNG")
    # PIL refuses images over twice MAX_IMAGE_PIXELS (a 15000x15000 frame by default).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)
    with pytest.raises(SceneError, match=r"scene 'big' frame 2.*too large to decode safely.*downscaled"):
        decode_image(path, "scene 'big' frame 2")


def test_frame_of_another_size_is_refused_before_decoding(tmp_path):
    path = write_image(tmp_path / "half.png", Image.new("RGB", (8, 5)), "PNG")
    with pytest.raises(SceneError, match=r"frame 7.*8x5.*16x10.*share one size"):
        decode_image(path, "frame 7", expected_hw=(10, 16))


@pytest.mark.parametrize(
    ("stored", "target", "factor"),
    [
        ((360, 640), (256, 448), 1),  # RE10K: decoded as before
        ((540, 960), (256, 448), 1),  # DL3DV images_4
        ((1080, 1920), (256, 448), 2),  # 4.3x the target: still at least 2x after the reduction
        ((8000, 8000), (256, 448), 8),
    ],
)
def test_decode_reduction_keeps_at_least_twice_the_target(stored, target, factor):
    assert decode_reduction(stored, target) == factor
    reduced = reduced_size(*stored, factor)
    scale = max(target[0] / reduced[0], target[1] / reduced[1])
    assert factor == 1 or scale <= 0.5 + 1e-9


def test_reduced_decoding_matches_resizing_the_full_image(tmp_path):
    # A smooth image 12x larger than the target: reducing by 6 on decode, then the shim's resize,
    # must match the shim's resize of the full image closely, with the same intrinsics.
    height, width = 1092, 1668
    rows, cols = np.mgrid[0:height, 0:width] / 60.0
    pixels = np.stack([np.sin(rows), np.cos(cols), np.sin(rows + cols)], -1) * 0.5 + 0.5
    path = write_image(tmp_path / "big.png", Image.fromarray((pixels * 255).round().astype(np.uint8)), "PNG")
    target = (88, 136)
    factor = decode_reduction((height, width), target)
    assert factor == 6
    reduced = decode_image(path, "frame", expected_hw=(height, width), reduce=factor)
    assert reduced.shape == (3, *reduced_size(height, width, factor)) == (3, 182, 278)
    K = torch.tensor([[0.9, 0.0, 0.47], [0.0, 1.4, 0.52], [0.0, 0.0, 1.0]])
    full = decode_image(path, "frame")
    for mode in ("bicubic", "pil_lanczos"):
        small, K_small = rescale_and_crop(reduced, K, target, mode)
        direct, K_direct = rescale_and_crop(full, K, target, mode)
        assert torch.allclose(K_small, K_direct, atol=2e-3)
        assert (small - direct).abs().mean() < 0.01


def test_frames_in_memory_and_on_disk_decode_alike(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray((gradient(4, 6) * 65535).astype(np.uint16)).save(buffer, format="PNG")
    data = buffer.getvalue()
    (tmp_path / "f.png").write_bytes(data)
    in_chunk = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), "frame")
    assert torch.equal(in_chunk, decode_image(tmp_path / "f.png", "frame"))
