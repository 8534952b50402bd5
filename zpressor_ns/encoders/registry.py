"""The encoder families: one record per family, from which everything else is derived.

A family (DepthSplat, MVSplat, pixelSplat) gives two methods, ``zpressor-<family>`` and ``<family>`` (the
baseline without ZPressor), at two presets (``paper``: the original's configuration; ``small``: the same
code paths at CPU widths). Its record holds the preset configurations, the encoder class, the map from the
original checkpoint keys, the initialisation files the original loads before training, the original training
recipe and the paper's scores. The Nerfstudio methods, ``zpressor-ns describe`` / ``import-checkpoint``, the
model config's ``method`` choices and ``paper_reference`` all read this registry; adding a family means one
new folder under ``zpressor_ns/encoders/`` and one line in :data:`FAMILIES` (plus its Nerfstudio entry points
in pyproject.toml, which a test checks against the registry).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from torch import Tensor

from zpressor_ns.encoders.base import EncoderConfig, FeedForwardEncoder

PRESET_NAMES = ("paper", "small")
SMALL_SUFFIX = "-small"
ZPRESSOR_PREFIX = "zpressor-"


@dataclass(frozen=True)
class InitWeights:
    """A weights file the original loads into part of the encoder before training (e.g. Depth Anything V2).

    ``renames`` maps the file's key prefixes onto the encoder's (first match wins); keys under ``ignored``
    have no counterpart in the original either; ``detect`` are key prefixes that identify such a file.
    """

    kind: str
    description: str
    renames: tuple[tuple[str, str], ...]
    ignored: tuple[str, ...] = ()
    detect: tuple[str, ...] = ()
    # Some files wrap their state dict, e.g. UniMatch's {"model": ...}.
    wrapper_key: str | None = None


@dataclass(frozen=True)
class TrainingRecipe:
    """The original's training configuration of one method at one preset (what ``ns-train`` starts from)."""

    image_shape: tuple[int, int]
    num_context_views: int
    num_target_views: int
    max_steps: int
    lr: float
    optimizer: Literal["adamw", "adam"] = "adam"
    pretrained_lr: float | None = None
    """Learning rate of the pretrained backbone parameters (None: one learning rate for all)."""
    weight_decay: float = 0.0
    schedule: Literal["one_cycle", "linear_warmup"] = "one_cycle"
    warmup_steps: int = 0
    """linear_warmup: steps from lr/2000 to lr (the original pixelSplat's LinearLR)."""
    max_grad_norm: float = 0.5
    lpips_weight: float = 0.05
    lpips_after_step: int = 0
    ib_weight: float = 0.0
    intermediate_weight: float = 0.0
    steps_per_save: int = 2_000
    steps_per_eval_image: int = 1_000
    batch_size: int = 1
    near: float | None = None
    """Depth range the original trains (and evaluates) with, when it is the method's own rather than the
    dataset's (MVSplat: 1 / 100); None: the dataset's default."""
    far: float | None = None
    view_sampler: str | None = None
    """The original's training view-sampler preset when it is the method's own (``zpressor_ns.data.samplers``,
    e.g. "mvsplat"); None: the dataset's."""
    eval_num_context_views: int | None = None
    """Context views of ``ns-eval``'s default index when the original's test scripts use another count than
    training (MVSplat's test_re10k.py: 36); None: the training count."""


@dataclass(frozen=True)
class PaperTable:
    """Scores of one table of the paper under one protocol: the index files, the resolution, the scenes."""

    source: str
    """E.g. "ZPressor paper, Table 1 (DL3DV, 256x448, 140 scenes)"."""
    index_pattern: str
    """Regular expression of the official index file names with one group: the context-view count."""
    image_shape: tuple[int, int]
    num_scenes: int | None
    """Scenes the paper averaged over (None: the whole index file)."""
    scores: Mapping[tuple[str, int], tuple[float, float, float]]
    """(method, context views) -> (PSNR, SSIM, LPIPS)."""
    index_digests: Mapping[int, str] = field(default_factory=dict)
    """Context views -> ``EvaluationIndex.digest()`` of the official index file the paper evaluated, so a
    file is recognised by its content, never by its name (empty: only the name and scene count are checked).
    The official files are not shipped; their digests identify them."""


