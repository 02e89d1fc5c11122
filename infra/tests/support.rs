//! Shared by the infra integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

/// The real-client Python from `infra/scripts/python-clients.sh`. Missing: in CI a failure,
/// elsewhere the caller skips (and says so).
pub fn client_python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("ZARRSHARE_CLIENT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv-clients/bin/python"));
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the real-client tests: run infra/scripts/python-clients.sh"
    );
    eprintln!(
        "skipped: no client venv at {} (run infra/scripts/python-clients.sh)",
        python.display()
    );
    None
}
