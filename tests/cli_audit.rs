//! `porthole audit verify` and `porthole audit export` as an operator runs them, against a
//! SQLite database named by a configuration file: exit codes, the row named when the chain is
//! broken, the head to anchor elsewhere, JSONL and CSV for a SIEM with time filters, and bad
//! flags refused with exit 2 naming the flag.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use porthole::gateway::store::audit::{self, Client, Event, kind};
use porthole::gateway::store::db::{Db, now_ms};
use sqlx::Row;

fn porthole() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_porthole"));
    // Only what a test sets reaches the commands.
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTHOLE_") {
            command.env_remove(key);
        }
    }
    command
}

/// A reason that needs quoting in CSV and escaping in JSON.
const TRICKY: &str = "INC-7, \"urgent\"\nsecond line <b>é</b>";

struct Fixture {
    _dir: tempfile::TempDir,
    config: PathBuf,
    url: String,
}

/// A configuration file and a SQLite database with `n` events, each in a later millisecond
/// than the one before (so that time filters can split them).
async fn fixture(n: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("audit.db");
    let url = format!("sqlite://{}", db_path.display());
    let config = dir.path().join("porthole.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{url}\"\n[auth]\njwt_secret = \"s3cret-s3cret-s3cret-s3cret-s3cret\"\n"
        ),
    )
    .unwrap();
    let db = Db::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let client = Client {
        addr: "192.0.2.7".into(),
        user_agent: "cli-test".into(),
    };
    let mut last = 0;
    for i in 0..n {
        while now_ms() <= last {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let actor = format!("user{i}");
        let session = format!("session-{i}");
        let event = Event::new(kind::SESSION_START, &actor, &client)
            .session(&session, "i-0123456789abcdef0")
            .reason(if i == 1 {
                TRICKY
            } else {
                "INC-1 routine check"
            })
            .detail(serde_json::json!({"i": i}));
        let mut tx = db.begin_write().await.unwrap();
        audit::append(&mut tx.tx, &event).await.unwrap();
        tx.commit().await.unwrap();
        last = now_ms();
    }
    db.pool().close().await;
    Fixture {
        _dir: dir,
        config,
        url,
    }
}

impl Fixture {
    fn run(&self, args: &[&str]) -> Output {
        porthole()
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    async fn db(&self) -> Db {
        Db::connect(&self.url).await.unwrap()
    }

    /// (id, at, hash) of every row.
    async fn rows(&self) -> Vec<(i64, i64, String)> {
        let db = self.db().await;
        let rows = sqlx::query("SELECT id, at, hash FROM audit_events ORDER BY id")
            .fetch_all(db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.try_get("id").unwrap(),
                    r.try_get("at").unwrap(),
                    r.try_get("hash").unwrap(),
                )
            })
            .collect();
        db.pool().close().await;
        rows
    }

    async fn sql(&self, sql: &'static str, value: &str, id: i64) {
        let db = self.db().await;
        sqlx::query(sql)
            .bind(value.to_owned())
            .bind(id)
            .execute(db.pool())
            .await
            .unwrap();
        db.pool().close().await;
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn verify_reports_the_head_and_the_first_bad_row() {
    let fx = fixture(5).await;
    let rows = fx.rows().await;
    let (last, _, head) = rows.last().unwrap().clone();

    let out = fx.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "audit log intact: 5 rows checked (rows 1 to 5)\nhead: row {last} hash {head}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("porthole audit verify --anchor {last}:{head}")),
        "{text}"
    );

    // The printed head, given back as an anchor.
    let anchor = format!("{last}:{head}");
    let out = fx.run(&["audit", "verify", "--anchor", &anchor]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("anchor: matches"), "{out:?}");

    // An edited row: exit 1, that row named, the rows before it counted.
    let original: String = {
        let db = fx.db().await;
        let reason = sqlx::query("SELECT reason FROM audit_events WHERE id = 3")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .try_get("reason")
            .unwrap();
        db.pool().close().await;
        reason
    };
    fx.sql(
        "UPDATE audit_events SET reason = $1 WHERE id = $2",
        "nothing happened",
        3,
    )
    .await;
    let out = fx.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "audit log BROKEN: row 3: content does not match its hash (edited)\n\
             2 rows before it verified (rows 1 to 2)\n"
        ),
        "{text}"
    );
    fx.sql(
        "UPDATE audit_events SET reason = $1 WHERE id = $2",
        &original,
        3,
    )
    .await;
    assert_eq!(fx.run(&["audit", "verify"]).status.code(), Some(0));

    // The last row deleted: SQLite's id counter shows it; the anchor names it too.
    let db = fx.db().await;
    sqlx::query("DELETE FROM audit_events WHERE id = 5")
        .execute(db.pool())
        .await
        .unwrap();
    db.pool().close().await;
    let out = fx.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).starts_with("audit log BROKEN: row 5: deleted from the end"),
        "{out:?}"
    );
    let out = fx.run(&["audit", "verify", "--anchor", &anchor]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // Bad flags and a missing database.
    let out = fx.run(&["audit", "verify", "--anchor", "5:nothex"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("--anchor"), "{out:?}");
    let dir = tempfile::tempdir().unwrap();
    let missing = write_config(dir.path(), &dir.path().join("nope.db"));
    let out = porthole()
        .args(["audit", "verify", "--config"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        stderr(&out).contains("there is no SQLite database at"),
        "{out:?}"
    );
    assert!(!dir.path().join("nope.db").exists(), "not created");
}

fn write_config(dir: &Path, db: &Path) -> PathBuf {
    let path = dir.join("porthole.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n[auth]\njwt_secret = \"s3cret-s3cret-s3cret-s3cret-s3cret\"\n",
            db.display()
        ),
    )
    .unwrap();
    path
}

/// Parses RFC 4180 CSV (quoted fields may hold commas, quotes and line breaks).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && record.is_empty(),
        "ends with a line break"
    );
    records
}

