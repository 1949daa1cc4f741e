"""contrib/systemd: the service and timer a hospital installs are valid units (systemd-analyze verify,
where systemd is there), hardened, free of secrets, and call fhirscreen with options it has."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fhirscreen.cli import screen

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
INSTALLED = "/opt/fhirscreen/venv/bin/fhirscreen"


def service_text() -> str:
    return (UNITS / "fhirscreen.service").read_text()


def exec_start() -> list[str]:
    match = re.search(r"^ExecStart=(.*?)(?<!\\)$", service_text(), re.MULTILINE | re.DOTALL)
    assert match, "no ExecStart"
    return match.group(1).replace("\\\n", " ").split()


def test_the_service_is_hardened_and_reads_secrets_from_an_environment_file():
    text = service_text()
    for directive in (
        "EnvironmentFile=/etc/fhirscreen/fhirscreen.env",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/fhirscreen",
        "PrivateTmp=true",
        "NoNewPrivileges=true",
        "ProtectHome=true",
        "CapabilityBoundingSet=\n",
        "User=fhirscreen",
    ):
        assert directive in text, directive
    assert "FHIR_TOKEN=" not in text  # the token's value never sits in a unit file (world-readable)
    assert "--token-env FHIR_TOKEN" in " ".join(exec_start())


def test_the_service_calls_fhirscreen_with_options_it_has():
    argv = exec_start()
    assert argv[:2] == [INSTALLED, "screen"]
    known = {opt for param in screen.params for opt in param.opts}
    used = {a for a in argv[2:] if a.startswith("--")}
    assert used <= known, used - known
    assert "--out" in used and "--keep" in used


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (no systemd)"
)
def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    # verify checks that ExecStart's program exists: point it at this environment's fhirscreen.
    here = Path(sys.executable).parent / "fhirscreen"
    if not here.exists():
        pytest.skip(f"{here}: no fhirscreen console script next to this Python")
    for name in ("fhirscreen.service", "fhirscreen.timer"):
        (tmp_path / name).write_text((UNITS / name).read_text().replace(INSTALLED, str(here)))
    proc = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            str(tmp_path / "fhirscreen.service"),
            str(tmp_path / "fhirscreen.timer"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if str(tmp_path) in line]
    assert proc.returncode == 0 and not complaints, proc.stdout + proc.stderr
