#!/usr/bin/env python3
"""The peer of `vigil backtest`: DuckDB computing the same per-minute, per-service signals as
pipelines/deals.toml's five rules (availability, token-service error rate, ai-service p95
latency, database CPU, request count) from the same NDJSON files, in one batch query.

Usage: backtest_peer.py LOGS.ndjson METRICS.ndjson [RUNS]   (duckdb==1.4.4, 2 threads)
"""
import sys
import time

import duckdb

logs, metrics = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
con = duckdb.connect()
con.execute("SET threads TO 2")
QUERY = """
WITH l AS (
  SELECT CAST(timestamp AS TIMESTAMP) AS ts, level, service, parent_span_id,
         CAST(additional_data->>'status_code' AS INTEGER) AS status_code,
         CAST(additional_data->>'processing_time_ms' AS DOUBLE) AS processing_time_ms
  FROM read_json($logs, format='newline_delimited',
       columns={timestamp:'VARCHAR', level:'VARCHAR', service:'VARCHAR',
                parent_span_id:'VARCHAR', additional_data:'JSON'})
), m AS (
  SELECT CAST(timestamp AS TIMESTAMP) AS ts, name, service, value
  FROM read_json($metrics, format='newline_delimited',
       columns={timestamp:'VARCHAR', name:'VARCHAR', service:'VARCHAR', value:'DOUBLE'})
)
SELECT (SELECT count(*) FROM (
    SELECT time_bucket(INTERVAL 1 minute, ts) w, service,
      avg(CASE WHEN status_code < 500 THEN 1.0 ELSE 0.0 END) FILTER (
        WHERE service = 'api-gateway' AND parent_span_id IS NULL AND status_code IS NOT NULL),
      avg(CASE WHEN level IN ('ERROR', 'CRITICAL') THEN 1.0 ELSE 0.0 END) FILTER (
        WHERE service = 'token-service'),
      approx_quantile(processing_time_ms, 0.95) FILTER (
        WHERE service = 'ai-service' AND processing_time_ms IS NOT NULL),
      count(*)
    FROM l GROUP BY ALL)) AS log_windows,
  (SELECT count(*) FROM (
    SELECT time_bucket(INTERVAL 1 minute, ts) w, service,
      avg(value) FILTER (WHERE name = 'cpu_percent' AND service = 'database')
    FROM m GROUP BY ALL)) AS metric_windows
"""
# Counted once, outside the timed runs (the signals query reads each file once).
records = sum(con.execute(f"SELECT count(*) FROM read_json($f, format='newline_delimited', "
                          "columns={timestamp:'VARCHAR'})", {"f": f}).fetchone()[0]
              for f in (logs, metrics))
for i in range(runs):
    t = time.time()
    lw, mw = con.execute(QUERY, {"logs": logs, "metrics": metrics}).fetchone()
    dt = time.time() - t
    print(f"duckdb run {i + 1}: {records:,} records in {dt:.2f} s = {records / dt:,.0f} records/s "
          f"({lw:,} log and {mw:,} metric windows x services)")
