//! Chunk-serving benchmark (a bench binary, not a timed test):
//!
//!   cargo bench -p infra --bench chunks            (BENCH_SECS=5 BENCH_CONNECTIONS=16 by default)
//!
//! Starts the local server (release build, embedded default, demo pyramid of 64³ zstd chunks)
//! as a child process and drives it with BENCH_CONNECTIONS keep-alive connections, reading every
//! image chunk of every level round-robin — through the public URL and through the share link —
//! next to plain file reads of the same chunks. Reports requests/s, p50/p99 latency, the
//! server's CPU time per request (from /proc), and the metadata calls the server made during
//! each run (must be 0: steady state needs no database round trip).
//!
//! Then measures Lambda cold start of the chunk function (process start to first response)
//! against a local stand-in for the Lambda Runtime API, if a bootstrap was built
//! (infra/scripts/package-lambdas.sh, or `cargo build --release -p chunks`).

#![allow(clippy::unwrap_used, clippy::expect_used)]
// The server child is killed and reaped in `Drop for Server`.
#![allow(clippy::zombie_processes)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    requests: usize,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
}

fn summarize(mut latencies: Vec<u64>, elapsed: Duration) -> Stats {
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    Stats {
        requests: latencies.len(),
        rps: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pick(0.5),
        p99_us: pick(0.99),
    }
}

/// (utime, stime) of a process, in microseconds.
fn cpu_us(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Linux reports in USER_HZ, 100 on every mainstream configuration.
    let us = |i: usize| fields[i].parse::<u64>().unwrap() * 10_000;
    (us(11), us(12))
}

async fn load(urls: Arc<Vec<String>>, connections: usize, secs: u64) -> (Vec<u64>, Duration, u64) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (client, urls, errors) = (client.clone(), urls.clone(), errors.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(100_000);
                let mut i = c;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match client.get(&urls[i % urls.len()]).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            lat.push(t.elapsed().as_micros() as u64);
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += connections;
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, start.elapsed(), errors.load(Ordering::Relaxed))
}

async fn plain_reads(
    files: Arc<Vec<PathBuf>>,
    connections: usize,
    secs: u64,
) -> (Vec<u64>, Duration) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let files = files.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(100_000);
                let mut i = c;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let bytes = tokio::fs::read(&files[i % files.len()]).await.unwrap();
                    std::hint::black_box(bytes);
                    lat.push(t.elapsed().as_micros() as u64);
                    i += connections;
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, start.elapsed())
}

