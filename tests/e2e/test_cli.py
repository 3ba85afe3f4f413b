"""The `clawmcp` command as a user runs it: a real process, its exit status and its output."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def clawmcp(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clawmcp", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_validate_accepts_the_shipped_manifests() -> None:
    run = clawmcp("validate", "manifests/")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok: manifests/demo.yaml (Claws: 2,")


def test_validate_defaults_to_the_manifests_folder() -> None:
    assert clawmcp("validate").returncode == 0


def test_a_bad_manifest_is_one_line_per_problem_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("claws:\n  a: {model: m, isolation: thread}\n")
    run = clawmcp("validate", "m.yaml", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.splitlines() == [
        "m.yaml:2:28: claws.a.isolation: expected one of 'task' or 'process', got 'thread'",
    ]


def test_a_missing_path_is_a_user_error(tmp_path: Path) -> None:
    run = clawmcp("validate", "nowhere", cwd=tmp_path)
    assert (run.returncode, run.stderr) == (1, "nowhere:1:1: no such file or folder\n")


def test_bad_usage_exits_2() -> None:
    assert clawmcp("frobnicate").returncode == 2
    assert clawmcp().returncode == 2


def test_schema_prints_a_json_schema() -> None:
    run = clawmcp("schema")
    schema = json.loads(run.stdout)
    assert run.returncode == 0
    assert set(schema["properties"]) == {"version", "host", "models", "servers", "tools", "claws"}


def test_commands_that_only_speak_http_do_not_load_the_mcp_sdk(tmp_path: Path) -> None:
    # Loading the SDK took 2 of the 3.4 s each command took on a loaded machine.
    (tmp_path / "m.yaml").write_text(
        "host: {data_dir: state}\n"
        "models: {m: {provider: scripted, rules: [{reply: hi}]}}\nclaws: {c: {model: m}}\n"
    )
    script = (
        "import sys\nfrom clawmcp.cli import main\n"
        "for args in (['claws'], ['ask', 'c', 'hi'], ['tell', 'c', 'hi'], ['logs']):\n"
        "    try:\n"
        f"        main([*args, '-p', {str(tmp_path / 'm.yaml')!r}])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "[]", run.stderr
    assert run.stderr.count("no clawmcp host is running") == 3  # logs reads the store instead


def test_output_cut_short_by_its_reader_is_no_error() -> None:
    # `clawmcp schema | head -c 10`: the reader closes the pipe after what it wanted
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 4096)  # smaller than the schema: the writer meets the close
    with subprocess.Popen(
        [sys.executable, "-m", "clawmcp", "schema"], stdout=write, stderr=subprocess.PIPE
    ) as process:
        os.close(write)
        assert os.read(read, 10)
        os.close(read)
        assert process.stderr is not None
        assert (process.wait(timeout=60), process.stderr.read()) == (0, b"")


def test_a_wire_name_as_a_tool_pattern_gets_the_pattern_it_means(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "models: {m: {provider: scripted, rules: [{reply: hi}]}}\n"
        "servers: {everything: {command: npx}}\nclaws: {c: {model: m, tools: [everything__echo]}}\n"
    )
    run = clawmcp("validate", str(tmp_path / "m.yaml"))
    assert "patterns are SERVER.TOOL, e.g. 'everything.echo'" in run.stderr
