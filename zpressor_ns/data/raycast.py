"""An analytic ray caster for synthetic scenes: a textured room (box seen from inside) with spheres and
oriented boxes, shaded view-independently so every view of a point has the same colour.

All work is batched over rays (no per-pixel Python; the only loop in a chunk is over materials) and
frames are rendered in chunks of rays to bound memory. Rays are built as
``c2w[:3, :3] @ ((u - cx) / fx, (v - cy) / fy, 1)`` with normalised pixel coordinates
``u = (x + 0.5) / W``, so the hit distance along a ray *is* the OpenCV z-depth.

Textures are anti-aliased analytically instead of by supersampling: every texture wave is a sinusoid,
and a sinusoid averaged over a Gaussian pixel footprint of width ``sigma`` is the same sinusoid scaled
by ``exp(-(omega sigma)^2 / 2)``. One ray per pixel then gives clean images at a quarter of the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int64
from torch import Tensor

# Materials 0..5 are the room's faces in this order; spheres and boxes follow.
ROOM_FACES = ("-x", "+x", "-y", "+y", "-z", "+z")
_HIT_EPSILON = 1e-4
# Gaussian footprint std as a fraction of the pixel's width on the surface (a box pixel has 0.29).
_FOOTPRINT_STD = 0.4


@dataclass(frozen=True)
class Materials:
    """Procedural albedo, one row per material: a base colour plus a sum of 3-D waves.

    Each wave is ``g(dot(direction, p) + phase)`` with ``g(x) = tanh(s sin x) / tanh(s)``: a sine for a
    small sharpness ``s`` and a soft-edged stripe for a large one. The wave's angular frequency is the
    norm of its direction. Evaluated at world positions, the texture is fixed to the surface.
    """

    base: Float[Tensor, "material 3"]
    wave_direction: Float[Tensor, "material wave 3"]
    wave_phase: Float[Tensor, "material wave"]
    wave_sharpness: Float[Tensor, "material wave"]
    wave_colour: Float[Tensor, "material wave 3"]

    def albedo(
        self,
        points: Float[Tensor, "ray 3"],
        material: Int64[Tensor, " ray"],
        footprint: Float[Tensor, " ray"],
    ) -> Float[Tensor, "ray 3"]:
        """Colour at ``points``; waves finer than the pixel ``footprint`` (world units) fade out."""
        num_materials = len(self.base)
        order = material.argsort(stable=True)
        counts = torch.bincount(material, minlength=num_materials).tolist()
        frequency = self.wave_direction.norm(dim=-1)
        pieces = []
        for index, (group_points, group_footprint) in enumerate(
            zip(points[order].split(counts), footprint[order].split(counts), strict=True)
        ):
            if len(group_points) == 0:
                continue
            angle = group_points @ self.wave_direction[index].T + self.wave_phase[index]
            sharpness = self.wave_sharpness[index]
            wave = torch.tanh(sharpness * torch.sin(angle)) / torch.tanh(sharpness)
            wave = wave * torch.exp(-0.5 * (frequency[index] * group_footprint[:, None]) ** 2)
            pieces.append(self.base[index] + wave @ self.wave_colour[index])
        colour = torch.empty_like(points)
        colour[order] = torch.cat(pieces)
        return colour.clamp(0.02, 0.98)


@dataclass(frozen=True)
class SceneGeometry:
    """Everything the ray caster needs; world units are arbitrary but shared with the cameras."""

    room_min: Float[Tensor, "3"]
    room_max: Float[Tensor, "3"]
    sphere_centre: Float[Tensor, "sphere 3"]
    sphere_radius: Float[Tensor, " sphere"]
    box_centre: Float[Tensor, "box 3"]
    box_rotation: Float[Tensor, "box 3 3"]  # columns: the box's axes in world coordinates
    box_half_size: Float[Tensor, "box 3"]
    light_position: Float[Tensor, "3"]  # a point light without fall-off
    ambient: float
    materials: Materials  # rows: ROOM_FACES, then spheres, then boxes


@dataclass(frozen=True)
class RayHits:
    distance: Float[Tensor, " ray"]  # ray parameter t of the first hit
    normal: Float[Tensor, "ray 3"]  # unit surface normal facing the ray
    material: Int64[Tensor, " ray"]


def _hit_room(
    geometry: SceneGeometry, origins: Float[Tensor, "ray 3"], directions: Float[Tensor, "ray 3"]
) -> tuple[Float[Tensor, " ray"], Float[Tensor, "ray 3"], Int64[Tensor, " ray"]]:
    """Exit point of rays that start inside the room: the nearest wall along each ray."""
    towards_max = directions > 0
    wall = torch.where(towards_max, geometry.room_max, geometry.room_min)
    parallel = directions.abs() < 1e-12
    per_axis = torch.where(parallel, torch.inf, (wall - origins) / torch.where(parallel, 1.0, directions))
    distance, axis = per_axis.min(dim=-1)
    hits_max = towards_max.gather(-1, axis[:, None])
    normal = torch.zeros_like(origins).scatter_(-1, axis[:, None], torch.where(hits_max, -1.0, 1.0))
    return distance, normal, 2 * axis + hits_max[:, 0].long()


def _hit_spheres(
    geometry: SceneGeometry, origins: Float[Tensor, "ray 3"], directions: Float[Tensor, "ray 3"]
) -> Float[Tensor, "ray sphere"]:
    """Nearest entry of each ray into each sphere (inf where it misses or the sphere is behind)."""
    centre, radius = geometry.sphere_centre, geometry.sphere_radius
    # |o + t d - c|^2 = r^2 expanded so that only [ray, sphere] tensors are formed (matrix products).
    a = (directions * directions).sum(-1, keepdim=True)
    half_b = (directions * origins).sum(-1, keepdim=True) - directions @ centre.T
    c = (
        (origins * origins).sum(-1, keepdim=True)
        - 2 * origins @ centre.T
        + (centre * centre).sum(-1)
        - radius**2
    )
    discriminant = half_b * half_b - a * c
    distance = (-half_b - discriminant.clamp_min(0).sqrt()) / a
    return torch.where((discriminant > 0) & (distance > _HIT_EPSILON), distance, torch.inf)


def _hit_boxes(
    geometry: SceneGeometry, origins: Float[Tensor, "ray 3"], directions: Float[Tensor, "ray 3"]
) -> tuple[Float[Tensor, "ray box"], Int64[Tensor, "ray box"], Float[Tensor, "ray box"]]:
    """Slab test in each box's own frame: entry distance (inf on a miss), entered axis, and the sign
    of the outward normal along that axis."""
    num_boxes = len(geometry.box_centre)
    to_local = geometry.box_rotation.permute(1, 0, 2).reshape(3, num_boxes * 3)  # world -> all box frames
    centre_local = (geometry.box_centre[:, :, None] * geometry.box_rotation).sum(1)
    local_origin = (origins @ to_local).view(len(origins), num_boxes, 3) - centre_local
    local_direction = (directions @ to_local).view(len(origins), num_boxes, 3)
    parallel = local_direction.abs() < 1e-12
    inverse = 1.0 / torch.where(parallel, 1e-12, local_direction)
    t_low = (-geometry.box_half_size - local_origin) * inverse
    t_high = (geometry.box_half_size - local_origin) * inverse
    enter, axis = torch.minimum(t_low, t_high).max(dim=-1)
    leave = torch.maximum(t_low, t_high).min(dim=-1).values
    distance = torch.where((enter <= leave) & (enter > _HIT_EPSILON), enter, torch.inf)
    sign = -torch.sign(local_direction.gather(-1, axis[..., None]))[..., 0]
    return distance, axis, sign


def cast_rays(
    geometry: SceneGeometry, origins: Float[Tensor, "ray 3"], directions: Float[Tensor, "ray 3"]
) -> RayHits:
    """First hit of every ray; origins must lie inside the room (every ray then hits something)."""
    num_spheres = len(geometry.sphere_radius)
    num_boxes = len(geometry.box_centre)
    room_distance, room_normal, room_material = _hit_room(geometry, origins, directions)
    sphere_distance = _hit_spheres(geometry, origins, directions)
    box_distance, box_axis, box_sign = _hit_boxes(geometry, origins, directions)
    distance, which = torch.cat([room_distance[:, None], sphere_distance, box_distance], dim=1).min(dim=1)
    points = origins + distance[:, None] * directions

    normal = room_normal
    if num_spheres:
        sphere = (which - 1).clamp(0, num_spheres - 1)
        sphere_normal = (points - geometry.sphere_centre[sphere]) / geometry.sphere_radius[sphere, None]
        is_sphere = (which >= 1) & (which <= num_spheres)
        normal = torch.where(is_sphere[:, None], sphere_normal, normal)
    if num_boxes:
        box = (which - 1 - num_spheres).clamp(0, num_boxes - 1)
        axis = box_axis.gather(1, box[:, None])[:, 0]
        box_normal = geometry.box_rotation[box, :, axis] * box_sign.gather(1, box[:, None])
        normal = torch.where((which > num_spheres)[:, None], box_normal, normal)
    # Candidate 0 is the room (its own face id); candidate j > 0 is object j - 1, material 5 + j.
    material = torch.where(which == 0, room_material, which + len(ROOM_FACES) - 1)
    return RayHits(distance=distance, normal=normal, material=material)


def shade(
    geometry: SceneGeometry,
    origins: Float[Tensor, "ray 3"],
    directions: Float[Tensor, "ray 3"],
    hits: RayHits,
    pixel_angle: Float[Tensor, " ray"],
) -> Float[Tensor, "ray 3"]:
    """Lambertian colour under a point light plus ambient; the lighting does not depend on the view.

    ``pixel_angle`` (about 1 / focal length in pixels) sets the texture's anti-aliasing footprint.
    """
    points = origins + hits.distance[:, None] * directions
    to_light = geometry.light_position - points
    to_light = to_light / to_light.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    lambert = (hits.normal * to_light).sum(-1).clamp_min(0.0)
    brightness = geometry.ambient + (1.0 - geometry.ambient) * lambert
    ray_length = directions.norm(dim=-1)
    # The pixel's width on the surface: range x angle, stretched at grazing incidence (capped at 4x).
    obliquity = ((hits.normal * directions).sum(-1).abs() / ray_length).clamp_min(0.25)
    footprint = _FOOTPRINT_STD * hits.distance * ray_length * pixel_angle / obliquity
    return geometry.materials.albedo(points, hits.material, footprint) * brightness[:, None]


def camera_rays(
    c2w: Float[Tensor, "frame 4 4"], K: Float[Tensor, "frame 3 3"], height: int, width: int
) -> tuple[Float[Tensor, "frame height width 3"], Float[Tensor, "frame height width 3"]]:
    """Origins and directions through pixel centres; directions have camera-z component 1."""
    dtype, device = c2w.dtype, c2w.device
    v = (torch.arange(height, dtype=dtype, device=device) + 0.5) / height
    u = (torch.arange(width, dtype=dtype, device=device) + 0.5) / width
    fx, fy = K[:, 0, 0, None, None], K[:, 1, 1, None, None]
    cx, cy = K[:, 0, 2, None, None], K[:, 1, 2, None, None]
    x = ((u[None, None, :] - cx) / fx).expand(-1, height, width)
    y = ((v[None, :, None] - cy) / fy).expand(-1, height, width)
    rotation = c2w[:, None, None, :3, :3]
    directions = rotation[..., 0] * x[..., None] + rotation[..., 1] * y[..., None] + rotation[..., 2]
    origins = c2w[:, None, None, :3, 3].expand_as(directions)
    return origins, directions


def render_views(
    geometry: SceneGeometry,
    c2w: Float[Tensor, "frame 4 4"],
    K: Float[Tensor, "frame 3 3"],
    height: int,
    width: int,
    max_rays: int = 1 << 17,
) -> tuple[Float[Tensor, "frame 3 height width"], Float[Tensor, "frame height width"]]:
    """Images in [0, 1] and z-depth at pixel centres for cameras given as OpenCV c2w + normalised K."""
    images, depths = [], []
    frames_per_chunk = max(1, max_rays // (height * width))
    # Radians per pixel: the footprint scale, taken from the mean of fx and fy in pixels.
    pixel_angle = 2.0 / (K[:, 0, 0] * width + K[:, 1, 1] * height)
    for start in range(0, len(c2w), frames_per_chunk):
        chunk = slice(start, start + frames_per_chunk)
        origins, directions = camera_rays(c2w[chunk], K[chunk], height, width)
        num = len(origins)
        origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)
        hits = cast_rays(geometry, origins, directions)
        angle = pixel_angle[chunk].repeat_interleave(height * width)
        colour = shade(geometry, origins, directions, hits, angle)
        images.append(colour.reshape(num, height, width, 3).permute(0, 3, 1, 2))
        depths.append(hits.distance.reshape(num, height, width))
    return torch.cat(images).clamp(0.0, 1.0), torch.cat(depths)
