"""OTLP sources that are not vigil (the OpenTelemetry Python SDK, opentelemetry-proto), for vigil's tests.

    otlp_client.py sdk ENDPOINT [--traces N] [--token TOKEN]
    otlp_client.py kafka BROKERS TOPIC --signal traces|logs|metrics --encoding proto|json [--count N] [--bad]

`sdk` is a small instrumented program: the real OpenTelemetry SDK with its OTLP/HTTP protobuf
exporters, posting to ENDPOINT/v1/traces, ENDPOINT/v1/logs and ENDPOINT/v1/metrics (ENDPOINT is a
base like http://127.0.0.1:4318; --token adds `Authorization: Bearer TOKEN`). It simulates N
requests (default 20) through two services, each with its own providers and `service.name`:
  - frontend SERVER span `GET /checkout` (http.request.method, http.response.status_code,
    user_id = user-<i % 5>), its child CLIENT span `POST checkout`, and
  - checkout SERVER span `POST /pay`, child of that client span (same trace), sleeping 2-5 ms.
Request i with i % 5 == 4 fails: the checkout span has status ERROR ("card declined") and both
server spans http.response.status_code 500. Each service emits one log record per request through
the OTel logs API inside its server span (so it carries trace_id/span_id): body "<service> <i>",
INFO (ERROR for a failing request), attribute user_id. Metrics per service: Counter `requests`
(attribute route), Histogram `request.duration` (ms), observable Gauge `queue.depth` = 3; they
are collected and exported once, at the end. All providers are flushed and shut down at the end;
any failed export exits non-zero. The exporters send uncompressed protobuf
(Content-Type: application/x-protobuf, User-Agent: OTel-OTLP-Exporter-Python/<version>).
It prints one JSON object: traces, spans, trace_ids (hex), error_traces, logs, error_logs,
span_durations_ms (span id hex -> ms), metrics (per instrument, per service), histogram_count,
exports (successful POSTs per signal).

`kafka` writes OTLP payloads to TOPIC as the OpenTelemetry Collector's Kafka exporter does: one
Export*ServiceRequest per message, encoding `proto` (otlp_proto: the binary protobuf) or `json`
(otlp_json: OTLP/JSON, lowerCamelCase names, trace/span ids as hex, enums as integers, 64-bit
integers as decimal strings). Trace messages are keyed by the trace id in hex (the exporter's
partition_traces_by_id); logs and metrics have no key. The topic is created with 1 partition if
missing. Message i (0..N-1, default N 10) holds:
  - traces: one trace of 3 spans, frontend SERVER `GET /checkout` (10 ms) -> frontend CLIENT
    `POST checkout` (8 ms) -> checkout SERVER `POST /pay` (5 ms), starting at
    2025-06-02T09:00:00Z + i s; checkout's status is ERROR when i % 5 == 4;
  - logs: 2 records, one per service, INFO (9) or ERROR (17) when i % 5 == 4, carrying the trace
    and span ids of trace message i, attributes user_id (string) and attempt (int);
  - metrics (service frontend for even i, checkout for odd i): Gauge `queue.depth` (double),
    monotonic cumulative Sum `requests` (int), delta Histogram `request.duration` with bounds
    [5, 10, 25, 50].
With --bad, 3 malformed messages follow the good ones: non-protobuf bytes, the first half of a
valid payload, and a payload of the wrong kind (JSON for proto, unterminated JSON for json).
It prints one JSON object: messages, bad, records (spans / log records / data points in the good
messages), trace_ids (hex), services.

Tansu 0.6 answers a fetch starting inside a record batch with the next batch (see
kafka_client.py), so `kafka` produces one message per batch.
"""

import argparse
import base64
import hashlib
import json
import math
import sys
import time

BASE_NS = 1748854800 * 10**9  # 2025-06-02T09:00:00Z
SERVICES = ["frontend", "checkout"]


def failing(i):
    return i % 5 == 4


# --- sdk -----------------------------------------------------------------------------------------

