#!/usr/bin/env python3
"""How much each Nezha case's injected service shows, against what fault-free traffic shows.

Usage: rca_signal.py [DATA_DIR]   (default ../shared/data/rca; prints a Markdown table)

Independent of vigil and of any detector: it asks what evidence the records themselves carry.
For each case it takes the injected service's records in the part of the fault that was
recorded (`start` to `recorded_end`; after that the stream is tiled fault-free traffic) and
measures two signals per two-minute window, each as a binomial tail probability against the
service's own usual level over all fault-free traffic:

- errors: records at ERROR or CRITICAL (DEBUG left out), against the service's usual share;
- slow: records slower than the service's usual 95th percentile, against 5%.

The case's evidence is the smallest such probability of a window that overlaps the recorded
fault (`p`); 1.0 means the service did nothing unusual at all. Then it counts the fault-free
windows (every service, outside every case's scoring range [start - 2 min, end + 6 min]) whose
probability for the same signal is as small or smaller, as bursts (adjacent windows of one
service merged): a detector that names this case from that signal must also fire on each of
those bursts, or miss the case.
"""
import bisect
import collections
import datetime as dt
import gzip
import json
import math
import sys

MINUTE = 60.0


def ts(s):
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def upper_tail(k, n, p):
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def load(path):
    """Per record: (time, service, failed, duration ms)."""
    out = []
    with gzip.open(path, "rt") as f:
        for line in f:
            r = json.loads(line)
            level = r.get("level", "INFO")
            if level == "DEBUG":
                continue
            d = (r.get("additional_data") or {}).get("processing_time_ms")
            out.append((ts(r["timestamp"]), r["service"], level in ("ERROR", "CRITICAL"), d))
    return out


def study(data, system):
    labels = json.load(open(f"{data}/{system}/labels.json"))["cases"]
    records = load(f"{data}/{system}/logs.ndjson.gz")
    ranges = sorted((ts(c["start"]) - 2 * MINUTE, ts(c["end"]) + 6 * MINUTE) for c in labels)
    starts = [lo for lo, _ in ranges]

    def fault_free(t):
        i = bisect.bisect_right(starts, t) - 1
        return i < 0 or t > ranges[i][1]

    # The usual level of each service, over fault-free traffic only.
    n, failed, durations = collections.Counter(), collections.Counter(), collections.defaultdict(list)
    for t, s, e, d in records:
        if fault_free(t):
            n[s] += 1
            failed[s] += e
            if d is not None:
                durations[s].append(d)
    usual_error = {s: failed[s] / n[s] for s in n}
    p95 = {s: sorted(v)[int(0.95 * (len(v) - 1))] for s, v in durations.items() if v}

    # Per service and minute: records, failed, slow.
    t0 = min(r[0] for r in records)
    minutes = collections.defaultdict(lambda: [0, 0, 0])
    for t, s, e, d in records:
        m = minutes[(s, int((t - t0) // MINUTE))]
        m[0] += 1
        m[1] += e
        m[2] += d is not None and s in p95 and d > p95[s]

    def window(s, m):
        """Two-minute window from minute m: (errors p, slow p)."""
        a, b = minutes.get((s, m), (0, 0, 0)), minutes.get((s, m + 1), (0, 0, 0))
        total, err, slow = a[0] + b[0], a[1] + b[1], a[2] + b[2]
        return (
            upper_tail(err, total, usual_error.get(s, 0.0)),
            upper_tail(slow, total, 0.05),
        )

    # Every fault-free window's probabilities, per signal: (p, service, minute).
    free = ([], [])
    for s, m in minutes:
        if fault_free(t0 + m * MINUTE) and fault_free(t0 + (m + 2) * MINUTE):
            for i, p in enumerate(window(s, m)):
                free[i].append((p, s, m))

    def bursts(signal, p):
        hits = sorted((s, m) for q, s, m in free[signal] if q <= p)
        return sum(1 for i, (s, m) in enumerate(hits) if i == 0 or hits[i - 1] != (s, m - 1))

    rows = []
    for c in labels:
        s = c["root_cause_service"]
        a, b = ts(c["start"]), ts(c.get("recorded_end") or c["end"])
        first, last = int((a - t0) // MINUTE) - 1, int((b - t0) // MINUTE)
        best = [min(window(s, m)[i] for m in range(first, last + 1)) for i in (0, 1)]
        # The strongest window of any service in the recorded fault, per signal.
        anyone = [
            min((window(o, m)[i], o) for o in n for m in range(first, last + 1)) for i in (0, 1)
        ]
        rows.append(
            (
                c["id"],
                c["fault_type"],
                s,
                [(best[i], bursts(i, best[i])) for i in (0, 1)],
                [(anyone[i][1], anyone[i][0], bursts(i, anyone[i][0])) for i in (0, 1)],
            )
        )
    hours = (max(r[0] for r in records) - t0) / 3600
    return rows, hours


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/rca"
    print(
        "| case | fault | injected service: errors p (bursts) | slow p (bursts)"
        " | any service, errors | any service, slow |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for system in ("tt", "ob"):
        rows, hours = study(data, system)
        for cid, fault, s, own, anyone in sorted(rows, key=lambda r: (r[1], r[0])):
            cells = [f"{p:.2g} ({k})" for p, k in own]
            cells += [f"{o.removeprefix('ts-').removesuffix('-service')} {p:.2g} ({k})" for o, p, k in anyone]
            print(f"| {cid} | {fault} | {s}: " + " | ".join(cells) + " |")
        print(f"| ({system}: {hours:.1f} h of stream) | | | | | |")


if __name__ == "__main__":
    main()
