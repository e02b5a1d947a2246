"""Model registry: architecture name -> config dataclass, builders per task, and named presets.

An architecture registers itself from its own package (``lmforge/models/<arch>/__init__.py``); the list of
architecture packages to import lives in ``ARCHITECTURE_MODULES`` so the registry stays the single entry point
(torchtitan's model registry, litgpt's ``Config.from_name``). Builders take a config and return an
``nn.Module``; presets are dictionaries of config fields, each citing its source in the architecture's file.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Architecture packages that call ``register`` on import. Adding an architecture = adding its module here.
ARCHITECTURE_MODULES: tuple[str, ...] = (
    "lmforge.models.bert",
    "lmforge.models.gpt",
    "lmforge.models.gau_alpha",
    "lmforge.models.flash",
    "lmforge.models.reformer",
    "lmforge.models.canine",
)


@dataclass
class ModelEntry:
    name: str
    config_class: type
    builders: dict[str, Callable[[Any], Any]]  # task ("backbone", "mlm", "clm", ...) -> builder(config)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""


_REGISTRY: dict[str, ModelEntry] = {}
_LOADED = False


def register(
    name: str,
    config_class: type,
    builders: dict[str, Callable[[Any], Any]],
    *,
    presets: dict[str, dict[str, Any]] | None = None,
    description: str = "",
) -> None:
    """Register an architecture. ``presets`` must contain ``"tiny"`` (hidden <= 64, 2 layers) for tests."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"config_class of {name!r} must be a dataclass, got {config_class!r}")
    if "backbone" not in builders:
        raise ValueError(f"model {name!r} must register a 'backbone' builder")
    _REGISTRY[name] = ModelEntry(name, config_class, dict(builders), dict(presets or {}), description)


def _load_all() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for module in ARCHITECTURE_MODULES:
            importlib.import_module(module)


def get_entry(name: str) -> ModelEntry:
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def list_models() -> dict[str, ModelEntry]:
    """All registered architectures, by name."""
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def get_config(name: str, /, *, preset: str | None = None, **overrides: Any) -> Any:
    """The config dataclass of ``name``: class defaults, then ``preset`` fields, then ``overrides``."""
    entry = get_entry(name)
    fields = {}
    if preset is not None:
        if preset not in entry.presets:
            raise ValueError(f"unknown preset {preset!r} for model {name!r}; choose from {sorted(entry.presets)}")
        fields.update(entry.presets[preset])
    known = {f.name for f in dataclasses.fields(entry.config_class)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown config fields for model {name!r}: {unknown}; known fields: {sorted(known)}")
    fields.update(overrides)
    return entry.config_class(**fields)


def build_model(
    name: str, /, *, task: str = "backbone", preset: str | None = None, config: Any = None, **overrides: Any
) -> Any:
    """Build ``name`` for ``task`` ("backbone", "mlm", "clm", ... as the architecture registers them).

    Either pass a ready ``config`` or build one from ``preset`` and ``overrides``.
    """
    entry = get_entry(name)
    if task not in entry.builders:
        raise ValueError(f"model {name!r} has no {task!r} builder; choose from {sorted(entry.builders)}")
    if config is None:
        config = get_config(name, preset=preset, **overrides)
    elif preset is not None or overrides:
        raise ValueError("pass either config or preset/overrides, not both")
    return entry.builders[task](config)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(config)


def config_from_dict(name: str, values: dict[str, Any]) -> Any:
    """Rebuild the config of ``name`` from a dict, rejecting unknown fields (config.json is untrusted input)."""
    entry = get_entry(name)
    known = {f.name: f for f in dataclasses.fields(entry.config_class)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"config for {name!r} has unknown fields {unknown}")
    hints = typing.get_type_hints(entry.config_class)
    for key, value in values.items():
        if not _json_value_matches(value, hints.get(key, Any)):
            raise ValueError(f"config for {name!r}: field {key!r} must be {hints[key]}, got {value!r}")
    return entry.config_class(**values)


def _json_value_matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a config annotation (int, float, bool, str, Literal, X | None); other
    annotations are not checked here (the config's own __post_init__ validates them)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin in (typing.Union, types.UnionType):
        return any(_json_value_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True
