"""Value rules (checks.Rule): what passes, and the one line that names a bad value."""
from __future__ import annotations

import pytest

from fashion_gluon.checks import Rule


@pytest.mark.parametrize("rule, value", [
    (Rule("int", 1), 1), (Rule("number", 0, 1), 0.5), (Rule("number", 0, 1), 1), (Rule("number", 0), 3),
    (Rule("int", optional=True), None), (Rule("bool"), False), (Rule("number", None, 2), -7.5)])
def test_values_that_keep_the_rule_are_returned(rule, value):
    assert rule.check("key", value) is value


@pytest.mark.parametrize("rule, value, message", [
    (Rule("int", 1), 0, "key must be ≥ 1, got 0"),
    (Rule("int", 1), 1.0, "key must be an integer, got 1.0"),
    (Rule("int"), True, "key must be an integer, got True"),
    (Rule("number", 0, inclusive=False), 0, "key must be > 0, got 0"),
    (Rule("number", 0, 1), 1.5, "key must be ≥ 0 and ≤ 1, got 1.5"),
    (Rule("number", 0, 1), float("nan"), "key must be ≥ 0 and ≤ 1, got nan"),
    (Rule("number", None, 2), 3, "key must be ≤ 2, got 3"),
    (Rule("number"), float("nan"), "key must be a number, got nan"),
    (Rule("number"), "1e-4", "key must be a number, got '1e-4'"),
    (Rule("number", optional=True), "x", "key must be a number, got 'x'"),
    (Rule("bool"), 1, "key must be true or false, got 1"),
])
def test_a_bad_value_is_one_line_naming_the_key_the_rule_and_the_value(rule, value, message):
    with pytest.raises(ValueError) as error:
        rule.check("key", value)
    assert str(error.value) == message


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match=r"^rule kind must be one of int, number, bool, got 'float'$"):
        Rule("float")
