#!/usr/bin/env python3
"""Analyst queries over one archive: vigil (CLI, HTTP, Postgres wire) against DuckDB reading the
same Delta table in the same run. Called by benches/scripts/sql.sh.

Usage: sql_peer.py VIGIL_BIN ARCHIVE HTTP_ADDR PG_PORT DAY TRACE_ID [RUNS]

Each query runs RUNS times (default 5) per client, the clients alternating, and reports the
median. DuckDB (1.4.4 + delta extension, threads = 2 like vigil's two cores) runs in a warm
connection: the extension is loaded once, `delta_scan` reads the Delta log on every query, as
vigil brings every table up to date for every statement. The answers are compared before timing.
"""
import json
import pathlib
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "crates/vigil/tests/py"))
import duckdb  # noqa: E402
import psycopg  # noqa: E402
from duckdb_delta import delta_extension  # noqa: E402

vigil, archive, http, pg_port, day, trace_id = sys.argv[1:7]
runs = int(sys.argv[7]) if len(sys.argv) > 7 else 5
hour = f"{day}T12:00:00Z"
next_hour = f"{day}T13:00:00Z"
next_day = f"{day}T23:59:59.999999Z"

# (name, vigil SQL, DuckDB SQL over `t`); the same answer, each in its engine's dialect. DuckDB
# hands timestamps out as text: its Python timestamps with a time zone need pytz.
QUERIES = [
    (
        "(a) count per service over one hour",
        f"SELECT service, count(*) AS n FROM logs WHERE timestamp >= '{hour}' "
        f"AND timestamp < '{next_hour}' GROUP BY service ORDER BY service",
        f"SELECT service, count(*) AS n FROM t WHERE timestamp >= '{hour}' "
        f"AND timestamp < '{next_hour}' GROUP BY service ORDER BY service",
    ),
    (
        "(b) p95 processing time per service per hour over a day",
        "SELECT service, date_trunc('hour', timestamp) AS h, "
        "percentile_cont(0.95) WITHIN GROUP (ORDER BY processing_time_ms) AS p95 "
        f"FROM logs WHERE timestamp >= '{day}T00:00:00Z' AND timestamp <= '{next_day}' "
        "GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT service, CAST(date_trunc('hour', timestamp) AS VARCHAR) AS h, "
        "quantile_cont(processing_time_ms, 0.95) AS p95 "
        f"FROM t WHERE timestamp >= '{day}T00:00:00Z' AND timestamp <= '{next_day}' "
        "GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    (
        "(c) all records of one trace_id",
        "SELECT timestamp, service, span_id, level, message FROM logs "
        f"WHERE trace_id = '{trace_id}' ORDER BY timestamp, span_id",
        "SELECT CAST(timestamp AS VARCHAR) AS ts, service, span_id, level, message FROM t "
        f"WHERE trace_id = '{trace_id}' ORDER BY timestamp, span_id",
    ),
    (
        "(d) error messages containing a word over a day",
        "SELECT service, message, count(*) AS n FROM logs WHERE level = 'ERROR' "
        f"AND message ILIKE '%unavailable%' AND timestamp >= '{day}T00:00:00Z' "
        f"AND timestamp <= '{next_day}' GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT service, message, count(*) AS n FROM t WHERE level = 'ERROR' "
        f"AND message ILIKE '%unavailable%' AND timestamp >= '{day}T00:00:00Z' "
        f"AND timestamp <= '{next_day}' GROUP BY 1, 2 ORDER BY 1, 2",
    ),
]

con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
con.execute(f"LOAD '{delta_extension()}'")
con.execute("SET threads TO 2")
con.execute("SET TimeZone = 'UTC'")
pg = psycopg.connect(host="127.0.0.1", port=pg_port, user="bench", password="bench",
                     dbname="vigil", autocommit=True)


def run_duckdb(sql):
    view = sql.replace(" FROM t ", f" FROM delta_scan('{archive}/logs') ")
    return con.execute(view).fetchall()


def run_cli(sql):
    out = subprocess.run([vigil, "sql", "--archive", archive, "--format", "json", sql],
                         check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def run_http(sql):
    req = urllib.request.Request(f"http://{http}/sql", data=sql.encode(), method="POST",
                                 headers={"Authorization": "Bearer bench"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def run_pg(sql):
    return pg.execute(sql).fetchall()


def timed(f, sql):
    t = time.perf_counter()
    rows = f(sql)
    return time.perf_counter() - t, rows


def rounded(rows):
    """Rows as comparable tuples: numbers as floats, timestamps as text to the second."""
    out = []
    for r in rows:
        values = r.values() if isinstance(r, dict) else r
        out.append(tuple(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                         else str(v)[:19].replace("T", " ") for v in values))
    return out


def same(a, b):
    """Equal, numbers within a relative 1e-6 (the engines sum in different orders, and vigil's
    JSON and CSV print doubles to 9 significant digits)."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb):
            if isinstance(x, float) and isinstance(y, float):
                if abs(x - y) > 1e-6 * max(abs(x), abs(y), 1.0):
                    return False
            elif x != y:
                return False
    return True


clients = [("vigil sql (CLI)", run_cli), ("vigil HTTP", run_http), ("vigil psql wire", run_pg)]
print(f"| query | rows | DuckDB | {' | '.join(name for name, _ in clients)} | "
      "DuckDB ÷ CLI | DuckDB ÷ HTTP | DuckDB ÷ psql wire |")
print("| --- | --- | --- |" + " --- |" * len(clients) + " --- | --- | --- |")
for name, ours, theirs in QUERIES:
    want = rounded(run_duckdb(theirs))
    for client, f in clients:
        got = rounded(f(ours))
        if not same(got, want):
            diff = [(g, w) for g, w in zip(got, want) if not same([g], [w])][:3]
            sys.exit(f"{name}: {client} answers differently from DuckDB ({len(got)} rows, "
                     f"{len(want)} wanted): {diff}")
    times = {"duckdb": []} | {c: [] for c, _ in clients}
    for _ in range(runs):
        times["duckdb"].append(timed(run_duckdb, theirs)[0])
        for client, f in clients:
            times[client].append(timed(f, ours)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    cells = " | ".join(f"{med[c]:.3f} s" for c, _ in clients)
    ratios = " | ".join(f"{med['duckdb'] / med[c]:.2f}×" for c, _ in clients)
    print(f"| {name} | {len(want)} | {med['duckdb']:.3f} s | {cells} | {ratios} |", flush=True)
