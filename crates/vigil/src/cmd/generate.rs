//! `vigil generate`

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::GenerateArgs;

pub fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    if args.logs.is_none() && args.metrics.is_none() {
        anyhow::bail!("nothing to write: pass --logs FILE and/or --metrics FILE");
    }
    let mut incidents = Vec::new();
    for i in &args.incidents {
        incidents.push(i.parse().map_err(anyhow::Error::msg)?);
    }
    let config = vigil_gen::Config {
        seed: args.seed,
        start_micros: vigil_core::time::parse_rfc3339_micros(args.start.as_bytes())
            .with_context(|| format!("--start {:?} is not an RFC 3339 timestamp", args.start))?,
        duration: vigil_core::units::parse_duration(&args.duration).map_err(anyhow::Error::msg)?,
        rate: args.rate,
        incidents,
        client_spans: args.client_spans,
        topology: args.topology.parse().map_err(anyhow::Error::msg)?,
        ..Default::default()
    };
    config.check()?;
    if let (Some(l), Some(m)) = (&args.logs, &args.metrics)
        && (l == m || super::same_file(l, m))
    {
        anyhow::bail!("--logs and --metrics are the same file: give each its own");
    }
    let mut logs = args.logs.as_deref().map(open).transpose()?;
    let mut metrics = args.metrics.as_deref().map(open).transpose()?;
    let mut generator = vigil_gen::Generator::new(config);
    let (mut lbuf, mut mbuf) = (Vec::new(), Vec::new());
    let mut lines = 0u64;
    while generator.next_tick(&mut lbuf, &mut mbuf) {
        if let Some(max) = args.max_logs {
            let mut keep = 0;
            for (i, _) in lbuf.iter().enumerate().filter(|(_, b)| **b == b'\n') {
                if lines >= max {
                    break;
                }
                lines += 1;
                keep = i + 1;
            }
            lbuf.truncate(keep);
        }
        if let Some(w) = logs.as_mut() {
            w.write_all(&lbuf)?;
        }
        if let Some(w) = metrics.as_mut() {
            w.write_all(&mbuf)?;
        }
        lbuf.clear();
        mbuf.clear();
        if args.max_logs.is_some_and(|m| lines >= m) {
            break;
        }
    }
    for w in [logs, metrics].into_iter().flatten() {
        finish(w)?;
    }
    Ok(ExitCode::SUCCESS)
}

enum Out {
    Plain(Box<dyn Write>),
    Gzip(Box<flate2::write::GzEncoder<BufWriter<File>>>),
}

impl Write for Out {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Plain(w) => w.write(b),
            Out::Gzip(w) => w.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Plain(w) => w.flush(),
            Out::Gzip(w) => w.flush(),
        }
    }
}

fn open(path: &Path) -> anyhow::Result<Out> {
    if path == Path::new("-") {
        return Ok(Out::Plain(Box::new(BufWriter::new(std::io::stdout()))));
    }
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let w = BufWriter::with_capacity(1 << 20, file);
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Out::Gzip(Box::new(flate2::write::GzEncoder::new(
            w,
            flate2::Compression::fast(),
        )))
    } else {
        Out::Plain(Box::new(w))
    })
}

fn finish(w: Out) -> anyhow::Result<()> {
    match w {
        Out::Plain(mut w) => w.flush()?,
        Out::Gzip(w) => {
            w.finish()?.flush()?;
        }
    }
    Ok(())
}
