"""Checking tool arguments against the tool's JSON Schema (built-in, upstream and manifest tools).

A validator is made once per schema and kept (checking a schema against the metaschema and
building its validator cost far more than a check), so a busy tool costs one check per call.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema

__all__ = ["invalid_arguments"]


def invalid_arguments(schema: dict[str, Any], arguments: Any) -> str | None:
    """What is wrong with tool arguments against their JSON Schema (the most telling error), or
    None. A schema that is itself invalid is said so."""
    try:
        validator = _validator(json.dumps(schema, sort_keys=True))
    except jsonschema.SchemaError as e:
        return f"bad input schema: {e.message}"
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path)
    return f"invalid arguments: {where + ': ' if where else ''}{error.message}"


@functools.lru_cache(maxsize=4096)
def _validator(schema: str) -> jsonschema.Draft202012Validator:
    parsed = json.loads(schema)
    jsonschema.Draft202012Validator.check_schema(parsed)
    return jsonschema.Draft202012Validator(parsed)
