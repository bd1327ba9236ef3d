//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// vigil: a high-throughput log and metric stream processor.
///
/// Decodes structured JSON logs and metrics at SIMD speed into Apache Arrow, archives them as
/// Delta Lake tables on object storage, and answers SQL over the archive.
#[derive(Debug, Parser)]
#[command(
    name = "vigil",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). VIGIL_LOG overrides, e.g. VIGIL_LOG=vigil=debug.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// How log lines are written on stderr: `text` for people, `json` for a log collector
    /// (one object per line in the seed's log format, service = vigil).
    #[arg(
        long,
        value_enum,
        env = "VIGIL_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode NDJSON files (or stdin) into the archive.
    Ingest(IngestArgs),
    /// Run a read-only SQL query over the archive.
    Sql(SqlArgs),
    /// Run a pipeline file.
    Run(RunArgs),
    /// Check a pipeline file and report every problem with its location.
    Validate(ValidateArgs),
    /// Generate an hour of telemetry with an incident, archive it, and show what vigil sees.
    Demo(DemoArgs),
    /// Write generated telemetry of the deals system as NDJSON files.
    Generate(GenerateArgs),
    /// Send NDJSON lines to a Kafka topic, one message per line.
    Produce(ProduceArgs),
    /// Score one metric series with an anomaly detector (NAB result format).
    DetectSeries(DetectSeriesArgs),
    /// Run a pipeline's rules over recorded telemetry, in event-time order, and write every
    /// anomaly event they would have published.
    Backtest(BacktestArgs),
    /// Show one trace across services as a tree, read from the archive.
    Trace(TraceArgs),
    /// Serve SQL over the archive to analysts: HTTP (`POST /sql`) and the Postgres wire.
    Serve(ServeArgs),
    /// Move archive days on (hot → warm → cold), delete what is past retention, and vacuum
    /// removed files after their grace period. One pass at a time per archive.
    Maintain(MaintainArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub archive: ArchiveArgs,

    /// HTTP address: `POST /sql` with the query as the body (JSON, or CSV / Arrow IPC by
    /// `Accept`), `GET /healthz`. The default when neither --http nor --pg is given is
    /// 127.0.0.1:8080.
    #[arg(long)]
    pub http: Option<String>,

    /// Postgres wire address, for psql, Grafana and any Postgres driver (e.g.
    /// 127.0.0.1:5432). Clients log in as VIGIL_SQL_USER with VIGIL_SQL_PASSWORD
    /// (SCRAM-SHA-256).
    #[arg(long)]
    pub pg: Option<String>,

    /// The bearer token HTTP clients must send (`Authorization: Bearer TOKEN`).
    #[arg(long, env = "VIGIL_SQL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The user Postgres clients log in as; the password is read from VIGIL_SQL_PASSWORD
    /// only, never from the command line.
    #[arg(long, env = "VIGIL_SQL_USER")]
    pub user: Option<String>,

    /// Serve without authentication. Only where the network itself is trusted.
    #[arg(long)]
    pub insecure_no_auth: bool,

    /// Rows one answer may hold; a larger result fails and asks for a LIMIT.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_rows: usize,

    /// Longest a query may run, its answer included; reading the archive's state for it is
    /// bounded by it too.
    #[arg(long, default_value = "5m")]
    pub timeout: String,

    /// Memory for a query's sorts, joins and aggregations.
    #[arg(long, default_value = "1GiB")]
    pub memory: String,

    /// After SIGTERM or Ctrl-C: how long statements already running may take to finish (no new
    /// connection is accepted meanwhile). Keep it under Kubernetes' terminationGracePeriodSeconds.
    #[arg(
        long,
        env = "VIGIL_GRACE",
        default_value = "25s",
        value_name = "DURATION"
    )]
    pub grace: String,
}

#[derive(Debug, Args)]
pub struct MaintainArgs {
    /// The pipeline file: its archive, tiers, retention and logs schema.
    #[arg(long)]
    pub pipeline: PathBuf,

    /// Count the ages back from this time (RFC 3339) instead of the clock: for tests and
    /// backfills. Vacuum's grace is always on the clock.
    #[arg(long)]
    pub now: Option<String>,

