//! The open-file limit (`RLIMIT_NOFILE`): every session is a socket or two, and the usual soft
//! limit of 1,024 stops a gateway, an emulator or `porthole load` at a few hundred sessions.
//! Each raises its soft limit to the hard limit at start-up; only root can raise the hard one.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The soft and hard limits after raising the soft one to the hard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The soft limit before.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; errors name what failed.
pub fn raise() -> Result<Limits, String> {
    let (before, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
    if before < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|e| {
            format!("cannot raise the open-file limit from {before} to {hard}: {e}")
        })?;
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
    Ok(Limits { before, soft, hard })
}

/// [`raise`], and when that is below `needed`, the hard limit too: a privileged process
/// (root, or CAP_SYS_RESOURCE) may raise it up to `fs.nr_open`. Children inherit the limits.
pub fn raise_to(needed: u64) -> Result<Limits, String> {
    let limits = raise()?;
    if limits.soft >= needed {
        return Ok(limits);
    }
    if setrlimit(Resource::RLIMIT_NOFILE, needed, needed).is_err() {
        return Ok(limits); // unprivileged: the caller reports the shortfall
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
    Ok(Limits {
        before: limits.before,
        soft,
        hard,
    })
}

/// [`raise`] for a long-running command (`serve`, `emulator`): logs the outcome once; a
/// failure is a warning, as the command still works for fewer sessions.
pub fn raise_and_log(command: &str) {
    match raise() {
        Ok(l) if l.before < l.soft => tracing::info!(
            command,
            from = l.before,
            to = l.soft,
            "raised the open-file limit (RLIMIT_NOFILE) to the hard limit"
        ),
        Ok(l) => tracing::info!(command, limit = l.soft, "open-file limit (RLIMIT_NOFILE)"),
        Err(error) => tracing::warn!(command, %error, "open-file limit not raised"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn raising_reaches_the_hard_limit() {
        let l = super::raise().unwrap();
        assert_eq!(l.soft, l.hard);
        assert!(l.before <= l.soft);
    }
}
