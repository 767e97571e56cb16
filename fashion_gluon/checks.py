"""Value rules: a setting's kind and bounds, checked with one line that names the setting.

The config checks its ranges with :class:`Rule` (:func:`~.config.validate`), and so do the objects
that declare their own settings (:class:`~.losses.LossOptions`): one wording for every bad value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The kinds a :class:`Rule` checks.
KINDS: tuple[str, ...] = ("int", "number", "bool")


@dataclass(frozen=True)
class Rule:
    """``kind``: ``int``, ``number`` (an int or a float) or ``bool``; bounds ``low`` (inclusive
    unless ``inclusive`` is false) and ``high`` (inclusive), None for none; ``optional``: None is
    allowed too."""

    kind: str
    low: "float | None" = None
    high: "float | None" = None
    inclusive: bool = True
    optional: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"rule kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    def check(self, key: str, value: Any) -> Any:
        """``value`` if it keeps the rule, else a one-line ValueError naming ``key``, the rule and
        the value (``top_k must be ≥ 1, got 0``)."""
        if value is None and self.optional:
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false, got {value!r}")
            return value
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if not (is_int if self.kind == "int" else is_int or isinstance(value, float)):
            raise ValueError(f"{key} must be {'an integer' if self.kind == 'int' else 'a number'}, got {value!r}")
        low, high = self.low, self.high
        too_low = low is not None and (value < low if self.inclusive else value <= low)
        if too_low or (high is not None and value > high) or value != value:
            bounds = (f"{'≥' if self.inclusive else '>'} {low}" if low is not None else "") + \
                     (f"{' and ' if low is not None else ''}≤ {high}" if high is not None else "")
            raise ValueError(f"{key} must be {bounds or 'a number'}, got {value!r}")
        return value


__all__ = ["KINDS", "Rule"]
