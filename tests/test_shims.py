"""Shims: rescale + centre crop with exact intrinsics, and the flip augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from zpressor_ns.cameras import invert_rigid
from zpressor_ns.data.shims import flip_views, random_flip, rescale_and_crop, resize_images


def centred_K(fx: float = 0.8, fy: float = 1.3, cx: float = 0.5, cy: float = 0.5) -> torch.Tensor:
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def smooth_images(num: int, height: int, width: int) -> torch.Tensor:
    rows = torch.linspace(0, 1, height)[:, None]
    cols = torch.linspace(0, 1, width)[None, :]
    return torch.stack(
        [
            torch.stack([rows * cols, (rows + cols) / 2, 0.5 + 0.4 * torch.sin(6 * cols + i + 0 * rows)])
            for i in range(num)
        ]
    )


def test_output_shape_and_original_fx_fy_rule_for_an_even_margin():
    # 100x200 -> 50x80: scale max(0.5, 0.4) = 0.5, resized to 50x100, 20 columns cut, 10 per side.
    images, K = rescale_and_crop(smooth_images(2, 100, 200), centred_K()[None].repeat(2, 1, 1), (50, 80))
    assert images.shape == (2, 3, 50, 80)
    # The original shim only scales fx by w_scaled / w_out and fy by h_scaled / h_out: identical here.
    expected = centred_K(fx=0.8 * 100 / 80, fy=1.3 * 50 / 50)
    assert torch.allclose(K, expected.expand(2, 3, 3), atol=1e-7)


def test_odd_margin_moves_the_principal_point_by_half_a_pixel():
    # RE10K 360x640 -> 256x448: resized to 256x455 (round(640 * 256 / 360) = 455), crop column 3 of a
    # 7-pixel margin. The image centre at 455 / 2 = 227.5 lands at 224.5 of 448, not at 224.
    _, K = rescale_and_crop(torch.rand(1, 3, 360, 640), centred_K()[None], (256, 448))
    assert K[0, 0, 0].item() == pytest.approx(0.8 * 455 / 448)
    assert K[0, 1, 1].item() == pytest.approx(1.3)
    assert K[0, 0, 2].item() == pytest.approx(224.5 / 448)
    assert K[0, 1, 2].item() == pytest.approx(0.5)


def test_intrinsics_follow_a_scene_point_through_the_crop():
    # Off-centre principal point: project a camera-space point, then check that its pixel in the
    # resized-and-cropped image is (pixel * resize factor - crop offset). 90x160 -> 64x64 resizes to
    # 64 x round(160 * 64 / 90) = 64 x 114 and crops 25 columns on the left.
    K = centred_K(fx=0.7, fy=1.1, cx=0.43, cy=0.58)
    point = torch.tensor([0.3, -0.2, 2.0])
    _, K_new = rescale_and_crop(torch.rand(1, 3, 90, 160), K[None], (64, 64))
    u, v = (K @ point / point[2])[:2] * torch.tensor([160.0, 90.0])
    u_new, v_new = (K_new[0] @ point / point[2])[:2] * torch.tensor([64.0, 64.0])
    assert u_new.item() == pytest.approx(u.item() * 114 / 160 - 25, abs=1e-4)
    assert v_new.item() == pytest.approx(v.item() * 64 / 90, abs=1e-4)


def test_pil_lanczos_mode_matches_pil_exactly():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(36, 64, 3), dtype=np.uint8)
    image = torch.from_numpy(pixels).permute(2, 0, 1).float().div(255)[None]
    ours = resize_images(image, (18, 32), "pil_lanczos")
    theirs = np.array(Image.fromarray(pixels).resize((32, 18), Image.LANCZOS))
    assert torch.equal((ours[0] * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(theirs))


def test_torch_resampling_stays_close_to_pil_and_in_range():
    images = smooth_images(1, 180, 320)
    bicubic = resize_images(images, (90, 160), "bicubic")
    lanczos = resize_images(images, (90, 160), "pil_lanczos")
    assert (bicubic - lanczos).abs().mean() < 2 / 255
    assert bicubic.min() >= 0 and bicubic.max() <= 1


def test_unknown_resize_mode_is_refused(without_shape_checks):
    with without_shape_checks(), pytest.raises(ValueError, match="resize mode"):
        resize_images(torch.rand(1, 3, 8, 8), (4, 4), "nearest")


def views(num: int = 2) -> dict:
    c2w = torch.eye(4).repeat(num, 1, 1)
    c2w[:, :3, 3] = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])[:num]
    angle = 0.3
    c2w[0, :3, :3] = torch.tensor(
        [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    )
    return {
        "image": torch.rand(num, 3, 6, 10),
        "c2w": c2w,
        "K": centred_K(cx=0.4, cy=0.55)[None].repeat(num, 1, 1),
        "near": torch.ones(num),
        "far": torch.full((num,), 100.0),
        "index": torch.arange(num),
    }


def project(c2w: torch.Tensor, K: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    camera = invert_rigid(c2w) @ torch.cat([point, torch.ones(1)])
    return (K @ camera[:3] / camera[2])[:2]


def test_flip_mirrors_images_cameras_and_projections():
    original = views()
    flipped = flip_views(original)
    assert torch.equal(flipped["image"], original["image"].flip(-1))
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
    assert torch.allclose(flipped["c2w"], mirror @ original["c2w"] @ mirror)
    # Camera positions mirror across x = 0 and rotations stay proper (det +1).
    assert torch.allclose(
        flipped["c2w"][:, :3, 3], original["c2w"][:, :3, 3] * torch.tensor([-1.0, 1.0, 1.0])
    )
    assert torch.allclose(torch.linalg.det(flipped["c2w"][:, :3, :3]), torch.ones(2))
    assert torch.allclose(flipped["K"][:, 0, 2], 1 - original["K"][:, 0, 2])
    # A world point seen at (u, v) is seen at (1 - u, v) in the mirrored world by the mirrored camera.
    point = torch.tensor([0.4, -0.3, 8.0])
    for i in range(2):
        u, v = project(original["c2w"][i], original["K"][i], point)
        u_f, v_f = project(flipped["c2w"][i], flipped["K"][i], point * torch.tensor([-1.0, 1.0, 1.0]))
        assert u_f.item() == pytest.approx(1 - u.item(), abs=1e-5)
        assert v_f.item() == pytest.approx(v.item(), abs=1e-5)
    # Flipping twice restores everything.
    twice = flip_views(flipped)
    for key in ("image", "c2w", "K"):
        assert torch.allclose(twice[key], original[key])


def test_centred_principal_point_flip_leaves_K_unchanged():
    centred = {**views(), "K": centred_K()[None].repeat(2, 1, 1)}
    assert torch.allclose(flip_views(centred)["K"], centred["K"])


def test_random_flip_flips_about_half_of_the_time_and_both_parts_together():
    example = {"context": views(), "target": views(1), "scene": "s"}
    rng = torch.Generator().manual_seed(0)
    flips = 0
    for _ in range(200):
        out = random_flip(example, rng)
        context_flipped = not torch.equal(out["context"]["image"], example["context"]["image"])
        target_flipped = not torch.equal(out["target"]["image"], example["target"]["image"])
        assert context_flipped == target_flipped
        flips += context_flipped
    assert 70 < flips < 130
