"""Evaluation views from an index JSON in the original format, and the rule that builds one.

An index maps scene key -> ``{"context": [frame indices], "target": [frame indices]}`` (or ``null``,
meaning the scene is left out). The official files (``<dataset>_ctx_<N>v_tgt_8v_n<window>.json``
in the ZPressor repository) were made by this rule, applied to the first ``window`` frames of each
test scene (200 for RE10K/ACID, 50 for DL3DV):

- context: farthest-point sampling over the camera centres, sorted by frame index;
- targets: the remaining frames cut into ``num_target`` equal bins (``len // num_target`` frames
  each); the first frame of each bin is a target.

Scenes too short for the rule are left out.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from jaxtyping import Float
from torch import Tensor

from zpressor_ns.cameras import camera_centres
from zpressor_ns.data.samplers import farthest_point_order
from zpressor_ns.data.scene import SceneError, SceneReader, read_json_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexEntry:
    context: tuple[int, ...]
    target: tuple[int, ...]


def _frame_list(value: object, field: str, key: str, source: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in value)
    ):
        raise SceneError(
            f"{source}: scene {key!r} needs a non-empty list of frame numbers under {field!r}, got {value!r}"
        )
    if min(value) < 0:
        raise SceneError(f"{source}: scene {key!r} has negative frame numbers under {field!r}")
    return tuple(value)


class EvaluationIndex(Mapping[str, IndexEntry]):
    """Scene key -> context/target frames, in the order of the file; ``null`` entries are dropped."""

    def __init__(self, entries: dict[str, IndexEntry], source: str, num_null: int = 0) -> None:
        self.entries = dict(entries)
        self.source = source
        self.num_null = num_null
        self._reported_missing = False

    @classmethod
    def load(cls, path: Path | str) -> EvaluationIndex:
        path = Path(path)
        if not path.is_file():
            raise SceneError(
                f"evaluation index {path} does not exist; use the official files (ZPressor repository, "
                "depthsplat/assets/<dataset>_evaluation/) or build one with build_evaluation_index"
            )
        raw = read_json_file(path)
        if not isinstance(raw, dict):
            raise SceneError(
                f"{path}: an evaluation index is a JSON object {{scene key: {{context, target}}}}"
            )
        entries, num_null = {}, 0
        for key, value in raw.items():
            if value is None:
                num_null += 1
                continue
            if not isinstance(value, dict):
                raise SceneError(f"{path}: entry of scene {key!r} must be an object with context and target")
            entries[key] = IndexEntry(
                _frame_list(value.get("context"), "context", key, str(path)),
                _frame_list(value.get("target"), "target", key, str(path)),
            )
        if not entries:
            raise SceneError(f"{path}: the evaluation index names no scene (all {num_null} entries are null)")
        return cls(entries, str(path), num_null)

    @property
    def fewest_context_views(self) -> tuple[str, int]:
        """(scene, count) of the entry with the fewest context views (ZPressor needs at least K)."""
        key = min(self.entries, key=lambda k: len(self.entries[k].context))
        return key, len(self.entries[key].context)

    def digest(self) -> str:
        """SHA-256 of what the index selects (scene keys with their context and target frames), whatever
        the file's formatting or key order: two indices evaluate the same views exactly when it agrees."""
        content = {key: [list(e.context), list(e.target)] for key, e in sorted(self.entries.items())}
        return hashlib.sha256(json.dumps(content, separators=(",", ":")).encode()).hexdigest()

    def __getitem__(self, key: str) -> IndexEntry:
        return self.entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def views(self, key: str, num_frames: int) -> tuple[list[int], list[int]]:
        """(context, target) of a scene, checked against its frame count."""
        if key not in self.entries:
            raise SceneError(f"scene {key!r} has no entry in the evaluation index {self.source}")
        entry = self.entries[key]
        beyond = sorted({i for i in entry.context + entry.target if i >= num_frames})
        if beyond:
            raise SceneError(
                f"evaluation index {self.source} asks scene {key!r} for frames {beyond[:10]}, but the scene "
                f"has only {num_frames} frames; the data does not match the index (another split, or a "
                "truncated scene)"
            )
        return list(entry.context), list(entry.target)

    def report_missing(self, available_keys: Iterable[str]) -> list[str]:
        """Keys usable for evaluation (in the order given); logs once how many index scenes are absent.

        Raises :class:`SceneError` when none of the index's scenes is in the data.
        """
        available = list(available_keys)
        usable = [key for key in available if key in self.entries]
        if not usable:
            raise SceneError(
                f"none of the {len(self.entries)} scenes of evaluation index {self.source} (e.g. "
                f"{', '.join(list(self.entries)[:2])}) is in the data ({len(available)} scenes, e.g. "
                f"{', '.join(available[:2]) or 'none'}); the index belongs to another dataset or split"
            )
        present = set(usable)
        missing = [key for key in self.entries if key not in present]
        if missing and not self._reported_missing:
            logger.warning(
                "%d of %d index scenes are not in the data (e.g. %s); evaluating the other %d (index %s)",
                len(missing),
                len(self.entries),
                ", ".join(missing[:2]),
                len(usable),
                self.source,
            )
            self._reported_missing = True
        return usable


