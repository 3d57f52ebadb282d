//! `porthole users add|list|disable`.

use std::process::ExitCode;

use clap::Subcommand;

use super::{ConfigArg, open_db, runtime};

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Add a user; the password is read from standard input (one line).
    Add {
        /// Sign-in name (a-z, 0-9, '.', '_', '-').
        name: String,
        /// Roles, comma-separated: admin, operator, auditor.
        #[arg(long)]
        role: String,
    },
    /// List users.
    List,
    /// Disable a user: they cannot sign in and their sign-ins stop working at once.
    Disable {
        /// The user.
        name: String,
    },
}

pub(crate) fn run_users(config: &ConfigArg, command: UsersCommand) -> ExitCode {
    use crate::gateway::identity::users;
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let db = match open_db(config).await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let result = match command {
            UsersCommand::Add { name, role } => {
                let roles = match users::parse_roles(&role) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("error: --role: {e}");
                        return ExitCode::from(2);
                    }
                };
                let defined = config.load().and_then(|c| {
                    crate::gateway::policy::Policy::from_config(&c.policy, c.source.as_deref())
                });
                let checked = defined.and_then(|policy| {
                    users::check_defined(&roles, &policy.role_names()).map_err(|e| e.to_string())
                });
                if let Err(e) = checked {
                    eprintln!("error: --role: {e}");
                    return ExitCode::from(2);
                }
                let mut line = String::new();
                if let Err(e) = std::io::stdin().read_line(&mut line) {
                    eprintln!("error: cannot read the password from standard input: {e}");
                    return ExitCode::FAILURE;
                }
                let password = line.trim_end_matches(['\n', '\r']);
                users::create(
                    &db,
                    &name,
                    password,
                    &roles,
                    &users::ChangedBy::command_line("users add"),
                )
                .await
                .map(|u| println!("added {} ({})", u.name, role_list(&u.roles)))
            }
            UsersCommand::List => users::list(&db).await.map_err(Into::into).map(|all| {
                for u in all {
                    let state = if u.disabled { "disabled" } else { "active" };
                    println!("{:<24} {:<24} {state}", u.name, role_list(&u.roles));
                }
            }),
            UsersCommand::Disable { name } => users::set_disabled(
                &db,
                &name,
                true,
                &users::ChangedBy::command_line("users disable"),
            )
            .await
            .map(|u| println!("disabled {}; their sign-ins stopped working", u.name)),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

pub(crate) fn role_list(roles: &[crate::gateway::identity::users::Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}
