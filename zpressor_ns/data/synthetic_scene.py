"""Random rooms, objects, textures and camera paths for synthetic scenes (all drawn from one generator).

World frame: z up, the room spans ``[-a, a] x [-b, b] x [0, h]``. Cameras are OpenCV c2w (x right,
y down, z forward). Paths keep every camera well inside the room and away from objects, so the
nearest visible surface is never closer than about 0.7 units (see ``SYNTHETIC_NEAR``).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from zpressor_ns.data.raycast import ROOM_FACES, Materials, SceneGeometry

WALL_MARGIN = 1.3  # cameras stay this far from every wall (and 0.9 from floor and ceiling)
VERTICAL_MARGIN = 0.9
OBJECT_CLEARANCE = 1.0  # gap between an object's bounding sphere and every camera centre
WAVES_PER_MATERIAL = 16
_UP = (0.0, 0.0, 1.0)


def _uniform(generator: torch.Generator, low: float, high: float, *shape: int) -> Tensor:
    return low + (high - low) * torch.rand(shape or (1,), generator=generator, dtype=torch.float64)


def _scalar(generator: torch.Generator, low: float, high: float) -> float:
    return float(_uniform(generator, low, high))


def look_at(eye: Float[Tensor, "frame 3"], target: Float[Tensor, "frame 3"]) -> Float[Tensor, "frame 4 4"]:
    """OpenCV c2w looking from ``eye`` at ``target`` with the world's +z up (image rows go down in z)."""
    forward = target - eye
    forward = forward / forward.norm(dim=-1, keepdim=True)
    up = torch.tensor(_UP, dtype=eye.dtype).expand_as(forward)
    right = torch.linalg.cross(forward, up)
    right = right / right.norm(dim=-1, keepdim=True)
    down = torch.linalg.cross(forward, right)
    c2w = torch.eye(4, dtype=eye.dtype).repeat(len(eye), 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, down, forward, eye
    return c2w


def sample_room(generator: torch.Generator) -> tuple[Float[Tensor, "3"], Float[Tensor, "3"]]:
    """A room 8-14 units long and wide and 3-4.5 units high (floor at z = 0)."""
    half_x, half_y = _scalar(generator, 4.0, 7.0), _scalar(generator, 4.0, 7.0)
    height = _scalar(generator, 3.0, 4.5)
    return torch.tensor([-half_x, -half_y, 0.0], dtype=torch.float64), torch.tensor(
        [half_x, half_y, height], dtype=torch.float64
    )


def forward_walk(
    room_min: Float[Tensor, "3"], room_max: Float[Tensor, "3"], num_frames: int, generator: torch.Generator
) -> Float[Tensor, "frame 4 4"]:
    """RE10K-like: a smooth forward dolly of 3-7 units across the room with sway, bobbing and yaw."""
    half = room_max[:2]
    room_height = float(room_max[2])
    heading = _scalar(generator, 0.0, 2.0 * math.pi)
    direction = torch.tensor([math.cos(heading), math.sin(heading)], dtype=torch.float64)
    sideways = torch.stack([-direction[1], direction[0]])
    sway_amplitude = _scalar(generator, 0.1, 0.35)
    # The walk's line passes near the centre; clip it to the rectangle that keeps the sway inside margins.
    inner = half - WALL_MARGIN - sway_amplitude
    centre = _uniform(generator, -0.3, 0.3, 2) * inner
    exits = torch.where(direction.abs() > 1e-9, (inner * direction.sign() - centre) / direction, torch.inf)
    entries = torch.where(
        direction.abs() > 1e-9, (-inner * direction.sign() - centre) / direction, -torch.inf
    )
    reach_forward, reach_back = float(exits.min()), float(entries.max())
    length = min(_scalar(generator, 3.0, 7.0), reach_forward - reach_back)
    start = _scalar(generator, reach_back, reach_forward - length)

    t = torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)
    along = start + length * t
    sway = sway_amplitude * torch.sin(
        2 * math.pi * _scalar(generator, 0.3, 1.2) * t + _scalar(generator, 0.0, 6.3)
    )
    xy = centre + along[:, None] * direction + sway[:, None] * sideways
    eye_height = _scalar(generator, 1.2, min(1.9, room_height - VERTICAL_MARGIN - 0.1))
    z = eye_height + 0.08 * torch.sin(2 * math.pi * _scalar(generator, 1.0, 3.0) * t)
    eye = torch.cat([xy, z[:, None]], dim=-1)

    yaw = heading + _scalar(generator, 0.1, 0.35) * torch.sin(
        2 * math.pi * _scalar(generator, 0.3, 1.0) * t + _scalar(generator, 0.0, 6.3)
    )
    pitch = _scalar(generator, -0.2, 0.05) + 0.04 * torch.sin(2 * math.pi * _scalar(generator, 0.5, 1.5) * t)
    forward = torch.stack([pitch.cos() * yaw.cos(), pitch.cos() * yaw.sin(), pitch.sin()], dim=-1)
    return look_at(eye, eye + forward)


