"""The documentation site builds in strict mode, and the README's links lead somewhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Settings
from tests.helpers.repo import REPO_ROOT

DOCS = REPO_ROOT / "docs"
# [text](target) and ![alt](target), up to a space or the closing parenthesis
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)")
SETTING = re.compile(r"\bTORCHGATE_[A-Z0-9_]+\b")


@pytest.mark.integration
def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO_ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert (site / "index.html").is_file()
    assert (site / "performance" / "index.html").is_file(), "the generated page is in the site"
    assert not (site / "hooks").exists(), "the hook's source is not published"


def test_every_relative_link_in_the_readme_points_to_a_file() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    links = [target for target in MARKDOWN_LINK.findall(readme) if "://" not in target]
    relative = [t for t in links if not t.startswith(("#", "mailto:"))]
    assert relative, "the README links to the docs pages"
    for target in relative:
        path = (REPO_ROOT / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"README.md links to {target}, which does not exist"


def test_the_readme_links_every_page_in_the_nav() -> None:
    nav = set(re.findall(r":\s*([\w-]+\.md)\s*$", (REPO_ROOT / "mkdocs.yml").read_text(), re.M))
    linked = {Path(t).name for t in MARKDOWN_LINK.findall((REPO_ROOT / "README.md").read_text())}
    generated = {"performance.md"}  # built from bench/results/: no file on GitHub to link to
    assert nav - generated <= linked, f"pages the README does not link: {nav - generated - linked}"


def test_the_settings_the_docs_name_are_the_apps() -> None:
    fields = Settings.model_fields
    for page in DOCS.glob("*.md"):
        for name in set(SETTING.findall(page.read_text())):
            if name.startswith("TORCHGATE_TEST_"):  # read by the test suite, not the service
                continue
            assert name.removeprefix("TORCHGATE_").lower() in fields, f"{name} in {page.name}"


def test_the_configuration_page_documents_every_setting() -> None:
    page = (DOCS / "configuration.md").read_text()
    documented = {name.removeprefix("TORCHGATE_").lower() for name in SETTING.findall(page)}
    missing = set(Settings.model_fields) - documented
    assert not missing, f"document in docs/configuration.md: {sorted(missing)}"


def test_the_training_page_quotes_the_committed_manifests() -> None:
    page = (DOCS / "training.md").read_text()
    rows = {
        line.split("|")[1].split()[0].strip(","): line
        for line in page.splitlines()
        if line.startswith("| ") and line.split("|")[1].strip()
    }
    for name in ("cnn", "lstm", "gan"):
        manifest = json.loads((REPO_ROOT / "models" / f"{name}.json").read_text())
        row = rows[name]
        assert f"{manifest['parameters']:,}" in row, name
        if name == "gan":  # the independent judge's figure leads, the served cnn's beside it
            assert f"{manifest['consistency']} by the served cnn" in row
            result = manifest["independent_judge"]["consistency"]
        else:
            result = manifest["test_accuracy"]
        quoted = (f"**{result}**", f"**{result:.4f}**")  # 0.94 may be quoted as 0.9400
        assert any(text in row for text in quoted), f"{name}: the manifest says {result}"
        assert f"{manifest['epochs']} ({manifest['best_epoch']})" in row, name
