"""Turn Synthea's per-patient transaction bundles into Bulk Data NDJSON (one file per resource type).

urn:uuid references become Type/id, as a Bulk export would hold them. Lines are sorted so the output
is byte-identical for the same population.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

# A whole JSON string that is an in-bundle reference: "urn:uuid:<uuid>".
_URN = re.compile(r'"(urn:uuid:[0-9A-Fa-f-]+)"')


def _relative_references(text: str, aliases: dict[str, str]) -> str:
    return _URN.sub(lambda m: f'"{aliases.get(m.group(1), m.group(1))}"', text)


def main(src: Path, dst: Path) -> None:
    lines: dict[str, list[str]] = defaultdict(list)
    for file in sorted(src.glob("*.json")):
        bundle = json.loads(file.read_text(encoding="utf-8"))
        if bundle.get("resourceType") != "Bundle":
            continue
        aliases = {}
        for entry in bundle.get("entry", []):
            res = entry.get("resource", {})
            if entry.get("fullUrl") and res.get("id"):
                aliases[entry["fullUrl"]] = f"{res['resourceType']}/{res['id']}"
        for entry in bundle.get("entry", []):
            res = entry["resource"]
            text = json.dumps(res, separators=(",", ":"), ensure_ascii=False)
            # One pass per resource (the first version tried every fullUrl of the bundle on every resource:
            # quadratic, minutes for a few hundred all-module patients).
            text = _relative_references(text, aliases)
            lines[res["resourceType"]].append(text)
    dst.mkdir(parents=True, exist_ok=True)
    for rtype, rows in sorted(lines.items()):
        (dst / f"{rtype}.ndjson").write_text("\n".join(sorted(rows)) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
