"""Whatever a manifest file holds, loading it ends in a manifest or in `ManifestError`: never
another exception, never unbounded memory or time (hypothesis, a bounded number of examples)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clawmcp.errors import ManifestError
from clawmcp.manifest import load

KEYS = [
    "version",
    "host",
    "models",
    "servers",
    "tools",
    "claws",
    "listen",
    "data_dir",
    "provider",
    "rules",
    "when",
    "reply",
    "steps",
    "tool",
    "arguments",
    "model",
    "tools",
    "schedules",
    "name",
    "every",
    "cron",
    "at",
    "timezone",
    "prompt",
    "call",
    "send",
    "to",
    "content",
    "command",
    "args",
    "url",
    "input",
    "memory",
    "history",
    "limits",
    "max_steps",
    "auth",
    "tokens",
    "token",
    "claws",
    "talks_to",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(["${X}", "${X:-y}", "1s", "0 9 * * *", "scripted", "openai", "a{9999999999}", "m", "c"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)
odd = st.one_of(
    scalars,
    values,
    st.sampled_from(
        ["America", "Europe", "A" * 300, "a{99999999999}", "(?P<x>", "x\0y", "-1s", "99999999999999999999d"]
    ),
)
shaped = st.fixed_dictionaries(  # a manifest close to a good one, with odd values in its places
    {
        "host": st.fixed_dictionaries({"listen": odd, "data_dir": odd}),
        "models": st.fixed_dictionaries(
            {
                "m": st.fixed_dictionaries(
                    {
                        "provider": st.just("scripted"),
                        "rules": st.lists(
                            st.fixed_dictionaries({"when": odd, "reply": odd}), min_size=1, max_size=2
                        ),
                    }
                )
            }
        ),
        "claws": st.fixed_dictionaries(
            {
                "c": st.fixed_dictionaries(
                    {
                        "model": st.just("m"),
                        "schedules": st.lists(
                            st.fixed_dictionaries(
                                {
                                    "name": st.just("s"),
                                    "cron": st.just("0 9 * * *"),
                                    "timezone": odd,
                                    "prompt": odd,
                                }
                            ),
                            max_size=1,
                        ),
                        "memory": st.fixed_dictionaries({"history": odd}),
                    }
                )
            }
        ),
    }
)


def loads_or_refuses(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load([path], env={"X": "x"})
        except ManifestError as e:
            assert e.problems and all(str(p).startswith(f"{path}:") for p in e.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_structure_loads_or_gives_manifest_errors(document: dict[str, Any]) -> None:
    loads_or_refuses(yaml.safe_dump(document, allow_unicode=True))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shaped)
def test_a_manifest_with_odd_values_loads_or_gives_manifest_errors(document: dict[str, Any]) -> None:
    loads_or_refuses(yaml.safe_dump(document, allow_unicode=True))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("{}[]:,-&*!|>'\"# \n\tabc01$%@`?\\")), max_size=200))
def test_any_text_loads_or_gives_manifest_errors(text: str) -> None:
    loads_or_refuses(text)
