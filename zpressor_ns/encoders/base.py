"""What every encoder family shares: its configuration's common fields, its output, and the ZPressor stage.

An encoder maps N posed context views to pixel-aligned Gaussians. With ZPressor it does so in three parts:
1. per-view stages (a CNN or a backbone) run on every view, ``view_chunk`` views at a time;
2. the ZPressor stage (:func:`compress_views`) picks K anchors, fuses every view's features into them and
   keeps only the anchors' per-view outputs;
3. the family's own stages run on the K anchors alone (their images, cameras and near/far are gathered
   with :func:`zpressor_ns.zpressor.gather_views`).
Without ZPressor the same call keeps every view. A family supplies the per-view function and says which of
its outputs ZPressor fuses; everything about anchors, clusters, streaming and memory budgets lives here, so
every family gets the same options (``ZPressorOptions``) and the same behaviour.

Streaming (beyond the paper; the same numbers as running all views at once): anchors and clusters depend on
the cameras alone, so they are chosen first and the per-view stages run anchors-first; every view keeps only
ZPressor's input, the anchors keep all their per-view outputs. Pose-free clustering (k-means on a per-view
token, the spatial mean of ZPressor's input as the original's ``use_avg_token``) needs every view's features
before the anchors are known, so it encodes all views, clusters, then re-encodes the K anchors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int64
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from zpressor_ns.encoders.memory import MemoryEstimate, most_anchors_within
from zpressor_ns.gaussians import Gaussians
from zpressor_ns.zpressor import AttentionBackend, Clustering, FirstAnchor, ZPressor, gather_views

AnchorCount = int | Literal["auto"] | None
ClusteringSource = Literal["cameras", "kmeans"]


@dataclass(frozen=True)
class ZPressorOptions:
    """ZPressor's own options; the same for every family (the width is the family's feature width).

    The defaults are the paper's and every released model's: 6 layers, 1 head, self-attention on, the first
    anchor farthest from the mean camera centre, clusters from camera centres.
    """

    num_layers: int = 6
    """Cross-/self-attention layers (6 in the paper)."""
    num_heads: int = 1
    """Attention heads (1 in every released model)."""
    self_attention: bool = True
    """False: the paper's ablation without self-attention (the MLP moves into the cross block)."""
    first_anchor: FirstAnchor = "farthest"
    """'farthest': the camera farthest from the mean centre (the original code); 'random': as the paper's text."""
    clustering: ClusteringSource = "cameras"
    """'cameras': FPS anchors on camera centres; 'kmeans': pose-free, k-means on per-view feature tokens."""
    attention_backend: AttentionBackend = "auto"
    """Attention kernels: 'auto' (flex/sdpa in bf16 on CUDA, the fp32 cluster loop on CPU) or a named one."""
    kmeans_seed: int = 42
    """Seed of the pose-free k-means (the original's random_state)."""

    def build(self, dim: int) -> ZPressor:
        return ZPressor(
            dim=dim,
            num_heads=self.num_heads,
            num_layers=self.num_layers,
            self_attention=self.self_attention,
            first_anchor=self.first_anchor,
            attention_backend=self.attention_backend,
            kmeans_seed=self.kmeans_seed,
        )


@dataclass(frozen=True)
class EncoderConfig:
    """Fields every family's configuration has (a family's config subclasses this)."""

    use_zpressor: bool = True
    num_anchors: int = 6
    """Anchors K when the call does not say (the paper's training setting of the family)."""
    zpressor: ZPressorOptions = field(default_factory=ZPressorOptions)
    view_chunk: int = 16
    """Views per pass through the per-view stages: bounds their working memory as views grow."""
    checkpoint_view_chunks: bool = False
    """Training only: recompute each chunk's per-view activations in backward instead of storing them."""
    memory_budget_gb: float | None = None
    """GPU memory (GB) that ``num_anchors="auto"`` fits the anchors into (the family's memory model)."""

    def __post_init__(self) -> None:
        if self.view_chunk < 1:
            raise ValueError(f"view_chunk must be at least 1, got {self.view_chunk}")
        if self.memory_budget_gb is not None and self.memory_budget_gb <= 0:
            raise ValueError(f"memory_budget_gb must be positive, got {self.memory_budget_gb}")
        if self.num_anchors < 1:
            raise ValueError(f"num_anchors must be at least 1, got {self.num_anchors}")

    @property
    def required_multiple(self) -> int:
        """Image height and width must be multiples of this (a family's U-Net skips, windows, patches)."""
        return 1


