"""File-mode benchmark: parse + evaluate throughput and peak memory of ``fhirscreen screen --data``.

Each measurement runs in its own Python process, so the peak RSS reported (``VmHWM``, else
``ru_maxrss``) belongs to that one run. The parent prints one table row per run:

    python3 bench/file_bench.py /tmp/syn60/ndjson /tmp/syn60/bundles
    python3 bench/file_bench.py /tmp/syn60 --scale 1,4,16          # whole population copied N times
    python3 bench/file_bench.py /tmp/syn60 --noncandidates 0,4,16  # N extra copies of non-SLE patients only

``--scale`` and ``--noncandidates`` take a Synthea output root holding ``bundles/`` (one transaction
bundle per patient); the copies get fresh ids (every UUID is prefixed with ``cN-``), are written as
bundles and, through ``bench/bundles_to_ndjson.py``, as Bulk NDJSON, and both are measured.

Columns: resources in the input (every resource, including the types screening skips), resources kept
(in patient records after hygiene and the prefilter; Patients and Medications not counted), patients
read, SLE patients (initial population), parse s
(read + group), evaluate s (all criteria), resources/s = input resources / (parse + evaluate), peak RSS.
Times are CPU seconds of the measuring process (``time.process_time``): one core's work, unaffected by
other load on the machine; wall-clock seconds of parse + evaluate are shown too. With ``--workers N``
(default 1) large NDJSON files are read and the candidates screened on N processes, as ``fhirscreen
screen --workers N`` does: the parse and eval columns are then wall seconds, and a last column gives
the CPU seconds of every process (this one and its children) for the whole.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# ------------------------------------------------------------------------------ one measurement


def measure(path: Path, as_of: date, workers: int = 1) -> dict[str, object]:
    """Screen ``path`` in this process (and ``workers - 1`` forked ones); timings and counts (no report
    rendering: that is not file mode)."""
    from fhirscreen.pipeline import load_population
    try:
        from fhirscreen.pipeline import evaluate_population as screen_population
    except ImportError:  # before issue 4's changes
        from fhirscreen.screening import screen_population
    from fhirscreen.sources.files import FileSource
    from fhirscreen.trial.loader import load_trial

    trial = load_trial()
    source = FileSource(path, workers) if workers > 1 else FileSource(path)
    # CPU time of this process: the figure for "one core", and robust on a shared, loaded machine.
    # With workers, wall seconds (the children's CPU is added up apart).
    clock = time.process_time if workers == 1 else time.perf_counter
    children0 = _children_cpu()
    started, wall0 = clock(), time.perf_counter()
    population = load_population(source, trial)
    parsed = clock()
    if workers > 1:
        run = screen_population(population, trial, as_of, source.describe(), workers)
    else:
        run = screen_population(population, trial, as_of, source.describe())
    evaluated, wall1 = clock(), time.perf_counter()
    cpu_all = time.process_time() + _children_cpu() - children0
    kept = sum(len(v) for r in population.records.values() for v in r.resources.values())
    rss_kb = peak_rss_kb()
    return {
        "path": str(path),
        "kept": kept,
        "patients": run.patients_read,
        "sle": len(run.patients),
        "parse_s": parsed - started,
        "evaluate_s": evaluated - parsed,
        "wall_s": wall1 - wall0,
        "cpu_all_s": cpu_all,
        "peak_rss_mb": rss_kb / 1024,
        "findings": len(run.quality.findings),
        "statuses": sorted((s.patient_id, s.status, s.score) for s in run.patients),
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kb() -> int:
    """This process's peak RSS. ``VmHWM`` starts afresh at exec; ``ru_maxrss`` would also count the
    pages the child shared with its (possibly large) parent between fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def count_resources(path: Path) -> int:
    """Every resource in the input, independently of the code under test (bundle entries, NDJSON lines)."""
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.suffix in (".json", ".ndjson")
    )
    total = 0
    for file in files:
        if file.suffix == ".ndjson":
            with file.open("rb") as fh:
                total += sum(1 for line in fh if line.strip())
        else:
            data = json.loads(file.read_bytes())
            total += len(data.get("entry") or ()) if data.get("resourceType") == "Bundle" else 1
    return total


def run_child(path: Path, as_of: date, workers: int = 1) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path), "--as-of", as_of.isoformat(),
         "--workers", str(workers)],
        check=True, capture_output=True, text=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------------ synthetic populations


def _rename(text: bytes, copy: int) -> bytes:
    """Fresh ids for copy ``copy`` (0 keeps the originals): every UUID gets a ``cN-`` prefix."""
    if copy == 0:
        return text
    prefix = f"c{copy}-".encode()
    return _UUID.sub(lambda m: prefix + m.group(0), text)


def is_candidate_bundle(file: Path) -> bool:
    """Does this bundle hold a usable Condition of the trial's initial population (an SLE diagnosis)?"""
    from fhirscreen.fhir.resources import is_usable
    from fhirscreen.trial.loader import load_trial

    population = load_trial().population
    data = json.loads(file.read_bytes())
    for entry in data.get("entry") or ():
        res = entry.get("resource") or {}
        if res.get("resourceType") == "Condition" and is_usable(res) and population.match(res.get("code")):
            return True
    return False


