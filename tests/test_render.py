"""Rendering: analytic single-Gaussian cases, compositing rules, culling, SH, gradients, and a loop-based
reference of gsplat 1.4.0's rules; the gsplat parity check runs only where CUDA is available."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from scipy.special import lpmv

from zpressor_ns import render as render_module
from zpressor_ns.gaussians import Gaussians
from zpressor_ns.rasterize_torch import RasterSettings, rasterize_gaussians_torch
from zpressor_ns.render import render_gaussians
from zpressor_ns.spherical_harmonics import evaluate_sh, sh_basis, sh_degree_from_coefficients

DC_FACTOR = 0.5 / math.sqrt(math.pi)  # Y_00 = 1 / (2 sqrt(pi))
SIZE = 32  # image side; normalised focal 1 => focal length 32 px, principal point at 16


def real_sh(degree: int, directions: np.ndarray) -> np.ndarray:
    """Real SH with the Condon-Shortley phase from associated Legendre functions (scipy), m = -l..l."""
    unit = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
    polar, azimuth = np.arccos(unit[:, 2]), np.arctan2(unit[:, 1], unit[:, 0])
    columns = []
    for band in range(degree + 1):
        for m in range(-band, band + 1):
            ratio = math.factorial(band - abs(m)) / math.factorial(band + abs(m))
            k = math.sqrt((2 * band + 1) / (4 * math.pi) * ratio)
            legendre = lpmv(abs(m), band, np.cos(polar))
            if m > 0:
                columns.append(math.sqrt(2) * k * np.cos(m * azimuth) * legendre)
            elif m < 0:
                columns.append(math.sqrt(2) * k * np.sin(-m * azimuth) * legendre)
            else:
                columns.append(k * legendre)
    return np.stack(columns, axis=-1)


def dc_harmonics(colors: list[tuple[float, float, float]], degree: int = 0) -> torch.Tensor:
    """Colour-major SH [1, G, 3, D] whose DC term yields exactly ``colors`` (no view dependence)."""
    harmonics = torch.zeros(1, len(colors), 3, (degree + 1) ** 2, dtype=torch.float64)
    harmonics[0, :, :, 0] = (torch.tensor(colors, dtype=torch.float64) - 0.5) / DC_FACTOR
    return harmonics


def make_gaussians(means, covariances, colors, opacities) -> Gaussians:
    return Gaussians(
        means=torch.tensor(means, dtype=torch.float64)[None],
        covariances=torch.as_tensor(np.asarray(covariances), dtype=torch.float64).reshape(1, -1, 3, 3),
        harmonics=dc_harmonics(colors),
        opacities=torch.tensor(opacities, dtype=torch.float64)[None],
    )


def render_front(
    gaussians: Gaussians, near: float = 0.5, size: int = SIZE, background=(0.0, 0.0, 0.0), K=None
):
    """Render from a camera at the origin looking down +z (OpenCV), normalised focal 1."""
    c2w = torch.eye(4, dtype=torch.float64)[None, None]
    K = torch.tensor([[1.0, 0, 0.5], [0, 1.0, 0.5], [0, 0, 1]], dtype=torch.float64) if K is None else K
    near_t = torch.full((1, 1), near, dtype=torch.float64)
    far_t = torch.full((1, 1), 100.0, dtype=torch.float64)
    return render_gaussians(
        gaussians, c2w, K[None, None], near_t, far_t, (size, size), background, backend="torch"
    )


def pixel_offsets(mean2d: tuple[float, float], size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (pixel centre - projected mean) for every pixel; pixel centres are at +0.5."""
    centres = np.arange(size) + 0.5
    dy, dx = np.meshgrid(centres - mean2d[1], centres - mean2d[0], indexing="ij")
    return dx, dy


def analytic_alpha(cov2d: np.ndarray, mean2d, opacity: float, size: int = SIZE) -> np.ndarray:
    """o exp(-d^T cov2d^-1 d / 2), clamped at 0.999, zero below 1/255 (gsplat's skip rule)."""
    dx, dy = pixel_offsets(mean2d, size)
    conic = np.linalg.inv(cov2d)
    sigma = 0.5 * (conic[0, 0] * dx**2 + 2 * conic[0, 1] * dx * dy + conic[1, 1] * dy**2)
    alpha = np.minimum(opacity * np.exp(-sigma), 0.999)
    return np.where(alpha >= 1 / 255, alpha, 0.0)


