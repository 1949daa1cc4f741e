"""TEMPORARY (development only): concatenate queries/parts/*.yaml into queries/NCT06737380.yaml.

Each part has top-level ``value_sets:`` and/or ``criteria:`` sections; 00-trial.yaml also holds ``trial:``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
parts = sorted((ROOT / "queries" / "parts").glob("*.yaml"))
sections: dict[str, list[str]] = {"header": [], "trial": [], "value_sets": [], "criteria": []}
for part in parts:
    current = "header"
    for line in part.read_text().splitlines():
        m = re.match(r"^(trial|value_sets|criteria):\s*$", line)
        if m:
            current = m.group(1)
            continue
        if current == "header" and part.name != "00-trial.yaml":
            continue
        sections[current].append(line)
out = sections["header"] + ["trial:"] + sections["trial"]
out += ["value_sets:"] + sections["value_sets"] + ["criteria:"] + sections["criteria"]
(ROOT / "queries" / "NCT06737380.yaml").write_text("\n".join(out) + "\n")
print(f"assembled {len(parts)} parts", file=sys.stderr)
