//! The emulator answers only loopback names (DNS rebinding, cross-site pages): a request whose
//! Host or Origin is not loopback gets 403 naming the header, on the control plane and on the
//! data-channel socket; `--allow-remote` lifts it; the SDK (no Origin) works as before.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use porthole::emulator::{EmulatorConfig, RunningEmulator};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const DESCRIBE: &str = "AmazonSSM.DescribeInstanceInformation";

async fn emulator(allow_remote: bool) -> (RunningEmulator, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::new(dir.path());
    config.allow_remote = allow_remote;
    let emu = RunningEmulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    (emu, dir)
}

/// A DescribeInstanceInformation call with the given extra headers: (status, body).
async fn describe(emu: &RunningEmulator, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/", emu.endpoint))
        .header("x-amz-target", DESCRIBE)
        .header("content-type", "application/x-amz-json-1.1")
        .body("{}");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let reply = request.send().await.unwrap();
    (reply.status().as_u16(), reply.text().await.unwrap())
}

#[tokio::test]
async fn a_foreign_host_or_origin_is_refused_on_the_control_plane() {
    let (emu, _dir) = emulator(false).await;
    let (status, body) = describe(&emu, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("InstanceInformationList"), "{body}");

    let (status, body) = describe(&emu, &[("host", "rebind.evil.example:4566")]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AccessDeniedException"), "{body}");
    assert!(
        body.contains("rebind.evil.example"),
        "names the Host: {body}"
    );

    let (status, body) = describe(&emu, &[("origin", "https://evil.example")]).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("Origin \\\"https://evil.example\\\""),
        "names the Origin: {body}"
    );

    let loopback_origin = format!("http://{}", emu.endpoint);
    let (status, body) = describe(&emu, &[("origin", &loopback_origin)]).await;
    assert_eq!(status, 200, "a page served from loopback may: {body}");
    let (status, _) = describe(&emu, &[("host", "localhost")]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_foreign_origin_cannot_open_the_data_channel() {
    let (emu, _dir) = emulator(false).await;
    // The check comes before the session is even looked up: any id will do.
    let url = format!(
        "ws://{}/v1/data-channel/s-0?role=publish_subscribe",
        emu.endpoint
    );
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(request).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status().as_u16(), 403);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or(&[]));
            assert!(body.contains("evil.example"), "{body}");
        }
        other => panic!("expected a 403, got {other:?}"),
    }
}

#[tokio::test]
async fn allow_remote_accepts_other_names() {
    let (emu, _dir) = emulator(true).await;
    let (status, body) = describe(&emu, &[("host", "gateway.internal:4566")]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = describe(&emu, &[("origin", "https://tools.internal")]).await;
    assert_eq!(status, 200, "{body}");
}
