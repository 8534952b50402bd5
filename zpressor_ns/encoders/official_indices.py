"""Digests (``EvaluationIndex.digest()``) of the official evaluation index files that papers' tables share.

The ZPressor repository keeps one copy per encoder folder: its RE10K files are the same in all three
folders, and its ACID files are the same in ``mvsplat/assets/`` and ``pixelsplat/assets/`` but differ from
``depthsplat/assets/`` (other frames in ~817 scenes). Keyed by context-view count.
"""

from __future__ import annotations

RE10K_N200: dict[int, str] = {
    8: "ebf7cbb0ed5c8dc3217a5ef4dbe37acbd8d68724ab2ba1670cce03e2c1e9a1e0",
    16: "1619a0c182c03069ee72d7c0f277bdae1613c0a9e080c8b84dc329dee59593ea",
    24: "b5b0c115c97c1c3ba8a189a8291caf3be4b5985da51238f58b13893c01728de3",
    36: "b88306408b58ff1c6321cd841d9ad76037d2d43d6fae736197552d88605d0ecd",
}
"""``<folder>/assets/re10k_evaluation/re10k_ctx_<N>v_tgt_8v_n200.json``."""

ACID_N200_MVSPLAT: dict[int, str] = {
    8: "bc7b97e83d34a59fc0321aae6b6f32876eee0ffc8c6c243ae5924e907d0ee4cd",
    16: "1123f4bb63c5e7aa32264f6d79ce3bcf3a085ed84356ea3ad7b6672aea6ebbc6",
    24: "8f042a9c26bb07a0f93239891b591c8af9fb5afa89f215aa00f2b1ccb9d7016a",
    36: "5779a58fc9aace3fbecb1347a96e1a7912b034c1c1113283ed8b0b15426359f0",
}
"""``mvsplat/assets/acid_evaluation/`` (= ``pixelsplat/assets/acid_evaluation/``), not DepthSplat's copies."""
