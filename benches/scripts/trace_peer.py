#!/usr/bin/env python3
"""The peer of `vigil trace`: DuckDB's delta_scan reading one trace's records from the
archive's logs table, in a warm connection (extension loaded, query timed alone).

Usage: trace_peer.py ARCHIVE/logs TRACE_ID [TRACE_ID ...]   (duckdb==1.4.4 + duckdb-ext-delta)
"""
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "crates/vigil/tests/py"))
import duckdb  # noqa: E402
from duckdb_delta import delta_extension  # noqa: E402

con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
con.execute(f"LOAD '{delta_extension()}'")
con.execute("SET threads TO 2")
for tid in sys.argv[2:]:
    t = time.time()
    rows = con.execute(
        "SELECT CAST(timestamp AS VARCHAR), service, span_id, parent_span_id, level, message "
        f"FROM delta_scan('{sys.argv[1]}') WHERE trace_id = ? ORDER BY timestamp", [tid]).fetchall()
    print(f"duckdb delta_scan: {len(rows)} rows in {time.time() - t:.3f} s")
