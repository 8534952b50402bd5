"""The multi-scene data manager's defaults as a user meets them: the dataset's own evaluation index is found,
a built one is named by what it holds and announced once, and portrait captures are not cut to a strip."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("nerfstudio", reason="the data manager is part of the Nerfstudio face")

from zpressor_ns.data.synthetic import SYNTHETIC_FAR, SYNTHETIC_NEAR  # noqa: E402
from zpressor_ns.nerfstudio.datamanager import FeedForwardDataManagerConfig  # noqa: E402


def datamanager(data, **options):
    config = FeedForwardDataManagerConfig(
        data=data, image_shape=(64, 128), num_context_views=6, num_target_views=4, num_workers=0, **options
    )
    config.dataparser.near, config.dataparser.far = SYNTHETIC_NEAR, SYNTHETIC_FAR
    return config.setup(device="cpu", test_mode="test")


def test_the_datasets_own_index_files_are_found(synthetic_root, caplog):
    """make-synthetic writes DATA/evaluation/re10k_ctx_6v_tgt_8v_n40.json (a 40-frame window, not 200)."""
    manager = datamanager(synthetic_root / "re10k")
    with caplog.at_level(logging.WARNING):
        index = manager.evaluation_index(manager.display_reader)
    assert index.source == str(synthetic_root / "re10k" / "evaluation" / "re10k_ctx_6v_tgt_8v_n40.json")
    assert not caplog.records


def test_a_built_index_is_named_by_what_it_holds_and_announced_once(synthetic_root, caplog):
    manager = datamanager(synthetic_root / "re10k", eval_num_context_views=5)  # no file for 5 views
    with caplog.at_level(logging.WARNING):
        index = manager.evaluation_index(manager.display_reader)
        again = manager.evaluation_index(manager.display_reader)
    assert again is index
    assert index.source.startswith("re10k_ctx_5v_tgt_4v_n200 (built from the test split of")
    assert {len(entry.context) for entry in index.values()} == {5}
    assert {len(entry.target) for entry in index.values()} == {4}
    (record,) = caplog.records
    assert "re10k_ctx_5v_tgt_4v_n200" in record.getMessage() and "eval-index" in record.getMessage()


@pytest.fixture(scope="module")
def portrait_root(tmp_path_factory):
    """A synthetic capture shot in portrait (112x64 frames), in the raw DL3DV layout."""
    from zpressor_ns.data.synthetic import SyntheticConfig, make_synthetic

    root = tmp_path_factory.mktemp("portrait")
    config = SyntheticConfig(
        seed=5,
        num_train_scenes=1,
        num_test_scenes=1,
        dl3dv_frames=16,
        dl3dv_size=(112, 64),
        layouts=("dl3dv",),
        eval_context_views=(6,),
    )
    make_synthetic(root, config)
    return root / "dl3dv"


@pytest.mark.parametrize(("match", "expected_shape"), [(True, (128, 64)), (False, (64, 128))])
def test_portrait_captures_are_seen_whole_not_as_a_strip(portrait_root, capsys, match, expected_shape):
    """A landscape 64x128 crop of portrait frames keeps a centre strip of 29% of their height (the fox at the
    small preset predicted black); turned to 128x64 the model sees whole frames."""
    import copy

    from zpressor_ns.dataparsers import MULTISCENE_DATAPARSERS

    manager = datamanager(
        portrait_root, dataparser=copy.deepcopy(MULTISCENE_DATAPARSERS["dl3dv"]), match_orientation=match
    )
    assert manager.image_shape == expected_shape
    example = manager.display_example(manager.display_scene, 6)
    assert example["context"]["image"].shape[-2:] == expected_shape
    assert example["target"]["image"].shape[-2:] == expected_shape
    # What share of each frame dimension the crop keeps, from the intrinsics (normalised focal lengths grow
    # by the inverse of the kept share).
    scene = manager.display_reader.scene(manager.display_scene)
    kept_height = float(scene.K[0, 1, 1] / example["context"]["K"][0, 1, 1])
    kept_width = float(scene.K[0, 0, 0] / example["context"]["K"][0, 0, 0])
    if match:
        assert kept_height == pytest.approx(1.0) and kept_width > 0.85
        assert "frames are 112x64" in capsys.readouterr().out
    else:
        assert kept_height < 0.3 and kept_width == pytest.approx(1.0)
