"""The command line: --version, --help, one-line errors with status 2, and the real entry points."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from oai2ollama import __version__, cli
from oai2ollama.config import Settings, listen_address

from .fakes import closed_port, isolate_settings, sse, text_stream, usage_chunk

SECRET = "sk-cli-secret-42"
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_settings(monkeypatch, tmp_path)


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int | str | None, str, str]:
    with pytest.raises(SystemExit) as exited:
        cli.main(list(args))
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"oai2ollama {__version__}"


def test_help_documents_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    for name, info in Settings.model_fields.items():
        if name in ("capacities", "ollama_host"):
            continue  # the legacy spelling and Ollama's variable stay out of the flags on purpose
        assert f"--{name.replace('_', '-')}" in out or name == "extra_models", name
        assert info.description and info.description.split()[0] in out, name
    assert "--models" in out and "-m" in out and "-c" in out
    assert "OLLAMA_HOST" in out


def test_help_shows_plain_value_kinds_and_the_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_main(capsys, "--help")
    for python_type in ("SecretStr", "dict[", "list[", "Path", "null", "NoneType", "(default: [])", "(default: {})"):
        assert python_type not in out, python_type
    usage = out.split("\n\n", 1)[0]
    kinds = set(re.findall(r"\[-[-\w]+ ([^\]|]+)\]", usage))
    assert kinds <= {"str", "int", "float", "list", "JSON", "size", "path", "{critical,error,warning,info,debug}"}
    assert {"str", "int", "list", "JSON"} <= kinds
    assert re.search(r"^  --version +print the version and exit$", out, re.MULTILINE)
    assert "(default: 64m)" in out and "(default: 128k)" in out


def test_the_version_flag_in_the_parser_prints_it_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.load_settings(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"oai2ollama {__version__}"


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("0.0.0.0", "0.0.0.0", 11434),
        ("example.com", "example.com", 11434),
        ("127.0.0.1:11435", "127.0.0.1", 11435),
        (":8080", "0.0.0.0", 8080),  # no host: every interface, as Go listens on ":8080"
        ("http://192.168.1.5:9000", "192.168.1.5", 9000),
        ("http://192.168.1.5", "192.168.1.5", 80),  # Ollama's default port for the scheme
        ("https://gateway.lan", "gateway.lan", 443),
        ("[::1]:8081", "::1", 8081),
        ("[::]:8081", "::", 8081),
        ("::1", "::1", 11434),
        ("0.0.0.0:8080/ignored/path", "0.0.0.0", 8080),
        ("localhost:", "localhost", 11434),
        ("  localhost:1234 ", "localhost", 1234),
    ],
)
def test_ollama_host_values_mean_what_they_mean_to_ollama(value: str, host: str, port: int) -> None:
    assert listen_address(value) == (host, port)


@pytest.mark.parametrize(
    ("env", "args", "where"),
    [
        ({"OLLAMA_HOST": "0.0.0.0:8080"}, [], ("0.0.0.0", 8080)),
        ({"OLLAMA_HOST": ":9999", "HOST": "127.0.0.1"}, [], ("127.0.0.1", 9999)),
        ({"OLLAMA_HOST": "0.0.0.0:9999", "PORT": "7000"}, [], ("0.0.0.0", 7000)),
        ({"OLLAMA_HOST": "0.0.0.0:9999"}, ["--host", "localhost"], ("localhost", 9999)),
        ({"OLLAMA_HOST": "0.0.0.0:9999"}, ["--port", "7001"], ("0.0.0.0", 7001)),
        ({"OLLAMA_HOST": ""}, [], ("localhost", 11434)),
        ({}, [], ("localhost", 11434)),
    ],
)
def test_ollama_host_sets_where_we_listen_unless_our_own_settings_say(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: list[str], where: tuple[str, int]
) -> None:
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    settings = cli.load_settings(["--base-url", "http://up/v1", *args])
    assert (settings.host, settings.port) == where


def test_ollama_host_in_dot_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OPENAI_BASE_URL=http://up/v1\nOLLAMA_HOST=[::1]:11500\n")
    settings = cli.load_settings([])
    assert (settings.host, settings.port) == ("::1", 11500)


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        ([], {}, "base-url"),
        (["--base-url", "http://up/v1", "--port", "99999"], {}, "port"),
        (["--base-url", "http://up/v1", "--port", "eleven"], {}, "port"),
        (["--base-url", "http://up/v1", "-c", "tools,teleport"], {}, "capabilities"),
        (["--base-url", "not a url"], {}, "base-url"),
        (["--base-url", "ftp://files.example.com"], {}, "base-url"),
        ([], {"OPENAI_BASE_URL": "http://up/v1", "PORT": "-1"}, "port"),
        ([], {"OPENAI_BASE_URL": "upstream:8080"}, "base-url"),
        (["--base-url", "http://up/v1", "--log-level", "loud"], {}, "log-level"),
        (["--base-url", "http://up/v1", "--read-timeout", "0"], {}, "read-timeout"),
        (["--base-url", "http://up/v1", "--context-lengths", "{not json"], {}, "context-lengths"),
        ([], {"OPENAI_BASE_URL": "http://up/v1", "CONTEXT_LENGTHS": "{not json"}, "context-lengths"),
        (["--base-url", "http://up/v1", "--no-such-flag"], {}, "--no-such-flag"),
        (["--base-url"], {}, "--base-url"),
        ([], {"OPENAI_BASE_URL": "http://up/v1", "OLLAMA_HOST": "localhost:port"}, "ollama-host"),
        ([], {"OPENAI_BASE_URL": "http://up/v1", "OLLAMA_HOST": "[::1]:70000"}, "OLLAMA_HOST"),
    ],
)
def test_bad_settings_give_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    names: str,
) -> None:
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    code, out, err = run_main(capsys, "--api-key", SECRET, *args)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("oai2ollama: error: ")
    assert names in lines[0]
    assert "Traceback" not in err and "pydantic" not in err and "Value error" not in err
    assert SECRET not in err


def test_missing_base_url_says_how_to_give_it(capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run_main(capsys)
    assert "--base-url" in err and "OPENAI_BASE_URL" in err


def test_legacy_capacities_work_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    settings = cli.load_settings(["--base-url", "http://up/v1", "--capacities", "tools"])
    assert settings.all_capabilities() == ["tools"]
    err = capsys.readouterr().err
    assert "warning" in err and "capabilities" in err


def test_no_warning_without_capacities(capsys: pytest.CaptureFixture[str]) -> None:
    cli.load_settings(["--base-url", "http://up/v1", "-c", "tools"])
    assert capsys.readouterr().err == ""


# ---- the real entry points, as subprocesses -----------------------------------------------------


def clean_env() -> dict[str, str]:
    # The fixture has already removed every OPENAI_*/settings variable from os.environ.
    return dict(os.environ)


class ServerProcess:
    """A server started as a subprocess; `first(url)` is the first answer it gives, `stop()` its output."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def first(self, url: str) -> httpx.Response:
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, self.process.communicate()[0]
            try:
                return httpx.get(url, timeout=2)
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start within 30 s"
                time.sleep(0.1)

    def stop(self) -> str:
        self.process.terminate()
        try:
            output, _ = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return output


