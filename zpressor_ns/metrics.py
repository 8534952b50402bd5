"""Image metrics computed exactly as the original evaluation code does.

- PSNR: both images clipped to [0, 1], MSE over (c, h, w) per image, -10 log10(MSE).
- SSIM: scikit-image's ``structural_similarity(win_size=11, gaussian_weights=True, channel_axis=0,
  data_range=1.0)`` (sigma 1.5, sample covariance, mean over the valid region and over channels), on
  unclipped images. Reimplemented in torch (separable Gaussian, valid region only, so padding never
  matters) so it batches on the GPU; a test checks it against scikit-image.
- LPIPS: ``lpips.LPIPS(net="vgg")`` with inputs mapped from [0, 1] to [-1, 1], unclipped. Its VGG16
  backbone weights are read from a local file (never downloaded); without them LPIPS is unavailable
  and callers say so once instead of inventing a number.
"""

from __future__ import annotations

import logging
import math
import os
from functools import cache, lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

LOGGER = logging.getLogger(__name__)

# torchvision's file name for the ImageNet VGG16 weights that lpips builds on.
VGG16_FILE = "vgg16-397923af.pth"


def psnr(
    prediction: Float[Tensor, "*batch 3 height width"], target: Float[Tensor, "*batch 3 height width"]
) -> Float[Tensor, "*batch"]:
    """Per-image PSNR in dB of clipped images."""
    mse = (prediction.clamp(0, 1) - target.clamp(0, 1)).square().mean(dim=(-3, -2, -1))
    return -10.0 * torch.log10(mse)


@lru_cache(maxsize=8)
def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device_str: str) -> Tensor:
    radius = size // 2
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).to(dtype=dtype, device=torch.device(device_str))


def _filter_valid(x: Tensor, window: Tensor) -> Tensor:
    """Separable 2D filter over the last two dims of [N, C, H, W], valid region only."""
    n, c, h, w = x.shape
    k = window.numel()
    flat = x.reshape(n * c, 1, h, w)
    flat = F.conv2d(flat, window.view(1, 1, k, 1))
    flat = F.conv2d(flat, window.view(1, 1, 1, k))
    return flat.reshape(n, c, h - k + 1, w - k + 1)


def ssim(
    prediction: Float[Tensor, "*batch 3 height width"],
    target: Float[Tensor, "*batch 3 height width"],
    win_size: int = 11,
    sigma: float = 1.5,
) -> Float[Tensor, "*batch"]:
    """Per-image SSIM equal to scikit-image's Gaussian-window SSIM with data_range 1.

    scikit-image filters the whole image (reflect padding) and then averages over the region that is at
    least ``win_size // 2`` pixels from the border; those filtered values only involve pixels inside the
    image, so a valid convolution gives the same numbers. We accumulate in float64 (scikit-image keeps
    float32 inputs in float32; the two agree to about 1e-6).
    """
    batch_shape = prediction.shape[:-3]
    x = prediction.reshape(-1, *prediction.shape[-3:]).double()
    y = target.reshape(-1, *target.shape[-3:]).double()
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size}x{win_size}, got {tuple(x.shape[-2:])}")
    window = _gaussian_window(win_size, sigma, torch.float64, str(x.device))
    num_samples = win_size**2
    cov_norm = num_samples / (num_samples - 1)  # sample covariance, as scikit-image's default
    ux, uy = _filter_valid(x, window), _filter_valid(y, window)
    uxx, uyy, uxy = _filter_valid(x * x, window), _filter_valid(y * y, window), _filter_valid(x * y, window)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(-3, -2, -1)).to(prediction.dtype).reshape(batch_shape)


def find_vgg16_weights(explicit: Path | None = None) -> Path | None:
    """The local VGG16 file: an explicit path, $ZPRESSOR_VGG16, or torch's hub cache. None if absent."""
    if explicit is not None:
        explicit = Path(explicit).expanduser()
        if not explicit.is_file():
            raise FileNotFoundError(
                f"LPIPS VGG16 weights not found at {explicit}; give the path of torchvision's {VGG16_FILE}"
            )
        return explicit
    env = os.environ.get("ZPRESSOR_VGG16")
    if env:
        return find_vgg16_weights(Path(env))
    hub = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
    return hub if hub.is_file() else None


class LPIPS(nn.Module):
    """LPIPS-VGG as the original evaluation uses it, built from local weights only.

    The lpips package ships its linear calibration layers; the VGG16 trunk is torchvision's ImageNet
    model, which lpips would download. We build lpips with a random trunk (no download) and copy the
    trunk weights from the local file.
    """

    def __init__(self, vgg16_weights: Path) -> None:
        super().__init__()
        import lpips  # heavy import, only where LPIPS is used

        self.model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
        state = torch.load(vgg16_weights, map_location="cpu", weights_only=True)
        features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        if not features:
            raise ValueError(
                f"{vgg16_weights} holds no 'features.*' tensors: not a torchvision VGG16 state dict"
            )
        with torch.no_grad():
            for name, param in self.model.net.named_parameters():
                # lpips names its trunk parameters slice<k>.<torchvision feature index>.<weight|bias>
                _, index, leaf = name.split(".")
                source = features.get(f"{index}.{leaf}")
                if source is None or source.shape != param.shape:
                    raise ValueError(f"{vgg16_weights}: no matching tensor for VGG16 feature {index}.{leaf}")
                param.copy_(source)
        self.model.eval()
        for param in self.model.parameters():
            param.requires_grad_(False)

    def forward(
        self,
        prediction: Float[Tensor, "*batch 3 height width"],
        target: Float[Tensor, "*batch 3 height width"],
    ) -> Float[Tensor, "*batch"]:
        batch_shape = prediction.shape[:-3]
        x = prediction.reshape(-1, *prediction.shape[-3:])
        y = target.reshape(-1, *target.shape[-3:])
        return self.model(x, y, normalize=True).reshape(batch_shape)

    def train(self, mode: bool = True) -> LPIPS:
        # The trunk is a fixed metric: keep it in eval mode whatever the owner does.
        super().train(mode)
        self.model.eval()
        return self


def build_lpips(vgg16_weights: Path | None = None, purpose: str = "LPIPS") -> LPIPS | None:
    """LPIPS-VGG from local weights, or None (logged once) when no weights are on this machine."""
    path = find_vgg16_weights(vgg16_weights)
    if path is None:
        _warn_no_lpips(purpose)
        return None
    return LPIPS(path)


@cache
def _warn_no_lpips(purpose: str) -> None:
    LOGGER.warning(
        "%s disabled: no VGG16 weights on this machine (looked for $ZPRESSOR_VGG16 and %s); nothing is "
        "downloaded. To enable it, copy torchvision's %s (from https://download.pytorch.org/models/%s, "
        "fetched on a machine with internet) to that path, or give its path in $ZPRESSOR_VGG16 or "
        "--pipeline.model.vgg16-weights.",
        purpose,
        Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE,
        VGG16_FILE,
        VGG16_FILE,
    )


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), ignoring nothing: NaN propagates."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
