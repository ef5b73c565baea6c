"""The MLflow UI in Debian's headless Chromium (tests/test_scale.py, tests/test_team.py)."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from tests.conftest import REPO

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=30000"]
SCREENSHOTS = REPO / "test-artifacts"

needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Chromium is not installed (Debian package `chromium`; .ci/run installs it where "
           "apt-get can)")


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("chromium"), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180)


def page_text(html: str) -> list[str]:
    """The page's visible text pieces, in order."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return [html_lib.unescape(part).strip() for part in re.split(r"<[^>]+>", html)
            if part.strip()]


def compare_page(url: str, experiment_id: str, run_ids: list[str], screenshot: str,
                 profile: Path) -> list[str]:
    """The UI's compare-runs page for these runs: saved as test-artifacts/<screenshot> and
    returned as text."""
    query = urllib.parse.urlencode({"runs": json.dumps(run_ids),
                                    "experiments": json.dumps([experiment_id])})
    page = f"{url}/#/compare-runs?{query}"
    SCREENSHOTS.mkdir(exist_ok=True)
    shot = chromium("--window-size=1400,2400", f"--screenshot={SCREENSHOTS / screenshot}", page,
                    profile=profile / "shot")
    assert (SCREENSHOTS / screenshot).stat().st_size > 20_000, shot.stderr
    dom = chromium("--window-size=1400,2400", "--dump-dom", page, profile=profile / "dom")
    return page_text(dom.stdout)