def test_single_isotropic_gaussian_footprint_colour_and_depth():
    z, std, opacity, color = 2.0, 0.05, 0.8, (0.2, 0.5, 0.9)
    gaussians = make_gaussians([[0.0, 0.0, z]], [np.eye(3) * std**2], [color], [opacity])
    out = render_front(gaussians)
    std_px = SIZE * std / z  # focal (px) * std / depth
    expected_alpha = analytic_alpha(np.eye(2) * (std_px**2 + 0.3), (SIZE / 2, SIZE / 2), opacity)
    assert expected_alpha.max() > 0.5 and (expected_alpha == 0).any()  # the case tests both regimes
    np.testing.assert_allclose(out.alpha[0, 0].numpy(), expected_alpha, atol=1e-12)
    for channel, value in enumerate(color):
        np.testing.assert_allclose(out.color[0, 0, channel].numpy(), expected_alpha * value, atol=1e-12)
    np.testing.assert_allclose(out.depth[0, 0].numpy(), np.where(expected_alpha > 0, z, 0.0), atol=1e-12)


def test_off_axis_anisotropic_gaussian_matches_ewa_projection_and_sh_colour():
    mean = np.array([0.3, -0.2, 2.5])
    basis = np.linalg.qr(np.array([[1.0, 0.4, 0.2], [0.1, 1.0, -0.3], [0.5, 0.2, 1.0]]))[0]
    covariance = basis @ np.diag([0.004, 0.0015, 0.0008]) @ basis.T
    harmonics = torch.zeros(1, 1, 3, 9, dtype=torch.float64)
    harmonics[0, 0, :, 0] = torch.tensor([0.3, -0.2, 0.1])
    harmonics[0, 0, :, 1:] = torch.linspace(-0.3, 0.3, 24, dtype=torch.float64).reshape(3, 8)
    gaussians = Gaussians(
        torch.tensor(mean)[None, None],
        torch.tensor(covariance)[None, None],
        harmonics,
        torch.tensor([[0.9]]).double(),
    )
    out = render_front(gaussians)

    f = float(SIZE)
    x, y, z = mean
    jacobian = np.array([[f / z, 0, -f * x / z**2], [0, f / z, -f * y / z**2]])
    cov2d = jacobian @ covariance @ jacobian.T + 0.3 * np.eye(2)
    mean2d = (f * x / z + SIZE / 2, f * y / z + SIZE / 2)
    expected_alpha = analytic_alpha(cov2d, mean2d, 0.9)
    np.testing.assert_allclose(out.alpha[0, 0].numpy(), expected_alpha, atol=1e-12)

    # Colour: SH along camera centre -> mean (camera at the origin), + 0.5, clamped at 0.
    sh_value = harmonics[0, 0].numpy() @ real_sh(2, mean[None])[0]
    expected_color = np.clip(sh_value + 0.5, 0, None)
    np.testing.assert_allclose(
        out.color[0, 0].numpy(), expected_alpha[None] * expected_color[:, None, None], atol=1e-12
    )


def test_front_gaussian_occludes_regardless_of_input_order_and_weights_compose():
    near_g = ([0.0, 0.0, 2.0], np.eye(3) * 0.08**2, (1.0, 0.0, 0.0), 0.7)
    far_g = ([0.0, 0.0, 3.0], np.eye(3) * 0.12**2, (0.0, 1.0, 0.0), 0.6)
    outputs = []
    for order in ([near_g, far_g], [far_g, near_g]):
        means, covs, colors, opacities = zip(*order, strict=True)
        outputs.append(render_front(make_gaussians(means, covs, colors, opacities)))
    for name in ("color", "depth", "alpha"):
        torch.testing.assert_close(getattr(outputs[0], name), getattr(outputs[1], name), rtol=0, atol=1e-14)

    a1 = analytic_alpha(np.eye(2) * ((SIZE * 0.08 / 2) ** 2 + 0.3), (16, 16), 0.7)
    a2 = analytic_alpha(np.eye(2) * ((SIZE * 0.12 / 3) ** 2 + 0.3), (16, 16), 0.6)
    w1, w2 = a1, (1 - a1) * a2
    out = outputs[0]
    np.testing.assert_allclose(out.color[0, 0, 0].numpy(), w1, atol=1e-12)  # red: the front Gaussian
    np.testing.assert_allclose(out.color[0, 0, 1].numpy(), w2, atol=1e-12)  # green: what shows through
    np.testing.assert_allclose(out.alpha[0, 0].numpy(), w1 + w2, atol=1e-12)
    expected_depth = np.where(w1 + w2 > 0, (2.0 * w1 + 3.0 * w2) / np.maximum(w1 + w2, 1e-300), 0.0)
    np.testing.assert_allclose(out.depth[0, 0].numpy(), expected_depth, atol=1e-12)

    background = (0.2, 0.4, 0.6)
    with_background = render_front(make_gaussians(*zip(near_g, far_g, strict=True)), background=background)
    for channel, value in enumerate(background):
        np.testing.assert_allclose(
            with_background.color[0, 0, channel].numpy(),
            out.color[0, 0, channel].numpy() + (1 - w1 - w2) * value,
            atol=1e-12,
        )
    np.testing.assert_allclose(with_background.color[0, 0, :, 0, 0].numpy(), background, atol=1e-12)


