//! The gateway's database layer on both backends: migrations apply (twice is a no-op), users
//! are created, found, listed and disabled, and input is bound, never spliced into SQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use porthole::gateway::identity::users::{self, Role, UserError};
use porthole::gateway::store::db::{Backend, Db};

async fn exercise(db: &Db) {
    db.migrate().await.unwrap();
    db.migrate().await.unwrap(); // idempotent
    assert!(db.ping().await);

    let alice = users::create(
        db,
        "alice",
        "correct horse battery",
        &[Role::Operator],
        &users::ChangedBy::command_line("test"),
    )
    .await
    .unwrap();
    assert_eq!(
        (alice.name.as_str(), alice.roles.as_slice(), alice.disabled),
        ("alice", &[Role::Operator][..], false)
    );
    assert!(matches!(
        users::create(db, "alice", "another password", &[Role::Admin], &users::ChangedBy::command_line("test")).await,
        Err(UserError::Exists(name)) if name == "alice"
    ));
    assert!(matches!(
        users::create(
            db,
            "Bob",
            "long enough pw",
            &[Role::Admin],
            &users::ChangedBy::command_line("test")
        )
        .await,
        Err(UserError::InvalidName(_))
    ));
    assert!(matches!(
        users::create(
            db,
            "bob",
            "short",
            &[Role::Admin],
            &users::ChangedBy::command_line("test")
        )
        .await,
        Err(UserError::InvalidPassword)
    ));

    let (found, hash) = users::find(db, "alice").await.unwrap().unwrap();
    assert_eq!(found, alice);
    assert!(users::verify_password(&hash, "correct horse battery"));
    assert!(!users::verify_password(&hash, "wrong"));
    // A name made of SQL is just a name that does not exist.
    assert!(users::find(db, "alice' OR '1'='1").await.unwrap().is_none());

    users::create(
        db,
        "auditor-1",
        "read only please",
        &[Role::Auditor],
        &users::ChangedBy::command_line("test"),
    )
    .await
    .unwrap();
    let names: Vec<String> = users::list(db)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, vec!["alice", "auditor-1"]);

    let disabled = users::set_disabled(
        db,
        "alice",
        true,
        &porthole::gateway::identity::users::ChangedBy::command_line("test"),
    )
    .await
    .unwrap();
    assert!(disabled.disabled);
    assert!(users::get(db, alice.id).await.unwrap().unwrap().disabled);
    assert!(matches!(
        users::set_disabled(
            db,
            "nobody",
            true,
            &porthole::gateway::identity::users::ChangedBy::command_line("test")
        )
        .await,
        Err(UserError::NotFound(_))
    ));
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("porthole.db").display());
    let db = Db::connect(&url).await.unwrap();
    assert_eq!(db.backend(), Backend::Sqlite);
    exercise(&db).await;
}

/// Runs against the machine's PostgreSQL (`PORTHOLE_TEST_POSTGRES`, default the local server),
/// in a fresh database that is dropped afterwards.
#[tokio::test]
async fn postgres() {
    let admin_url = std::env::var("PORTHOLE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("porthole_test_{}", std::process::id());
    let admin = Db::connect(&admin_url)
        .await
        .expect("PostgreSQL must be running (.ci/run starts it)");
    let create = format!("CREATE DATABASE {name}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(admin.pool())
        .await
        .unwrap();
    let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap();
    let db = Db::connect(&format!("{base}/{name}")).await.unwrap();
    assert_eq!(db.backend(), Backend::Postgres);
    exercise(&db).await;
    db.pool().close().await;
    let drop = format!("DROP DATABASE {name}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
        .execute(admin.pool())
        .await
        .unwrap();
}
