"""Validation helpers shared by the architecture configs' ``__post_init__`` (one message format everywhere).

Every helper raises ``ValueError`` (a user error: the CLI prints it as one line) naming the field and its value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["check_at_least", "check_choices", "check_positive_floats", "check_probabilities", "check_token_ids"]


def check_at_least(config: Any, names: Iterable[str], minimum: int = 1, *, optional: bool = False) -> None:
    """Integer fields must be ``>= minimum`` (``None`` allowed when ``optional``)."""
    for name in names:
        value = getattr(config, name)
        if value is None and optional:
            continue
        if value is None or value < minimum:
            raise ValueError(f"{name} must be >= {minimum}{' or None' if optional else ''}, got {value}")


def check_positive_floats(config: Any, names: Iterable[str]) -> None:
    """Float fields (epsilons, init ranges) must be ``> 0``."""
    for name in names:
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be > 0, got {getattr(config, name)}")


def check_probabilities(config: Any, names: Iterable[str]) -> None:
    """Dropout rates must lie in ``[0, 1)``."""
    for name in names:
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(config, name)}")


def check_choices(config: Any, choices: dict[str, Iterable[Any]]) -> None:
    """String switches must take one of their allowed values."""
    for name, allowed in choices.items():
        allowed = tuple(allowed)
        if getattr(config, name) not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {getattr(config, name)!r}")


def check_token_ids(config: Any, names: Iterable[str] = ("pad_token_id",)) -> None:
    """Special-token ids, when set, must lie inside ``[0, vocab_size)``."""
    for name in names:
        token = getattr(config, name)
        if token is not None and not 0 <= token < config.vocab_size:
            raise ValueError(f"{name} {token} is outside the vocabulary [0, {config.vocab_size})")