@dataclass(frozen=True)
class EncoderFamily:
    name: str
    """Lower-case name; the methods are ``zpressor-<name>`` and ``<name>``."""
    title: str
    description: str
    presets: Mapping[str, EncoderConfig]
    """``paper`` and ``small`` configurations (with ZPressor; the baseline flips ``use_zpressor``)."""
    encoder_type: type[FeedForwardEncoder]
    import_official: Callable[[dict[str, Tensor], EncoderConfig], dict[str, Tensor]]
    """Original checkpoint state dict -> this project's names for an encoder of that configuration."""
    recipe: Callable[[bool, str], TrainingRecipe]
    """(use_zpressor, preset) -> the original's training configuration."""
    init_weights: tuple[InitWeights, ...] = ()
    paper_tables: tuple[PaperTable, ...] = ()
    config_overrides: Callable[..., dict] = field(default=lambda **overrides: overrides)
    """Turns ``build_encoder`` keyword overrides into config fields (e.g. pixelSplat's num_context_views)."""

    @property
    def methods(self) -> tuple[str, str]:
        return f"{ZPRESSOR_PREFIX}{self.name}", self.name

    def config(self, use_zpressor: bool, preset: str = "paper", **overrides) -> EncoderConfig:
        if preset not in self.presets:
            raise ValueError(
                f"unknown preset {preset!r} for {self.title}; choose one of {sorted(self.presets)}"
            )
        fields = self.config_overrides(**overrides)
        return replace(self.presets[preset], use_zpressor=use_zpressor, **fields)

    def build(self, config: EncoderConfig) -> FeedForwardEncoder:
        return self.encoder_type(config)


def _families() -> tuple[EncoderFamily, ...]:
    # Imported here so that importing the registry's types never imports every family.
    from zpressor_ns.encoders.depthsplat import FAMILY as DEPTHSPLAT
    from zpressor_ns.encoders.mvsplat import FAMILY as MVSPLAT

    return (DEPTHSPLAT, MVSPLAT)


_FAMILIES: dict[str, EncoderFamily] | None = None


def families() -> dict[str, EncoderFamily]:
    """Every family by name, in registration order."""
    global _FAMILIES
    if _FAMILIES is None:
        _FAMILIES = {family.name: family for family in _families()}
    return _FAMILIES


def method_names() -> tuple[str, ...]:
    """``zpressor-<family>`` and ``<family>`` of every family."""
    return tuple(method for family in families().values() for method in family.methods)


def registered_method_names() -> tuple[str, ...]:
    """The Nerfstudio method names: every method, and each at the small preset with ``-small``."""
    return tuple(name for method in method_names() for name in (method, method + SMALL_SUFFIX))


def family_of(method: str) -> tuple[EncoderFamily, bool]:
    """(family, use_zpressor) of a method name such as "zpressor-mvsplat" or "pixelsplat"."""
    use_zpressor = method.startswith(ZPRESSOR_PREFIX)
    name = method.removeprefix(ZPRESSOR_PREFIX)
    if name not in families():
        raise ValueError(f"unknown method {method!r}; choose one of {list(method_names())}")
    return families()[name], use_zpressor


def resolve_method(name: str, preset: str | None = None) -> tuple[str, str]:
    """(method, preset) of a registered Nerfstudio method name; ``preset`` overrides the name's own."""
    if name not in registered_method_names():
        raise ValueError(f"unknown method {name!r}; registered methods: {list(registered_method_names())}")
    small = name.endswith(SMALL_SUFFIX)
    method = name.removesuffix(SMALL_SUFFIX) if small else name
    return method, preset or ("small" if small else "paper")


def encoder_config(method: str, preset: str = "paper", **overrides) -> EncoderConfig:
    """The configuration of ``method`` at ``preset`` with ``overrides`` applied."""
    family, use_zpressor = family_of(method)
    return family.config(use_zpressor, preset, **overrides)


def build_encoder(method: str, preset: str = "paper", **overrides) -> FeedForwardEncoder:
    """The encoder of ``method`` (e.g. "zpressor-depthsplat", "mvsplat") at ``preset`` ("paper" or "small").

    ``overrides`` replace fields of the preset's configuration (e.g. ``view_chunk=8``, ``memory_budget_gb=6``,
    ``zpressor=ZPressorOptions(num_layers=3)``); architecture fields change the parameter layout, so official
    weights only load into the presets as they are.
    """
    family, _ = family_of(method)
    return family.build(encoder_config(method, preset, **overrides))


def import_official(
    state_dict: dict[str, Tensor], method: str, preset: str = "paper", **overrides
) -> dict[str, Tensor]:
    """An original checkpoint's ``state_dict`` (keys ``encoder.*``) renamed for ``build_encoder(method,
    preset, **overrides)``, loadable with ``strict=True``. Every key must find a place (else ValueError)."""
    family, _ = family_of(method)
    return family.import_official(state_dict, encoder_config(method, preset, **overrides))


def required_multiple(method: str, preset: str = "paper") -> int:
    """Multiple that image sides must have for ``method`` at ``preset``."""
    return encoder_config(method, preset).required_multiple
