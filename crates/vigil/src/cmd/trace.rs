//! `vigil trace`

use std::process::ExitCode;

use vigil_query::{Engine, read_trace};

use crate::cli::TraceArgs;

pub fn run(args: TraceArgs) -> anyhow::Result<ExitCode> {
    let archive = args.archive.open()?;
    let rt = super::runtime()?;
    let trace = rt.block_on(async {
        let engine = Engine::open(&archive).await?;
        read_trace(&engine, &args.trace_id).await
    })?;
    if args.format == "json" {
        println!("{}", serde_json::to_string(&trace)?);
    } else {
        print!("{}", trace.render());
    }
    Ok(if trace.records == 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
