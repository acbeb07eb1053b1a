"""The deployment files under deploy/: each one parses, and everything it runs exists in our CLI.

No container engine, cluster or systemd runs here: the Dockerfile, Compose file, Kubernetes
manifests, systemd units and Procfile are parsed, and every command they start is resolved in
`app.cli` and invoked with `--help` appended (so its subcommands and options must exist).
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from app import cli
from receiver.exceptions import ConfigurationError
from receiver.settings import Settings, load_settings
from receiver.store.crypto import load_keyring

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
PLACEHOLDER = "changeme"
# Placeholders production mode cannot recognise (passwords inside URLs, identifiers): the
# templates say in words to replace them.
UNCHECKED_PLACEHOLDERS = {
    "POSTGRES_PASSWORD",
    "VERIHOOK_DATABASE_URL",
    "VERIHOOK_REDIS_URL",
    "VERIHOOK_PROVIDERS__DOCVERIFY__CLIENT_ID",
}


# ---- reading the files -------------------------------------------------------------------


def yaml_files() -> list[Path]:
    """Every YAML file under deploy/."""
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


def load_yaml(path: Path) -> list[Any]:
    """The documents of one YAML file (empty ones dropped)."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def compose_services() -> dict[str, dict[str, Any]]:
    """The services of deploy/docker-compose.yml (anchors and merge keys resolved)."""
    return load_yaml(DEPLOY / "docker-compose.yml")[0]["services"]


