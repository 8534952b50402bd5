"""Draw the displayed scene's context cameras in the Nerfstudio viewer, anchors apart from supports.

Nerfstudio draws the display dataset's cameras with thumbnails; these extra frustums colour the ZPressor
anchors (orange) and the support views (blue), so a user sees which views the compression kept.
"""

from __future__ import annotations

import math

import torch
import viser.transforms as vtf
from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

ANCHOR_COLOUR = (255, 140, 0)
SUPPORT_COLOUR = (60, 120, 255)


def draw_context_cameras(
    server, context: dict, anchors: torch.Tensor | None, previous: list | None = None, scale: float = 0.12
) -> list:
    """Draw frustums for a batch-of-one context set (``anchors`` [1, K] or None without ZPressor).

    Removes the handles of a previous call and returns the new ones.
    """
    for handle in previous or []:
        handle.remove()
    c2w = context["c2w"][0].detach().cpu().double().numpy()
    K = context["K"][0].detach().cpu().double()
    height, width = context["image"].shape[-2:]
    anchor_set = set() if anchors is None else set(anchors[0].tolist())
    handles = []
    for view, pose in enumerate(c2w):
        is_anchor = view in anchor_set
        handles.append(
            server.scene.add_camera_frustum(
                name=f"/zpressor/{'anchors' if is_anchor else 'supports'}/view_{view:03d}",
                fov=2 * math.atan(0.5 / float(K[view, 1, 1])),  # vertical field of view
                aspect=width / height,
                scale=scale * (1.5 if is_anchor else 1.0),
                color=ANCHOR_COLOUR if is_anchor else SUPPORT_COLOUR,
                wxyz=vtf.SO3.from_matrix(pose[:3, :3]).wxyz,  # OpenCV c2w: viser frustums look along +z
                position=pose[:3, 3] * VISER_NERFSTUDIO_SCALE_RATIO,
            )
        )
    return handles
