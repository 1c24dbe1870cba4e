"""Inbound API keys: `--server-api-key` and `[[keys]]`, checked through the official clients, with
per-key model lists enforced on every route; our key never travels upstream or into a log."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest
from pydantic import ValidationError

from oai2ollama import cli
from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.config_file import ConfigError, InboundKey, load
from oai2ollama.configuration import assemble
from oai2ollama.guards import keys as guard_keys
from oai2ollama.guards.keys import KeyRing, presented_keys
from oai2ollama.upstream import Upstreams

from .fakes import BASE_URL, FakeUpstream, embeddings_response, isolate_settings, text_stream

pytestmark = pytest.mark.anyio

ADMIN = "admin-key-0123456789"
TEAM = "team-key-9876543210"
ASK = [{"role": "user", "content": "Hi"}]
OTHER = "text-embedding-test"  # served upstream, but not by TEAM's globs


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "oai2ollama.toml"
    path.write_text(f'[[keys]]\nkey_env = "TEAM_KEY"\nmodels = ["gpt-*"]\n\n[[keys]]\nkey = "{ADMIN}"\n')
    return path


@pytest.fixture
def settings_overrides(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("TEAM_KEY", TEAM)
    return {"config": config_path, "api_key": None}


def raw(app: Any, key: str | None = None, header: str = "authorization") -> httpx.AsyncClient:
    headers = {}
    if key is not None:
        headers[header] = f"Bearer {key}" if header == "authorization" else key
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1:11434", headers=headers)


def ollama_with(app: Any, key: str | None) -> ollama.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return ollama.AsyncClient(host="http://127.0.0.1:11434", transport=httpx.ASGITransport(app), headers=headers)


# ---- pure pieces --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "api_key", "presented"),
    [
        (b"Bearer k1", None, [b"k1"]),
        (b"bearer   k1 ", None, [b"k1"]),
        (b"Bearer ", None, []),  # Copilot's empty key
        (b"Bearer", None, []),
        (b"Basic azE=", None, []),
        (None, b"k2", [b"k2"]),
        (None, b"  ", []),
        (b"Bearer k1", b"k2", [b"k1", b"k2"]),
        (None, None, []),
    ],
)
def test_presented_keys(authorization: bytes | None, api_key: bytes | None, presented: list[bytes]) -> None:
    assert presented_keys(authorization, api_key) == presented


def test_keys_are_found_by_digest_and_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """One probe per presented key however many keys there are (the table is keyed by SHA-256
    digests, whose order says nothing about any key), confirmed by a constant-time comparison."""
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(guard_keys.hmac, "compare_digest", compare)
    ring = KeyRing([InboundKey("first"), InboundKey("second"), InboundKey("third")])
    assert ring.find([b"first"]) == InboundKey("first")
    assert len(compared) == 1
    assert all(len(a) == len(b) == 32 for a, b in compared), "digests: the presented length does not show"
    assert ring.find([b"fourth"]) is None and ring.find([]) is None


# ---- every route but / needs a key --------------------------------------------------------------

ROUTES = [
    ("GET", "/api/version", None),
    ("GET", "/api/tags", None),
    ("HEAD", "/api/tags", None),
    ("GET", "/api/ps", None),
    ("POST", "/api/show", {"model": "gpt-test"}),
    ("POST", "/api/chat", {"model": "gpt-test", "messages": ASK}),
    ("POST", "/api/generate", {"model": "gpt-test", "prompt": "Hi"}),
    ("POST", "/api/embed", {"model": "gpt-test", "input": "Hi"}),
    ("POST", "/api/embeddings", {"model": "gpt-test", "prompt": "Hi"}),
    ("POST", "/api/pull", {"model": "gpt-test"}),
    ("DELETE", "/api/delete", {"model": "gpt-test"}),
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/gpt-test", None),
    ("GET", "/models", None),
    ("POST", "/v1/chat/completions", {"model": "gpt-test", "messages": ASK}),
    ("POST", "/chat/completions", {"model": "gpt-test", "messages": ASK}),
    ("POST", "/v1/completions", {"model": "gpt-test", "prompt": "Hi"}),
    ("POST", "/v1/embeddings", {"model": "gpt-test", "input": "Hi"}),
    ("POST", "/v1/responses", {"model": "gpt-test", "input": "Hi"}),
    ("POST", "/v1/messages", {"model": "gpt-test", "max_tokens": 9, "messages": ASK}),
    ("POST", "/v1/messages/count_tokens", {"model": "gpt-test", "messages": ASK}),
    ("GET", "/no/such/route", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("key", [None, "wrong-key"])
async def test_every_route_refuses_a_missing_or_wrong_key(
    app: Any, fake: FakeUpstream, method: str, path: str, body: Any, key: str | None
) -> None:
    async with raw(app, key) as http:
        response = await http.request(method, path, json=body)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert [r.url.path for r in fake.requests if r.url.path != "/v1/models"] == []
    if method == "HEAD":
        return
    assert "wrong-key" not in response.text
    expected = "an API key is required" if key is None else "invalid API key"
    if path.startswith("/v1/messages"):
        assert response.json()["type"] == "error"
        assert response.json()["error"]["type"] == "authentication_error"
        assert expected in response.json()["error"]["message"]
    elif path.startswith(("/v1", "/models", "/chat")):
        assert response.json()["error"]["type"] == "authentication_error"
        assert expected in response.json()["error"]["message"]
    else:
        assert expected in response.json()["error"]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_root_stays_open_for_health_checks(app: Any, method: str) -> None:
    async with raw(app) as http:
        assert (await http.request(method, "/")).status_code == 200
        assert (await http.post("/")).status_code == 401


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
async def test_either_header_carries_the_key(app: Any, header: str) -> None:
    async with raw(app, ADMIN, header) as http:
        response = await http.get("/api/tags")
    assert response.status_code == 200


# ---- the official clients -----------------------------------------------------------------------


async def test_ollama_client(app: Any, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hello", " there"))
    answer = await ollama_with(app, ADMIN).chat(model="gpt-test", messages=ASK)
    assert answer.message.content == "Hello there"
    assert [m.model for m in (await ollama_with(app, ADMIN).list()).models] == ["gpt-test:latest", f"{OTHER}:latest"]
    for key in (None, "wrong-key"):
        with pytest.raises(ollama.ResponseError) as caught:
            await ollama_with(app, key).chat(model="gpt-test", messages=ASK)
        assert caught.value.status_code == 401


async def test_openai_client(openai_for: Any, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    with pytest.raises(openai.AuthenticationError) as caught:
        await openai_for("wrong-key").models.list()
    assert caught.value.body == {
        "message": "invalid API key",
        "type": "authentication_error",
        "param": None,
        "code": None,
    }
    stream = await openai_for(TEAM).chat.completions.create(model="gpt-test", messages=ASK, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "Hello"


async def test_anthropic_client_with_x_api_key(anthropic_for: Any, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    with pytest.raises(anthropic.AuthenticationError):
        await anthropic_for("wrong-key").messages.create(model="gpt-test", max_tokens=9, messages=ASK)
    message = await anthropic_for(TEAM).messages.create(model="gpt-test", max_tokens=9, messages=ASK)
    assert message.content[0].text == "Hello"  # type: ignore[union-attr]


async def test_our_key_never_travels_upstream(app: Any, fake: FakeUpstream, anthropic_for: Any) -> None:
    # Without an upstream key the client's Authorization would be forwarded; ours must not be.
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    fake.on("POST", "/embeddings", embeddings_response([0.1, 0.2]))
    async with raw(app, ADMIN) as http:
        assert (await http.post("/api/chat", json={"model": "gpt-test", "messages": ASK})).status_code == 200
        assert (await http.post("/v1/chat/completions", json={"model": "gpt-test", "messages": ASK})).is_success
        assert (await http.post("/api/embed", json={"model": OTHER, "input": "Hi"})).status_code == 200
    await anthropic_for(ADMIN).messages.create(model="gpt-test", max_tokens=9, messages=ASK)
    sent = [r for r in fake.requests if r.url.path != "/v1/models"]
    assert len(sent) == 4
    for request in sent:
        assert "authorization" not in request.headers and "x-api-key" not in request.headers
        assert ADMIN.encode() not in request.content


async def test_keys_are_never_logged(app: Any, fake: FakeUpstream, caplog: pytest.LogCaptureFixture) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    caplog.set_level(logging.DEBUG)
    for key in (ADMIN, "wrong-key-5555", TEAM):
        async with raw(app, key) as http:
            await http.post("/api/chat", json={"model": OTHER, "messages": ASK})
    assert caplog.records, "requests are logged"
    for key in (ADMIN, "wrong-key-5555", TEAM):
        assert key not in caplog.text


# ---- keys limited to some models ----------------------------------------------------------------


async def test_listings_show_only_the_keys_models(app: Any, openai_for: Any) -> None:
    for _ in range(2):  # the cached listing of one key is never served to another
        async with raw(app, TEAM) as http:
            tags = (await http.get("/api/tags")).json()
        assert [m["name"] for m in tags["models"]] == ["gpt-test:latest"]
        assert [m.id for m in (await openai_for(TEAM).models.list()).data] == ["gpt-test:latest"]
        models = await ollama_with(app, ADMIN).list()
        assert [m.model for m in models.models] == ["gpt-test:latest", f"{OTHER}:latest"]
        assert [m.id for m in (await openai_for(ADMIN).models.list()).data] == ["gpt-test:latest", f"{OTHER}:latest"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/chat", {"model": OTHER, "messages": ASK}),
        ("POST", "/api/chat", {"model": OTHER}),  # a load request uses the model too
        ("POST", "/api/generate", {"model": f"{OTHER}:latest", "prompt": "Hi"}),
        ("POST", "/api/embed", {"model": OTHER, "input": "Hi"}),
        ("POST", "/api/embeddings", {"model": OTHER, "prompt": "Hi"}),
        ("POST", "/api/show", {"model": OTHER}),
        ("POST", "/api/pull", {"model": OTHER}),
        ("GET", f"/v1/models/{OTHER}", None),
        ("POST", "/v1/chat/completions", {"model": OTHER, "messages": ASK}),
        ("POST", "/v1/completions", {"model": OTHER, "prompt": "Hi"}),
        ("POST", "/v1/embeddings", {"model": OTHER, "input": "Hi"}),
        ("POST", "/v1/responses", {"model": OTHER, "input": "Hi"}),
        ("POST", "/v1/messages", {"model": OTHER, "max_tokens": 9, "messages": ASK}),
        ("POST", "/v1/messages/count_tokens", {"model": OTHER, "messages": ASK}),
    ],
)
async def test_a_model_outside_the_keys_list_is_403_everywhere(
    app: Any, fake: FakeUpstream, method: str, path: str, body: Any
) -> None:
    async with raw(app, TEAM) as http:
        response = await http.request(method, path, json=body)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    message = error if isinstance(error, str) else error["message"]
    assert message == f"this API key may not use model '{body['model'] if body else OTHER}'"
    if path.startswith("/v1/messages"):
        assert error["type"] == "permission_error" and response.json()["type"] == "error"
    elif path.startswith("/v1"):
        assert error["type"] == "permission_error"
    assert [r.url.path for r in fake.requests if r.url.path != "/v1/models"] == []


async def test_clients_see_403_for_other_models_and_answers_for_theirs(
    app: Any, fake: FakeUpstream, openai_for: Any, anthropic_for: Any
) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    with pytest.raises(ollama.ResponseError) as refused:
        await ollama_with(app, TEAM).chat(model=OTHER, messages=ASK)
    assert refused.value.status_code == 403
    with pytest.raises(openai.PermissionDeniedError):
        await openai_for(TEAM).chat.completions.create(model=OTHER, messages=ASK)
    with pytest.raises(anthropic.PermissionDeniedError):
        await anthropic_for(TEAM).messages.create(model=OTHER, max_tokens=9, messages=ASK)
    answer = await ollama_with(app, TEAM).chat(model="gpt-test:latest", messages=ASK)
    assert answer.message.content == "Hello"
    assert (await ollama_with(app, TEAM).show("gpt-test")).capabilities


async def test_ps_lists_only_the_keys_models(app: Any, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    fake.on("POST", "/embeddings", embeddings_response([0.1, 0.2]))
    await ollama_with(app, ADMIN).chat(model="gpt-test", messages=ASK)
    await ollama_with(app, ADMIN).embed(model=OTHER, input="Hi")
    assert {m.model for m in (await ollama_with(app, ADMIN).ps()).models} == {"gpt-test:latest", f"{OTHER}:latest"}
    assert [m.model for m in (await ollama_with(app, TEAM).ps()).models] == ["gpt-test:latest"]


async def test_globs_also_match_a_models_id_behind_its_alias(tmp_path: Path, fake: FakeUpstream) -> None:
    config = tmp_path / "aliased.toml"
    config.write_text(
        '[models."gpt-test"]\nalias = "fast"\n\n[[keys]]\nkey = "k-alias-1"\nmodels = ["gpt-*"]\n'
        '\n[[keys]]\nkey = "k-alias-2"\nmodels = ["fast"]\n'
    )
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    settings = Settings(_env_file=None, base_url=BASE_URL, config=config)  # type: ignore[call-arg]
    upstreams = Upstreams(transport=fake.transport())
    try:
        app = create_app(settings, upstreams=upstreams)
        for key in ("k-alias-1", "k-alias-2"):
            async with raw(app, key) as http:
                tags = (await http.get("/api/tags")).json()
                assert [m["name"] for m in tags["models"]] == ["fast:latest"], key
                response = await http.post("/api/chat", json={"model": "fast", "messages": ASK, "stream": False})
                assert response.status_code == 200, key
    finally:
        await upstreams.aclose()


# ---- where keys come from -----------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"server_api_key": ["flag-key-1", "flag-key-2"]}])
async def test_keys_from_flags(app: Any) -> None:
    for key in ("flag-key-1", "flag-key-2"):
        async with raw(app, key) as http:
            assert (await http.get("/api/tags")).status_code == 200
    async with raw(app, ADMIN) as http:
        assert (await http.get("/api/tags")).status_code == 401


def test_keys_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pydantic_settings import CliApp

    isolate_settings(monkeypatch, tmp_path)
    args = ["--base-url", "http://up/v1", "--server-api-key", "a1", "--server-api-key", "b2,c3"]
    settings = CliApp.run(Settings, cli_args=args)
    assert [k.get_secret_value() for k in settings.server_api_key] == ["a1", "b2", "c3"]
    assert "a1" not in repr(settings) and "a1" not in settings.model_dump_json()
    monkeypatch.setenv("OAI2OLLAMA_SERVER_API_KEYS", "e1, e2")
    settings = CliApp.run(Settings, cli_args=["--base-url", "http://up/v1"])
    assert [k.get_secret_value() for k in settings.server_api_key] == ["e1", "e2"]


def test_an_empty_key_is_refused_without_echo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    isolate_settings(monkeypatch, tmp_path)
    with pytest.raises(ValidationError):
        Settings(_env_file=None, server_api_key=[" "])  # type: ignore[call-arg]
    monkeypatch.setenv("OAI2OLLAMA_SERVER_API_KEYS", "s3cret-key,")
    with pytest.raises(SystemExit) as exited:
        cli.main(["--base-url", "http://up/v1", "--server-api-key", ""])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("oai2ollama: error: server-api-key") and "s3cret" not in err


def test_config_keys_parse(config_path: Path) -> None:
    keys = load(config_path, {"TEAM_KEY": TEAM}).keys
    assert [key.key for key in keys] == [TEAM, ADMIN]
    assert keys[0].models is not None and keys[0].models.match("gpt-test:latest")
    assert not keys[0].models.match(OTHER)
    assert keys[1].models is None
    assert TEAM not in repr(keys) and ADMIN not in repr(keys)


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("keys = 1\n", "keys", "must be an array of tables: write [[keys]]"),
        ("[keys]\nkey = 'k'\n", "keys", "must be an array of tables"),
        ("[[keys]]\nmodels = ['gpt-*']\n", "[[keys]] #1", "needs key or key_env"),
        ("[[keys]]\nkey = 'k'\nkey_env = 'K'\n", "[[keys]] #1 key_env", "give key or key_env, not both"),
        ("[[keys]]\nkey = ''\n", "[[keys]] #1 key", "must not be empty"),
        ("[[keys]]\nkey = 42\n", "[[keys]] #1 key", "must be a string, not an integer"),
        ("[[keys]]\nkey_env = 'UNSET_VARIABLE'\n", "[[keys]] #1 key_env", "environment variable UNSET_VARIABLE"),
        ("[[keys]]\nkey = 'k'\nmodels = []\n", "[[keys]] #1 models", "lists no model"),
        ("[[keys]]\nkey = 'k'\nmodels = 'gpt-*'\n", "[[keys]] #1 models", "must be a list of strings"),
        ("[[keys]]\nkey = 'k'\nmodel = ['gpt-*']\n", "[[keys]] #1 model", "did you mean 'models'?"),
        ("[[keys]]\nkey = 'dup-secret'\n[[keys]]\nkey = 'dup-secret'\n", "[[keys]] #2", "same key as [[keys]] #1"),
    ],
)
def test_config_key_mistakes_name_file_key_and_problem(tmp_path: Path, text: str, where: str, problem: str) -> None:
    path = tmp_path / "oai2ollama.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(path, {})
    message = str(caught.value)
    assert message.startswith(f"{path}: {where}: "), message
    assert problem in message
    assert "dup-secret" not in message


def test_a_key_given_twice_stops_the_start(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_KEY", TEAM)
    settings = Settings(_env_file=None, base_url=BASE_URL, config=config_path, server_api_key=[ADMIN])  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"\[\[keys\]\] #2: the same key is given by --server-api-key") as caught:
        assemble(settings)
    assert ADMIN not in str(caught.value)
    twice = Settings(_env_file=None, base_url=BASE_URL, server_api_key=["again-1", "again-1"])  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="the same key is given twice") as caught:
        assemble(twice)
    assert "again-1" not in str(caught.value)