def k8s_objects(kind: str | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object under deploy/k8s (of one kind, if given)."""
    objects = [doc for path in sorted(K8S.glob("*.yaml")) for doc in load_yaml(path)]
    return [o for o in objects if kind is None or o["kind"] == kind]


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) for every Deployment and Job."""
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in k8s_objects()
        if o["kind"] in ("Deployment", "Job")
    ]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of every stage, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        pending = pending[:-1] + line if pending.endswith("\\") else line
        if pending.endswith("\\") or not pending.strip():
            continue
        word, _, rest = pending.strip().partition(" ")
        instructions.append((word.upper(), rest.strip()))
        pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the image that ships (from the last FROM)."""
    instructions = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def docker_argv(arguments: str) -> list[str]:
    """A CMD/ENTRYPOINT argument list, exec form (JSON) or shell form."""
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def image_command() -> list[str]:
    """What the image runs when nothing overrides it (ENTRYPOINT + CMD)."""
    final = dict(final_stage())
    entrypoint = docker_argv(final["ENTRYPOINT"]) if "ENTRYPOINT" in final else []
    return entrypoint + (docker_argv(final["CMD"]) if "CMD" in final else [])


def container_argv(container: dict[str, Any]) -> list[str]:
    """What a container runs: its command (else the image's) and its args."""
    return container.get("command", image_command()) + container.get("args", [])


def procfile() -> dict[str, str]:
    """Process type → command line."""
    lines = (DEPLOY / "Procfile").read_text().splitlines()
    pairs = [line.split(":", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {name.strip(): command.strip() for name, command in pairs}


def unit_files() -> list[Path]:
    """Every systemd unit under deploy/systemd."""
    return sorted(p for p in SYSTEMD.iterdir() if p.suffix in (".service", ".target"))


def read_unit(path: Path) -> configparser.ConfigParser:
    """One unit file as sections of (case-preserved) keys."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(), source=str(path))
    return parser


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an environment file."""
    pairs = [line.split("=", 1) for line in path.read_text().splitlines()]
    return {k: v for k, v in (p for p in pairs if len(p) == 2) if not k.startswith("#")}


# ---- the commands each file runs -----------------------------------------------------------


def is_verihook_image(spec: dict[str, Any]) -> bool:
    """A Compose service or Kubernetes container running our image."""
    build = spec.get("build") or {}
    return "verihook" in str(spec.get("image", "")) or "Dockerfile" in str(build)


def deploy_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) for every command of ours that a deployment file starts."""
    found = [("Dockerfile CMD", image_command())]
    for name, service in compose_services().items():
        if is_verihook_image(service):
            command = service.get("command", image_command())
            found.append(
                (f"compose {name}", shlex.split(command) if isinstance(command, str) else command)
            )
    for workload, spec in pod_specs():
        for container in spec.get("initContainers", []) + spec["containers"]:
            if "verihook" in container["image"]:
                found.append((f"k8s {workload}/{container['name']}", container_argv(container)))
    for name, command in procfile().items():
        found.append((f"Procfile {name}", shlex.split(command.replace("$PORT", "8000"))))
    for path in unit_files():
        for key, value in read_unit(path)["Service"].items() if path.suffix == ".service" else ():
            if key.startswith("Exec"):
                found.append((f"{path.name} {key}", shlex.split(value.lstrip("-@+!:"))))
    return found


def resolve(argv: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """The click command a `verihook …` argv reaches, its path, and the arguments left for it."""
    assert Path(argv[0]).name == "verihook", f"{argv!r} does not run verihook"
    command: click.Command = cli
    path, rest = [], argv[1:]
    while isinstance(command, click.Group):
        found = command.get_command(click.Context(command), rest[0]) if rest else None
        assert found is not None, f"{' '.join(['verihook', *path])} has no subcommand {rest[:1]!r}"
        path.append(rest.pop(0))
        command = found
    return command, path, rest


@pytest.mark.parametrize(
    ("where", "argv"), [pytest.param(where, argv, id=where) for where, argv in deploy_commands()]
)
def test_every_command_exists_in_the_cli(where: str, argv: list[str]) -> None:
    command, path, rest = resolve(argv)
    result = CliRunner().invoke(cli, [*path, *rest, "--help"])
    assert result.exit_code == 0, f"{where}: {argv!r}\n{result.output}"
    with command.make_context(path[-1], list(rest)):  # values parse: types, required args
        pass


def test_every_role_is_deployed_everywhere() -> None:
    commands = [(where, resolve(argv)[1]) for where, argv in deploy_commands()]
    for source in ("compose", "k8s", "Procfile", "verihook-"):
        paths = {tuple(path) for where, path in commands if where.startswith(source)}
        assert {("db", "upgrade"), ("web",), ("worker",), ("scheduler",)} <= paths, source


# ---- files parse ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    assert load_yaml(path)


def test_k8s_objects_are_namespace_agnostic_and_complete() -> None:
    for obj in k8s_objects():
        assert obj["apiVersion"] and obj["kind"], obj
        if obj["kind"] != "Kustomization":
            assert obj["metadata"]["name"] and "namespace" not in obj["metadata"], obj
    kustomization = k8s_objects("Kustomization")[0]
    assert all((K8S / name).is_file() for name in kustomization["resources"])
    assert "secret.example.yaml" not in kustomization["resources"]


def test_unit_files_parse() -> None:
    assert {p.name for p in unit_files()} >= {
        "verihook-web.service",
        "verihook-worker@.service",
        "verihook-scheduler.service",
        "verihook-migrate.service",
    }
    for path in unit_files():
        assert read_unit(path).has_section("Unit"), path


# ---- Kubernetes ----------------------------------------------------------------------------


def web_deployment() -> dict[str, Any]:
    """The Deployment whose container runs `verihook web`."""
    (web,) = [
        d
        for d in k8s_objects("Deployment")
        if resolve(container_argv(d["spec"]["template"]["spec"]["containers"][0]))[1] == ["web"]
    ]
    return web


def verihook_web_container() -> dict[str, Any]:
    """The web pods' container that runs `verihook web` (beside it: the nginx sidecar)."""
    (container,) = [
        c
        for c in web_deployment()["spec"]["template"]["spec"]["containers"]
        if "verihook" in c["image"]
    ]
    return container


def test_web_probes_hit_readyz_and_healthz_on_the_served_port() -> None:
    web = web_deployment()
    container = verihook_web_container()
    (port,) = container["ports"]
    bind = container["args"][container["args"].index("--bind") + 1]
    assert int(bind.rsplit(":", 1)[1]) == port["containerPort"]
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        http = container[probe]["httpGet"]
        assert http["path"] == path
        assert http["port"] in (port["name"], port["containerPort"])
    assert web["spec"]["replicas"] >= 2


@pytest.mark.parametrize("role", ["worker", "scheduler"])
def test_worker_and_scheduler_liveness_hits_their_health_port(role: str) -> None:
    (deployment,) = [
        d
        for d in k8s_objects("Deployment")
        if resolve(container_argv(d["spec"]["template"]["spec"]["containers"][0]))[1] == [role]
    ]
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    (port,) = container["ports"]
    env = {item["name"]: item["value"] for item in container.get("env", [])}
    assert int(env["VERIHOOK_HEALTH_BIND"].rsplit(":", 1)[1]) == port["containerPort"]
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and probe["port"] in (port["name"], port["containerPort"])
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port["containerPort"])
    # a live but idle worker beats at least every 45 s; the probe must tolerate that
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60


def test_every_container_requests_resources() -> None:
    for workload, spec in pod_specs():
        for container in spec.get("initContainers", []) + spec["containers"]:
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), workload
            assert "memory" in resources.get("limits", {}), workload


