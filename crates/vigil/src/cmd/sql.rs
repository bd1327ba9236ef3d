//! `vigil sql`: streams the result, stopping at `--max-rows` and `--timeout`.

use std::io::IsTerminal;
use std::process::ExitCode;

use vigil_query::{Engine, Format, ResultWriter};

use crate::cli::SqlArgs;

pub fn run(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let format: Format = args.format.parse()?;
    let limits = super::query_limits(&args.timeout, &args.memory)?;
    let archive = args.archive.open()?;
    let rt = super::runtime()?;
    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let mut out = ResultWriter::new(format, stdout.lock(), terminal);
    let max_rows = if args.max_rows == 0 {
        usize::MAX
    } else {
        args.max_rows
    };
    let (shown, schema) = rt.block_on(async {
        let engine = Engine::open_with(&archive, limits).await?;
        let mut rows = engine.sql_stream(&args.query).await?;
        let schema = rows.schema();
        let mut shown = 0usize;
        while let Some(batch) = rows.next().await {
            let batch = batch?;
            let room = max_rows - shown;
            if batch.num_rows() > room {
                out.write(&batch.slice(0, room))?;
                // Stop the query rather than compute rows nobody will see.
                return Ok::<_, anyhow::Error>((Some(max_rows), schema));
            }
            shown += batch.num_rows();
            out.write(&batch)?;
        }
        Ok((None, schema))
    })?;
    out.finish(&schema)?;
    if let Some(n) = shown {
        eprintln!("(stopped at {n} rows, --max-rows; --max-rows 0 prints them all)");
    }
    Ok(ExitCode::SUCCESS)
}
