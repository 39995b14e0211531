"""The deploy recipes (deploy/): besides the linters `make test` runs on them (hadolint, the
Kubernetes schemas, the compose spec's schema), what they must agree on with the code: the
settings they set load, the probes name real endpoints, shutdown outlasts the ack wait, and
KEDA watches the stream and consumer that exist."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from pixpipe import bus
from pixpipe.config import load_settings

DEPLOY = Path(__file__).parents[1] / "deploy"


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def _kind(kind: str) -> list[dict[str, Any]]:
    return [d for f in sorted((DEPLOY / "k8s").glob("*.yaml")) if f.name != "nats-values.yaml"
            for d in _docs(f"k8s/{f.name}") if d.get("kind") == kind]  # fmt: skip


def _load_with(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    for name in [n for n in os.environ if n.startswith("PIXPIPE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no pixpipe.toml from the working tree
    return load_settings(None)


def test_the_kubernetes_config_loads_as_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (config,) = _kind("ConfigMap")
    (secret,) = _kind("Secret")
    settings = _load_with({**config["data"], **secret["stringData"]}, monkeypatch, tmp_path)
    assert settings.bus.replicas == 3 and settings.bus.user == "pixpipe"
    assert settings.bus.password is not None and "change-me" not in repr(settings.bus)
    assert settings.store_url("originals").startswith("s3://")


def test_the_compose_config_loads_as_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (compose,) = _docs("compose.yaml")
    env = compose["services"]["api-1"]["environment"]
    given = {"PIXPIPE_API_KEY": "k", "PIXPIPE_SIGNING_SECRET": "s"}

    def interpolate(value: str) -> str:  # compose's ${NAME:?message} and ${NAME:-default}
        return re.sub(r"\$\{(\w+)(?::[?-]([^}]*))?\}",
                      lambda m: given.get(m[1]) or m[2] or "", str(value))  # fmt: skip

    settings = _load_with({k: interpolate(v) for k, v in env.items()}, monkeypatch, tmp_path)
    assert settings.bus.replicas == 3
    assert len(settings.bus.url.split(",")) == 3  # every node seeds the client
    assert settings.api.keys == ["k"]
    for name in ("api-1", "api-2", "worker"):
        service = compose["services"][name]
        assert _seconds(service["stop_grace_period"]) > bus.ACK_WAIT_S, name
    assert compose["services"]["worker"]["deploy"]["replicas"] == 2
    nodes = [s for s in compose["services"] if s.startswith("nats-")]
    assert len(nodes) == 3 and all("--js" in compose["services"][n]["command"] for n in nodes)


def _seconds(text: str) -> float:
    return float(text.removesuffix("s"))


def test_deployments_probe_real_endpoints_and_outlast_the_ack_wait(tmp_path: Path) -> None:
    from pixpipe.config import Settings
    from pixpipe.http.app import create_app

    runtime: Any = SimpleNamespace(settings=Settings(data_dir=tmp_path, api={"keys": ["k"]}))
    served = {getattr(route, "path", None) for route in create_app(runtime).routes}
    deployments = {d["metadata"]["name"]: d for d in _kind("Deployment")}
    assert set(deployments) == {"pixpipe-api", "pixpipe-worker"}
    probed = set()
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > bus.ACK_WAIT_S, name
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["args"][0] in ("api", "worker")
        probed |= {container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")
                   if p in container}  # fmt: skip
    assert probed == {"/healthz", "/readyz"} and probed <= served
    budgets = {p["metadata"]["name"] for p in _kind("PodDisruptionBudget")}
    assert budgets == set(deployments)


def test_keda_scales_the_workers_on_the_variants_consumer() -> None:
    (scaled,) = _docs("k8s/keda.yaml")
    assert scaled["kind"] == "ScaledObject" and scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "pixpipe-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    meta = trigger["metadata"]
    assert (meta["stream"], meta["consumer"]) == (bus.STREAM, "variants")
    assert "variants" in bus.CONSUMERS and int(meta["lagThreshold"]) > 0
    assert meta["natsServerMonitoringEndpoint"].endswith(":8222")
    values = yaml.safe_load((DEPLOY / "k8s" / "nats-values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["enabled"] and values["config"]["monitor"]["enabled"]


def test_the_image_runs_as_a_user_and_starts_a_real_command() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER 10001$", dockerfile, re.M)
    assert dockerfile.count("FROM ") == 2  # built in one stage, run from a slim one
    from typer.main import get_command

    from pixpipe.cli import app

    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    assert {"api", "worker"} <= commands
    assert re.search(r'^CMD \["api", "--host", "0.0.0.0"', dockerfile, re.M)
