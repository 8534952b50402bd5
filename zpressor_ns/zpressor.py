"""ZPressor: compress V context views into K anchor views, for any feed-forward splatting encoder.

Three steps (paper Sec. 3, with the original code's exact choices):
1. anchors: farthest-point sampling on camera centres, starting from the camera farthest from the mean
   centre (or a random one), returned in FPS order;
2. assignment: every view joins its nearest anchor; an anchor is never its own support;
3. fusion: a stack of layers, each pre-LN cross-attention (anchor tokens attend to the ORIGINAL tokens of
   all their supports) -> pre-LN self-attention within each anchor -> pre-LN 4x GELU MLP. Anchors without
   supports skip the cross-attention. Only the anchor stream changes from layer to layer.

A pose-free variant clusters views by a per-view token with k-means instead of steps 1-2.
The pieces are plain functions (``select_anchors``, ``assign_to_anchors``, ``kmeans_anchors``,
``gather_views``) so encoders can keep only the anchors' images, cameras and auxiliary tensors, and
``ZPressor.cluster`` needs only the cameras, so an encoder can choose the anchors before it computes any
feature (``forward(..., clustering=...)`` then reuses them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from zpressor_ns.attention import (
    AttentionBackend,
    KernelChoice,
    SupportLayout,
    attention,
    choose_kernel,
    merge_heads,
    split_heads,
    support_layout,
)

FirstAnchor = Literal["farthest", "random"]
# (anchors [batch, anchor] view indices, clusters [batch, view] anchor slots).
Clustering = tuple[Int[Tensor, "batch anchor"], Int[Tensor, "batch view"]]


# ---------------------------------------------------------------------------------------------------
# Anchor selection, assignment, gathering


def _check_num_anchors(num_anchors: int, num_views: int) -> None:
    if num_anchors < 1:
        raise ValueError(f"num_anchors must be at least 1, got {num_anchors}")
    if num_anchors > num_views:
        raise ValueError(
            f"num_anchors ({num_anchors}) exceeds the number of context views ({num_views}); "
            "give at least as many context views as anchors, or lower num_anchors"
        )


def _squared_distances(
    points: Float[Tensor, "batch view dim"], centres: Float[Tensor, "batch centre dim"]
) -> Float[Tensor, "batch view centre"]:
    """Exact squared L2 distances (difference form, not the expanded dot-product form, so ties stay ties)."""
    return ((points[:, :, None, :] - centres[:, None, :, :]) ** 2).sum(dim=-1)


def gather_views(x: Tensor, index: Int[Tensor, "batch ..."]) -> Tensor:
    """``x[b, index[b, ...]]`` for every batch element: keep the selected views of any per-view tensor.

    ``x`` is [B, V, ...] (images, c2w, intrinsics, near/far, features); ``index`` is [B, K] (anchors) or
    any [B, ...] of view indices. The result is [B, K, ...].
    """
    if x.shape[0] != index.shape[0]:
        raise ValueError(
            f"gather_views: batch sizes differ (x: {tuple(x.shape)}, index: {tuple(index.shape)})"
        )
    batch_index = torch.arange(x.shape[0], device=index.device).view(-1, *([1] * (index.dim() - 1)))
    return x[batch_index, index]


def select_anchors(
    centres: Float[Tensor, "batch view 3"],
    num_anchors: int,
    first: FirstAnchor = "farthest",
    generator: torch.Generator | None = None,
) -> Int[Tensor, "batch anchor"]:
    """Farthest-point sampling on camera centres; anchors in FPS order.

    ``first="farthest"`` starts, as the original code does, from the camera farthest (squared L2) from the
    mean centre, lowest index on ties; ``"random"`` starts from a uniformly drawn camera (``generator``
    seeds it), as the paper's text describes. Each next anchor maximises the squared distance to the
    nearest anchor so far.

    Deviation from the original: it can pick a view twice when all remaining views coincide with chosen
    ones (it argmaxes over all views, chosen ones included). Here chosen views are never eligible, so the K
    anchors are always distinct views (K <= V); among zero-distance candidates the lowest index wins.
    """
    batch, views, _ = centres.shape
    _check_num_anchors(num_anchors, views)
    if first == "farthest":
        mean_centre = centres.sum(dim=1, keepdim=True) / views
        current = ((centres - mean_centre) ** 2).sum(dim=-1).argmax(dim=-1)
    elif first == "random":
        current = torch.randint(views, (batch,), generator=generator, device=centres.device)
    else:
        raise ValueError(f"first must be 'farthest' or 'random', got {first!r}")

    view_index = torch.arange(views, device=centres.device)
    chosen = torch.zeros(batch, views, dtype=torch.bool, device=centres.device)
    nearest_anchor_distance = torch.full(
        (batch, views), float("inf"), dtype=centres.dtype, device=centres.device
    )
    anchors = []
    for _ in range(num_anchors):
        anchors.append(current)
        chosen = chosen | (view_index == current[:, None])
        newest = gather_views(centres, current[:, None])
        distance = _squared_distances(centres, newest)[..., 0]
        nearest_anchor_distance = torch.minimum(nearest_anchor_distance, distance)
        current = nearest_anchor_distance.masked_fill(chosen, -1.0).argmax(dim=-1)
    return torch.stack(anchors, dim=1)


def assign_to_anchors(
    centres: Float[Tensor, "batch view 3"], anchors: Int[Tensor, "batch anchor"]
) -> Int[Tensor, "batch view"]:
    """Cluster index (position in ``anchors``) of every view: its nearest anchor centre, lower index on ties.

    An anchor normally lands in its own cluster; with coincident centres it can land in an earlier
    anchor's cluster, where it then acts as a support.
    """
    return _squared_distances(centres, gather_views(centres, anchors)).argmin(dim=-1)


def support_sets(
    anchors: Int[Tensor, "batch anchor"], clusters: Int[Tensor, "batch view"]
) -> Bool[Tensor, "batch anchor view"]:
    """``[b, k, v]``: view v is a support of anchor k (in k's cluster and not the anchor itself)."""
    num_anchors, views = anchors.shape[1], clusters.shape[1]
    cluster_ids = torch.arange(num_anchors, device=anchors.device)
    in_cluster = clusters[:, None, :] == cluster_ids[None, :, None]
    is_self = anchors[:, :, None] == torch.arange(views, device=anchors.device)[None, None, :]
    return in_cluster & ~is_self


def _kmeans_plus_plus(
    points: Float[Tensor, "run view feature"], num_clusters: int, generator: torch.Generator
) -> Float[Tensor, "run cluster feature"]:
    """k-means++ seeding, batched over runs: each next centre is drawn with probability ~ squared distance."""
    runs, views, _ = points.shape
    run_index = torch.arange(runs, device=points.device)
    first = torch.randint(views, (runs,), generator=generator, device=points.device)
    centres = [points[run_index, first]]
    nearest = ((points - centres[0][:, None]) ** 2).sum(dim=-1)
    for _ in range(1, num_clusters):
        # All-zero weights (every point already a centre) fall back to a uniform draw.
        weights = torch.where(nearest.sum(dim=-1, keepdim=True) > 0, nearest, torch.ones_like(nearest))
        cumulative = weights.cumsum(dim=-1)
        draw = (
            torch.rand(runs, 1, generator=generator, device=points.device, dtype=points.dtype)
            * cumulative[:, -1:]
        )
        pick = torch.searchsorted(cumulative, draw, right=True)[:, 0].clamp(max=views - 1)
        centres.append(points[run_index, pick])
        nearest = torch.minimum(nearest, ((points - centres[-1][:, None]) ** 2).sum(dim=-1))
    return torch.stack(centres, dim=1)


def kmeans_anchors(
    tokens: Float[Tensor, "batch view feature"],
    num_anchors: int,
    restarts: int = 10,
    iterations: int = 50,
    seed: int = 42,
) -> tuple[Int[Tensor, "batch anchor"], Int[Tensor, "batch view"]]:
    """Pose-free clustering: k-means on per-view tokens; anchor k = the member of cluster k closest to its centre.

    Deterministic for a given seed and device. All restarts of all batch elements run together (k-means++
    seeding, a fixed number of Lloyd steps); the restart with the lowest inertia wins, as with
    scikit-learn's ``n_init`` (whose random streams this does not reproduce). A centre that loses all its
    points keeps its position. A cluster left empty (possible only when fewer than K distinct tokens
    exist) gets the view nearest its centre as anchor, and that anchor has no supports. Anchors come in
    cluster-id order.
    """
    batch, views, features = tokens.shape
    _check_num_anchors(num_anchors, views)
    generator = torch.Generator(device=tokens.device).manual_seed(seed)
    points = tokens.detach().float().repeat_interleave(restarts, dim=0)
    centres = _kmeans_plus_plus(points, num_anchors, generator)
    for _ in range(iterations):
        labels = _squared_distances(points, centres).argmin(dim=-1)
        membership = F.one_hot(labels, num_anchors).to(points.dtype)
        sizes = membership.sum(dim=1)[..., None]
        means = (membership.transpose(1, 2) @ points) / sizes.clamp(min=1)
        centres = torch.where(sizes > 0, means, centres)
    distances = _squared_distances(points, centres)
    nearest, labels = distances.min(dim=-1)
    best = nearest.sum(dim=-1).view(batch, restarts).argmin(dim=-1)
    chosen_run = torch.arange(batch, device=tokens.device) * restarts + best
    distances, labels = distances[chosen_run], labels[chosen_run]

    member = labels[:, :, None] == torch.arange(num_anchors, device=tokens.device)
    closest_member = distances.masked_fill(~member, float("inf")).argmin(dim=1)
    anchors = torch.where(member.any(dim=1), closest_member, distances.argmin(dim=1))
    return anchors, labels


# ---------------------------------------------------------------------------------------------------
# Fusion layers


class FeedForward(nn.Module):
    """Pre-LN 4x GELU MLP; the caller adds the residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Float[Tensor, "*batch channel"]) -> Float[Tensor, "*batch channel"]:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class SupportCrossAttention(nn.Module):
    """Anchor tokens (queries) attend to their supports' tokens; the caller adds the residual.

    Separate LayerNorms for queries and context, bias-free query and key/value projections (keys first,
    then values), output projection with bias.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def project_context(
        self, context: Float[Tensor, "*batch channel"]
    ) -> Float[Tensor, "*batch two_channel"]:
        return self.to_kv(self.norm_context(context))

    def forward(
        self, anchors: Float[Tensor, "batch anchor token channel"], supports: SupportLayout
    ) -> Float[Tensor, "batch anchor token channel"]:
        query = self.to_q(self.norm_query(anchors))
        return self.out(supports.attend(query, self.project_context, self.num_heads, self.scale))


class AnchorSelfAttention(nn.Module):
    """Pre-LN self-attention within each anchor's own tokens (no mixing across anchors); the caller adds
    the residual. With one head there is no output projection, as in the original."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim) if num_heads > 1 else nn.Identity()

    def forward(
        self, anchors: Float[Tensor, "batch anchor token channel"], kernel: KernelChoice
    ) -> Float[Tensor, "batch anchor token channel"]:
        query, key, value = (
            split_heads(t, self.num_heads) for t in self.to_qkv(self.norm(anchors)).chunk(3, dim=-1)
        )
        return self.to_out(merge_heads(attention(query, key, value, self.scale, kernel)))


class ZPressorLayer(nn.Module):
    """cross-attention -> self-attention -> MLP, each pre-LN with a residual.

    Without self-attention (the ablation) the MLP belongs to the cross block, so an anchor without
    supports skips the MLP as well, exactly as in the original.
    """

    def __init__(self, dim: int, num_heads: int, self_attention: bool) -> None:
        super().__init__()
        self.cross = SupportCrossAttention(dim, num_heads)
        self.self_attn = AnchorSelfAttention(dim, num_heads) if self_attention else None
        self.mlp = FeedForward(dim)

    def forward(
        self,
        anchors: Float[Tensor, "batch anchor token channel"],
        supports: SupportLayout,
        has_support: Bool[Tensor, "batch anchor"],
        kernel: KernelChoice,
    ) -> Float[Tensor, "batch anchor token channel"]:
        fused = anchors + self.cross(anchors, supports)
        if self.self_attn is None:
            fused = fused + self.mlp(fused)
        fused = torch.where(has_support[:, :, None, None], fused, anchors)
        if self.self_attn is not None:
            fused = fused + self.self_attn(fused, kernel)
            fused = fused + self.mlp(fused)
        return fused


# ---------------------------------------------------------------------------------------------------
# The module


@dataclass(frozen=True)
class ZPressorConfig:
    dim: int = 128
    num_heads: int = 1
    num_layers: int = 6
    self_attention: bool = True
    first_anchor: FirstAnchor = "farthest"
    attention_backend: AttentionBackend = "auto"
    kmeans_seed: int = 42


@dataclass
class ZPressorOutput:
    features: Float[Tensor, "batch anchor channel height width"]
    anchors: Int[Tensor, "batch anchor"]
    """View index of each anchor, in FPS order (k-means cluster order in pose-free mode)."""
    clusters: Int[Tensor, "batch view"]
    """Position in ``anchors`` of the cluster every view belongs to."""


class ZPressor(nn.Module):
    """V views' feature maps -> K anchors' fused feature maps (plus which views are anchors, and the clusters)."""

    def __init__(
        self,
        dim: int = 128,
        num_heads: int = 1,
        num_layers: int = 6,
        self_attention: bool = True,
        first_anchor: FirstAnchor = "farthest",
        attention_backend: AttentionBackend = "auto",
        kmeans_seed: int = 42,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.config = ZPressorConfig(
            dim, num_heads, num_layers, self_attention, first_anchor, attention_backend, kmeans_seed
        )
        choose_kernel(attention_backend, torch.device("cpu"))  # validates the name early
        self.layers = nn.ModuleList(ZPressorLayer(dim, num_heads, self_attention) for _ in range(num_layers))

    def forward(
        self,
        features: Float[Tensor, "batch view channel height width"],
        c2w: Float[Tensor, "batch view 4 4"] | None,
        num_anchors: int,
        *,
        tokens: Float[Tensor, "batch view feature"] | None = None,
        generator: torch.Generator | None = None,
        clustering: Clustering | None = None,
    ) -> ZPressorOutput:
        """Fuse ``features`` into ``num_anchors`` anchors chosen from camera centres (OpenCV c2w), or from
        ``tokens`` by k-means when given (pose-free clustering; then ``c2w`` is not used).

        ``clustering`` (from :meth:`cluster`) skips the selection: an encoder that streams its views
        chooses the anchors from the cameras before any feature exists.
        """
        if clustering is None:
            anchors, clusters = self.choose_anchors(features, c2w, num_anchors, tokens, generator)
        else:
            anchors, clusters = self._check_clustering(features, clustering, num_anchors)
        batch, views, channels, height, width = features.shape
        kernel = choose_kernel(self.config.attention_backend, features.device)
        is_support = support_sets(anchors, clusters)
        has_support = is_support.any(dim=-1)

        view_tokens = features.flatten(3).transpose(2, 3)
        supports = support_layout(view_tokens, is_support, kernel)
        # Token-major from here: the layers' norms and projections then read their rows in place.
        fused = gather_views(view_tokens, anchors).contiguous()
        for layer in self.layers:
            fused = layer(fused, supports, has_support, kernel)
        fused = fused.transpose(2, 3).reshape(batch, num_anchors, channels, height, width)
        return ZPressorOutput(features=fused, anchors=anchors, clusters=clusters)

    def choose_anchors(
        self,
        features: Float[Tensor, "batch view channel height width"],
        c2w: Float[Tensor, "batch view 4 4"] | None,
        num_anchors: int,
        tokens: Float[Tensor, "batch view feature"] | None,
        generator: torch.Generator | None,
    ) -> Clustering:
        self._check_features(features)
        batch, views = features.shape[:2]
        if c2w is not None and tokens is None and c2w.shape != (batch, views, 4, 4):
            raise ValueError(f"c2w must be [{batch}, {views}, 4, 4], got {tuple(c2w.shape)}")
        if tokens is not None and (tokens.dim() != 3 or tokens.shape[:2] != (batch, views)):
            raise ValueError(f"tokens must be [{batch}, {views}, F], got {tuple(tokens.shape)}")
        return self.cluster(c2w, num_anchors, tokens=tokens, generator=generator)

    def cluster(
        self,
        c2w: Float[Tensor, "batch view 4 4"] | None,
        num_anchors: int,
        *,
        tokens: Float[Tensor, "batch view feature"] | None = None,
        generator: torch.Generator | None = None,
    ) -> Clustering:
        """Anchors and clusters from the cameras alone (or from ``tokens`` by k-means), before any feature."""
        if tokens is not None:
            if tokens.dim() != 3:
                raise ValueError(f"tokens must be [batch, view, F], got {tuple(tokens.shape)}")
            _check_num_anchors(num_anchors, tokens.shape[1])
            return kmeans_anchors(tokens, num_anchors, seed=self.config.kmeans_seed)
        if c2w is None:
            raise ValueError("ZPressor needs camera poses (c2w) or per-view tokens for pose-free clustering")
        if c2w.dim() != 4 or c2w.shape[-2:] != (4, 4):
            raise ValueError(f"c2w must be [batch, view, 4, 4], got {tuple(c2w.shape)}")
        _check_num_anchors(num_anchors, c2w.shape[1])
        centres = c2w[..., :3, 3]
        # One host sync per forward (skipped under torch.compile): bad poses must not cluster silently.
        if not torch.compiler.is_compiling() and not bool(torch.isfinite(centres).all()):
            raise ValueError("camera centres (c2w translations) contain NaN or inf; check the input poses")
        anchors = select_anchors(centres, num_anchors, self.config.first_anchor, generator)
        return anchors, assign_to_anchors(centres, anchors)

    def _check_features(self, features: Tensor) -> None:
        if features.dim() != 5 or features.shape[2] != self.config.dim:
            raise ValueError(
                f"ZPressor expects features [batch, view, {self.config.dim}, height, width], "
                f"got {tuple(features.shape)}"
            )

    def _check_clustering(self, features: Tensor, clustering: Clustering, num_anchors: int) -> Clustering:
        self._check_features(features)
        anchors, clusters = clustering
        batch, views = features.shape[:2]
        if anchors.shape != (batch, num_anchors) or clusters.shape != (batch, views):
            raise ValueError(
                f"clustering must be anchors [{batch}, {num_anchors}] and clusters [{batch}, {views}], got "
                f"{tuple(anchors.shape)} and {tuple(clusters.shape)}"
            )
        return anchors, clusters
