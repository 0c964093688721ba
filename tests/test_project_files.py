"""The files a new user looks for: a LICENSE matching pyproject's license, a CHANGELOG that starts
with the current version, the README's promises about the CLI."""
import re
from pathlib import Path

import mobile_engine as me

ROOT = Path(__file__).resolve().parents[1]


def test_license_matches_pyproject():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'license = \{ text = "Apache-2.0" \}', pyproject)
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_changelog_starts_with_the_current_version():
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    assert version == me.__version__
    headings = [ln for ln in (ROOT / "CHANGELOG.md").read_text().splitlines()
                if ln.startswith("## ")]
    assert headings and headings[0].split()[1] == version
