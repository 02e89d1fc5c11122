//! Configuration from the environment, parsed once at start-up.

use std::path::PathBuf;
use std::time::Duration;

use crate::domain::OrgId;

/// Where metadata lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataBackend {
    DynamoDb { table: String },
    Embedded { path: PathBuf },
}

/// How the chunk function hands out bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Stream the object through the function.
    Proxy,
    /// `307` to a short-lived presigned URL; the storage serves the bytes.
    Redirect,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub metadata: MetadataBackend,
    /// Bucket for data the service writes itself (demo data, later annotation bodies).
    pub data_bucket: Option<String>,
    pub aws_endpoint: Option<String>,
    pub aws_region: String,
    pub delivery: Delivery,
    /// How long a function instance trusts what it resolved (dataset visibility, link state).
    /// This bounds how late a revocation takes effect in other instances.
    pub access_cache_ttl: Duration,
    pub presign_ttl: Duration,
    /// In proxy mode, larger objects are redirected instead (Lambda's 6 MB response limit).
    pub max_proxy_bytes: u64,
    pub admin_key: Option<String>,
    pub org: OrgId,
    /// The externally visible base URL (`https://data.example.org`), for links in responses.
    pub public_base_url: Option<String>,
    pub local_roots: Vec<PathBuf>,
    /// Secret for local presigned URLs.
    pub signing_secret: Vec<u8>,
    /// HS256 key of access tokens; every instance of every function needs the same one.
    pub jwt_secret: Vec<u8>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// The From address of invitations (SES must have it verified).
    pub sender_email: Option<String>,
    /// Write mail to this JSON-lines file instead of sending it (local runs).
    pub outbox: Option<PathBuf>,
    /// How often an instance writes the link usage it counted (at most this much is lost when
    /// an instance is recycled).
    pub usage_flush_interval: Duration,
    /// How long the URL a link password unlocks stays valid.
    pub unlock_ttl: Duration,
    /// The Neuroglancer deployment view-state links open in.
    pub neuroglancer_url: String,
    /// Where annotation bodies (and volume annotations) are written: `s3://bucket/prefix` or a
    /// local directory below the data roots. Defaults to `annotations/` in the data bucket.
    pub annotations: Option<crate::domain::StorageUrl>,
}

/// The longest a revocation may take to reach every function instance.
pub const MAX_ACCESS_CACHE_TTL: Duration = Duration::from_secs(60);
pub const DEFAULT_ACCESS_CACHE_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is required")]
    Missing { name: &'static str },
    #[error("{name} is invalid: {why}")]
    Invalid {
        name: &'static str,
        why: &'static str,
    },
}

fn seconds(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| ConfigError::Invalid {
                name,
                why: "not a whole number of seconds",
            }),
    }
}

