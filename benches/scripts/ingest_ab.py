#!/usr/bin/env python3
"""Two or more vigil builds, or settings, ingesting the same file, alternating run by run.

    benches/scripts/ingest_ab.py BUILD[+ENV=VALUE...],BUILD... THREADS RUNS INPUT
    benches/scripts/ingest_ab.py BUILD[+ENV=VALUE...],BUILD... THREADS RUNS -- VIGIL ARGS...

THREADS may be a list (`1,2`): then each round runs every build at every thread count in a
shuffled order, and each build's scaling from the first count to the last is printed too (the
ratio of the median walls, and that ratio over the thread counts' ratio: goal 3's "× N").

Each run is `BUILD ingest --threads THREADS --archive <fresh dir> INPUT` (or, in the second
form, `BUILD VIGIL ARGS... --threads THREADS`, `{dir}` in them a fresh directory: e.g. `--
backtest --pipeline pipelines/deals.toml --logs d.ndjson --metrics dm.ndjson --anomalies
{dir}/out`), timed by
`time.perf_counter` (wall) and the child's rusage (user + sys CPU, peak RSS). Builds take turns
run by run, so a neighbour's load falls on all of them alike; medians (and the fastest wall) are
printed per build. Finer than e2e.sh's `/usr/bin/time` (10 ms steps, five runs) for changes of
a few percent; it measures no peer, so it compares vigil with vigil. An input: `vigil generate
--logs in.ndjson --duration 1d --rate 100 --max-logs 400000 --incident errors:database@2h+20m
--incident latency:ai-service@5h+30m` (e2e.sh's).
"""

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def run(build: str, args: list[str], work: str) -> tuple[float, float, float]:
    """One run of `build` with `args` (`{dir}` a fresh directory under `work`): wall
    seconds, CPU seconds (user + sys), peak RSS in MB."""
    path, *settings = build.split("+")
    env = dict(os.environ, **dict(s.split("=", 1) for s in settings))
    fresh = os.path.join(work, "run")
    shutil.rmtree(fresh, ignore_errors=True)
    os.mkdir(fresh)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [path, *(a.replace("{dir}", fresh) for a in args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{build} failed (status {status})")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    if len(sys.argv) == 5:
        args = ["ingest", "--archive", "{dir}/archive", sys.argv[4]]
    elif len(sys.argv) > 5 and sys.argv[4] == "--":
        args = sys.argv[5:]
    else:
        sys.exit(__doc__)
    builds, runs = sys.argv[1].split(","), int(sys.argv[3])
    counts = sys.argv[2].split(",")
    combos = [(b, t) for b in builds for t in counts]
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {c: [] for c in combos}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(runs):
            order = combos[:]
            if len(counts) > 1:
                random.shuffle(order)
            for b, t in order:
                results[(b, t)].append(run(b, args + ["--threads", t], work))
    for (b, t), rs in results.items():
        walls = [w for w, _, _ in rs]
        print(
            f"{b} --threads {t}: wall median {statistics.median(walls):.4f} s "
            f"(min {min(walls):.4f}), cpu median {statistics.median(c for _, c, _ in rs):.4f} s, "
            f"peak RSS median {statistics.median(m for _, _, m in rs):.0f} MB, {len(rs)} runs"
        )
    if len(counts) > 1:
        first, last = counts[0], counts[-1]
        for b in builds:
            speedup = statistics.median(w for w, _, _ in results[(b, first)]) / statistics.median(
                w for w, _, _ in results[(b, last)]
            )
            print(
                f"{b}: --threads {first} → {last}: {speedup:.3f}× "
                f"({speedup / (int(last) / int(first)):.3f} × N)"
            )

if __name__ == "__main__":
    main()
