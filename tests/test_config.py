"""Settings from flags, the environment and `.env`; the deployment files that document them."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import CliApp

from oai2ollama.config import DEFAULT_OLLAMA_VERSION, Settings

from .fakes import isolate_settings, settings_env_names

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-config-secret-42"


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_settings(monkeypatch, tmp_path)


def parse(*args: str) -> Settings:
    return CliApp.run(Settings, cli_args=list(args))


def test_defaults() -> None:
    settings = Settings(_env_file=None, base_url="http://up/v1")  # type: ignore[call-arg]
    assert (settings.host, settings.port) == ("localhost", 11434)
    assert settings.api_key is None
    assert settings.capabilities == [] and settings.extra_models == []
    assert settings.log_level == "info"


def test_ollama_version_default_is_recent_enough_for_tool_call_ids() -> None:
    version = tuple(int(part) for part in Settings(_env_file=None).ollama_version.split("."))  # type: ignore[call-arg]
    assert Settings(_env_file=None).ollama_version == DEFAULT_OLLAMA_VERSION  # type: ignore[call-arg]
    assert version >= (0, 12, 10)


def test_timeouts_short_connect_long_read() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.connect_timeout <= 30
    assert settings.read_timeout >= 600


def test_kebab_case_flags() -> None:
    settings = parse(
        "--base-url", "https://api.example.com/v1",
        "--api-key", SECRET,
        "--host", "0.0.0.0",
        "--port", "8080",
        "--ollama-version", "0.20.1",
        "--connect-timeout", "3",
        "--read-timeout", "900",
        "--log-level", "debug",
    )  # fmt: skip
    assert settings.base_url == "https://api.example.com/v1"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == SECRET
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings.ollama_version == "0.20.1"
    assert (settings.connect_timeout, settings.read_timeout) == (3.0, 900.0)
    assert settings.log_level == "debug"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-c", "tools,vision"], ["tools", "vision"]),
        (["-c", "tools", "-c", "vision"], ["tools", "vision"]),
        (["--capabilities", "tools", "-c", "insert,thinking"], ["tools", "insert", "thinking"]),
        (["-c", " tools , embedding "], ["tools", "embedding"]),
    ],
)
def test_capabilities_as_comma_list_or_repeated(args: list[str], expected: list[str]) -> None:
    assert parse("--base-url", "http://up", *args).capabilities == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-m", "a"], ["a"]),
        (["-m", "a", "-m", "b,c"], ["a", "b", "c"]),
        (["--models", "org/model:free"], ["org/model:free"]),
    ],
)
def test_extra_models(args: list[str], expected: list[str]) -> None:
    assert parse("--base-url", "http://up", *args).extra_models == expected


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env-upstream/v1")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("CAPABILITIES", "tools,vision")
    monkeypatch.setenv("MODELS", "one,two")
    monkeypatch.setenv("PORT", "12000")
    settings = parse()
    assert settings.base_url == "http://env-upstream/v1"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == SECRET
    assert settings.capabilities == ["tools", "vision"]
    assert settings.extra_models == ["one", "two"]
    assert settings.port == 12000


def test_flag_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env-upstream/v1")
    assert parse("--base-url", "http://flag-upstream/v1").base_url == "http://flag-upstream/v1"


def test_dotenv_file_in_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"OPENAI_BASE_URL=http://dotenv-upstream/v1/\nOPENAI_API_KEY={SECRET}\nCAPABILITIES=tools\nMODELS=x,y\n"
    )
    settings = parse()
    assert settings.base_url == "http://dotenv-upstream/v1"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == SECRET
    assert settings.capabilities == ["tools"]
    assert settings.extra_models == ["x", "y"]


def test_environment_wins_over_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("OPENAI_BASE_URL=http://dotenv-upstream/v1\n")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env-upstream/v1")
    assert parse().base_url == "http://env-upstream/v1"


@pytest.mark.parametrize("source", ["flag", "env"])
def test_legacy_capacities_merged(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--base-url", "http://up", "-c", "tools"]
    if source == "flag":
        args += ["--capacities", "vision,tools"]
    else:
        monkeypatch.setenv("CAPACITIES", "vision,tools")
    settings = parse(*args)
    assert settings.all_capabilities() == ["tools", "vision"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("https://api.example.com/v1", "https://api.example.com/v1"),
        ("https://api.example.com/v1/", "https://api.example.com/v1"),
        ("http://127.0.0.1:8080/v1//", "http://127.0.0.1:8080/v1"),
        ("http://localhost:8000", "http://localhost:8000"),
    ],
)
def test_base_url_with_or_without_trailing_slash(given: str, stored: str) -> None:
    assert Settings(_env_file=None, base_url=given).base_url == stored  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("base_url", "api.example.com/v1"),
        ("base_url", "ftp://example.com"),
        ("port", 0),
        ("port", 70000),
        ("capabilities", ["teleport"]),
        ("read_timeout", 0),
        ("log_level", "loud"),
    ],
)
def test_invalid_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **{field: value})  # type: ignore[arg-type]
    assert caught.value.errors()[0]["loc"][0] == field


def test_key_is_a_secret() -> None:
    settings = Settings(_env_file=None, base_url="http://up", api_key=SECRET)  # type: ignore[call-arg]
    for text in (repr(settings), str(settings), repr(settings.api_key), f"{settings.api_key}"):
        assert SECRET not in text
    assert SECRET not in settings.model_dump_json()


# ---- deployment files -------------------------------------------------------------------------


def env_example() -> str:
    return (ROOT / ".env.example").read_text()


def test_env_example_lists_every_setting_with_a_comment() -> None:
    lines = env_example().splitlines()
    assigned = {}
    for index, line in enumerate(lines):
        match = re.match(r"#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            assigned[match.group(1)] = index
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        spellings = {name.upper(), *(str(c).upper() for c in getattr(alias, "choices", []))}
        found = spellings & assigned.keys()
        assert found, f".env.example does not mention the setting {name}"
        comment = lines[assigned[found.pop()] - 1]
        assert comment.startswith("# ") and not re.match(r"#?\s*[A-Z][A-Z0-9_]*=", comment), name
    assert set(assigned) <= settings_env_names(), "every variable in .env.example must be a real setting"


def test_env_example_is_a_valid_dotenv(tmp_path: Path) -> None:
    # Uncommented, the example values must load too.
    uncommented = re.sub(r"(?m)^# ([A-Z][A-Z0-9_]*=)", r"\1", env_example())
    uncommented = uncommented.replace("OAI2OLLAMA_CONFIG=oai2ollama.toml\n", "")
    (tmp_path / ".env").write_text(uncommented)
    settings = Settings()
    assert settings.base_url == "https://api.openai.com/v1"
    assert settings.capabilities == ["tools", "vision"]
    assert settings.context_lengths == {"gpt-4o": 128000}


def dockerfile() -> list[list[str]]:
    """The final stage's instructions, continuation lines joined, as (instruction, rest) pairs."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    stages: list[list[str]] = []
    for line in instructions:
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def instruction(stage: list[str], name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in stage if line.split(None, 1)[0].upper() == name]


