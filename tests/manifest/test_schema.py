"""`clawmcp schema` accepts every example manifest and rejects the corpus's type errors."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from clawmcp.cli import main
from tests.conftest import ROOT

HERE = Path(__file__).parent
EXAMPLES = sorted([*ROOT.glob("manifests/*.yaml"), *HERE.glob("good/*.yaml")])
TYPE_ERRORS = sorted(HERE.glob("bad/type_*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(_schema_output())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _schema_output() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit:
        main(["schema"])
    assert exit.value.code == 0
    return out.getvalue()


def _data(path: Path) -> Any:
    # JSON round trip: YAML timestamps become strings, as they are in the schema.
    return json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_schema_accepts_example_manifest(path: Path, validator: jsonschema.Draft202012Validator) -> None:
    assert [e.message for e in validator.iter_errors(_data(path))] == []


@pytest.mark.parametrize("path", TYPE_ERRORS, ids=lambda p: p.name)
def test_schema_rejects_type_error(path: Path, validator: jsonschema.Draft202012Validator) -> None:
    assert list(validator.iter_errors(_data(path))), f"{path.name} passed the schema"


def test_there_are_type_errors_to_reject() -> None:
    assert len(TYPE_ERRORS) >= 8