def sdk(args):
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.metrics import Observation
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, StatusCode

    base = args.endpoint.rstrip("/")
    headers = {"Authorization": "Bearer " + args.token} if args.token else None
    results = []  # (signal, result name, items) per export call

    def recording(cls, signal):
        class Recording(cls):
            def export(self, batch, *a, **kw):
                r = super().export(batch, *a, **kw)
                n = len(batch) if signal != "metrics" else len(batch.resource_metrics)
                results.append((signal, getattr(r, "name", str(r)), n))
                return r
        return Recording

    SpanExp = recording(OTLPSpanExporter, "traces")
    LogExp = recording(OTLPLogExporter, "logs")
    MetricExp = recording(OTLPMetricExporter, "metrics")

    finished = []

    class Collect(SpanProcessor):
        def on_end(self, span):
            finished.append(span)

    n = args.traces
    queue = max(2048, 4 * n)
    svc = {}
    for name in SERVICES:
        res = Resource.create({"service.name": name})
        tp = TracerProvider(resource=res)
        tp.add_span_processor(Collect())
        tp.add_span_processor(BatchSpanProcessor(
            SpanExp(endpoint=base + "/v1/traces", headers=headers), max_queue_size=queue))
        lp = LoggerProvider(resource=res)
        lp.add_log_record_processor(BatchLogRecordProcessor(
            LogExp(endpoint=base + "/v1/logs", headers=headers), max_queue_size=queue))
        # An infinite interval: no background thread, one collection at force_flush.
        reader = PeriodicExportingMetricReader(
            MetricExp(endpoint=base + "/v1/metrics", headers=headers), export_interval_millis=math.inf)
        mp = MeterProvider(resource=res, metric_readers=[reader])
        meter = mp.get_meter("vigil.otlp_client")
        meter.create_observable_gauge("queue.depth", callbacks=[lambda options: [Observation(3)]],
                                      description="items waiting")
        svc[name] = {
            "tp": tp, "lp": lp, "mp": mp,
            "tracer": tp.get_tracer("vigil.otlp_client"),
            "logger": lp.get_logger("vigil.otlp_client"),
            "requests": meter.create_counter("requests", unit="1", description="requests handled"),
            "duration": meter.create_histogram("request.duration", unit="ms",
                                               description="server span duration"),
        }

    metrics = {"requests": {s: 0 for s in SERVICES}, "request.duration": {s: 0 for s in SERVICES},
               "queue.depth": {s: 3 for s in SERVICES}}
    n_logs = n_error_logs = 0

    def log(name, i, fail, user):
        nonlocal n_logs, n_error_logs
        svc[name]["logger"].emit(
            timestamp=time.time_ns(),  # the logs API leaves it unset (0) otherwise; LoggingHandler sets it
            context=otel_context.get_current(),
            severity_number=SeverityNumber.ERROR if fail else SeverityNumber.INFO,
            severity_text="ERROR" if fail else "INFO",
            body="%s %d" % (name, i),
            attributes={"user_id": user})
        n_logs += 1
        n_error_logs += fail

    def record(name, route, started):
        ms = (time.perf_counter() - started) * 1000
        svc[name]["requests"].add(1, {"route": route})
        svc[name]["duration"].record(ms, {"route": route})
        metrics["requests"][name] += 1
        metrics["request.duration"][name] += 1

    fe, co = svc["frontend"]["tracer"], svc["checkout"]["tracer"]
    for i in range(n):
        fail = failing(i)
        status = 500 if fail else 200
        user = "user-%d" % (i % 5)
        t0 = time.perf_counter()
        with fe.start_as_current_span("GET /checkout", kind=SpanKind.SERVER, attributes={
                "http.request.method": "GET", "http.response.status_code": status, "user_id": user}):
            log("frontend", i, fail, user)
            with fe.start_as_current_span("POST checkout", kind=SpanKind.CLIENT,
                                          attributes={"http.request.method": "POST"}) as client:
                client.set_attribute("http.response.status_code", status)
                # The checkout service is another process in real life: hand it the client span's
                # context explicitly, as a propagator would.
                remote = trace.set_span_in_context(client)
                t1 = time.perf_counter()
                with co.start_as_current_span("POST /pay", context=remote, kind=SpanKind.SERVER,
                                              attributes={"http.request.method": "POST",
                                                          "http.response.status_code": status,
                                                          "user_id": user}) as pay:
                    time.sleep(0.002 + (i % 4) * 0.001)
                    if fail:
                        pay.set_status(StatusCode.ERROR, "card declined")
                    log("checkout", i, fail, user)
                record("checkout", "/pay", t1)
        record("frontend", "/checkout", t0)

    ok = True
    for name in SERVICES:
        ok &= bool(svc[name]["tp"].force_flush(30000))
        ok &= bool(svc[name]["lp"].force_flush(30000))
        ok &= bool(svc[name]["mp"].force_flush(30000))
    for name in SERVICES:
        svc[name]["tp"].shutdown()
        svc[name]["lp"].shutdown()
        svc[name]["mp"].shutdown()

    failed = [r for r in results if r[1] != "SUCCESS"]
    exports = {s: sum(1 for r in results if r[0] == s and r[1] == "SUCCESS")
               for s in ("traces", "logs", "metrics")}
    exported = {s: sum(r[2] for r in results if r[0] == s and r[1] == "SUCCESS") for s in ("traces", "logs")}
    if failed or not ok or exported["traces"] != 3 * n or exported["logs"] != n_logs or exports["metrics"] != 2:
        sys.exit("otlp export failed: %s; flush ok: %s; exported %s (want %d spans, %d logs), "
                 "metric exports %d (want 2)" % (failed[:5], ok, exported, 3 * n, n_logs, exports["metrics"]))

    trace_ids, error_traces, durations = [], set(), {}
    for s in finished:
        tid = "%032x" % s.context.trace_id
        if tid not in trace_ids:
            trace_ids.append(tid)
        if s.status.status_code == StatusCode.ERROR:
            error_traces.add(tid)
        durations["%016x" % s.context.span_id] = (s.end_time - s.start_time) / 1e6
    print(json.dumps({
        "traces": len(trace_ids), "spans": len(finished), "trace_ids": trace_ids,
        "error_traces": len(error_traces), "logs": n_logs, "error_logs": n_error_logs,
        "span_durations_ms": durations, "metrics": metrics,
        "histogram_count": sum(metrics["request.duration"].values()), "exports": exports,
    }))


