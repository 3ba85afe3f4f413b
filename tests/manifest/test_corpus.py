"""Every bad manifest in tests/manifest/bad gives exactly its expected lines and exit status 1.

A case is a file whose first line is `# expect: LINE:COL: message`, or a folder holding an
`expected` file with the whole output.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clawmcp.cli import main

BAD = Path(__file__).parent / "bad"
CASES = sorted(p.name for p in BAD.iterdir() if p.suffix == ".yaml" or p.is_dir())


def _expected(name: str) -> str:
    path = BAD / name
    if path.is_dir():
        return (path / "expected").read_text()
    first = path.read_text().splitlines()[0]
    return f"{name}:{first.removeprefix('# expect: ')}\n"


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", CASES)
def test_bad_manifest_gives_its_exact_line(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(BAD)
    monkeypatch.delenv("CLAWMCP_TEST_UNSET_VARIABLE", raising=False)
    with pytest.raises(SystemExit) as exit:
        main(["validate", name])
    out = capsys.readouterr()
    assert (out.err, out.out, exit.value.code) == (_expected(name), "", 1)
