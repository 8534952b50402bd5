"""ZPressor: anchor selection, assignment, fusion (against a loop-form reference), k-means, checkpoint import."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zpressor_ns.attention import support_block_mask
from zpressor_ns.checkpoints import import_official_zpressor, load_state_dict_file
from zpressor_ns.zpressor import (
    ZPressor,
    assign_to_anchors,
    gather_views,
    kmeans_anchors,
    select_anchors,
    support_sets,
)

PREFIX = "encoder.depth_predictor.zipmatch."


def line_centres(xs: list[float]) -> torch.Tensor:
    centres = torch.zeros(1, len(xs), 3)
    centres[0, :, 0] = torch.tensor(xs)
    return centres


def poses(centres: torch.Tensor) -> torch.Tensor:
    c2w = torch.eye(4).repeat(*centres.shape[:2], 1, 1)
    c2w[..., :3, 3] = centres
    return c2w


# ---------------------------------------------------------------------------------------------------
# Anchors and clusters, checked by hand


def test_collinear_cameras_give_the_documented_fps_order():
    # 12 cameras at x = 0..11, K = 6: [0, 11, 5, 8, 2, 1] (issue text and the original code's behaviour).
    anchors = select_anchors(line_centres(list(range(12))), 6)
    assert anchors.tolist() == [[0, 11, 5, 8, 2, 1]]
    assert anchors.dtype == torch.long


def test_first_anchor_is_farthest_from_the_mean_and_lowest_index_on_ties():
    # mean 1.5: x=5 is farthest.
    assert select_anchors(line_centres([0, 1, 0, 5]), 1).tolist() == [[3]]
    # mean 0: x=-1 (index 0) and x=1 (index 2) tie.
    assert select_anchors(line_centres([-1, 0, 1]), 1).tolist() == [[0]]


def test_random_first_anchor_is_seeded_and_followed_by_fps():
    centres = line_centres(list(range(12)))
    first = [
        select_anchors(centres, 3, first="random", generator=torch.Generator().manual_seed(s))[0, 0].item()
        for s in range(20)
    ]
    assert len(set(first)) > 1
    again = select_anchors(centres, 3, first="random", generator=torch.Generator().manual_seed(7))
    anchors = select_anchors(centres, 3, first="random", generator=torch.Generator().manual_seed(7))
    assert torch.equal(again, anchors)
    start = anchors[0, 0].item()
    far_end = 0 if start > 5.5 else 11  # the next anchor is the farther end of the line
    assert anchors[0, 1].item() == far_end


def test_duplicate_centres_still_give_distinct_anchors():
    same = torch.zeros(1, 5, 3)
    assert select_anchors(same, 5).tolist() == [[0, 1, 2, 3, 4]]
    assert select_anchors(same, 3).tolist() == [[0, 1, 2]]
    pairs = line_centres([0, 0, 4, 4])
    anchors = select_anchors(pairs, 4)[0].tolist()
    assert sorted(anchors) == [0, 1, 2, 3]


def test_assignment_of_the_collinear_case():
    centres = line_centres(list(range(12)))
    anchors = select_anchors(centres, 6)  # x = 0, 11, 5, 8, 2, 1
    clusters = assign_to_anchors(centres, anchors)
    assert clusters.tolist() == [[0, 5, 4, 4, 2, 2, 2, 3, 3, 3, 1, 1]]
    supports = support_sets(anchors, clusters)[0]
    # anchors at x=0 and x=1 have no supports; x=5 gets views 4 and 6.
    assert supports.sum(dim=-1).tolist() == [0, 1, 2, 2, 1, 0]
    assert supports[2].nonzero().flatten().tolist() == [4, 6]


def test_assignment_ties_go_to_the_lower_cluster_index():
    centres = line_centres([0, 1, 2])
    # view 1 is equidistant from both anchors: it joins cluster 0 whichever view that anchor is.
    assert assign_to_anchors(centres, torch.tensor([[2, 0]])).tolist() == [[1, 0, 0]]
    assert assign_to_anchors(centres, torch.tensor([[0, 2]])).tolist() == [[0, 0, 1]]


def test_an_anchor_sharing_a_centre_with_an_earlier_anchor_becomes_its_support():
    centres = line_centres([0, 0, 3])
    anchors = select_anchors(centres, 3)
    assert anchors.tolist() == [[2, 0, 1]]
    clusters = assign_to_anchors(centres, anchors)
    assert clusters.tolist() == [[1, 1, 0]]
    supports = support_sets(anchors, clusters)[0]
    assert supports.tolist() == [[False, False, False], [False, True, False], [False, False, False]]


def test_gather_views_keeps_the_selected_views_per_batch_element():
    x = torch.arange(2 * 5 * 3 * 2).view(2, 5, 3, 2)
    index = torch.tensor([[4, 0], [1, 1]])
    out = gather_views(x, index)
    assert out.shape == (2, 2, 3, 2)
    assert torch.equal(out[0, 0], x[0, 4]) and torch.equal(out[0, 1], x[0, 0])
    assert torch.equal(out[1, 0], x[1, 1]) and torch.equal(out[1, 1], x[1, 1])
    with pytest.raises(ValueError, match="batch"):
        gather_views(x, index[:1])


# ---------------------------------------------------------------------------------------------------
# Fusion against a loop-form reference written from the original's description


def official_state_dict(dim: int, layers: int, self_attention: bool, heads: int = 1, seed: int = 0) -> dict:
    """Random tensors under the original key names (norms perturbed away from 1/0 so they matter)."""
    generator = torch.Generator().manual_seed(seed)

    def tensor(*shape: int, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale / math.sqrt(shape[-1]) + offset

    def norm(name: str, out: dict) -> None:
        out[f"{name}.weight"] = 1 + 0.3 * torch.randn(dim, generator=generator)
        out[f"{name}.bias"] = 0.3 * torch.randn(dim, generator=generator)

    out: dict[str, torch.Tensor] = {}
    for layer in range(layers):
        cross = f"{PREFIX}cross_attn_layers.0.{layer}"
        out[f"{cross}.projq.weight"] = tensor(dim, dim)
        out[f"{cross}.proj_kv.weight"] = tensor(2 * dim, dim)
        out[f"{cross}.proj.weight"] = tensor(dim, dim)
        out[f"{cross}.proj.bias"] = tensor(dim, scale=0.1)
        norm(f"{cross}.norm1", out)
        norm(f"{cross}.norm2", out)
        mlp_owner = f"{PREFIX}self_attn_layers.0.{layer}" if self_attention else cross
        if self_attention:
            out[f"{mlp_owner}.to_qkv.weight"] = tensor(3 * dim, dim)
            norm(f"{mlp_owner}.norm", out)
            if heads > 1:
                out[f"{mlp_owner}.to_out.0.weight"] = tensor(dim, dim)
                out[f"{mlp_owner}.to_out.0.bias"] = tensor(dim, scale=0.1)
        out[f"{mlp_owner}.mlp.fc1.weight"] = tensor(4 * dim, dim)
        out[f"{mlp_owner}.mlp.fc1.bias"] = tensor(4 * dim, scale=0.1)
        out[f"{mlp_owner}.mlp.fc2.weight"] = tensor(dim, 4 * dim)
        out[f"{mlp_owner}.mlp.fc2.bias"] = tensor(dim, scale=0.1)
        norm(f"{mlp_owner}.mlp.norm", out)
    return out


def reference_fps(points: list[list[float]], k: int) -> list[int]:
    mean = [sum(p[i] for p in points) / len(points) for i in range(3)]
    dist2 = [sum((p[i] - mean[i]) ** 2 for i in range(3)) for p in points]
    chosen = [max(range(len(points)), key=lambda v: (dist2[v], -v))]
    while len(chosen) < k:
        nearest = [
            min(sum((points[v][i] - points[a][i]) ** 2 for i in range(3)) for a in chosen)
            for v in range(len(points))
        ]
        chosen.append(max((v for v in range(len(points)) if v not in chosen), key=lambda v: (nearest[v], -v)))
    return chosen


def reference_zpressor(sd, features, c2w, k, layers, self_attention, heads=1):
    """The original algorithm in loop form: per batch element, per cluster, concatenate the supports."""
    batch, views, dim, height, width = features.shape
    scale = (dim // heads) ** -0.5

    def ln(x, name):
        return F.layer_norm(x, (dim,), sd[f"{name}.weight"], sd[f"{name}.bias"])

    def attend(q, k_, v):  # [n, dim] tokens, heads split
        q, k_, v = (t.view(t.shape[0], heads, -1).transpose(0, 1) for t in (q, k_, v))
        w = torch.softmax(q @ k_.transpose(-1, -2) * scale, dim=-1)
        return (w @ v).transpose(0, 1).reshape(-1, dim)

    def mlp(x, name):
        hidden = F.gelu(
            F.linear(ln(x, f"{name}.mlp.norm"), sd[f"{name}.mlp.fc1.weight"], sd[f"{name}.mlp.fc1.bias"])
        )
        return x + F.linear(hidden, sd[f"{name}.mlp.fc2.weight"], sd[f"{name}.mlp.fc2.bias"])

    outputs, all_anchors, all_clusters = [], [], []
    for b in range(batch):
        centres = c2w[b, :, :3, 3].tolist()
        anchors = reference_fps(centres, k)
        clusters = [
            min(
                range(k),
                key=lambda j: (sum((centres[v][i] - centres[anchors[j]][i]) ** 2 for i in range(3)), j),
            )
            for v in range(views)
        ]
        tokens = features[b].flatten(2).transpose(1, 2)  # [V, N, C]
        state = [tokens[a] for a in anchors]
        for layer in range(layers):
            cross = f"{PREFIX}cross_attn_layers.0.{layer}"
            for j in range(k):
                supports = [v for v in range(views) if clusters[v] == j and v != anchors[j]]
                if not supports:
                    continue
                context = torch.cat([tokens[v] for v in supports])
                q = F.linear(ln(state[j], f"{cross}.norm1"), sd[f"{cross}.projq.weight"])
                key, value = F.linear(ln(context, f"{cross}.norm2"), sd[f"{cross}.proj_kv.weight"]).chunk(
                    2, -1
                )
                fused = state[j] + F.linear(
                    attend(q, key, value), sd[f"{cross}.proj.weight"], sd[f"{cross}.proj.bias"]
                )
                state[j] = fused if self_attention else mlp(fused, cross)
            if self_attention:
                own = f"{PREFIX}self_attn_layers.0.{layer}"
                for j in range(k):
                    q, key, value = F.linear(ln(state[j], f"{own}.norm"), sd[f"{own}.to_qkv.weight"]).chunk(
                        3, -1
                    )
                    attended = attend(q, key, value)
                    if heads > 1:
                        attended = F.linear(
                            attended, sd[f"{own}.to_out.0.weight"], sd[f"{own}.to_out.0.bias"]
                        )
                    state[j] = mlp(state[j] + attended, own)
        outputs.append(torch.stack([s.transpose(0, 1).reshape(dim, height, width) for s in state]))
        all_anchors.append(anchors)
        all_clusters.append(clusters)
    return torch.stack(outputs), torch.tensor(all_anchors), torch.tensor(all_clusters)


def two_layouts(views: int = 12) -> torch.Tensor:
    """Batch element 0: random cameras; element 1: collinear (two anchors without supports)."""
    centres = torch.randn(2, views, 3, generator=torch.Generator().manual_seed(3))
    centres[1] = 0
    centres[1, :, 0] = torch.arange(views, dtype=torch.float32)
    return poses(centres)


def build(dim, layers, self_attention, heads=1, backend="math"):
    sd = official_state_dict(dim, layers, self_attention, heads)
    module = ZPressor(dim, heads, layers, self_attention, attention_backend=backend)
    module.load_state_dict(import_official_zpressor(sd, PREFIX), strict=True)
    return module, sd


@pytest.mark.parametrize(
    ("backend", "self_attention", "heads"),
    [
        ("math", True, 1),
        ("math", False, 1),
        ("math", True, 2),
        ("cluster", True, 1),
        ("cluster", False, 1),
        ("cluster", True, 2),
        ("sdpa", True, 1),
        ("sdpa", True, 2),
    ],
)
def test_fusion_matches_the_loop_reference(backend, self_attention, heads):
    dim, layers, k = 32, 3, 6
    module, sd = build(dim, layers, self_attention, heads, backend)
    features = torch.randn(2, 12, dim, 3, 4, generator=torch.Generator().manual_seed(1))
    c2w = two_layouts()
    out = module(features, c2w, k)
    expected, anchors, clusters = reference_zpressor(sd, features, c2w, k, layers, self_attention, heads)
    assert torch.equal(out.anchors, anchors)
    assert torch.equal(out.clusters, clusters)
    assert out.features.shape == (2, k, dim, 3, 4)
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=1e-5)


def fused_and_reference(backend: str, seed: int) -> tuple:
    """ZPressor (dim 32, 2 layers, K=5) on the two camera layouts, and the loop-form reference's output."""
    dim, layers, k = 32, 2, 5
    module, sd = build(dim, layers, True, backend=backend)
    features = torch.randn(2, 12, dim, 3, 4, generator=torch.Generator().manual_seed(seed))
    c2w = two_layouts()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager FlexAttention warns that it is unfused
        out = module(features, c2w, k)
    expected, _, _ = reference_zpressor(sd, features, c2w, k, layers, True)
    return out, expected


