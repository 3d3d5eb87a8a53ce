"""``pip install ./client`` in a fresh virtual environment: the client installs on its own,
imports, and brings none of the server's dependencies with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CLIENT = Path(__file__).parents[2] / "client"
SERVER_ONLY = {
    "starlette",
    "uvicorn",
    "tortoise-orm",
    "redis",
    "structlog",
    "sse-starlette",
    "cairn",
}


def test_the_client_installs_alone_in_a_fresh_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(CLIENT)], check=True, timeout=300
    )
    imported = subprocess.run(
        [python, "-c", "import cairn_client; print(cairn_client.Client.__name__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,  # not the checkout: the installed package, not the source tree
    )
    assert imported.stdout.strip() == "Client"
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    )
    installed = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert "cairn-client" in installed and {"httpx", "msgspec"} <= installed
    assert not installed & SERVER_ONLY
