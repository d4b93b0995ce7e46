"""Boundaries a newcomer can guess: the shared library and the contracts never reach into the services, a service
reaches only into itself, and the README's table of parts names exactly the folders the tree has."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

from flashes.settings import PROJECT_ROOT

SERVICES_DIR = PROJECT_ROOT / "services"
# They start the services, so they import them: `flashes run` and the list of services it runs.
STARTERS = {SERVICES_DIR / "cli.py", SERVICES_DIR / "registry.py"}


def _imports(path: Path) -> set[str]:
    """The absolute modules a file imports (`from services import x` counts as services.x); relative imports stay
    inside their package, so they are left out."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _project_packages() -> set[str]:
    return {p.name for p in PROJECT_ROOT.iterdir() if (p / "__init__.py").exists()}


def test_the_shared_library_and_the_contracts_never_import_the_services() -> None:
    importing = {
        str(f.relative_to(PROJECT_ROOT)): sorted(n for n in _imports(f) if n.split(".")[0] == "services")
        for top in ("flashes", "schemas")
        for f in (PROJECT_ROOT / top).rglob("*.py")
    }
    assert {f: names for f, names in importing.items() if names} == {}


def test_a_service_imports_the_shared_library_the_contracts_and_itself_only() -> None:
    packages = [p for p in sorted(SERVICES_DIR.iterdir()) if (p / "__init__.py").exists()]
    assert {p.name for p in packages} >= {"fetcher", "derive", "relevance", "alerts", "delivery", "sink", "api"}
    project = _project_packages()
    outside = {}
    for package in packages:
        allowed = {"flashes", "schemas", f"services.{package.name}"}
        for f in package.rglob("*.py"):
            names = {n for n in _imports(f) if n.split(".")[0] in project}
            wrong = sorted(n for n in names if not any(n == a or n.startswith(f"{a}.") for a in allowed))
            if wrong:
                outside[str(f.relative_to(PROJECT_ROOT))] = wrong
    assert outside == {}
    assert {f for f in SERVICES_DIR.glob("*.py") if f.name != "__init__.py"} == STARTERS


def _folders() -> set[str]:
    """The top-level folders of the tree as a clone has them (git's view: ignored folders such as var/ are not)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return {f.split("/")[0] + "/" for f in files if "/" in f and not f.startswith(".") and (PROJECT_ROOT / f).exists()}


def _parts_table() -> list[str]:
    """The paths in backticks of the `where` column of the README's table of parts."""
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text.split("\n## Parts\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("|")][2:]  # past header and rule
    return [path for row in rows for path in re.findall(r"`([^`]+)`", row[2])]


def test_the_readme_table_of_parts_names_every_folder_and_service_and_nothing_else() -> None:
    named = _parts_table()
    assert len(named) == len(set(named)), named
    assert [p for p in named if not (PROJECT_ROOT / p).exists()] == []
    assert {p for p in named if p.count("/") == 1 and p.endswith("/")} == _folders()
    services = {f"services/{p.name}/" for p in SERVICES_DIR.iterdir() if (p / "__init__.py").exists()}
    assert {p for p in named if p.startswith("services/") and p.endswith("/") and p != "services/"} == services