def checked_keys(index: EvaluationIndex, reader: SceneReader, keys: list[str], *, strict: bool) -> list[str]:
    """The ``keys`` whose scene reads and has every frame the index asks of it.

    Run before an evaluation, so a mismatched index is found before any scene is scored. Scenes that
    do not fit are left out with a warning, unless ``strict`` (a benchmark, where the average must
    cover the whole index) or none fits: then one :class:`SceneError` lists them.
    """
    problems: dict[str, str] = {}
    for key in keys:
        try:
            index.views(key, reader.scene(key).num_frames)
        except SceneError as error:
            problems[key] = str(error)
    if problems and (strict or len(problems) == len(keys)):
        examples = "\n  ".join(list(problems.values())[:3])
        raise SceneError(
            f"evaluation index {index.source} does not fit {len(problems)} of the {len(keys)} scenes it "
            f"shares with the data, e.g.:\n  {examples}\nUse the index made for this data and split, or "
            "remove those scenes from it"
        )
    for key, problem in problems.items():
        logger.warning("leaving scene %r out of evaluation: %s", key, problem)
    return [key for key in keys if key not in problems]


def evaluation_views(
    centres: Float[Tensor, "frame 3"], num_context: int, num_target: int, window: int
) -> tuple[list[int], list[int]] | None:
    """The official index rule (module docstring) for one scene; None when the scene is too short."""
    num_frames = min(len(centres), window) if window > 0 else len(centres)
    if num_frames < num_context:
        return None
    context = sorted(farthest_point_order(centres[:num_frames], num_context))
    chosen = set(context)
    rest = [i for i in range(num_frames) if i not in chosen]
    if len(rest) < num_target:
        return None
    bin_size = len(rest) // num_target
    return context, [rest[min(i * bin_size, len(rest) - 1)] for i in range(num_target)]


def build_evaluation_index(
    reader: SceneReader, num_context: int, num_target: int = 8, window: int = 200
) -> dict[str, dict[str, list[int]]]:
    """An index in the original JSON format for every scene of ``reader`` the rule fits.

    Scenes that cannot be read are skipped with a warning; ``json.dump`` the result to save it.
    """
    index: dict[str, dict[str, list[int]]] = {}
    for key in reader.keys():
        try:
            scene = reader.scene(key)
        except SceneError as error:
            logger.warning("skipping scene %r while building an evaluation index: %s", key, error)
            continue
        views = evaluation_views(camera_centres(scene.c2w), num_context, num_target, window)
        if views is not None:
            index[key] = {"context": views[0], "target": views[1]}
    return index