def free_path(
    room_min: Float[Tensor, "3"], room_max: Float[Tensor, "3"], num_frames: int, generator: torch.Generator
) -> Float[Tensor, "frame 4 4"]:
    """DL3DV-like: a partial loop around the middle of the room at varying height, looking inwards at a
    slowly drifting point near the centre."""
    half = room_max[:2]
    room_height = float(room_max[2])
    radii = (half - WALL_MARGIN) * _uniform(generator, 0.55, 0.85, 2)
    t = torch.linspace(0.0, 1.0, num_frames, dtype=torch.float64)
    span = _scalar(generator, 0.9, 1.8) * math.pi * (1.0 if _scalar(generator, 0.0, 1.0) < 0.5 else -1.0)
    angle = _scalar(generator, 0.0, 2 * math.pi) + span * t
    wobble = 1.0 + 0.08 * torch.sin(2 * math.pi * _scalar(generator, 1.0, 2.5) * t)
    xy = torch.stack([angle.cos(), angle.sin()], dim=-1) * radii * wobble[:, None]
    low, high = 1.0, room_height - VERTICAL_MARGIN
    mid, amplitude = (low + high) / 2, min(_scalar(generator, 0.2, 0.5), (high - low) / 2)
    z = mid + amplitude * torch.sin(
        2 * math.pi * _scalar(generator, 0.5, 1.5) * t + _scalar(generator, 0.0, 6.3)
    )
    eye = torch.cat([xy, z[:, None]], dim=-1)

    drift = (
        0.25
        * radii
        * torch.stack(
            [
                torch.sin(2 * math.pi * 0.7 * t + _scalar(generator, 0.0, 6.3)),
                torch.cos(2 * math.pi * 0.5 * t),
            ],
            dim=-1,
        )
    )
    target_height = _scalar(generator, 0.4, 1.2)
    target = torch.cat([drift, torch.full_like(t, target_height)[:, None]], dim=-1)
    return look_at(eye, target)