def test_flex_backend_matches_the_reference_on_cpu():
    out, expected = fused_and_reference("flex", seed=2)
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["sdpa", "cluster", "flex"])
def test_bf16_kernels_keep_fp32_outputs_close_to_the_reference(backend, monkeypatch):
    """The CUDA path casts attention inputs to bf16 (as the original) and everything else stays fp32. CPU
    kernels accept bf16 too, so the dtype plumbing of that path is checked here, before any GPU run."""
    import zpressor_ns.zpressor as zpressor_module
    from zpressor_ns.attention import KernelChoice

    monkeypatch.setattr(
        zpressor_module, "choose_kernel", lambda name, device: KernelChoice(backend, torch.bfloat16)
    )
    out, expected = fused_and_reference(backend, seed=4)
    assert out.features.dtype == torch.float32
    error = (out.features - expected).abs().max().item()
    assert 1e-6 < error < 3e-2  # bf16 rounding did happen, and only that


def compile_flex_layout_as_one_graph() -> None:
    """The check of the test below (run in a fresh interpreter by it)."""
    dim, layers, k = 32, 2, 3
    module, _ = build(dim, layers, True, backend="flex")
    features = torch.randn(1, 7, dim, 4, 6, generator=torch.Generator().manual_seed(6))
    c2w = poses(line_centres([0, 1, 2, 3, 4, 5, 6.5]))
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager FlexAttention warns that it is unfused
        expected = module(features, c2w, k)
        out = compiled(features, c2w, k)
    assert torch.equal(out.anchors, expected.anchors)
    torch.testing.assert_close(out.features, expected.features, rtol=0, atol=1e-6)


