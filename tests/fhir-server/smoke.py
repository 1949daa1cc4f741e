"""Smoke check of a running HAPI FHIR test server: every feature fhirscreen's tests rely on.

Usage: python3 tests/fhir-server/smoke.py http://127.0.0.1:PORT/fhir

Exits non-zero at the first failed check. Creates its own uniquely tagged data, so it can run
against a server that already holds data, and deletes/expunges what it made at the end.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import requests

FHIR_JSON = "application/fhir+json"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
TAG = uuid.uuid4().hex[:10]

Json = dict[str, Any]


class Smoke:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.s = requests.Session()
        self.s.headers.update({"Accept": FHIR_JSON, "Content-Type": FHIR_JSON})
        self.passed = 0

    def check(self, name: str, ok: bool, detail: object = "") -> None:
        if not ok:
            print(f"FAIL {name}: {detail}")
            sys.exit(1)
        self.passed += 1
        print(f"ok   {name}{': ' + str(detail) if detail != '' else ''}")

    def req(
        self, method: str, path: str, expect: int | tuple[int, ...] = 200, **kw: Any
    ) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base}/{path}"
        t0 = time.monotonic()
        r = self.s.request(method, url, timeout=60, **kw)
        ms = (time.monotonic() - t0) * 1000
        codes = expect if isinstance(expect, tuple) else (expect,)
        if r.status_code not in codes:
            print(f"FAIL {method} {url} -> {r.status_code} (wanted {codes}): {r.text[:800]}")
            sys.exit(1)
        print(f"     {method} {url[len(self.base) :] or '/'} -> {r.status_code} in {ms:.0f} ms")
        return r

    def search_ids(self, path: str) -> list[str]:
        bundle: Json = self.req("GET", path).json()
        return [
            e["resource"]["id"]
            for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode") != "include"
        ]


def patient(ident: str) -> Json:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:fhirscreen:smoke", "value": ident}],
        "name": [{"family": "Smoke", "given": [ident]}],
        "gender": "female",
        "birthDate": "1980-01-01",
    }


def condition(subject: str, code: str = "55464009") -> Json:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"coding": [{"system": SNOMED, "code": code, "display": "Systemic lupus erythematosus"}]},
        "subject": {"reference": subject},
    }


def observation(subject: str, value: float) -> Json:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "4548-4", "display": "Hemoglobin A1c"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    }


def transaction(entries: list[tuple[str, Json]]) -> Json:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": full_url, "resource": res, "request": {"method": "POST", "url": res["resourceType"]}}
            for full_url, res in entries
        ],
    }


def run(base: str) -> None:
    t = Smoke(base)

    r = t.req("GET", "metadata")
    t.check("metadata", r.json().get("fhirVersion") == "4.0.1", r.json().get("fhirVersion"))

    # 1. Transaction with urn:uuid fullUrls.
    pa, pb = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    bundle = transaction(
        [
            (pa, patient(f"A-{TAG}")),
            (pb, patient(f"B-{TAG}")),
            (f"urn:uuid:{uuid.uuid4()}", condition(pa)),
            (f"urn:uuid:{uuid.uuid4()}", observation(pa, 6.1)),
            (f"urn:uuid:{uuid.uuid4()}", observation(pa, 6.4)),
            (f"urn:uuid:{uuid.uuid4()}", observation(pb, 7.2)),
        ]
    )
    resp: Json = t.req("POST", "", json=bundle).json()
    locs = [e["response"]["location"] for e in resp["entry"]]
    t.check(
        "transaction urn:uuid", all(e["response"]["status"].startswith("201") for e in resp["entry"]), locs
    )
    pid_a, pid_b = locs[0].split("/")[1], locs[1].split("/")[1]
    obs = t.req("GET", locs[3].split("/_history")[0]).json()
    t.check("urn:uuid reference rewritten", obs["subject"]["reference"] == f"Patient/{pid_a}", obs["subject"])

    # 2. Token search, with a raw '|' and freshness right after a write (no search cache reuse).
    q = f"Condition?code={SNOMED}|55464009&_total=accurate&_count=1000"
    before = t.req("GET", q).json()["total"]
    t.check("Condition?code=sct|55464009 finds ours", before >= 1, before)
    t.req("POST", "Condition", expect=201, json=condition(f"Patient/{pid_b}"))
    after = t.req("GET", q).json()["total"]
    t.check("identical search sees a fresh write", after == before + 1, f"{before} -> {after}")
    enc = t.req("GET", f"Condition?code={SNOMED}%7C55464009&subject=Patient/{pid_a}").json()
    t.check("%7C-encoded pipe", len(enc.get("entry", [])) == 1, len(enc.get("entry", [])))

    # 3. Multi-value reference search, _count paging via next links.
    ids: list[str] = []
    url: str | None = f"Observation?patient={pid_a},{pid_b}&_count=1"
    pages = 0
    while url:
        page: Json = t.req("GET", url).json()
        pages += 1
        ids += [e["resource"]["id"] for e in page.get("entry", [])]
        url = next((link["url"] for link in page.get("link", []) if link["relation"] == "next"), None)
        if pages > 10:
            t.check("paging terminates", False, pages)
    t.check(
        "Observation?patient=A,B&_count=1 via next links",
        len(ids) == 3 and len(set(ids)) == 3,
        f"{pages} pages, ids {ids}",
    )
    many = [(f"urn:uuid:{uuid.uuid4()}", observation(f"Patient/{pid_b}", 7.0)) for _ in range(55)]
    t.req("POST", "", json=transaction(many))
    first: Json = t.req("GET", f"Observation?patient={pid_b}").json()
    nxt = [link["url"] for link in first.get("link", []) if link["relation"] == "next"]
    t.check("default page size is 50, with a next link", len(first["entry"]) == 50 and len(nxt) == 1)
    rest: Json = t.req("GET", nxt[0]).json()
    t.check("second page holds the rest", len(rest["entry"]) == 6, len(rest["entry"]))

    # 4. Client-assigned ids (PUT) and references to resources that do not exist yet.
    cid = f"smoke-{TAG}"
    t.req("PUT", f"Patient/{cid}", expect=201, json={**patient(f"C-{TAG}"), "id": cid})
    got = t.req("GET", f"Patient/{cid}").json()
    t.check("PUT Patient/<client id> then read", got["id"] == cid, got["id"])
    late = f"late-{TAG}"
    t.req(
        "PUT",
        f"Observation/obs-{late}",
        expect=201,
        json={**observation(f"Patient/{late}", 5.5), "id": f"obs-{late}"},
    )
    t.check("write referencing a missing Patient accepted", True)
    t.req("PUT", f"Patient/{late}", expect=(200, 201), json={**patient(f"L-{TAG}"), "id": late})
    by_ref = t.search_ids(f"Observation?patient={late}")
    t.check("reference search once the target arrives", by_ref == [f"obs-{late}"], by_ref)
    chained = t.search_ids(f"Observation?patient.identifier=urn:fhirscreen:smoke|L-{TAG}")
    t.check("chained search through the late target", chained == [f"obs-{late}"], chained)
    # Same in a transaction of PUTs, target after the referrer, as an ndjson loader would send.
    late2 = f"late2-{TAG}"
    tx = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**condition(f"Patient/{late2}"), "id": f"cond-{late2}"},
                "request": {"method": "PUT", "url": f"Condition/cond-{late2}"},
            },
            {
                "resource": {**patient(f"L2-{TAG}"), "id": late2},
                "request": {"method": "PUT", "url": f"Patient/{late2}"},
            },
        ],
    }
    t.req("POST", "", json=tx)
    got2 = t.search_ids(f"Condition?subject=Patient/{late2}&code={SNOMED}|55464009")
    t.check("PUT transaction, referrer before target", got2 == [f"cond-{late2}"], got2)
    inc = t.req("GET", f"Condition?subject={late2}&_include=Condition:subject").json()
    t.check(
        "_include the late target",
        {e["resource"]["resourceType"] for e in inc["entry"]} == {"Condition", "Patient"},
    )

    # 5. MeasureReport POST, read back, search.
    mr = {
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": "summary",
        "measure": f"http://example.org/fhirscreen/Measure/smoke-{TAG}",
        "date": "2026-11-26",
        "period": {"start": "2026-01-01", "end": "2026-12-31"},
        "group": [{"population": [{"code": {"coding": [{"code": "initial-population"}]}, "count": 2}]}],
    }
    loc = t.req("POST", "MeasureReport", expect=201, json=mr).headers["Location"]
    mr_back = t.req("GET", loc.split("/_history")[0]).json()
    t.check("MeasureReport read back", mr_back["group"][0]["population"][0]["count"] == 2)
    found = t.search_ids(f"MeasureReport?measure=http://example.org/fhirscreen/Measure/smoke-{TAG}")
    t.check("MeasureReport search", found == [mr_back["id"]], found)

    # 6. Bulk Data $export: system, Patient and Group level, _type and _typeFilter.
    grp = {
        "resourceType": "Group",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{pid_a}"}}],
    }
    gid = t.req("POST", "Group", expect=201, json=grp).json()["id"]
    type_filter = f"Condition?code={SNOMED}|55464009"
    exports = {
        "system": ("$export", {"_type": "Patient,Condition,Observation", "_typeFilter": type_filter}),
        "Patient": ("Patient/$export", {"_type": "Patient,Observation"}),
        "Group": (f"Group/{gid}/$export", {"_type": "Patient,Condition,Observation"}),
    }
    for level, (path, params) in exports.items():
        t0 = time.monotonic()
        k = t.req("GET", path, expect=202, params=params, headers={"Prefer": "respond-async"})
        poll = k.headers["Content-Location"]
        manifest: Json = {}
        polls = 0
        while time.monotonic() - t0 < 120:
            p = t.req("GET", poll, expect=(200, 202))
            polls += 1
            if p.status_code == 200:
                manifest = p.json()
                break
            time.sleep(0.5)
        took = time.monotonic() - t0
        t.check(f"$export {level}: manifest", bool(manifest), f"{took:.1f} s, {polls} polls")
        lines: dict[str, list[Json]] = {}
        for out in manifest.get("output", []):
            d = t.req("GET", out["url"], headers={"Accept": "application/fhir+ndjson"})
            lines.setdefault(out["type"], []).extend(json.loads(x) for x in d.text.splitlines() if x.strip())
        counts = {k2: len(v) for k2, v in lines.items()}
        t.check(
            f"$export {level}: ndjson",
            set(lines) <= set(params["_type"].split(",")) and "Patient" in lines,
            counts,
        )
        if level == "system":
            codes = {c["code"]["coding"][0]["code"] for c in lines.get("Condition", [])}
            t.check("$export _typeFilter applied", codes == {"55464009"}, codes)
        if level == "Group":
            pids = {p2["id"] for p2 in lines["Patient"]}
            t.check("$export Group: only the member", pids == {pid_a}, pids)
    no_prefer = t.req("GET", "$export", expect=(400, 202, 200))
    t.check(
        "$export without Prefer: respond-async is refused",
        no_prefer.status_code == 400,
        no_prefer.status_code,
    )

    # 7. Clean-up: DELETE, conditional delete with _expunge, $expunge.
    t.req("DELETE", f"Patient/{cid}")
    t.req(
        "POST",
        f"Patient/{cid}/$expunge",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "expungeDeletedResources", "valueBoolean": True}],
        },
    )
    t.req("GET", f"Patient/{cid}", expect=404)
    t.check("DELETE + $expunge by id", True)
    t.req("DELETE", f"Observation?patient={pid_a},{pid_b},{late}&_expunge=true")
    deadline = time.monotonic() + 60
    left = -1
    while time.monotonic() < deadline:
        left = t.req("GET", f"Observation?patient={pid_a},{pid_b},{late}&_summary=count").json()["total"]
        if left == 0:
            break
        time.sleep(1)
    t.check("conditional DELETE ?_expunge=true (delete-expunge job)", left == 0, left)
    print(f"\nsmoke.py: {t.passed} passed, 0 failed")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    run(sys.argv[1])
