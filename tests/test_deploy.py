"""deploy/: the Kubernetes manifests checked against Kubernetes' own schemas (kubernetes-validate's
bundled copies, strict: an unknown field fails), the Compose file against the compose-spec schema
(check-jsonschema's bundled copy), both offline; and what they say checked against the server."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from oai2ollama.app import create_app
from oai2ollama.cli import SHUTDOWN_BACKSTOP
from oai2ollama.config import Settings
from oai2ollama.configuration import assemble

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose"
KUBERNETES_VERSION = "1.30.0"  # the oldest release the manifests are for (the preStop sleep action)


def manifests() -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(KUBERNETES.glob("*.yaml"))}


def resources() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for name, doc in manifests().items() if name != "kustomization.yaml"}


def container() -> dict[str, Any]:
    [main] = resources()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return main


@pytest.mark.parametrize("version", [KUBERNETES_VERSION, "1.37.0"])
@pytest.mark.parametrize("name", [path.name for path in sorted(KUBERNETES.glob("*.yaml"))])
def test_manifests_are_valid_kubernetes(name: str, version: str) -> None:
    document = manifests()[name]
    if name == "kustomization.yaml":  # kustomize's own file, not an API object: it lists them all
        listed = set(document["resources"])
        assert listed == {path.name for path in KUBERNETES.glob("*.yaml")} - {name}
        return
    kubernetes_validate.validate(document, version, strict=True)


def test_the_validator_would_catch_a_mistake() -> None:
    broken = copy.deepcopy(resources()["Deployment"])
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 45  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.37.0", strict=True)


def deployment_env() -> dict[str, str]:
    env = {item["name"]: item["value"] for item in container()["env"]}
    return {**env, **resources()["Secret"]["stringData"]}


def test_the_deployment_settings_are_settings_the_server_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every variable the Deployment sets is one of the server's, and with the ConfigMap's file they
    make a server that starts (the config file is read and checked as at start-up)."""
    config = tmp_path / "oai2ollama.toml"
    config.write_text(resources()["ConfigMap"]["data"]["oai2ollama.toml"])
    env = deployment_env()
    known = {str(alias).upper() for info in Settings.model_fields.values() for alias in _aliases(info)}
    known |= {name.upper() for name in Settings.model_fields}
    unknown = set(env) - known - {"OPENAI_API_KEY"}  # the upstream's key, read through `api_key_env`
    assert not unknown
    for name, value in env.items():  # as the container's environment
        monkeypatch.setenv(name, value)
    settings = Settings(config=config)
    assert settings.workers == 2 and settings.host == "0.0.0.0" and settings.database_url is not None
    assert container()["args"] == ["--config", "/etc/oai2ollama/oai2ollama.toml"]
    [upstream] = assemble(settings).catalog.sources
    assert upstream.target.api_key == env["OPENAI_API_KEY"]


def _aliases(info: Any) -> list[Any]:
    alias = info.validation_alias
    return list(getattr(alias, "choices", [alias] if isinstance(alias, str) else []))


def _field(env_name: str) -> str:
    for name, info in Settings.model_fields.items():
        if env_name.lower() in {name, *(str(alias).lower() for alias in _aliases(info))}:
            return name
    return env_name.lower()


def test_probes_ask_a_route_that_needs_no_key_and_no_upstream() -> None:
    probes = [container()[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")]
    assert {(probe["path"], probe["port"]) for probe in probes} == {("/", "http")}


@pytest.mark.anyio
async def test_the_probed_route_answers_without_a_key() -> None:
    settings = Settings(base_url="http://127.0.0.1:9/v1", server_api_key=["secret"], database_url="none")
    app = create_app(settings, upstreams=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/api/tags")).status_code == 401


def test_the_grace_periods_nest() -> None:
    """preStop sleep, then SIGTERM: the server's grace and its backstop end before Kubernetes kills."""
    spec = resources()["Deployment"]["spec"]["template"]["spec"]
    grace = float(deployment_env()["SHUTDOWN_GRACE"])
    pre_stop = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] > pre_stop + grace + SHUTDOWN_BACKSTOP
    strategy = resources()["Deployment"]["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0
    assert resources()["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_workers_match_the_cores_requested() -> None:
    assert int(deployment_env()["WORKERS"]) == int(container()["resources"]["requests"]["cpu"])
    assert "memory" in container()["resources"]["limits"]


def compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


def test_compose_file_is_valid_compose() -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    compose = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    assert [error.message for error in validator.iter_errors(compose)] == []
    mistake = copy.deepcopy(compose)
    mistake["services"]["nginx"]["port"] = ["11434:11434"]  # misspelt
    assert list(validator.iter_errors(mistake))


def test_compose_runs_two_replicas_behind_nginx_with_postgres_and_prometheus() -> None:
    compose = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"oai2ollama", "nginx", "postgres", "prometheus"}
    proxy = services["oai2ollama"]
    assert proxy["deploy"]["replicas"] == 2
    env = proxy["environment"]
    assert env["OAI2OLLAMA_DATABASE_URL"].startswith("postgresql://") and "@postgres:" in env["OAI2OLLAMA_DATABASE_URL"]
    grace = float(env["SHUTDOWN_GRACE"])
    assert float(proxy["stop_grace_period"].removesuffix("s")) > grace + SHUTDOWN_BACKSTOP
    for name in env:
        assert name == "OPENAI_API_KEY" or _field(name) in Settings.model_fields, name
    # Every file the services mount is in deploy/compose.
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert not source.startswith(".") or (COMPOSE / source).exists(), source
    nginx_conf = (COMPOSE / "nginx.conf").read_text()
    assert re.search(r"proxy_next_upstream error timeout non_idempotent;", nginx_conf)
    assert "server oai2ollama:11434" in nginx_conf and "proxy_buffering off" in nginx_conf
    prometheus = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    [job] = prometheus["scrape_configs"]
    assert job["dns_sd_configs"][0]["names"] == ["oai2ollama"] and job["dns_sd_configs"][0]["port"] == 11434
