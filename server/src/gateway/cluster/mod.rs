//! Several gateways on one database: who this gateway is among them, how it registers and
//! keeps its registration alive, and how it talks to the others (requests signed with a key
//! derived from `cluster.secret`, [`signing`]). Knows nothing of HTTP routing; imports
//! `store`, `config`, `facts` and `ssm` (its AES-GCM).
//!
//! - [`keys`]: the signing and sealing keys, from the secret.
//! - [`signing`]: signing and checking a request between gateways.

pub mod keys;
pub mod signing;

use std::sync::Mutex;
use std::time::Duration;

use serde::de::DeserializeOwned;

use self::keys::Keys;
use self::signing::{Nonces, Refusal, Request, Signed};
use crate::gateway::config::Config;
use crate::gateway::store::db::{Db, DbError, now_ms};
use crate::gateway::store::gateways::{self, Registered};

/// `GET` path of the unauthenticated "who are you" answer a starting gateway asks of the
/// registered holder of its id.
pub const WHOAMI_PATH: &str = "/internal/v1/whoami";
/// How long a request to another gateway may take (a WebSocket forward: to open).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a starting gateway waits for the registered holder of its id to answer.
const WHOAMI_TIMEOUT: Duration = Duration::from_secs(2);

/// The `whoami` answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WhoAmI {
    /// `server.gateway_id`.
    pub gateway_id: String,
    /// The random id of the running process.
    pub instance: String,
}

/// This gateway among the others.
#[derive(Debug)]
pub struct Cluster {
    /// `server.gateway_id`.
    pub id: String,
    /// `server.internal_url`.
    pub internal_url: String,
    /// This process's random id: tells its own registration from an earlier process's.
    pub instance: String,
    keys: Option<Keys>,
    nonces: Mutex<Nonces>,
    http: reqwest::Client,
    /// `cluster.heartbeat_seconds`.
    pub heartbeat: Duration,
    /// `cluster.stale_seconds`.
    pub stale: Duration,
    max_skew_ms: i64,
}

