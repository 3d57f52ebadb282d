//! What every page shares: the layout (`base.html`'s signed-in person, CSRF token, navigation
//! and script) and the checks of the `next` path a page returns to after signing in.

use super::audit as audit_api;
use super::extract::SignedIn;
use crate::gateway::policy;

/// What the shared layout (`base.html`) shows: the signed-in user, the CSRF token, which
/// navigation entry is current, and the page's script.
#[derive(Debug)]
pub struct Layout {
    /// The signed-in user's name; `None` on the sign-in page.
    pub user: Option<String>,
    /// Their roles, for the header.
    pub roles: String,
    /// The CSRF token of this sign-in, for `<meta name="csrf-token">`.
    pub csrf_token: Option<String>,
    /// `targets`, `sessions` or empty: the current navigation entry.
    pub nav: &'static str,
    /// The label of the sessions entry ("My sessions", or "Sessions" for those who see all).
    pub sessions_label: &'static str,
    /// The page's module under `/assets/` (e.g. `targets.js`); empty for none.
    pub script: &'static str,
    /// Whether the navigation shows the audit log (admins and auditors).
    pub show_audit: bool,
    /// Whether the navigation shows everyone's live sessions (observe or terminate grants).
    pub show_live: bool,
}

impl Layout {
    pub fn signed_out(script: &'static str) -> Self {
        Self {
            user: None,
            roles: String::new(),
            csrf_token: None,
            nav: "",
            sessions_label: "",
            script,
            show_audit: false,
            show_live: false,
        }
    }

    pub fn signed_in(signed: &SignedIn, nav: &'static str, script: &'static str) -> Self {
        Self {
            user: Some(signed.user.name.clone()),
            roles: signed
                .user
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            csrf_token: Some(signed.csrf_token.clone()),
            nav,
            sessions_label: if policy::sees_all_sessions(&signed.user) {
                "Sessions"
            } else {
                "My sessions"
            },
            script,
            show_audit: audit_api::may_read_audit(&signed.user),
            show_live: policy::oversees_live_sessions(&signed.user),
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `value` as JSON for a `<script type="application/json">` element, which the page's script
/// reads with `JSON.parse(element.textContent)`. Script text is not HTML-decoded, so it goes
/// into the template unescaped (`|safe`); `<`, `>` and `&` are written as `\u003c`, `\u003e`
/// and `\u0026` so that no value can end the element (`</script>`) or open a comment.
pub fn script_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "null".to_owned())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// `next` when it is a path on this gateway (not another site, not a scheme-relative URL).
pub fn local_path(next: Option<&String>) -> Option<String> {
    let next = next?;
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 2048
        && !next.chars().any(|c| c.is_control() || c == '\\');
    local.then(|| next.clone())
}
