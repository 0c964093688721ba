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


def test_readme_python_snippets_run(multistyle26_path, tmp_path, monkeypatch):
    """The README's Python blocks as a new user pastes them (at 64x64 instead of 480x640 to stay
    quick): every name they use is defined, and the calls work."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    code = "\n".join(blocks).replace("480, 640", "64, 64")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)            # noqa: S102 (our own README)
    assert scope["out"].shape == (1, 3, 64, 64)
    assert scope["plan"].steps                                   # the GraphBuilder plan
