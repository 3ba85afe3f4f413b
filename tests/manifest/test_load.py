from __future__ import annotations

from pathlib import Path

import pytest

from clawmcp.errors import ManifestError
from clawmcp.manifest import load, parse_duration
from tests.conftest import ROOT

GOOD = Path(__file__).parent / "good"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_demo_and_the_contract_example_load() -> None:
    demo = load([ROOT / "manifests"])
    assert sorted(demo.claws) == ["editor", "scout"]
    everything = load([GOOD], env={})
    assert everything.claws["scout"].schedules[1].timezone == "Europe/Lisbon"
    assert everything.servers["legacy"].kind == "sse" and everything.servers["files"].kind == "http"
    assert everything.claws["scout"].limits.run_timeout == 120.0
    assert everything.claws["scout"].model == ["canned"]  # a plain name is a list of one
    assert everything.claws["editor"].model == ["local", "claude"]
    memory = everything.claws["scout"].memory
    assert (memory.context_tokens, memory.compact) == (24000, "summary")


def test_several_files_merge_by_name(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "models:\n  m: {provider: scripted, rules: [{reply: hi}]}\n")
    write(tmp_path / "b.yml", "claws:\n  x: {model: m}\n")
    write(tmp_path / "c.yaml", "claws:\n  y: {model: m, talks_to: [x]}\n")
    write(tmp_path / "notes.txt", "not a manifest")
    manifest = load([tmp_path])
    assert sorted(manifest.claws) == ["x", "y"]
    assert [Path(f).name for f in manifest.files] == ["a.yaml", "b.yml", "c.yaml"]


def test_variables_are_replaced_in_every_string(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.yaml",
        "models:\n"
        "  m:\n"
        "    provider: openai\n"
        "    model: ${MODEL}\n"
        "    base_url: ${BASE:-http://127.0.0.1:1/v1}\n"
        "    api_key: ${KEY:-}\n"
        "    headers: {X-Cost: $$5, X-Tag: '${TAG}-${TAG}'}\n",
    )
    model = load([path], env={"MODEL": "qwen3:8b", "TAG": "t"}).models["m"]
    assert model.model == "qwen3:8b"
    assert model.base_url == "http://127.0.0.1:1/v1"
    assert model.api_key is not None and model.api_key.get_secret_value() == ""
    assert model.headers == {"X-Cost": "$5", "X-Tag": "t-t"}


def test_a_secret_never_appears_in_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "m.yaml", "models:\n  m: {provider: openai, model: x, temperature: '${KEY}'}\n")
    with pytest.raises(ManifestError) as e:
        load([path], env={"KEY": "sk-very-secret"})
    assert "temperature: expected a number" in str(e.value)
    assert "sk-very-secret" not in str(e.value)


@pytest.mark.parametrize(
    "line",
    [
        "host: {listen: '${V}'}",
        "claws: {c: {model: m, schedules: [{name: s, cron: '${V}', prompt: x}]}}",
        "claws: {c: {model: m, schedules: [{name: s, every: '${V}', prompt: x}]}}",
        "servers: {s: {url: '${V}'}}",
    ],
)
def test_a_value_from_a_variable_is_shown_as_the_variable_in_errors(tmp_path: Path, line: str) -> None:
    models = "models: {m: {provider: scripted, rules: [{reply: hi}]}}\n"
    path = write(tmp_path / "m.yaml", models + line + "\n")
    with pytest.raises(ManifestError) as e:
        load([path], env={"V": "not-valid-sekrit-value"})
    assert "not-valid-sekrit-value" not in str(e.value)


def test_relative_paths_are_relative_to_the_manifest_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    path = write(
        folder / "m.yaml",
        "host: {data_dir: ../state}\n"
        "servers:\n"
        "  a: {command: python, cwd: work}\n"
        "  b: {command: python}\n"
        "  c: {url: 'http://127.0.0.1:9/mcp'}\n"
        "tools:\n"
        "  t: {command: [date]}\n",
    )
    monkeypatch.chdir(tmp_path.parent)
    manifest = load([path.relative_to(tmp_path.parent)])
    assert manifest.data_dir == tmp_path / "state"
    assert manifest.servers["a"].cwd == str(folder / "work")
    assert manifest.servers["b"].cwd == str(folder)
    assert manifest.servers["c"].cwd is None
    assert manifest.tools["t"].cwd == str(folder)