@dataclass
class EncoderOutput(Gaussians):
    """The Gaussians (fields of :class:`Gaussians`, G anchor-major in FPS order) plus what training needs.

    ``depths`` are the Gaussians' depths along their rays (pixelSplat: [..., sample], several per pixel);
    ``intermediate`` (DepthSplat, training mode only) holds the same Gaussians placed at the x8-bilinear
    low-res depth; ``latent`` is the feature map the information-bottleneck loss acts on; ``clusters[b, v]``
    is the anchor slot each context view was assigned to (None without ZPressor).
    """

    depths: Float[Tensor, "batch anchor height width *sample"] | None = None
    latent: Float[Tensor, "batch anchor channel height width"] | None = None
    intermediate: Gaussians | None = None
    clusters: Int64[Tensor, "batch view"] | None = None


# A family's per-view stages: images [B, n, 3, H, W] -> its per-view outputs, each [B, n, ...]. The LAST
# output is ZPressor's input [B, n, C, h, w]; the others are kept for the anchors only.
PerViewStages = Callable[[Tensor], tuple[Tensor, ...]]


@dataclass
class CompressedViews:
    """The result of the ZPressor stage for B scenes of V views.

    ``kept`` are the per-view outputs of the kept views (the K anchors in FPS order, or every view without
    ZPressor), ``fused`` replaces the last of them with ZPressor's output (the unchanged input without it).
    """

    kept: tuple[Tensor, ...]
    fused: Float[Tensor, "batch kept channel h w"]
    anchors: Int64[Tensor, "batch anchor"] | None
    clusters: Int64[Tensor, "batch view"] | None

    def select(self, x: Tensor) -> Tensor:
        """Keep the kept views of any per-view tensor [B, V, ...] (images, cameras, near/far)."""
        return x if self.anchors is None else gather_views(x, self.anchors)


def anchors_first(anchors: Int64[Tensor, "batch anchor"], views: int) -> Int64[Tensor, "batch view"]:
    """Every batch element's views, its anchors first (in FPS order), then the others in input order.

    Anchors are distinct views, so positions below K are anchors in every batch element alike and a chunk
    of this order splits into anchors and supports without any host sync.
    """
    is_anchor = torch.zeros(anchors.shape[0], views, dtype=torch.uint8, device=anchors.device)
    is_anchor.scatter_(1, anchors, 1)
    others = torch.sort(is_anchor, dim=1, stable=True).indices[:, : views - anchors.shape[1]]
    return torch.cat((anchors, others), dim=1)