def test_sync_free_layout_compiles_as_one_graph():
    """The FlexAttention layout (the CUDA default) has no host sync or data-dependent shape, so
    torch.compile captures the whole module with fullgraph=True (a graph break would raise).

    Checked in a fresh interpreter, as users run it: the test suite's run-time type checker wraps every
    function in bookkeeping that dynamo cannot capture in one graph."""
    tests = Path(__file__).resolve().parent
    result = subprocess.run(
        [sys.executable, "-c", "import test_zpressor; test_zpressor.compile_flex_layout_as_one_graph()"],
        cwd=tests,
        env={**os.environ, "PYTHONPATH": str(tests)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]


def test_as_many_anchors_as_views_skips_every_cross_attention():
    dim, layers = 16, 2
    module, sd = build(dim, layers, True)
    features = torch.randn(1, 4, dim, 2, 2)
    c2w = poses(torch.randn(1, 4, 3))
    out = module(features, c2w, 4)
    assert sorted(out.anchors[0].tolist()) == [0, 1, 2, 3]
    expected, _, _ = reference_zpressor(sd, features, c2w, 4, layers, True)
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=1e-5)
    # without self-attention nothing at all happens to support-less anchors
    bare, _ = build(dim, layers, False)
    assert torch.equal(bare(features, c2w, 4).features, gather_views(features, out.anchors))