    /// One pass, then exit. Without it, a pass every `--every` until stopped.
    #[arg(long)]
    pub once: bool,

    /// Say what one pass would do now (rows to move, files to delete), change nothing, exit.
    #[arg(long)]
    pub dry_run: bool,

    /// Time between passes.
    #[arg(long, default_value = "5m")]
    pub every: String,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    #[command(flatten)]
    pub archive: ArchiveArgs,

    /// Output: `text` (a tree) or `json` (the same tree, nested).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,

    /// The trace id, as logged in `trace_id`.
    pub trace_id: String,
}

/// Archive location shared by several commands.
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Archive root: a path, file:// URL or s3:// URL.
    #[arg(long, env = "VIGIL_ARCHIVE", default_value = "./vigil-data")]
    pub archive: String,

    /// Object-store option for s3:// archives, KEY=VALUE (e.g. aws_endpoint=http://127.0.0.1:9000). Repeatable.
    #[arg(long = "storage-option", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub storage_options: Vec<(String, String)>,
}

/// `--threads`: 1 or more (0 was taken and meant one, silently).
fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("at least 1 (leave it out for one per core)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_service(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("a service name, not empty".into())
    } else {
        Ok(s.to_string())
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub archive: ArchiveArgs,

    /// What the input holds.
    #[arg(long, default_value = "logs", value_parser = ["logs", "metrics"])]
    pub kind: String,

    /// Take the log schema, decoder limits, flush policy and, unless --archive (or
    /// VIGIL_ARCHIVE) is given, the archive from this pipeline file.
    #[arg(long)]
    pub pipeline: Option<PathBuf>,

    /// Whether --archive or VIGIL_ARCHIVE was given, rather than its default.
    #[arg(skip)]
    pub archive_given: bool,

    /// Promote an additional_data field to a typed column, e.g. `status_code=int32`.
    /// Repeatable. Without --pipeline or --field: status_code=int32, processing_time_ms=float64.
    /// Members of the record itself (flat logs) are promoted by a pipeline file's
    /// [schema.logs.fields], e.g. pipelines/applogs.toml.
    #[arg(long = "field", value_name = "KEY=TYPE", value_parser = parse_key_value)]
    pub fields: Vec<(String, String)>,

    /// Worker threads (default: the machine's cores): the files decode on this many threads
    /// and each commit encodes its Parquet column chunks on as many; 1 runs everything on one
    /// thread.
    #[arg(long, value_parser = parse_threads)]
    pub threads: Option<usize>,

    /// Rows buffered per table before a commit.
    #[arg(long)]
    pub max_rows: Option<usize>,

    /// The service of records that name none (logs of pino, zap or logrus, one file per
    /// service); without it such records are dead letters.
    #[arg(long, value_name = "NAME", value_parser = parse_service)]
    pub service: Option<String>,

    /// NDJSON files, plain or gzip. Reads stdin when none are given, or for `-`.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub archive: ArchiveArgs,

    /// Output format.
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
    pub format: String,

    /// Rows printed at most (a note on stderr says when there were more); 0: all of them.
    #[arg(long, default_value_t = 10_000)]
    pub max_rows: usize,

    /// The query is stopped after this long, e.g. `30s`, `10m`; opening the archive is bounded
    /// by it too.
    #[arg(long, default_value = "5m")]
    pub timeout: String,

    /// Memory for sorts, joins and aggregations, e.g. `512MiB`, `4GiB`; a query needing more
    /// fails instead of exhausting the machine.
    #[arg(long, default_value = "1GiB")]
    pub memory: String,

    /// The query: SELECT, WITH, EXPLAIN, SHOW or DESCRIBE over logs, metrics, dead_letters,
    /// anomalies.
    /// May start with an SQL comment (`-- ...`).
    #[arg(allow_hyphen_values = true)]
    pub query: String,
}

impl Cli {
    /// Records which defaults the command line left in place where a command needs to know
    /// (`ingest --pipeline` takes the pipeline's archive unless one was given).
    pub fn note_defaults(&mut self, matches: &clap::ArgMatches) {
        if let Command::Ingest(args) = &mut self.command
            && let Some(("ingest", m)) = matches.subcommand()
        {
            args.archive_given = !matches!(
                m.value_source("archive"),
                None | Some(clap::parser::ValueSource::DefaultValue)
            );
        }
    }
}