# --- kafka ---------------------------------------------------------------------------------------

def trace_id(i):
    return hashlib.md5(b"vigil-trace-%d" % i).digest()


def span_id(i, k):
    return hashlib.sha1(b"vigil-span-%d-%d" % (i, k)).digest()[:8]


def kv(key, value):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    if isinstance(value, bool):
        v = AnyValue(bool_value=value)
    elif isinstance(value, int):
        v = AnyValue(int_value=value)
    elif isinstance(value, float):
        v = AnyValue(double_value=value)
    else:
        v = AnyValue(string_value=value)
    return KeyValue(key=key, value=v)


def resource(service):
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    return Resource(attributes=[kv("service.name", service)])


def scope():
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    return InstrumentationScope(name="vigil.otlp_client", version="1")


def traces_request(i):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
    t0 = BASE_NS + i * 10**9
    ms = 10**6
    tid = trace_id(i)
    server, client, pay = span_id(i, 0), span_id(i, 1), span_id(i, 2)
    fail = failing(i)

    def span(name, kind, sid, parent, start, dur, status):
        return Span(trace_id=tid, span_id=sid, parent_span_id=parent, name=name, kind=kind,
                    start_time_unix_nano=start, end_time_unix_nano=start + dur,
                    attributes=[kv("http.response.status_code", 200), kv("user_id", "user-%d" % (i % 5))],
                    status=status)

    ok = Status(code=Status.STATUS_CODE_UNSET)
    frontend = [span("GET /checkout", Span.SPAN_KIND_SERVER, server, b"", t0, 10 * ms, ok),
                span("POST checkout", Span.SPAN_KIND_CLIENT, client, server, t0 + 1 * ms, 8 * ms, ok)]
    checkout = [span("POST /pay", Span.SPAN_KIND_SERVER, pay, client, t0 + 2 * ms, 5 * ms,
                     Status(code=Status.STATUS_CODE_ERROR, message="card declined") if fail else ok)]
    req = ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(resource=resource("frontend"), scope_spans=[ScopeSpans(scope=scope(), spans=frontend)]),
        ResourceSpans(resource=resource("checkout"), scope_spans=[ScopeSpans(scope=scope(), spans=checkout)]),
    ])
    return req, 3, tid.hex(), SERVICES