def test_pods_run_as_non_root_with_the_image_uid() -> None:
    uid = dict(final_stage())["USER"].split(":")[0]
    for workload, spec in pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True, workload
        assert str(spec["securityContext"]["runAsUser"]) == uid, workload


def test_selectors_pick_the_right_pods() -> None:
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in k8s_objects("Deployment")
    }
    for deployment in k8s_objects("Deployment"):
        labels = pods[deployment["metadata"]["name"]]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (pdb,) = k8s_objects("PodDisruptionBudget")
    (service,) = k8s_objects("Service")
    for selector in (pdb["spec"]["selector"]["matchLabels"], service["spec"]["selector"]):
        chosen = {name for name, labels in pods.items() if selector.items() <= labels.items()}
        assert chosen == {web_deployment()["metadata"]["name"]}, selector
    assert pdb["spec"]["minAvailable"] < web_deployment()["spec"]["replicas"]


def test_pods_read_the_configmap_and_secret_that_exist() -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in k8s_objects() if "metadata" in o}
    config_maps = {o["metadata"]["name"]: o for o in k8s_objects("ConfigMap")}
    for workload, spec in pod_specs():
        for container in spec["containers"]:
            if "verihook" not in container["image"]:
                continue
            for source in container["envFrom"]:
                ((kind, ref),) = source.items()
                wanted = "ConfigMap" if kind == "configMapRef" else "Secret"
                assert (wanted, ref["name"]) in names, workload
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                data = config_maps[volume["configMap"]["name"]]["data"]
                assert {i["key"] for i in volume["configMap"].get("items", [])} <= set(data)


def test_the_secret_template_holds_only_placeholders() -> None:
    (secret,) = k8s_objects("Secret")
    assert "data" not in secret
    for key, value in secret["stringData"].items():
        assert PLACEHOLDER in value, key


# ---- Docker and Compose --------------------------------------------------------------------


def test_dockerfile_is_slim_non_root_and_secret_free() -> None:
    final = final_stage()
    words = dict(final)
    assert words["FROM"].startswith("python:3.11-slim")
    assert words["USER"].split(":")[0] not in ("root", "0")
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for w, a in final if w == "ENV")))
    assert env["VERIHOOK_ENV"] == "production"
    assert any(env["PROMETHEUS_MULTIPROC_DIR"] in a for w, a in final if w == "RUN")
    declared = [re.findall(r"\w+", a) for w, a in dockerfile() if w in ("ENV", "ARG")]
    assert not [n for names in declared for n in names if re.search("SECRET|TOKEN|PASS|KEYS", n)]
    assert "/healthz" in words["HEALTHCHECK"]
    assert words["EXPOSE"] == image_command()[-1].rsplit(":", 1)[1]