def sample_materials(num_materials: int, generator: torch.Generator) -> Materials:
    """Random textures with detail at every scale: 16 waves of 0.3-8 cycles per unit in random 3-D
    directions (the ray caster fades those finer than a pixel), half of them soft stripes. Waves vary
    mostly in brightness, with some colour, by about +-0.2 around a mid-range base colour."""
    shape = (num_materials, WAVES_PER_MATERIAL)
    direction = torch.randn(*shape, 3, generator=generator, dtype=torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    cycles_per_unit = torch.exp(_uniform(generator, math.log(0.3), math.log(8.0), *shape))
    stripes = torch.rand(shape, generator=generator, dtype=torch.float64) < 0.5
    brightness = _uniform(generator, -0.09, 0.09, *shape, 1)
    colour = brightness + _uniform(generator, -0.05, 0.05, *shape, 3)
    return Materials(
        base=_uniform(generator, 0.25, 0.75, num_materials, 3).float(),
        wave_direction=(direction * 2 * math.pi * cycles_per_unit[..., None]).float(),
        wave_phase=_uniform(generator, 0.0, 2 * math.pi, *shape).float(),
        wave_sharpness=torch.where(stripes, 4.0, 0.3).float(),
        wave_colour=colour.float(),
    )


def _random_rotation(generator: torch.Generator) -> Float[Tensor, "3 3"]:
    """A yaw about z, sometimes combined with a tilt about x (so some boxes are not axis-aligned at all)."""
    yaw = _scalar(generator, 0.0, 2 * math.pi)
    tilt = _scalar(generator, -0.6, 0.6) if _scalar(generator, 0.0, 1.0) < 0.4 else 0.0
    cy, sy, ct, st = math.cos(yaw), math.sin(yaw), math.cos(tilt), math.sin(tilt)
    rot_z = torch.tensor([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    rot_x = torch.tensor([[1.0, 0.0, 0.0], [0.0, ct, -st], [0.0, st, ct]], dtype=torch.float64)
    return rot_z @ rot_x


def _free_spot(
    room_min: Tensor,
    room_max: Tensor,
    radius: float,
    region: Tensor,
    camera_centres: Tensor,
    taken: list[tuple[Tensor, float]],
    generator: torch.Generator,
    attempts: int = 60,
) -> Tensor | None:
    """A centre for an object of bounding radius ``radius`` clear of cameras, walls and other objects."""
    for _ in range(attempts):
        xy = _uniform(generator, -1.0, 1.0, 2) * (region - radius).clamp_min(0.0)
        on_floor = _scalar(generator, 0.0, 1.0) < 0.6
        top = float(room_max[2]) - radius - 0.3
        z = radius if on_floor or top <= radius + 0.3 else _scalar(generator, radius + 0.3, top)
        centre = torch.cat([xy, torch.tensor([z], dtype=torch.float64)])
        inside = bool(((centre - radius >= room_min) & (centre + radius <= room_max)).all())
        clear_of_cameras = float((camera_centres - centre).norm(dim=-1).min()) >= radius + OBJECT_CLEARANCE
        clear_of_objects = all(float((centre - other).norm()) >= radius + r + 0.1 for other, r in taken)
        if inside and clear_of_cameras and clear_of_objects:
            return centre
    return None


def sample_geometry(
    room_min: Float[Tensor, "3"],
    room_max: Float[Tensor, "3"],
    camera_centres: Float[Tensor, "frame 3"],
    object_region: Float[Tensor, "2"],
    generator: torch.Generator,
) -> SceneGeometry:
    """Spheres and boxes (2-4 of each) placed inside ``|x|, |y| < object_region`` away from the cameras,
    plus textures for every surface and a point light under the ceiling."""
    spheres: list[tuple[Tensor, float]] = []
    boxes: list[tuple[Tensor, Tensor, Tensor]] = []
    taken: list[tuple[Tensor, float]] = []
    num_spheres = int(torch.randint(2, 5, (1,), generator=generator))
    num_boxes = int(torch.randint(2, 5, (1,), generator=generator))
    for _ in range(num_spheres):
        radius = _scalar(generator, 0.3, 0.9)
        centre = _free_spot(room_min, room_max, radius, object_region, camera_centres, taken, generator)
        if centre is not None:
            spheres.append((centre, radius))
            taken.append((centre, radius))
    for _ in range(num_boxes):
        half_size = _uniform(generator, 0.2, 0.8, 3)
        rotation = _random_rotation(generator)
        radius = float(half_size.norm())
        centre = _free_spot(room_min, room_max, radius, object_region, camera_centres, taken, generator)
        if centre is not None:
            boxes.append((centre, rotation, half_size))
            taken.append((centre, radius))

    def stacked(values: list[Tensor], shape: tuple[int, ...]) -> Tensor:
        return torch.stack(values).float() if values else torch.zeros(shape)

    light_xy = _uniform(generator, -0.3, 0.3, 2) * room_max[:2]
    light = torch.cat([light_xy, room_max[2:] - 0.3])
    return SceneGeometry(
        room_min=room_min.float(),
        room_max=room_max.float(),
        sphere_centre=stacked([c for c, _ in spheres], (0, 3)),
        sphere_radius=torch.tensor([r for _, r in spheres], dtype=torch.float32),
        box_centre=stacked([c for c, _, _ in boxes], (0, 3)),
        box_rotation=stacked([r for _, r, _ in boxes], (0, 3, 3)),
        box_half_size=stacked([h for _, _, h in boxes], (0, 3)),
        light_position=light.float(),
        ambient=0.35,
        materials=sample_materials(len(ROOM_FACES) + len(spheres) + len(boxes), generator),
    )
