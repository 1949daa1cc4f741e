"""Regenerate fhirscreen/data/terminology/icd10cm-children.tsv: the ICD-10-CM codes under every ICD-10
prefix (``M32.1*``) of the trial files, so that server searches can ask for each code by name.

Source: the CMS/CDC ICD-10-CM tabular (public domain), as shipped by the PyPI package
``simple-icd-10-cm`` (its ``icd10cm-tabular`` XML; the release is printed in the file header).
Development tool only: ``pip install simple-icd-10-cm && python tools/icd10cm_children.py``.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhirscreen.fhir.codes import ICD10, ICD10CM  # noqa: E402
from fhirscreen.trial.loader import load_trial  # noqa: E402

OUT = ROOT / "fhirscreen" / "data" / "terminology" / "icd10cm-children.tsv"
_CODE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")


def main() -> None:
    import simple_icd_10_cm as cm  # type: ignore[import-not-found]

    prefixes: set[str] = set()
    for trial_file in sorted((ROOT / "queries").glob("*.yaml")):
        for vs in load_trial(trial_file).value_sets.values():
            for system, values in vs.prefixes.items():
                if system in (ICD10CM, ICD10):
                    prefixes.update(values)
    all_codes = sorted(c for c in cm.get_all_codes(with_dots=True) if _CODE.match(c))
    lines = [
        "# ICD-10-CM codes under the ICD-10 prefixes of fhirscreen's trial files (code, description).",
        "# Source: CMS/CDC ICD-10-CM tabular, via simple-icd-10-cm "
        f"{metadata.version('simple-icd-10-cm')}; regenerate with tools/icd10cm_children.py.",
    ]
    lines += [f"# prefix {p}" for p in sorted(prefixes)]
    bare = tuple(p.replace(".", "") for p in prefixes)
    for code in all_codes:
        if code.replace(".", "").startswith(bare):
            lines.append(f"{code}\t{cm.get_description(code)}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{OUT.relative_to(ROOT)}: {len(prefixes)} prefixes, {len(lines) - 2 - len(prefixes)} codes")


if __name__ == "__main__":
    main()
