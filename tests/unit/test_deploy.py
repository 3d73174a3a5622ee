"""The deployment files agree with each other and with the daemon.

What a deployer would trip over: a manifest that does not parse, a second replica (double
emails), the volume mounted somewhere other than the config's ``state_dir``, a Secret whose keys
are not the env vars the config names, a unit missing its hardening, an image running as root or
looking for its config where nothing is mounted.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from daemon.config import Config, load

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONFIG_PATH = "/etc/cadence/cadence.yaml"


# --- Kubernetes ---------------------------------------------------------------------------------


def _manifests() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if d]
    by_kind: dict[str, dict[str, Any]] = {}
    for doc in docs:
        assert doc["kind"] not in by_kind, f"two {doc['kind']} documents"
        by_kind[doc["kind"]] = doc
    return by_kind


def _k8s_config(tmp_path: Path) -> Config:
    """The ConfigMap's cadence.yaml, read by the daemon's own loader."""
    text = _manifests()["ConfigMap"]["data"]["cadence.yaml"]
    path = tmp_path / "cadence.yaml"
    path.write_text(text)
    return load(path)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _mount_of(deployment: dict[str, Any], kind: str, name: str) -> str:
    """Where the volume of ``kind`` (configMap, persistentVolumeClaim...) named ``name`` is."""
    pod = deployment["spec"]["template"]["spec"]
    key = "claimName" if kind == "persistentVolumeClaim" else "name"
    (volume,) = [v for v in pod["volumes"] if v.get(kind, {}).get(key) == name]
    (mount,) = [m for m in _container(deployment)["volumeMounts"] if m["name"] == volume["name"]]
    return str(mount["mountPath"])


def test_kubernetes_manifest_has_the_expected_objects() -> None:
    kinds = _manifests()
    assert set(kinds) == {
        "ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment", "Service", "Ingress"
    }  # fmt: skip
    assert kinds["ConfigMap"]["metadata"]["name"] == "cadence-config"
    assert kinds["Secret"]["metadata"]["name"] == "cadence-credentials"
    assert kinds["PersistentVolumeClaim"]["metadata"]["name"] == "cadence-state"
    assert kinds["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert all("namespace" not in doc["metadata"] for doc in kinds.values())


def test_kubernetes_config_is_valid_for_the_daemon(tmp_path: Path) -> None:
    config = _k8s_config(tmp_path)
    assert config.settings.state_dir.is_absolute()
    assert config.settings.calendar.caldav.url is not None  # no embedded server in a pod
    assert config.settings.mail.transport == "smtp"


def test_kubernetes_runs_one_non_root_writer_with_graceful_stop() -> None:
    deployment = _manifests()["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert "fsGroup" in pod["securityContext"]
    security = _container(deployment)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "limits" in _container(deployment)["resources"]


def test_kubernetes_mounts_state_and_config_where_the_daemon_looks(tmp_path: Path) -> None:
    deployment = _manifests()["Deployment"]
    config = _k8s_config(tmp_path)
    state = _mount_of(deployment, "persistentVolumeClaim", "cadence-state")
    assert PurePosixPath(state) == PurePosixPath(config.settings.state_dir)
    config_dir = _mount_of(deployment, "configMap", "cadence-config")
    # The image's CMD reads CONFIG_PATH (checked against the Dockerfile below).
    assert "command" not in _container(deployment) and "args" not in _container(deployment)
    assert PurePosixPath(config_dir) / "cadence.yaml" == PurePosixPath(CONFIG_PATH)
    tmp_mounts = [m for m in _container(deployment)["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp_mounts, "a read-only root needs a writable /tmp"


def test_kubernetes_secret_holds_exactly_the_env_vars_the_config_names(tmp_path: Path) -> None:
    kinds = _manifests()
    settings = _k8s_config(tmp_path).settings
    assert settings.mail.smtp is not None
    named = {settings.calendar.caldav.password_env, settings.mail.smtp.password_env}
    assert set(kinds["Secret"]["stringData"]) == named
    env_from = _container(kinds["Deployment"])["envFrom"]
    assert {"secretRef": {"name": "cadence-credentials"}} in env_from


# --- systemd ------------------------------------------------------------------------------------


def _unit() -> dict[str, dict[str, list[str]]]:
    """Sections to keys to every value (a key may repeat, e.g. SystemCallFilter)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in (DEPLOY / "cadence.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"key outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
}


