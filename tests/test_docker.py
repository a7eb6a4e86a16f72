"""What can be checked of the container without a Docker engine: lint, security properties, configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def test_hadolint_passes():
    hadolint = Path(sys.executable).parent / "hadolint"
    proc = subprocess.run(
        [str(hadolint), "--failure-threshold", "warning", str(DOCKER / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_runs_as_non_root_with_healthcheck_and_one_port():
    text = (DOCKER / "Dockerfile").read_text()
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert "HEALTHCHECK" in text
    assert [line for line in text.splitlines() if line.startswith("EXPOSE")] == ["EXPOSE 8888"]
    assert "ssh" not in text.lower()
    assert "MEDIMG_IMAGE" in text
    # dependency layer before the code layer, from the same pinned file as the venv
    assert text.index("requirements.txt") < text.index("COPY --chown=medimg:medimg medimg ")


def test_compose_security_properties():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    lab = compose["services"]["lab"]
    assert all(str(p).startswith("127.0.0.1:") for p in lab["ports"])
    assert "JUPYTER_TOKEN" in lab["environment"]
    assert lab["shm_size"] in {"8gb", "16gb", "32gb"}
    (device,) = lab["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == "all"
    assert lab["user"].split(":")[0] != "0"
    for name, service in compose["services"].items():
        assert all(str(p).startswith("127.0.0.1:") for p in service.get("ports", [])), name
        assert "22" not in " ".join(map(str, service.get("ports", []))).split(":"), name
    assert compose["services"]["train"]["command"][:2] == ["medimg", "fit"]
    assert {compose["services"][s]["profiles"][0] for s in ("dcgm-exporter", "prometheus", "grafana")} == {"monitoring"}


def test_monitoring_configs_parse():
    mon = DOCKER / "monitoring"
    prom = yaml.safe_load((mon / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["dcgm-exporter:9400"]
    (rule,) = yaml.safe_load((mon / "alerts.yml").read_text())["groups"][0]["rules"]
    assert "> 0.9" in rule["expr"] and "DCGM_FI_DEV_FB_USED" in rule["expr"]
    dash = json.loads((mon / "grafana" / "dashboards" / "gpus.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_TEMP"):
        assert metric in exprs
    for f in (mon / "grafana" / "provisioning").rglob("*.yml"):
        assert yaml.safe_load(f.read_text())["apiVersion"] == 1


def _entrypoint(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER_", "MEDIMG_"))}
    return subprocess.run(
        ["bash", str(DOCKER / "entrypoint.sh"), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_entrypoint_refuses_jupyter_without_token_or_password():
    proc = _entrypoint({}, "lab")
    assert proc.returncode == 64
    assert "refusing to start JupyterLab without authentication" in proc.stderr


def test_entrypoint_passes_other_commands_through():
    proc = _entrypoint({}, "echo", "scheduled-job")
    assert proc.returncode == 0 and proc.stdout.strip() == "scheduled-job"
