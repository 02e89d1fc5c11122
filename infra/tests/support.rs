//! Shared by the infra integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use infra::server::{Running, ServeOptions, start};
use serde_json::Value;
use shared::config::Delivery;
use shared::domain::{Email, OrgId, OrgRole, Organization, User, now};

/// Whether what `missing` names is installed. Missing: in CI a failure (CI must run every test),
/// elsewhere the caller skips and says so; `script` installs it.
fn installed(found: bool, missing: &str, script: &str) -> bool {
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: {missing}; run {script}"
        );
        eprintln!("skipped: {missing} (run {script})");
    }
    found
}

/// The python of a venv of the repository (`venv`, e.g. `.venv-clients`) that `script` makes, or
/// the one `env` names.
pub fn venv_python(env: &str, venv: &str, script: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(venv).join("bin/python"));
    installed(
        python.exists(),
        &format!("no venv at {}", python.display()),
        script,
    )
    .then_some(python)
}

/// The real-client Python from `infra/scripts/python-clients.sh`.
pub fn client_python() -> Option<PathBuf> {
    venv_python(
        "ZARRSHARE_CLIENT_PYTHON",
        ".venv-clients",
        "infra/scripts/python-clients.sh",
    )
}

/// Debian's Chromium and its chromedriver, from `infra/scripts/browser.sh`, for the tests that
/// open pages in a real browser.
pub fn browser() -> bool {
    let found = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
        .iter()
        .all(|p| Path::new(p).exists());
    installed(
        found,
        "no /usr/bin/chromium or chromedriver",
        "infra/scripts/browser.sh",
    )
}

/// A dataset manager of the server's organization (who may annotate its datasets), created
/// straight in the directory, and an access token for them.
pub async fn dataset_manager(running: &Running, email: &str) -> String {
    let services = &running.services;
    let org = services.config.org.clone();
    let user = User::new(
        org.clone(),
        Email::parse(email).unwrap(),
        email.split('@').next().unwrap_or(email).into(),
        OrgRole::DatasetManager,
        String::new(),
    );
    if services.directory.org(&org).await.is_ok() {
        services.directory.create_user(&user).await.unwrap();
    } else {
        let record = Organization {
            id: OrgId::parse(org.as_str()).unwrap(),
            name: "Lab".into(),
            auto_activate: false,
            created_at: now(),
            version: 1,
        };
        services.directory.create_org(&record, &user).await.unwrap();
    }
    services
        .tokens
        .issue(&user.id, &user.org, user.token_generation)
        .unwrap()
}

/// One API call with a bearer token: the status and the body (JSON, or the text as a string).
pub async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (reqwest::StatusCode, Value) {
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The local server on a free port over `dir`, with the demo seeded, answering chunk reads with
/// `delivery`.
pub async fn serve_demo(dir: &Path, delivery: Delivery) -> Running {
    start(ServeOptions {
        port: 0,
        data_dir: dir.to_path_buf(),
        ready_file: None,
        aws: false,
        delivery,
        local_roots: vec![],
        seed_demo: true,
    })
    .await
    .unwrap()
}

/// Runs `tests/clients/{script}` with the client Python and `args`, and returns what it printed;
/// a non-zero exit fails the test with both of its outputs.
pub async fn run_client(python: &Path, script: &str, args: &[&std::ffi::OsStr]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let output = tokio::process::Command::new(python)
        .arg(&path)
        .args(args)
        // Selenium takes chromedriver from PATH instead of asking the network for one.
        .env("SE_OFFLINE", "true")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
