//! The database: one pool over SQLite (the embedded default) or PostgreSQL, chosen by the URL,
//! and the embedded migrations for each (`migrations/sqlite`, `migrations/postgres`), applied at
//! start and by `porthole migrate`.
//!
//! Queries are written once in the common subset of both dialects with `$N` placeholders and
//! always bound, never formatted in. Times are integer milliseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Which server is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, a file in the data folder.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A database error, with the operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("database: {what}: {source}")]
pub struct DbError {
    what: &'static str,
    #[source]
    source: sqlx::Error,
}

impl DbError {
    /// Wraps an sqlx error with what was being done.
    pub fn new(what: &'static str, source: sqlx::Error) -> Self {
        Self { what, source }
    }

    /// Whether the statement was cancelled for taking too long (PostgreSQL's
    /// `statement_timeout`: SQLSTATE 57014).
    pub fn is_timeout(&self) -> bool {
        matches!(&self.source, sqlx::Error::Database(e) if e.code().as_deref() == Some("57014"))
    }

    /// Whether the database was momentarily busy: SQLite's `SQLITE_BUSY` or `SQLITE_LOCKED`
    /// (after its busy timeout), or PostgreSQL's lock timeout, deadlock or serialization
    /// failure. Trying again later can succeed.
    pub fn is_busy(&self) -> bool {
        let sqlx::Error::Database(e) = &self.source else {
            return matches!(self.source, sqlx::Error::PoolTimedOut);
        };
        let code = e.code();
        let code = code.as_deref().unwrap_or("");
        // SQLite's primary codes 5 and 6, with their extended codes (517, 261, 262, …).
        let sqlite_busy = code.parse::<i64>().is_ok_and(|n| matches!(n & 0xff, 5 | 6));
        sqlite_busy || matches!(code, "55P03" | "40P01" | "40001")
    }

    /// Whether the error is a unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        matches!(&self.source, sqlx::Error::Database(e) if e.is_unique_violation())
    }
}

/// The connection pool and its backend.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// Serialises this process's write transactions. SQLite has one writer, and a deferred
    /// transaction that reads before it writes can fail to upgrade its lock; the audit chain
    /// needs the previous row's hash read and the new row written without another writer in
    /// between. On PostgreSQL, [`Db::begin_write`] also takes a table lock, which covers
    /// several gateways.
    write_lock: Arc<Mutex<()>>,
}

/// A write transaction holding the process's write lock until it ends.
#[derive(Debug)]
pub struct WriteTx {
    /// The transaction.
    pub tx: Transaction<'static, Any>,
    _guard: OwnedMutexGuard<()>,
}

impl WriteTx {
    /// Commits.
    pub async fn commit(self) -> Result<(), DbError> {
        self.tx
            .commit()
            .await
            .map_err(|e| DbError::new("commit", e))
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Db {
    /// Connects to `url` (`sqlite://FILE`, created if missing, or `postgres://…`).
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = AnyPoolOptions::new()
            .max_connections(match backend {
                // SQLite has one writer; a few connections serve concurrent reads.
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Per connection: every pooled connection needs them. In WAL mode,
                        // `synchronous = NORMAL` syncs the log at checkpoints instead of at
                        // every commit: a commit survives the process crashing, and a power
                        // loss can only take the last commits whole (the database and the
                        // audit chain stay intact). Each commit waiting for the disk (FULL)
                        // held the one writer ≈ 3.5 ms here and capped session starts at
                        // about 25 a second (docs/performance.md, issue 18).
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000",
                        )
                        .await?;
                    }
                    Ok(())
                })
            });
        let pool = options
            .connect(&url)
            .await
            .map_err(|e| DbError::new("connect", e))?;
        Ok(Self {
            pool,
            backend,
            write_lock: Arc::new(Mutex::new(())),
        })
    }

    /// Applies the migrations not yet applied.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let result = match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&self.pool).await,
        };
        result.map_err(|e| DbError::new("migrate", e.into()))
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Begins a write transaction; see [`Db`]'s `write_lock`. Every transaction that appends
    /// to the audit log goes through here.
    pub async fn begin_write(&self) -> Result<WriteTx, DbError> {
        let guard = self.write_lock.clone().lock_owned().await;
        // SQLite: take the database's write lock when the transaction begins, so that a read
        // in it (the audit chain's last hash) cannot be overtaken by another process's write
        // (the CLI beside a running gateway); waiting for it is bounded by `busy_timeout`.
        // PostgreSQL: the table lock orders audit appends across gateways (readers are not
        // blocked); sent with the `BEGIN`, in one round trip.
        let begin = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN; LOCK TABLE audit_events IN EXCLUSIVE MODE")
                    .await
            }
        };
        let tx = begin.map_err(|e| DbError::new("begin", e))?;
        Ok(WriteTx { tx, _guard: guard })
    }

    /// Takes this process's write lock (see [`Db`]'s `write_lock`) for a write that is not part
    /// of the audit chain, held until the guard drops. On SQLite a write that commits between
    /// a [`Db::begin_write`] transaction's read and its write makes that transaction fail
    /// (its snapshot is stale), so frequent writers outside the chain take this lock too.
    pub async fn lock_writes(&self) -> OwnedMutexGuard<()> {
        self.write_lock.clone().lock_owned().await
    }

    /// [`Db::lock_writes`] where the backend needs it: on SQLite (one writer, see
    /// [`Db::lock_writes`]); nothing on PostgreSQL, whose row locks order writes outside the
    /// audit chain and whose chain appends take a table lock ([`Db::begin_write`]). For a
    /// single write that needs no other ordering against this process's writers.
    pub async fn lock_single_writer(&self) -> Option<OwnedMutexGuard<()>> {
        match self.backend {
            Backend::Sqlite => Some(self.lock_writes().await),
            Backend::Postgres => None,
        }
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}
