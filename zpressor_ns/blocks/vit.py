"""DINO-family Vision Transformers: DINOv2 ViTs (patch 14, DepthSplat's monocular features) and the
original DINO ViTs (patch 8/16, pixelSplat's backbone).

The two are the same pre-norm transformer; DINOv2 adds LayerScale on both residual branches
(``ViTConfig.layer_scale``). Parameter names follow the hub checkpoints (``cls_token``, ``pos_embed``,
``patch_embed.proj``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}``,
``norm``; no ``ls*`` without LayerScale), so DINO, DINOv2 and Depth Anything V2 encoder weights load
without renaming. There is no ``mask_token``: DepthSplat deletes it, and a hub state dict must drop it
before loading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn


@dataclass(frozen=True)
class ViTConfig:
    """Size of a ViT, its flavour (DINOv2 with LayerScale or DINO without), and which blocks are read."""

    dim: int
    depth: int
    num_heads: int
    intermediate_layers: tuple[int, ...]
    patch_size: int = 14
    # Side of the square patch grid the positional embedding was trained for (518 px / 14).
    pos_grid: int = 37
    mlp_ratio: int = 4
    # DINOv2 stretches the interpolation scale by this many patches (a historical offset that
    # pretrained weights are used to), so it is part of the model, not a tuning knob.
    pos_interpolation_offset: float = 0.1
    # DINOv2's learned per-channel gains on the residual branches; the original DINO has none.
    layer_scale: bool = True

    def __post_init__(self) -> None:
        if self.dim % self.num_heads != 0:
            raise ValueError(f"ViT dim {self.dim} is not divisible by num_heads {self.num_heads}")
        layers = self.intermediate_layers
        if not layers or list(layers) != sorted(set(layers)) or layers[0] < 0 or layers[-1] >= self.depth:
            raise ValueError(
                f"intermediate_layers {layers} must be increasing block indices in [0, {self.depth})"
            )


VIT_PRESETS: dict[str, ViTConfig] = {
    "vits": ViTConfig(dim=384, depth=12, num_heads=6, intermediate_layers=(2, 5, 8, 11)),
    "vitb": ViTConfig(dim=768, depth=12, num_heads=12, intermediate_layers=(2, 5, 8, 11)),
    "vitl": ViTConfig(dim=1024, depth=24, num_heads=16, intermediate_layers=(4, 11, 17, 23)),
    # Same code path at a size that trains on a CPU (the "small" method presets).
    "tiny": ViTConfig(dim=64, depth=4, num_heads=2, intermediate_layers=(0, 1, 2, 3)),
    # DINO ViT-B/8 (torch.hub facebookresearch/dino "dino_vitb8", 224 px pretraining): pixelSplat's
    # backbone, which reads the normed tokens of the last block.
    "dino_vitb8": ViTConfig(
        dim=768,
        depth=12,
        num_heads=12,
        intermediate_layers=(11,),
        patch_size=8,
        pos_grid=28,
        layer_scale=False,
    ),
    "dino_tiny": ViTConfig(
        dim=64, depth=2, num_heads=2, intermediate_layers=(1,), patch_size=8, pos_grid=4, layer_scale=False
    ),
}


class PatchEmbedding(nn.Module):
    """Non-overlapping patch projection to tokens."""

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Float[Tensor, "batch 3 height width"]) -> Float[Tensor, "batch token dim"]:
        return self.proj(images).flatten(2).transpose(1, 2)


class LayerScale(nn.Module):
    """Learned per-channel gain on a residual branch."""

    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: Float[Tensor, "*batch dim"]) -> Float[Tensor, "*batch dim"]:
        return x * self.gamma


class SelfAttention(nn.Module):
    """Multi-head self-attention; SDPA picks a fused kernel on GPU and exact math on CPU."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Float[Tensor, "batch token dim"]) -> Float[Tensor, "batch token dim"]:
        batch, tokens, dim = x.shape
        # Output channels of qkv are laid out (q|k|v, head, head_dim).
        qkv = self.qkv(x).view(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class FeedForward(nn.Module):
    """Two-layer GELU feed-forward network."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Float[Tensor, "*batch dim"]) -> Float[Tensor, "*batch dim"]:
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block, with LayerScale on both residual branches when ``layer_scale``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, layer_scale: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = FeedForward(dim, dim * mlp_ratio)
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x: Float[Tensor, "batch token dim"]) -> Float[Tensor, "batch token dim"]:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """ViT with a class token whose intermediate patch tokens serve as dense image features."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        self.patch_embed = PatchEmbedding(config.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.pos_grid**2, dim))
        self.blocks = nn.ModuleList(
            [
                TransformerBlock(dim, config.num_heads, config.mlp_ratio, config.layer_scale)
                for _ in range(config.depth)
            ]
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        """DINOv2's initialisation, so a randomly initialised model has the usual statistics."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def interpolated_pos_embed(self, grid_h: int, grid_w: int) -> Float[Tensor, "1 token dim"]:
        """Positional embedding for a ``grid_h`` x ``grid_w`` patch grid (class token first).

        Bicubic resampling of the trained square grid, driven by a scale factor that includes the
        DINOv2 offset (not by the output size), because pretrained weights expect exactly that sampling.
        """
        grid = self.config.pos_grid
        if (grid_h, grid_w) == (grid, grid):
            return self.pos_embed
        dim = self.config.dim
        pos = self.pos_embed.float()
        patch_pos = pos[:, 1:].reshape(1, grid, grid, dim).permute(0, 3, 1, 2)
        offset = self.config.pos_interpolation_offset
        scale = ((grid_h + offset) / grid, (grid_w + offset) / grid)
        patch_pos = F.interpolate(patch_pos, scale_factor=scale, mode="bicubic", align_corners=False)
        if patch_pos.shape[-2:] != (grid_h, grid_w):
            raise RuntimeError(
                f"positional embedding resampled to {tuple(patch_pos.shape[-2:])}, expected {(grid_h, grid_w)}"
            )
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
        return torch.cat((pos[:, :1], patch_pos), dim=1).to(self.pos_embed.dtype)

    def intermediate_tokens(
        self,
        images: Float[Tensor, "batch 3 height width"],
        indices: Sequence[int] | None = None,
        norm: bool = True,
    ) -> list[Float[Tensor, "batch token dim"]]:
        """All tokens (class token first, then the patch grid row-major) after the given blocks.

        ``indices`` defaults to the config's ``intermediate_layers``; with ``norm`` the final LayerNorm is
        applied to each. Blocks after the last requested one are not run.
        """
        indices = self.config.intermediate_layers if indices is None else tuple(indices)
        if any(i < 0 or i >= len(self.blocks) for i in indices):
            raise ValueError(f"block indices {indices} out of range for a {len(self.blocks)}-block ViT")
        grid_h, grid_w = self.patch_grid(images.shape[-2], images.shape[-1])
        tokens = self.patch_embed(images)
        tokens = torch.cat((self.cls_token.expand(images.shape[0], -1, -1), tokens), dim=1)
        tokens = tokens + self.interpolated_pos_embed(grid_h, grid_w)

        wanted = set(indices)
        taken: dict[int, Tensor] = {}
        for i, block in enumerate(self.blocks[: max(indices) + 1]):
            tokens = block(tokens)
            if i in wanted:
                taken[i] = tokens
        return [self.norm(taken[i]) if norm else taken[i] for i in indices]

    def patch_grid(self, height: int, width: int) -> tuple[int, int]:
        """Patch rows and columns of an image; its sides must be multiples of the patch size."""
        patch = self.config.patch_size
        if height % patch or width % patch:
            raise ValueError(
                f"ViT input {height}x{width} is not a multiple of the patch size {patch}; "
                f"resize to ({height // patch * patch}, {width // patch * patch}) first"
            )
        return height // patch, width // patch

    def get_intermediate_layers(
        self,
        images: Float[Tensor, "batch 3 height width"],
        indices: Sequence[int] | None = None,
        norm: bool = True,
    ) -> list[Float[Tensor, "batch dim grid_h grid_w"]]:
        """Patch tokens (class token dropped) after the given blocks, as feature maps on the patch grid.

        See :meth:`intermediate_tokens`; with ``norm`` the final LayerNorm is applied to each, as
        DepthSplat does.
        """
        grid_h, grid_w = self.patch_grid(images.shape[-2], images.shape[-1])
        return [
            out[:, 1:].reshape(images.shape[0], grid_h, grid_w, -1).permute(0, 3, 1, 2).contiguous()
            for out in self.intermediate_tokens(images, indices, norm)
        ]

    def forward(
        self, images: Float[Tensor, "batch 3 height width"]
    ) -> list[Float[Tensor, "batch dim grid_h grid_w"]]:
        return self.get_intermediate_layers(images)


def build_vit(name: str) -> VisionTransformer:
    """A ViT from ``VIT_PRESETS`` by name (vits, vitb, vitl, tiny)."""
    if name not in VIT_PRESETS:
        raise ValueError(f"unknown ViT size {name!r}; choose one of {sorted(VIT_PRESETS)}")
    return VisionTransformer(VIT_PRESETS[name])
