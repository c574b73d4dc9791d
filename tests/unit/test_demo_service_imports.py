"""The demo app starts without the experiment model: six of them start per topology, and
pydantic's import was 0.4 s of each one's start-up (``python -X importtime``)."""

from __future__ import annotations

import subprocess
import sys

from chaos.experiment import security
from chaos.platforms.shared import demo_service


def test_the_demo_app_and_the_experiment_file_accept_the_same_header_names() -> None:
    assert demo_service.HEADER_NAME.pattern == security.HEADER_NAME.pattern


def test_the_demo_app_does_not_load_pydantic() -> None:
    code = (
        "import sys, chaos.platforms.shared.demo_service as d; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
