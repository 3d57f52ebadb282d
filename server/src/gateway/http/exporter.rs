//! What `/metrics` is made from ([`super::metrics`] serves it): the process's one Prometheus
//! recorder, installed by the first gateway that starts and shared by any other in the
//! process, which the layers record into through `gateway::telemetry`; this gateway's count of
//! open browser sockets; the bearer token it asks for; the listener of `metrics.listen`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::{HeaderMap, header};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::gateway::config::MetricsConfig;
use crate::gateway::telemetry::{self, OpenCount};

/// How often the recorder's histograms are drained between scrapes (bounded memory when
/// nobody scrapes).
const UPKEEP: Duration = Duration::from_secs(5);

/// This gateway's part of the metrics: the process's recorder, its own gauges' sources and,
/// with `metrics.listen`, the listener bound for it.
#[derive(Debug)]
pub struct Exporter {
    /// The process's recorder.
    pub handle: &'static PrometheusHandle,
    /// Browser sockets open in this gateway ([`telemetry::BROWSER_SOCKETS_OPEN`]).
    pub sockets: Arc<OpenCount>,
    token: Option<[u8; 32]>,
    listener: Mutex<Option<TcpListener>>,
    addr: Option<SocketAddr>,
}

impl Exporter {
    /// The exporter of a gateway configured with `config`: the recorder installed if this is
    /// the process's first, and `metrics.listen` bound (the error names the key).
    pub async fn new(config: &MetricsConfig) -> Result<Self, String> {
        let handle = recorder();
        let (listener, addr) = match config.listen {
            None => (None, None),
            Some(at) => {
                let listener = TcpListener::bind(at)
                    .await
                    .map_err(|e| format!("metrics.listen: cannot listen on {at}: {e}"))?;
                let addr = listener.local_addr().unwrap_or(at);
                (Some(listener), Some(addr))
            }
        };
        Ok(Self {
            handle,
            sockets: Arc::default(),
            token: config.bearer_token.as_ref().map(|t| digest(t.expose())),
            listener: Mutex::new(listener),
            addr,
        })
    }

    /// The address `/metrics` is served on alone (`metrics.listen`, its port chosen when it
    /// was 0), if any.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Whether the main listener serves `/metrics` (no `metrics.listen`).
    pub fn on_main_listener(&self) -> bool {
        self.addr.is_none()
    }

    /// The listener of `metrics.listen`, once (the server takes it when it starts).
    pub fn take_listener(&self) -> Option<TcpListener> {
        self.listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Whether `headers` carry the bearer token, when one is configured.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(want) = &self.token else {
            return true;
        };
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
        else {
            return false;
        };
        // Digests of equal length, compared without an early exit: the time taken says
        // nothing of how much of the token was right, nor of its length.
        let given = digest(given);
        given
            .iter()
            .zip(want.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The process's recorder: installed by the first call, with the histograms' buckets and the
/// descriptions of every metric, and a thread that drains histograms every [`UPKEEP`].
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(telemetry::SESSION_START_SECONDS.into()),
                telemetry::START_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(telemetry::AUDIT_APPEND_SECONDS.into()),
                    telemetry::AUDIT_BUCKETS,
                )
            });
        let handle = match builder.map(PrometheusBuilder::install_recorder) {
            Ok(Ok(handle)) => {
                telemetry::describe();
                handle
            }
            // Another recorder was installed first (an embedding program): /metrics then
            // shows this gateway's gauges only.
            Ok(Err(e)) | Err(e) => {
                tracing::error!("metrics: the Prometheus recorder was not installed: {e}");
                PrometheusBuilder::new().build_recorder().handle()
            }
        };
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("metrics: no upkeep thread ({e}); histograms drain at scrapes only");
        }
        handle
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::gateway::config::Secret;

    async fn exporter(token: Option<&str>) -> Exporter {
        Exporter::new(&MetricsConfig {
            bearer_token: token.map(Secret::new),
            listen: None,
        })
        .await
        .unwrap()
    }

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[tokio::test]
    async fn the_token_is_asked_for_only_when_set() {
        let open = exporter(None).await;
        assert!(open.allows(&HeaderMap::new()));
        let token = "metrics-token-0123456789";
        let closed = exporter(Some(token)).await;
        assert!(!closed.allows(&HeaderMap::new()));
        assert!(closed.allows(&with(&format!("Bearer {token}"))));
        assert!(closed.allows(&with(&format!("bearer  {token} "))));
        for wrong in [
            format!("Bearer {token}x"),
            format!("Bearer {}", &token[..10]),
            format!("Basic {token}"),
            token.to_owned(),
            "Bearer ".to_owned(),
        ] {
            assert!(!closed.allows(&with(&wrong)), "{wrong}");
        }
    }

    #[tokio::test]
    async fn metrics_listen_is_bound_or_named_in_the_error() {
        let e = Exporter::new(&MetricsConfig {
            bearer_token: None,
            listen: Some("127.0.0.1:0".parse().unwrap()),
        })
        .await
        .unwrap();
        let addr = e.addr().unwrap();
        assert_ne!(addr.port(), 0);
        assert!(!e.on_main_listener());
        assert!(e.take_listener().is_some());
        assert!(e.take_listener().is_none(), "taken once");
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = Exporter::new(&MetricsConfig {
            bearer_token: None,
            listen: Some(busy.local_addr().unwrap()),
        })
        .await
        .unwrap_err();
        assert!(err.starts_with("metrics.listen: cannot listen on"), "{err}");
    }
}
