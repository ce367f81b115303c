"""The exception types for user mistakes.

Library code raises :class:`UserError` for anything a user can fix (a missing file, a
malformed folder, an unknown model name, an out-of-range number). It is a ``ValueError``, so
library callers may catch either. The CLI turns it into exit code 2 and one line on stderr;
everything else is a bug and keeps its traceback.

A stage's config (``PruneConfig``, ``QuantConfig``, ``StructuredConfig``, ``TrainConfig``)
validates itself once and raises :class:`ConfigError`, which names the config field
(``PruneConfig.sparsity must be in [0, 1), got 1.5``). The command line and the recipe
validator translate the field into their own flag or key (:meth:`ConfigError.naming`).
"""

from __future__ import annotations

from typing import Any, Callable


class UserError(ValueError):
    """A problem with the user's input, explained in one line."""


class ConfigError(UserError):
    """A config field with a value out of its range: ``config.field problem``."""

    def __init__(self, config: str, field: str, problem: str):
        self.config, self.field, self.problem = config, field, problem
        super().__init__(f"{config}.{field} {problem}")

    def naming(self, name_of: Callable[[str], str]) -> str:
        """The message with the field named by ``name_of(field)`` (a flag, a recipe key)."""
        return f"{name_of(self.field)} {self.problem}"


def is_number(value: Any) -> bool:
    """A real number for a config field: an int or float, not a bool, not NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def is_int(value: Any) -> bool:
    """An integer for a config field: an int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_fields(config: object, checks: list[tuple[bool, str, str]]) -> None:
    """Raise a :class:`ConfigError` for the first ``(ok, field, problem)`` of ``checks`` that fails
    (every ``ok`` is computed first, so each must be safe to evaluate on any value)."""
    for ok, field, problem in checks:
        if not ok:
            raise ConfigError(type(config).__name__, field, problem)