def run_per_view(
    per_view: PerViewStages,
    images: Float[Tensor, "batch view 3 height width"],
    order: Int64[Tensor, "batch view"] | None,
    keep: int,
    view_chunk: int,
    recompute: bool = False,
) -> tuple[tuple[Tensor, ...] | None, Tensor | None]:
    """The per-view stages, ``view_chunk`` views at a time, taken in ``order`` (input order if None).

    Returns every output of the first ``keep`` views of the order and, when ``order`` is given, all views'
    last output (ZPressor's input) in input order. Nothing else of a chunk outlives it (copies, not slices);
    under autograd the copies pass gradients through. ``recompute`` checkpoints each chunk.
    """
    b, v = images.shape[:2]
    batch_index = torch.arange(b, device=images.device)[:, None]
    kept: list[Tensor] | None = None
    last: Tensor | None = None
    for start in range(0, v, view_chunk):
        stop = min(start + view_chunk, v)
        index = None if order is None else order[:, start:stop]
        chunk_images = images[:, start:stop] if index is None else gather_views(images, index)
        if recompute:
            outputs = checkpoint(per_view, chunk_images, use_reentrant=False)
        else:
            outputs = per_view(chunk_images)
        if start < keep:
            count = min(stop, keep) - start
            if kept is None:
                kept = [x.new_empty(b, keep, *x.shape[2:]) for x in outputs]
            for target, source in zip(kept, outputs, strict=True):
                target[:, start : start + count] = source[:, :count]
        if index is not None:
            if last is None:
                last = outputs[-1].new_empty(b, v, *outputs[-1].shape[2:])
            last[batch_index, index] = outputs[-1]
    return (None if kept is None else tuple(kept)), last


def compress_views(
    zpressor: ZPressor | None,
    per_view: PerViewStages,
    images: Float[Tensor, "batch view 3 height width"],
    c2w: Float[Tensor, "batch view 4 4"],
    num_anchors: int,
    config: EncoderConfig,
    generator: torch.Generator | None = None,
) -> CompressedViews:
    """The ZPressor stage every family calls: per-view stages on all views, fused into ``num_anchors``.

    Without ``zpressor`` every view is kept and nothing is fused. Under inference the supports' features die
    when this returns, before the anchor stages run.
    """
    views = images.shape[1]
    recompute = config.checkpoint_view_chunks and torch.is_grad_enabled()
    run = lambda order, keep: run_per_view(per_view, images, order, keep, config.view_chunk, recompute)  # noqa: E731
    if zpressor is None:
        kept, _ = run(None, views)
        return CompressedViews(kept, kept[-1], None, None)
    if config.zpressor.clustering == "kmeans":
        _, features = run(torch.arange(views, device=images.device).expand(images.shape[0], views), 0)
        anchors, clusters = zpressor.cluster(None, num_anchors, tokens=features.flatten(3).mean(dim=-1))
        kept, _ = run_per_view(
            per_view, gather_views(images, anchors), None, num_anchors, config.view_chunk, recompute
        )
    else:
        anchors, clusters = zpressor.cluster(c2w, num_anchors, generator=generator)
        kept, features = run(anchors_first(anchors, views), num_anchors)
    clustering: Clustering = (anchors, clusters)
    fused = zpressor(features, c2w, num_anchors, clustering=clustering).features
    return CompressedViews(kept, fused, anchors, clusters)


