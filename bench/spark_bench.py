"""File mode against the Spark engine on the same Bulk NDJSON: wall time, CPU, peak memory, parity.

    python3 bench/population.py --people 50000 --out bench/work/pop-50k      # 474k resources, 233 MB
    python3 bench/spark_bench.py bench/work/pop-50k/ndjson --master 'local[2]'

Each run is a separate ``fhirscreen screen`` process (``--engine spark`` with ``PYSPARK_SUBMIT_ARGS``
naming the master). Every 0.2 s the whole process tree is sampled from /proc: the resident set of the
fhirscreen driver (Python), of the JVM (Spark driver and, in local mode, the executors) and of the
Python workers, and each process's CPU seconds. Peaks are of the sum at one sample. The two runs'
candidates.json must be byte-identical. The load average before and after each run is recorded,
because the machine may be shared. Results: a markdown table on stdout and in
``bench/results/<date>-spark.md`` (+ ``.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def _tree(root: int) -> dict[int, tuple[str, int, float]]:
    """pid -> (kind, rss bytes, cpu s) for ``root`` and its descendants."""
    parents: dict[int, int] = {}
    info: dict[int, tuple[str, int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
        except (OSError, ValueError):
            continue
        pid = int(entry)
        parents[pid] = int(fields[1])
        cpu = (int(fields[11]) + int(fields[12])) / TICK
        info[pid] = (comm, int(fields[21]) * PAGE, cpu)
    members = {root}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in members and pid not in members:
                members.add(pid)
                changed = True
    out = {}
    for pid in members:
        if pid in info:
            comm, rss, cpu = info[pid]
            kind = "driver" if pid == root else ("jvm" if comm == "java" else "workers")
            out[pid] = (kind, rss, cpu)
    return out


def measure(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    load_before = os.getloadavg()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_total = 0
    peaks: dict[str, int] = {"driver": 0, "jvm": 0, "workers": 0}
    cpu: dict[int, tuple[str, float]] = {}
    while proc.poll() is None:
        sample = _tree(proc.pid)
        by_kind: dict[str, int] = {"driver": 0, "jvm": 0, "workers": 0}
        for pid, (kind, rss, seconds) in sample.items():
            by_kind[kind] += rss
            cpu[pid] = (kind, max(seconds, cpu.get(pid, (kind, 0.0))[1]))
        peak_total = max(peak_total, sum(by_kind.values()))
        for kind, rss in by_kind.items():
            peaks[kind] = max(peaks[kind], rss)
        time.sleep(0.2)
    wall = time.perf_counter() - started
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        sys.stderr.write(stderr[-3000:])
        raise SystemExit(f"run failed with exit code {proc.returncode}: {' '.join(argv)}")
    cpu_by_kind: dict[str, float] = {}
    for kind, seconds in cpu.values():
        cpu_by_kind[kind] = cpu_by_kind.get(kind, 0.0) + seconds
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(sum(cpu_by_kind.values()), 1),
        "cpu_s_by_process": {k: round(v, 1) for k, v in sorted(cpu_by_kind.items())},
        "peak_rss_mb": round(peak_total / 2**20),
        "peak_rss_mb_by_process": {k: round(v / 2**20) for k, v in peaks.items()},
        "load_before": [round(x, 1) for x in load_before],
        "load_after": [round(x, 1) for x in os.getloadavg()],
        "log_tail": [line for line in stderr.splitlines() if line.startswith("fhirscreen: ")][-6:],
    }


def count_lines(data: Path) -> int:
    return sum(sum(1 for _ in p.open("rb")) for p in sorted(data.rglob("*.ndjson")))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path, help="a folder of Bulk NDJSON")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--as-of", default="2026-06-01")
    parser.add_argument("--skip-file", action="store_true")
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    resources = count_lines(args.data)
    out = Path(tempfile.mkdtemp(prefix="spark-bench-"))
    base = [sys.executable, "-m", "fhirscreen.cli", "screen", "--data", str(args.data), "--as-of", args.as_of]
    rows: list[dict[str, Any]] = []
    env = dict(os.environ)
    if not args.skip_file:
        row = measure([*base, "--out", str(out / "file"), "--format", "json"], env)
        rows.append({"mode": "file (1 process, 1 core)", **row})
    spark_env = dict(
        env,
        PYSPARK_SUBMIT_ARGS=f"--master {args.master} --driver-memory {args.driver_memory} "
        "--conf spark.ui.enabled=false pyspark-shell",
        PYSPARK_PYTHON=sys.executable,
    )
    row = measure([*base, "--engine", "spark", "--out", str(out / "spark"), "--format", "json"], spark_env)
    rows.append({"mode": f"spark {args.master}", **row})
    same = None
    if not args.skip_file:
        same = (out / "file" / "candidates.json").read_bytes() == (
            out / "spark" / "candidates.json"
        ).read_bytes()
    sle = len(json.loads((out / "spark" / "candidates.json").read_text())["patients"])
    result = {
        "date": date.today().isoformat(),
        "data": str(args.data),
        "label": args.label,
        "resources": resources,
        "sle_patients": sle,
        "candidates_json_identical": same,
        "cpu": os.cpu_count(),
        "runs": rows,
    }
    lines = [
        f"# Spark engine benchmark, {result['date']} ({args.label or args.data})",
        "",
        f"{resources:,} resources (NDJSON lines), {sle:,} SLE patients; candidates.json identical: {same}.",
        "",
        "| mode | wall s | CPU s | resources/s (wall) | peak RSS MB (driver / JVM / workers) "
        "| load before -> after |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        p = r["peak_rss_mb_by_process"]
        lines.append(
            f"| {r['mode']} | {r['wall_s']} | {r['cpu_s']} | {resources / r['wall_s']:,.0f} | "
            f"{r['peak_rss_mb']} ({p['driver']} / {p['jvm']} / {p['workers']}) | "
            f"{r['load_before'][0]} -> {r['load_after'][0]} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    results = HERE / "results"
    stem = f"{result['date']}-spark{('-' + args.label) if args.label else ''}"
    (results / f"{stem}.md").write_text(text)
    (results / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