def test_dockerfile_small_non_root_image() -> None:
    final = dockerfile()[-1]
    base = final[0].split()[1]
    assert re.fullmatch(r"python:3\.1[1-9]-(slim|alpine)[\w.-]*", base), base
    users = instruction(final, "USER")
    assert users and users[-1] not in ("root", "0"), "the server must not run as root"
    assert any("useradd" in run or "adduser" in run for run in instruction(final, "RUN"))


def test_dockerfile_installs_the_project_with_pip() -> None:
    runs = " ".join(run for stage in dockerfile() for run in instruction(stage, "RUN"))
    assert re.search(r"pip (install|wheel)\b.*(\s\.(\s|$)|\.whl)", runs)
    assert any("pip install" in run for run in instruction(dockerfile()[-1], "RUN"))


def test_dockerfile_listens_everywhere_on_11434() -> None:
    final = dockerfile()[-1]
    env = " ".join(instruction(final, "ENV"))
    assert re.search(r"\bHOST=0\.0\.0\.0\b", env)
    assert "11434" in instruction(final, "EXPOSE")[0].split()


def test_dockerfile_healthcheck_uses_python_against_the_keyless_root() -> None:
    (check,) = instruction(dockerfile()[-1], "HEALTHCHECK")
    assert "CMD" in check and "+ '/'," in check  # what it does is tested in test_docker.py
    command = check.split("CMD", 1)[1].strip()
    argv = json.loads(command) if command.startswith("[") else shlex.split(command)
    assert argv[0].startswith("python") and "curl" not in check and "wget" not in check


def test_dockerfile_keeps_the_ledger_in_a_volume_the_server_may_write() -> None:
    final = dockerfile()[-1]
    assert instruction(final, "VOLUME") == ["/data"]
    assert "OAI2OLLAMA_DATABASE_URL=sqlite:////data/oai2ollama.db" in " ".join(instruction(final, "ENV"))
    assert any("chown oai2ollama /data" in run for run in instruction(final, "RUN"))


def test_dockerfile_takes_cli_args_after_the_image_name() -> None:
    (entrypoint,) = instruction(dockerfile()[-1], "ENTRYPOINT")
    assert json.loads(entrypoint) == ["oai2ollama"]
    assert not instruction(dockerfile()[-1], "CMD"), "a CMD would be replaced by the user's arguments anyway"


def test_dockerignore_keeps_secrets_and_the_venv_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored and ".git" in ignored
