"""Render a smooth camera path through a predicted scene (frames and an animated GIF, no ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import torch
from jaxtyping import Float
from PIL import Image
from torch import Tensor


def _quaternion_from_matrix(rotation: Float[Tensor, "3 3"]) -> Tensor:
    """Unit quaternion (w, x, y, z) of a rotation matrix (Shepperd's method, numerically safe)."""
    m = rotation.double()
    trace = m.trace()
    candidates = torch.stack([trace, m[0, 0], m[1, 1], m[2, 2]])
    i = int(candidates.argmax())
    if i == 0:
        s = torch.sqrt(1.0 + trace) * 2
        q = torch.stack([0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s])
    elif i == 1:
        s = torch.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = torch.stack([(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s])
    elif i == 2:
        s = torch.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = torch.stack([(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s])
    else:
        s = torch.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = torch.stack([(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s])
    return q / q.norm()


def _matrix_from_quaternion(q: Tensor) -> Tensor:
    w, x, y, z = q
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)]),
            torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)]),
            torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]),
        ]
    )


def _slerp(q0: Tensor, q1: Tensor, t: float) -> Tensor:
    dot = float((q0 * q1).sum())
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + t * (q1 - q0)
        return q / q.norm()
    angle = torch.arccos(torch.tensor(dot, dtype=q0.dtype))
    return (torch.sin((1 - t) * angle) * q0 + torch.sin(t * angle) * q1) / torch.sin(angle)


def interpolate_poses(c2w: Float[Tensor, "view 4 4"], num_frames: int) -> Float[Tensor, "frame 4 4"]:
    """Camera-to-world poses along the given cameras: linear positions, slerped rotations."""
    if len(c2w) == 1:
        return c2w.repeat(num_frames, 1, 1)
    quats = [_quaternion_from_matrix(pose[:3, :3]) for pose in c2w]
    poses = []
    for t in torch.linspace(0, len(c2w) - 1, num_frames).tolist():
        i = min(int(t), len(c2w) - 2)
        f = t - i
        pose = torch.eye(4, dtype=torch.float64)
        pose[:3, :3] = _matrix_from_quaternion(_slerp(quats[i], quats[i + 1], f))
        pose[:3, 3] = (1 - f) * c2w[i, :3, 3].double() + f * c2w[i + 1, :3, 3].double()
        poses.append(pose)
    return torch.stack(poses).to(c2w.dtype)


@torch.no_grad()
def render_flythrough(
    pipeline,
    gif: Path,
    num_frames: int = 48,
    *,
    scene: str | None = None,
    num_context: int | None = None,
    frames_dir: Path | None = None,
    frame_ms: int = 80,
    chunk: int = 8,
) -> Path:
    """Render a scene of the pipeline's display split (default: its display scene) along its context
    cameras in frame order, and write an animated GIF (and the frames as PNGs to ``frames_dir``)."""
    model, datamanager = pipeline.model, pipeline.datamanager
    scene = scene or datamanager.display_scene
    context = datamanager.display_context(scene, num_context or datamanager.display_num_context)
    gaussians = model.set_display_scene(context)
    order = context["index"][0].argsort()
    c2w = interpolate_poses(context["c2w"][0][order].cpu(), num_frames).to(model.device)
    K = context["K"][0][order][:1].expand(num_frames, 3, 3)
    near, far = context["near"][0, 0], context["far"][0, 0]
    height, width = context["image"].shape[-2:]
    frames = []
    for start in range(0, num_frames, chunk):
        stop = min(start + chunk, num_frames)
        views = {
            "c2w": c2w[None, start:stop],
            "K": K[None, start:stop],
            "near": near.expand(1, stop - start),
            "far": far.expand(1, stop - start),
        }
        rendered = model.render(gaussians, views, (height, width))
        for color in rendered.color[0]:
            array = (color.clamp(0, 1).permute(1, 2, 0) * 255).round().byte().cpu().numpy()
            frames.append(Image.fromarray(array))
    if frames_dir is not None:
        frames_dir.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            frame.save(frames_dir / f"frame_{i:04d}.png")
    gif.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return gif
