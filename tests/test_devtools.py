"""Development tooling stays out of the product: nothing the image ships imports devtools, the product's command
has no development commands, and the private stack's processes see only the variables they are given."""

from __future__ import annotations

import ast
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from devtools.__main__ import build_parser as devtools_parser
from devtools.infra import child_env, isolated_env
from devtools.stack import Stack
from flashes.settings import PROJECT_ROOT, Settings
from services.cli import build_parser


def _commands(parser: object) -> set[str]:
    (sub,) = [a for a in parser._actions if a.dest == "command"]  # type: ignore[attr-defined]
    return set(sub.choices)


def _product() -> list[Path]:
    """The packages the distribution ships (pyproject's packages.find) and the image's own scripts."""
    include = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    tops = [
        p
        for p in PROJECT_ROOT.iterdir()
        if (p / "__init__.py").exists() and any(fnmatch(p.name, pattern) for pattern in include["include"])
    ]
    return [f for top in tops for f in top.rglob("*.py")] + [PROJECT_ROOT / "deploy" / "healthcheck.py"]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_product_never_imports_devtools() -> None:
    files = _product()
    tops = {f.relative_to(PROJECT_ROOT).parts[0] for f in files}
    assert {"flashes", "schemas", "services"} <= tops and "devtools" not in tops
    importing = {
        str(f.relative_to(PROJECT_ROOT))
        for f in files
        if any(name == "devtools" or name.startswith("devtools.") for name in _imports(f))
    }
    assert importing == set()
    copied = [
        line.split()[1] for line in (PROJECT_ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")
    ]
    assert not any(c.startswith("devtools") for c in copied), copied
    # ... and every package pyproject.toml ships is copied into the image (`flashes evaluate` needs evaluation/)
    shipped = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {p.removesuffix("*") for p in shipped["include"]} <= set(copied), copied


def test_the_development_commands_are_devtools_and_the_products_command_has_none() -> None:
    assert {"infra", "stack"} & _commands(build_parser()) == set()
    assert {"run", "fetch", "backfill", "listen", "rescore"} <= _commands(build_parser())
    assert _commands(devtools_parser()) == {"infra", "stack", "fetch", "backfill"}


def test_a_child_sees_the_flashes_variables_it_is_given_and_no_others() -> None:
    given = {"FLASHES_KAFKA_PORT": "19092", "FLASHES_VAR_DIR": "/tmp/x"}
    env = child_env(given)
    assert {k: v for k, v in env.items() if k.startswith("FLASHES_")} == given
    assert "PATH" in env  # the rest of the environment is inherited
    # a shell that has FLASHES_* variables of its own (one the child is given, one it is not): none reach the child
    shell = {"PATH": "/usr/bin:/bin", "FLASHES_KAFKA_PORT": "9092", "FLASHES_SMTP_HOST": "smtp.shell.example"}
    assert child_env(given, base=shell) == {"PATH": "/usr/bin:/bin", **given}


def test_a_private_stack_has_ports_and_a_folder_of_its_own(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    stack = Stack({**env, "FLASHES_HTTP_RETRIES": "1"})
    ports = [
        stack.settings.kafka_port,
        stack.settings.kafka_controller_port,
        stack.settings.questdb_http_port,
        stack.settings.questdb_pg_port,
        stack.settings.questdb_min_http_port,
        stack.settings.api_port,
    ]
    assert len(set(ports)) == len(ports) and Settings().kafka_port not in ports
    assert stack.settings.var_dir == tmp_path and stack.logs == tmp_path / "logs"
    assert stack.settings.http_retries == 1 and stack.processes == {}
    assert stack.settings_with({"FLASHES_HTTP_RETRIES": "2"}).http_retries == 2
    assert stack.settings_with({}).kafka_port == stack.settings.kafka_port


def test_a_service_that_exited_on_its_own_is_restarted_with_the_variables_it_was_started_with(tmp_path: Path) -> None:
    stack = Stack(isolated_env(tmp_path))
    try:
        stack.start("api", env={"FLASHES_KAFKA_PORT": "not-a-port"})  # refused at once: the service exits
        stack.processes["api"].wait()
        assert stack.restart_exited() == ["api"]
        stack.processes["api"].wait(timeout=120)  # exited again (the same refused variable), not serving on a good port
        log = (stack.logs / "api.log").read_text()
        assert log.count("flashes run: FLASHES_KAFKA_PORT: Input should be a valid integer") == 2, log
        assert stack.restart_exited() == ["api"] and stack.processes["api"].wait() == 1
        stack.kill("api")
        assert stack.restart_exited() == []  # a killed service is not restarted
    finally:
        stack.stop()
