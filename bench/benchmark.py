"""Server-mode benchmark: fhirscreen against a local HAPI FHIR server, by population size.

    python3 bench/benchmark.py --sizes 1000,10000 [--seed 42] [--repeat 3] [--profile-at 1000]

For each size: generate the population (bench/population.py, NDJSON), start HAPI FHIR JPA 8.8.0
(tests/integration/hapi_server.start_hapi) on an H2 *file* database under bench/work/, keyed by
size, seed and generator version, load it once with the ``fhirscreen load`` code path
(sources.upload.upload_path; ``loaded.json`` records when the load completed and its rate; later runs
reuse the database), then measure, each in its own process for peak RSS (``os.wait4``):

- ``fhirscreen screen --server URL`` (search mode) and ``--server --bulk``;
- the naive baseline (bench/naive.py; one search per patient per type, serially), extrapolated from a
  random sample of patients above ``--naive-sample`` people and marked so;
- the floor: the first-page URLs search mode requested (logged by the measured ``-v`` run), sent again
  with the same concurrency and headers in the plan's steps, each search's own next links followed,
  bodies streamed and discarded; a what-if floor without the Observation code filter; search mode with
  ``--page-size 1000``; for ``--bulk`` the same export with polls every 0.25 s, downloads discarded;
- file mode on the same NDJSON (bench/file_bench.py ``--child`` when present): resources/s for
  parse + evaluate, peak RSS.

Each mode's candidates (patient, status, score, criterion outcomes and evidence) are compared with
file mode's (the ``check`` column). Results: a markdown table on stdout and in
bench/results/<date>-<host>.md (+ .json), with machine facts, load averages and the command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import population  # noqa: E402  (bench/population.py)

from tests.integration.hapi_server import HapiServer, start_hapi  # noqa: E402
from tests.integration.postgres_server import PostgresServer, start_postgres  # noqa: E402

PY = sys.executable
CLI = [PY, "-m", "fhirscreen.cli"]
_SERVER_LINE = re.compile(
    r"Server: (\d+) requests \((\d+) retries\), ([\d.]+) MB received, (\d+) resources in ([\d.]+) s"
)
_READ_LINE = re.compile(r"read (\d+) resources for (\d+) patients from .* in ([\d.]+) s")
_SCREEN_LINE = re.compile(r"screened (\d+) patients of the initial population in ([\d.]+) s")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- measuring a child process -------------------------------------------------------------------


@dataclass
class Measured:
    wall: float
    rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    dnf: bool = False


def run_measured(
    cmd: Sequence[str],
    workdir: Path,
    name: str,
    env: dict[str, str] | None = None,
    limit: float | None = None,
) -> Measured:
    """Run ``cmd``; wall time and the peak RSS of that one child (``wait4``), output kept in files.
    With ``limit`` (seconds) the child is killed when it runs longer, and ``dnf`` is set."""
    out_path, err_path = workdir / f"{name}.out", workdir / f"{name}.err"
    dnf = False
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=REPO,
        )
        timer = threading.Timer(limit, proc.kill) if limit else None
        if timer is not None:
            timer.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        if timer is not None:
            timer.cancel()
            dnf = wall >= limit  # type: ignore[operator]
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = Measured(
        wall,
        usage.ru_maxrss / 1024,
        proc.returncode,
        out_path.read_text(encoding="utf-8", errors="replace"),
        err_path.read_text(encoding="utf-8", errors="replace"),
        dnf,
    )
    if dnf:
        log(f"{name}: killed after {limit:.0f} s (did not finish)")
        return result
    if result.returncode != 0:
        raise RuntimeError(f"{name}: exit code {result.returncode}: {' '.join(cmd)}\n{result.stderr[-3000:]}")
    return result


def settle(pid: int | None, limit: float = 900.0) -> None:
    """Wait until the server process is idle (under a tenth of a core over 2 s), at most ``limit`` s: a
    run killed for time leaves its searches running there, which would slow the next measurement."""
    if pid is None:
        return
    stat = Path(f"/proc/{pid}/stat")
    ticks = os.sysconf("SC_CLK_TCK")
    started = time.monotonic()

    def cpu() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    try:
        while time.monotonic() - started < limit:
            before = cpu()
            time.sleep(2)
            if cpu() - before < 0.2:
                break
    except OSError:
        return
    log(f"server idle again after {time.monotonic() - started:.0f} s")


class LoadSampler:
    """Samples the 1-minute load average every 2 s while a size is measured."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(loadavg()[0])
            self._stop.wait(2.0)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        if not self.samples:
            return "n/a"
        return f"{min(self.samples):.2f}-{max(self.samples):.2f} (mean {statistics.mean(self.samples):.2f})"


def compile_package() -> None:
    """Compile fhirscreen's bytecode (``__pycache__``) before measuring, as ``pip install`` does for an
    installed package. A checkout installed with ``pip install -e`` compiles on first import, unless
    PYTHONDONTWRITEBYTECODE is set (as on the machine these results come from): then every run compiled
    every module again, 0.2 s that no installed copy pays."""
    import compileall

    # The package the measured CLI imports (``python -m fhirscreen.cli`` from REPO), which need not be
    # the one this script's interpreter finds (an editable install of another checkout).
    compileall.compile_dir(str(REPO / "fhirscreen"), quiet=1)


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


# -- candidates and the check column -------------------------------------------------------------


def candidates(json_text: str, only: set[str] | None = None) -> dict[str, Any]:
    """patient -> (status, score, {criterion: (outcome, evidence)}) from candidates.json."""
    data = json.loads(json_text)
    out: dict[str, Any] = {}
    for p in data["patients"]:
        pid = p["patient"].removeprefix("Patient/")
        if only is not None and pid not in only:
            continue
        crit = {k: (v["outcome"], tuple(sorted(v.get("evidence") or ()))) for k, v in p["criteria"].items()}
        out[pid] = (p["status"], p["score"], crit)
    return out


