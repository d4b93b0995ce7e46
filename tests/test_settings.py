"""One settings object, built from a mapping and passed in: FLASHES_* read by `Settings.from_env`, frozen, secrets
that never print, and no code that changes the process environment or clears a settings cache."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from flashes.errors import SettingsError
from flashes.settings import POLL_EVERY_S, PROJECT_ROOT, Settings

SECRET = "hunter2-not-for-any-log"


def test_from_env_reads_the_prefixed_variables_of_the_mapping_given_with_their_types(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "FLASHES_KAFKA_PORT": "19092",
            "FLASHES_WEBHOOK_ALLOW_LOOPBACK": "true",
            "FLASHES_VAR_DIR": str(tmp_path),
            "FLASHES_SINK_BATCH_S": "0.5",
            "FLASHES_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "FLASHES_FETCH_SOURCES": '["gx339-4", "cirx-1"]',
            "FLASHES_FETCH_EVERY_S": '{"maxi": 600}',
            "FLASHES_SECRET_KEYS": '["new-key", "old-key"]',
            "KAFKA_PORT": "1",
            "FLASHES_KAFKA_ADMIN_PASSWORD": "the broker's, no setting's",
        }
    )  # neither is a setting
    assert settings.kafka_port == 19092 and settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.webhook_allow_loopback is True and settings.sink_batch_s == 0.5
    assert settings.var_dir == tmp_path and settings.catalogue_path == tmp_path / "catalogue.json"
    assert settings.kafka_security_protocol == "SASL_PLAINTEXT"
    assert settings.fetch_sources == ["gx339-4", "cirx-1"]
    assert settings.fetch_every_s == {**POLL_EVERY_S, "maxi": 600.0}  # the providers not given keep theirs
    assert [k.get_secret_value() for k in settings.secret_keys] == ["new-key", "old-key"]
    assert Settings.from_env({}) == Settings()  # nothing given: every default


def test_an_empty_optional_setting_is_unset_not_the_current_folder() -> None:
    """Compose writes `${FLASHES_HTTP_CA_FILE:-}` as an empty string; read as a path it would be ".", and the
    fetcher would refuse to start loading it as a CA file."""
    settings = Settings.from_env({"FLASHES_HTTP_CA_FILE": "", "FLASHES_SMTP_CA_FILE": "", "FLASHES_SMTP_USER": ""})
    assert settings.http_ca_file is None and settings.smtp_ca_file is None
    assert settings.smtp_user == ""  # a string setting keeps its empty value
    assert Settings.from_env({"FLASHES_HTTP_CA_FILE": "/etc/ca.pem"}).http_ca_file == Path("/etc/ca.pem")


def test_a_secret_never_prints() -> None:
    settings = Settings.from_env({"FLASHES_KAFKA_PASSWORD": SECRET, "FLASHES_SECRET_KEYS": f'["{SECRET}"]'})
    assert isinstance(settings.kafka_password, SecretStr)
    assert settings.kafka_password.get_secret_value() == SECRET
    for text in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert SECRET not in text
    secrets = [name for name, field in Settings.model_fields.items() if "password" in name or "secret" in name]
    assert all(Settings.model_fields[name].annotation in (SecretStr, list[SecretStr]) for name in secrets), secrets


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"FLASHES_KAFKA_PORT": SECRET}, "FLASHES_KAFKA_PORT: Input should be a valid integer"),
        ({"FLASHES_SMTP_SECURITY": SECRET}, "FLASHES_SMTP_SECURITY: Input should be 'starttls', 'tls' or 'none'"),
        ({"FLASHES_FETCH_SOURCES": SECRET}, 'FLASHES_FETCH_SOURCES is not JSON (e.g. ["a", "b"])'),
        (
            {"FLASHES_FETCH_EVERY_S": f'{{"maxi": "{SECRET}"}}'},
            "FLASHES_FETCH_EVERY_S item maxi: Input should be a valid number",
        ),
    ],
)
def test_a_variable_that_does_not_read_is_named_with_the_reason_never_its_value(
    env: dict[str, str], reason: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert str(refused.value).startswith(reason) and SECRET not in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__  # no chained text with the value


def test_the_command_line_refuses_a_setting_that_does_not_read_without_a_traceback() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "flashes"), "listen", "--exit-at-end"],
        env={"PATH": "/usr/bin:/bin", "FLASHES_KAFKA_PORT": SECRET},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("flashes listen: FLASHES_KAFKA_PORT: Input should be a valid integer")
    assert SECRET not in done.stderr and "Traceback" not in done.stderr


def test_settings_are_frozen_and_refuse_unknown_names() -> None:
    settings = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.kafka_port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="kafka_prot"):
        Settings(kafka_prot=1)  # type: ignore[call-arg]
    assert settings.model_copy(update={"kafka_port": 1}).kafka_port == 1 and settings.kafka_port == 9092


def _python_files() -> list[Path]:
    """Every Python file of the project (not the venv's, not the caches')."""
    files = []
    for folder, dirs, names in os.walk(PROJECT_ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("var", "__pycache__", "node_modules")]
        files += [Path(folder) / n for n in names if n.endswith(".py")]
    return files


def _environment_changes(tree: ast.AST) -> list[int]:
    """Lines that change os.environ (a method that writes, an item set or deleted), call os.putenv or
    os.unsetenv, clear a cache (`cache_clear`), or set or delete a FLASHES_* variable through monkeypatch."""

    def environ(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "environ"
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "cache_clear":
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if (
                environ(func.value)
                and func.attr in ("update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__")
                or isinstance(func.value, ast.Name)
                and func.value.id == "os"
                and func.attr in ("putenv", "unsetenv")
                or func.attr in ("setenv", "delenv")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith("FLASHES_")
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            lines += [node.lineno for t in targets if isinstance(t, ast.Subscript) and environ(t.value)]
    return lines


def test_the_checker_finds_each_way_of_changing_the_environment() -> None:
    changes = [
        "os.environ.update(x)",
        "os.environ['FLASHES_A'] = '1'",
        "del os.environ['A']",
        "os.putenv('A', '1')",
        "os.environ.pop('A')",
        "get_settings.cache_clear()",
        "monkeypatch.setenv('FLASHES_KAFKA_PORT', '1')",
    ]
    assert [len(_environment_changes(ast.parse(code))) for code in changes] == [1] * len(changes)
    reads = ["os.environ.get('A')", "{**os.environ}", "env = dict(os.environ); env['A'] = '1'", "env.update(x)"]
    assert [_environment_changes(ast.parse(code)) for code in reads] == [[]] * len(reads)


def test_no_code_changes_the_environment_or_clears_a_settings_cache() -> None:
    """Product, tests, benchmarks and tools: settings are built from a mapping and passed in; a child process is
    given an explicit environment."""
    found = {
        str(p.relative_to(PROJECT_ROOT)): lines
        for p in _python_files()
        if (lines := _environment_changes(ast.parse(p.read_text(), str(p))))
    }
    assert found == {}