@pytest.mark.parametrize(
    "command",
    [[str(BIN / "oai2ollama"), "--version"], [sys.executable, "-m", "oai2ollama", "--version"]],
    ids=["console-script", "python-m"],
)
def test_entry_points_print_the_version(command: list[str], tmp_path: Path) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"oai2ollama {__version__}"


def test_entry_point_refuses_bad_settings_without_traceback(tmp_path: Path) -> None:
    command = [str(BIN / "oai2ollama"), "--base-url", "http://up/v1", "--port", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=clean_env())
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "port" in done.stderr


def test_server_listens_where_ollama_host_says(tmp_path: Path) -> None:
    port = closed_port()
    command = [str(BIN / "oai2ollama"), "--base-url", f"http://127.0.0.1:{closed_port()}/v1"]
    server = ServerProcess(command, tmp_path, {**clean_env(), "OLLAMA_HOST": f"http://127.0.0.1:{port}"})
    try:
        assert server.first(f"http://127.0.0.1:{port}/").text == "Ollama is running"
    finally:
        server.stop()


def test_modules_build_no_settings_at_import(tmp_path: Path) -> None:
    env = {**clean_env(), "PORT": "not-a-port", "OPENAI_BASE_URL": "not a url"}
    code = "import oai2ollama.app, oai2ollama.cli, oai2ollama.config, oai2ollama.upstream"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr


def docker_healthcheck() -> list[str]:
    text = (Path(__file__).resolve().parent.parent / "Dockerfile").read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("HEALTHCHECK")]
    return json.loads(line.split(" CMD ", 1)[1])


def test_docker_healthcheck_fails_without_a_server() -> None:
    check = [sys.executable, *docker_healthcheck()[1:]]
    done = subprocess.run(check, env={**clean_env(), "PORT": str(closed_port())}, capture_output=True, timeout=30)
    assert done.returncode != 0


