//! The tests' Python side: `scripts/python-venv` builds (or reuses) the virtual environment
//! with boto3, moto and schemathesis pinned in `tests/python/requirements.txt`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `scripts/python-venv` and returns the venv's folder.
pub fn venv() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/python-venv"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/python-venv failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}
