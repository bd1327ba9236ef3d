//! `vigil validate`

use std::process::ExitCode;

use vigil_pipeline::SourceKind;

use crate::cli::ValidateArgs;

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    match vigil_config::load(&args.file) {
        Ok(p) => {
            let sources: Vec<String> = p
                .sources
                .iter()
                .map(|s| {
                    let kind = match &s.kind {
                        SourceKind::File { .. } => "file",
                        SourceKind::Stdin { .. } => "stdin",
                        SourceKind::Generator { .. } => "generator",
                        SourceKind::Kafka(_) => "kafka",
                        SourceKind::Otlp(_) => "otlp",
                    };
                    format!("{} ({kind})", s.name)
                })
                .collect();
            println!(
                "{}: ok: pipeline `{}`, sources {}, {} promoted field{}, archive {}",
                args.file.display(),
                p.name,
                sources.join(", "),
                p.log_schema.promoted().len(),
                if p.log_schema.promoted().len() == 1 {
                    ""
                } else {
                    "s"
                },
                p.archive.url
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprint!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