def test_a_home_folder_is_expanded_and_an_unknown_users_is_left_as_it_is(tmp_path: Path) -> None:
    path = write(tmp_path / "m.yaml", "host: {data_dir: '~/state'}\n")
    assert load([path]).data_dir == Path.home() / "state"
    path = write(tmp_path / "m.yaml", "host: {data_dir: '~nosuchuser0/state'}\n")
    assert load([path]).data_dir == tmp_path / "~nosuchuser0" / "state"
    path = write(tmp_path / "m.yaml", 'host: {data_dir: "~\\0"}\n')
    with pytest.raises(ManifestError, match="a NUL character cannot be part of a value"):
        load([path])


def test_data_dir_defaults_to_clawmcp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "m.yaml", "version: 1\n")
    monkeypatch.setenv("CLAWMCP_HOME", str(tmp_path / "home"))
    assert load([path]).data_dir == tmp_path / "home"
    monkeypatch.delenv("CLAWMCP_HOME")
    assert load([path]).data_dir == Path("~/.clawmcp").expanduser()


def test_every_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "claws:\n  x: {model: nope}\n  y: {model: nope, isolation: thread}\n")
    write(tmp_path / "b.yaml", "servers:\n  s: {commnd: x}\n")
    with pytest.raises(ManifestError) as e:
        load([tmp_path])
    lines = str(e.value).replace(str(tmp_path), "D").splitlines()
    assert lines == [
        "D/a.yaml:2:14: claws.x.model: unknown model 'nope' (defined: none)",
        "D/a.yaml:3:31: claws.y.isolation: expected one of 'task' or 'process', got 'thread'",
        "D/b.yaml:2:7: servers.s.commnd: unknown key; allowed here: "
        "args, auth, client_id, command, cwd, env, headers, pin, scopes, transport, type, url",
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172800), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "30", "1 hour", "-1s", "1h30m", ""])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


CLAUDE_CONFIG = """{
  "mcpServers": {
    "time": {"command": "python", "args": ["-m", "mcp_server_time"], "env": {"TZ": "UTC"}},
    "remote": {"url": "http://127.0.0.1:9000/mcp", "type": "http"}
  }
}
"""


def test_a_claude_desktop_config_brings_its_servers(tmp_path: Path) -> None:
    config = write(tmp_path / "claude_desktop_config.json", CLAUDE_CONFIG)
    manifest = write(
        tmp_path / "m" / "m.yaml",
        "models: {m: {provider: scripted, rules: [{reply: hi}]}}\n"
        "claws:\n  a: {model: m, tools: ['time.*', 'remote.*']}\n",
    )
    loaded = load([manifest], mcp_config=config)
    assert loaded.servers["time"].args == ["-m", "mcp_server_time"] and loaded.servers["time"].env == {
        "TZ": "UTC"
    }
    assert loaded.servers["remote"].kind == "http"


def test_problems_in_a_claude_desktop_config_point_into_it(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.json", '{"mcpServers": {\n  "time": {"command": "python"},\n  "tools": {"cmd": "x"}}}\n'
    )
    manifest = write(tmp_path / "m.yaml", "servers:\n  time: {command: python}\n")
    with pytest.raises(ManifestError) as e:
        load([manifest], mcp_config=config)
    assert str(e.value).replace(str(tmp_path), "D").splitlines() == [
        "D/c.json:2:3: mcpServers.time: defined twice (first at D/m.yaml:2:3)",
        "D/c.json:3:3: mcpServers.tools: 'tools' is reserved; name the server otherwise",
        "D/c.json:3:13: mcpServers.tools.cmd: unknown key; allowed here: "
        "args, auth, client_id, command, cwd, env, headers, pin, scopes, transport, type, url",
    ]