impl Config {
    /// Reads `ZARRSHARE_*` and the standard `AWS_*` variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the same settings through `lookup` (the environment, or the environment with
    /// defaults laid under it); blank values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let metadata = match (var("ZARRSHARE_TABLE"), var("ZARRSHARE_EMBEDDED_DB")) {
            (Some(table), _) => MetadataBackend::DynamoDb { table },
            (None, Some(path)) => MetadataBackend::Embedded { path: path.into() },
            (None, None) => {
                return Err(ConfigError::Missing {
                    name: "ZARRSHARE_TABLE",
                });
            }
        };
        let delivery = match var("ZARRSHARE_DELIVERY").as_deref() {
            None | Some("proxy") => Delivery::Proxy,
            Some("redirect") => Delivery::Redirect,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "ZARRSHARE_DELIVERY",
                    why: "must be proxy or redirect",
                });
            }
        };
        let access_cache_ttl = seconds(
            &var,
            "ZARRSHARE_ACCESS_CACHE_TTL_SECS",
            DEFAULT_ACCESS_CACHE_TTL,
        )?;
        if access_cache_ttl > MAX_ACCESS_CACHE_TTL {
            return Err(ConfigError::Invalid {
                name: "ZARRSHARE_ACCESS_CACHE_TTL_SECS",
                why: "must be at most 60",
            });
        }
        let org = OrgId::parse(&var("ZARRSHARE_ORG").unwrap_or_else(|| "default".into())).map_err(
            |_| ConfigError::Invalid {
                name: "ZARRSHARE_ORG",
                why: "not an organization slug",
            },
        )?;
        let max_proxy_bytes = match var("ZARRSHARE_MAX_PROXY_BYTES") {
            None => 5 * 1024 * 1024,
            Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
                name: "ZARRSHARE_MAX_PROXY_BYTES",
                why: "not a number",
            })?,
        };
        let signing_secret = match var("ZARRSHARE_SIGNING_SECRET") {
            Some(s) if s.len() >= 32 => s.into_bytes(),
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "ZARRSHARE_SIGNING_SECRET",
                    why: "must be at least 32 characters",
                });
            }
            None => {
                // Only local presigned URLs use it; a per-process random key is then correct.
                let mut key = vec![0u8; 32];
                rand::Rng::fill_bytes(&mut rand::rng(), &mut key);
                key
            }
        };
        let jwt_secret = match var("ZARRSHARE_JWT_SECRET") {
            Some(s) if s.len() >= 32 => s.into_bytes(),
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "ZARRSHARE_JWT_SECRET",
                    why: "must be at least 32 characters",
                });
            }
            None => {
                // Tokens then only verify in this process: fine for one local server, not for Lambda.
                let mut key = vec![0u8; 32];
                rand::Rng::fill_bytes(&mut rand::rng(), &mut key);
                key
            }
        };
        Ok(Self {
            jwt_secret,
            access_token_ttl: seconds(
                &var,
                "ZARRSHARE_ACCESS_TOKEN_TTL_SECS",
                Duration::from_secs(15 * 60),
            )?,
            refresh_token_ttl: seconds(
                &var,
                "ZARRSHARE_REFRESH_TOKEN_TTL_SECS",
                Duration::from_secs(30 * 86_400),
            )?,
            sender_email: var("ZARRSHARE_SENDER_EMAIL"),
            outbox: var("ZARRSHARE_OUTBOX").map(PathBuf::from),
            usage_flush_interval: seconds(
                &var,
                "ZARRSHARE_USAGE_FLUSH_SECS",
                Duration::from_secs(60),
            )?,
            unlock_ttl: seconds(
                &var,
                "ZARRSHARE_UNLOCK_TTL_SECS",
                Duration::from_secs(12 * 3600),
            )?,
            neuroglancer_url: var("ZARRSHARE_NEUROGLANCER_URL")
                .unwrap_or_else(|| "https://neuroglancer-demo.appspot.com/".into()),
            annotations: match (
                var("ZARRSHARE_ANNOTATIONS_URL"),
                var("ZARRSHARE_DATA_BUCKET"),
            ) {
                (Some(url), _) => Some(crate::domain::StorageUrl::parse(&url).map_err(|_| {
                    ConfigError::Invalid {
                        name: "ZARRSHARE_ANNOTATIONS_URL",
                        why: "not an s3:// URL or an absolute path",
                    }
                })?),
                (None, Some(bucket)) => {
                    let prefix = var("ZARRSHARE_ANNOTATIONS_PREFIX")
                        .unwrap_or_else(|| "annotations/".into());
                    Some(
                        crate::domain::StorageUrl::parse(&format!(
                            "s3://{bucket}/{}",
                            prefix.trim_matches('/')
                        ))
                        .map_err(|_| ConfigError::Invalid {
                            name: "ZARRSHARE_ANNOTATIONS_PREFIX",
                            why: "not a key prefix",
                        })?,
                    )
                }
                (None, None) => None,
            },
            metadata,
            data_bucket: var("ZARRSHARE_DATA_BUCKET"),
            aws_endpoint: var("AWS_ENDPOINT_URL"),
            aws_region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            delivery,
            access_cache_ttl,
            presign_ttl: seconds(&var, "ZARRSHARE_PRESIGN_TTL_SECS", Duration::from_secs(300))?,
            max_proxy_bytes,
            admin_key: var("ZARRSHARE_ADMIN_KEY"),
            org,
            public_base_url: var("ZARRSHARE_PUBLIC_BASE_URL")
                .map(|u| u.trim_end_matches('/').to_owned()),
            local_roots: var("ZARRSHARE_LOCAL_ROOTS")
                .map(|v| {
                    v.split(':')
                        .filter(|p| !p.is_empty())
                        .map(PathBuf::from)
                        .collect()
                })
                .unwrap_or_default(),
            signing_secret,
        })
    }
}
