"""Opening a trained run (its ``config.yml`` and newest checkpoint) without trusting the files.

Nerfstudio writes ``config.yml`` with ``yaml.dump`` (Python-object tags) and its ``eval_setup`` reads it
back with ``yaml.Loader``, which can call any importable function: a crafted config runs code in
``ns-eval``, ``ns-viewer``, ``ns-export`` and ``ns-render`` (Nerfstudio 1.1.5 trusts its config files).
The package's own commands (``zpressor-ns export``, ``view``, ``sweep``, ``demo``) read configs with
:class:`ConfigLoader` instead, which builds only what Nerfstudio's configs are made of: dataclass
configuration objects and class references from ``nerfstudio``, ``zpressor_ns`` and ``torch.optim``
modules, enums of those modules, paths and tuples. Any other tag is refused with a message naming it.
Checkpoints are read weights-only (``zpressor_ns.checkpoints``).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import pathlib
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from nerfstudio.engine.trainer import TrainerConfig

from zpressor_ns.checkpoints import CheckpointError
from zpressor_ns.nerfstudio.pipeline import FeedForwardPipeline, FeedForwardPipelineConfig
from zpressor_ns.nerfstudio.trainer import newest_readable_checkpoint

PYTHON_TAG = "tag:yaml.org,2002:python/"
TRUSTED_MODULES = ("nerfstudio", "zpressor_ns", "torch.optim")


class ConfigError(ValueError):
    """A config.yml that is refused or is not a run of this package's methods."""


class _Refused(yaml.YAMLError):
    pass


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader plus the Python tags of Nerfstudio's configs (see the module docstring)."""


def _trusted_module(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in TRUSTED_MODULES)


def _refuse(node: yaml.Node, tag: str, why: str) -> _Refused:
    return _Refused(f"refused YAML tag {tag!r} (line {node.start_mark.line + 1}): {why}")


def _resolve(node: yaml.Node, tag: str, name: str) -> Any:
    """The object a tag names, imported only from the trusted packages."""
    module_name, _, attribute = name.rpartition(".")
    if not _trusted_module(module_name) and not module_name.startswith("pathlib"):
        raise _refuse(node, tag, f"{module_name or name!r} is not a Nerfstudio or zpressor-ns module")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise _refuse(node, tag, f"{name!r} cannot be found ({error})") from None


def _construct_dataclass(loader: ConfigLoader, suffix: str, node: yaml.Node):
    tag = f"{PYTHON_TAG}object:{suffix}"
    cls = _resolve(node, tag, suffix)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and _trusted_module(cls.__module__)):
        raise _refuse(node, tag, "only Nerfstudio and zpressor-ns configuration dataclasses are built")
    if not isinstance(node, yaml.MappingNode):
        raise _refuse(node, tag, "a configuration object must be a mapping of its fields")
    instance = cls.__new__(cls)
    yield instance
    instance.__dict__.update(loader.construct_mapping(node, deep=True))  # as yaml.Loader: no __init__


def _construct_class_reference(loader: ConfigLoader, suffix: str, node: yaml.Node) -> type:
    tag = f"{PYTHON_TAG}name:{suffix}"
    obj = _resolve(node, tag, suffix)
    if not (isinstance(obj, type) and _trusted_module(obj.__module__)):
        raise _refuse(node, tag, "only classes of Nerfstudio, zpressor-ns and torch.optim are referenced")
    return obj


def _construct_applied(loader: ConfigLoader, suffix: str, node: yaml.Node) -> Any:
    tag = f"{PYTHON_TAG}object/apply:{suffix}"
    cls = _resolve(node, tag, suffix)
    is_path = isinstance(cls, type) and issubclass(cls, pathlib.PurePath)
    is_enum = isinstance(cls, type) and issubclass(cls, enum.Enum) and _trusted_module(cls.__module__)
    if not (is_path or is_enum):
        raise _refuse(node, tag, "only paths and Nerfstudio/zpressor-ns enums are built from arguments")
    if not isinstance(node, yaml.SequenceNode):
        raise _refuse(node, tag, "expected a list of arguments")
    arguments = loader.construct_sequence(node, deep=True)
    if not all(isinstance(a, str | int) for a in arguments):
        raise _refuse(node, tag, "path parts and enum values are strings or numbers")
    return cls(*arguments)


