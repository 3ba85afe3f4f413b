"""Tool arguments checked against their JSON Schema."""

from __future__ import annotations

from clawmcp.arguments import _validator, invalid_arguments

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def test_the_most_telling_problem_is_named_with_its_place() -> None:
    assert invalid_arguments(SCHEMA, {"n": 1}) is None
    assert invalid_arguments(SCHEMA, {}) == "invalid arguments: 'n' is a required property"
    assert invalid_arguments(SCHEMA, {"n": "x"}) == "invalid arguments: n: 'x' is not of type 'integer'"


def test_a_schema_that_is_itself_invalid_is_said_so() -> None:
    assert invalid_arguments({"type": "nonsense"}, {}) == (
        "bad input schema: 'nonsense' is not valid under any of the given schemas"
    )


def test_a_schema_is_checked_and_compiled_once_however_many_calls_use_it() -> None:
    schema = {"type": "object", "properties": {"once": {"type": "string"}}}
    before = _validator.cache_info().misses
    for _ in range(50):
        assert invalid_arguments(dict(schema), {"once": "x"}) is None  # an equal schema, not the same dict
    assert _validator.cache_info().misses == before + 1
