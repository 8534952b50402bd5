"""Metrics and losses against independent references (scikit-image, torch's OneCycleLR, closed forms)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from zpressor_ns import losses, metrics


def test_psnr_clips_and_matches_closed_form():
    target = torch.full((1, 3, 8, 8), 0.5)
    prediction = target + 0.1
    assert metrics.psnr(prediction, target).item() == pytest.approx(20.0, abs=1e-4)
    # Values outside [0, 1] are clipped first: 1.7 counts as 1.0.
    over = torch.full((1, 3, 8, 8), 1.7)
    assert metrics.psnr(over, torch.full((1, 3, 8, 8), 0.9)).item() == pytest.approx(
        -10 * math.log10(0.1**2), abs=1e-3
    )


@pytest.mark.parametrize("shape", [(3, 32, 48), (3, 11, 17)])
def test_ssim_equals_scikit_image(shape):
    rng = np.random.default_rng(0)
    gt = rng.random(shape).astype(np.float32)
    pred = np.clip(
        gt + 0.2 * rng.standard_normal(shape).astype(np.float32), -0.1, 1.1
    )  # unclipped on purpose
    expected = structural_similarity(
        pred.astype(np.float64),
        gt.astype(np.float64),
        win_size=11,
        gaussian_weights=True,
        channel_axis=0,
        data_range=1.0,
    )
    ours = metrics.ssim(torch.from_numpy(pred)[None], torch.from_numpy(gt)[None])
    assert ours.shape == (1,)
    assert ours.item() == pytest.approx(expected, abs=1e-6)


def test_ssim_batches_and_identity():
    x = torch.rand(2, 4, 3, 16, 16)
    s = metrics.ssim(x, x)
    assert s.shape == (2, 4)
    assert torch.allclose(s, torch.ones_like(s))
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_lpips_reads_local_vgg_weights(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    vgg = torchvision.models.vgg16(weights=None)
    path = tmp_path / metrics.VGG16_FILE
    torch.save(vgg.state_dict(), path)
    lpips = metrics.LPIPS(path)
    # The trunk now holds exactly the file's weights.
    assert torch.equal(lpips.model.net.slice1[0].weight, vgg.features[0].weight)
    assert torch.equal(lpips.model.net.slice5._modules["28"].bias, vgg.features[28].bias)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(lpips(x, x), torch.zeros(2), atol=1e-6)
    assert (lpips(x, torch.rand(2, 3, 32, 32)) > 0).all()


def test_lpips_missing_weights(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("ZPRESSOR_VGG16", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert metrics.build_lpips(purpose="test-lpips") is None
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        metrics.build_lpips(tmp_path / "nope.pth")


def test_information_bottleneck_kl_closed_form():
    # Channel 0 ~ mean 1, std 2; channel 1 ~ N(0, 1) exactly (KL 0).
    values = torch.tensor([-1.0, 3.0, -1.0, 3.0])  # mean 1, biased std 2
    unit = torch.tensor([-1.0, 1.0, -1.0, 1.0])  # mean 0, biased std 1
    latent = torch.stack([values, unit]).reshape(1, 1, 2, 2, 2)
    sigma = math.sqrt(4 + 1e-8)
    expected = -0.5 * (1 + 2 * math.log(sigma) - 1 - sigma**2) - 0.5 * (
        1 + 2 * math.log(math.sqrt(1 + 1e-8)) - 1 - 1e-8
    )
    assert losses.information_bottleneck_kl(latent).item() == pytest.approx(expected / math.log(2), rel=1e-5)
    # Averaged over batch and views: two identical views give the same value.
    assert losses.information_bottleneck_kl(latent.expand(2, 2, -1, -1, -1)).item() == pytest.approx(
        expected / math.log(2), rel=1e-5
    )
