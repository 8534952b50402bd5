"""UniMatch's multi-view transformer: Swin-style window attention within a view and to its neighbours.

Each block is a self-attention layer (no FFN) followed by a cross-attention layer whose queries attend,
in one softmax, to the same window of the nearest other views; the cross layer's MLP reads
concat(source, message). Odd blocks shift the windows by half a window (Swin), masking token pairs
that were not neighbours before the roll with -100. Each message is merged, layer-normalised and added
to the source (post-norm on the message, not on the stream).

One detail is kept on purpose: the original tiles the shift mask along the key axis once per
neighbour view, while its keys are laid out token-major (token 0 of every neighbour, then token 1, ...).
With more than one neighbour the mask therefore lines up with the keys only approximately. Published
weights were trained with it, so the keys here use the same layout and the same tiled mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int64
from torch import Tensor, nn

SHIFT_MASK_VALUE = -100.0


def shifted_window_mask(
    height: int, width: int, splits: int, device: torch.device | str | None = None
) -> Float[Tensor, "window token token"]:
    """Additive mask for half-window-shifted attention: 0 within a region of the unrolled map, -100 across."""
    window_h, window_w = height // splits, width // splits
    shift_h, shift_w = window_h // 2, window_w // 2
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    # Regions of the rolled map: before the last window, the last window's first half, the wrapped part.
    row_region = (rows >= height - window_h).long() + (rows >= height - shift_h).long()
    col_region = (cols >= width - window_w).long() + (cols >= width - shift_w).long()
    labels = (row_region[:, None] * 3 + col_region[None, :]).float()
    windows = _partition(labels[None, :, :, None], splits)[0, :, :, 0]  # [window, token]
    different = windows[:, :, None] != windows[:, None, :]
    return torch.where(different, SHIFT_MASK_VALUE, 0.0)


def _partition(x: Float[Tensor, "n h w c"], splits: int) -> Float[Tensor, "n window token c"]:
    n, h, w, c = x.shape
    x = x.reshape(n, splits, h // splits, splits, w // splits, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, splits * splits, (h // splits) * (w // splits), c)


def _merge(x: Float[Tensor, "n window token c"], splits: int, h: int, w: int) -> Float[Tensor, "n h w c"]:
    n, _, _, c = x.shape
    x = x.reshape(n, splits, splits, h // splits, w // splits, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h, w, c)


def window_attention(
    query: Float[Tensor, "n h w c"],
    key: Float[Tensor, "n m h w c"],
    value: Float[Tensor, "n m h w c"],
    splits: int,
    shift_mask: Float[Tensor, "window token token"] | None,
) -> Float[Tensor, "n h w c"]:
    """Single-head attention of each window of ``query`` to the same window of all ``m`` key maps.

    ``shift_mask`` given means the windows are shifted by half a window first (and back after).
    """
    n, m, h, w, c = key.shape
    if shift_mask is not None:
        shift = (-(h // splits // 2), -(w // splits // 2))
        query = torch.roll(query, shift, dims=(1, 2))
        key = torch.roll(key, shift, dims=(2, 3))
        value = torch.roll(value, shift, dims=(2, 3))
    q = _partition(query, splits)  # [n, window, token, c]

    def keys_token_major(x: Tensor) -> Tensor:  # [n, m, h, w, c] -> [n, window, token * m, c]
        x = _partition(x.permute(0, 2, 3, 1, 4).reshape(n, h, w, m * c), splits)
        return x.reshape(n, splits * splits, -1, c)

    mask = None if shift_mask is None else shift_mask.repeat(1, 1, m).to(q.dtype)
    out = F.scaled_dot_product_attention(q, keys_token_major(key), keys_token_major(value), attn_mask=mask)
    out = _merge(out, splits, h, w)
    if shift_mask is not None:
        out = torch.roll(out, (h // splits // 2, w // splits // 2), dims=(1, 2))
    return out


class AttentionLayer(nn.Module):
    """Projections, window attention, merge + LayerNorm on the message; optionally the concat-MLP."""

    def __init__(self, dim: int, with_ffn: bool, ffn_expansion: int = 4) -> None:
        super().__init__()
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.merge = nn.Linear(dim, dim, bias=False)
        self.norm1 = nn.LayerNorm(dim)
        self.with_ffn = with_ffn
        if with_ffn:
            hidden = 2 * dim * ffn_expansion
            self.mlp = nn.Sequential(
                nn.Linear(2 * dim, hidden, bias=False), nn.GELU(), nn.Linear(hidden, dim, bias=False)
            )
            self.norm2 = nn.LayerNorm(dim)

    def forward(
        self,
        source: Float[Tensor, "n h w c"],
        context: Float[Tensor, "n m h w c"],
        splits: int,
        shift_mask: Float[Tensor, "window token token"] | None,
    ) -> Float[Tensor, "n h w c"]:
        message = window_attention(
            self.q_proj(source), self.k_proj(context), self.v_proj(context), splits, shift_mask
        )
        message = self.norm1(self.merge(message))
        if self.with_ffn:
            message = self.norm2(self.mlp(torch.cat((source, message), dim=-1)))
        return source + message


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, ffn_expansion: int = 4) -> None:
        super().__init__()
        self.self_attn = AttentionLayer(dim, with_ffn=False)
        self.cross_attn_ffn = AttentionLayer(dim, with_ffn=True, ffn_expansion=ffn_expansion)


class MultiViewTransformer(nn.Module):
    """Six blocks (by default) over the views of each scene; odd blocks use shifted windows."""

    def __init__(self, dim: int = 128, num_layers: int = 6, ffn_expansion: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerBlock(dim, ffn_expansion) for _ in range(num_layers))
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(
        self,
        features: Float[Tensor, "batch view channel height width"],
        neighbours: Int64[Tensor, "batch view neighbour"],
        splits: int = 2,
    ) -> Float[Tensor, "batch view channel height width"]:
        """``neighbours[b, v]`` lists the views that view ``v`` cross-attends to (not ``v`` itself)."""
        b, v, c, h, w = features.shape
        if h % splits or w % splits:
            raise ValueError(f"feature map {h}x{w} cannot be split into {splits}x{splits} attention windows")
        if neighbours.shape[-1] < 1:
            raise ValueError("the multi-view transformer needs at least two views (each needs a neighbour)")
        shift_mask = shifted_window_mask(h, w, splits, features.device)
        batch_index = torch.arange(b, device=features.device)[:, None, None]
        x = features.permute(0, 1, 3, 4, 2)  # [b, v, h, w, c]
        for i, block in enumerate(self.layers):
            mask = shift_mask if i % 2 == 1 else None
            # Cross-attention reads the neighbours as they were at the start of the block.
            context = x[batch_index, neighbours].flatten(0, 1)  # [b * v, m, h, w, c]
            stream = x.flatten(0, 1)
            stream = block.self_attn(stream, stream[:, None], splits, mask)
            stream = block.cross_attn_ffn(stream, context, splits, mask)
            x = stream.unflatten(0, (b, v))
        return x.permute(0, 1, 4, 2, 3)