def check(mine: dict[str, Any], reference: dict[str, Any]) -> str:
    if mine == reference:
        return f"= file ({len(mine)})"
    missing = sorted(set(reference) - set(mine))
    extra = sorted(set(mine) - set(reference))
    differ = sorted(p for p in set(mine) & set(reference) if mine[p] != reference[p])
    log(f"check: missing {missing[:5]}, extra {extra[:5]}, differ {differ[:5]}")
    for pid in differ[:2]:
        a, b = mine[pid], reference[pid]
        log(
            f"  {pid}: status {a[0]} vs {b[0]}; criteria differing: "
            f"{[k for k in b[2] if a[2].get(k) != b[2][k]]}"
        )
    return f"DIFF (-{len(missing)} +{len(extra)} ~{len(differ)})"


# -- the floor -----------------------------------------------------------------------------------

SEARCH_HEADERS = {"Cache-Control": "no-cache"}


def _session(pool: int) -> requests.Session:
    from fhirscreen import __version__

    session = requests.Session()
    session.headers.update(
        {
            "Accept": "application/fhir+json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": f"fhirscreen-bench/{__version__}",
        }
    )
    adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=max(2, pool))
    session.mount("http://", adapter)
    return session


_NEXT_LINK = re.compile(rb'"relation"\s*:\s*"next"\s*,\s*"url"\s*:\s*"([^"]+)"')
_HEAD_BYTES = 1 << 16  # HAPI writes Bundle.link before Bundle.entry: the next link is in the first KBs


def _discard(
    session: requests.Session, url: str, headers: dict[str, str] | None = None
) -> tuple[int, str | None]:
    """GET url, stream the body and throw it away; (bytes on the wire, the Bundle's next link or None).

    Only the head of the body is decompressed, to find ``"relation":"next"``; the rest is not decoded."""
    response = session.get(url, headers=headers, stream=True, timeout=600)
    gzipped = "gzip" in (response.headers.get("Content-Encoding") or "")
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    head = b""
    received = 0
    for chunk in response.raw.stream(1 << 16, decode_content=False):
        received += len(chunk)
        if len(head) < _HEAD_BYTES:
            head += inflate.decompress(chunk, _HEAD_BYTES) if inflate is not None else chunk
    response.close()
    if response.status_code != 200:
        raise RuntimeError(f"floor replay: HTTP {response.status_code} for {url[:120]}")
    match = _NEXT_LINK.search(head.split(b'"entry"', 1)[0])
    return received, match.group(1).decode() if match else None


def phase_of(url: str) -> str:
    """Which sequential step of the search plan a first-page URL belongs to."""
    path = url.split("/fhir", 1)[-1]
    if path.startswith("/metadata"):
        return "metadata"
    if path.startswith("/Condition?code="):
        return "population"
    if "_summary=count" in path:
        return "probe"
    if path.startswith("/Medication?"):
        return "medication"
    return "batches"


_VERBOSE_REQUEST = re.compile(r"^fhirscreen: GET (\S+) (\d{3}|\w+) \d+ ms$")


def logged_phases(stderr: str) -> list[list[list[str]]]:
    """The first-page URLs of a ``-v`` run (each search once: a retried request is logged twice), in the
    plan's sequential steps. Next pages are left out: the floor follows its own searches' next links.

    With ``--observations auto`` the run races both Observation plans on its first batch and abandons
    one. The floor is the server's time for the plan the run *kept*, so the abandoned side's searches
    (logged up to where they were stopped) are left out: the race's cost counts against the tool."""
    phases: list[tuple[str, list[list[str]]]] = []
    seen: set[str] = set()
    chose = _OBSERVATION_CHOICE.search(stderr)
    for line in stderr.splitlines():
        match = _VERBOSE_REQUEST.match(line.strip())
        if not match or "_getpages=" in match.group(1) or match.group(1) in seen:
            continue
        url = match.group(1)
        if chose and _abandoned(url, chose.group(1)):
            continue
        seen.add(url)
        step = phase_of(url)
        if phases and phases[-1][0] == step:
            phases[-1][1].append([url])
        else:
            phases.append((step, [[url]]))
    return [group for _step, group in phases]


# The code filter of a candidates' Observation search: code=, or combo-code= where the server has it.
_CODE_FILTER = re.compile(r"&(?:combo-)?code=[^&]*")
_OBSERVATION_CHOICE = re.compile(r"Observation searches: (by the trial's codes|all of the candidates')")


def _abandoned(url: str, choice: str) -> bool:
    """True for a candidates' Observation search of the plan the run's race did not keep."""
    path = url.split("/fhir/", 1)[-1]
    if not path.startswith("Observation?") or "patient=" not in path:
        return False
    filtered = _CODE_FILTER.search(path) is not None
    return filtered if choice.startswith("all") else not filtered


def without_observation_codes(phases: list[list[list[str]]]) -> list[list[list[str]]]:
    """The captured plan with each batch's ``Observation?patient=...&code=<LOINC chunk>`` searches replaced
    by one ``Observation?patient=...`` (every Observation of those patients)."""
    out: list[list[list[str]]] = []
    for chains in phases:
        kept: list[list[str]] = []
        added: set[str] = set()
        for chain in chains:
            first = chain[0]
            path = first.split("/fhir/", 1)[-1]
            if path.startswith("Observation?") and _CODE_FILTER.search(path):
                plain = _CODE_FILTER.sub("", first)
                if plain not in added:
                    added.add(plain)
                    kept.append([plain])
            else:
                kept.append(chain)
        out.append(kept)
    return out