def test_dockerfile_copies_only_sources_the_context_keeps() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    for word, arguments in dockerfile():
        if word == "COPY" and not arguments.startswith("--from"):
            for source in arguments.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert f"!{source}" in ignore or f"!{source}/**" in ignore, source


def test_compose_redis_keeps_an_append_only_file() -> None:
    command = compose_services()["redis"]["command"]
    argv = shlex.split(command) if isinstance(command, str) else command
    assert argv[argv.index("--appendonly") + 1] == "yes"


def test_compose_runs_migrations_once_before_everything_else() -> None:
    services = compose_services()
    assert resolve(services["migrate"]["command"])[1] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name, service in services.items():
        if is_verihook_image(service) and name != "migrate" and "profiles" not in service:
            assert service["depends_on"]["migrate"] == {
                "condition": "service_completed_successfully"
            }, name
    assert services["worker"]["deploy"]["replicas"] == 2
    simulators = [s for s in services.values() if "simulate" in s.get("command", [])]
    assert len(simulators) == 5 and all(s["profiles"] == ["simulators"] for s in simulators)
    # they reach the receiver at 127.0.0.1:8000 in its network namespace
    assert all(s["network_mode"] == services["web"]["network_mode"] for s in simulators)


# ---- the buffering proxy (deploy/nginx/verihook.conf) ------------------------------------

NGINX = DEPLOY / "nginx" / "verihook.conf"


def nginx_directives(block: str | None = None) -> dict[str, list[str]]:
    """`name → arguments` of the one-line directives of deploy/nginx/verihook.conf (comments
    dropped), in the `upstream`/`server`/`location /` block named, or in all of them."""
    text = re.sub(r"#[^\n]*", "", NGINX.read_text())
    if block is not None:
        start = text.index(block + " {")
        depth, end = 0, start
        for end in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0 and text[end] == "}":
                break
        text = text[start + len(block) + 2 : end]
    found = re.findall(r"^\s*([a-z_]+)\s+([^;{}\n]*);", text, flags=re.MULTILINE)
    return {name: shlex.split(arguments) for name, arguments in found}


def nginx_upstream() -> tuple[str, int]:
    """Where the proxy sends requests: (host, port) of the upstream's one server."""
    host, port = nginx_directives("upstream verihook_web")["server"][0].rsplit(":", 1)
    return host, int(port)


def nginx_listen_port() -> int:
    return int(nginx_directives("server")["listen"][0])


def seconds(value: str) -> float:
    """An nginx time ("10s", "1m") in seconds."""
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", value).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[unit]


def gunicorn_setting(name: str) -> int:
    """A plain number set in receiver/gunicorn_conf.py (read, not imported: it has effects)."""
    text = (ROOT / "receiver" / "gunicorn_conf.py").read_text()
    return int(re.search(rf"^{name} = (\d+)$", text, flags=re.MULTILINE).group(1))  # type: ignore[union-attr]


def test_nginx_buffers_whole_requests_within_verihooks_limits() -> None:
    server = nginx_directives("server")
    location = nginx_directives("location /")
    limits = Settings()
    assert location["proxy_request_buffering"] == ["on"]
    assert location["proxy_buffering"] == ["on"]
    assert location["proxy_pass"] == ["http://verihook_web"]
    # the same body limit as verihook's default, and bodies up to it kept in memory
    size = {"k": 1024, "m": 1024 * 1024}
    for name in ("client_max_body_size", "client_body_buffer_size"):
        number, unit = re.fullmatch(r"(\d+)([km])", server[name][0]).groups()  # type: ignore[union-attr]
        assert int(number) * size[unit] == limits.max_body_bytes, name
    # slow clients are cut no later than verihook itself would cut them
    for name in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert 0 < seconds(server[name][0]) <= limits.client_timeout, name
    assert server["reset_timedout_connection"] == ["on"]
    # an idle upstream connection is dropped by nginx before gunicorn drops it
    upstream = nginx_directives("upstream verihook_web")
    assert seconds(upstream["keepalive_timeout"][0]) < gunicorn_setting("keepalive")
    assert location["proxy_http_version"] == ["1.1"] and location["proxy_set_header"]


