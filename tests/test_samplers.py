"""View samplers: farthest-point order, the bounded training sampler, and evaluation indices."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch

from zpressor_ns.data.eval_index import EvaluationIndex, build_evaluation_index, evaluation_views
from zpressor_ns.data.samplers import BoundedSampler, SceneTooShort, farthest_point_order
from zpressor_ns.data.scene import Scene, SceneError

# ../shared beside the checkout (as CI has it), or $ZPRESSOR_SHARED_DIR.
EVAL_INDEX = (
    Path(os.environ.get("ZPRESSOR_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
    / "eval_index"
)


def line_of_cameras(num_frames: int) -> torch.Tensor:
    """Camera centres on a straight line, one unit apart (a forward walk)."""
    return torch.stack(
        [torch.arange(num_frames, dtype=torch.float32), torch.zeros(num_frames), torch.zeros(num_frames)], -1
    )


def small_sampler(**overrides) -> BoundedSampler:
    settings = dict(
        num_context=4,
        num_target=3,
        min_gap=8,
        max_gap=12,
        initial_min_gap=4,
        initial_max_gap=6,
        warm_up_steps=100,
    )
    return BoundedSampler(**{**settings, **overrides})


# --- farthest-point sampling --------------------------------------------------------------------


def test_farthest_point_order_on_collinear_cameras():
    # Worked by hand: barycenter 5.5, frames 0 and 11 tie (first wins), then 11, then 5 (5 and 6
    # tie), then 8, then 2 (2 and 3 tie), then 1.
    assert farthest_point_order(line_of_cameras(12), 6) == [0, 11, 5, 8, 2, 1]


def test_farthest_point_order_never_repeats_with_coincident_cameras():
    points = torch.zeros(5, 3)
    points[4, 0] = 1.0
    order = farthest_point_order(points, 5)
    assert sorted(order) == [0, 1, 2, 3, 4]


# --- bounded sampler ----------------------------------------------------------------------------


def test_gap_schedule_follows_the_warm_up_formula():
    sampler = BoundedSampler.preset("re10k")
    assert sampler.gap_bounds(0) == (15, 50)
    # min(initial + int((final - initial) * step / warm_up), final)
    assert sampler.gap_bounds(5000) == (15 + int(35 * 0.5), 50 + int(150 * 0.5))
    assert sampler.gap_bounds(3333) == (15 + int(35 * 0.3333), 50 + int(150 * 0.3333))
    assert sampler.gap_bounds(10_000) == sampler.gap_bounds(10**6) == (50, 200)


def test_presets_carry_the_original_numbers():
    re10k, dl3dv, acid = (BoundedSampler.preset(name) for name in ("re10k", "dl3dv", "acid"))
    assert (re10k.num_context, re10k.num_target) == (12, 8)
    assert (
        dl3dv.min_gap,
        dl3dv.max_gap,
        dl3dv.initial_min_gap,
        dl3dv.initial_max_gap,
        dl3dv.warm_up_steps,
    ) == (
        20,
        50,
        15,
        30,
        10_000,
    )
    assert dl3dv.sort and not re10k.sort
    assert (acid.min_gap, acid.max_gap, acid.warm_up_steps) == (45, 192, 0)
    assert BoundedSampler.preset("re10k", num_context=24).num_context == 24
    with pytest.raises(ValueError, match="no sampler preset"):
        BoundedSampler.preset("kitti")


@pytest.mark.parametrize("step", [0, 50, 100, 1000])
def test_sampler_invariants_on_a_forward_walk(step):
    sampler = small_sampler()
    low, high = sampler.gap_bounds(step)
    centres = line_of_cameras(30)
    for seed in range(40):
        context, target = sampler.sample(30, centres, step, torch.Generator().manual_seed(seed))
        assert len(context) == 4 and len(set(context)) == 4
        assert len(target) == 3 and len(set(target)) == 3  # drawn without replacement
        # On a straight walk both span ends are farthest points, so the context spans exactly the gap.
        left, right = min(context), max(context)
        assert low <= right - left <= high
        assert all(left <= t <= right for t in target)
        assert 0 <= left and right < 30


def test_context_order_is_first_pick_sorted_middle_last_pick():
    # Test mode on 12 collinear cameras spans frames 0..11; FPS order is [0, 11, 5, 8, 2, 1].
    sampler = small_sampler(num_context=6, min_gap=11, max_gap=11, initial_min_gap=11, initial_max_gap=11)
    context, target = sampler.sample(12, line_of_cameras(12), 0, torch.Generator(), test=True)
    assert context == [0, 2, 5, 8, 11, 1]
    assert target == [0, 5, 11]  # spread evenly over the span


def test_dl3dv_preset_sorts_both_lists():
    sampler = BoundedSampler.preset("dl3dv", num_context=6, num_target=4)
    for seed in range(10):
        context, target = sampler.sample(80, line_of_cameras(80), 20_000, torch.Generator().manual_seed(seed))
        assert context == sorted(context) and target == sorted(target)


def test_same_seed_same_views_other_seed_other_views():
    sampler = small_sampler()
    centres = line_of_cameras(40)
    draws = [sampler.sample(40, centres, 500, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    others = {str(sampler.sample(40, centres, 500, torch.Generator().manual_seed(s))) for s in range(20)}
    assert len(others) > 10


def test_random_extra_views_stay_inside_and_distinct():
    sampler = small_sampler(extra_views="random", num_context=6)
    for seed in range(20):
        context, _ = sampler.sample(30, line_of_cameras(30), 1000, torch.Generator().manual_seed(seed))
        assert len(set(context)) == 6
        assert context[1:-1] == sorted(context[1:-1])
        assert all(context[0] < c < context[-1] for c in context[1:-1])


def test_short_scene_raises_scene_too_short_with_counts():
    sampler = small_sampler()
    with pytest.raises(SceneTooShort, match=r"'tiny' has 8 frames but the sampler needs at least 9"):
        sampler.sample(8, line_of_cameras(8), 1000, torch.Generator(), scene="tiny")
    # Early in the warm-up the same scene is long enough.
    sampler.sample(8, line_of_cameras(8), 0, torch.Generator(), scene="tiny")


def test_gaps_grow_to_fit_many_views():
    # 24 context views cannot fit RE10K's initial 15-frame gap without repeats: the gap grows to 23.
    sampler = BoundedSampler.preset("re10k", num_context=24)
    assert sampler.gap_bounds(0) == (23, 50)
    context, _ = sampler.sample(60, line_of_cameras(60), 0, torch.Generator().manual_seed(0))
    assert len(set(context)) == 24


def test_inconsistent_sampler_settings_are_refused():
    with pytest.raises(ValueError, match="0 < min <= max"):
        small_sampler(min_gap=20, max_gap=10)


# --- evaluation index ---------------------------------------------------------------------------

OFFICIAL_COUNTS = {
    "re10k_evaluation/re10k_ctx_8v_tgt_8v_n200.json": (7156, 8),
    "re10k_evaluation/re10k_ctx_12v_tgt_8v_n200.json": (7078, 12),
    "re10k_evaluation/re10k_ctx_16v_tgt_8v_n200.json": (7002, 16),
    "re10k_evaluation/re10k_ctx_24v_tgt_8v_n200.json": (6851, 24),
    "re10k_evaluation/re10k_ctx_36v_tgt_8v_n200.json": (6625, 36),
    "acid_evaluation/acid_ctx_8v_tgt_8v_n200.json": (1933, 8),
    "acid_evaluation/acid_ctx_16v_tgt_8v_n200.json": (1879, 16),
    "acid_evaluation/acid_ctx_24v_tgt_8v_n200.json": (1833, 24),
    "acid_evaluation/acid_ctx_36v_tgt_8v_n200.json": (1732, 36),
    "acid_evaluation_mvsplat/acid_ctx_8v_tgt_8v_n200.json": (1933, 8),
    "acid_evaluation_mvsplat/acid_ctx_36v_tgt_8v_n200.json": (1732, 36),
    "dl3dv_evaluation/dl3dv_ctx_12v_tgt_8v_n50.json": (140, 12),
    "dl3dv_evaluation/dl3dv_ctx_16v_tgt_8v_n50.json": (140, 16),
    "dl3dv_evaluation/dl3dv_ctx_24v_tgt_8v_n50.json": (140, 24),
    "dl3dv_evaluation/dl3dv_ctx_36v_tgt_8v_n50.json": (140, 36),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_official_index_files_parse_with_the_published_counts(name):
    path = EVAL_INDEX / name
    if not path.is_file():
        pytest.skip(f"{path} not available")
    index = EvaluationIndex.load(path)
    num_scenes, num_context = OFFICIAL_COUNTS[name]
    window = 50 if "dl3dv" in name else 200
    assert len(index) == num_scenes
    for entry in index.values():
        assert len(entry.context) == num_context and len(entry.target) == 8
        assert list(entry.context) == sorted(entry.context)
        assert max(entry.context + entry.target) < window


def test_official_dl3dv_targets_follow_the_partition_rule():
    # Every DL3DV benchmark scene has at least 50 frames, so each target list must be the bin
    # borders of the frames 0..49 left over by the context: an independent check of the rule.
    for count in (12, 16, 24, 36):
        path = EVAL_INDEX / "dl3dv_evaluation" / f"dl3dv_ctx_{count}v_tgt_8v_n50.json"
        if not path.is_file():
            pytest.skip(f"{path} not available")
        for entry in EvaluationIndex.load(path).values():
            rest = [i for i in range(50) if i not in entry.context]
            bin_size = len(rest) // 8
            assert list(entry.target) == [rest[i * bin_size] for i in range(8)]


def test_index_with_nulls_missing_scenes_and_frames_past_the_end(tmp_path, caplog):
    path = tmp_path / "index.json"
    path.write_text(
        json.dumps(
            {
                "a": {"context": [0, 5], "target": [1, 2]},
                "b": None,
                "c": {"context": [0, 9], "target": [3]},
                "d": {"context": [1, 2], "target": [3]},
                "e": {"context": [1, 2], "target": [3]},
            }
        )
    )
    index = EvaluationIndex.load(path)
    assert list(index) == ["a", "c", "d", "e"] and index.num_null == 1
    with caplog.at_level(logging.WARNING):
        usable = index.report_missing(["x", "c", "a"])
        index.report_missing(["x", "c", "a"])
    assert usable == ["c", "a"]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith(
        "2 of 4 index scenes are not in the data (e.g. d, e)"
    )
    assert index.views("a", 6) == ([0, 5], [1, 2])
    with pytest.raises(SceneError, match=r"index\.json asks scene 'c' for frames \[9\].*only 8 frames"):
        index.views("c", 8)


def test_malformed_index_is_refused(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"a": {"context": [0, "x"], "target": [1]}}))
    with pytest.raises(SceneError, match=r"bad\.json.*'a'.*context"):
        EvaluationIndex.load(path)
    with pytest.raises(SceneError, match="does not exist"):
        EvaluationIndex.load(tmp_path / "absent.json")


def test_evaluation_views_rule_by_hand():
    # 12 collinear cameras, window 10 (frames 0..9). FPS: 0 and 9 tie from the barycenter 4.5 (0
    # wins), then 9, then 4 (4 and 5 tie), then 2 (2, 6 and 7 tie): context [0, 2, 4, 9].
    # The rest [1, 3, 5, 6, 7, 8] in 3 bins of 2: targets [1, 5, 7].
    assert evaluation_views(line_of_cameras(12), 4, 3, window=10) == ([0, 2, 4, 9], [1, 5, 7])
    assert evaluation_views(line_of_cameras(5), 4, 3, window=10) is None  # too short for 4 + 3


class ListReader:
    layout = "test"

    def __init__(self, lengths: dict[str, int]) -> None:
        self.lengths = lengths

    def keys(self) -> list[str]:
        return sorted(self.lengths)

    def scene(self, key: str) -> Scene:
        n = self.lengths[key]
        if n == 0:
            raise SceneError(f"scene {key!r} is broken")
        c2w = torch.eye(4).repeat(n, 1, 1)
        c2w[:, :3, 3] = line_of_cameras(n)
        K = torch.eye(3).repeat(n, 1, 1)
        return Scene(key, c2w, K, torch.arange(n), 4, 4, "memory", [Path("unused.png")] * n)


def test_build_index_skips_short_and_broken_scenes():
    index = build_evaluation_index(
        ListReader({"long": 30, "short": 5, "broken": 0}), num_context=4, num_target=3, window=20
    )
    assert list(index) == ["long"]
    assert max(index["long"]["context"] + index["long"]["target"]) < 20
    assert len(index["long"]["context"]) == 4 and len(index["long"]["target"]) == 3
