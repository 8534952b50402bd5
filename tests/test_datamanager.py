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
