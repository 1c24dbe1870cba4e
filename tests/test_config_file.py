"""The TOML configuration file: what a good one yields, and how each kind of mistake is reported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import CliApp

from oai2ollama import cli
from oai2ollama.config import Settings
from oai2ollama.config_file import ConfigError, Defaults, load
from oai2ollama.model_rules import ModelRule, passes, settings_for
from oai2ollama.translate.models import ModelSettings

from .fakes import isolate_settings

# The README's example, verbatim.
EXAMPLE = """
# oai2ollama.toml: start with `oai2ollama --config oai2ollama.toml` (or env OAI2OLLAMA_CONFIG)

[defaults]
# For models whose upstream publishes nothing about them (plain OpenAI, vLLM).
context_length = "128k"
capabilities = ["tools"]

[[upstreams]]
name = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"
models = { include = ["gpt-4o*", "gpt-4.1*", "o3*", "text-embedding-3-*"], exclude = ["*-audio-*", "*-realtime-*"] }

[[upstreams]]
name = "openrouter"
base_url = "https://openrouter.ai/api/v1"
api_key_env = "OPENROUTER_API_KEY"
prefix = "openrouter/"
headers = { "HTTP-Referer" = "https://example.com/my-app", "X-Title" = "oai2ollama" }
models = ["anthropic/*", "deepseek/*", "qwen/*"]

[[upstreams]]
name = "local"
base_url = "http://localhost:8000/v1"  # vLLM; llama.cpp's llama-server is http://localhost:8080/v1
prefix = "local/"

[models."openrouter/anthropic/claude-sonnet-4"]
alias = "claude"
options = { temperature = 0.3, think = "medium" }

[models."openrouter/deepseek/*"]
options = { temperature = 0.6, top_p = 0.95 }

[models."local/*"]
capabilities = ["tools"]  # vLLM started with --enable-auto-tool-choice

[models."local/Qwen/Qwen2.5-Coder-32B-Instruct"]
alias = "coder"
capabilities = ["tools", "insert"]
context_length = 32768
options = { num_predict = 4096, stop = ["<|im_end|>"] }

