"""Known vulnerabilities in the locked dependencies (`make audit`, part of `make test`).

Runs pip-audit over requirements.lock and requirements-test.lock and fails only on a vulnerability that has a fix
released: one without a fix is reported, since no lock change can remove it yet. The locks are complete and
hashed, so pip-audit reads them as they are (`--disable-pip`: nothing is installed or resolved) and asks PyPI's
advisory data for each pinned version. Imports nothing of the project, so it also runs before the project is
installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ("requirements.lock", "requirements-test.lock")


def audit(locks: tuple[str, ...] = LOCKS) -> dict:
    """pip-audit's JSON report of the locks; SystemExit if pip-audit could not produce one."""
    files = [arg for lock in locks for arg in ("-r", str(ROOT / lock))]
    result = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--disable-pip", "--progress-spinner", "off", "--format", "json", *files],
        capture_output=True,
        text=True,
    )
    try:  # exit 1 with a report means "found something"; no report means pip-audit itself failed
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"pip-audit produced no report (exit {result.returncode}):\n{result.stderr}") from None


def findings(report: dict) -> tuple[list[str], list[str], list[str]]:
    """Lines for vulnerabilities with a fix and those without one, and the packages pip-audit could not check
    (PyPI answered nothing for that version: an index mirror without PyPI's JSON API does so for every one)."""
    fixable, unfixed, skipped = [], [], []
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            skipped.append(dep["name"])
        for vuln in dep.get("vulns", []):
            line = f"{dep['name']}=={dep['version']} {vuln['id']}"
            if vuln.get("fix_versions"):
                fixable.append(f"{line}: fixed in {', '.join(vuln['fix_versions'])}")
            else:
                unfixed.append(f"{line}: no fix released")
    return fixable, unfixed, skipped


def main(report: dict | None = None) -> int:
    """1 when a vulnerability with a fix is found, after printing every finding and a JSON summary."""
    report = audit() if report is None else report
    fixable, unfixed, skipped = findings(report)
    for line in fixable + unfixed:
        print(line)
    if skipped:
        print(f"not checked, no advisory data from the index: {' '.join(skipped)}")
    print(
        json.dumps(
            {
                "packages": len(report.get("dependencies", [])),
                "fixable": len(fixable),
                "unfixed": len(unfixed),
                "skipped": len(skipped),
            }
        )
    )
    return 1 if fixable else 0


if __name__ == "__main__":
    sys.exit(main())
