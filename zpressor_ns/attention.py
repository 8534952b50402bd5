"""Attention kernels for ZPressor: every anchor attends to the tokens of its own cluster's support views.

Clusters are disjoint and of unequal size, so a naive batched call is impossible and the original code
loops over batch and clusters with a host sync each. The same function is computed in one of four
interchangeable forms:

- ``math``: supports gathered into padded per-anchor slots, explicit fp32 softmax attention. Exact; the
  reference for the others.
- ``cluster``: the original's loop over (batch, anchor), each anchor's supports gathered, normalised and
  projected only while it attends, through ``scaled_dot_product_attention`` (its fused kernel: exact fp32
  on CPU, no score matrix held). Memory is one cluster's keys and values, not every padded slot's; the
  host loop costs nothing on CPU, so it is the CPU default.
- ``sdpa``: the same padded layout through ``scaled_dot_product_attention`` with a key mask (memory-
  efficient kernel on CUDA, in bf16 like the original).
- ``flex``: FlexAttention over the anchors' packed query tokens and all views' tokens, with a block mask
  that admits only (anchor, support view) tiles. No padding and no host sync; the CUDA default.

The padded layouts need the largest cluster size on the host, the cluster layout every cluster's views:
one sync per forward (not per layer or cluster). Only the flex layout is free of syncs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, no_type_check

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, flex_attention

AttentionBackend = Literal["auto", "math", "cluster", "sdpa", "flex"]
ATTENTION_BACKENDS: tuple[str, ...] = ("auto", "math", "cluster", "sdpa", "flex")

# FlexAttention's tile size: block-mask granularity along queries and keys.
FLEX_BLOCK_SIZE = 128

# Support tokens are layer-normed and projected to keys/values in chunks of about this many tokens, so
# the fp32 intermediates of one chunk, not of all views, are alive at once (flex path).
CONTEXT_CHUNK_TOKENS = 1 << 16

ProjectKeyValue = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class KernelChoice:
    """Which attention kernel runs, and in which dtype its inputs are cast (bf16 on CUDA, as the original)."""

    backend: Literal["math", "cluster", "sdpa", "flex"]
    dtype: torch.dtype

    @property
    def exact(self) -> bool:
        return self.backend == "math"


def choose_kernel(backend: AttentionBackend, device: torch.device) -> KernelChoice:
    """Resolve ``auto`` by device: the cluster loop in fp32 off CUDA, FlexAttention (SDPA without Triton) on
    CUDA. Every backend but ``math`` runs its attention in bf16 on CUDA, as the original."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
    on_cuda = device.type == "cuda"
    if backend == "auto":
        if not on_cuda:
            backend = "cluster"
        else:
            from torch.utils._triton import has_triton

            backend = "flex" if has_triton() else "sdpa"
    dtype = torch.bfloat16 if on_cuda and backend != "math" else torch.float32
    return KernelChoice(backend=backend, dtype=dtype)


def dense_attention(
    query: Float[Tensor, "*batch query dim"],
    key: Float[Tensor, "*batch key dim"],
    value: Float[Tensor, "*batch key dim"],
    scale: float,
    key_mask: Bool[Tensor, "*#batch #query key"] | None = None,
) -> Float[Tensor, "*batch query dim"]:
    """Plain softmax(q k^T * scale) v in the inputs' precision; masked keys get zero weight.

    The caller guarantees at least one admitted key per row, so no row is all -inf.
    """
    scores = (query @ key.transpose(-1, -2)) * scale
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, float("-inf"))
    return scores.softmax(dim=-1) @ value