def test_nginx_passes_request_id_and_forwarded_headers() -> None:
    text = re.sub(r"#[^\n]*", "", NGINX.read_text())
    headers = dict(re.findall(r"proxy_set_header\s+(\S+)\s+([^;]+);", text))
    assert headers["X-Request-ID"] == "$verihook_request_id"
    assert re.search(r"map \$http_x_request_id \$verihook_request_id \{", text)
    assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
    assert headers["X-Forwarded-Proto"] == "$scheme"
    assert headers["Host"] == "$host"
    # its access log leaves out the idvapi path token and query strings, as verihook's does
    assert nginx_directives("server")["access_log"][1] == "verihook"
    log_format = text[text.index("log_format verihook") : text.index("upstream verihook_web")]
    assert "$verihook_logged_path" in log_format
    assert not re.search(r"\$(uri|request_uri|request|args|query_string)\b", log_format)


def test_the_k8s_nginx_configmap_holds_the_shipped_file() -> None:
    maps = {c["metadata"]["name"]: c for c in k8s_objects("ConfigMap")}
    config_map = maps["verihook-nginx"]
    assert config_map["data"]["verihook.conf"] == NGINX.read_text(), (
        "deploy/k8s/nginx-configmap.yaml is not a copy of deploy/nginx/verihook.conf"
    )
    assert "nginx-configmap.yaml" in k8s_objects("Kustomization")[0]["resources"]