def _entry_ids(bundle: Path) -> set[bytes]:
    data = json.loads(bundle.read_bytes())
    return {str(e["resource"].get("id")).encode() for e in data.get("entry") or () if "resource" in e}


def make_population(root: Path, out: Path, copies: int, only_noncandidates: bool) -> Path:
    """Bundles and NDJSON under ``out``: the original population plus ``copies`` renamed copies
    (of every patient, or of the non-candidate patients only). Returns ``out``.

    ``root`` holds ``bundles/`` and ``ndjson/`` (the same population, as bench/synthea.sh writes it);
    NDJSON lines are copied with the same renaming, leaving out the resources of candidate bundles."""
    src = root / "bundles"
    bundles = out / "bundles"
    bundles.mkdir(parents=True, exist_ok=True)
    files = sorted(src.glob("*.json"))
    candidates = [f for f in files if is_candidate_bundle(f)] if only_noncandidates else []
    extra = [f for f in files if f not in candidates]
    for file in files:
        shutil.copyfile(file, bundles / file.name)
    for copy in range(1, copies + 1):
        for file in extra:
            (bundles / f"c{copy}-{file.name}").write_bytes(_rename(file.read_bytes(), copy))
    excluded: set[bytes] = set().union(*(_entry_ids(f) for f in candidates)) if candidates else set()
    ndjson = out / "ndjson"
    ndjson.mkdir(parents=True, exist_ok=True)
    leading_id = re.compile(rb'"id"\s*:\s*"([^"]+)"')
    for file in sorted((root / "ndjson").glob("*.ndjson")):
        lines = file.read_bytes().splitlines(keepends=True)
        others = [
            line for line in lines if (m := leading_id.search(line)) is None or m.group(1) not in excluded
        ]
        with (ndjson / file.name).open("wb") as fh:
            fh.writelines(lines)
            for copy in range(1, copies + 1):
                fh.writelines(_rename(line, copy) for line in others)
    return out


# ------------------------------------------------------------------------------ table

_HEADER = (
    f"{'input':<34} {'resources':>10} {'kept':>9} {'patients':>8} {'SLE':>4} "
    f"{'parse s':>8} {'eval s':>7} {'res/s':>8} {'wall s':>7} {'peak RSS MB':>11} {'CPU all s':>9}"
)


def row(label: str, total: int, m: dict[str, object]) -> str:
    parse_s = float(m["parse_s"])  # type: ignore[arg-type]
    eval_s = float(m["evaluate_s"])  # type: ignore[arg-type]
    rate = total / (parse_s + eval_s)
    return (
        f"{label:<34} {total:>10,} {m['kept']:>9,} {m['patients']:>8} {m['sle']:>4} "
        f"{parse_s:>8.2f} {eval_s:>7.2f} {rate:>8,.0f} {float(m.get('wall_s', 0)):>7.2f} "  # type: ignore[arg-type]
        f"{float(m['peak_rss_mb']):>11.0f} {float(m.get('cpu_all_s', 0)):>9.2f}"  # type: ignore[arg-type]
    )


def bench(paths: list[tuple[str, Path]], as_of: date, repeat: int, workers: int = 1) -> None:
    print(_HEADER, flush=True)
    for label, path in paths:
        total = count_resources(path)
        runs = [run_child(path, as_of, workers) for _ in range(repeat)]
        best = min(runs, key=lambda m: float(m["parse_s"]) + float(m["evaluate_s"]))  # type: ignore[arg-type]
        print(row(label, total, best), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--as-of", default="2026-06-01", type=date.fromisoformat)
    parser.add_argument("--repeat", type=int, default=1, help="runs per input; the fastest is shown")
    parser.add_argument("--scale", help="comma-separated copy factors of the whole population, e.g. 1,4,16")
    parser.add_argument("--noncandidates", help="comma-separated extra non-SLE copies, e.g. 0,4,16")
    parser.add_argument("--workdir", type=Path, help="where generated populations go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated populations")
    parser.add_argument("--workers", type=int, default=1, help="processes, as fhirscreen screen --workers")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(measure(args.paths[0], args.as_of, args.workers)))
        return
    if not (args.scale or args.noncandidates):
        bench([(str(p), p) for p in args.paths], args.as_of, args.repeat, args.workers)
        return
    root = args.paths[0]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="fhirscreen-bench-"))
    try:
        scales = [int(x) for x in (args.scale or "").split(",") if x]
        extras = [int(x) for x in (args.noncandidates or "").split(",") if x]
        plans = [(f"scale {n}x", n - 1, False) for n in scales]
        plans += [(f"+{n} non-SLE copies", n, True) for n in extras]
        targets: list[tuple[str, Path]] = []
        for label, copies, only_non in plans:
            out = work / label.replace(" ", "_").replace("+", "plus")
            if not (out / "ndjson").exists():
                print(f"generating {label} in {out} ...", file=sys.stderr, flush=True)
                make_population(root, out, copies, only_non)
            targets += [(f"{label} ndjson", out / "ndjson"), (f"{label} bundles", out / "bundles")]
        bench(targets, args.as_of, args.repeat, args.workers)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
