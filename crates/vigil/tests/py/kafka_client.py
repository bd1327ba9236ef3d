"""A Kafka client that is not vigil (confluent-kafka, librdkafka), for vigil's tests.

    kafka_client.py create-topic BROKERS TOPIC PARTITIONS
    kafka_client.py produce BROKERS TOPIC --records N --partitions P [--bad-every K] [--start S]
    kafka_client.py consume BROKERS TOPIC --count N [--timeout SECONDS]

`produce` sends seed-format log records numbered start..start+N-1; record i goes to partition
i % P and carries `additional_data.seq = i`. Every K-th record (when --bad-every is given) is
malformed instead, cycling through the kinds of bad input vigil must dead-letter. It prints one
JSON object: good/bad counts and, per partition, the count and sum of the good records' seq.

`consume` reads N messages from the beginning of TOPIC and prints each value as a JSON line.

Two Tansu 0.6 bugs the tests work around, both reproduced with this client alone:
- a fetch starting inside a record batch is answered with the next batch, skipping the rest of
  the one asked for (hence one message per batch in `produce`);
- when a group member dies (no LeaveGroup, session timeout), the group re-forms with the dead
  member's partitions still assigned to it: the survivors never get them. A member that leaves
  cleanly is handled correctly.
"""

import argparse
import json
import sys
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

SERVICES = ["api-gateway", "auth-service", "deal-analysis-service", "ai-service", "token-service", "database"]

BAD = [
    b'{"timestamp": "2025-06-02T09:00:00Z", "service": "api-gateway", "level": "INFO"',  # truncated JSON
    b'\xff\xfe{"not": "utf-8"}',                                                          # invalid UTF-8
    b'{"level": "INFO", "service": "auth-service", "message": "no timestamp"}',           # missing timestamp
    b'{"timestamp": "2025-06-02T09:00:00Z", "level": "INFO", "message": "no service"}',   # missing service
    b'{"timestamp": true, "service": "database", "level": "INFO"}',                       # wrong type
    b'[1, 2, 3]',                                                                          # not an object
    b'{"timestamp": "2025-06-02T09:00:00Z", "service": "x", "a": ' + b'[' * 200 + b']' * 200 + b'}',  # too deep
    b'{"timestamp": "2025-06-02T09:00:00Z", "service": "x", "message": "' + b'y' * 9000 + b'"}',       # oversized (> 8 KiB)
]


def good(i):
    ts = 1748854800.0 + i * 0.01  # 2025-06-02T09:00:00Z onwards
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".%06dZ" % int((ts % 1) * 1e6)
    svc = SERVICES[i % len(SERVICES)]
    return json.dumps({
        "timestamp": t,
        "level": "ERROR" if i % 17 == 0 else "INFO",
        "service": svc,
        "trace_id": "trace-%08d" % i,
        "span_id": "span-%08d" % i,
        "user_id": "user-%d" % (i % 97),
        "message": "request %d handled" % i,
        "additional_data": {"seq": i, "status_code": 500 if i % 17 == 0 else 200,
                            "processing_time_ms": float(i % 1000) / 4},
    }).encode()


def create_topic(args):
    admin = AdminClient({"bootstrap.servers": args.brokers})
    fs = admin.create_topics([NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)])
    for _, f in fs.items():
        f.result(timeout=30)


def batch_of_one_producer(brokers):
    """A producer writing one message per record batch, the delivery errors it meets and its
    delivery callback. Tansu 0.6 (memory storage) answers a fetch that starts inside a record
    batch with the *next* batch, skipping the rest of the one asked for, so a consumer resuming
    mid-batch would silently miss messages (a broker bug, reproducible with any client).
    Batches of one keep every offset a batch boundary."""
    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 0,
                  "batch.num.messages": 1})
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(str(err))

    return p, errors, report


def produce(args):
    p, errors, report = batch_of_one_producer(args.brokers)

    parts = {}
    n_good = n_bad = 0
    for i in range(args.start, args.start + args.records):
        part = i % args.partitions
        if args.bad_every and i % args.bad_every == args.bad_every - 1:
            value = BAD[(i // args.bad_every) % len(BAD)]
            n_bad += 1
        else:
            value = good(i)
            n_good += 1
            c = parts.setdefault(str(part), {"count": 0, "seq_sum": 0})
            c["count"] += 1
            c["seq_sum"] += i
        while True:
            try:
                p.produce(args.topic, value=value, partition=part, on_delivery=report)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    # A loaded machine (a build beside the tests) slows the broker: wait while deliveries still
    # progress, fail once a minute passes without any.
    left = p.flush(60)
    while left:
        before, left = left, p.flush(60)
        if left >= before:
            break
    if left or errors:
        sys.exit("produce failed: %d undelivered, errors: %s" % (left, errors[:5]))
    print(json.dumps({"good": n_good, "bad": n_bad, "partitions": parts}))


def consume(args):
    c = Consumer({"bootstrap.servers": args.brokers, "group.id": "test-reader-%d" % time.time_ns(),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 6000, "max.poll.interval.ms": 10000})
    c.subscribe([args.topic])
    got = 0
    deadline = time.time() + args.timeout
    last = time.time()
    while (args.count == 0 or got < args.count) and time.time() < deadline:
        m = c.poll(0.5)
        if args.count == 0 and got > 0 and time.time() - last > args.idle:
            break
        if m is None or m.error():
            continue
        last = time.time()
        if args.raw:
            print(json.dumps({"key": m.key().decode() if m.key() else None,
                              "headers": {k: v.decode("utf-8", "replace") for k, v in (m.headers() or [])},
                              "value_len": len(m.value() or b"")}))
        else:
            print(json.dumps({"key": m.key().decode() if m.key() else None,
                              "value": json.loads(m.value())}))
        got += 1
    c.close()
    if got < max(args.count, 1):
        sys.exit("consumed %d of %d messages before the timeout" % (got, args.count))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("create-topic")
    t.add_argument("brokers"); t.add_argument("topic"); t.add_argument("partitions", type=int)
    pr = sub.add_parser("produce")
    pr.add_argument("brokers"); pr.add_argument("topic")
    pr.add_argument("--records", type=int, required=True)
    pr.add_argument("--partitions", type=int, required=True)
    pr.add_argument("--bad-every", type=int, default=0)
    pr.add_argument("--start", type=int, default=0)
    co = sub.add_parser("consume")
    co.add_argument("brokers"); co.add_argument("topic")
    co.add_argument("--count", type=int, required=True, help="0: until --idle seconds pass with no message")
    co.add_argument("--idle", type=float, default=5)
    co.add_argument("--timeout", type=float, default=60)
    co.add_argument("--raw", action="store_true", help="print headers and value length, not the value")
    args = ap.parse_args()
    {"create-topic": create_topic, "produce": produce, "consume": consume}[args.cmd](args)


if __name__ == "__main__":
    main()
