"""Write predicted Gaussians as a standard 3D Gaussian Splatting .ply (the INRIA layout).

The layout is what common viewers and tools read (SuperSplat, the INRIA SIBR viewer, Nerfstudio's
``ns-export gaussian-splat``): binary little-endian float32 properties
``x y z nx ny nz f_dc_0..2 f_rest_0..44 opacity scale_0..2 rot_0..3`` with opacity as a logit, log
scales, a wxyz unit quaternion, and ``f_rest`` channel-major (all higher-order coefficients of red, then
green, then blue). Our Gaussians carry full covariances, so scales and rotation come from an
eigendecomposition. Everything is vectorised with numpy structured arrays, so millions of Gaussians
write in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float

from zpressor_ns.spherical_harmonics import sh_degree_from_coefficients

ArrayLike = np.ndarray | torch.Tensor

# Smallest covariance eigenvalue kept: flat (rank-deficient) Gaussians get this thickness instead of
# log(0) = -inf scales.
MIN_EIGENVALUE = 1e-20
# Opacities are clipped to [eps, 1 - eps] before the logit so fully opaque Gaussians stay finite.
_OPACITY_EPS = 1e-7


@dataclass(frozen=True)
class PlyExportReport:
    """What ``write_ply`` wrote and what it left out (and why)."""

    path: Path
    written: int
    dropped_transparent: int
    dropped_non_finite: int


def ply_property_names(sh_degree: int) -> list[str]:
    """The per-Gaussian properties of a 3DGS .ply whose SH go up to ``sh_degree``, in file order."""
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return [
        *("x", "y", "z", "nx", "ny", "nz"),
        *(f"f_dc_{i}" for i in range(3)),
        *(f"f_rest_{i}" for i in range(rest)),
        "opacity",
        *(f"scale_{i}" for i in range(3)),
        *(f"rot_{i}" for i in range(4)),
    ]


def _to_numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def rotation_to_quaternion(rotations: Float[np.ndarray, "n 3 3"]) -> Float[np.ndarray, "n 4"]:
    """Unit quaternions (w, x, y, z), w >= 0, of proper rotation matrices.

    Each of the four standard formulas divides by a different quantity; using, per matrix, the one with
    the largest divisor keeps every case well conditioned (Shepperd's method).
    """
    r = rotations
    trace = r[:, 0, 0] + r[:, 1, 1] + r[:, 2, 2]
    candidates = np.stack(
        [
            np.stack(
                [1 + trace, r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]], -1
            ),
            np.stack(
                [
                    r[:, 2, 1] - r[:, 1, 2],
                    1 + 2 * r[:, 0, 0] - trace,
                    r[:, 0, 1] + r[:, 1, 0],
                    r[:, 0, 2] + r[:, 2, 0],
                ],
                -1,
            ),
            np.stack(
                [
                    r[:, 0, 2] - r[:, 2, 0],
                    r[:, 0, 1] + r[:, 1, 0],
                    1 + 2 * r[:, 1, 1] - trace,
                    r[:, 1, 2] + r[:, 2, 1],
                ],
                -1,
            ),
            np.stack(
                [
                    r[:, 1, 0] - r[:, 0, 1],
                    r[:, 0, 2] + r[:, 2, 0],
                    r[:, 1, 2] + r[:, 2, 1],
                    1 + 2 * r[:, 2, 2] - trace,
                ],
                -1,
            ),
        ],
        axis=1,
    )  # [n, 4 formulas, 4]; formula i is 4 q_i q (i = w, x, y, z)
    pivots = np.stack([trace, r[:, 0, 0], r[:, 1, 1], r[:, 2, 2]], -1).argmax(-1)
    quaternions = candidates[np.arange(len(r)), pivots]
    quaternions /= np.linalg.norm(quaternions, axis=-1, keepdims=True)
    return np.where(quaternions[:, :1] < 0, -quaternions, quaternions)


def covariance_to_scale_rotation(
    covariances: Float[np.ndarray, "n 3 3"],
) -> tuple[Float[np.ndarray, "n 3"], Float[np.ndarray, "n 4"]]:
    """Per-axis standard deviations and wxyz rotation with covariance = R diag(scale^2) R^T."""
    symmetric = 0.5 * (covariances + np.swapaxes(covariances, -1, -2))
    eigenvalues, eigenvectors = np.linalg.eigh(symmetric)
    # eigh may return a reflection (det -1); flipping one axis makes it a rotation with the same
    # covariance.
    flip = np.linalg.det(eigenvectors) < 0
    eigenvectors[flip, :, 2] *= -1
    scales = np.sqrt(np.maximum(eigenvalues, MIN_EIGENVALUE))
    return scales, rotation_to_quaternion(eigenvectors)


def write_ply(
    path: str | Path,
    means: Float[ArrayLike, "n 3"],
    covariances: Float[ArrayLike, "n 3 3"],
    harmonics: Float[ArrayLike, "n 3 d_sh"],
    opacities: Float[ArrayLike, " n"],
    sh_degree_out: int = 3,
    min_opacity: float = 1.0 / 255.0,
) -> PlyExportReport:
    """Write one scene's Gaussians (world frame, colour-major SH, opacities in [0, 1]) as a 3DGS .ply.

    SH are truncated, or zero-padded, to ``sh_degree_out`` (3 is what standard viewers expect). Rows
    with non-finite values or with opacity below ``min_opacity`` (invisible after rasterization) are
    dropped and counted in the report.
    """
    means, covariances, harmonics, opacities = (
        _to_numpy(t) for t in (means, covariances, harmonics, opacities)
    )
    count = means.shape[0]
    if means.shape != (count, 3) or covariances.shape != (count, 3, 3) or opacities.shape != (count,):
        raise ValueError(
            f"write_ply({path}): expected means [N,3], covariances [N,3,3], opacities [N]; got "
            f"{means.shape}, {covariances.shape}, {opacities.shape}"
        )
    if harmonics.ndim != 3 or harmonics.shape[:2] != (count, 3):
        raise ValueError(f"write_ply({path}): expected colour-major harmonics [N,3,D], got {harmonics.shape}")
    sh_degree_from_coefficients(harmonics.shape[-1])
    if not 0 <= sh_degree_out <= 3:
        raise ValueError(
            f"write_ply({path}): sh_degree_out must be in 0..3 (the 3DGS .ply layout), got {sh_degree_out}"
        )

    finite = (
        np.isfinite(means).all(-1)
        & np.isfinite(covariances).all((-1, -2))
        & np.isfinite(harmonics).all((-1, -2))
        & np.isfinite(opacities)
    )
    opaque_enough = np.where(finite, opacities, 0.0) >= min_opacity
    keep = finite & opaque_enough
    means, covariances, harmonics, opacities = (
        means[keep],
        covariances[keep],
        harmonics[keep],
        opacities[keep],
    )

    coefficients_out = (sh_degree_out + 1) ** 2
    sh = np.zeros((len(means), 3, coefficients_out))
    used = min(coefficients_out, harmonics.shape[-1])
    sh[:, :, :used] = harmonics[:, :, :used]
    scales, quaternions = covariance_to_scale_rotation(covariances)
    clipped = np.clip(opacities, _OPACITY_EPS, 1.0 - _OPACITY_EPS)
    columns = np.concatenate(
        [
            means,
            np.zeros_like(means),
            sh[:, :, 0],
            sh[:, :, 1:].reshape(len(means), -1),  # channel-major, as the INRIA layout
            np.log(clipped / (1.0 - clipped))[:, None],
            np.log(scales),
            quaternions,
        ],
        axis=1,
    )
    names = ply_property_names(sh_degree_out)
    records = np.empty(len(means), dtype=[(name, "<f4") for name in names])
    for index, name in enumerate(names):
        records[name] = columns[:, index]

    header = "\n".join(
        ["ply", "format binary_little_endian 1.0", f"element vertex {len(records)}"]
        + [f"property float {name}" for name in names]
        + ["end_header\n"]
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(records.tobytes())
    return PlyExportReport(
        path=path,
        written=len(records),
        dropped_transparent=int((finite & ~opaque_enough).sum()),
        dropped_non_finite=int((~finite).sum()),
    )


_PLY_TYPES = {
    "float": "<f4",
    "float32": "<f4",
    "double": "<f8",
    "float64": "<f8",
    "uchar": "u1",
    "uint8": "u1",
}


def read_ply(path: str | Path) -> dict[str, np.ndarray]:
    """Properties of the vertex element of a binary little-endian .ply (such as ``write_ply``'s output)."""
    with open(path, "rb") as handle:
        if handle.readline().strip() != b"ply":
            raise ValueError(f"{path}: not a .ply file")
        fields, count, encoding = [], None, None
        while (line := handle.readline()) and line.strip() != b"end_header":
            words = line.decode("ascii").split()
            if words[:1] == ["format"]:
                encoding = words[1]
            elif words[:2] == ["element", "vertex"]:
                count = int(words[2])
            elif words[:1] == ["property"] and count is not None:
                if words[1] not in _PLY_TYPES:
                    raise ValueError(f"{path}: unsupported property type {words[1]!r}")
                fields.append((words[2], _PLY_TYPES[words[1]]))
        if encoding != "binary_little_endian" or count is None:
            raise ValueError(f"{path}: expected a binary_little_endian .ply with a vertex element")
        records = np.frombuffer(handle.read(), dtype=fields, count=count)
    return {name: records[name].copy() for name, _ in fields}
