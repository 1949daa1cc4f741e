"""Packaging hook: the bundled trial file and sample data ship inside the wheel.

queries/ and sample_bundles/ at the top of the repository stay the source of truth (the README, the
tools and the tests use them there). Building a wheel copies them into fhirscreen/data/ of the
build, so that ``pip install .`` and pipx installs can run ``fhirscreen screen`` with no checkout
(fhirscreen/paths.py looks there). Editable installs read the top-level folders directly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("queries", "sample_bundles")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for folder in BUNDLED:
            source = ROOT / folder
            if not source.is_dir():
                raise SystemExit(f"{source}: missing; it must be part of the source tree (MANIFEST.in)")
            target = Path(self.build_lib) / "fhirscreen" / "data" / folder
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithData})
