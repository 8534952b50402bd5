"""The displayed scene in the Nerfstudio viewer: its context cameras, anchors apart from supports, and
where the browser's camera starts.

Nerfstudio draws the display dataset's cameras with thumbnails; these extra frustums colour the ZPressor
anchors (orange) and the support views (blue), so a user sees which views the compression kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
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


@dataclass(frozen=True)
class ViewerPose:
    """A browser camera in viser's units (world x ``VISER_NERFSTUDIO_SCALE_RATIO``), OpenCV axes."""

    position: np.ndarray
    look_at: np.ndarray
    up_direction: np.ndarray
    fov: float
    """Vertical field of view in radians."""


def context_camera_pose(context: dict, means: torch.Tensor, view: int = 0) -> ViewerPose:
    """The browser camera at context camera ``view``, orbiting the predicted scene in front of it.

    Datasets such as RE10K keep their own world frame (no re-centring or scaling as Nerfstudio's
    dataparsers do), so the viewer's default camera at (3, 3, 3) looking at the origin usually sees
    nothing; starting at a context camera shows the scene as that view saw it. The orbit centre is
    placed at the median depth of the Gaussians in front of the camera.
    """
    c2w = context["c2w"][0, view].detach().double().cpu()
    fy = float(context["K"][0, view, 1, 1])
    rotation, centre = c2w[:3, :3], c2w[:3, 3]
    depths = (means.detach().double().cpu().reshape(-1, 3) - centre) @ rotation[:, 2]
    depths = depths[torch.isfinite(depths) & (depths > 0)]
    distance = float(depths.median()) if len(depths) else 1.0
    scale = VISER_NERFSTUDIO_SCALE_RATIO
    return ViewerPose(
        position=(centre * scale).numpy(),
        look_at=((centre + rotation[:, 2] * distance) * scale).numpy(),
        up_direction=(-rotation[:, 1]).numpy(),  # OpenCV: y points down in the image
        fov=2 * math.atan(0.5 / fy),
    )


def move_client_camera(client, pose: ViewerPose) -> None:
    """Put a connected viser client's camera at ``pose`` (after the client reported its camera once)."""
    with client.atomic():
        client.camera.up_direction = pose.up_direction
        client.camera.position = pose.position
        client.camera.look_at = pose.look_at
        client.camera.fov = pose.fov