def replay(phases: list[list[list[str]]], concurrency: int) -> tuple[float, int, int]:
    """Seconds, requests and bytes for the server to answer the plan's searches: step after step, the
    searches of a step on ``concurrency`` workers, each search's first page (the exact URL the plan
    sent) and then the next links the server gives *this* search, one after another, as the tool does.
    Replaying the recorded next-page URLs instead would read pages of the capture run's finished
    searches, skipping the work HAPI does while it is still loading a search's results. Bodies are
    streamed and discarded."""
    session = _session(concurrency)
    started = time.perf_counter()

    def fetch_chain(chain: list[str]) -> tuple[int, int]:
        url: str | None = chain[0]
        received = requests_sent = 0
        while url is not None:
            size, url = _discard(session, url, None if "/metadata" in url else SEARCH_HEADERS)
            received += size
            requests_sent += 1
        return received, requests_sent

    received = count = 0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for chains in phases:
            for size, sent in pool.map(fetch_chain, chains):
                received += size
                count += sent
    return time.perf_counter() - started, count, received


def bulk_floor(base: str) -> tuple[float, int, int]:
    """The server's time for ``--bulk``'s own plan: the initial-population search (every page), then the
    same candidate-only kick-off (``POST Patient/$export`` with the candidates and the same ``_type`` and
    ``_typeFilter``), polls every 0.25 s, downloads discarded, DELETE."""
    from fhirscreen.sources.base import QueryPlan
    from fhirscreen.sources.bulk import patient_kickoff_parameters
    from fhirscreen.sources.server import (
        COMBO_CODE,
        Capabilities,
        component_param,
        patient_ids_in,
        population_searches,
    )
    from fhirscreen.trial.loader import load_trial

    session = _session(2)
    plan = QueryPlan.for_trial(load_trial())
    started = time.perf_counter()
    caps = Capabilities.parse(session.get(f"{base}/metadata", timeout=120).json())
    requests_sent, received = 1, 0
    conditions: list[dict[str, Any]] = []
    for search in population_searches(plan, caps):
        url: str | None = f"{base}/{search.path(200)}"
        while url is not None:
            page = session.get(url, headers=SEARCH_HEADERS, timeout=600).json()
            requests_sent += 1
            conditions += [e["resource"] for e in page.get("entry") or () if "resource" in e]
            links = page.get("link") or ()
            url = next((link["url"] for link in links if link.get("relation") == "next"), None)
    ids = patient_ids_in(conditions)
    # As the run: combo-code:text for SLEDAI where the server searches combo-code (HAPI does).
    text = "combo-code:text" if component_param(caps) == COMBO_CODE else "code:text"
    body = patient_kickoff_parameters(plan, ids, caps=caps, sledai_text=text)
    response = session.post(
        f"{base}/Patient/$export",
        json=body,
        headers={"Prefer": "respond-async", "Content-Type": "application/fhir+json"},
        timeout=120,
    )
    if response.status_code != 202:
        raise RuntimeError(f"bulk floor: kick-off answered {response.status_code}")
    status_url = response.headers["Content-Location"]
    requests_sent, received = requests_sent + 1, received + len(response.content)
    while True:
        poll = session.get(status_url, headers={"Accept": "application/json"}, timeout=120)
        requests_sent += 1
        received += len(poll.content)
        if poll.status_code == 200:
            manifest = poll.json()
            break
        if poll.status_code != 202:
            raise RuntimeError(f"bulk floor: status poll answered {poll.status_code}")
        time.sleep(0.25)
    for item in manifest.get("output") or ():
        received += _discard(session, item["url"], {"Accept": "application/fhir+ndjson"})[0]
        requests_sent += 1
    seconds = time.perf_counter() - started
    session.delete(status_url, timeout=60)
    return seconds, requests_sent + 1, received


# -- one population on one server ----------------------------------------------------------------


@dataclass
class Row:
    mode: str
    wall: float
    requests: int | None = None
    mbytes: float | None = None
    rss_mb: float | None = None
    resources: int | None = None
    read_s: float | None = None
    screen_s: float | None = None
    check: str = ""
    note: str = ""
    extrapolated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SizeResult:
    people: int
    sle: int
    resources: int
    load: dict[str, Any]
    rows: list[Row]
    load_average: str
    hapi_start_s: float
    notes: list[str] = field(default_factory=list)


def ensure_population(work: Path, people: int, seed: int, share: float) -> tuple[Path, dict[str, Any]]:
    key = f"pop-s{seed}-n{people}-sh{share:g}-g{population.GENERATOR_VERSION}"
    out = work / key
    manifest_path = out / "population.json"
    if manifest_path.exists():
        return out, json.loads(manifest_path.read_text())
    log(f"generating {people} people (seed {seed}) in {out}")
    manifest = population.generate(people, seed, out, share)
    log(f"generated {manifest['resources']} resources in {manifest['seconds']} s")
    return out, manifest