def _construct_tuple(loader: ConfigLoader, node: yaml.Node) -> tuple:
    return tuple(loader.construct_sequence(node, deep=True))


def _construct_refused(loader: ConfigLoader, *args) -> None:
    node = args[-1]
    raise _refuse(node, node.tag, "not a tag of Nerfstudio's configs")


ConfigLoader.add_multi_constructor(f"{PYTHON_TAG}object:", _construct_dataclass)
ConfigLoader.add_multi_constructor(f"{PYTHON_TAG}name:", _construct_class_reference)
ConfigLoader.add_multi_constructor(f"{PYTHON_TAG}object/apply:", _construct_applied)
ConfigLoader.add_constructor(f"{PYTHON_TAG}tuple", _construct_tuple)
ConfigLoader.add_constructor(None, _construct_refused)


def load_config(path: str | Path) -> TrainerConfig:
    """A run's ``config.yml``, built by :class:`ConfigLoader`; raises ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path} (give a run's config.yml)")
    try:
        config = yaml.load(path.read_text(), Loader=ConfigLoader)  # noqa: S506 (a restricted loader)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: {error}") from None
    if not isinstance(config, TrainerConfig):
        raise ConfigError(f"{path} is not a Nerfstudio run configuration (got {type(config).__name__})")
    _check_targets(config, path, "config")
    return config


def _check_targets(value: Any, path: Path, where: str) -> None:
    """Every configuration object instantiates its own class's ``_target``, never another class."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            if field.name == "_target" and hasattr(value, "_target"):
                own = (
                    field.default_factory()
                    if field.default_factory is not dataclasses.MISSING
                    else field.default
                )
                if value._target is not own:
                    raise ConfigError(
                        f"{path}: {where}._target is {value._target!r}, but a {type(value).__name__} "
                        f"instantiates {own!r}; the file was edited to build something else"
                    )
            elif hasattr(value, field.name):
                _check_targets(getattr(value, field.name), path, f"{where}.{field.name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_targets(item, path, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_targets(item, path, f"{where}[{index}]")


def load_run(
    config_path: str | Path, test_mode: Literal["test", "val", "inference"] = "test"
) -> tuple[TrainerConfig, FeedForwardPipeline, Path, int]:
    """Nerfstudio's ``eval_setup`` for this package's runs, reading only trusted content: the config,
    its pipeline on CUDA if available (else CPU) in eval mode, and the newest readable checkpoint."""
    config_path = Path(config_path)
    config = load_config(config_path)
    if not isinstance(config.pipeline, FeedForwardPipelineConfig):
        raise ConfigError(
            f"{config_path} is a run of {config.method_name!r}, not of a zpressor-ns method "
            "(use Nerfstudio's own commands for it)"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = config.pipeline.setup(device=device, test_mode=test_mode)
    pipeline.eval()
    checkpoint, state = newest_readable_checkpoint(config.get_checkpoint_dir())
    pipeline.load_pipeline(state["pipeline"], state["step"])
    return config, pipeline, checkpoint, int(state["step"])


RUN_ERRORS = (ConfigError, CheckpointError, FileNotFoundError)
"""What :func:`load_run` raises for a file the user gave: print the message, no traceback."""


def write_eval_report(
    config: TrainerConfig,
    pipeline: FeedForwardPipeline,
    checkpoint: Path,
    output_path: Path,
    render_output_path: Path | None = None,
) -> dict:
    """What ``ns-eval`` (``ComputePSNR``) writes, for a run opened with :func:`load_run`."""
    if render_output_path is not None:
        render_output_path.mkdir(parents=True, exist_ok=True)
    results = pipeline.get_average_eval_image_metrics(output_path=render_output_path, get_std=True)
    report = {
        "experiment_name": config.experiment_name,
        "method_name": config.method_name,
        "checkpoint": str(checkpoint),
        "results": results,
    }
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(json.dumps(report, indent=2), "utf8")
    return report
