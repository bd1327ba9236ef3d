//! Every file in `pipelines/` validates, and a broken file gets every problem reported with
//! its location.

use vigil_config::parse;
use vigil_pipeline::SourceKind;

#[test]
fn every_pipeline_file_validates() {
    let dir = vigil_core::manifest_dir!().join("../../pipelines");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            // Only defaults: the files must validate on a machine with nothing set.
            if let Err(e) = parse(&text, &path.display().to_string(), |_| None) {
                panic!("{e}");
            }
            n += 1;
        }
    }
    assert!(n > 0, "no pipeline files found in {}", dir.display());
}

#[test]
fn deals_pipeline_promotes_the_seed_fields_and_reads_the_environment() {
    let text =
        std::fs::read_to_string(vigil_core::manifest_dir!().join("../../pipelines/deals.toml"))
            .unwrap();
    let env = |k: &str| (k == "VIGIL_ARCHIVE").then(|| "s3://bucket/vigil".to_string());
    let p = parse(&text, "deals.toml", env).unwrap();
    assert_eq!(p.archive.url, "s3://bucket/vigil");
    let promoted: Vec<_> = p
        .log_schema
        .promoted()
        .iter()
        .map(|f| (f.column.as_str(), f.field_type.name()))
        .collect();
    assert!(promoted.contains(&("status_code", "int32")));
    assert!(promoted.contains(&("processing_time_ms", "float64")));
    assert_eq!(p.retention.hot.as_secs(), 7 * 86_400);
    assert_eq!(p.retention.warm.as_secs(), 30 * 86_400);
    assert_eq!(p.retention.cold.as_secs(), 365 * 86_400);
}

#[test]
fn reports_every_problem_with_its_line() {
    let text = r#"
[pipeline]
name = "broken"
colour = "red"

[[sources]]
type = "file"
kind = "logz"
paths = ["a.ndjson"]
pathz = ["b"]

[[sources]]
type = "carrier-pigeon"

[[sources]]
type = "generator"
duration = "forever"
incidents = ["errors:nobody@1m+1m"]

[schema.logs.fields]
"additional_data.status_code" = "int33"
"service" = "string"

[archive]
url = "${NOT_SET}"

[archive.flush]
interval = "soon"

[retention]
hot = "30d"
warm = "7d"

[detect]
trace_timeout = "0s"
correlation_window = "a while"
"#;
    let err = parse(text, "broken.toml", |_| None).unwrap_err();
    let lines: Vec<(usize, &str)> = err
        .problems
        .iter()
        .map(|p| (p.line, p.message.as_str()))
        .collect();
    let has = |line: usize, needle: &str| {
        assert!(
            lines.iter().any(|(l, m)| *l == line && m.contains(needle)),
            "no problem on line {line} containing {needle:?} in:\n{err}"
        )
    };
    has(4, "unknown key `colour`");
    has(8, "unknown record kind `logz`");
    has(10, "unknown key `pathz`");
    has(13, "unknown source type `carrier-pigeon`");
    has(17, "invalid duration `forever`");
    has(18, "unknown service `nobody`");
    has(21, "unknown field type `int33`");
    has(22, "`service` is a field every log record has");
    has(25, "`NOT_SET` is not set");
    has(28, "invalid duration `soon`");
    has(31, "hot ≤ warm ≤ cold");
    has(35, "`detect.trace_timeout` must be longer than 0");
    has(36, "invalid duration `a while`");
    assert!(err.to_string().starts_with("broken.toml: "), "{err}");
}

#[test]
fn correlation_is_on_by_default_and_can_be_turned_off() {
    let on = parse("[[sources]]\ntype = \"generator\"\n", "g.toml", |_| None).unwrap();
    let c = on.detect.correlation.expect("on by default");
    assert_eq!(c.trace_timeout.as_secs(), 10);
    assert_eq!((c.window.as_secs(), c.incident_gap.as_secs()), (60, 600));
    let text = "[[sources]]\ntype = \"generator\"\n[detect]\ncorrelate = false\n";
    let off = parse(text, "g.toml", |_| None).unwrap();
    assert_eq!(off.detect.correlation, None);
}