def test_duplicate_cameras_fuse_without_nan():
    module, _ = build(16, 2, True)
    centres = torch.zeros(1, 6, 3)
    centres[0, 3:, 0] = 1.0  # two groups of three coinciding cameras
    out = module(torch.randn(1, 6, 16, 2, 2), poses(centres), 4)
    assert len(set(out.anchors[0].tolist())) == 4
    assert torch.isfinite(out.features).all()


@pytest.mark.parametrize("backend", ["math", "cluster"])
def test_gradients_reach_support_features_and_match_the_reference(backend):
    dim, layers, k = 16, 2, 3
    module, sd = build(dim, layers, True, backend=backend)
    features = torch.randn(1, 8, dim, 2, 3, requires_grad=True)
    c2w = poses(torch.randn(1, 8, 3, generator=torch.Generator().manual_seed(5)))
    out = module(features, c2w, k)
    weights = torch.randn_like(out.features)
    (grad,) = torch.autograd.grad((out.features * weights).sum(), features)
    supports = support_sets(out.anchors, out.clusters)[0].any(dim=0)
    assert supports.sum() == 8 - k
    assert (grad[0, supports].flatten(1).abs().sum(dim=1) > 0).all()

    expected, _, _ = reference_zpressor(sd, features, c2w, k, layers, True)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), features)
    torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=1e-5)
    module(features, c2w, k).features.sum().backward()
    assert all(p.grad is not None for p in module.parameters())


