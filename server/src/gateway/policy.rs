//! Who may do what: the one place the gateway asks. Roles for now (admin, operator, auditor);
//! the policy engine (target selectors, documents, reason rules) grows here.

use super::users::{Role, User};

/// The reason rules: trimmed, 10 to 500 characters, no control characters.
pub const MIN_REASON: usize = 10;
/// Longest reason kept (AWS's own field takes 256; the gateway keeps all of it).
pub const MAX_REASON: usize = 500;
/// AWS's limit for `StartSession`'s `Reason`.
pub const AWS_MAX_REASON: usize = 256;
/// The document used when a request names none.
pub const DEFAULT_DOCUMENT: &str = "SSM-SessionManagerRunShell";

/// Whether `user` may open sessions (on `target`).
pub fn may_open_session(user: &User, _target: &str) -> Result<(), String> {
    if user.has(Role::Admin) || user.has(Role::Operator) {
        Ok(())
    } else {
        Err(format!(
            "{} may not open sessions: only the admin and operator roles may",
            user.name
        ))
    }
}

/// Whether `user` sees every session (not only their own).
pub fn sees_all_sessions(user: &User) -> bool {
    user.has(Role::Admin) || user.has(Role::Auditor)
}

/// Whether `user` may terminate a session owned by `owner_id`.
pub fn may_terminate(user: &User, owner_id: i64) -> bool {
    user.id == owner_id || user.has(Role::Admin)
}

/// Whether `user` may attach to a session owned by `owner_id` (owners only).
pub fn may_attach(user: &User, owner_id: i64) -> bool {
    user.id == owner_id
}

/// Checks and normalises a reason: the trimmed text, or what is wrong with it.
pub fn check_reason(raw: &str) -> Result<String, String> {
    let reason = raw.trim();
    let len = reason.chars().count();
    if len < MIN_REASON {
        return Err(format!(
            "the reason must be at least {MIN_REASON} characters (got {len} after trimming)"
        ));
    }
    if len > MAX_REASON {
        return Err(format!(
            "the reason must be at most {MAX_REASON} characters (got {len})"
        ));
    }
    if let Some(c) = reason.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the reason must not contain control characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    Ok(reason.to_owned())
}

/// The reason as sent to AWS: at most [`AWS_MAX_REASON`] characters.
pub fn aws_reason(reason: &str) -> String {
    reason.chars().take(AWS_MAX_REASON).collect()
}

/// Checks a document name (SSM's pattern: letters, digits, `_`, `-`, `.`, 3 to 128).
pub fn check_document(name: &str) -> Result<(), String> {
    let ok = (3..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "document {name:?} is not a document name (3 to 128 of A-Z a-z 0-9 _ - .)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(roles: &[Role]) -> User {
        User {
            id: 7,
            name: "alice".into(),
            roles: roles.to_vec(),
            disabled: false,
        }
    }

    #[test]
    fn roles_decide() {
        assert!(may_open_session(&user(&[Role::Operator]), "i-1").is_ok());
        assert!(may_open_session(&user(&[Role::Admin]), "i-1").is_ok());
        let err = may_open_session(&user(&[Role::Auditor]), "i-1").unwrap_err();
        assert!(err.contains("alice may not open sessions"), "{err}");
        assert!(sees_all_sessions(&user(&[Role::Auditor])));
        assert!(!sees_all_sessions(&user(&[Role::Operator])));
        assert!(may_terminate(&user(&[Role::Operator]), 7));
        assert!(!may_terminate(&user(&[Role::Operator]), 8));
        assert!(may_terminate(&user(&[Role::Admin]), 8));
        assert!(!may_attach(&user(&[Role::Admin]), 8));
    }

    #[test]
    fn reasons() {
        assert_eq!(
            check_reason("  INC-1234 disk full  ").unwrap(),
            "INC-1234 disk full"
        );
        assert!(check_reason("short").unwrap_err().contains("at least 10"));
        assert!(
            check_reason("          x         ")
                .unwrap_err()
                .contains("got 1")
        );
        assert!(check_reason(&"é".repeat(500)).is_ok());
        assert!(
            check_reason(&"é".repeat(501))
                .unwrap_err()
                .contains("at most 500")
        );
        assert!(
            check_reason("line one\nline two")
                .unwrap_err()
                .contains("U+000A")
        );
        assert!(
            check_reason("bell \u{7} ringing")
                .unwrap_err()
                .contains("U+0007")
        );
        assert_eq!(aws_reason(&"ü".repeat(300)).chars().count(), 256);
    }

    #[test]
    fn documents() {
        assert!(check_document("SSM-SessionManagerRunShell").is_ok());
        assert!(check_document("AWS-StartInteractiveCommand").is_ok());
        assert!(check_document("x").is_err());
        assert!(check_document("a/b c").is_err());
    }
}