/// Why this gateway may not start.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another running process holds the id.
    #[error(
        "server.gateway_id {id:?} is held by a running gateway at {url} (heartbeat {age_s} s \
         ago): give each gateway its own id (the default is the host name)"
    )]
    Taken {
        /// The id.
        id: String,
        /// Where the holder answered.
        url: String,
        /// Seconds since its heartbeat.
        age_s: i64,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Cluster {
    /// This gateway, from the configuration.
    pub fn new(config: &Config) -> Self {
        let instance: [u8; 16] = rand::random();
        Self {
            id: config.server.gateway_id.clone(),
            internal_url: config.server.internal_url(),
            instance: hex::encode(instance),
            keys: config
                .cluster
                .secret
                .as_ref()
                .map(|s| Keys::derive(s.expose().as_bytes())),
            nonces: Mutex::new(Nonces::default()),
            http: reqwest::Client::builder()
                .timeout(PEER_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            heartbeat: Duration::from_secs(config.cluster.heartbeat_seconds),
            stale: Duration::from_secs(config.cluster.stale_seconds),
            max_skew_ms: i64::try_from(config.cluster.max_clock_skew_seconds * 1000)
                .unwrap_or(i64::MAX),
        }
    }

    /// Whether this gateway forwards and takes requests from others (`cluster.secret` set).
    pub fn is_clustered(&self) -> bool {
        self.keys.is_some()
    }

    /// The keys, when clustered.
    pub fn keys(&self) -> Option<&Keys> {
        self.keys.as_ref()
    }

    /// Heartbeats at or after this time (milliseconds) are fresh: older ones belong to a dead
    /// process.
    pub fn fresh_after(&self) -> i64 {
        now_ms() - i64::try_from(self.stale.as_millis()).unwrap_or(i64::MAX)
    }

    /// The answer to [`WHOAMI_PATH`].
    pub fn whoami(&self) -> WhoAmI {
        WhoAmI {
            gateway_id: self.id.clone(),
            instance: self.instance.clone(),
        }
    }

    /// Registers this process as gateway [`Cluster::id`]. Refused while another running
    /// process holds the id: its row is fresh and its internal URL answers as that process. A
    /// row left by a process that died (its URL does not answer, or answers as another process)
    /// is taken over; the caller then ends what that process left.
    pub async fn claim(&self, db: &Db) -> Result<(), ClaimError> {
        let Some(row) = gateways::load(db, &self.id).await? else {
            gateways::register(db, &self.id, &self.internal_url, &self.instance, None).await?;
            return Ok(());
        };
        if row.state != gateways::STOPPED {
            let taken = || ClaimError::Taken {
                id: self.id.clone(),
                url: row.internal_url.clone(),
                age_s: (now_ms() - row.heartbeat_at) / 1000,
            };
            if self.answers_as(&row).await {
                return Err(taken());
            }
            // No answer is not proof of death (a URL this host cannot reach, a clock ahead):
            // a live holder marks its row again within a heartbeat and a half.
            if row.is_alive(self.fresh_after()) {
                tokio::time::sleep(self.heartbeat + self.heartbeat / 2).await;
                let again = gateways::load(db, &self.id).await?;
                if again
                    .as_ref()
                    .is_some_and(|a| a.heartbeat_at != row.heartbeat_at)
                {
                    return Err(taken());
                }
            }
        }
        // Taken over only if nobody registered it meanwhile.
        if !gateways::register(
            db,
            &self.id,
            &self.internal_url,
            &self.instance,
            Some(&row.instance),
        )
        .await?
        {
            return Err(ClaimError::Taken {
                id: self.id.clone(),
                url: row.internal_url,
                age_s: 0,
            });
        }
        Ok(())
    }

    /// Whether the process that registered `row` answers at its URL.
    async fn answers_as(&self, row: &Registered) -> bool {
        let url = format!("{}{WHOAMI_PATH}", row.internal_url);
        let asked = self.http.get(&url).timeout(WHOAMI_TIMEOUT).send().await;
        let Ok(reply) = asked else { return false };
        match reply.json::<WhoAmI>().await {
            Ok(who) => who.gateway_id == row.id && who.instance == row.instance,
            Err(_) => false,
        }
    }

    /// Marks this gateway alive now, in `state`; false when another process registered the id
    /// since (logged by the caller).
    pub async fn beat(&self, db: &Db, state: &str) -> Result<bool, DbError> {
        gateways::beat(db, &self.id, &self.instance, state).await
    }

    /// The live gateway `id` (not this one), when there is one.
    pub async fn peer(&self, db: &Db, id: &str) -> Result<Option<Registered>, DbError> {
        if id == self.id {
            return Ok(None);
        }
        Ok(gateways::load(db, id)
            .await?
            .filter(|row| row.is_alive(self.fresh_after())))
    }

    /// The other live gateways that take sessions ([`gateways::RUNNING`]).
    pub async fn running_peers(&self, db: &Db) -> Result<Vec<Registered>, DbError> {
        let fresh = self.fresh_after();
        Ok(gateways::all(db)
            .await?
            .into_iter()
            .filter(|row| row.id != self.id && row.state == gateways::RUNNING)
            .filter(|row| row.is_alive(fresh))
            .collect())
    }

    /// The signed headers of `request` to gateway `to` on behalf of `client`; `None` when this
    /// gateway is not clustered.
    pub fn sign(
        &self,
        to: &str,
        client: &str,
        request: &Request<'_>,
    ) -> Option<[(&'static str, String); 6]> {
        let keys = self.keys.as_ref()?;
        Some(signing::fresh(&self.id, to, client, now_ms()).headers(keys, request))
    }

    /// Checks a signed request from another gateway (headers read with `get`): the signature,
    /// the clock, the nonce, and that its sender is a live registered gateway.
    pub async fn verify<'h>(
        &self,
        db: &Db,
        request: &Request<'_>,
        get: impl Fn(&str) -> Option<&'h str>,
    ) -> Result<Signed, Refusal> {
        let keys = self.keys.as_ref().ok_or(Refusal::NotClustered)?;
        let signed = {
            let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
            signing::verify(
                keys,
                &self.id,
                now_ms(),
                self.max_skew_ms,
                &mut nonces,
                request,
                get,
            )?
        };
        match self.peer(db, &signed.from).await {
            Ok(Some(_)) => Ok(signed),
            Ok(None) => Err(Refusal::UnknownGateway(signed.from)),
            Err(e) => {
                tracing::warn!("checking a signed request's sender: {e}");
                Err(Refusal::Unavailable)
            }
        }
    }

    /// Sends a signed JSON `POST` of `body` to `path` of gateway `to`, for `client`, and reads
    /// its JSON answer within `timeout`; the error tells an answer (the peer refused or
    /// failed) from no answer (it may or may not have acted).
    pub async fn post<T: DeserializeOwned>(
        &self,
        to: &Registered,
        path: &str,
        client: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<T, PeerError> {
        let unreachable = |e: String| PeerError::Unreachable(format!("gateway {}: {e}", to.id));
        let body = serde_json::to_vec(body).map_err(|e| unreachable(e.to_string()))?;
        let request = Request {
            method: "POST",
            path_and_query: path,
            cookie: "",
            body: &body,
        };
        let headers = self
            .sign(&to.id, client, &request)
            .ok_or_else(|| unreachable("this gateway has no cluster.secret".into()))?;
        let mut builder = self
            .http
            .post(format!("{}{path}", to.internal_url))
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let reply = builder
            .send()
            .await
            .map_err(|e| unreachable(format!("at {}: {e}", to.internal_url)))?;
        let status = reply.status();
        let text = reply.text().await.map_err(|e| unreachable(e.to_string()))?;
        if !status.is_success() {
            return Err(PeerError::Answered {
                gateway: to.id.clone(),
                status: status.as_u16(),
                text,
            });
        }
        serde_json::from_str(&text).map_err(|e| PeerError::Answered {
            gateway: to.id.clone(),
            status: status.as_u16(),
            text: format!("{e}: {text}"),
        })
    }
}

/// Why a request to another gateway failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// It answered with an error: it did not do what was asked.
    #[error("gateway {gateway} answered {status}: {text}")]
    Answered {
        /// The gateway.
        gateway: String,
        /// The HTTP status.
        status: u16,
        /// Its answer.
        text: String,
    },
    /// No answer (unreachable, timed out): it may or may not have acted.
    #[error("{0}")]
    Unreachable(String),
}