def attention(
    query: Float[Tensor, "*batch query dim"],
    key: Float[Tensor, "*batch key dim"],
    value: Float[Tensor, "*batch key dim"],
    scale: float,
    kernel: KernelChoice,
    key_mask: Bool[Tensor, "*#batch #query key"] | None = None,
) -> Float[Tensor, "*batch query dim"]:
    """Dense attention: exact math for ``math``, otherwise SDPA in the kernel's dtype; output in the query's dtype."""
    if kernel.exact:
        return dense_attention(query, key, value, scale, key_mask)
    # The fused kernels take 4-d inputs only (others fall back to the unfused math kernel).
    batch_shape = query.shape[:-3]
    if key_mask is not None:
        key_mask = key_mask.expand(*batch_shape, *key_mask.shape[-3:]).reshape(-1, *key_mask.shape[-3:])
    out = F.scaled_dot_product_attention(
        query.to(kernel.dtype).reshape(-1, *query.shape[-3:]),
        key.to(kernel.dtype).reshape(-1, *key.shape[-3:]),
        value.to(kernel.dtype).reshape(-1, *value.shape[-3:]),
        attn_mask=key_mask,
        scale=scale,
    )
    return out.reshape(query.shape).to(query.dtype)


def split_heads(
    x: Float[Tensor, "*batch token channel"], num_heads: int
) -> Float[Tensor, "*batch head token dim"]:
    *batch, tokens, channels = x.shape
    return x.reshape(*batch, tokens, num_heads, channels // num_heads).transpose(-2, -3)


def merge_heads(x: Float[Tensor, "*batch head token dim"]) -> Float[Tensor, "*batch token channel"]:
    *batch, heads, tokens, dim = x.shape
    return x.transpose(-2, -3).reshape(*batch, tokens, heads * dim)


class PaddedSupports:
    """Each anchor's support views gathered into ``slots`` padded slots (ascending view order).

    The support tokens are gathered once per forward and reused by every layer, since supports always
    contribute their original features. An anchor without supports keeps one admitted dummy slot so no
    attention row is empty; the caller discards that anchor's update.
    """

    def __init__(
        self,
        view_tokens: Float[Tensor, "batch view token channel"],
        is_support: Bool[Tensor, "batch anchor view"],
        kernel: KernelChoice,
    ) -> None:
        batch, _, num_tokens, _ = view_tokens.shape
        counts = is_support.sum(dim=-1)
        # The forward's single host sync: the padded width must be a Python int.
        slots = max(int(counts.max()), 1)
        order = torch.sort((~is_support).to(torch.uint8), dim=-1, stable=True).indices[..., :slots]
        slot = torch.arange(slots, device=is_support.device)
        admitted = (slot < counts[..., None]) | ((counts[..., None] == 0) & (slot == 0))
        batch_index = torch.arange(batch, device=view_tokens.device)[:, None, None]
        self.view_index: Int[Tensor, "batch anchor slot"] = order
        self.tokens: Float[Tensor, "batch anchor slot token channel"] = view_tokens[batch_index, order]
        self.key_mask: Bool[Tensor, "batch anchor key"] = admitted.repeat_interleave(num_tokens, dim=-1)
        self.kernel = kernel

    def attend(
        self,
        query: Float[Tensor, "batch anchor token channel"],
        project_key_value: ProjectKeyValue,
        num_heads: int,
        scale: float,
    ) -> Float[Tensor, "batch anchor token channel"]:
        batch, anchors, slots, num_tokens, channels = self.tokens.shape
        key, value = project_key_value(self.tokens).chunk(2, dim=-1)
        key = split_heads(key.reshape(batch, anchors, slots * num_tokens, channels), num_heads)
        value = split_heads(value.reshape(batch, anchors, slots * num_tokens, channels), num_heads)
        out = attention(
            split_heads(query, num_heads), key, value, scale, self.kernel, self.key_mask[:, :, None, None, :]
        )
        return merge_heads(out)


class FlexSupports:
    """All views' tokens as one key sequence and the anchors' tokens as one query sequence per batch
    element, with a block mask that admits an (anchor, view) pair only when the view is the anchor's
    support. FlexAttention then skips every other tile: the work is the cluster-wise attention's, with
    neither padding nor host syncs. Anchors without supports come out as zeros (discarded by the caller).
    """

    def __init__(
        self,
        view_tokens: Float[Tensor, "batch view token channel"],
        is_support: Bool[Tensor, "batch anchor view"],
        kernel: KernelChoice,
    ) -> None:
        self.view_tokens = view_tokens
        self.block_mask = support_block_mask(is_support, view_tokens.shape[2])
        self.kernel = kernel

    def project_all_views(
        self, project_key_value: ProjectKeyValue, num_heads: int
    ) -> tuple[Float[Tensor, "batch head key dim"], Float[Tensor, "batch head key dim"]]:
        """Keys and values of every view, written chunk by chunk into kernel-dtype buffers."""
        batch, views, num_tokens, channels = self.view_tokens.shape
        device = self.view_tokens.device
        key = torch.empty(batch, views, num_tokens, channels, dtype=self.kernel.dtype, device=device)
        value = torch.empty_like(key)
        step = max(1, CONTEXT_CHUNK_TOKENS // num_tokens)
        for start in range(0, views, step):
            chunk_key, chunk_value = project_key_value(self.view_tokens[:, start : start + step]).chunk(
                2, dim=-1
            )
            key[:, start : start + step] = chunk_key
            value[:, start : start + step] = chunk_value
        flat = (batch, views * num_tokens, channels)
        return split_heads(key.view(flat), num_heads), split_heads(value.view(flat), num_heads)

    def attend(
        self,
        query: Float[Tensor, "batch anchor token channel"],
        project_key_value: ProjectKeyValue,
        num_heads: int,
        scale: float,
    ) -> Float[Tensor, "batch anchor token channel"]:
        batch, anchors, num_tokens, channels = query.shape
        key, value = self.project_all_views(project_key_value, num_heads)
        packed_query = split_heads(query.reshape(batch, anchors * num_tokens, channels), num_heads)
        out = _flex_call(query.device)(
            packed_query.to(self.kernel.dtype), key, value, block_mask=self.block_mask, scale=scale
        )
        return merge_heads(out).reshape(batch, anchors, num_tokens, channels).to(query.dtype)


class ClusterSupports:
    """Each anchor attends to its own supports in turn (the original's loop over batch and clusters).

    Nothing is gathered ahead: per layer and anchor, the support tokens are copied out of the views'
    tokens (one copy, token-major), normalised and projected, attended to and dropped, so one cluster's
    keys and values are alive at a time. Anchors without supports come out as zeros (discarded by the
    caller).
    """

    def __init__(
        self,
        view_tokens: Float[Tensor, "batch view token channel"],
        is_support: Bool[Tensor, "batch anchor view"],
        kernel: KernelChoice,
    ) -> None:
        self.view_tokens = view_tokens
        self.kernel = kernel
        # The forward's single host sync: every anchor's support views.
        device = view_tokens.device
        self.support_views: list[list[Int[Tensor, " support"]]] = [
            [row.nonzero()[:, 0].to(device) for row in anchors] for anchors in is_support.cpu()
        ]

    def attend(
        self,
        query: Float[Tensor, "batch anchor token channel"],
        project_key_value: ProjectKeyValue,
        num_heads: int,
        scale: float,
    ) -> Float[Tensor, "batch anchor token channel"]:
        batch, anchors, num_tokens, channels = query.shape
        outputs = []
        for b in range(batch):
            for k in range(anchors):
                views = self.support_views[b][k]
                if views.numel() == 0:
                    outputs.append(torch.zeros_like(query[b, k]))
                    continue
                context = self.view_tokens[b].index_select(0, views).reshape(-1, channels)
                key, value = project_key_value(context).chunk(2, dim=-1)
                out = attention(
                    split_heads(query[b, k], num_heads),
                    split_heads(key, num_heads),
                    split_heads(value, num_heads),
                    scale,
                    self.kernel,
                )
                outputs.append(merge_heads(out))
        return torch.stack(outputs).view(batch, anchors, num_tokens, channels)


SupportLayout = PaddedSupports | ClusterSupports | FlexSupports


def support_layout(
    view_tokens: Float[Tensor, "batch view token channel"],
    is_support: Bool[Tensor, "batch anchor view"],
    kernel: KernelChoice,
) -> SupportLayout:
    """Per-forward preparation shared by all layers' cross-attention."""
    if kernel.backend == "flex":
        return FlexSupports(view_tokens, is_support, kernel)
    if kernel.backend == "cluster":
        return ClusterSupports(view_tokens, is_support, kernel)
    return PaddedSupports(view_tokens, is_support, kernel)


def _flex_call(device: torch.device) -> Callable[..., Tensor]:
    """FlexAttention is only fused when compiled; outside a compiled region on CUDA, use a compiled copy."""
    if device.type == "cuda" and not torch.compiler.is_compiling():
        return _compiled_flex_attention()
    return flex_attention


@functools.cache
def _compiled_flex_attention() -> Callable[..., Tensor]:
    return torch.compile(flex_attention)


def _block_items(
    length: int, tokens_per_item: int, block_size: int, device: torch.device
) -> tuple[Int[Tensor, " block"], Int[Tensor, " block"], Bool[Tensor, " block"]]:
    """First and last item (anchor or view, ``tokens_per_item`` consecutive tokens each) that every tile
    touches, and whether the tile lies entirely inside the sequence."""
    blocks = -(-length // block_size)
    start = torch.arange(blocks, device=device) * block_size
    last = torch.clamp(start + block_size, max=length) - 1
    return start // tokens_per_item, last // tokens_per_item, start + block_size <= length


def _ordered_blocks(
    admitted: Bool[Tensor, "batch query_block key_block"],
) -> tuple[Int[Tensor, "batch 1 query_block"], Int[Tensor, "batch 1 query_block key_block"]]:
    """BlockMask's ordered form: per query tile, the count and (ascending) indices of admitted key tiles."""
    counts = admitted.sum(dim=-1, dtype=torch.int32)
    indices = torch.argsort(admitted.to(torch.uint8), dim=-1, descending=True, stable=True).to(torch.int32)
    return counts[:, None], indices[:, None]


def support_block_mask(
    is_support: Bool[Tensor, "batch anchor view"], tokens_per_view: int, block_size: int = FLEX_BLOCK_SIZE
) -> BlockMask:
    """Block mask for queries = anchors' tokens (anchor-major) against keys = views' tokens (view-major).

    Tiles are classified at tile level without materialising the token-level mask: a tile is skipped
    when none of the (anchor, view) pairs it covers is a support pair, "full" (no per-element mask) when
    all are and it lies inside both sequences, and partial otherwise.
    """
    _, anchors, views = is_support.shape
    device = is_support.device
    query_first, query_last, query_inside = _block_items(
        anchors * tokens_per_view, tokens_per_view, block_size, device
    )
    key_first, key_last, key_inside = _block_items(
        views * tokens_per_view, tokens_per_view, block_size, device
    )
    # Support pairs inside every (anchor range x view range) rectangle from 2-D prefix sums: memory of
    # the tile grid, not of tiles x views (which grows as views squared).
    prefix = F.pad(is_support.long().cumsum(dim=1).cumsum(dim=2), (1, 0, 1, 0))
    rows_end, rows_start = (query_last + 1)[:, None], query_first[:, None]
    cols_end, cols_start = (key_last + 1)[None, :], key_first[None, :]
    hits = (
        prefix[:, rows_end, cols_end]
        - prefix[:, rows_start, cols_end]
        - prefix[:, rows_end, cols_start]
        + prefix[:, rows_start, cols_start]
    )
    pairs = (query_last - query_first + 1)[:, None] * (key_last - key_first + 1)[None, :]
    full = (hits == pairs) & query_inside[:, None] & key_inside[None, :]
    partial = (hits > 0) & ~full
    num_partial, partial_index = _ordered_blocks(partial)
    num_full, full_index = _ordered_blocks(full)

    # Traced by FlexAttention (vmap, and dynamo inside its higher-order op, which refuses side effects
    # such as a run-time type checker's bookkeeping): never wrapped by a checker.
    @no_type_check
    def admits(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        # Clamping keeps lookups in bounds for the padding positions of a ragged last tile.
        anchor = torch.clamp(q_idx // tokens_per_view, max=anchors - 1)
        view = torch.clamp(kv_idx // tokens_per_view, max=views - 1)
        return is_support[b, anchor, view]

    return BlockMask.from_kv_blocks(
        num_partial,
        partial_index,
        num_full,
        full_index,
        BLOCK_SIZE=block_size,
        mask_mod=admits,
        seq_lengths=(anchors * tokens_per_view, views * tokens_per_view),
    )
