"""The deployment refuses to be open (issue #21, items 1 and 7): QuestDB logins on the real server, what
docker-compose.yml and the Dockerfile declare, the jars on the classpath, both hashed locks, the audit's
verdict and Swagger UI served from the package.

Containers cannot run on these machines; docs/operations.md tells how to check the same on a Docker host.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import re
import shutil
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import urljoin, urlsplit

import asyncpg
import httpx
import pandas as pd
import pytest
import uvicorn
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from playwright.sync_api import sync_playwright
from pydantic import SecretStr
from questdb import QuestDBError as IngressError

from devtools import infra
from devtools.observe import wait_until
from flashes import metrics, questdb
from flashes.errors import QuestDBError
from flashes.safety import SECRET_FIELD, SECRETS
from flashes.settings import PROJECT_ROOT, Settings
from services.api.app import create_app
from services.registry import SERVICES, metrics_port


def script(path: Path) -> ModuleType:
    """A script of deploy/ as a module (deploy/ is not a package: the scripts run as they are)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


audit, healthcheck = (script(PROJECT_ROOT / "deploy" / name) for name in ("audit.py", "healthcheck.py"))

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVERS = ("kafka", "questdb", "prometheus", "grafana")
PUBLIC_PORTS = {"api": ["8000:8000"], "grafana": ["3000:3000"]}  # the two things meant to face users
REQUIRED = re.compile(r"^\$\{(?P<var>[A-Z0-9_]+):\?[^}]*\}$")  # compose refuses to start while it is unset
TEST_TOOLS = {
    "pytest",
    "pytest-asyncio",
    "playwright",
    "schemathesis",
    "aiosmtpd",
    "pytest-httpserver",
    "standardwebhooks",
    "pip-audit",
    "uv",
}


def required_variable(value: str) -> str:
    """The variable a compose value must be given from, or a failed assertion naming the value."""
    match = REQUIRED.match(str(value))
    assert match, f"{value!r} is not ${{VAR:?message}}: compose would start without it"
    return match["var"]


def lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile style lock; every requirement must be `name==version`."""
    entries: dict[str, tuple[str, list[str]]] = {}
    text = (PROJECT_ROOT / name).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", requirement)
        assert match, f"{name}: {requirement!r} is not pinned with =="
        hashes = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=sha256:")]
        entries[re.sub(r"[-_.]+", "-", match[1]).lower()] = (match[2], hashes)
    return entries


# QuestDB: the local server runs with the same logins as compose's (devtools/infra.py).


def test_questdb_http_refuses_queries_and_ilp_rows_without_the_writer_login(settings: Settings) -> None:
    exec_url = f"{settings.questdb_http_url}/exec"
    assert httpx.get(exec_url, params={"query": "DROP TABLE deadletter"}, timeout=10).status_code == 401
    wrong = httpx.get(exec_url, params={"query": "SELECT 1"}, auth=(settings.questdb_writer_user, "guess"), timeout=10)
    assert wrong.status_code == 401
    forged = 'alerts,source_id=fake alert_id="fake@1",record_number=1i,relevance=1.0'
    assert httpx.post(f"{settings.questdb_http_url}/write", content=forged, timeout=10).status_code == 401
    intruder = settings.model_copy(update={"questdb_writer_password": SecretStr("quest-guess")})
    with pytest.raises(IngressError, match="401|nauthorized"), questdb.sender(intruder) as sender:
        sender.dataframe(
            pd.DataFrame({"alert_id": ["fake@1"], "ts": [pd.Timestamp("2020-01-01", tz="UTC")]}),
            table_name="alerts",
            at="ts",
        )
        sender.flush()
    with pytest.raises(QuestDBError):
        questdb.query(intruder, "SELECT count() FROM alerts")
    assert questdb.query(settings, "SELECT count() n FROM alerts WHERE alert_id = 'fake@1'") == [{"n": 0}]
    assert questdb.healthy(settings) and not questdb.healthy(intruder)


def test_questdb_ilp_over_tcp_is_off_and_the_reader_cannot_write(settings: Settings) -> None:
    async def attempts() -> tuple[list, str]:
        reader = await asyncpg.connect(
            host=settings.questdb_host,
            port=settings.questdb_pg_port,
            user=settings.questdb_reader_user,
            password=settings.questdb_reader_password.get_secret_value(),
            database="qdb",
        )
        try:
            rows = await reader.fetch("SELECT count() n FROM deliveries")
            with pytest.raises(asyncpg.PostgresError) as refused:
                await reader.execute("DROP TABLE deliveries")
            return rows, str(refused.value)
        finally:
            await reader.close()

    rows, refusal = asyncio.run(attempts())
    assert rows and "permission" in refusal.lower()
    assert questdb.query(settings, "SELECT count() n FROM tables() WHERE table_name = 'deliveries'") == [{"n": 1}]
    # ILP over TCP takes no password in QuestDB OSS: the server does not listen for it.
    (tcp,) = questdb.query(settings, "SELECT value FROM (SHOW PARAMETERS) WHERE property_path = 'line.tcp.enabled'")
    assert tcp["value"] == "false"


# docker-compose.yml


def test_questdb_and_kafka_are_reachable_inside_the_compose_network_only() -> None:
    published = {name: svc.get("ports", []) for name, svc in COMPOSE["services"].items() if svc.get("ports")}
    for name, ports in published.items():
        for port in ports:
            if name not in PUBLIC_PORTS or port not in PUBLIC_PORTS[name]:
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert not COMPOSE["services"]["kafka"].get("ports")
    assert published["questdb"] == ["127.0.0.1:9000:9000"]


def test_questdb_logins_come_from_variables_compose_requires() -> None:
    env = COMPOSE["services"]["questdb"]["environment"]
    writer = required_variable(env["QDB_HTTP_PASSWORD"])
    assert required_variable(env["QDB_PG_PASSWORD"]) == writer == "FLASHES_QUESTDB_WRITER_PASSWORD"
    assert env["QDB_HTTP_USER"] == env["QDB_PG_USER"] == "writer"
    assert required_variable(env["QDB_PG_READONLY_PASSWORD"]) == "FLASHES_QUESTDB_READER_PASSWORD"
    assert (env["QDB_PG_READONLY_USER_ENABLED"], env["QDB_PG_READONLY_USER"]) == ("true", "reader")
    assert env["QDB_LINE_TCP_ENABLED"] == env["QDB_LINE_UDP_ENABLED"] == "false"
    assert re.fullmatch(r"\d+s", env["QDB_QUERY_TIMEOUT"])
    for name in SERVICES:  # the services that read QuestDB log in with the same variables
        service = COMPOSE["services"][name]["environment"]
        if "questdb_writer_password" in SECRETS[name]:
            assert service["FLASHES_QUESTDB_WRITER_USER"] == "writer"
            assert required_variable(service["FLASHES_QUESTDB_WRITER_PASSWORD"]) == writer
        if "questdb_reader_password" in SECRETS[name]:
            assert required_variable(service["FLASHES_QUESTDB_READER_PASSWORD"]) == "FLASHES_QUESTDB_READER_PASSWORD"


def test_each_service_is_given_only_the_secrets_it_reads() -> None:
    """The writer's password reaches the sink and relevance, the key and SMTP the API and delivery, nothing else;
    each service's Kafka password is its own."""
    writers = {
        name for name in SERVICES if "FLASHES_QUESTDB_WRITER_PASSWORD" in COMPOSE["services"][name]["environment"]
    }
    assert writers == {"sink", "relevance"}
    for name in SERVICES:
        env = COMPOSE["services"][name]["environment"]
        given = {
            "secret_key" if key == "FLASHES_SECRET_KEYS" else key.removeprefix("FLASHES_").lower()
            for key in env
            if SECRET_FIELD.search(key.removeprefix("FLASHES_").lower())
        }
        assert given == set(SECRETS[name]), name
        assert env["FLASHES_KAFKA_USER"] == name
        assert env["FLASHES_KAFKA_PASSWORD"] == f"${{FLASHES_KAFKA_{name.upper()}_PASSWORD}}"


def test_no_password_or_key_in_compose_has_a_default() -> None:
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    defaulted = re.findall(r"\$\{([A-Z0-9_]*(?:PASSWORD|SECRET_KEY))(?::?-)([^}]*)\}", text)
    assert all(value == "" for _, value in defaulted), f"defaults for secrets: {defaulted}"  # "": no login (SMTP)
    assert "quest}" not in text and "admin}" not in text


