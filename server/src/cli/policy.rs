//! `porthole policy check`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{ConfigArg, runtime};

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Explain, rule by rule, whether USER may open a session on TARGET. Exit 0: allowed;
    /// 1: denied; 2: the check could not be made. The target's name, region and tags come
    /// from AWS (the configured [aws] settings) unless --name, --region or --tag is given.
    Check(PolicyCheckArgs),
}

/// Flags of `porthole policy check`.
#[derive(Debug, Args)]
pub(crate) struct PolicyCheckArgs {
    /// The user (their roles are read from the users table unless --roles is given).
    pub(crate) user: String,
    /// The target's instance id.
    pub(crate) target: String,
    /// The SSM document (default SSM-SessionManagerRunShell).
    #[arg(long)]
    pub(crate) document: Option<String>,
    /// A reason to check against the reason rules too.
    #[arg(long)]
    pub(crate) reason: Option<String>,
    /// A document parameter, NAME=VALUE (repeat for more, or for several values of a name).
    #[arg(long = "parameter", value_name = "NAME=VALUE")]
    pub(crate) parameters: Vec<String>,
    /// Check these roles (comma-separated) instead of the user's; no database needed.
    #[arg(long, value_name = "ROLE,...")]
    pub(crate) roles: Option<String>,
    /// The target's name (check offline, without asking AWS).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// The target's region (offline; default: the first configured region).
    #[arg(long)]
    pub(crate) region: Option<String>,
    /// The name of the target's account, `[[aws.accounts]]` (offline; default: none).
    #[arg(long)]
    pub(crate) account: Option<String>,
    /// A tag of the target, KEY=VALUE (offline; repeat for more).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub(crate) tags: Vec<String>,
}

pub(crate) fn run_policy(config: &ConfigArg, command: PolicyCommand) -> ExitCode {
    use crate::cli::policy_check as check;
    let PolicyCommand::Check(args) = command;
    let config = match config.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(runtime) = runtime() else {
        return ExitCode::from(2);
    };
    let request = check::CheckRequest {
        user: args.user,
        target: args.target,
        document: args.document,
        reason: args.reason,
        parameters: args.parameters,
        roles: args.roles,
        name: args.name,
        region: args.region,
        account: args.account,
        tags: args.tags,
    };
    match runtime.block_on(check::run(&config, &request)) {
        Ok(report) => {
            print!("{}", report.text);
            if report.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