@pytest.mark.parametrize("near", [1.0, 10.0])
def test_near_cull_at_a_fifth_of_near_and_nothing_behind_the_camera(near):
    def centre_alpha(z: float, std: float) -> float:
        gaussians = make_gaussians([[0.0, 0.0, z]], [np.eye(3) * (std * abs(z)) ** 2], [(1, 1, 1)], [0.9])
        return float(render_front(gaussians, near=near).alpha[0, 0, 16, 16])

    assert centre_alpha(0.25 * near, 0.05) > 0.5
    assert centre_alpha(0.15 * near, 0.05) == 0.0
    assert centre_alpha(-2.0 * near, 1.0) == 0.0  # huge and behind: invisible


def test_transmittance_stop_is_exclusive():
    # Four layers of alpha 0.95 at the centre pixel: T goes 0.05, 2.5e-3, 1.25e-4, then 6.25e-6 <= 1e-4,
    # so the fourth layer and everything behind it are dropped for that pixel.
    depths = [2.0, 3.0, 4.0, 5.0, 6.0]
    colors = [(0.5, 0, 0), (0.5, 0, 0), (0.5, 0, 0), (0, 1, 0), (0, 0, 1)]
    big = 0.5  # std in px >> 1 so the centre pixel sees alpha ~ 0.95
    covs = [np.eye(3) * (big * z / SIZE) ** 2 for z in depths]
    opacity = 0.95 / math.exp(-0.5 * 0.5 / (big**2 + 0.3))  # alpha 0.95 at offset (0.5, 0.5)
    out = render_front(make_gaussians([[0, 0, z] for z in depths], covs, colors, [opacity] * 5))
    alpha = 0.95
    kept = alpha + (1 - alpha) * alpha + (1 - alpha) ** 2 * alpha
    centre = (0, 0, slice(None), 15, 15)
    np.testing.assert_allclose(out.color[centre].numpy(), [0.5 * kept, 0.0, 0.0], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(float(out.alpha[0, 0, 15, 15]), kept, rtol=1e-10)


def test_alpha_is_clamped_at_0999():
    # Screen std ~32 px: o exp(-sigma) at the centre pixels is 0.99976 before the clamp.
    out = render_front(make_gaussians([[0, 0, 2.0]], [np.eye(3) * 2.0**2], [(1, 1, 1)], [1.0]))
    assert float(out.alpha.max()) == pytest.approx(0.999, abs=1e-12)


def test_pixels_see_a_gaussian_only_within_its_radius_tiles():
    # gsplat lists a Gaussian in the 16x16 tiles its 3-sigma box touches: inside those tiles it reaches
    # past its radius, in the next tile it is absent even where o exp(-sigma) would exceed 1/255.
    size, z = 64, 2.0
    mean2d = (1.5, 32.5)  # pixel (32, 1) is centred on it
    x, y = (mean2d[0] - size / 2) * z / size, (mean2d[1] - size / 2) * z / size
    jacobian = np.array([[size / z, 0, -size * x / z**2], [0, size / z, -size * y / z**2]])
    unit = jacobian @ jacobian.T
    std_world = math.sqrt((99.7 - 0.3) / unit[0, 0])  # screen x variance 99.7 after the dilation
    cov2d = unit * std_world**2 + 0.3 * np.eye(2)
    gaussians = make_gaussians([[x, y, z]], [np.eye(3) * std_world**2], [(1, 1, 1)], [0.9])
    out = render_front(gaussians, size=size)

    half = 0.5 * np.trace(cov2d)
    radius = math.ceil(3 * math.sqrt(half + math.sqrt(max(half * half - np.linalg.det(cov2d), 0.01))))
    assert radius == 30 and math.ceil((mean2d[0] + radius) / 16) == 2  # the box ends inside tile 1
    dx, dy = pixel_offsets(mean2d, size)
    conic = np.linalg.inv(cov2d)
    sigma = 0.5 * (conic[0, 0] * dx**2 + 2 * conic[0, 1] * dx * dy + conic[1, 1] * dy**2)
    formula = (0.9 * np.exp(-sigma))[32]
    row = out.alpha[0, 0, 32].numpy()
    assert formula[31] > 1 / 255 and formula[32] > 1 / 255  # the formula alone would draw pixel 32
    assert 3 * math.sqrt(cov2d[0, 0]) < 31.5 - mean2d[0]  # pixel 31 is already beyond 3 sigma
    np.testing.assert_allclose(row[:32], formula[:32], rtol=1e-10)
    assert (row[32:] == 0).all()


@pytest.mark.parametrize("degree", [1, 2, 3, 4])
def test_sh_basis_matches_associated_legendre_formula(degree):
    directions = np.array([[0.3, -0.5, 0.8], [-1.0, 0.2, 0.1], [0.0, 0.0, -2.0], [0.6, 0.6, -0.2]])
    expected = real_sh(degree, directions)
    np.testing.assert_allclose(sh_basis(degree, torch.tensor(directions)).numpy(), expected, atol=1e-12)
    coefficients = torch.randn(4, 3, (degree + 1) ** 2, dtype=torch.float64)
    np.testing.assert_allclose(
        evaluate_sh(coefficients, torch.tensor(directions)).numpy(),
        np.einsum("ncd,nd->nc", coefficients.numpy(), expected),
        atol=1e-12,
    )


def test_sh_coefficient_count_must_be_a_square_up_to_degree_4():
    assert sh_degree_from_coefficients(25) == 4
    for bad in (10, 36, 0):
        with pytest.raises(ValueError, match="coefficients"):
            sh_degree_from_coefficients(bad)


def test_principal_point_is_ignored_unless_asked_for():
    gaussians = make_gaussians([[0.0, 0.0, 2.0]], [np.eye(3) * 0.05**2], [(1, 1, 1)], [0.9])
    off_centre = torch.tensor([[1.0, 0, 0.25], [0, 1.0, 0.75], [0, 0, 1]], dtype=torch.float64)
    centred = render_front(gaussians)
    ignored = render_front(gaussians, K=off_centre)
    torch.testing.assert_close(ignored.color, centred.color)
    c2w = torch.eye(4, dtype=torch.float64)[None, None]
    used = render_gaussians(
        gaussians, c2w, off_centre[None, None], torch.ones(1, 1).double(), torch.full((1, 1), 100.0).double(),
        (SIZE, SIZE), backend="torch", centred_principal_point=False,
    )  # fmt: skip
    dx, dy = pixel_offsets((0.0, 0.0))
    weights = used.alpha[0, 0].numpy()
    centroid = ((weights * dx).sum() / weights.sum(), (weights * dy).sum() / weights.sum())
    np.testing.assert_allclose(centroid, (0.25 * SIZE, 0.75 * SIZE), atol=1e-9)  # (cx, cy) in pixels


def test_clear_errors_for_bad_input(without_shape_checks):
    gaussians = make_gaussians([[0.0, 0.0, 2.0]], [np.eye(3) * 0.05**2], [(1, 1, 1)], [0.9])
    c2w = torch.eye(4, dtype=torch.float64)[None, None]
    K = torch.eye(3, dtype=torch.float64)[None, None]
    ones = torch.ones(1, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="CUDA"):
        render_gaussians(gaussians, c2w, K, ones, ones * 10, (8, 8), backend="gsplat")
    with pytest.raises(ValueError, match="near"):
        render_gaussians(gaussians, c2w, K, ones * 0, ones * 10, (8, 8))
    with without_shape_checks(), pytest.raises(ValueError, match="c2w"):
        render_gaussians(gaussians, c2w[0], K, ones, ones * 10, (8, 8))


# ---------------------------------------------------------------------------------------------------
# A deliberately plain, loop-based restatement of gsplat 1.4.0's forward rules, used as the reference for
# random scenes (tile rule, culling, Jacobian clamp, sort order, stop rule, cropping of partial tiles).


def reference_render(means, covs, harmonics, opacities, w2c, K, near, far, width, height, background):
    """Returns (colour [V,H,W,3], expected depth, alpha, number of pixels where the stop rule fired)."""
    images, depths, alphas, stops = [], [], [], 0
    degree = round(math.sqrt(harmonics.shape[-1])) - 1
    for view in range(w2c.shape[0]):
        rot, trans = w2c[view, :3, :3], w2c[view, :3, 3]
        fx, fy, cx, cy = K[view, 0, 0], K[view, 1, 1], K[view, 0, 2], K[view, 1, 2]
        centre = -rot.T @ trans
        splats = []
        for g in range(means.shape[0]):
            x, y, z = rot @ means[g] + trans
            if z < near[view] or z > far[view]:
                continue
            lim_x = (-(cx / fx + 0.3 * width / (2 * fx)), (width - cx) / fx + 0.3 * width / (2 * fx))
            lim_y = (-(cy / fy + 0.3 * height / (2 * fy)), (height - cy) / fy + 0.3 * height / (2 * fy))
            tx = z * min(max(x / z, lim_x[0]), lim_x[1])
            ty = z * min(max(y / z, lim_y[0]), lim_y[1])
            jac = np.array([[fx / z, 0, -fx * tx / z**2], [0, fy / z, -fy * ty / z**2]])
            cov2d = jac @ rot @ covs[g] @ rot.T @ jac.T + 0.3 * np.eye(2)
            det = np.linalg.det(cov2d)
            if det <= 0:
                continue
            half = 0.5 * np.trace(cov2d)
            radius = math.ceil(3 * math.sqrt(half + math.sqrt(max(0.01, half * half - det))))
            mx, my = fx * x / z + cx, fy * y / z + cy
            if mx + radius <= 0 or mx - radius >= width or my + radius <= 0 or my - radius >= height:
                continue
            tiles = [
                min(max(0, math.floor(c / 16 - radius / 16)), n)
                for c, n in ((mx, -(-width // 16)), (my, -(-height // 16)))
            ] + [
                min(max(0, math.ceil(c / 16 + radius / 16)), n)
                for c, n in ((mx, -(-width // 16)), (my, -(-height // 16)))
            ]
            sh = harmonics[g] @ real_sh(degree, (means[g] - centre)[None])[0]
            splats.append(
                (z, g, (mx, my), np.linalg.inv(cov2d), opacities[g], np.maximum(sh + 0.5, 0), tiles)
            )
        splats.sort(key=lambda s: (s[0], s[1]))
        image = np.zeros((height, width, 3))
        depth_image = np.zeros((height, width))
        alpha_image = np.zeros((height, width))
        for row in range(height):
            for col in range(width):
                transmittance, color, depth = 1.0, np.zeros(3), 0.0
                for z, _, (mx, my), conic, opacity, rgb, (tx0, ty0, tx1, ty1) in splats:
                    if not (tx0 <= col // 16 < tx1 and ty0 <= row // 16 < ty1):
                        continue
                    dx, dy = mx - (col + 0.5), my - (row + 0.5)
                    sigma = 0.5 * (conic[0, 0] * dx * dx + conic[1, 1] * dy * dy) + conic[0, 1] * dx * dy
                    alpha = min(0.999, opacity * math.exp(-sigma))
                    if sigma < 0 or alpha < 1 / 255:
                        continue
                    if transmittance * (1 - alpha) <= 1e-4:
                        stops += 1
                        break
                    color += alpha * transmittance * rgb
                    depth += alpha * transmittance * z
                    transmittance *= 1 - alpha
                image[row, col] = color + transmittance * background[view]
                alpha_image[row, col] = 1 - transmittance
                depth_image[row, col] = depth / max(1 - transmittance, 1e-10)
        images.append(image)
        depths.append(depth_image)
        alphas.append(alpha_image)
    return np.stack(images), np.stack(depths), np.stack(alphas), stops


def random_scene(generator: torch.Generator, num_gaussians: int, degree: int):
    means = torch.randn(num_gaussians, 3, generator=generator, dtype=torch.float64) * torch.tensor(
        [2.0, 0.8, 1.5]
    )
    means[:, 2] += 3.0  # mostly in front; some behind the near plane or off screen
    factors = torch.randn(num_gaussians, 3, 3, generator=generator, dtype=torch.float64)
    scales = torch.rand(num_gaussians, 1, 1, generator=generator, dtype=torch.float64) ** 4 * 0.3 + 0.005
    covariances = scales**2 * (factors @ factors.transpose(-1, -2) + 0.05 * torch.eye(3, dtype=torch.float64))
    harmonics = (
        torch.randn(num_gaussians, 3, (degree + 1) ** 2, generator=generator, dtype=torch.float64) * 0.4
    )
    opacities = torch.rand(num_gaussians, generator=generator, dtype=torch.float64) ** 0.3  # many opaque ones
    # A stack of broad, nearly opaque Gaussians so that some pixels reach the transmittance stop.
    means[:6, 0], means[:6, 1], means[:6, 2] = 0.2, 0.1, torch.linspace(2, 3, 6, dtype=torch.float64)
    covariances[:6] = torch.eye(3, dtype=torch.float64) * 0.25**2
    opacities[:6] = 0.98
    return means, covariances, harmonics, opacities


def random_cameras(generator: torch.Generator, num_views: int, width: int, height: int):
    angles = (torch.rand(num_views, 3, generator=generator, dtype=torch.float64) - 0.5) * 0.3
    w2c = torch.eye(4, dtype=torch.float64).repeat(num_views, 1, 1)
    for v in range(num_views):
        a, b, c = angles[v].tolist()
        rx = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
        ry = torch.tensor([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
        rz = torch.tensor([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
        w2c[v, :3, :3] = (rx @ ry @ rz).double()
    w2c[:, :3, 3] = (torch.rand(num_views, 3, generator=generator, dtype=torch.float64) - 0.5) * 0.4
    K = torch.zeros(num_views, 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 1, 1] = 0.9 * width, 1.1 * width
    K[:, 0, 2], K[:, 1, 2] = 0.45 * width, 0.55 * height  # off centre: exercises the asymmetric clamp
    K[:, 2, 2] = 1
    return w2c, K


@pytest.mark.parametrize(
    "settings",
    [RasterSettings(), RasterSettings(block_size=16), RasterSettings(block_size=4, max_block_elements=500)],
    ids=["default", "tile-blocks", "tiny-chunks"],
)
def test_matches_loop_reference_of_gsplat_rules_on_random_scenes(settings):
    generator = torch.Generator().manual_seed(3)
    width, height, num_views = 40, 24, 2
    scenes = [random_scene(generator, 100, degree=2) for _ in range(2)]
    means, covariances, harmonics, opacities = (torch.stack(parts) for parts in zip(*scenes, strict=True))
    cameras = [random_cameras(generator, num_views, width, height) for _ in range(2)]
    w2c, K = (torch.stack(parts) for parts in zip(*cameras, strict=True))
    near = torch.tensor([[0.5, 1.0], [0.2, 0.8]], dtype=torch.float64)
    far = torch.tensor([[100.0, 3.5], [100.0, 100.0]], dtype=torch.float64)
    background = torch.rand(2, num_views, 3, generator=generator, dtype=torch.float64)
    color, depth, alpha = rasterize_gaussians_torch(
        means, covariances, harmonics, opacities, w2c, K, near, far, background, width, height, settings
    )
    stops, empty = 0, 0
    for s in range(2):
        expected = reference_render(
            *(t[s].numpy() for t in (means, covariances, harmonics, opacities, w2c, K, near, far)),
            width, height, background[s].numpy(),
        )  # fmt: skip
        stops, empty = stops + expected[3], empty + int((expected[2] == 0).sum())
        for got, want in zip((color[s], depth[s], alpha[s]), expected[:3], strict=True):
            np.testing.assert_allclose(got.numpy(), want, atol=1e-9)
    assert stops > 0 and empty > 0  # the scenes have pixels that stop early, and empty ones


def test_gradients_reach_every_gaussian_parameter():
    generator = torch.Generator().manual_seed(0)
    means, covariances, harmonics, opacities = random_scene(generator, 40, degree=4)
    leaves = [t[None].float().requires_grad_() for t in (means, covariances, harmonics, opacities)]
    gaussians = Gaussians(*leaves)
    c2w = torch.eye(4)[None, None].repeat(1, 2, 1, 1)
    c2w[0, 1, 0, 3] = 0.3
    K = torch.tensor([[0.9, 0, 0.5], [0, 1.2, 0.5], [0, 0, 1]]).expand(1, 2, 3, 3)
    out = render_gaussians(gaussians, c2w, K, torch.full((1, 2), 1.0), torch.full((1, 2), 100.0), (24, 32))
    (out.color.square().sum() + out.depth.sum() + out.alpha.sum()).backward()
    for name, leaf in zip(("means", "covariances", "harmonics", "opacities"), leaves, strict=True):
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all(), name
        assert leaf.grad.abs().sum() > 0, name


def test_gradients_are_exact_through_chunked_checkpointed_compositing():
    # Few, broad Gaussians on a single tile: every pixel is far from the 1/255 and 0.999 thresholds, so
    # the rendering is smooth and finite differences are meaningful.
    means = torch.tensor([[[0.05, -0.03, 2.0], [-0.04, 0.06, 2.6]]], dtype=torch.float64)
    stds = torch.tensor([[0.7, 0.7, 0.7], [0.9, 0.6, 0.8]], dtype=torch.float64)
    covariances = torch.diag_embed(stds**2)[None]
    harmonics = torch.randn(1, 2, 3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.2
    opacities = torch.tensor([[0.6, 0.5]], dtype=torch.float64)
    w2c = torch.eye(4, dtype=torch.float64)[None, None]
    K = torch.tensor([[[[8.0, 0, 4], [0, 8, 4], [0, 0, 1]]]], dtype=torch.float64)
    near, far = torch.ones(1, 1).double() * 0.5, torch.ones(1, 1).double() * 100
    background = torch.full((1, 1, 3), 0.3, dtype=torch.float64)
    settings = RasterSettings(block_size=4, max_block_elements=40)  # several chunks

    # A few random projections of all outputs keep the Jacobian small (gradcheck cost ~ outputs).
    projection = torch.randn(8 * 8 * 5, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def render(*params):
        color, depth, alpha = rasterize_gaussians_torch(
            *params, w2c, K, near, far, background, 8, 8, settings
        )
        return torch.cat([color.flatten(), depth.flatten(), alpha.flatten()]) @ projection

    inputs = tuple(t.clone().requires_grad_() for t in (means, covariances, harmonics, opacities))
    with torch.no_grad():
        alpha = rasterize_gaussians_torch(*inputs, w2c, K, near, far, background, 8, 8, settings)[2]
    assert alpha.min() > 0.05
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6)


def test_gsplat_path_passes_what_gsplat_expects(monkeypatch):
    """The gsplat call plumbing, checked on CPU with a stand-in that accepts exactly gsplat's signature
    and renders with the PyTorch rasterizer: SH transposed to [N, K, 3], covariances as ``covars``, one
    call per scene, or per view where a scene's views disagree on near."""
    gsplat = pytest.importorskip("gsplat")
    signature = inspect.signature(gsplat.rasterization)
    calls = []

    def stand_in(**kwargs):
        signature.bind(**kwargs)  # same keyword names as the real function
        assert kwargs["quats"] is None and kwargs["scales"] is None
        assert (kwargs["render_mode"], kwargs["rasterize_mode"], kwargs["eps2d"]) == (
            "RGB+ED",
            "classic",
            0.3,
        )
        views, sh = kwargs["viewmats"].shape[0], kwargs["colors"]
        assert sh.shape[1:] == ((kwargs["sh_degree"] + 1) ** 2, 3)
        calls.append((views, kwargs["near_plane"]))
        color, depth, alpha = rasterize_gaussians_torch(
            kwargs["means"][None], kwargs["covars"][None], sh.transpose(1, 2)[None], kwargs["opacities"][None],
            kwargs["viewmats"][None], kwargs["Ks"][None], torch.full((1, views), kwargs["near_plane"]),
            torch.full((1, views), kwargs["far_plane"]), kwargs["backgrounds"][None], kwargs["width"],
            kwargs["height"],
        )  # fmt: skip
        return torch.cat([color[0], depth[0, ..., None]], -1), alpha[0, ..., None], {}

    monkeypatch.setattr(gsplat, "rasterization", stand_in)
    generator = torch.Generator().manual_seed(5)
    scenes = [random_scene(generator, 50, degree=3) for _ in range(2)]
    means, covariances, harmonics, opacities = (torch.stack(p).float() for p in zip(*scenes, strict=True))
    cameras = [random_cameras(generator, 3, 24, 16) for _ in range(2)]
    w2c, K = (torch.stack(p).float() for p in zip(*cameras, strict=True))
    near = torch.tensor([[0.2, 0.2, 0.2], [0.1, 0.4, 0.7]])
    far = torch.full((2, 3), 1e10)
    background = torch.rand(2, 3, 3, generator=generator)
    args = (means, covariances, harmonics, opacities, w2c, K, near, far, background, 24, 16)
    through_gsplat = render_module._rasterize_gsplat(*args, 0.3)
    direct = rasterize_gaussians_torch(*args)
    assert calls == [
        (3, pytest.approx(0.2)),
        (1, pytest.approx(0.1)),
        (1, pytest.approx(0.4)),
        (1, pytest.approx(0.7)),
    ]
    for got, want in zip(through_gsplat, direct, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)  # fp32, different batching


def test_projection_and_colours_match_gsplat_own_torch_reference():
    """gsplat ships PyTorch restatements of its projection and SH kernels (``gsplat.cuda._torch_impl``,
    what its own CUDA tests compare against); they run on CPU, so the footprints, culling, radii and
    view-dependent colours of the CPU rasterizer are checked against gsplat's code, not only ours."""
    pytest.importorskip("gsplat")
    reference = pytest.importorskip("gsplat.cuda._torch_impl")
    from zpressor_ns.rasterize_torch import project_gaussians, view_dependent_colors

    generator = torch.Generator().manual_seed(11)
    width, height, num_views = 40, 24, 3
    means, covariances, harmonics, opacities = random_scene(generator, 400, degree=4)
    w2c, K = random_cameras(generator, num_views, width, height)
    near, far = 0.5, 4.0  # some Gaussians behind the near plane, some beyond far
    projected = project_gaussians(
        means[None], covariances[None], w2c[None], K[None], torch.full((1, num_views), near),
        torch.full((1, num_views), far), width, height, eps2d=0.3,
    )  # fmt: skip
    radii, means2d, depths, conics, _ = reference._fully_fused_projection(
        means, covariances, w2c, K, width, height, eps2d=0.3, near_plane=near, far_plane=far
    )
    visible = projected.visible[0]
    assert torch.equal(visible, radii > 0)
    assert 0.2 < visible.double().mean() < 0.9  # both culled and kept Gaussians are exercised
    torch.testing.assert_close(projected.radii[0].long(), radii.long(), rtol=0, atol=0)
    for got, want in (
        (projected.means2d[0], means2d),
        (projected.conics[0], conics),
        (projected.depths[0], depths),
    ):
        torch.testing.assert_close(got[visible], want[visible], rtol=1e-9, atol=1e-9)

    camera_centres = torch.linalg.inv(w2c)[:, :3, 3]
    colours = view_dependent_colors(means[None], harmonics[None], camera_centres[None])[0]
    directions = means[None] - camera_centres[:, None]
    expected = reference._spherical_harmonics(
        4, directions, harmonics.transpose(-1, -2)[None].expand(num_views, -1, -1, -1)
    )
    torch.testing.assert_close(colours, (expected + 0.5).clamp_min(0.0), rtol=1e-9, atol=1e-9)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_rasterizer_matches_gsplat_on_random_scenes():
    pytest.importorskip("gsplat")
    generator = torch.Generator().manual_seed(7)
    width, height, num_views = 64, 48, 3
    means, covariances, harmonics, opacities = random_scene(generator, 2000, degree=4)
    gaussians = Gaussians(
        *(t[None].float().cuda() for t in (means * 0.6, covariances * 0.05, harmonics, opacities))
    )
    c2w = torch.eye(4).repeat(1, num_views, 1, 1)
    c2w[0, :, 0, 3] = torch.linspace(-0.2, 0.2, num_views)
    K = torch.tensor([[0.9, 0, 0.5], [0, 1.2, 0.5], [0, 0, 1]]).expand(1, num_views, 3, 3)
    cameras = [t.cuda() for t in (c2w, K, torch.full((1, num_views), 1.0), torch.full((1, num_views), 100.0))]
    outputs = [render_gaussians(gaussians, *cameras, (height, width), backend=b) for b in ("gsplat", "torch")]
    assert outputs[0].alpha.max() > 0.99
    for name in ("color", "alpha"):
        torch.testing.assert_close(getattr(outputs[1], name), getattr(outputs[0], name), rtol=0, atol=1e-3)
    covered = outputs[0].alpha > 0.5
    torch.testing.assert_close(outputs[1].depth[covered], outputs[0].depth[covered], rtol=1e-3, atol=1e-3)
