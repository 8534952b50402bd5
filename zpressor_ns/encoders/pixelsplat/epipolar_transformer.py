"""pixelSplat's epipolar transformer: each pixel attends to the features along its epipolar lines.

On a ``downscale``-times coarser grid, every pixel of every view queries ``num_samples`` features of each
other view along its epipolar line (``epipolar.sample_epipolar_lines``), each tagged with an octave code
of the depth it stands for (as relative disparity between near and far) and, with more than two views, a
learned embedding of the other view's slot (the slots are shuffled on every call, as in the original).
Each layer is pre-norm cross-attention (keys and values are the raw samples, not normalised) followed by
an image self-attention block over 4x4 patches, whose input is the normed features and whose output is
added together with that input (the original's residual structure). A transposed convolution and a
two-conv refinement bring the features back to full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from zpressor_ns.blocks.position import octave_encoding
from zpressor_ns.encoders.pixelsplat.epipolar import sample_epipolar_lines
from zpressor_ns.gaussian_adapter import pixel_centres

# The cross-attention projects the keys and values of this many values at a time (rays in blocks): the
# projections of all rays at once (pixelSplat at 256x256 with 4 views: 6.4 GB in fp32) never coexist at
# inference. Each ray attends to its own samples only, so the blocks give the same result.
KEY_VALUE_BLOCK = 1 << 27


@dataclass(frozen=True)
class EpipolarConfig:
    """The epipolar transformer's sizes (the defaults are the paper's)."""

    num_layers: int = 2
    num_heads: int = 4
    head_dim: int = 128
    num_samples: int = 32
    """Samples per epipolar line and other view."""
    num_octaves: int = 10
    """Octaves of the depth code (0: no depth code)."""
    downscale: int = 4
    """The transformer runs on a grid this many times coarser than the image."""
    patch_size: int = 4
    """Patch side of the image self-attention (on the downscaled grid)."""
    image_layers: int = 2
    image_heads: int = 4
    image_head_dim: int = 128
    image_mlp: int = 256
    image_octaves: int = 10

    @property
    def required_multiple(self) -> int:
        return self.downscale * self.patch_size


def relative_disparity(
    depth: Float[Tensor, "*#batch"],
    near: Float[Tensor, "*#batch"],
    far: Float[Tensor, "*#batch"],
    eps: float = 1e-10,
) -> Float[Tensor, " *batch"]:
    """0 at ``near``, 1 at ``far``, linear in inverse depth (pixelSplat's depth parametrisation)."""
    near_disparity, far_disparity = 1 / (near + eps), 1 / (far + eps)
    return 1 - (1 / (depth + eps) - far_disparity) / (near_disparity - far_disparity + eps)


def depth_from_relative_disparity(
    disparity: Float[Tensor, "*#batch"],
    near: Float[Tensor, "*#batch"],
    far: Float[Tensor, "*#batch"],
    eps: float = 1e-10,
) -> Float[Tensor, " *batch"]:
    """Inverse of :func:`relative_disparity`."""
    near_disparity, far_disparity = 1 / (near + eps), 1 / (far + eps)
    return 1 / ((1 - disparity) * (near_disparity - far_disparity) + far_disparity + eps)


class MultiHeadAttention(nn.Module):
    """Attention with bias-free projections to ``num_heads x head_dim`` and a biased output projection
    (none when a single head is as wide as the input). Self-attention without ``context``."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, cross: bool = False) -> None:
        super().__init__()
        inner = num_heads * head_dim
        self.num_heads = num_heads
        if cross:
            self.to_q = nn.Linear(dim, inner, bias=False)
            self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        else:
            self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Identity() if num_heads == 1 and head_dim == dim else nn.Linear(inner, dim)

    def forward(
        self, x: Float[Tensor, "batch query dim"], context: Float[Tensor, "batch key dim"] | None = None
    ) -> Float[Tensor, "batch query dim"]:
        if context is None:
            q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        else:
            q = self.to_q(x)
            k, v = self.to_kv(context).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # scale head_dim ** -0.5
        return self.to_out(out.transpose(1, 2).flatten(2))


class TokenTransformerLayer(nn.Module):
    """Pre-norm self-attention and GELU MLP, each with a residual."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, mlp: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = MultiHeadAttention(dim, num_heads, head_dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: Float[Tensor, "batch token dim"]) -> Float[Tensor, "batch token dim"]:
        x = self.attention(self.attention_norm(x)) + x
        return self.mlp(self.mlp_norm(x)) + x


class ImageSelfAttention(nn.Module):
    """Patches -> (octave-coded patch position) -> transformer -> transposed-conv back to the grid."""

    def __init__(self, channels: int, config: EpipolarConfig) -> None:
        super().__init__()
        self.num_octaves = config.image_octaves
        p = config.patch_size
        self.patch_embed = nn.Conv2d(channels, channels, p, p)
        self.position = nn.Linear(4 * config.image_octaves, channels)
        self.layers = nn.ModuleList(
            TokenTransformerLayer(channels, config.image_heads, config.image_head_dim, config.image_mlp)
            for _ in range(config.image_layers)
        )
        self.unpatch = nn.ConvTranspose2d(channels, channels, p, p)

    def forward(
        self, x: Float[Tensor, "batch channel height width"]
    ) -> Float[Tensor, "batch channel height width"]:
        tokens = F.relu(self.patch_embed(x))
        _, _, rows, cols = tokens.shape
        position = self.position(
            octave_encoding(pixel_centres(rows, cols, x.device).to(x.dtype), self.num_octaves)
        )
        tokens = (tokens + position.permute(2, 0, 1)).flatten(2).transpose(1, 2)
        for layer in self.layers:
            tokens = layer(tokens)
        return self.unpatch(tokens.transpose(1, 2).unflatten(-1, (rows, cols)))


class EpipolarLayer(nn.Module):
    """Cross-attention of each pixel to its epipolar samples, then image self-attention (see module doc)."""

    def __init__(self, channels: int, config: EpipolarConfig) -> None:
        super().__init__()
        self.cross_norm = nn.LayerNorm(channels)
        self.cross = MultiHeadAttention(channels, config.num_heads, config.head_dim, cross=True)
        self.image_norm = nn.LayerNorm(channels)
        self.image_attention = ImageSelfAttention(channels, config)

    def forward(
        self,
        x: Float[Tensor, "batch view channel height width"],
        samples: Float[Tensor, "batch_view_ray key channel"],
    ) -> Float[Tensor, "batch view channel height width"]:
        b, v, c, h, w = x.shape
        queries = x.permute(0, 1, 3, 4, 2).reshape(-1, 1, c)
        queries = self.attend_samples(self.cross_norm(queries), samples) + queries
        normed = self.image_norm(queries).reshape(b * v, h, w, c).permute(0, 3, 1, 2)
        image = self.image_attention(normed) + normed
        x = image + queries.reshape(b * v, h, w, c).permute(0, 3, 1, 2)
        return x.unflatten(0, (b, v))

    def attend_samples(
        self, queries: Float[Tensor, "ray 1 channel"], samples: Float[Tensor, "ray key channel"]
    ) -> Float[Tensor, "ray 1 channel"]:
        """Cross-attention of each ray's query to its own samples, in blocks of rays (``KEY_VALUE_BLOCK``)."""
        per_ray = samples.shape[1] * self.cross.to_kv.out_features
        rays = max(1, KEY_VALUE_BLOCK // per_ray)
        if rays >= queries.shape[0]:
            return self.cross(queries, samples)
        return torch.cat(
            [
                self.cross(queries[i : i + rays], samples[i : i + rays])
                for i in range(0, queries.shape[0], rays)
            ]
        )


class EpipolarTransformer(nn.Module):
    """Features of K views (with cameras and depth ranges) -> features refined across the views."""

    def __init__(self, channels: int, config: EpipolarConfig, num_view_embeddings: int) -> None:
        super().__init__()
        self.config = config
        self.downscale = nn.Conv2d(channels, channels, config.downscale, config.downscale)
        self.depth_encoding = nn.Linear(2 * config.num_octaves, channels) if config.num_octaves > 0 else None
        self.layers = nn.ModuleList(EpipolarLayer(channels, config) for _ in range(config.num_layers))
        self.upscale = nn.ConvTranspose2d(channels, channels, config.downscale, config.downscale)
        self.refine = nn.Sequential(
            nn.Conv2d(channels, 2 * channels, 7, 1, 3), nn.GELU(), nn.Conv2d(2 * channels, channels, 7, 1, 3)
        )
        # The original has embeddings only when it is configured for more than two views.
        self.view_embeddings = (
            nn.Embedding(num_view_embeddings, channels) if num_view_embeddings > 2 else None
        )

    def forward(
        self,
        features: Float[Tensor, "batch view channel height width"],
        c2w: Float[Tensor, "batch view 4 4"],
        intrinsics: Float[Tensor, "batch view 3 3"],
        near: Float[Tensor, "batch view"],
        far: Float[Tensor, "batch view"],
        generator: torch.Generator | None = None,
    ) -> Float[Tensor, "batch view channel height width"]:
        """``generator`` draws the view-embedding shuffle (the global RNG when None)."""
        b, v = features.shape[:2]
        x = self.downscale(features.flatten(0, 1)).unflatten(0, (b, v))
        keys = self.epipolar_keys(x, c2w, intrinsics, near, far, generator)
        for layer in self.layers:
            x = layer(x, keys)
        up = self.upscale(x.flatten(0, 1))
        return (self.refine(up) + up).unflatten(0, (b, v))

    def epipolar_keys(
        self,
        coarse: Float[Tensor, "batch view channel height width"],
        c2w: Float[Tensor, "batch view 4 4"],
        intrinsics: Float[Tensor, "batch view 3 3"],
        near: Float[Tensor, "batch view"],
        far: Float[Tensor, "batch view"],
        generator: torch.Generator | None,
    ) -> Float[Tensor, "batch_view_ray key channel"]:
        """Each coarse pixel's samples along its epipolar lines with their depth code and view embedding,
        as one key sequence (sample-major, then other view) per pixel."""
        cfg = self.config
        v = coarse.shape[1]
        samples = sample_epipolar_lines(coarse, c2w, intrinsics, near, far, cfg.num_samples)
        keys = samples.features
        if self.depth_encoding is not None:
            view_near, view_far = near[:, :, None, None, None], far[:, :, None, None, None]
            depths = samples.depths.maximum(view_near).minimum(view_far)
            code = octave_encoding(
                relative_disparity(depths, view_near, view_far)[..., None], cfg.num_octaves
            )
            keys = keys + self.depth_encoding(code)
        if v > 2:
            keys = keys + self.shuffled_view_embeddings(v - 1, keys.device, generator)[:, None, None]
        # [b, v, other, ray, sample, c] -> [b v ray, sample other, c]
        return keys.permute(0, 1, 3, 4, 2, 5).flatten(3, 4).flatten(0, 2)

    def shuffled_view_embeddings(
        self, others: int, device: torch.device, generator: torch.Generator | None
    ) -> Float[Tensor, "other channel"]:
        """Embeddings of the other-view slots in a random order (a fresh permutation per call).

        An encoder configured for n views holds n rows and uses rows 0..n-2; with more views at run time,
        row r serves every slot r mod n, which is exactly the original's test-time tiling of the rows.
        """
        if self.view_embeddings is None:
            raise ValueError(
                f"this encoder has no view embeddings (configured for at most 2 views), but {others + 1} views "
                "reach its epipolar transformer; build it for that many views (num_context_views, or "
                "num_anchors with ZPressor)"
            )
        shuffle = torch.randperm(others, generator=generator, device=device)
        return self.view_embeddings.weight[shuffle % self.view_embeddings.num_embeddings]