# ---------------------------------------------------------------------------------------------------
# Configuration, errors


def test_parameter_counts_match_the_original():
    assert sum(p.numel() for p in ZPressor().parameters()) == 1_485_312
    assert sum(p.numel() for p in ZPressor(self_attention=False).parameters()) == 1_188_864


def test_bad_inputs_get_clear_errors(without_shape_checks):
    module = ZPressor(dim=16, num_layers=1)
    features = torch.randn(1, 4, 16, 2, 2)
    c2w = poses(torch.randn(1, 4, 3))
    with pytest.raises(ValueError, match=r"num_anchors \(5\) exceeds the number of context views \(4\)"):
        module(features, c2w, 5)
    with pytest.raises(ValueError, match="at least 1"):
        module(features, c2w, 0)
    bad = c2w.clone()
    bad[0, 2, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        module(features, bad, 2)
    with without_shape_checks(), pytest.raises(ValueError, match="features"):
        module(torch.randn(1, 4, 8, 2, 2), c2w, 2)
    with without_shape_checks(), pytest.raises(ValueError, match="poses"):
        module(features, None, 2)
    with without_shape_checks(), pytest.raises(ValueError, match="attention_backend"):
        ZPressor(attention_backend="fast")


# ---------------------------------------------------------------------------------------------------
# Pose-free clustering


def blob_tokens() -> tuple[torch.Tensor, list[set[int]], list[int]]:
    """Three well-separated blobs of 8-d tokens, each with one member exactly at the blob's mean."""
    generator = torch.Generator().manual_seed(0)
    members = [{0, 3, 6, 9}, {1, 4, 7}, {2, 5, 8, 10, 11}]
    at_mean = [6, 4, 10]
    tokens = torch.zeros(1, 12, 8)
    for blob, (views, centre_view) in enumerate(zip(members, at_mean, strict=True)):
        centre = torch.zeros(8)
        centre[blob] = 50.0
        others = sorted(views - {centre_view})
        offsets = torch.randn(len(others), 8, generator=generator)
        offsets -= offsets.mean(dim=0)  # the members' mean stays at the centre
        tokens[0, others] = centre + offsets
        tokens[0, centre_view] = centre
    return tokens, members, at_mean


def test_kmeans_finds_the_blobs_and_picks_the_member_nearest_each_centre():
    tokens, members, at_mean = blob_tokens()
    anchors, clusters = kmeans_anchors(tokens, 3)
    found = [set((clusters[0] == j).nonzero().flatten().tolist()) for j in range(3)]
    assert sorted(found, key=min) == sorted(members, key=min)
    for j in range(3):
        assert anchors[0, j].item() in found[j]
    assert sorted(anchors[0].tolist()) == sorted(at_mean)
    again = kmeans_anchors(tokens, 3)
    assert torch.equal(again[0], anchors) and torch.equal(again[1], clusters)


def test_pose_free_forward_uses_tokens_instead_of_poses():
    tokens, _, _ = blob_tokens()
    module = ZPressor(dim=16, num_layers=1)
    out = module(torch.randn(1, 12, 16, 2, 2), None, 3, tokens=tokens)
    expected_anchors, expected_clusters = kmeans_anchors(tokens, 3)
    assert torch.equal(out.anchors, expected_anchors) and torch.equal(out.clusters, expected_clusters)
    assert out.features.shape == (1, 3, 16, 2, 2)


# ---------------------------------------------------------------------------------------------------
# FlexAttention block mask


@pytest.mark.parametrize(("tokens_per_view", "block_size"), [(3, 4), (8, 4), (5, 16)])
def test_block_mask_admits_exactly_the_support_tiles(tokens_per_view, block_size):
    anchors, views = 3, 7
    is_support = torch.rand(2, anchors, views, generator=torch.Generator().manual_seed(tokens_per_view)) > 0.6
    mask = support_block_mask(is_support, tokens_per_view, block_size)
    token_mask = is_support.repeat_interleave(tokens_per_view, 1).repeat_interleave(tokens_per_view, 2)
    q_blocks = -(-anchors * tokens_per_view // block_size)
    kv_blocks = -(-views * tokens_per_view // block_size)
    padded = torch.zeros(2, q_blocks * block_size, kv_blocks * block_size, dtype=torch.bool)
    padded[:, : token_mask.shape[1], : token_mask.shape[2]] = token_mask
    tiles = padded.view(2, q_blocks, block_size, kv_blocks, block_size)
    assert torch.equal(mask.to_dense()[:, 0].bool(), tiles.any(dim=(2, 4)))
    from torch.nn.attention.flex_attention import _ordered_to_dense

    full = _ordered_to_dense(mask.full_kv_num_blocks, mask.full_kv_indices, kv_blocks)[:, 0].bool()
    assert tiles.all(dim=(2, 4))[full].all()  # "full" tiles need no per-element mask
    b, q, kv = torch.meshgrid(
        torch.arange(2), torch.arange(token_mask.shape[1]), torch.arange(token_mask.shape[2]), indexing="ij"
    )
    assert torch.equal(
        torch.vmap(torch.vmap(torch.vmap(lambda b, q, kv: mask.mask_mod(b, 0, q, kv))))(b, q, kv), token_mask
    )


# ---------------------------------------------------------------------------------------------------
# Checkpoints


def test_official_state_dict_round_trips_into_the_module(tmp_path):
    sd = official_state_dict(128, 6, True)
    sd["encoder.depth_predictor.backbone.conv1.weight"] = torch.zeros(1)  # other modules are ignored
    assert sum(key.startswith(PREFIX) for key in sd) == 102
    converted = import_official_zpressor(sd, PREFIX)
    module = ZPressor()
    module.load_state_dict(converted, strict=True)
    own = module.state_dict()
    assert torch.equal(own["layers.3.cross.to_q.weight"], sd[f"{PREFIX}cross_attn_layers.0.3.projq.weight"])
    assert torch.equal(
        own["layers.5.cross.norm_context.bias"], sd[f"{PREFIX}cross_attn_layers.0.5.norm2.bias"]
    )
    assert torch.equal(own["layers.0.mlp.fc2.weight"], sd[f"{PREFIX}self_attn_layers.0.0.mlp.fc2.weight"])

    lightning = tmp_path / "model.ckpt"
    torch.save({"state_dict": sd, "epoch": 3, "global_step": 10}, lightning)
    assert import_official_zpressor(load_state_dict_file(lightning), PREFIX).keys() == converted.keys()

    ablation = import_official_zpressor(official_state_dict(128, 6, False), PREFIX)
    ZPressor(self_attention=False).load_state_dict(ablation, strict=True)


def test_converter_refuses_unknown_or_missing_keys():
    sd = official_state_dict(16, 1, True)
    with pytest.raises(ValueError, match="no ZPressor parameters"):
        import_official_zpressor(sd, "encoder.backbone.zipmatch.")
    sd[f"{PREFIX}self_attn_layers.1.0.norm.weight"] = torch.ones(16)  # a second feature level
    with pytest.raises(ValueError, match="not ZPressor parameters"):
        import_official_zpressor(sd, PREFIX)


def test_load_state_dict_file_errors_name_the_file(tmp_path):
    bare = tmp_path / "bare.pth"
    torch.save({"a": torch.ones(2)}, bare)
    assert torch.equal(load_state_dict_file(bare)["a"], torch.ones(2))
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_state_dict_file(tmp_path / "missing.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.ckpt"):
        load_state_dict_file(junk)
    notes = tmp_path / "notes.pth"
    torch.save({"state_dict": {"a": torch.ones(1), "b": "text"}}, notes)
    with pytest.raises(ValueError, match="notes.pth"):
        load_state_dict_file(notes)


# ---------------------------------------------------------------------------------------------------
# Parity with the original module (a dump of the original code's outputs; absent from git, skipped then)

ORIGINAL_DUMP = Path(__file__).resolve().parents[1] / ".ref" / "fixtures" / "zpressor_module.pt"


@pytest.mark.skipif(not ORIGINAL_DUMP.is_file(), reason="no dump of the original ZPressor (.ref/fixtures)")
def test_matches_the_original_module_dump():
    dump = torch.load(ORIGINAL_DUMP, weights_only=True)
    inputs = dump["inputs"]
    for name, case in dump["cases"].items():
        ablation = "no_self_attn" in name
        module = ZPressor(self_attention=not ablation)
        weights = dump["state_dict_no_self_attn" if ablation else "state_dict"]
        module.load_state_dict(import_official_zpressor(weights, ""), strict=True)
        with torch.no_grad():
            if "cls_token" in name:  # sklearn's label order is arbitrary: compare (members, anchor) pairs
                out = module(inputs["features"], None, case["cluster_num"], tokens=inputs["cls_token"])
                for b in range(2):
                    ours = {
                        (
                            frozenset((out.clusters[b] == j).nonzero().flatten().tolist()),
                            out.anchors[b, j].item(),
                        )
                        for j in range(case["cluster_num"])
                    }
                    theirs = {
                        (
                            frozenset((case["clusters"][b] == j).nonzero().flatten().tolist()),
                            case["anchors"][b, j].item(),
                        )
                        for j in range(case["cluster_num"])
                    }
                    assert ours == theirs, name
                continue
            out = module(inputs["features"], inputs["extrinsics"], case["cluster_num"])
        assert torch.equal(out.anchors, case["anchors"]), name
        assert torch.equal(out.clusters, case["clusters"].long()), name
        torch.testing.assert_close(out.features, case["features"], atol=1e-5, rtol=1e-5, msg=name)
