//! Labels on sessions: tags and a note that the owner (at any time) or an auditor (once the
//! session has ended) gives a session so that it can be found later — "INC-4211", "db",
//! "found the full disk here". Each change is audited (`session.label`) in the transaction
//! that stores it; the search over them is [`find`].

use serde_json::json;

use super::engine::visible_one;
use super::{Engine, Error};
use crate::gateway::facts::User;
use crate::gateway::policy;
use crate::gateway::store::audit::{self, Client, Event, kind};
use crate::gateway::store::labels::{self as rows, Labels};
use crate::gateway::store::search;
use crate::gateway::store::sessions::SessionView;

/// The most tags a session may carry.
pub const MAX_TAGS: usize = 20;
/// The longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 40;
/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;
/// The most sessions a label search returns.
pub const FIND_LIMIT: u32 = 50;

/// Labels as given, before they are checked.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Tags, in any case.
    pub tags: Vec<String>,
    /// The note.
    pub note: String,
}

/// Whether `c` may appear in a tag: letters and digits of any script, and `- _ . : / #`.
fn tag_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '#')
}

/// The checked form of `change`: tags trimmed, in lower case, sorted, each once; the note
/// trimmed. The error names the first problem and the rule it breaks.
pub fn check(change: &Change) -> Result<(Vec<String>, String), String> {
    let mut tags = Vec::with_capacity(change.tags.len());
    for (i, given) in change.tags.iter().enumerate() {
        let tag = given.trim().to_lowercase();
        let n = tag.chars().count();
        if n == 0 {
            return Err(format!("tags[{i}]: a tag may not be empty"));
        }
        if n > MAX_TAG_CHARS {
            return Err(format!(
                "tags[{i}]: at most {MAX_TAG_CHARS} characters (got {n})"
            ));
        }
        if let Some(bad) = tag.chars().find(|c| !tag_char(*c)) {
            return Err(format!(
                "tags[{i}]: {bad:?} is not allowed in a tag (letters, digits and - _ . : / # \
                 only; no spaces)"
            ));
        }
        tags.push(tag);
    }
    tags.sort();
    tags.dedup();
    if tags.len() > MAX_TAGS {
        return Err(format!(
            "tags: at most {MAX_TAGS} different tags (got {})",
            tags.len()
        ));
    }
    let note = change.note.replace("\r\n", "\n");
    let note = note.trim();
    let n = note.chars().count();
    if n > MAX_NOTE_CHARS {
        return Err(format!(
            "note: at most {MAX_NOTE_CHARS} characters (got {n})"
        ));
    }
    if note
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("note: no control characters (line breaks and tabs are fine)".into());
    }
    Ok((tags, note.to_owned()))
}

/// The labels of session `id`, for those who may see it.
pub async fn get(engine: &Engine, user: &User, id: &str) -> Result<Labels, Error> {
    let view = visible_one(engine, user, id).await?;
    Ok(rows::load(&engine.db, &view.id).await?)
}

/// Replaces the labels of session `id` with `change`, for its owner, or for those who see
/// every session once it has ended; audited (`session.label`) with the new tags and note.
pub async fn set(
    engine: &Engine,
    user: &User,
    client: &Client,
    id: &str,
    change: &Change,
) -> Result<Labels, Error> {
    let view = visible_one(engine, user, id).await?;
    if !policy::may_label(user, view.user_id(), view.is_running()) {
        return Err(Error::SessionRunning(format!(
            "session {id} of {} is still running: its labels can be set by {} now, and by you \
             once it has ended",
            view.user, view.user
        )));
    }
    let (tags, note) = check(change).map_err(Error::InvalidLabels)?;
    let mut tx = engine.db.begin_write().await?;
    rows::replace(&mut tx, id, &tags, &note, user.id).await?;
    audit::append(
        &mut tx.tx,
        &Event::new(kind::SESSION_LABEL, &user.name, client)
            .session(id, &view.target)
            .detail(json!({"owner": view.user, "tags": tags, "note": note})),
    )
    .await?;
    tx.commit().await?;
    Ok(rows::load(&engine.db, id).await?)
}

/// The sessions `user` may see whose tags or note contain `q` (checked as a search text),
/// newest first, at most [`FIND_LIMIT`]: their own, and everyone's ended ones for roles that
/// see every session (as for recordings).
pub async fn find(
    engine: &Engine,
    user: &User,
    q: &str,
) -> Result<Vec<(SessionView, Labels)>, Error> {
    let q = search::check_query(q).map_err(Error::InvalidLabels)?;
    Ok(rows::find(
        &engine.db,
        user.id,
        policy::sees_all_sessions(user),
        &q,
        FIND_LIMIT,
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(tags: &[&str], note: &str) -> Change {
        Change {
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            note: note.to_owned(),
        }
    }

    #[test]
    fn tags_are_trimmed_lowered_sorted_and_unique() {
        let (tags, note) =
            check(&change(&[" INC-42 ", "db", "inc-42", "Zone:eu/1"], " n ")).unwrap();
        assert_eq!(tags, ["db", "inc-42", "zone:eu/1"]);
        assert_eq!(note, "n");
    }

    #[test]
    fn bad_tags_and_notes_are_named() {
        let e = check(&change(&["ok", "two words"], "")).unwrap_err();
        assert!(e.starts_with("tags[1]: ' ' is not allowed"), "{e}");
        let e = check(&change(&[""], "")).unwrap_err();
        assert!(e.contains("tags[0]: a tag may not be empty"), "{e}");
        let long = "x".repeat(MAX_TAG_CHARS + 1);
        let e = check(&change(&[&long], "")).unwrap_err();
        assert!(e.contains("at most 40 characters (got 41)"), "{e}");
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let e = check(&change(&many, "")).unwrap_err();
        assert!(e.contains("at most 20 different tags (got 21)"), "{e}");
        let e = check(&change(&[], "bell\u{7}")).unwrap_err();
        assert!(e.starts_with("note: no control characters"), "{e}");
        let e = check(&change(&[], &"n".repeat(MAX_NOTE_CHARS + 1))).unwrap_err();
        assert!(e.contains("at most 2000 characters (got 2001)"), "{e}");
    }

    #[test]
    fn notes_keep_lines_and_tabs() {
        let (_, note) = check(&change(&[], "first\r\nsecond\tcol")).unwrap();
        assert_eq!(note, "first\nsecond\tcol");
    }

    #[test]
    fn twenty_tags_after_duplicates_are_fine() {
        let mut tags: Vec<String> = (0..MAX_TAGS).map(|i| format!("t{i}")).collect();
        tags.push("T0".into());
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        assert_eq!(check(&change(&tags, "")).unwrap().0.len(), MAX_TAGS);
    }
}
