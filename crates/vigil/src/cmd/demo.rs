//! `vigil demo`: the embedded default. One hour of the deals system with token-service failing
//! for 15 minutes, archived locally, then the questions an operator would ask first.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use vigil_core::schema::LogSchema;
use vigil_core::time::format_rfc3339;
use vigil_pipeline::{Pipeline, SourceConfig, SourceKind};
use vigil_query::{Engine, Format, render};
use vigil_store::TableSpec;

use crate::cli::DemoArgs;
use crate::output::{Progress, summary_line};

/// Marks a directory as a demo archive that `vigil demo` may replace.
const MARKER: &str = ".vigil-demo";
const INCIDENT: &str = "errors:token-service@30m+15m*0.4";
/// The seed's alerts, as pipelines/deals.toml declares them: the demo runs them too.
const DEALS: &str = include_str!("../../../../pipelines/deals.toml");

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    prepare(Path::new(&args.archive))?;
    let mut pipeline = Pipeline::new("demo");
    pipeline.archive.url = args.archive.clone();
    let config = vigil_gen::Config {
        seed: args.seed,
        rate: args.rate,
        duration: Duration::from_secs(3600),
        incidents: vec![INCIDENT.parse().map_err(anyhow::Error::msg)?],
        ..Default::default()
    };
    let deals = vigil_config::parse(DEALS, "pipelines/deals.toml", |_| None)
        .map_err(|e| anyhow::anyhow!("the embedded deals.toml: {e}"))?;
    pipeline.rules = deals.rules;
    pipeline.detect.allowed_lateness = deals.detect.allowed_lateness;
    let anomalies = Path::new(&args.archive).join("anomalies.ndjson");
    pipeline.detect.anomalies_file = Some(anomalies.clone());
    let start = vigil_core::time::format_rfc3339(config.start_micros);
    pipeline.sources = vec![SourceConfig {
        name: "generator".into(),
        kind: SourceKind::Generator {
            config,
            realtime: false,
        },
    }];
    println!(
        "vigil demo: one hour of the deals system from {start} (seed {}),",
        args.seed
    );
    println!("            token-service failing 40% of its calls from minute 30 to 45.\n");

    let rt = super::runtime()?;
    let opts = vigil_pipeline::RunOptions::default();
    let progress = Progress::start(opts.counters.clone(), None);
    let result = vigil_pipeline::run(&pipeline, &opts, &rt);
    progress.finish();
    let summary = result?;
    println!("generated and archived {}", summary_line(&summary));
    println!("archive: {}\n", args.archive);

    let archive = vigil_store::Archive::new(&args.archive, &Default::default())?;
    let engine = rt.block_on(Engine::open(&archive))?;
    let show = |title: &str, sql: &str| -> anyhow::Result<()> {
        let batches = rt
            .block_on(engine.sql(sql))
            .with_context(|| format!("demo query failed: {sql}"))?;
        println!("{title}\n{}\n", render(&batches, Format::Table)?);
        Ok(())
    };
    show(
        "Volume, errors and latency per service",
        "SELECT service, count(*) AS records, \
                sum(CASE WHEN level IN ('ERROR', 'CRITICAL') THEN 1 ELSE 0 END) AS errors, \
                round(100.0 * avg(CASE WHEN level IN ('ERROR', 'CRITICAL') THEN 1.0 ELSE 0.0 END), 2) AS error_pct, \
                round(approx_percentile_cont(processing_time_ms, 0.95), 1) AS p95_ms \
         FROM logs GROUP BY service ORDER BY records DESC",
    )?;
    show(
        "Error rate of token-service and availability of api-gateway, per 5 minutes",
        "SELECT date_bin(INTERVAL '5 minutes', timestamp) AS window_start, \
                round(100.0 * avg(CASE WHEN service = 'token-service' AND level = 'ERROR' THEN 1.0 \
                                       WHEN service = 'token-service' THEN 0.0 END), 2) AS token_error_pct, \
                round(100.0 * avg(CASE WHEN service = 'api-gateway' AND status_code < 500 THEN 1.0 \
                                       WHEN service = 'api-gateway' THEN 0.0 END), 2) AS gateway_availability_pct \
         FROM logs WHERE status_code IS NOT NULL GROUP BY 1 ORDER BY 1",
    )?;
    let origins = "SELECT service, sum(failing_traces) AS failing_traces, min(window_start) AS first_window \
                   FROM error_origin GROUP BY service ORDER BY failing_traces DESC";
    println!(
        "Where failing traces started (correlation: each failing trace assembled across services)"
    );
    println!("  vigil sql --archive {} \"{origins}\"", args.archive);
    show("", origins)?;
    show(
        "The dependency graph learned from traces (service_edges)",
        "SELECT caller, callee, sum(calls) AS calls, sum(errors) AS errors, \
                round(max(latency_p95_ms), 1) AS worst_p95_ms \
         FROM service_edges GROUP BY caller, callee ORDER BY caller, callee",
    )?;
    show(
        "Dead letters (the generator writes none; try `vigil ingest` on a bad file)",
        "SELECT count(*) AS dead_letters FROM dead_letters",
    )?;
    if let Some(trace) = print_alerts(&anomalies)? {
        println!(
            "Next: one failing trace across services, as a tree:\n  vigil trace --archive {} {trace}",
            args.archive
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The alerts the seed's rules raised, one line per event, then their incidents. Returns a
/// sample trace id of the last incident.
fn print_alerts(path: &Path) -> anyhow::Result<Option<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    println!(
        "Alerts from the seed's rules (pipelines/deals.toml), as a Kafka pipeline publishes them; all in {} and the `anomalies` table",
        path.display()
    );
    let events: Vec<vigil_detect::AnomalyEvent> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    if events.is_empty() {
        println!("  none\n");
        return Ok(None);
    }
    for e in &events {
        let value = e.value.map_or("no data".into(), |v| format!("{v:.3}"));
        let at = format_rfc3339(e.ends_at.unwrap_or(e.detected_at));
        println!(
            "  {:<8} {} {:<22} {:<14} value {value:<9} since {} (at {at})",
            e.status.to_string(),
            e.severity.name(),
            e.rule,
            e.service,
            format_rfc3339(e.starts_at)
        );
    }
    println!();
    // Each incident as its latest event describes it.
    let mut incidents: Vec<vigil_detect::IncidentView> = Vec::new();
    for e in &events {
        let Some(view) = &e.incident else { continue };
        match incidents.iter_mut().find(|k| k.id == view.id) {
            Some(k) => *k = view.clone(),
            None => incidents.push(view.clone()),
        }
    }
    println!("Incidents (anomalies connected in the dependency graph, grouped)");
    for i in &incidents {
        println!(
            "  {}: root cause {} (confidence {:.2}), {} alert(s) on {}",
            i.id,
            i.root_cause_service,
            i.confidence,
            i.related.len(),
            i.services.join(", ")
        );
    }
    println!();
    Ok(incidents
        .last()
        .and_then(|i| i.evidence.sample_trace_ids.first().cloned()))
}

/// Makes `root` ready for a fresh demo archive. An earlier demo archive is replaced; any
/// other non-empty directory is left alone.
fn prepare(root: &Path) -> anyhow::Result<()> {
    if root.exists() {
        let empty = std::fs::read_dir(root)?.next().is_none();
        if !empty && !root.join(MARKER).exists() {
            anyhow::bail!(
                "{} exists and is not a vigil demo archive; pass --archive to put the demo elsewhere",
                root.display()
            );
        }
        let _ = std::fs::remove_file(root.join("anomalies.ndjson"));
        for spec in TableSpec::all(&LogSchema::default()) {
            let dir = root.join(&spec.name);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
        }
    }
    std::fs::create_dir_all(root)?;
    std::fs::write(
        root.join(MARKER),
        "created by `vigil demo`; the next `vigil demo` run replaces this archive\n",
    )?;
    Ok(())
}
