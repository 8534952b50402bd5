"""Camera conventions: the one place that converts between the formats found on disk.

Inside the project every camera is
- a camera-to-world matrix ``c2w`` [..., 4, 4] in OpenCV axes (x right, y down, z forward), and
- a normalised intrinsics matrix ``K`` [..., 3, 3]: the first row divided by the image width and the
  second by the height, so resizing never touches it (only cropping does).

Readers call these functions at the boundary and everything downstream trusts the result.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

# Right-multiplying a camera-to-world matrix by this flips the camera's y and z axes, which converts
# OpenGL/Blender/Nerfstudio cameras (x right, y up, z backward) to OpenCV ones and back.
_GL_CV_FLIP = (1.0, -1.0, -1.0, 1.0)


class CameraError(ValueError):
    """A pose or intrinsics matrix that cannot be used (NaN, singular, not a rotation)."""


def opengl_to_opencv_c2w(c2w: Float[Tensor, "*batch 4 4"]) -> Float[Tensor, "*batch 4 4"]:
    """OpenGL c2w (Nerfstudio, DL3DV ``transforms.json``) -> OpenCV c2w. The map is its own inverse."""
    flip = torch.tensor(_GL_CV_FLIP, dtype=c2w.dtype, device=c2w.device)
    return c2w * flip  # scales the columns: c2w @ diag(flip)


opencv_to_opengl_c2w = opengl_to_opencv_c2w


def to_homogeneous(
    pose: Float[Tensor, "*batch 3 4"] | Float[Tensor, "*batch 4 4"],
) -> Float[Tensor, "*batch 4 4"]:
    """Append the row [0, 0, 0, 1] to a 3x4 pose (4x4 poses pass through)."""
    if pose.shape[-2:] == (4, 4):
        return pose
    if pose.shape[-2:] != (3, 4):
        raise CameraError(f"expected a 3x4 or 4x4 pose, got shape {tuple(pose.shape)}")
    bottom = torch.zeros(*pose.shape[:-2], 1, 4, dtype=pose.dtype, device=pose.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([pose, bottom], dim=-2)


def invert_rigid(pose: Float[Tensor, "*batch 4 4"]) -> Float[Tensor, "*batch 4 4"]:
    """Inverse of a rigid transform [R t; 0 1] without a general matrix inverse (w2c <-> c2w)."""
    rot = pose[..., :3, :3]
    trans = pose[..., :3, 3:]
    rot_t = rot.transpose(-1, -2)
    out = torch.zeros_like(pose)
    out[..., :3, :3] = rot_t
    out[..., :3, 3:] = -rot_t @ trans
    out[..., 3, 3] = 1.0
    return out


def pixel_to_normalised_K(
    K: Float[Tensor, "*batch 3 3"], width: int | float | Tensor, height: int | float | Tensor
) -> Float[Tensor, "*batch 3 3"]:
    """Pixel intrinsics -> normalised (row 0 / width, row 1 / height)."""
    out = K.clone()
    out[..., 0, :] = out[..., 0, :] / torch.as_tensor(width, dtype=K.dtype, device=K.device)[..., None]
    out[..., 1, :] = out[..., 1, :] / torch.as_tensor(height, dtype=K.dtype, device=K.device)[..., None]
    return out


def normalised_to_pixel_K(
    K: Float[Tensor, "*batch 3 3"], width: int | float | Tensor, height: int | float | Tensor
) -> Float[Tensor, "*batch 3 3"]:
    """Normalised intrinsics -> pixels (row 0 * width, row 1 * height)."""
    out = K.clone()
    out[..., 0, :] = out[..., 0, :] * torch.as_tensor(width, dtype=K.dtype, device=K.device)[..., None]
    out[..., 1, :] = out[..., 1, :] * torch.as_tensor(height, dtype=K.dtype, device=K.device)[..., None]
    return out


def intrinsics_from_values(
    fx: Tensor | float, fy: Tensor | float, cx: Tensor | float, cy: Tensor | float
) -> Float[Tensor, "*batch 3 3"]:
    """Build [..., 3, 3] intrinsics from broadcastable fx, fy, cx, cy."""
    fx, fy, cx, cy = torch.broadcast_tensors(*(torch.as_tensor(v) for v in (fx, fy, cx, cy)))
    K = torch.zeros(*fx.shape, 3, 3, dtype=fx.dtype, device=fx.device)
    K[..., 0, 0] = fx
    K[..., 1, 1] = fy
    K[..., 0, 2] = cx
    K[..., 1, 2] = cy
    K[..., 2, 2] = 1.0
    return K


def sanitise_c2w(
    c2w: Float[Tensor, "*batch 4 4"], where: str, orthonormal_tol: float = 1e-3
) -> Float[Tensor, "*batch 4 4"]:
    """Check poses from a file and repair what can be repaired, naming ``where`` in every error.

    - NaN or infinite entries: refused.
    - A rotation block that is a uniformly scaled rotation (seen in real captures, e.g. columns of
      norm 0.21) or slightly non-orthonormal: replaced by the nearest rotation (polar decomposition).
    - A rotation block with a negative or zero determinant, or one that is far from any scaled rotation
      (shear): refused, because no silent fix is right.
    """
    if not torch.isfinite(c2w).all():
        bad = (~torch.isfinite(c2w.reshape(-1, 16))).any(-1).nonzero().flatten().tolist()
        raise CameraError(
            f"{where}: camera pose has NaN or infinite entries (frames {bad[:10]}); fix or drop them"
        )
    rot = c2w[..., :3, :3].double()
    det = torch.linalg.det(rot)
    if (det <= 1e-12).any():
        bad = (det <= 1e-12).reshape(-1).nonzero().flatten().tolist()
        raise CameraError(
            f"{where}: rotation has a non-positive determinant (frames {bad[:10]}): the pose is a reflection "
            "or degenerate; check the camera convention of the file"
        )
    u, s, vh = torch.linalg.svd(rot)
    spread = (s.amax(-1) - s.amin(-1)) / s.amax(-1)
    if (spread > 0.05).any():
        bad = (spread > 0.05).reshape(-1).nonzero().flatten().tolist()
        raise CameraError(
            f"{where}: rotation is sheared (singular values differ by more than 5%, frames {bad[:10]}); "
            "not a camera pose"
        )
    nearest = u @ vh
    if ((rot - nearest).abs().amax() <= orthonormal_tol) and (s - 1).abs().amax() <= orthonormal_tol:
        return c2w
    out = c2w.clone()
    out[..., :3, :3] = nearest.to(c2w.dtype)
    out[..., 3, :] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=c2w.dtype, device=c2w.device)
    return out


def check_intrinsics(K: Float[Tensor, "*batch 3 3"], where: str) -> None:
    """Refuse NaN/infinite intrinsics and non-positive focal lengths."""
    if not torch.isfinite(K).all():
        raise CameraError(f"{where}: intrinsics have NaN or infinite entries")
    if (K[..., 0, 0] <= 0).any() or (K[..., 1, 1] <= 0).any():
        raise CameraError(f"{where}: intrinsics have a non-positive focal length")


def camera_centres(c2w: Float[Tensor, "*batch 4 4"]) -> Float[Tensor, "*batch 3"]:
    """World positions of the cameras (translation column of c2w)."""
    return c2w[..., :3, 3]