/// The form of vigil's own log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Plain lines for people.
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline file.
    #[arg(long, short)]
    pub pipeline: PathBuf,

    /// Worker threads (default: the machine's cores): files and stdin decode on this many
    /// threads, each commit encodes its Parquet column chunks on as many, and every other
    /// source runs on a thread of its own; 1 runs everything on one thread.
    #[arg(long, value_parser = parse_threads)]
    pub threads: Option<usize>,

    /// Kafka sources: stop (after committing) once every assigned partition is read up to
    /// the end it had when assigned, instead of running until Ctrl-C / SIGTERM. For backfills.
    #[arg(long)]
    pub until_end: bool,

    /// Serve GET /metrics (Prometheus), /healthz and /readyz here, e.g. 0.0.0.0:9090.
    #[arg(long, env = "VIGIL_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// After SIGTERM or Ctrl-C: how long to flush and commit what is in flight before exiting
    /// regardless (uncommitted input is read again on the next start). Keep it under
    /// Kubernetes' terminationGracePeriodSeconds.
    #[arg(
        long,
        env = "VIGIL_GRACE",
        default_value = "25s",
        value_name = "DURATION"
    )]
    pub grace: String,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Kafka bootstrap servers, host:port[,host:port...].
    #[arg(long, env = "KAFKA_BROKERS")]
    pub brokers: String,

    /// Topic to send to.
    #[arg(long, short)]
    pub topic: String,

    /// Top-level string field whose value becomes the message key (e.g. trace_id); lines
    /// without it, or that are not JSON objects, are sent without a key.
    #[arg(long, value_name = "FIELD")]
    pub key: Option<String>,

    /// librdkafka producer property, KEY=VALUE (e.g. security.protocol=SASL_SSL). Repeatable.
    #[arg(long = "property", short = 'X', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub properties: Vec<(String, String)>,

    /// NDJSON files, plain or gzip; standard input when none are given, or for `-`.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The pipeline file.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo archive goes. An existing demo archive there is replaced.
    #[arg(long, default_value = "./vigil-data")]
    pub archive: String,

    /// Random seed of the generated telemetry.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Requests per second entering the gateway.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Where the log lines go (`-` for stdout; `.gz` compresses).
    #[arg(long)]
    pub logs: Option<PathBuf>,

    /// Where the metric samples go (`-` for stdout; `.gz` compresses).
    #[arg(long)]
    pub metrics: Option<PathBuf>,

    /// Event time of the first record, RFC 3339.
    #[arg(long, default_value = "2025-06-02T09:00:00Z")]
    pub start: String,

    /// Event-time span, e.g. 10m, 1h, 1d.
    #[arg(long, default_value = "1h")]
    pub duration: String,

    /// Requests per second entering the gateway.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,

    /// Random seed; the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Inject an incident, `kind:service@start+duration[*intensity]`, e.g.
    /// `errors:token-service@30m+15m`. Kinds: errors, outage, latency, cpu, traffic-drop,
    /// network (added time on the wire to the service; see --client-spans), exception
    /// (failures the service does not log: only its callers show them). Repeatable.
    #[arg(long = "incident")]
    pub incidents: Vec<String>,

    /// Log a client span in the caller around every call to another service, as
    /// OpenTelemetry instrumentation does (`HTTP <op>`, its child the callee's span), with
    /// the time on the wire between the two.
    #[arg(long)]
    pub client_spans: bool,

    /// The system simulated: `deals` (the monitoring overview's six services) or `mesh:N`, a
    /// mesh of N services (8 to 500: `gateway`, `edge-NN`, `svc-NN`, `backend-NN`, `db-NN`;
    /// endpoints three to five services deep). The same N gives the same mesh.
    #[arg(long, default_value = "deals")]
    pub topology: String,

    /// Stop after this many log lines, whatever the duration.
    #[arg(long)]
    pub max_logs: Option<u64>,
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The pipeline file whose `[[rules]]` run (its sources are not used).
    #[arg(long, short)]
    pub pipeline: PathBuf,

    /// Recorded log records, NDJSON (plain or gzip; `-` for stdin).
    #[arg(long)]
    pub logs: Option<PathBuf>,

    /// Recorded metric samples, NDJSON (plain or gzip; `-` for stdin).
    #[arg(long)]
    pub metrics: Option<PathBuf>,

    /// Recorded spans: OTLP/JSON, one `ExportTraceServiceRequest` per line (what the
    /// OpenTelemetry collector's file exporter writes), plain or gzip (`-` for stdin). Traces are then
    /// assembled from the spans, not the logs.
    #[arg(long)]
    pub spans: Option<PathBuf>,

    /// Where the anomaly events go, one JSON object per line.
    #[arg(long)]
    pub anomalies: PathBuf,

    /// Skip correlation (traces, incidents) whatever the pipeline says: events carry no
    /// incident. For measuring what correlation costs.
    #[arg(long)]
    pub no_correlate: bool,

    /// Threads: more than 1 decodes JSON lines inputs on that many threads while the rules
    /// run on this one (default: the machine's cores).
    #[arg(long, value_parser = parse_threads)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct DetectSeriesArgs {
    /// CSV with a header and columns `timestamp,value`; timestamps like `2014-04-10 00:02:00`
    /// or RFC 3339, in time order.
    #[arg(long)]
    pub input: PathBuf,

    /// Where to write `timestamp,value,anomaly_score`: the input's rows and timestamp text,
    /// each with its score in [0, 1].
    #[arg(long)]
    pub output: PathBuf,

    /// The detector.
    #[arg(long, value_enum, default_value_t = SeriesDetector::Ensemble)]
    pub detector: SeriesDetector,
}

