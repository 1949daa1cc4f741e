"""The bundled trial file and samples are found in a checkout and in an installed wheel.

The wheel itself is built, installed into a fresh venv and run by .ci/run; here, the lookup order and
the build configuration that puts the data into the wheel."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhirscreen import paths

ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_uses_its_top_level_folders():
    assert paths.default_trial_file() == ROOT / "queries" / "NCT06737380.yaml"
    assert paths.sample_data_dir() == ROOT / "sample_bundles"


def test_an_installed_copy_uses_the_package_data(tmp_path, monkeypatch: pytest.MonkeyPatch):
    site = tmp_path / "site-packages"  # no pyproject.toml: not a checkout
    packaged = site / "fhirscreen" / "data"
    (packaged / "queries").mkdir(parents=True)
    (packaged / "queries" / "NCT06737380.yaml").write_text("trial: {}\n")
    (packaged / "sample_bundles").mkdir()
    (site / "queries").mkdir()  # another distribution's folder of that name must not be taken
    monkeypatch.setattr(paths, "_REPO", site)
    monkeypatch.setattr(paths, "_PACKAGED", packaged)
    assert paths.default_trial_file() == packaged / "queries" / "NCT06737380.yaml"
    assert paths.sample_data_dir() == packaged / "sample_bundles"


def test_the_build_copies_the_data_into_the_wheel_and_the_sdist_carries_it():
    setup = (ROOT / "setup.py").read_text()
    assert 'BUNDLED = ("queries", "sample_bundles")' in setup
    manifest = (ROOT / "MANIFEST.in").read_text().split("\n")
    assert "graft queries" in manifest and "graft sample_bundles" in manifest
    assert '"data/**/*"' in (ROOT / "pyproject.toml").read_text()  # package-data picks the copies up