fn chunk_keys(root: &Path) -> Vec<String> {
    let mut keys = Vec::new();
    for level in ["0", "1", "2"] {
        let mut stack = vec![root.join(level).join("c")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    keys.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
    }
    keys.sort();
    keys
}

struct Server {
    child: Child,
    ready: serde_json::Value,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(data_dir: &Path) -> Server {
    let ready = data_dir.join("ready.json");
    let _ = std::fs::remove_file(&ready);
    let child = Command::new(env!("CARGO_BIN_EXE_infra"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(data_dir)
        .arg("--ready-file")
        .arg(&ready)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            return Server {
                child,
                ready: serde_json::from_str(&text).unwrap(),
            };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not become ready");
}

async fn metadata_calls(base: &str) -> u64 {
    let v: serde_json::Value = reqwest::get(format!("{base}/_local/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ["get", "query", "write"]
        .iter()
        .map(|k| v["metadata_calls"][k].as_u64().unwrap())
        .sum()
}

fn report(label: &str, s: &Stats, cpu_per_req_us: Option<f64>, db_calls: Option<u64>, errors: u64) {
    let cpu = cpu_per_req_us.map_or("      -".into(), |c| format!("{c:7.1}"));
    let db = db_calls.map_or("-".into(), |d| d.to_string());
    println!(
        "{label:<22} {:>9.0} req/s  p50 {:>6} µs  p99 {:>6} µs  server CPU/req {cpu} µs  metadata calls {db}  ({} requests, {errors} errors)",
        s.rps, s.p50_us, s.p99_us, s.requests
    );
}

async fn serving(data_dir: &Path, connections: usize, secs: u64) {
    let server = start_server(data_dir);
    let pid = server.child.id();
    let base = server.ready["base_url"].as_str().unwrap().to_owned();
    let public = server.ready["demo"]["public_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let link = server.ready["demo"]["link_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let root = data_dir
        .canonicalize()
        .unwrap()
        .join("objects/demo/cells.ome.zarr");
    let keys = chunk_keys(&root);
    println!(
        "{} chunks of the demo pyramid (64³ uint16, zstd), {connections} connections, {secs} s per run\n",
        keys.len()
    );

    let files = Arc::new(keys.iter().map(|k| root.join(k)).collect::<Vec<_>>());
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    println!(
        "mean chunk size {} KiB\n",
        bytes / files.len() as u64 / 1024
    );
    let (lat, elapsed) = plain_reads(files, connections, secs).await;
    report("plain file read", &summarize(lat, elapsed), None, None, 0);

    // The fixed cost of a request, apart from moving bytes: the small metadata documents.
    let metadata_keys: Vec<String> = ["zarr.json", "0/zarr.json", "1/zarr.json", "2/zarr.json"]
        .map(String::from)
        .to_vec();
    let runs = [
        ("public /data/…", &public, &keys),
        ("share link /s/…", &link, &keys),
        ("public, zarr.json only", &public, &metadata_keys),
    ];
    for (label, prefix, keys) in runs {
        let urls = Arc::new(
            keys.iter()
                .map(|k| format!("{prefix}{k}"))
                .collect::<Vec<_>>(),
        );
        // Warm-up: resolutions cached, connections open.
        let _ = load(urls.clone(), connections, 1).await;
        let calls_before = metadata_calls(&base).await;
        let cpu_before = cpu_us(pid);
        let (lat, elapsed, errors) = load(urls, connections, secs).await;
        let cpu_after = cpu_us(pid);
        let calls = metadata_calls(&base).await - calls_before;
        let stats = summarize(lat, elapsed);
        let n = stats.requests.max(1) as f64;
        let (user, sys) = (
            (cpu_after.0 - cpu_before.0) as f64 / n,
            (cpu_after.1 - cpu_before.1) as f64 / n,
        );
        report(label, &stats, Some(user + sys), Some(calls), errors);
        println!(
            "{:<22} server CPU/req split: user {user:.1} µs, kernel {sys:.1} µs",
            ""
        );
    }
}

/// A stand-in for the Lambda Runtime API: hands out one API Gateway (HTTP API, payload 2.0)
/// event and records when the function posts its response.
async fn cold_start(bootstrap: &Path, data_dir: &Path, dataset_id: &str, runs: usize) {
    use axum::extract::State;
    use axum::routing::{get, post};
    use tokio::sync::mpsc;

    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, u16)>();
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": "GET /data/{proxy+}",
        "rawPath": format!("/data/{dataset_id}/zarr.json"),
        "rawQueryString": "",
        "headers": {"host": "example.execute-api.us-east-1.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "example", "domainName": "example.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "example", "requestId": "bench", "routeKey": "GET /data/{proxy+}", "stage": "$default",
            "time": "22/Nov/2026:00:00:00 +0000", "timeEpoch": 1_795_000_000_000u64,
            "http": {"method": "GET", "path": format!("/data/{dataset_id}/zarr.json"), "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"}
        },
        "isBase64Encoded": false
    });
    let app = axum::Router::new()
        .route(
            "/2018-06-01/runtime/invocation/next",
            get(move || {
                let event = event.clone();
                async move {
                    (
                        [
                            ("lambda-runtime-aws-request-id", "bench-request"),
                            ("lambda-runtime-deadline-ms", "4102444800000"),
                            (
                                "lambda-runtime-invoked-function-arn",
                                "arn:aws:lambda:us-east-1:123456789012:function:chunks",
                            ),
                            (
                                "lambda-runtime-trace-id",
                                "Root=1-00000000-000000000000000000000000",
                            ),
                        ],
                        axum::Json(event),
                    )
                }
            }),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(
                |State(tx): State<mpsc::UnboundedSender<(Instant, u16)>>,
                 body: axum::body::Bytes| async move {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let _ = tx.send((Instant::now(), v["statusCode"].as_u64().unwrap_or(0) as u16));
                    axum::http::StatusCode::ACCEPTED
                },
            ),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            post(|| async { axum::http::StatusCode::ACCEPTED }),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let objects = data_dir.canonicalize().unwrap().join("objects");
    let mut times = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut child = Command::new(bootstrap)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "chunks")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("ZARRSHARE_EMBEDDED_DB", data_dir.join("meta.redb"))
            .env("ZARRSHARE_LOCAL_ROOTS", &objects)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (done, status) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("no response")
            .unwrap();
        assert_eq!(status, 200, "cold-start response");
        times.push((done - t0).as_micros() as u64);
        let _ = child.kill();
        let _ = child.wait();
    }
    let s = summarize(times, Duration::from_secs(1));
    println!(
        "\nLambda cold start (process start → first response, embedded store, {runs} runs): p50 {:.1} ms, p99 {:.1} ms",
        s.p50_us as f64 / 1000.0,
        s.p99_us as f64 / 1000.0
    );
}

fn find_bootstrap() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    [
        target.join("lambda/chunks/bootstrap"),
        target.join("release/chunks"),
    ]
    .into_iter()
    .find(|p| p.exists())
}

fn main() {
    // `cargo bench` passes --bench; any other argument filters nothing here.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let connections = env_num("BENCH_CONNECTIONS", 16) as usize;
    let secs = env_num("BENCH_SECS", 5);
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        serving(dir.path(), connections, secs).await;
        let state: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("demo.json")).unwrap()).unwrap();
        match find_bootstrap() {
            Some(bootstrap) => cold_start(&bootstrap, dir.path(), state["dataset_id"].as_str().unwrap(), 20).await,
            None => println!("\nLambda cold start: no bootstrap built (run infra/scripts/package-lambdas.sh or cargo build --release -p chunks)"),
        }
    });
}