class Database:
    """The database under HAPI for one population: an H2 file, or a kept PostgreSQL cluster."""

    def __init__(self, kind: str, db_dir: Path) -> None:
        self.kind = kind
        self.db_dir = db_dir
        self.postgres: PostgresServer | None = None

    def env(self) -> dict[str, str]:
        if self.kind == "postgres":
            self.postgres = start_postgres(folder=self.db_dir / "pg", shared_buffers="1GB")
            log(f"PostgreSQL ready on port {self.postgres.port} in {self.postgres.startup_seconds:.1f} s")
            return self.postgres.hapi_env()
        return {"HAPI_DB_URL": f"jdbc:h2:file:{self.db_dir / 'h2'}"}

    def stop(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None


def start_server(db_dir: Path, xmx: str, database: Database) -> HapiServer:
    db_dir.mkdir(parents=True, exist_ok=True)
    env = {**database.env(), "HAPI_XMX": xmx}
    log(f"starting HAPI on {env['HAPI_DB_URL']}")
    try:
        server = start_hapi(db_dir / "logs", env=env)
    except BaseException:
        database.stop()
        raise
    log(f"HAPI ready at {server.base_url} in {server.startup_seconds:.1f} s (pid {server.pid})")
    return server


def db_dir_for(args: argparse.Namespace, pop_dir: Path) -> Path:
    # H2 databases keep their old folder names, so loaded H2 databases from earlier runs are reused.
    return args.work / (f"hapi-{pop_dir.name}" if args.db == "h2" else f"hapi-{args.db}-{pop_dir.name}")


def count_of(base: str, rtype: str) -> int:
    response = requests.get(
        f"{base}/{rtype}?_summary=count",
        headers={"Accept": "application/fhir+json", "Cache-Control": "no-cache"},
        timeout=300,
    )
    response.raise_for_status()
    return int(response.json().get("total", -1))


def ensure_loaded(
    server: HapiServer, db_dir: Path, pop_dir: Path, manifest: dict[str, Any], concurrency: int
) -> dict[str, Any]:
    """Load the NDJSON once through ``fhirscreen load``'s code path; ``loaded.json`` marks completion."""
    stamp_path = db_dir / "loaded.json"
    if stamp_path.exists():
        stamp: dict[str, Any] = json.loads(stamp_path.read_text())
        stamp["reused"] = True
        return stamp
    from fhirscreen.sources.factory import SourceOptions
    from fhirscreen.sources.upload import upload_path

    log(f"loading {manifest['resources']} resources with concurrency {concurrency} (once per database)")
    options = SourceOptions(server=server.base_url, concurrency=concurrency, timeout=600.0)
    started = time.perf_counter()
    with LoadSampler() as sampler:
        summary = upload_path(options, pop_dir / "ndjson")
    seconds = time.perf_counter() - started
    patients = count_of(server.base_url, "Patient")
    if patients != manifest["people"]:
        raise RuntimeError(
            f"load incomplete: {patients} Patients on the server, {manifest['people']} expected; {summary}"
        )
    stamp = {
        "completed_at": datetime.now().isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "resources": manifest["resources"],
        "rate_per_s": round(manifest["resources"] / seconds, 1),
        "concurrency": concurrency,
        "summary": summary,
        "load_average_during": sampler.summary(),
        "reused": False,
    }
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    log(f"loaded in {seconds:.0f} s ({stamp['rate_per_s']:.0f} resources/s): {summary}")
    return stamp


def parse_cli_stats(stderr: str) -> dict[str, float]:
    stats: dict[str, float] = {}
    if m := _SERVER_LINE.search(stderr):
        stats.update(
            requests=int(m.group(1)),
            retries=int(m.group(2)),
            mbytes=float(m.group(3)),
            resources=int(m.group(4)),
            source_s=float(m.group(5)),
        )
    if m := _READ_LINE.search(stderr):
        stats.update(read_resources=int(m.group(1)), read_patients=int(m.group(2)), read_s=float(m.group(3)))
    if m := _SCREEN_LINE.search(stderr):
        stats.update(screened=int(m.group(1)), screen_s=float(m.group(2)))
    return stats


def median_run(runs: list[Measured]) -> Measured:
    return sorted(runs, key=lambda r: r.wall)[len(runs) // 2]


def load_size(args: argparse.Namespace, people: int) -> dict[str, Any]:
    pop_dir, manifest = ensure_population(args.work, people, args.seed, args.sle_share)
    db_dir = db_dir_for(args, pop_dir)
    database = Database(args.db, db_dir)
    server = start_server(db_dir, args.hapi_xmx, database)
    try:
        return ensure_loaded(server, db_dir, pop_dir, manifest, args.load_concurrency)
    finally:
        server.stop()
        database.stop()


def measure_size(args: argparse.Namespace, people: int, logs: Path) -> SizeResult:
    pop_dir, manifest = ensure_population(args.work, people, args.seed, args.sle_share)
    ndjson = pop_dir / "ndjson"
    db_dir = db_dir_for(args, pop_dir)
    database = Database(args.db, db_dir)
    runs = logs / f"n{people}"
    runs.mkdir(parents=True, exist_ok=True)
    as_of = manifest["as_of"]
    skip = set(args.skip)
    notes: list[str] = []
    repeat = args.repeat if people < 5000 else args.repeat_large

    # Reference: file mode's candidates (not timed here).
    reference_run = run_measured(
        [*CLI, "screen", "--data", str(ndjson), "--as-of", as_of, "--format", "json"], runs, "file-reference"
    )
    reference = candidates(reference_run.stdout)
    rows: list[Row] = []

    server = start_server(db_dir, args.hapi_xmx, database)
    try:
        load = ensure_loaded(server, db_dir, pop_dir, manifest, args.load_concurrency)
        base = server.base_url
        with LoadSampler() as sampler:
            # A long --timeout: a search HAPI needs more than 60 s for would otherwise time out and be
            # retried, and every retry starts the same search again on the server (see README).
            screen = [
                *CLI,
                "screen",
                "--server",
                base,
                "--as-of",
                as_of,
                "--format",
                "json",
                "--concurrency",
                str(args.concurrency),
                "--timeout",
                str(args.timeout),
            ]
            # A warm-up run first (--warmup, not measured): the server has just started, and its first
            # answers pay for JIT compilation and cold caches that a production server, running for
            # weeks, has paid long ago (the first of three runs at 10k took 1.2-1.3x the next two).
            # Then search runs and floors alternate; each floor sends the first-page URLs the run
            # before it logged (-v; one log line per request costs nothing measurable).
            for k in range(args.warmup):
                log(f"warm-up run {k + 1}/{args.warmup} (not measured)")
                warm = run_measured(screen, runs, f"warmup-{k}", limit=args.max_run_s)
                if warm.dnf:
                    settle(server.pid)
                if warm.dnf or warm.wall > args.slow_s:
                    break
            if args.warmup:
                notes.append(
                    f"measured after {args.warmup} untimed warm-up run(s) of search mode on the freshly "
                    "started server"
                )
            server_runs: list[Measured] = []
            floors: list[tuple[float, int, int]] = []
            phases: list[list[list[str]]] = []
            for k in range(repeat):
                log(f"search mode {k + 1}/{repeat}")
                measured = run_measured([*screen, "-v"], runs, f"server-{k}", limit=args.max_run_s)
                server_runs.append(measured)
                # A run killed for time has still logged the first pages it got answers to.
                phases = logged_phases(measured.stderr)
                if measured.dnf:
                    settle(server.pid)
                    break
                if measured.wall > args.slow_s and "floor" not in skip:
                    log(
                        f"search mode took {measured.wall:.0f} s (> --slow-s): no floor, page-size run "
                        "or repeat at this size"
                    )
                    skip |= {"floor", "pagesize"}
                    notes.append(
                        f"search mode took {measured.wall:.0f} s, over --slow-s {args.slow_s:.0f}: "
                        "the floor replay and the --page-size 1000 run were skipped at this size"
                    )
                    break
                if "floor" not in skip:
                    urls = sum(len(chains) for chains in phases)
                    log(f"floor replay {k + 1}/{repeat} ({urls} searches)")
                    floors.append(replay(phases, args.concurrency))
            best = median_run(server_runs)
            stats = parse_cli_stats(best.stderr)
            if best.dnf:
                server_row = Row(
                    "search (`--server`)",
                    best.wall,
                    rss_mb=best.rss_mb,
                    check="n/a",
                    note=f"DID NOT FINISH: killed after {args.max_run_s:.0f} s",
                )
                rows.append(server_row)
                skip |= (
                    {"pagesize"}
                    if any("patient=" in c[0] for p in phases for c in p)
                    else {"whatif", "pagesize"}
                )
            else:
                server_row = Row(
                    "search (`--server`)",
                    best.wall,
                    int(stats.get("requests", 0)),
                    stats.get("mbytes"),
                    max(r.rss_mb for r in server_runs),
                    int(stats.get("resources", 0)),
                    stats.get("read_s"),
                    stats.get("screen_s"),
                    check(candidates(best.stdout), reference),
                )
                server_row.extra = {
                    "walls": [round(r.wall, 2) for r in server_runs],
                    "source_s": stats.get("source_s"),
                }
                rows.append(server_row)
            if floors:
                floor = sorted(floors)[len(floors) // 2]
                floor_row = Row(
                    "floor: search URLs replayed",
                    floor[0],
                    floor[1],
                    note=f"{args.concurrency} parallel, bodies discarded; "
                    f"{floor[2] / 1e6:.2f} MB gzip on the wire",
                )
                floor_row.extra = {"walls": [round(f[0], 2) for f in floors]}
                rows.append(floor_row)

            if "whatif" not in skip:
                log("what-if floor: Observations of the candidates without a code filter")
                wf = replay(without_observation_codes(phases), args.concurrency)
                rows.append(
                    Row(
                        "what-if floor: `Observation?patient=` without `code=`",
                        wf[0],
                        wf[1],
                        note=f"not the tool's plan; {wf[2] / 1e6:.2f} MB gzip on the wire",
                    )
                )
            # "all" first: a forced "codes" run killed for time leaves its searches running on the
            # server (HAPI does not stop a search whose client went away), so whatever follows it waits
            # until the server is idle again.
            for forced in ("all", "codes"):
                if f"force-{forced}" in skip:
                    continue
                log(f"search mode with --observations {forced}")
                run = run_measured(
                    [*screen, "--observations", forced], runs, f"server-{forced}", limit=args.max_run_s
                )
                stats = parse_cli_stats(run.stderr)
                rows.append(
                    Row(
                        f"search, `--observations {forced}`",
                        run.wall,
                        int(stats.get("requests", 0)),
                        stats.get("mbytes"),
                        run.rss_mb,
                        int(stats.get("resources", 0)),
                        stats.get("read_s"),
                        stats.get("screen_s"),
                        "n/a" if run.dnf else check(candidates(run.stdout), reference),
                        note=f"DID NOT FINISH: killed after {args.max_run_s:.0f} s" if run.dnf else "",
                    )
                )
                if run.dnf:
                    settle(server.pid)
            if "pagesize" not in skip:
                log("search mode with --page-size 1000")
                big = run_measured(
                    [*screen, "--page-size", "1000"], runs, "server-page1000", limit=args.max_run_s
                )
                stats = parse_cli_stats(big.stderr)
                rows.append(
                    Row(
                        "search, `--page-size 1000`",
                        big.wall,
                        int(stats.get("requests", 0)),
                        stats.get("mbytes"),
                        big.rss_mb,
                        int(stats.get("resources", 0)),
                        stats.get("read_s"),
                        stats.get("screen_s"),
                        check(candidates(big.stdout), reference),
                    )
                )

            if "bulk" not in skip:
                log("bulk mode")
                bulk = run_measured([*screen, "--bulk"], runs, "bulk")
                stats = parse_cli_stats(bulk.stderr)
                rows.append(
                    Row(
                        "bulk (`--server --bulk`)",
                        bulk.wall,
                        int(stats.get("requests", 0)),
                        stats.get("mbytes"),
                        bulk.rss_mb,
                        int(stats.get("resources", 0)),
                        stats.get("read_s"),
                        stats.get("screen_s"),
                        check(candidates(bulk.stdout), reference),
                    )
                )
                log("bulk floor")
                bf = bulk_floor(base)
                rows.append(
                    Row(
                        "floor: bulk export, 0.25 s polls",
                        bf[0],
                        bf[1],
                        note=f"downloads discarded; {bf[2] / 1e6:.2f} MB on the wire",
                    )
                )

            if "naive" not in skip:
                rows.append(naive_row(args, base, as_of, people, runs, reference))

            if args.profile_at == people:
                profile_server(screen, runs, args.results_prefix, people)
        load_average = sampler.summary()
    finally:
        log("stopping HAPI")
        server.stop()
        database.stop()

    if "file" not in skip:
        rows.append(file_row(ndjson, as_of, manifest["resources"], runs, reference, args.repeat))
    return SizeResult(
        people,
        manifest["sle_patients"],
        manifest["resources"],
        load,
        rows,
        load_average,
        server.startup_seconds,
        notes,
    )


def naive_row(
    args: argparse.Namespace, base: str, as_of: str, people: int, runs: Path, reference: dict[str, Any]
) -> Row:
    sample = args.naive_sample if people > args.naive_sample else 0
    log(f"naive baseline ({'sample of ' + str(sample) if sample else 'every'} patients, serial)")
    cmd = [PY, str(HERE / "naive.py"), "--server", base, "--as-of", as_of]
    if sample:
        cmd += ["--sample", str(sample)]
    measured = run_measured(cmd, runs, "naive")
    stats = json.loads(measured.stderr.strip().splitlines()[-1])
    sampled = set(stats["sampled_ids"]) if stats["sampled_ids"] else None
    verdict = check(
        candidates(measured.stdout), {k: v for k, v in reference.items() if sampled is None or k in sampled}
    )
    if not sample:
        return Row(
            "naive baseline (bench/naive.py)",
            measured.wall,
            stats["requests"],
            stats["bytes"] / 1e6,
            measured.rss_mb,
            check=verdict,
            note="serial, 1 search per patient per type",
        )
    factor = stats["patients_total"] / stats["patients_fetched"]
    per_patient_requests = stats["requests"] - stats["list_requests"]
    per_patient_bytes = stats["bytes"] - stats["list_bytes"]
    fixed = measured.wall - stats["per_patient_seconds"] - stats["screen_seconds"]
    wall = fixed + (stats["per_patient_seconds"] + stats["screen_seconds"]) * factor
    row = Row(
        "naive baseline (bench/naive.py)",
        wall,
        round(stats["list_requests"] + per_patient_requests * factor),
        (stats["list_bytes"] + per_patient_bytes * factor) / 1e6,
        measured.rss_mb,
        check=f"{verdict} of sample",
        note=f"EXTRAPOLATED from {stats['patients_fetched']} random patients of {stats['patients_total']} "
        f"(measured {measured.wall:.0f} s, {stats['requests']} requests; RSS is the sample's)",
        extrapolated=True,
    )
    row.extra = stats | {"sampled_ids": None, "measured_wall": round(measured.wall, 2)}
    return row


def file_row(ndjson: Path, as_of: str, total: int, runs: Path, reference: dict[str, Any], repeat: int) -> Row:
    """File mode: bench/file_bench.py --child (parse + evaluate in one process, peak RSS), else the CLI."""
    file_bench = HERE / "file_bench.py"
    results = []
    for k in range(repeat):
        log(f"file mode {k + 1}/{repeat}")
        if file_bench.exists():
            measured = run_measured(
                [PY, str(file_bench), "--child", str(ndjson), "--as-of", as_of], runs, f"file-{k}"
            )
            child = json.loads(measured.stdout.strip().splitlines()[-1])
            seconds = float(child["parse_s"]) + float(child["evaluate_s"])
            results.append((seconds, measured, child))
        else:
            measured = run_measured(
                [*CLI, "screen", "--data", str(ndjson), "--as-of", as_of, "--format", "json"],
                runs,
                f"file-{k}",
            )
            stats = parse_cli_stats(measured.stderr)
            child = {"parse_s": stats.get("read_s", 0), "evaluate_s": stats.get("screen_s", 0)}
            results.append((float(child["parse_s"]) + float(child["evaluate_s"]), measured, child))
    seconds, measured, child = sorted(results, key=lambda r: r[0])[len(results) // 2]
    statuses = child.get("statuses")
    if statuses is not None:
        mine = {p: (s, sc) for p, s, sc in statuses}
        ref = {p: (v[0], v[1]) for p, v in reference.items()}
        verdict = "= CLI" if mine == ref else "DIFF"
    else:
        verdict = "(reference)"
    row = Row(
        "file mode (`--data` NDJSON)",
        measured.wall,
        rss_mb=measured.rss_mb,
        resources=total,
        read_s=float(child["parse_s"]),
        screen_s=float(child["evaluate_s"]),
        check=verdict,
        note=f"{total / seconds:,.0f} resources/s parse+evaluate (one core)",
    )
    row.extra = {
        "rate": total / seconds,
        "parse_evaluate_s": seconds,
        "via": "bench/file_bench.py --child" if file_bench.exists() else "fhirscreen screen --data",
    }
    return row


def profile_server(screen: list[str], runs: Path, prefix: Path, people: int) -> None:
    """pyinstrument of the whole CLI (main thread) and py-spy of all threads (CPU only), when installed."""
    text = prefix.with_name(f"{prefix.name}-profile-server-{people}.txt")
    log(f"profiling search mode with pyinstrument -> {text}")
    run_measured(
        [PY, "-m", "pyinstrument", "-r", "text", "-o", str(text), "-m", "fhirscreen.cli", *screen[3:]],
        runs,
        "profile-pyinstrument",
    )
    pyspy = shutil.which("py-spy")
    if pyspy:
        raw = runs / "pyspy-server.raw"
        out = prefix.with_name(f"{prefix.name}-pyspy-server-{people}.txt")
        log(f"profiling search mode with py-spy (all threads, CPU samples) -> {out}")
        run_measured(
            [pyspy, "record", "-r", "200", "-f", "raw", "-o", str(raw), "--", *screen], runs, "profile-pyspy"
        )
        out.write_text(summarise_pyspy(raw.read_text()), encoding="utf-8")


def summarise_pyspy(raw: str, top: int = 40) -> str:
    """Self and inclusive samples per function from py-spy's raw (collapsed stack) output."""
    self_samples: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r" \((.*?)(:\d+)?\)$", r" (\1)", f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        self_samples[frames[-1]] = self_samples.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    lines = [
        f"py-spy: {total} samples over all threads that py-spy did not class as idle (blocking socket reads "
        "and thread-pool waits still count: compare the CPU time pyinstrument reports)",
        "",
        "self %  function (file)",
    ]
    for name, n in sorted(self_samples.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * n / max(total, 1):5.1f}  {name}")
    lines += ["", "inclusive %  function (file)"]
    for name, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * n / max(total, 1):5.1f}  {name}")
    return "\n".join(lines) + "\n"


# -- the report ----------------------------------------------------------------------------------


def machine_facts(db: str = "h2") -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    from fhirscreen import __version__

    return {
        "database": "PostgreSQL" if db == "postgres" else "H2",
        "host": socket.gethostname(),
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "cpu": cpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": java[0] if java else "?",
        "hapi": "HAPI FHIR JPA 8.8.0 (tests/fhir-server), "
        + ("PostgreSQL (Debian's postgresql, private cluster)" if db == "postgres" else "H2 file database")
        + ", -XX:+UseSerialGC C1",
        "fhirscreen": f"{__version__} at {commit.stdout.strip() or '?'}{' + local changes' if dirty else ''}",
    }


def fmt(value: float | int | None, spec: str, approx: bool = False) -> str:
    if value is None:
        return ""
    return ("~" if approx else "") + format(value, spec)


NAIVE_TARGET = 10.0  # the default must beat the naive script by at least this factor in wall time...
FLOOR_TARGET = 1.3  # ...and take at most this multiple of the floor (the server's time for its plan)


def target_lines(results: list[SizeResult]) -> list[str]:
    """Met or missed, in words, for the default search mode at each size of 10,000 people or more."""
    lines = []
    for size in results:
        if size.people < 10_000:
            continue
        rows = {r.mode: r for r in size.rows}
        run = rows.get("search (`--server`)")
        naive = next((r for r in size.rows if r.mode.startswith("naive")), None)
        floor = rows.get("floor: search URLs replayed")
        if run is None or run.requests is None:
            lines.append(f"- {size.people:,} people: the default search run did not finish: targets missed")
            continue
        if naive is not None:
            ratio = naive.wall / run.wall
            verdict = "met" if ratio >= NAIVE_TARGET else "MISSED"
            approx = " (naive extrapolated from a sample)" if naive.extrapolated else ""
            lines.append(
                f"- {size.people:,} people: {ratio:.0f}x faster than naive{approx}, target "
                f">= {NAIVE_TARGET:.0f}x: {verdict}"
            )
        if floor is not None:
            ratio = run.wall / floor.wall
            verdict = "met" if ratio <= FLOOR_TARGET else "MISSED"
            lines.append(
                f"- {size.people:,} people: {ratio:.2f}x the floor (whole process / the server's time for "
                f"the kept plan), target <= {FLOOR_TARGET}x: {verdict}"
            )
    return lines


def render(
    results: list[SizeResult],
    facts: dict[str, str],
    command: str,
    started: str,
    load_before: tuple[float, float, float],
    concurrency: int,
) -> str:
    lines = [
        f"# fhirscreen server benchmark, {started}, HAPI on {facts.get('database', '?')}",
        "",
        f"Command: `{command}`",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in facts.items()),
        "",
        f"Load average before the run: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}",
        "",
        "| people | SLE | resources | mode | wall s | requests | MB received | peak RSS MB | read s"
        " | screen s |"
        " vs naive (requests / wall) | x floor (run / read) | check | notes |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for size in results:
        naive = next((r for r in size.rows if r.mode.startswith("naive")), None)
        floor = next((r for r in size.rows if r.mode.startswith("floor: search")), None)
        bulk_floor_row = next((r for r in size.rows if r.mode.startswith("floor: bulk")), None)
        for row in size.rows:
            vs_naive = ""
            if naive is not None and row.requests and row.mode.startswith(("search", "bulk")):
                vs_naive = (
                    f"{fmt(naive.requests / row.requests, '.0f', naive.extrapolated)}x / "
                    f"{fmt(naive.wall / row.wall, '.1f', naive.extrapolated)}x"
                )
            vs_floor = ""
            ref_floor = (
                floor
                if row.mode.startswith("search")
                else bulk_floor_row
                if row.mode.startswith("bulk")
                else None
            )
            if ref_floor is not None:
                source_s = row.extra.get("source_s") or row.read_s
                read_ratio = source_s / ref_floor.wall if source_s else None
                vs_floor = f"{row.wall / ref_floor.wall:.2f} / {fmt(read_ratio, '.2f')}"
            lines.append(
                f"| {size.people:,} | {size.sle} | {size.resources:,} | {row.mode} | "
                f"{fmt(row.wall, '.2f', row.extrapolated)} | {fmt(row.requests, ',', row.extrapolated)} | "
                f"{fmt(row.mbytes, '.1f', row.extrapolated)} | {fmt(row.rss_mb, '.0f')} | "
                f"{fmt(row.read_s, '.2f')} | "
                f"{fmt(row.screen_s, '.2f')} | {vs_naive} | {vs_floor} | {row.check} | {row.note} |"
            )
    for size in results:
        for note in size.notes:
            lines.append(f"- {size.people:,} people: {note}")
    lines += [
        "",
        "Cost growth (search mode; per SLE patient and per person in the population):",
        "",
        "| people | SLE | requests | req / SLE patient | req / person | wall s | ms / SLE patient |"
        " ms / person | peak RSS MB | file mode resources/s | file peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in results:
        s = next(r for r in size.rows if r.mode.startswith("search"))
        f = next((r for r in size.rows if r.mode.startswith("file")), None)
        if s.requests is None:
            lines.append(
                f"| {size.people:,} | {size.sle} | | | | > {s.wall:.0f} (not finished) | | | | "
                f"{fmt(f.extra['rate'] if f else None, ',.0f')} | {fmt(f.rss_mb if f else None, '.0f')} |"
            )
            continue
        lines.append(
            f"| {size.people:,} | {size.sle} | {s.requests} | {s.requests / max(size.sle, 1):.2f} | "
            f"{s.requests / size.people:.4f} | {s.wall:.2f} | {1000 * s.wall / max(size.sle, 1):.0f} | "
            f"{1000 * s.wall / size.people:.2f} | {s.rss_mb:.0f} | "
            f"{fmt(f.extra['rate'] if f else None, ',.0f')} | {fmt(f.rss_mb if f else None, '.0f')} |"
        )
    lines += [
        "",
        "Loading (`fhirscreen load` code path, NDJSON, 200 resources per transaction) and conditions:",
        "",
        "| people | resources | load s | resources/s | load concurrency | loaded at | HAPI start s |"
        " load average during measurement (1 min) |",
        "|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for size in results:
        ld = size.load
        reused = " (reused)" if ld.get("reused") else ""
        lines.append(
            f"| {size.people:,} | {size.resources:,} | {ld['seconds']:.0f} | {ld['rate_per_s']:.0f} | "
            f"{ld['concurrency']} | {ld['completed_at']}{reused} | {size.hapi_start_s:.0f} | "
            f"{size.load_average} |"
        )
    lines += ["", "Targets (issue 11; the default search mode, from 10,000 people up):", ""]
    lines += target_lines(results) or ["- no size of 10,000 people or more was measured"]
    lines += [
        "",
        f"Search mode and the floor ran with --concurrency {concurrency}; wall s is the median of the "
        "repeats (whole process: interpreter start, trial load, reading, screening, JSON output). "
        "`read s` = reading and grouping resources, `screen s` = evaluating the criteria, both from the "
        "CLI log. `x floor`: run = whole-process wall / floor wall; read = the source's own time "
        "(first request to last resource) / floor wall. Values marked ~ are extrapolated.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated population sizes")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sle-share", type=float, default=0.03)
    parser.add_argument(
        "--concurrency", type=int, default=4, help="fhirscreen --concurrency (and the floor's)"
    )
    parser.add_argument("--load-concurrency", type=int, default=3)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of search mode, floor and file mode (median)"
    )
    parser.add_argument(
        "--repeat-large",
        type=int,
        default=3,
        help="runs of search mode and floor from 5,000 people up (file mode keeps --repeat); one "
        "run of each at 10k moved by 1.2-2x between runs here (a cold HAPI, the machine's other load)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed search-mode runs after the server starts, before measuring (0: none)",
    )
    parser.add_argument(
        "--naive-sample",
        type=int,
        default=1000,
        help="above this many people the naive baseline runs on a random sample and is extrapolated",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated: floor,bulk,naive,file,whatif,pagesize,force-codes,force-all",
    )
    parser.add_argument(
        "--load-only", action="store_true", help="generate and load the databases, measure nothing"
    )
    parser.add_argument("--profile-at", type=int, default=0, help="profile search mode at this size")
    parser.add_argument(
        "--max-run-s",
        type=float,
        default=None,
        help="kill a search-mode run after this many seconds and report it as not finished",
    )
    parser.add_argument(
        "--slow-s",
        type=float,
        default=300.0,
        help="when one search-mode run takes longer, skip its floor, repeats and --page-size run",
    )
    parser.add_argument(
        "--timeout", type=float, default=1200.0, help="fhirscreen --timeout for the measured runs"
    )
    parser.add_argument("--hapi-xmx", default="2g")
    parser.add_argument(
        "--db",
        default="h2",
        help="the database(s) under HAPI, comma-separated: h2 (an H2 file) and/or postgres (a private "
        "PostgreSQL cluster from Debian's postgresql); 'h2,postgres' measures both in one run",
    )
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    # SIGTERM (kill PID) ends the run through the finally blocks, so the HAPI server is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(level=logging.INFO, format="[bench] %(message)s", stream=sys.stderr)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.skip = [s for s in args.skip.split(",") if s]
    if os.environ.pop("HAPI_BASE_URL", None):
        log("HAPI_BASE_URL is ignored: the benchmark starts its own server per population")

    databases = [d.strip() for d in args.db.split(",") if d.strip()]
    unknown = sorted(set(databases) - {"h2", "postgres"})
    if unknown or not databases:
        parser.error(f"--db: unknown database(s) {', '.join(unknown) or '(none)'}; use h2 and/or postgres")
    command = " ".join(shlex.quote(a) for a in ["python3", "bench/benchmark.py", *sys.argv[1:]])
    started = datetime.now()
    host = socket.gethostname().split(".")[0]
    args.results.mkdir(parents=True, exist_ok=True)
    args.results_prefix = args.results / f"{started:%Y-%m-%d}-{host}-{'-'.join(databases)}"
    logs = args.work / "logs" / f"{started:%Y%m%d-%H%M%S}"
    compile_package()
    load_before = loadavg()
    log(f"load average before: {load_before}")
    if args.load_only:
        for db in databases:
            args.db = db
            for n in args.sizes:
                load_size(args, n)
        return
    sections: list[str] = []
    raw: list[dict[str, Any]] = []
    for db in databases:
        args.db = db  # one database after the other: each has the machine to itself
        results = [measure_size(args, n, logs / db) for n in args.sizes]
        sections.append(
            render(
                results,
                machine_facts(db),
                command,
                f"{started:%Y-%m-%d %H:%M}",
                load_before,
                args.concurrency,
            )
        )
        raw += [{"db": db, **size.__dict__, "rows": [r.__dict__ for r in size.rows]} for size in results]
    text = "\n\n".join(sections)
    print(text)
    md = args.results_prefix.with_suffix(".md")
    md.write_text(text + "\n", encoding="utf-8")
    args.results_prefix.with_suffix(".json").write_text(json.dumps(raw, indent=2, default=str) + "\n")
    log(f"written {md} (logs in {logs})")


if __name__ == "__main__":
    main()