def logs_request(i):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs, SeverityNumber
    t0 = BASE_NS + i * 10**9
    fail = failing(i)
    tid = trace_id(i)
    out = []
    for k, (service, sid) in enumerate([("frontend", span_id(i, 0)), ("checkout", span_id(i, 2))]):
        rec = LogRecord(
            time_unix_nano=t0 + (k + 1) * 10**6, observed_time_unix_nano=t0 + (k + 1) * 10**6 + 500,
            severity_number=SeverityNumber.SEVERITY_NUMBER_ERROR if fail else SeverityNumber.SEVERITY_NUMBER_INFO,
            severity_text="ERROR" if fail else "INFO",
            body=AnyValue(string_value="%s %d%s" % (service, i, ": card declined" if fail else "")),
            attributes=[kv("user_id", "user-%d" % (i % 5)), kv("attempt", 1 + i % 3)],
            trace_id=tid, span_id=sid, flags=1)
        out.append(ResourceLogs(resource=resource(service), scope_logs=[ScopeLogs(scope=scope(), log_records=[rec])]))
    return ExportLogsServiceRequest(resource_logs=out), 2, tid.hex(), SERVICES


BOUNDS = [5.0, 10.0, 25.0, 50.0]


def metrics_request(i):
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.metrics.v1.metrics_pb2 import (
        AGGREGATION_TEMPORALITY_CUMULATIVE, AGGREGATION_TEMPORALITY_DELTA, Gauge, Histogram,
        HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum)
    service = SERVICES[i % 2]
    t = BASE_NS + (i + 1) * 10**9
    attrs = [kv("route", "/checkout" if service == "frontend" else "/pay")]
    values = [2.0 + i % 3, 7.0, 8.5, 20.0, 40.0 + i, 70.0]
    counts = [0] * (len(BOUNDS) + 1)
    for v in values:
        counts[next((k for k, b in enumerate(BOUNDS) if v <= b), len(BOUNDS))] += 1
    gauge = Metric(name="queue.depth", unit="1", gauge=Gauge(data_points=[
        NumberDataPoint(time_unix_nano=t, as_double=3.0 + i % 2)]))
    total = Metric(name="requests", unit="1", sum=Sum(
        aggregation_temporality=AGGREGATION_TEMPORALITY_CUMULATIVE, is_monotonic=True, data_points=[
            NumberDataPoint(start_time_unix_nano=BASE_NS, time_unix_nano=t, as_int=10 * (i // 2 + 1),
                            attributes=attrs)]))
    hist = Metric(name="request.duration", unit="ms", histogram=Histogram(
        aggregation_temporality=AGGREGATION_TEMPORALITY_DELTA, data_points=[
            HistogramDataPoint(start_time_unix_nano=t - 10**9, time_unix_nano=t, count=len(values),
                               sum=sum(values), bucket_counts=counts, explicit_bounds=BOUNDS,
                               min=min(values), max=max(values), attributes=attrs)]))
    req = ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
        resource=resource(service), scope_metrics=[ScopeMetrics(scope=scope(), metrics=[gauge, total, hist])])])
    return req, 3, None, [service]


