"""Training losses of DepthSplat+ZPressor: MSE + 0.05 LPIPS + 1e-5 information bottleneck.

The information-bottleneck term is the original's VAE-style KL of each (view, channel) feature map's
spatial statistics towards N(0, 1), in bits; nothing is sampled.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor


def mse_loss(
    prediction: Float[Tensor, "*batch 3 height width"], target: Float[Tensor, "*batch 3 height width"]
) -> Float[Tensor, ""]:
    return (prediction - target).square().mean()


def information_bottleneck_kl(latent: Float[Tensor, "batch view channel height width"]) -> Float[Tensor, ""]:
    """KL(N(mu, sigma^2) || N(0, 1)) of per-(view, channel) spatial statistics, summed over channels,
    averaged over batch and views, in bits."""
    flat = latent.flatten(-2)  # [B, V, C, HW]
    mu = flat.mean(-1)
    sigma = torch.sqrt(flat.var(-1, unbiased=False) + 1e-8)
    kl = -0.5 * (1 + 2 * torch.log(sigma) - mu.square() - sigma.square())
    return kl.sum(-1).mean() / math.log(2)
