"""Seed-format log records stamped with the wall clock, for measuring how long after an
event-time window ends vigil closes it (benches/scripts/scale.sh).

    realtime_producer.py BROKERS TOPIC --seconds S --rate R

Sends R requests a second for S seconds; each request is a trace of three services (a gateway
calling a service calling a database), one record per span, keyed by trace id. Prints the
records sent.
"""

import argparse
import json
import random
import time
import uuid

from confluent_kafka import Producer

CALLS = [("api-gateway", "auth-service", "database"), ("api-gateway", "deal-service", "database")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("brokers")
    ap.add_argument("topic")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=float, default=200)
    a = ap.parse_args()
    p = Producer({"bootstrap.servers": a.brokers, "linger.ms": 20})
    sent = 0
    start = time.time()
    n = 0
    while time.time() - start < a.seconds:
        due = start + n / a.rate
        now = time.time()
        if due > now:
            time.sleep(due - now)
        n += 1
        trace = uuid.uuid4().hex
        spans = [uuid.uuid4().hex[:16] for _ in range(3)]
        for i, service in enumerate(random.choice(CALLS)):
            t = time.time()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)
            record = {
                "timestamp": stamp,
                "level": "INFO",
                "service": service,
                "trace_id": trace,
                "span_id": spans[i],
                "message": "handled",
                "additional_data": {"status_code": 200, "processing_time_ms": 5.0 * (3 - i)},
            }
            if i > 0:
                record["parent_span_id"] = spans[i - 1]
            while True:
                try:
                    p.produce(a.topic, key=trace, value=json.dumps(record))
                    break
                except BufferError:
                    p.poll(0.05)
            sent += 1
        p.poll(0)
    p.flush(30)
    print(sent)


if __name__ == "__main__":
    main()