def test_grafana_needs_its_admin_password_lets_no_one_in_anonymously_and_pins_the_plugin() -> None:
    grafana = COMPOSE["services"]["grafana"]
    env = grafana["environment"]
    assert required_variable(env["GF_SECURITY_ADMIN_PASSWORD"]) == "GF_SECURITY_ADMIN_PASSWORD"
    # QuestDB OSS has a single read-only user who reads every table (deliveries too) and a viewer may send any
    # SQL through /api/ds/query: the only safe anonymous access is none.
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert not {k for k in env if k.startswith("GF_AUTH_ANONYMOUS_ORG")}
    plugins = env["GF_PLUGINS_PREINSTALL_SYNC"].split(",")
    assert all(re.fullmatch(r"[a-z0-9-]+@\d+\.\d+\.\d+", p) for p in plugins), plugins
    source = PROJECT_ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "questdb.yaml"
    (ds,) = yaml.safe_load(source.read_text())["datasources"]
    assert ds["jsonData"]["username"] == "reader" and 0 < ds["jsonData"]["queryTimeout"] <= 30


def test_everything_waits_for_what_it_needs_to_be_healthy() -> None:
    services = COMPOSE["services"]
    for name in SERVERS:
        check = services[name]["healthcheck"]["test"]
        assert check[0] == "CMD" and len(check) > 1, name
    for name in SERVICES:
        needs = services[name]["depends_on"]
        assert needs["kafka"] == needs["questdb"] == {"condition": "service_healthy"}, name
        assert needs["kafka-acls"] == {"condition": "service_completed_successfully"}, name
        assert services[name]["cap_drop"] == ["ALL"]
    assert services["grafana"]["depends_on"]["questdb"] == {"condition": "service_healthy"}
    assert services["kafka-acls"]["depends_on"]["kafka"] == {"condition": "service_healthy"}


# The image


def test_the_image_installs_the_hashed_runtime_lock_only_and_runs_as_a_user_with_a_healthcheck() -> None:
    lines = [
        line.strip()
        for line in (PROJECT_ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    installs = [line for line in lines if "pip install" in line and " -r " in line]
    assert installs == ["RUN pip install --no-cache-dir --require-hashes -r requirements.lock"]
    assert not any("requirements-test.lock" in line or "[test]" in line for line in lines)
    users = [i for i, line in enumerate(lines) if line.startswith("USER ")]
    assert users and lines[users[-1]].split()[1] not in ("root", "0", "0:0")
    run_after_user = [line for line in lines[users[-1] :] if line.startswith("RUN ")]
    assert not run_after_user and any(line.startswith("HEALTHCHECK ") and "healthcheck.py" in line for line in lines)


def test_healthcheck_answers_for_the_service_of_the_container(tmp_path: Path) -> None:
    port = infra.free_ports(len(SERVICES))
    local = Settings(metrics_port=port, api_port=infra.free_port())
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"\0".join([b"/usr/local/bin/python", b"/usr/local/bin/flashes", b"run", b"sink", b""]))
    assert healthcheck.main(cmdline, local, timeout_s=2) == 1  # nothing serves its port yet: unhealthy
    assert metrics.serve(local, metrics_port(local, "sink"))
    assert healthcheck.main(cmdline, local, timeout_s=2) == 0
    cmdline.write_bytes(b"\0".join([b"/usr/local/bin/python", b"/usr/local/bin/flashes", b"run", b"derive", b""]))
    assert healthcheck.main(cmdline, local, timeout_s=2) == 1  # another service's port answers, not derive's
    assert healthcheck.url(local, "api") == f"http://127.0.0.1:{local.api_port}/metrics"
    assert healthcheck.service_of(["flashes", "kafka-acls"]) is None


# Jars


@pytest.mark.integration  # starts a Kafka
def test_a_jar_without_a_checksum_never_reaches_the_classpath(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "jars").mkdir(parents=True)
    for jar in infra.checksummed_jars(infra.jar_dir(Settings())):
        (cache / "jars" / jar.name).symlink_to(jar)
    planted = cache / "jars" / "aaa-evil-1.0.jar"  # sorts first: on the classpath it would shadow Kafka's classes
    shutil.copy(next((cache / "jars").glob("kafka-clients-*.jar")), planted)
    local = Settings(
        var_dir=tmp_path / "var", cache_dir=cache, kafka_port=infra.free_port(), kafka_controller_port=infra.free_port()
    )
    infra.start(local, servers=("kafka",))
    try:
        pid = int((local.var_dir / "kafka.pid").read_text())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        classpath = argv[argv.index("-cp") + 1].split(":")
    finally:
        infra.stop(local, servers=("kafka",))
    assert str(planted) not in classpath
    assert sorted(Path(p).name for p in classpath) == sorted(
        name for name in infra._expected_checksums() if not name.startswith("questdb-")
    )


# Locks and the audit


def test_both_locks_pin_every_package_with_hashes_and_split_runtime_from_test_tools() -> None:
    runtime, test = lock("requirements.lock"), lock("requirements-test.lock")
    for name, (version, hashes) in {**runtime, **test}.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{name}=={version} has no hash"
    assert not set(runtime) & set(test), "a package in both locks"
    assert not TEST_TOOLS & set(runtime) and set(test) >= TEST_TOOLS
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(d) for d in project["dependencies"]]  # extras such as aiokafka[zstd] name no package
    direct = {canonicalize_name(r.name): str(r.specifier).removeprefix("==") for r in declared}
    assert all(runtime[name][0] == version for name, version in direct.items())
    installed = {name: importlib.metadata.version(name) for name in [*runtime, *test] if name != "pip"}
    assert installed == {name: v for name, (v, _) in {**runtime, **test}.items() if name != "pip"}


