//! The emulator's control plane through boto3: starts the emulator, makes sure the Python
//! virtual environment exists (`scripts/python-venv`, pinned boto3 and pytest; PyPI is needed
//! the first time) and runs `tests/python/test_emulator_boto3.py` against it.

// Test helpers outside `#[test]` functions panic on failure too, as test code should.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/python.rs"]
mod python;

use std::path::Path;

use porthole::emulator::nodes::{Node, default_nodes};
use porthole::emulator::{EmulatorConfig, RunningEmulator};
use tokio::process::Command;

/// The built-in nodes plus 12 generated ones tagged `batch=generated`, the first a Windows
/// node and the fourth holding the KMS key the Python tests use.
fn nodes() -> Vec<Node> {
    let mut nodes = default_nodes();
    for i in 0..12u32 {
        let mut node =
            Node::new(&format!("i-0b{i:015x}"), &format!("gen-{i:02}")).tag("batch", "generated");
        match i {
            0 => node.platform = "Windows".into(),
            3 => node.kms_key_id = Some("alias/porthole-boto3".into()),
            _ => {}
        }
        nodes.push(node);
    }
    nodes
}

#[tokio::test]
async fn boto3_drives_the_control_plane() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = python::venv();

    let dir = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::new(dir.path());
    config.nodes = nodes();
    let emulator = RunningEmulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();

    let out = Command::new(venv.join("bin/python"))
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/python",
        ])
        .current_dir(root)
        .env("PORTHOLE_EMULATOR_URL", emulator.url())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // Only what the tests pass explicitly: no profile, no metadata service, no endpoint
        // override from the environment.
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_SSM")
        .env_remove("AWS_ENDPOINT_URL_KMS")
        .output()
        .await
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "pytest failed ({}):\n{report}",
        out.status
    );
    assert!(report.contains(" passed"), "pytest ran no test:\n{report}");
    println!("{report}"); // shown with --nocapture
    emulator.stop().await.unwrap();
}