[models."o3-mini"]
hidden = true
"""

ENVIRON = {"OPENAI_API_KEY": "sk-openai", "OPENROUTER_API_KEY": "sk-or-v1-secret"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "oai2ollama.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_readme_example(tmp_path: Path) -> None:
    config = load(write(tmp_path, EXAMPLE), ENVIRON)
    assert [(u.name, u.base_url, u.api_key, u.prefix) for u in config.upstreams] == [
        ("openai", "https://api.openai.com/v1", "sk-openai", ""),
        ("openrouter", "https://openrouter.ai/api/v1", "sk-or-v1-secret", "openrouter/"),
        ("local", "http://localhost:8000/v1", None, "local/"),
    ]
    openai, openrouter, local = (lambda i, u=u: passes(i, u.include, u.exclude) for u in config.upstreams)
    assert config.upstreams[1].headers == {"HTTP-Referer": "https://example.com/my-app", "X-Title": "oai2ollama"}
    assert [openai(i) for i in ("gpt-4o", "gpt-4o-audio-preview", "o3-mini", "dall-e-3", "GPT-4O:latest")] == [
        True,
        False,
        True,
        False,
        True,
    ]
    assert openrouter("deepseek/deepseek-r1:free") and not openrouter("openai/gpt-4o")
    assert local("anything")
    assert config.defaults == Defaults(context_length=128000, capabilities=("tools",))
    assert [rule.pattern for rule in config.models] == [
        "openrouter/anthropic/claude-sonnet-4",
        "openrouter/deepseek/*",
        "local/*",
        "local/Qwen/Qwen2.5-Coder-32B-Instruct",
        "o3-mini",
    ]
    assert "sk-" not in repr(config), "keys stay out of logs and tracebacks"


def test_rules_merge_globs_first_then_the_exact_id(tmp_path: Path) -> None:
    rules = load(write(tmp_path, EXAMPLE), ENVIRON).models
    assert settings_for("local/Qwen/Qwen2.5-Coder-32B-Instruct", rules) == ModelSettings(
        alias="coder",
        capabilities=("tools", "insert"),
        context_length=32768,
        options={"num_predict": 4096, "stop": ["<|im_end|>"]},
    )
    assert settings_for("local/other", rules) == ModelSettings(capabilities=("tools",))
    assert settings_for("openrouter/deepseek/deepseek-r1:free", rules) == ModelSettings(
        options={"temperature": 0.6, "top_p": 0.95}
    )
    assert settings_for("O3-MINI:latest", rules) == ModelSettings(hidden=True)
    assert settings_for("gpt-4o", rules) is None


def test_later_rules_refine_earlier_ones() -> None:
    rules = [
        ModelRule("*", options={"temperature": 0.5, "seed": 1}, hidden=True),
        ModelRule("gpt-4o", options={"temperature": 0.1}, hidden=False),
        ModelRule("gpt-*", context_length=1000, capabilities=("vision",)),
    ]
    assert settings_for("gpt-4o", rules) == ModelSettings(
        capabilities=("vision",), context_length=1000, options={"temperature": 0.1, "seed": 1}
    )


def test_an_empty_file_is_fine(tmp_path: Path) -> None:
    config = load(write(tmp_path, ""), {})
    assert (config.upstreams, config.models, config.defaults) == ((), (), Defaults())


def test_a_glob_matching_nothing_is_fine(tmp_path: Path) -> None:
    config = load(write(tmp_path, '[models."nothing-is-called-this-*"]\nhidden = true\n'), {})
    assert settings_for("gpt-4o", config.models) is None


def test_stop_may_be_one_string(tmp_path: Path) -> None:
    config = load(write(tmp_path, '[models.m]\noptions = { stop = "<END>" }\n'), {})
    assert config.models[0].options == {"stop": ["<END>"]}


def test_upstream_name_defaults_to_its_host(tmp_path: Path) -> None:
    config = load(write(tmp_path, '[[upstreams]]\nbase_url = "http://gpu-box:8000/v1/"\n'), {})
    assert (config.upstreams[0].name, config.upstreams[0].base_url) == ("gpu-box:8000", "http://gpu-box:8000/v1")


UPSTREAM = '[[upstreams]]\nname = "a"\nbase_url = "http://a.test/v1"\n'


@pytest.mark.parametrize(
    ("line", "mode"), [("", "auto"), ('responses = "relay"\n', "relay"), ('responses = "translate"\n', "translate")]
)
def test_upstream_responses_mode(tmp_path: Path, line: str, mode: str) -> None:
    assert load(write(tmp_path, UPSTREAM + line), {}).upstreams[0].responses == mode


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("port = 1\n", "port", "unknown key (expected one of: upstreams, models, defaults, keys)"),
        ("[model.x]\nalias = 'y'\n", "model", "unknown key; did you mean 'models'?"),
        (UPSTREAM + "api_kye = 'k'\n", "[[upstreams]] #1 api_kye", "unknown key; did you mean 'api_key'?"),
        ("[models.m]\ncontext = 1\n", '[models."m"] context', "unknown key; did you mean 'context_length'?"),
        ("[defaults]\noptions = {}\n", "[defaults] options", "unknown key"),
        (UPSTREAM + "models = { only = ['x'] }\n", "[[upstreams]] #1 models only", "unknown key"),
        ("[upstreams]\nname = 'a'\n", "upstreams", "must be an array of tables: write [[upstreams]]"),
        ("[[upstreams]]\nname = 'a'\n", "[[upstreams]] #1 base_url", "is required"),
        ("[[upstreams]]\nbase_url = 'ftp://x'\n", "[[upstreams]] #1 base_url", "must be an http:// or https:// URL"),
        ("[[upstreams]]\nbase_url = 8000\n", "[[upstreams]] #1 base_url", "must be a string, not an integer"),
        (UPSTREAM + UPSTREAM, "[[upstreams]] #2 name", "'a' is already used by another upstream"),
        (UPSTREAM + "api_key = 'k'\napi_key_env = 'K'\n", "[[upstreams]] #1 api_key_env", "not both"),
        (UPSTREAM + "api_key_env = 'UNSET_KEY'\n", "[[upstreams]] #1 api_key_env", "UNSET_KEY is not set"),
        (UPSTREAM + "headers = { X-Id = 1 }\n", "[[upstreams]] #1 headers.X-Id", "must be a string"),
        (UPSTREAM + "models = 'gpt-*'\n", "[[upstreams]] #1 models", "must be a table, not a string"),
        (UPSTREAM + "models = ['gpt-*', 4]\n", "[[upstreams]] #1 models[1]", "must be a string"),
        (UPSTREAM + "prefix = 1\n", "[[upstreams]] #1 prefix", "must be a string"),
        (UPSTREAM + "responses = 'never'\n", "[[upstreams]] #1 responses", "must be one of auto, relay, translate"),
        ("[models.m]\nalias = 'x y'\n", '[models."m"] alias', "must not contain spaces"),
        ("[models.'m*']\nalias = 'x'\n", '[models."m*"] alias', "use an exact id, not a glob"),
        ("[models.a]\nalias = 'x'\n[models.b]\nalias = 'X:latest'\n", '[models."b"] alias', "already the alias of 'a'"),
        ("[models.m]\ncapabilities = 'tools'\n", '[models."m"] capabilities', "must be a list of strings"),
        ("[models.m]\ncapabilities = ['tool']\n", '[models."m"] capabilities', "unknown capability 'tool'"),
        ("[models.m]\ncontext_length = 'lots'\n", '[models."m"] context_length', "invalid context length 'lots'"),
        ("[models.m]\ncontext_length = 0\n", '[models."m"] context_length', "must be positive"),
        ("[models.m]\nhidden = 'yes'\n", '[models."m"] hidden', "must be true or false, not a string"),
        ("[models.m]\noptions = 3\n", '[models."m"] options', "must be a table"),
        ("[models.m]\noptions = { temperature = 'hot' }\n", '[models."m"] options.temperature', "must be a number"),
        ("[models.m]\noptions = { num_ctx = 8192 }\n", '[models."m"] options.num_ctx', "context_length instead"),
        ("[models.m]\noptions = { mirostat = 1 }\n", '[models."m"] options.mirostat', "unknown option"),
        ("[models.m]\noptions = { think = 'hard' }\n", '[models."m"] options.think', "must be true, false or one of"),
        ("[models]\nm = 1\n", '[models."m"]', "must be a table, not an integer"),
        ("[defaults]\ncapabilities = ['embedding']\n", "[defaults] capabilities", "unknown capability 'embedding'"),
        ("models = 1\n", "models", "must be a table"),
    ],
)
def test_each_mistake_names_the_file_the_key_and_the_problem(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path, {})
    message = str(caught.value)
    assert message.startswith(f"{path}: {where}: "), message
    assert problem in message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read the configuration file: No such file or directory"),
        (b"\xff\xfe not utf-8", "the configuration file is not UTF-8 text"),
        (b"[[upstreams]\n", "invalid TOML: "),
        (b"a = 1\na = 2\n", "invalid TOML: "),
    ],
    ids=["missing", "binary", "syntax", "duplicate-key"],
)
def test_unreadable_files(tmp_path: Path, content: bytes | None, problem: str) -> None:
    path = tmp_path / "oai2ollama.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load(path, {})
    assert str(caught.value).startswith(f"{path}: {problem}"), str(caught.value)


def test_a_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load(tmp_path, {})


def test_the_config_flag_and_its_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_settings(monkeypatch, tmp_path)
    assert CliApp.run(Settings, cli_args=["--config", "my.toml"]).config == Path("my.toml")
    monkeypatch.setenv("OAI2OLLAMA_CONFIG", "/etc/oai2ollama.toml")
    assert CliApp.run(Settings, cli_args=[]).config == Path("/etc/oai2ollama.toml")


@pytest.mark.parametrize(
    ("text", "argv", "problem"),
    [
        ("[models.m]\nhiden = true\n", [], "[models.\"m\"] hiden: unknown key; did you mean 'hidden'?"),
        ("[models]\n", [], "base-url is required"),
        (
            '[[upstreams]]\nname = "default"\nbase_url = "http://a.test/v1"\n',
            ["--base-url", "http://b.test/v1"],
            "[[upstreams]] #1 name: 'default' is the name of the upstream given by --base-url",
        ),
    ],
)
def test_the_server_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    argv: list[str],
    problem: str,
) -> None:
    isolate_settings(monkeypatch, tmp_path)
    path = write(tmp_path, text)
    with pytest.raises(SystemExit) as caught:
        cli.main(["--config", str(path), *argv])
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("oai2ollama: error: "), error
    assert problem in error
    assert error.count("\n") == 1


def test_keys_from_the_environment_never_reach_the_message(tmp_path: Path) -> None:
    text = UPSTREAM + "api_key_env = 'K'\n[models.m]\noptions = { temperature = 'x' }\n"
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text), {"K": "sk-very-secret"})
    assert "sk-very-secret" not in str(caught.value)


def test_a_models_request_timeout_in_seconds_or_milliseconds(tmp_path: Path) -> None:
    text = "[models.a]\noptions = { request_timeout = 90 }\n[models.b]\noptions = { timeout_ms = 1500 }\n"
    config = load(write(tmp_path, text), {})
    assert [rule.options for rule in config.models] == [{"request_timeout": 90}, {"request_timeout": 1.5}]


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ("{ timeout_ms = 0 }", "options.timeout_ms: must be a positive number"),
        ("{ request_timeout = -1 }", "options.request_timeout: must be a positive number"),
        ("{ timeout_ms = 1.5 }", "options.timeout_ms: must be an integer"),
        ("{ timeout_ms = 100, request_timeout = 1 }", "give request_timeout (seconds) or timeout_ms, not both"),
    ],
)
def test_a_bad_request_timeout_is_refused(tmp_path: Path, options: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load(write(tmp_path, f"[models.a]\noptions = {options}\n"), {})