def test_audit_fails_only_on_a_vulnerability_with_a_fix(capsys: pytest.CaptureFixture[str]) -> None:
    report = {
        "dependencies": [
            {"name": "jinja2", "version": "3.1.5", "vulns": [{"id": "GHSA-cpwx-vrp4-4pq7", "fix_versions": ["3.1.6"]}]},
            {"name": "ecdsa", "version": "0.19.1", "vulns": [{"id": "GHSA-wj6h-64fc-37mp", "fix_versions": []}]},
            {"name": "numpy", "version": "2.4.6", "vulns": []},
            {"name": "private-wheel", "skip_reason": "Dependency not found on PyPI"},
        ]
    }
    assert audit.main(report) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "jinja2==3.1.5 GHSA-cpwx-vrp4-4pq7: fixed in 3.1.6"
    assert out[1] == "ecdsa==0.19.1 GHSA-wj6h-64fc-37mp: no fix released"
    assert out[-1] == '{"packages": 4, "fixable": 1, "unfixed": 1, "skipped": 1}'
    without_fix = {"dependencies": report["dependencies"][1:]}
    assert audit.main(without_fix) == 0


@pytest.mark.integration  # asks the package index
def test_audit_reads_both_real_locks_without_installing_anything() -> None:
    report = audit.audit()
    audited = {re.sub(r"[-_.]+", "-", d["name"]).lower() for d in report["dependencies"]}
    assert audited == set(lock("requirements.lock")) | set(lock("requirements-test.lock"))


# Swagger UI


@pytest.fixture(scope="module")
def api_url(settings: Settings) -> Iterator[str]:
    """The API (create_app) served by uvicorn on a free loopback port, in this process."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=infra.free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), "the API to start", 60, 0.1)
    assert server.started
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(30)


@pytest.mark.browser
def test_docs_load_swagger_ui_from_the_api_itself(api_url: str) -> None:
    page = httpx.get(f"{api_url}/docs", timeout=10)
    assert page.status_code == 200
    referenced = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert referenced and all(not urlsplit(ref).netloc for ref in referenced), referenced
    for ref in referenced:
        assert httpx.get(urljoin(f"{api_url}/docs", ref), timeout=10).status_code == 200, ref
    assert httpx.get(f"{api_url}/redoc", timeout=10).status_code == 404

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            hosts: set[str] = set()
            tab.on(
                "request",
                lambda request: (
                    hosts.add(urlsplit(request.url).netloc) if request.url.startswith(("http:", "https:")) else None
                ),
            )
            tab.goto(f"{api_url}/docs")
            tab.wait_for_selector(".opblock-summary-path", timeout=30_000)  # the operations, drawn by Swagger UI
            assert "/subscriptions" in tab.inner_text("#swagger-ui")
        finally:
            browser.close()
    assert hosts == {urlsplit(api_url).netloc}