def test_k8s_web_pods_put_the_nginx_sidecar_in_front() -> None:
    spec = web_deployment()["spec"]["template"]["spec"]
    (proxy,) = [c for c in spec["containers"] if "nginx" in c["image"]]
    (port,) = proxy["ports"]
    assert port["containerPort"] == nginx_listen_port()
    (service,) = k8s_objects("Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    args = verihook_web_container()["args"]
    host, upstream_port = nginx_upstream()
    assert host == "127.0.0.1"  # the pod's loopback, which the sidecar shares
    assert args[args.index("--bind") + 1] == f"0.0.0.0:{upstream_port}"
    mounts = {m["name"]: m["mountPath"] for m in proxy["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert mounts["nginx-conf"] == "/etc/nginx/conf.d"
    assert volumes["nginx-conf"]["configMap"]["name"] == "verihook-nginx"
    assert proxy["securityContext"]["readOnlyRootFilesystem"] is True
    assert volumes[next(n for n, path in mounts.items() if path == "/tmp")]["emptyDir"]


def test_compose_puts_the_proxy_in_front_of_the_receiver() -> None:
    services = compose_services()
    proxy, web = services["proxy"], services["web"]
    source, target, *_ = proxy["volumes"][0].split(":")
    assert (DEPLOY / source).resolve() == NGINX and target.startswith("/etc/nginx/conf.d/")
    assert proxy["ports"] == [f"8000:{nginx_listen_port()}"]
    # the receiver is in the proxy's network namespace, on the upstream address, unpublished
    assert web["network_mode"] == "service:proxy" and "ports" not in web
    assert web["command"][web["command"].index("--bind") + 1] == "{}:{}".format(*nginx_upstream())
    assert proxy["read_only"] is True


def test_systemd_web_serves_the_upstream_and_the_target_wants_nginx() -> None:
    argv = shlex.split(read_unit(SYSTEMD / "verihook-web.service")["Service"]["ExecStart"])
    assert argv[argv.index("--bind") + 1] == "{}:{}".format(*nginx_upstream())
    assert "nginx.service" in read_unit(SYSTEMD / "verihook.target")["Unit"]["Wants"].split()


def test_the_deploy_doc_explains_the_proxy() -> None:
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    assert "### The buffering proxy" in text and "slow-loris" in text
    assert "deploy/nginx/verihook.conf" in text and "VERIHOOK_CLIENT_TIMEOUT" in text


# ---- configuration names and placeholders --------------------------------------------------


def extra_names() -> set[str]:
    """VERIHOOK_ variables read outside Settings (gunicorn.conf.py, VERIHOOK_CONFIG)."""
    sources = (ROOT / "receiver" / "gunicorn_conf.py", ROOT / "receiver" / "settings.py")
    pattern = r"os\.environ\.get\(\s*\"(VERIHOOK_\w+)\""
    return {name for path in sources for name in re.findall(pattern, path.read_text())}


def is_setting(name: str) -> bool:
    """True when a VERIHOOK_ variable names a Settings field (nested with __)."""
    if name in extra_names():
        return True
    model: type[BaseModel] | None = Settings
    for part in name.removeprefix("VERIHOOK_").lower().split("__"):
        field = model.model_fields.get(part) if model else None
        if field is None:
            return False
        model = (
            field.annotation
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
            else None
        )
    return True


def named_variables() -> dict[str, set[str]]:
    """Every VERIHOOK_ name each deployment file or the deploy doc mentions, comments included."""
    files = [
        p
        for p in DEPLOY.rglob("*")
        if p.is_file() and p.name != "gunicorn.conf.py" and "__pycache__" not in p.parts
    ]
    pattern = r"\bVERIHOOK_[A-Z0-9_]*[A-Z0-9]"
    return {
        str(path.relative_to(ROOT)): set(re.findall(pattern, path.read_text()))
        for path in [*files, ROOT / "docs" / "DEPLOY.md"]
    }


def test_every_variable_is_a_real_setting() -> None:
    for source, names in named_variables().items():
        unknown = {n for n in names if not is_setting(n)}
        assert not unknown, f"{source}: {sorted(unknown)}"


def filled_in(template: dict[str, str]) -> dict[str, str]:
    """The template with every placeholder replaced by a plausible real value."""
    key = "k1:" + base64.b64encode(os.urandom(32)).decode()
    real = {
        k: key if k == "VERIHOOK_ENCRYPTION_KEYS" else v.replace(PLACEHOLDER, os.urandom(20).hex())
        for k, v in template.items()
    }
    return real | {"VERIHOOK_NOTIFY_URL": "https://backend.example.com/hooks/verihook"}


def refuses_to_start(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> bool:
    """Does production mode refuse this environment?"""
    for name in [n for n in os.environ if n.startswith("VERIHOOK_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        load_keyring(load_settings())
    except ConfigurationError:
        return True
    return False


def templates() -> dict[str, dict[str, str]]:
    """Each template's environment as a pod or a service would see it."""
    k8s = {
        k: str(v)
        for o in k8s_objects()
        if o["kind"] in ("ConfigMap", "Secret")
        for k, v in {**o.get("data", {}), **o.get("stringData", {})}.items()
    }
    return {"verihook.env.example": env_file(DEPLOY / "verihook.env.example"), "k8s": k8s}


@pytest.mark.parametrize("name", ["verihook.env.example", "k8s"])
def test_production_refuses_each_placeholder_and_accepts_real_values(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = templates()[name]
    assert template["VERIHOOK_ENV"] == "production"
    real = filled_in(template)
    assert not refuses_to_start(real, monkeypatch)
    placeholders = {k for k, v in template.items() if PLACEHOLDER in v}
    assert placeholders >= {"VERIHOOK_ENCRYPTION_KEYS", "VERIHOOK_API_TOKENS"}
    for key in placeholders - UNCHECKED_PLACEHOLDERS:
        assert refuses_to_start(real | {key: template[key]}, monkeypatch), key


# ---- systemd and Procfile ------------------------------------------------------------------


def test_units_run_hardened_as_a_dedicated_user() -> None:
    for path in unit_files():
        if path.suffix != ".service":
            continue
        service = read_unit(path)["Service"]
        assert service["User"] == "verihook", path.name
        assert service["EnvironmentFile"] == "/etc/verihook/verihook.env", path.name
        for key, value in (
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("PrivateTmp", "yes"),
        ):
            assert service[key] == value, (path.name, key)
        assert "/var/lib/verihook" in service["ReadWritePaths"].split(), path.name
        if service.get("Type") == "oneshot":
            assert path.name == "verihook-migrate.service"
        else:
            assert service["Restart"] == "on-failure", path.name
            unit = read_unit(path)["Unit"]
            assert "verihook-migrate.service" in unit["Requires"].split(), path.name
            assert "verihook-migrate.service" in unit["After"].split(), path.name
            assert (SYSTEMD / read_unit(path)["Install"]["WantedBy"]).is_file(), path.name


def test_procfile_releases_with_a_migration() -> None:
    processes = procfile()
    assert set(processes) == {"release", "web", "worker", "scheduler"}
    assert resolve(shlex.split(processes["release"]))[1] == ["db", "upgrade"]


def test_deploy_doc_names_only_files_that_exist() -> None:
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    for path in set(re.findall(r"\bdeploy/[\w./@-]*[\w@]", text)):
        copied_from_template = (ROOT / f"{path}.example").exists()
        assert (ROOT / path).exists() or copied_from_template, path
    assert "### Sizing (from bench/)" in text


# bench modules that print or profile from the others' results rather than write their own JSON
READS_RESULTS = {"report", "profile_ingest"}


def test_every_benchmark_the_docs_cite_exists_and_has_results() -> None:
    """Figures in the README come from `bench/` runs: each cited command is a real module, and
    each module `make bench` runs has written its JSON next to it."""
    readme = (ROOT / "README.md").read_text()
    cited = set(re.findall(r"python -m bench\.(\w+)", readme))
    assert {"ingest", "apply_throughput", "e2e", "reconcile", "import_memory"} <= cited
    for module in cited:
        assert (ROOT / "bench" / f"{module}.py").exists(), module
    makefile = (ROOT / "Makefile").read_text()
    for module in set(re.findall(r"-m bench\.(\w+)", makefile)):
        assert (ROOT / "bench" / f"{module}.py").exists(), module
        if module in READS_RESULTS:
            continue
        assert list((ROOT / "bench" / "results").glob(f"{module.split('_')[0]}*.json")), module


def locked_names(path: Path) -> dict[str, str]:
    """name → pinned version of a uv-compiled lock file."""
    pins = re.findall(r"^([A-Za-z0-9._-]+)==([^\s\\]+)", path.read_text(), re.MULTILINE)
    return {canonical(name): version for name, version in pins}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(specs: list[str]) -> set[str]:
    return {canonical(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0]) for spec in specs}


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements/prod.lock", ()), ("requirements/dev.lock", ("dev",))]
)
def test_lock_files_pin_every_dependency_with_hashes(lock: str, extras: tuple[str, ...]) -> None:
    """make venv, .ci/run and the Dockerfile install these exact versions: a dependency added to
    pyproject.toml without `make lock` would go unpinned (or fail to install)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = requirement_names(project["dependencies"])
    for extra in extras:
        wanted |= requirement_names(project["optional-dependencies"][extra])
    path = ROOT / lock
    pinned = locked_names(path)
    assert wanted - set(pinned) == set(), f"run `make lock`: {lock} misses them"
    blocks = re.split(r"\n(?=[A-Za-z0-9])", path.read_text())
    assert all("--hash=sha256:" in block for block in blocks if "==" in block)
    if lock.endswith("dev.lock"):  # the two agree where they overlap
        prod = locked_names(ROOT / "requirements/prod.lock")
        assert {n: v for n, v in pinned.items() if n in prod} == prod


def test_every_install_uses_the_lock_files() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r $(LOCK)" in makefile and "LOCK := requirements/dev.lock" in makefile
    assert "--require-hashes -r requirements/prod.lock" in (DEPLOY / "Dockerfile").read_text()
    assert "make test" in (ROOT / ".ci/run").read_text()  # which installs through `make venv`