/// A detector for `vigil detect-series`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeriesDetector {
    /// The resonance detector's score plus the baseline's evidence (NAB: the best of the
    /// three).
    Ensemble,
    /// Shapes clustered by adaptive resonance (after ARTime). It is told the file's range
    /// and length before the first sample, as NAB tells every detector; each sample is then
    /// scored without looking ahead.
    Resonance,
    /// The baseline detector of `condition = "baseline"` rules: knows nothing in advance,
    /// as on a live stream.
    Baseline,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// `docs/cli.md`: every command's `--help`, generated from the doc comments above, so the
    /// reference of flags and the environment variables they read cannot drift.
    /// `VIGIL_BLESS=1 cargo test --workspace the_cli_reference` writes it again.
    #[test]
    fn the_cli_reference_is_generated_from_the_flags() {
        // The environment's values never show: the reference is the same on every machine.
        let hide = |a: clap::Arg| a.hide_env_values(true);
        let mut cli = Cli::command().term_width(100).mut_args(hide);
        for sub in cli.get_subcommands_mut() {
            *sub = sub.clone().mut_args(hide);
        }
        cli.build();
        let mut md = String::from(
            "# Command-line reference\n\nGenerated from the flags' doc comments by a test in \
             `crates/vigil/src/cli.rs`; do not edit by hand (`VIGIL_BLESS=1 cargo test --workspace \
             the_cli_reference` writes it again). The pipeline file's keys are in `docs/pipeline.md`.\n\n\
             ```text\n",
        );
        md.push_str(&cli.render_long_help().to_string());
        md.push_str("```\n");
        for sub in cli.get_subcommands_mut() {
            if sub.get_name() == "help" {
                continue;
            }
            md.push_str(&format!("\n## `vigil {}`\n\n```text\n", sub.get_name()));
            md.push_str(&sub.render_long_help().to_string());
            md.push_str("```\n");
        }
        let md: String = md
            .lines()
            .map(|l| l.trim_end().to_string() + "\n")
            .collect();
        let path = vigil_core::manifest_dir!().join("../../docs/cli.md");
        if std::env::var_os("VIGIL_BLESS").is_some() {
            std::fs::write(&path, &md).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == md,
            "docs/cli.md is stale: run `VIGIL_BLESS=1 cargo test --workspace the_cli_reference` and commit it"
        );
    }
}
