//! The configuration loader and the policy file reader on arbitrary text.
//!
//! Input layout: the first byte picks the reader (even: `Config::from_toml_and_env`, odd:
//! `Policy::from_file_bytes`); for the configuration, the rest up to a NUL byte is the file's
//! text and each later NUL-separated `NAME=VALUE` is an environment variable (only
//! `PORTHOLE_…` names count, as in a real run).
//!
//! Checks: nothing panics; an accepted configuration validates again and its debug output
//! never holds the signing key, the database URL or the AWS secret key (when they are long
//! enough to be told apart from other text); a refusal has words; an accepted policy answers a
//! decision for a user holding every role it defines (explained and rendered) without panic.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use porthole::gateway::config::Config;
use porthole::gateway::facts::{Grants, Role, Target, User};
use porthole::gateway::policy::{DEFAULT_DOCUMENT, Parameters, Policy};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if first % 2 == 0 {
        config(rest);
    } else {
        policy(rest);
    }
});

fn config(data: &[u8]) {
    let mut parts = data.split(|&b| b == 0);
    let Ok(text) = std::str::from_utf8(parts.next().unwrap_or_default()) else {
        return;
    };
    let env: Vec<(String, String)> = parts
        .filter_map(|p| std::str::from_utf8(p).ok())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    match Config::from_toml_and_env(text, env) {
        Ok(config) => {
            config.validate().unwrap();
            let shown = format!("{config:?}");
            let mut secrets = vec![
                config.auth.jwt_secret.expose().to_owned(),
                config.database.url.expose().to_owned(),
            ];
            if let Some(key) = &config.aws.secret_access_key {
                secrets.push(key.expose().to_owned());
            }
            for secret in secrets {
                // Short or common text may appear elsewhere by chance.
                if secret.len() >= 24 && !"[redacted]".contains(secret.as_str()) {
                    assert!(!shown.contains(&secret), "a secret in {shown}");
                }
            }
        }
        Err(e) => assert!(!e.to_string().trim().is_empty()),
    }
}

fn policy(data: &[u8]) {
    match Policy::from_file_bytes(Path::new("policy.toml"), data) {
        Ok(policy) => {
            let roles: Vec<Role> = policy
                .role_names()
                .iter()
                .filter_map(|name| Role::parse(name))
                .collect();
            let user = User {
                id: 1,
                name: "fuzz".into(),
                roles,
                disabled: false,
                grants: Grants::default(),
            };
            let target = Target {
                id: "i-0123456789abcdef0".into(),
                name: "web-1".into(),
                platform: "Linux".into(),
                ping_status: "Online".into(),
                region: "us-east-1".into(),
                tags: [("env".to_owned(), "prod".to_owned())].into_iter().collect(),
            };
            let parameters: Parameters = [("command".to_owned(), vec!["uptime".to_owned()])]
                .into_iter()
                .collect();
            let explanation = policy.explain(
                &user,
                &target,
                DEFAULT_DOCUMENT,
                &parameters,
                Some("INC-1 looking at the disk"),
            );
            let _ = explanation.render();
            let _ = explanation.outcome();
            let _ = policy.reaches(&user, &target);
        }
        Err(e) => assert!(!e.trim().is_empty()),
    }
}
