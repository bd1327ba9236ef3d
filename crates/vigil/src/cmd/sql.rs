//! `vigil sql`

use std::process::ExitCode;

use vigil_query::{Engine, Format, render};

use crate::cli::SqlArgs;

pub fn run(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let format: Format = args.format.parse().map_err(anyhow::Error::msg)?;
    let archive = args.archive.open()?;
    let rt = super::runtime()?;
    let batches = rt.block_on(async {
        let engine = Engine::open(&archive).await?;
        engine.sql(&args.query).await
    })?;
    print!("{}", render(&batches, format)?);
    if format == Format::Table {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
