//! The local server: every function's routes on one port, over the embedded store and the
//! local filesystem (or, with `--aws`, over DynamoDB and S3 at `AWS_ENDPOINT_URL`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::Services;
use shared::config::{Config, Delivery, MetadataBackend};
use shared::domain::{DatasetName, LinkToken, StorageUrl};
use shared::store::metered::{CallCounts, Metered};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::demo;

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub port: u16,
    pub data_dir: PathBuf,
    pub ready_file: Option<PathBuf>,
    /// DynamoDB + S3 (LocalStack or AWS) instead of the embedded default.
    pub aws: bool,
    pub delivery: Delivery,
    /// Extra directories whose datasets may be registered by local path.
    pub local_roots: Vec<PathBuf>,
    pub seed_demo: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("I/O on {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] shared::config::ConfigError),
    #[error(transparent)]
    Startup(#[from] shared::services::StartupError),
    #[error(transparent)]
    Store(#[from] shared::store::StoreError),
    #[error("writing the demo pyramid")]
    Demo(#[from] demo::DemoError),
    #[error("uploading the demo pyramid")]
    Upload(#[from] object_store::Error),
    #[error("provisioning")]
    Provision(#[from] crate::provision::ProvisionError),
    #[error("seeding the demo through the API failed: {0}")]
    Seed(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |source| ServeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `--ready-file` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ready {
    pub base_url: String,
    pub demo: Option<DemoInfo>,
    /// Where the admin key is kept (the key itself is not written here).
    pub admin_key_file: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DemoInfo {
    pub dataset_id: String,
    pub public_url: String,
    pub private_dataset_id: String,
    pub link_url: String,
}

/// The demo's identities, kept between runs (the link token is not in the database).
#[derive(Serialize, Deserialize)]
struct DemoState {
    dataset_id: String,
    private_dataset_id: String,
    link_token: String,
}

pub struct Running {
    pub base_url: String,
    pub addr: SocketAddr,
    pub demo: Option<DemoInfo>,
    pub counts: Arc<CallCounts>,
    pub services: Arc<Services>,
    pub admin_key: String,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    /// Graceful stop: no new connections, open ones finished, then everything released
    /// (the embedded database can be opened again at once).
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        let result = self.server.await.unwrap_or(Ok(()));
        self.services.shutdown().await;
        drop(self.services);
        result
    }
}

/// Reads a secret kept in the data directory, creating it (mode 0600) on first use.
fn secret_file(path: &Path) -> Result<String, ServeError> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let mut raw = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut raw);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    write_private(path, &secret)?;
    Ok(secret)
}

fn write_private(path: &Path, content: &str) -> Result<(), ServeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(content.as_bytes()).map_err(io(path))
}

/// The local server's routes: every function's, one fallback, CORS, and `/_local/stats`.
pub fn app(services: Arc<Services>, counts: Arc<CallCounts>) -> Router {
    let stats = move || {
        let counts = counts.clone();
        async move {
            use std::sync::atomic::Ordering::Relaxed;
            axum::Json(json!({"metadata_calls": {
                "get": counts.gets.load(Relaxed),
                "query": counts.queries.load(Relaxed),
                "write": counts.writes.load(Relaxed),
            }}))
        }
    };
    shared::http::served(
        chunks::routes(services.clone())
            .merge(datasets::routes(services.clone()))
            .merge(annotations::routes(services.clone()))
            .merge(accounts::routes(services))
            .route("/_local/stats", get(stats))
            .route("/", get(index)),
    )
}

fn config_for(opts: &ServeOptions, data_dir: &Path, base_url: &str) -> Result<Config, ServeError> {
    let admin_key = match std::env::var("ZARRSHARE_ADMIN_KEY")
        .ok()
        .filter(|k| !k.is_empty())
    {
        Some(k) => k,
        None => secret_file(&data_dir.join("admin.key"))?,
    };
    let signing = secret_file(&data_dir.join("signing.key"))?;
    let jwt = match std::env::var("ZARRSHARE_JWT_SECRET")
        .ok()
        .filter(|k| !k.is_empty())
    {
        Some(k) => k,
        None => secret_file(&data_dir.join("jwt.key"))?,
    };
    let outbox = data_dir.join("outbox.jsonl").to_string_lossy().into_owned();
    let annotations = data_dir.join("objects/annotations");
    std::fs::create_dir_all(&annotations).map_err(io(&annotations))?;
    let annotations = annotations.to_string_lossy().into_owned();
    let objects_root = data_dir.join("objects");
    let mut roots = vec![objects_root];
    roots.extend(opts.local_roots.iter().cloned());
    let roots_text = roots
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let embedded = data_dir.join("meta.redb");
    let delivery = match opts.delivery {
        Delivery::Proxy => "proxy",
        Delivery::Redirect => "redirect",
    };
    let aws = opts.aws;
    let config = Config::from_lookup(|name| {
        let set = std::env::var(name).ok().filter(|v| !v.is_empty());
        match name {
            "ZARRSHARE_ADMIN_KEY" => Some(admin_key.clone()),
            "ZARRSHARE_SIGNING_SECRET" => Some(signing.clone()),
            "ZARRSHARE_JWT_SECRET" => Some(jwt.clone()),
            // Locally, mail lands in the data directory; with --aws it goes to SES when a
            // sender is configured.
            "ZARRSHARE_OUTBOX"
                if !aws || set.is_none() && std::env::var("ZARRSHARE_SENDER_EMAIL").is_err() =>
            {
                set.or_else(|| Some(outbox.clone()))
            }
            "ZARRSHARE_LOCAL_ROOTS" => Some(roots_text.clone()),
            "ZARRSHARE_PUBLIC_BASE_URL" => Some(base_url.to_owned()),
            "ZARRSHARE_DELIVERY" => Some(delivery.to_owned()),
            // One long-lived process: usage figures show up on the links page within seconds.
            "ZARRSHARE_USAGE_FLUSH_SECS" => set.or_else(|| Some("5".into())),
            "ZARRSHARE_TABLE" if aws => set.or_else(|| Some("zarrshare".into())),
            "ZARRSHARE_TABLE" => None,
            "ZARRSHARE_EMBEDDED_DB" => Some(embedded.to_string_lossy().into_owned()),
            // Locally, annotation bodies go to the data directory; with --aws to the bucket.
            "ZARRSHARE_ANNOTATIONS_URL" if !aws => set.or_else(|| Some(annotations.clone())),
            "ZARRSHARE_DATA_BUCKET" if aws => set.or_else(|| Some("zarrshare-data".into())),
            _ => set,
        }
    })?;
    Ok(config)
}

pub async fn start(opts: ServeOptions) -> Result<Running, ServeError> {
    std::fs::create_dir_all(opts.data_dir.join("objects")).map_err(io(&opts.data_dir))?;
    let data_dir = std::fs::canonicalize(&opts.data_dir).map_err(io(&opts.data_dir))?;
    let listener = TcpListener::bind(("127.0.0.1", opts.port))
        .await
        .map_err(io(&data_dir))?;
    let addr = listener.local_addr().map_err(io(&data_dir))?;
    let base_url = format!("http://{addr}");
    let config = config_for(&opts, &data_dir, &base_url)?;
    let admin_key = config.admin_key.clone().unwrap_or_default();

    if opts.aws
        && let (MetadataBackend::DynamoDb { table }, Some(bucket)) =
            (&config.metadata, &config.data_bucket)
    {
        let sdk = shared::services::aws_sdk_config(&config).await;
        crate::provision::provision(&sdk, &crate::provision::Resources::new(table, bucket)).await?;
    }
    let store = shared::services::open_store(&config).await?;
    let (store, counts) = Metered::wrap(store);
    let services = Arc::new(Services::build(config, store).await?);

    let demo = if opts.seed_demo {
        Some(seed_demo(&services, &data_dir, &base_url, &admin_key).await?)
    } else {
        None
    };
    let app = app(services.clone(), counts.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let flusher = services.clone();
    let server = tokio::spawn(async move {
        let signal = async move {
            tokio::select! { _ = shutdown_signal() => {}, _ = stopped => {} }
        };
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await;
        // Link usage counted since the last flush is written before the process ends.
        flusher.flush_usage().await;
        served
    });
    if let Some(path) = &opts.ready_file {
        let ready = Ready {
            base_url: base_url.clone(),
            demo: demo.clone(),
            admin_key_file: data_dir.join("admin.key"),
        };
        let text =
            serde_json::to_string_pretty(&ready).map_err(|e| ServeError::Seed(e.to_string()))?;
        // Write then rename, so a watcher never reads half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
    }
    Ok(Running {
        base_url,
        addr,
        demo,
        counts,
        services,
        admin_key,
        server,
        stop,
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Where the demo pyramid lives for this configuration, writing (and for S3 uploading) it
/// only when it is not there yet.
async fn demo_storage(services: &Services, data_dir: &Path) -> Result<StorageUrl, ServeError> {
    let local = data_dir.join("objects/demo/cells.ome.zarr");
    let write_local = || async {
        if !local.join("zarr.json").exists() {
            let dir = local.clone();
            tokio::task::spawn_blocking(move || demo::write_pyramid(&dir))
                .await
                .map_err(|e| ServeError::Seed(e.to_string()))??;
        }
        Ok::<_, ServeError>(())
    };
    let bucket = services
        .config
        .data_bucket
        .clone()
        .filter(|_| matches!(services.config.metadata, MetadataBackend::DynamoDb { .. }));
    let Some(bucket) = bucket else {
        write_local().await?;
        return Ok(StorageUrl::Local { path: local });
    };
    let url = StorageUrl::S3 {
        bucket,
        prefix: "demo/cells.ome.zarr".into(),
    };
    let location = services
        .objects
        .locate(&url)
        .map_err(|e| ServeError::Seed(e.to_string()))?;
    let marker = object_store::path::Path::from(format!("{}/zarr.json", location.root()));
    if location.store().head(&marker).await.is_err() {
        write_local().await?;
        // The root document last: its presence means the upload is complete.
        let mut files = walk(&local);
        files.sort_by_key(|p| p.ends_with("zarr.json") && p.parent() == Some(local.as_path()));
        for entry in files {
            let rel = entry
                .strip_prefix(&local)
                .map_err(|e| ServeError::Seed(e.to_string()))?;
            let bytes = std::fs::read(&entry).map_err(io(&entry))?;
            let path = object_store::path::Path::from(format!(
                "{}/{}",
                location.root(),
                rel.to_string_lossy()
            ));
            location.store().put(&path, bytes.into()).await?;
        }
    }
    Ok(url)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p)
            } else {
                out.push(p)
            }
        }
    }
    out.sort();
    out
}

/// Calls the API in-process, as a client would.
async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    key: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, ServeError> {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .map_err(|e| ServeError::Seed(e.to_string()))?;
    let response = app
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| ServeError::Seed(e.to_string()))?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .map_err(|e| ServeError::Seed(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    if status.is_success() {
        Ok(value)
    } else {
        Err(ServeError::Seed(format!(
            "{method} {uri}: {status}: {value}"
        )))
    }
}

const PUBLIC_NAME: &str = "demo-public";
const PRIVATE_NAME: &str = "demo-private";

/// Registers the demo pyramid (public and private) and a share link, through the API, once;
/// later runs reuse them.
async fn seed_demo(
    services: &Arc<Services>,
    data_dir: &Path,
    base_url: &str,
    admin_key: &str,
) -> Result<DemoInfo, ServeError> {
    let state_file = data_dir.join(
        if matches!(services.config.metadata, MetadataBackend::DynamoDb { .. }) {
            "demo-aws.json"
        } else {
            "demo.json"
        },
    );
    let info = |s: &DemoState| DemoInfo {
        dataset_id: s.dataset_id.clone(),
        public_url: format!("{base_url}/data/{}/", s.dataset_id),
        private_dataset_id: s.private_dataset_id.clone(),
        link_url: format!("{base_url}/s/{}/", s.link_token),
    };
    if let Some(state) = std::fs::read(&state_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<DemoState>(&b).ok())
    {
        let still_there = match LinkToken::parse(&state.link_token) {
            Ok(token) => services
                .catalog
                .link_by_token(&token.hash())
                .await
                .is_ok_and(|l| l.revoked_at.is_none()),
            Err(_) => false,
        };
        if still_there {
            return Ok(info(&state));
        }
    }

    let storage = demo_storage(services, data_dir).await?;
    let app = datasets::router(services.clone());
    let org = services.auth.org().clone();
    let mut ids = Vec::new();
    for (name, visibility, featured) in [
        (PUBLIC_NAME, "public", true),
        (PRIVATE_NAME, "private", false),
    ] {
        let existing = match DatasetName::parse(name) {
            Ok(n) => services.catalog.dataset_by_name(&org, &n).await.ok(),
            Err(_) => None,
        };
        let id = match existing {
            Some(d) => d.id.to_string(),
            None => {
                let created = call(&app, "POST", "/api/datasets", admin_key, json!({
                    "name": name,
                    "url": storage.to_string(),
                    "visibility": visibility,
                    "featured": featured,
                    "display_name": "Demo cells (synthetic OME-Zarr 0.5)",
                    "description": "A synthetic 3-level OME-Zarr 0.5 pyramid with a sharded label image, generated by zarrshare."
                }))
                .await?;
                created["id"].as_str().unwrap_or_default().to_owned()
            }
        };
        ids.push(id);
    }
    let link = call(
        &app,
        "POST",
        &format!("/api/datasets/{}/links", ids[1]),
        admin_key,
        json!({"label": "demo reviewer link"}),
    )
    .await?;
    let state = DemoState {
        dataset_id: ids[0].clone(),
        private_dataset_id: ids[1].clone(),
        link_token: link["token"].as_str().unwrap_or_default().to_owned(),
    };
    write_private(
        &state_file,
        &serde_json::to_string_pretty(&state).map_err(|e| ServeError::Seed(e.to_string()))?,
    )?;
    Ok(info(&state))
}

/// `GET /` for people who open the base URL in a browser.
async fn index() -> impl IntoResponse {
    (
        StatusCode::OK,
        "zarrshare local server: the API is described at /api/openapi.json\n",
    )
}