ID_FIELDS = {"traceId", "spanId", "parentSpanId"}


def hex_ids(node):
    """Rewrites json_format's base64 trace/span ids as OTLP/JSON's hex, in place, anywhere in node."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ID_FIELDS and isinstance(v, str):
                node[k] = base64.b64decode(v).hex()
            else:
                hex_ids(v)
    elif isinstance(node, list):
        for v in node:
            hex_ids(v)


def otlp_json(message):
    from google.protobuf import json_format
    d = json_format.MessageToDict(message, preserving_proto_field_name=False, use_integers_for_enums=True)
    hex_ids(d)
    return json.dumps(d, separators=(",", ":")).encode()


def truncated(req, encoding):
    """The longest prefix of about half of req's encoding that no longer parses.

    Half is not always enough: a cut that falls between two top-level fields (two ResourceLogs
    of equal size) is itself a valid, shorter protobuf message."""
    from google.protobuf.message import DecodeError
    whole = otlp_json(req) if encoding == "json" else req.SerializeToString()
    for cut in range(len(whole) // 2, 0, -1):
        try:
            if encoding == "json":
                json.loads(whole[:cut])
            else:
                type(req)().ParseFromString(whole[:cut])
        except (ValueError, DecodeError):
            return whole[:cut]
    raise AssertionError("no prefix of the payload fails to parse")


def kafka(args):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic
    from confluent_kafka.error import KafkaError

    admin = AdminClient({"bootstrap.servers": args.brokers})
    for _, f in admin.create_topics([NewTopic(args.topic, num_partitions=1, replication_factor=1)]).items():
        try:
            f.result(timeout=30)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    build = {"traces": traces_request, "logs": logs_request, "metrics": metrics_request}[args.signal]
    encode = otlp_json if args.encoding == "json" else (lambda m: m.SerializeToString())

    messages, records, trace_ids, services = [], 0, [], []
    for i in range(args.count):
        req, n, tid, svcs = build(i)
        key = tid.encode() if args.signal == "traces" else None
        messages.append((key, encode(req)))
        records += n
        if tid:
            trace_ids.append(tid)
        services += [s for s in svcs if s not in services]
    if args.bad:
        req = build(0)[0]
        messages += [
            (None, b"\xff\xff\xff\xffnot protobuf"),          # not protobuf, not JSON
            (None, truncated(req, args.encoding)),            # a valid payload cut near its middle
            (None, b'{"resourceSpans": [' if args.encoding == "json"
             else b'{"resourceSpans": []}'),                   # json: unterminated; proto: JSON, not protobuf
        ]

    # One message per record batch (Tansu 0.6, see kafka_client.py): flush after each.
    from kafka_client import batch_of_one_producer
    p, errors, report = batch_of_one_producer(args.brokers)

    for key, value in messages:
        p.produce(args.topic, value=value, key=key, on_delivery=report)
        if p.flush(60):
            sys.exit("produce failed: a message was not delivered within 60 s")
    if errors:
        sys.exit("produce failed: %s" % errors[:5])
    print(json.dumps({"messages": args.count, "bad": 3 if args.bad else 0, "records": records,
                      "trace_ids": trace_ids, "services": services}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sdk")
    s.add_argument("endpoint", help="OTLP/HTTP base, e.g. http://127.0.0.1:4318")
    s.add_argument("--traces", type=int, default=20)
    s.add_argument("--token")
    k = sub.add_parser("kafka")
    k.add_argument("brokers"); k.add_argument("topic")
    k.add_argument("--signal", choices=["traces", "logs", "metrics"], required=True)
    k.add_argument("--encoding", choices=["proto", "json"], required=True)
    k.add_argument("--count", type=int, default=10)
    k.add_argument("--bad", action="store_true")
    args = ap.parse_args()
    {"sdk": sdk, "kafka": kafka}[args.cmd](args)


if __name__ == "__main__":
    main()