def test_server_starts_answers_and_stops(tmp_path: Path) -> None:
    port = closed_port()
    upstream = f"http://127.0.0.1:{closed_port()}/v1"
    command = [str(BIN / "oai2ollama"), "--base-url", upstream, "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess(command, tmp_path, {**clean_env(), "OPENAI_API_KEY": SECRET, "LOG_LEVEL": "info"})
    try:
        root = server.first(f"http://127.0.0.1:{port}/")
        assert root.status_code == 200 and root.text == "Ollama is running"
        version = httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=5)
        assert version.status_code == 200 and version.json() == {"version": Settings().ollama_version}
        # The Docker image's health check, run as the container would run it.
        check = [sys.executable, *docker_healthcheck()[1:]]
        healthy = subprocess.run(check, env={**clean_env(), "PORT": str(port)}, capture_output=True, timeout=30)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        output = server.stop()
    assert server.process.returncode is not None
    assert SECRET not in output
    assert re.search(r"GET /api/version\b.* 200\b", output), output  # one log line per request


SERVE_AND_TELL_GC = """
import gc, sys
from starlette.responses import JSONResponse
from starlette.routing import Route
from oai2ollama import cli
from oai2ollama.app import create_app
from oai2ollama.config import Settings

app = create_app(Settings(base_url=sys.argv[1], database_url="none"))
heap = lambda request: JSONResponse(
    {"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects()), "young": gc.get_threshold()[0]}
)
app.router.routes.insert(0, Route("/heap", heap))
cli.serve(app, shutdown_grace=1.0, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def test_a_started_server_keeps_its_start_up_objects_out_of_the_collectors_walks(tmp_path: Path) -> None:
    """The objects start-up built are frozen once the server serves (`cli.settle_heap`), so that the
    collections requests set off walk what requests made, not the whole program."""
    port = closed_port()
    command = [sys.executable, "-c", SERVE_AND_TELL_GC, f"http://127.0.0.1:{closed_port()}/v1", str(port)]
    server = ServerProcess(command, tmp_path, clean_env())
    try:
        heap = server.first(f"http://127.0.0.1:{port}/heap").json()
    finally:
        server.stop()
    # Start-up builds some 100,000 objects (modules, the app, pydantic's schemas); a request a few hundred.
    assert heap["frozen"] > 20_000, heap
    assert heap["tracked"] < heap["frozen"] / 4, heap
    # And the young generation is collected once 10,000 objects more live, not after Python's 700.
    assert heap["young"] == cli.YOUNG_GENERATION_THRESHOLD == 10_000, heap


SERVE_AND_COUNT_CYCLES = """
import gc, json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from starlette.responses import JSONResponse
from starlette.routing import Route
from oai2ollama import cli
from oai2ollama.app import create_app
from oai2ollama.config import Settings

STREAM = json.loads(sys.argv[2])


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        body = STREAM.encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
threading.Thread(target=upstream.serve_forever, daemon=True).start()
base_url = f"http://127.0.0.1:{upstream.server_address[1]}/v1"


def garbage(request):
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    found = len(gc.garbage)
    gc.garbage.clear()
    gc.set_debug(0)
    return JSONResponse({"garbage": found})


app = create_app(Settings(base_url=base_url, database_url="none"))
app.router.routes.insert(0, Route("/garbage", garbage))
cli.serve(app, shutdown_grace=1.0, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def test_answers_leave_no_reference_cycles_for_the_collector(tmp_path: Path) -> None:
    """The server collects its young generation seldom (`cli.YOUNG_GENERATION_THRESHOLD`), so garbage
    held in a reference cycle waits long, with whatever it holds (a relayed answer's tail, once: ~900
    MiB over 32 long streams). Answers, relayed and translated, streamed or not, leave none."""
    port = closed_port()
    stream = sse(*text_stream("Hello", " there"), usage_chunk()).decode()
    command = [sys.executable, "-c", SERVE_AND_COUNT_CYCLES, str(port), json.dumps(stream)]
    server = ServerProcess(command, tmp_path, clean_env())
    base = f"http://127.0.0.1:{port}"
    asked = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    try:
        server.first(f"{base}/api/version")

        def answer_each_way() -> None:
            with httpx.Client(base_url=base, timeout=10) as client:
                for stream in (True, False):
                    for path in ("/v1/chat/completions", "/api/chat"):
                        answer = client.post(path, json={**asked, "stream": stream})
                        assert answer.status_code == 200 and "there" in answer.text, answer.text

        answer_each_way()  # what a first answer builds once (pools, caches) is not counted
        httpx.get(f"{base}/garbage", timeout=10)
        for _ in range(20):
            answer_each_way()
        found = httpx.get(f"{base}/garbage", timeout=10).json()["garbage"]
    finally:
        server.stop()
    # 80 answers: a cycle per answer would leave 80 or more. A connection's close may leave a few.
    assert found < 20, found
