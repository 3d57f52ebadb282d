//! `porthole audit verify|export`.

use std::process::ExitCode;

use clap::Subcommand;

use super::{ConfigArg, connect_existing, runtime};

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the hash chain and name the first row that was edited, deleted or reordered.
    ///
    /// Exit 0: intact (prints the rows checked and the head to keep elsewhere); 1: broken
    /// (prints the first bad row); 2: bad flags or configuration; 3: the database could not be
    /// read.
    Verify {
        /// A row id and hash kept from an earlier run (`ID:HASH`, as verify prints the head):
        /// that row must still be there, unchanged. Catches rows deleted from the end.
        #[arg(long, value_name = "ID:HASH")]
        anchor: Option<crate::gateway::store::audit::Anchor>,
    },
    /// Write the events to standard output, oldest first, for a SIEM.
    ///
    /// Exit 0: written; 1: writing failed; 2: bad flags or configuration; 3: the database
    /// could not be read.
    Export {
        /// Only events at or after this time: RFC 3339 (2026-01-02T15:04:05Z), a date
        /// (midnight UTC) or milliseconds since the Unix epoch.
        #[arg(long, value_name = "TIME", value_parser = crate::gateway::store::audit::parse_time)]
        since: Option<i64>,
        /// Only events before this time (same forms as --since).
        #[arg(long, value_name = "TIME", value_parser = crate::gateway::store::audit::parse_time)]
        until: Option<i64>,
        /// jsonl: one JSON object per line; csv: RFC 4180 with a header line.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
}

/// `porthole audit export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    Jsonl,
    Csv,
}

pub(crate) fn run_audit(config: &ConfigArg, command: AuditCommand) -> ExitCode {
    use crate::gateway::store::audit;
    if let AuditCommand::Export {
        since: Some(since),
        until: Some(until),
        ..
    } = command
        && until <= since
    {
        eprintln!(
            "error: --until must be later than --since (--since is inclusive, --until is not)"
        );
        return ExitCode::from(2);
    }
    if let Err(e) = config.load() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let Some(runtime) = runtime() else {
        return ExitCode::from(3);
    };
    runtime.block_on(async move {
        let db = match connect_existing(config).await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(3);
            }
        };
        match command {
            AuditCommand::Verify { anchor } => {
                match audit::verify_chain(&db, anchor.as_ref()).await {
                    Ok(report) => {
                        print!("{}", report.summary());
                        if report.broken.is_some() {
                            ExitCode::from(1)
                        } else {
                            ExitCode::SUCCESS
                        }
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(3)
                    }
                }
            }
            AuditCommand::Export {
                since,
                until,
                format,
            } => {
                let format = match format {
                    ExportFormat::Jsonl => audit::ExportFormat::Jsonl,
                    ExportFormat::Csv => audit::ExportFormat::Csv,
                };
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                match audit::export(&db, since, until, format, &mut out).await {
                    Ok(_) => ExitCode::SUCCESS,
                    // The reader stopped early (`| head`): not an error of ours.
                    Err(audit::ExportError::Io(e))
                        if e.kind() == std::io::ErrorKind::BrokenPipe =>
                    {
                        ExitCode::SUCCESS
                    }
                    Err(audit::ExportError::Io(e)) => {
                        eprintln!("error: writing the export: {e}");
                        ExitCode::FAILURE
                    }
                    Err(audit::ExportError::Db(e)) => {
                        eprintln!("error: {e}");
                        ExitCode::from(3)
                    }
                }
            }
        }
    })
}