#[test]
fn a_default_service_is_read_and_an_empty_one_refused() {
    let text = "[[sources]]\ntype = \"generator\"\n[decode]\ndefault_service = \"checkout\"\ncoerce = true\n";
    let p = parse(text, "g.toml", |_| None).unwrap();
    assert_eq!(p.decode.default_service.as_deref(), Some("checkout"));
    assert!(p.decode.coerce);
    let none = parse("[[sources]]\ntype = \"generator\"\n", "g.toml", |_| None).unwrap();
    assert_eq!(none.decode.default_service, None);
    let text = "[[sources]]\ntype = \"generator\"\n[decode]\nmax_past = \"never\"\ndefault_service = \" \"\n";
    let err = parse(text, "g.toml", |_| None).unwrap_err();
    let lines: Vec<_> = err
        .problems
        .iter()
        .map(|p| (p.line, p.message.as_str()))
        .collect();
    assert!(
        lines
            .iter()
            .any(|(l, m)| *l == 5 && m.contains("must name a service")),
        "{err}"
    );
    assert!(
        lines.iter().any(|(l, m)| *l == 4 && m.contains("`never`")),
        "{err}"
    );
}

#[test]
fn a_member_of_the_record_itself_can_be_promoted() {
    let text = "[[sources]]\ntype = \"generator\"\n[schema.logs.fields]\nlatency_ms = \"float64\"\n\"additional_data.latency_ms\" = { type = \"float64\", column = \"ad_latency\" }\n";
    let p = parse(text, "g.toml", |_| None).unwrap();
    let promoted: Vec<_> = (p.log_schema.promoted().iter())
        .map(|f| (f.path(), f.column.as_str()))
        .collect();
    assert!(
        promoted.contains(&("latency_ms".into(), "latency_ms")),
        "{promoted:?}"
    );
    assert!(
        promoted.contains(&("additional_data.latency_ms".into(), "ad_latency")),
        "{promoted:?}"
    );
}

#[test]
fn syntax_errors_are_located() {
    let err = parse("[pipeline\nname = 1\n", "x.toml", |_| None).unwrap_err();
    assert_eq!(err.problems[0].line, 1, "{err}");
}

#[test]
fn generator_source_is_configured_from_the_file() {
    let text = r#"
[[sources]]
type = "generator"
seed = 7
start = "2024-03-01T00:00:00Z"
duration = "2h"
rate = 50.0
incidents = ["cpu:database@10m+20m"]
"#;
    let p = parse(text, "g.toml", |_| None).unwrap();
    let SourceKind::Generator { config, realtime } = &p.sources[0].kind else {
        panic!()
    };
    assert_eq!((config.seed, config.rate, *realtime), (7, 50.0, false));
    assert_eq!(config.duration.as_secs(), 7200);
    assert_eq!(config.incidents.len(), 1);
}

#[test]
fn deals_pipeline_takes_its_kafka_settings_from_the_environment() {
    let text =
        std::fs::read_to_string(vigil_core::manifest_dir!().join("../../pipelines/deals.toml"))
            .unwrap();
    let kafka_of = |p: &vigil_pipeline::Pipeline| match &p.sources[0].kind {
        SourceKind::Kafka(k) => k.clone(),
        other => panic!("expected a kafka source, got {other:?}"),
    };
    let defaults = kafka_of(&parse(&text, "deals.toml", |_| None).unwrap());
    assert_eq!(defaults.consumer.brokers, "localhost:9092");
    assert_eq!(defaults.consumer.group_id, "vigil");
    let topics: Vec<_> = defaults
        .topics
        .iter()
        .map(|(t, k)| (t.as_str(), k.table()))
        .collect();
    assert_eq!(
        topics,
        [("telemetry.logs", "logs"), ("telemetry.metrics", "metrics")]
    );

    let env = |k: &str| {
        Some(
            match k {
                "KAFKA_BROKERS" => "b1:9092,b2:9092",
                "LOGS_TOPIC" => "prod.logs",
                "METRICS_TOPIC" => "prod.metrics",
                "VIGIL_GROUP_ID" => "vigil-eu",
                "KAFKA_SECURITY_PROTOCOL" => "sasl_ssl",
                _ => return None,
            }
            .to_string(),
        )
    };
    let k = kafka_of(&parse(&text, "deals.toml", env).unwrap());
    assert_eq!(k.consumer.brokers, "b1:9092,b2:9092");
    assert_eq!(k.consumer.group_id, "vigil-eu");
    assert_eq!(k.topics[0].0, "prod.logs");
    assert_eq!(k.topics[1].0, "prod.metrics");
    assert_eq!(k.consumer.properties["security.protocol"], "sasl_ssl");
}