#[tokio::test]
async fn export_writes_jsonl_and_csv_with_time_filters() {
    let fx = fixture(6).await;
    let rows = fx.rows().await;
    assert!(rows.windows(2).all(|w| w[0].1 < w[1].1), "distinct times");

    // JSONL: every event, oldest first, the fields a SIEM needs.
    let out = fx.run(&["audit", "export"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    let keys: Vec<&str> = lines[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    let mut expected = vec![
        "id",
        "at",
        "type",
        "actor",
        "target",
        "session_id",
        "reason",
        "detail",
        "client_addr",
        "user_agent",
        "hash",
    ];
    expected.sort_unstable();
    assert_eq!(sorted, expected);
    for (line, (id, at, hash)) in lines.iter().zip(&rows) {
        assert_eq!(line["id"].as_i64(), Some(*id));
        assert_eq!(line["at"].as_str(), Some(audit::rfc3339_ms(*at).as_str()));
        assert_eq!(audit::parse_time(line["at"].as_str().unwrap()), Ok(*at));
        assert_eq!(line["hash"].as_str(), Some(hash.as_str()));
        assert_eq!(line["type"], "session.start");
        assert_eq!(line["target"], "i-0123456789abcdef0");
        assert_eq!(line["client_addr"], "192.0.2.7");
        assert_eq!(line["user_agent"], "cli-test");
        assert!(line["detail"].is_object(), "{line}");
    }
    assert_eq!(lines[1]["reason"], TRICKY);
    assert_eq!(lines[1]["detail"]["i"], 1);
    assert!(lines[0]["at"].as_str().unwrap().ends_with('Z'));

    // --since (inclusive) and --until (exclusive), as RFC 3339 and as milliseconds.
    let since = audit::rfc3339_ms(rows[2].1);
    let until = rows[4].1.to_string();
    let out = fx.run(&["audit", "export", "--since", &since, "--until", &until]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let ids: Vec<i64> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, vec![rows[2].0, rows[3].0]);
    let out = fx.run(&["audit", "export", "--since", &rows[5].1.to_string()]);
    assert_eq!(stdout(&out).lines().count(), 1);

    // CSV: a header, one record per event, the tricky reason intact.
    let out = fx.run(&["audit", "export", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "id,at,type,actor,target,session_id,reason,detail,client_addr,user_agent,hash\r\n"
        ),
        "{text}"
    );
    let records = parse_csv(&text);
    assert_eq!(records.len(), 7);
    assert!(records.iter().all(|r| r.len() == 11), "{records:?}");
    assert_eq!(records[2][0], rows[1].0.to_string());
    assert_eq!(records[2][6], TRICKY);
    assert_eq!(records[2][7], r#"{"i":1}"#);
    assert_eq!(records[6][10], rows[5].2);

    // Bad flag values: exit 2, naming the flag.
    for (args, flag) in [
        (vec!["--since", "yesterday"], "--since"),
        (vec!["--until", "2026-02-30"], "--until"),
        (vec!["--format", "xml"], "--format"),
        (vec!["--since", "2000", "--until", "1000"], "--until"),
    ] {
        let mut all = vec!["audit", "export"];
        all.extend(args.iter());
        let out = fx.run(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(stderr(&out).contains(flag), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