def test_systemd_unit_is_hardened() -> None:
    service = _unit()["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], key
    assert "@system-service" in service["SystemCallFilter"]


def test_systemd_unit_runs_the_daemon_on_its_state_and_config_dirs() -> None:
    service = _unit()["Service"]
    assert service["Type"] == ["simple"]
    assert service["DynamicUser"] == ["yes"] and service["User"] == ["cadence"]
    assert service["StateDirectory"] == ["cadence"]  # /var/lib/cadence, writable
    assert service["ConfigurationDirectory"] == ["cadence"]  # /etc/cadence
    assert service["EnvironmentFile"] == ["-/etc/cadence/env"]
    assert service["KillSignal"] == ["SIGTERM"] and service["Restart"] == ["on-failure"]
    (exec_start,) = service["ExecStart"]
    argv = shlex.split(exec_start)
    assert Path(argv[0]).name == "cadence" and argv[1:] == ["run", "--config", CONFIG_PATH]
    assert _unit()["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_every_line_of_the_unit(tmp_path: Path) -> None:
    # verify needs ExecStart to exist; point it at this environment's console script.
    here = Path(sys.executable).parent / "cadence"
    if not here.exists():
        pytest.skip("the cadence console script is not installed next to this python")
    text = (DEPLOY / "cadence.service").read_text()
    unit = tmp_path / "cadence.service"
    unit.write_text(text.replace("/opt/cadence/.venv/bin/cadence", str(here)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # verify only warns about unknown keys or bad values; each warning names the file.
    complaints = [line for line in done.stderr.splitlines() if str(unit) in line]
    assert done.returncode == 0 and not complaints, done.stderr


# --- Docker -------------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _last(name: str) -> str:
    values = [args for word, args in _instructions() if word == name]
    assert values, f"no {name} in the Dockerfile"
    return values[-1]


def test_docker_image_runs_as_a_non_root_user() -> None:
    user = _last("USER").split(":")[0]
    assert user not in ("root", "0", "")
    # Numeric, so Kubernetes' runAsNonRoot can check it; the same uid as the manifest's.
    pod = _manifests()["Deployment"]["spec"]["template"]["spec"]
    assert int(user) == pod["securityContext"]["runAsUser"]


def test_docker_image_runs_the_daemon_on_the_mounted_config_and_volume() -> None:
    assert json.loads(_last("ENTRYPOINT")) == ["cadence"]
    assert json.loads(_last("CMD")) == ["run", "--config", CONFIG_PATH]
    assert _last("STOPSIGNAL") == "SIGTERM"
    assert _last("VOLUME") == "/var/lib/cadence"
    assert _last("FROM").startswith("python:3.11")


def test_docker_image_keeps_the_builtin_templates_next_to_the_package() -> None:
    # The daemon finds templates/ at Path(daemon.__file__).parents[1]: both must be copied into
    # one folder, and the install must be editable so daemon/ is imported from there.
    steps = _instructions()
    copies = {
        args.split()[-1].rstrip("/"): args.split()[0].rstrip("/")
        for word, args in steps
        if word == "COPY"
    }
    assert copies.get("daemon") == "daemon" and copies.get("templates") == "templates"
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "pip install --no-cache-dir -e ." in runs


def test_kubernetes_probes_and_scrapes_the_status_endpoint_the_config_opens(
    tmp_path: Path,
) -> None:
    http = _k8s_config(tmp_path).settings.http
    assert http is not None, "the probes need the status endpoint"
    host, port = http.address
    assert host == "0.0.0.0"  # reachable by the kubelet and Prometheus on the pod's IP
    deployment = _manifests()["Deployment"]
    template = deployment["spec"]["template"]
    container = _container(deployment)
    (named,) = [p for p in container["ports"] if p["name"] == "status"]
    assert named["containerPort"] == port
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "status"}
    # A calendar outage fails /healthz after 3 intervals, and the daemon then retries up to
    # 5 minutes apart: liveness gives it at least that long before a restart.
    live = container["livenessProbe"]
    interval = _k8s_config(tmp_path).settings.interval_seconds
    assert live["periodSeconds"] * live["failureThreshold"] >= 3 * interval + 300
    notes = template["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/port"] == str(port)
    assert notes["prometheus.io/path"] == "/metrics"
    # The report shows names: no Service reaches the status port.
    service = _manifests()["Service"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["prep"]


def test_docker_image_exposes_the_status_and_form_ports_of_the_kubernetes_config(
    tmp_path: Path,
) -> None:
    settings = _k8s_config(tmp_path).settings
    assert settings.http is not None and settings.prep is not None
    assert _last("EXPOSE").split() == [str(settings.http.address[1]),
                                       str(settings.prep.address[1])]  # fmt: skip


def test_kubernetes_publishes_the_pre_read_form_and_only_its_path(tmp_path: Path) -> None:
    prep = _k8s_config(tmp_path).settings.prep
    assert prep is not None, "the form is configured in the example"
    host, port = prep.address
    assert host == "0.0.0.0"
    kinds = _manifests()
    deployment = kinds["Deployment"]
    (named,) = [p for p in _container(deployment)["ports"] if p["name"] == "prep"]
    assert named["containerPort"] == port
    service = kinds["Service"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (service_port,) = service["spec"]["ports"]
    ingress = kinds["Ingress"]
    public = urlsplit(prep.public_url)
    assert public.scheme == "https"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == public.hostname
    assert [t["hosts"] for t in ingress["spec"]["tls"]] == [[public.hostname]]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/prep/", "Prefix")
    backend = path["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"] == {"name": service_port["name"]}


def test_systemd_example_config_is_valid_for_the_daemon(tmp_path: Path) -> None:
    lines = [line for line in (DEPLOY / "cadence.service").read_text().splitlines()
             if line.startswith("#   prep:")]  # fmt: skip
    (line,) = lines
    path = tmp_path / "cadence.yaml"
    path.write_text(
        "organization: {name: Acme}\nmanagers: [{email: m@acme.test, name: M}]\nreps: []\n"
        + line.removeprefix("#   ")
        + "\n"
    )
    prep = load(path).settings.prep
    assert prep is not None and prep.address[0] == "127.0.0.1"