#[test]
fn kafka_properties_vigil_manages_are_rejected_with_their_line() {
    let text = r#"
[[sources]]
type = "kafka"
brokers = "localhost:9092"
topics = [{ name = "t", kind = "logs" }, { name = "t", kind = "metrics" }]
start_from = "middle"

[sources.properties]
"enable.auto.commit" = true
"partition.assignment.strategy" = "cooperative-sticky"
"fetch.min.bytes" = 1
"#;
    let e = parse(text, "k.toml", |_| None).unwrap_err().to_string();
    assert!(e.contains("k.toml:5:"), "{e}");
    assert!(e.contains("topic `t` is listed twice"), "{e}");
    assert!(e.contains("`start_from` is `middle`"), "{e}");
    assert!(e.contains("k.toml:9:"), "{e}");
    assert!(e.contains("enable.auto.commit"), "{e}");
    assert!(e.contains("partition.assignment.strategy"), "{e}");
    assert!(!e.contains("fetch.min.bytes"), "{e}");
}

/// A pipeline of one rule on the generator, with `extra` settings appended to the rule (its
/// tenth line on).
fn one_rule(extra: &str) -> String {
    format!(
        "[[sources]]\ntype = \"generator\"\n[[rules]]\nname = \"e\"\ntable = \"logs\"\n\
         window = \"1m\"\nsignal = \"count(*)\"\ncondition = \"> 1\"\nseverity = \"P3\"\n{extra}"
    )
}

#[test]
fn a_rule_reading_a_field_not_promoted_is_told_how_to_promote_it() {
    let text = "[[sources]]\ntype = \"generator\"\n[[rules]]\nname = \"slow\"\ntable = \"logs\"\n\
                window = \"1m\"\nsignal = \"avg(latency_ms)\"\ncondition = \"> 1\"\nseverity = \"P3\"\n";
    let err = parse(text, "r.toml", |_| None).unwrap_err().to_string();
    assert!(err.contains("No field named latency_ms"), "{err}");
    assert!(
        err.contains("`latency_ms = \"float64\"` for a member of the record"),
        "{err}"
    );
    // Promoted, the same rule plans.
    let promoted = format!("{text}[schema.logs.fields]\nlatency_ms = \"float64\"\n");
    parse(&promoted, "r.toml", |_| None).unwrap();
}

#[test]
fn keep_firing_for_is_read_and_defaults_to_zero() {
    let p = parse(&one_rule("keep_firing_for = \"10m\"\n"), "r.toml", |_| None).unwrap();
    assert_eq!(p.rules[0].keep_firing_for.as_secs(), 600);
    let p = parse(&one_rule(""), "r.toml", |_| None).unwrap();
    assert!(p.rules[0].keep_firing_for.is_zero());
    let err = parse(&one_rule("keep_firing_for = \"soon\"\n"), "r.toml", |_| {
        None
    })
    .unwrap_err();
    assert_eq!(err.problems[0].line, 10, "{err}");
}

#[test]
fn a_rule_watches_a_symptom_unless_it_says_cause() {
    assert!(!parse(&one_rule(""), "r.toml", |_| None).unwrap().rules[0].cause);
    let p = parse(&one_rule("cause = true\n"), "r.toml", |_| None).unwrap();
    assert!(p.rules[0].cause);
    assert!(parse(&one_rule("cause = \"yes\"\n"), "r.toml", |_| None).is_err());
}

#[test]
fn distributed_detection_needs_kafka_and_names_its_topic_after_the_pipeline() {
    let kafka = "[pipeline]\nname = \"p\"\n[[sources]]\ntype = \"kafka\"\nbrokers = \"b:9092\"\n\
                 topics = [{ name = \"t\", kind = \"logs\" }]\n[detect]\n";
    let off = parse(kafka, "k.toml", |_| None).unwrap();
    assert_eq!(off.detect.partials_topic, None, "off by default");
    let on = parse(&format!("{kafka}distributed = true\n"), "k.toml", |_| None).unwrap();
    assert_eq!(on.detect.partials_topic.as_deref(), Some("p.partials"));
    let named = format!("{kafka}distributed = true\npartials_topic = \"x\"\n");
    let named = parse(&named, "k.toml", |_| None).unwrap();
    assert_eq!(named.detect.partials_topic.as_deref(), Some("x"));
    let text = "[[sources]]\ntype = \"generator\"\n[detect]\ndistributed = true\n";
    let err = parse(text, "g.toml", |_| None).unwrap_err();
    assert!(err.to_string().contains("needs a Kafka source"), "{err}");
}