class FeedForwardEncoder(nn.Module):
    """Base of every family's encoder: input checks, the anchor count, the ZPressor stage.

    A family implements ``forward(images, c2w, intrinsics, near, far, num_anchors=None, deterministic=False,
    generator=None) -> EncoderOutput`` and, for ``num_anchors="auto"``, :meth:`estimate_memory`.
    ``deterministic`` and ``generator`` matter for random forwards (pixelSplat's depth samples, ZPressor's
    random first anchor): the generator draws instead of torch's global RNG.
    """

    config: EncoderConfig
    zpressor: ZPressor | None
    # Registry name of the family ("depthsplat"), and its name for messages ("DepthSplat").
    family: str = ""
    family_name: str = "encoder"
    # Views the family's stages need at least after compression (cost volumes match across views).
    min_views: int = 1

    @property
    def method(self) -> str:
        """The method this encoder is: ``zpressor-<family>`` with ZPressor, else ``<family>``."""
        return f"zpressor-{self.family}" if self.zpressor is not None else self.family

    def check_inputs(
        self, images: Tensor, c2w: Tensor, intrinsics: Tensor, near: Tensor, far: Tensor
    ) -> None:
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be [batch, view, 3, height, width], got {tuple(images.shape)}")
        b, v, _, h, w = images.shape
        for name, tensor, tail in (
            ("c2w", c2w, (4, 4)),
            ("K", intrinsics, (3, 3)),
            ("near", near, ()),
            ("far", far, ()),
        ):
            if tuple(tensor.shape) != (b, v, *tail):
                raise ValueError(
                    f"{name} must have shape {(b, v, *tail)} to match the images, got {tuple(tensor.shape)}"
                )
        multiple = self.config.required_multiple
        if h % multiple or w % multiple:
            raise ValueError(
                f"image size {h}x{w} is not a multiple of {multiple}, which the {self.family_name} encoder "
                f"needs. Centre-crop to ({h // multiple * multiple}, {w // multiple * multiple}) and scale "
                "fx, fy accordingly"
            )
        if v < self.min_views:
            raise ValueError(f"{self.family_name} needs at least {self.min_views} context views, got {v}")

    def resolve_num_anchors(
        self, requested: AnchorCount, batch: int, views: int, height: int, width: int
    ) -> int:
        """The anchor count of a call: the configured one, the requested one, or the most that fit the budget."""
        if self.zpressor is None:
            if requested is not None and requested != views:
                raise ValueError(
                    "num_anchors only applies to encoders with ZPressor; without it every view is kept"
                )
            return views
        if requested is None:
            k = self.config.num_anchors
        elif requested == "auto":
            if self.config.memory_budget_gb is None:
                raise ValueError(
                    'num_anchors="auto" picks the anchor count from a memory budget: set memory_budget_gb '
                    "in the encoder's configuration"
                )
            k = self.anchors_for_budget(batch, views, height, width, self.config.memory_budget_gb)
        else:
            k = int(requested)
        if k > views:
            raise ValueError(
                f"num_anchors ({k}) exceeds the number of context views ({views}); give at least as many "
                "context views as anchors, or lower num_anchors"
            )
        if k < self.min_views:
            raise ValueError(
                f"{self.family_name} needs at least {self.min_views} anchors (its stages match across views)"
            )
        return k

    def anchors_for_budget(self, batch: int, views: int, height: int, width: int, budget_gb: float) -> int:
        """The most anchors (at least ``min_views``, at most ``views``) whose modelled peak fits the budget."""
        return most_anchors_within(
            lambda anchors: self.estimate_peak_bytes(batch, views, height, width, anchors),
            views,
            budget_gb,
            max(self.min_views, 1),
            setting=f" for {views} views of {height}x{width} (batch {batch})",
        )

    def estimate_memory(
        self, batch: int, views: int, height: int, width: int, anchors: int
    ) -> MemoryEstimate:
        """The family's memory model of one inference forward (``anchors`` = ``views`` without ZPressor)."""
        raise NotImplementedError(f"{self.family_name} has no memory model for num_anchors='auto'")

    def estimate_peak_bytes(self, batch: int, views: int, height: int, width: int, anchors: int) -> float:
        """Modelled peak GPU bytes of one inference forward (weights included); used by ``"auto"``."""
        return self.estimate_memory(batch, views, height, width, anchors).peak

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Parameters the original trains at its lower "pretrained" learning rate (none by default)."""
        return []

    def weight_bytes(self) -> int:
        """Bytes of the parameters and buffers (the fixed part of a memory model)."""
        tensors = (*self.parameters(), *self.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)

    def compress(
        self,
        per_view: PerViewStages,
        images: Float[Tensor, "batch view 3 height width"],
        c2w: Float[Tensor, "batch view 4 4"],
        num_anchors: AnchorCount,
        generator: torch.Generator | None = None,
    ) -> CompressedViews:
        b, v, _, h, w = images.shape
        k = self.resolve_num_anchors(num_anchors, b, v, h, w)
        return compress_views(self.zpressor, per_view, images, c2w, k, self.config, generator)
