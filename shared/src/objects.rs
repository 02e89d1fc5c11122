//! Object storage through `object_store`: S3 (any bucket a dataset names, one client per
//! bucket, built once) and the local filesystem (below configured roots), each with presigned
//! GET URLs — S3's own signature, or for local files a short-lived signed `/_blob/...` URL that
//! the chunk function verifies.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetResult, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::domain::{ObjectKey, StorageUrl};

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("object not found")]
    NotFound,
    #[error("not modified")]
    NotModified,
    /// The local path lies outside every root this server may read.
    #[error("local path is outside the allowed data roots")]
    Forbidden,
    #[error("object storage failed")]
    Backend { source: Source },
}

impl From<object_store::Error> for ObjectsError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::NotFound,
            object_store::Error::NotModified { .. } => Self::NotModified,
            other => Self::Backend {
                source: Box::new(other),
            },
        }
    }
}

/// How to reach S3 (or an S3 emulator).
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    /// e.g. `http://127.0.0.1:4566` for LocalStack; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
}

/// Signs and verifies the local stand-in for S3 presigned URLs.
#[derive(Clone)]
struct LocalSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

#[derive(Serialize, Deserialize)]
struct BlobClaims {
    /// The object-store path the URL grants.
    p: String,
    exp: u64,
}

/// Where the local stand-in for presigned URLs is served.
pub const BLOB_ROUTE_PREFIX: &str = "/_blob/";

pub struct Objects {
    s3: S3Settings,
    buckets: RwLock<HashMap<String, Arc<object_store::aws::AmazonS3>>>,
    local: Arc<LocalFileSystem>,
    local_roots: Vec<PathBuf>,
    signer: LocalSigner,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects")
            .field("s3", &self.s3)
            .field("local_roots", &self.local_roots)
            .finish()
    }
}

/// A resolved dataset root: a store and the path of the root within it.
#[derive(Clone)]
pub struct Location {
    store: Arc<dyn ObjectStore>,
    root: String,
    signer: LocationSigner,
}

#[derive(Clone)]
enum LocationSigner {
    S3(Arc<object_store::aws::AmazonS3>),
    Local(LocalSigner),
}

impl Objects {
    /// `local_roots`: directories whose contents may be registered as datasets.
    /// `signing_secret`: key for local presigned URLs (≥ 32 bytes).
    pub fn new(s3: S3Settings, local_roots: Vec<PathBuf>, signing_secret: &[u8]) -> Self {
        Self {
            s3,
            buckets: RwLock::new(HashMap::new()),
            local: Arc::new(LocalFileSystem::new()),
            local_roots,
            signer: LocalSigner {
                encoding: EncodingKey::from_secret(signing_secret),
                decoding: DecodingKey::from_secret(signing_secret),
            },
        }
    }

    fn bucket(&self, bucket: &str) -> Result<Arc<object_store::aws::AmazonS3>, ObjectsError> {
        if let Some(s) = self
            .buckets
            .read()
            .ok()
            .and_then(|m| m.get(bucket).cloned())
        {
            return Ok(s);
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&self.s3.region)
            .with_virtual_hosted_style_request(false);
        if let Some(endpoint) = &self.s3.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = Arc::new(builder.build().map_err(ObjectsError::from)?);
        if let Ok(mut m) = self.buckets.write() {
            m.insert(bucket.to_owned(), store.clone());
        }
        Ok(store)
    }

    /// Whether a local path lies below an allowed root (after resolving symlinks when it exists).
    pub fn local_path_allowed(&self, path: &FsPath) -> bool {
        let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.local_roots.iter().any(|root| {
            let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
            resolved.starts_with(root)
        })
    }

    pub fn locate(&self, url: &StorageUrl) -> Result<Location, ObjectsError> {
        match url {
            StorageUrl::S3 { bucket, prefix } => {
                let store = self.bucket(bucket)?;
                Ok(Location {
                    store: store.clone(),
                    root: prefix.clone(),
                    signer: LocationSigner::S3(store),
                })
            }
            StorageUrl::Local { path } => {
                if !self.local_path_allowed(path) {
                    return Err(ObjectsError::Forbidden);
                }
                Ok(Location {
                    store: self.local.clone(),
                    root: url.root_path(),
                    signer: LocationSigner::Local(self.signer.clone()),
                })
            }
        }
    }

    /// Checks a local presigned URL and returns the path it grants: signed, not expired, and
    /// below an allowed root.
    pub fn verify_local_signature(&self, path: &str, sig: &str) -> Option<Path> {
        let mut v = Validation::new(Algorithm::HS256);
        v.required_spec_claims = ["exp".to_owned()].into();
        v.leeway = 0;
        let claims = jsonwebtoken::decode::<BlobClaims>(sig, &self.signer.decoding, &v)
            .ok()?
            .claims;
        // Only a path still below an allowed root (there are none in a Lambda).
        let below_a_root = self.local_path_allowed(&PathBuf::from(format!("/{path}")));
        (claims.p == path && below_a_root).then(|| Path::from(path))
    }

    /// The local filesystem store (for serving verified `/_blob/` URLs).
    pub fn local_store(&self) -> Arc<dyn ObjectStore> {
        self.local.clone()
    }
}

impl Location {
    pub fn path(&self, key: &ObjectKey) -> Path {
        if self.root.is_empty() {
            Path::from(key.as_str())
        } else {
            Path::from(format!("{}/{}", self.root, key.as_str()))
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    pub async fn get(
        &self,
        key: &ObjectKey,
        options: GetOptions,
    ) -> Result<GetResult, ObjectsError> {
        Ok(self.store.get_opts(&self.path(key), options).await?)
    }

    /// Writes one object (whole; S3 PUT semantics).
    pub async fn put(&self, key: &ObjectKey, bytes: bytes::Bytes) -> Result<(), ObjectsError> {
        self.store
            .put(&self.path(key), object_store::PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// Up to `limit` objects (key below the root, size) at or below `prefix`, in key order,
    /// after the key `after`.
    pub async fn list(
        &self,
        prefix: Option<&str>,
        after: Option<&ObjectKey>,
        limit: usize,
    ) -> Result<Vec<(ObjectKey, u64)>, ObjectsError> {
        use futures::TryStreamExt;
        let dir = match prefix.filter(|p| !p.is_empty()) {
            Some(p) => self.path(&ObjectKey::parse(p).map_err(|_| ObjectsError::NotFound)?),
            None => Path::from(self.root.as_str()),
        };
        let dir = (!dir.as_ref().is_empty()).then_some(dir);
        let mut stream = match after {
            Some(a) => self.store.list_with_offset(dir.as_ref(), &self.path(a)),
            None => self.store.list(dir.as_ref()),
        };
        // S3 lists in key order, so a page is its first `limit` keys; a file system lists in
        // no particular order, so everything is read and sorted.
        let ordered = matches!(self.signer, LocationSigner::S3(_));
        let strip = if self.root.is_empty() {
            String::new()
        } else {
            format!("{}/", self.root)
        };
        let mut out = Vec::new();
        while let Some(meta) = stream.try_next().await? {
            let full = meta.location.as_ref();
            let Some(key) = full
                .strip_prefix(strip.as_str())
                .and_then(|k| ObjectKey::parse(k).ok())
            else {
                continue;
            };
            out.push((key, meta.size));
            if ordered && out.len() >= limit {
                break;
            }
        }
        if !ordered {
            out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            out.truncate(limit);
        }
        Ok(out)
    }

    /// A URL that lets anyone GET this one object until `ttl` has passed. For local storage it
    /// is a path-absolute URL on this server (`/_blob/...`).
    pub async fn presign_get(
        &self,
        key: &ObjectKey,
        ttl: Duration,
    ) -> Result<String, ObjectsError> {
        let path = self.path(key);
        match &self.signer {
            LocationSigner::S3(s3) => Ok(s3
                .signed_url(http::Method::GET, &path, ttl)
                .await?
                .to_string()),
            LocationSigner::Local(signer) => {
                let exp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
                    + ttl.as_secs().max(1);
                let claims = BlobClaims {
                    p: path.to_string(),
                    exp,
                };
                let sig =
                    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &signer.encoding)
                        .map_err(|e| ObjectsError::Backend {
                            source: Box::new(e),
                        })?;
                Ok(format!("{BLOB_ROUTE_PREFIX}{}?sig={sig}", path.as_ref()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    fn key(s: &str) -> ObjectKey {
        ObjectKey::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn local_roots_confine_registration() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let objects = Objects::new(
            S3Settings::default(),
            vec![root.path().to_path_buf()],
            &[7; 32],
        );
        let inside = StorageUrl::Local {
            path: root.path().join("x.zarr"),
        };
        let outside = StorageUrl::Local {
            path: other.path().join("x.zarr"),
        };
        assert!(objects.locate(&inside).is_ok());
        assert!(matches!(
            objects.locate(&outside),
            Err(ObjectsError::Forbidden)
        ));
    }

    #[tokio::test]
    async fn local_presigned_urls_grant_one_path_until_expiry() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.path().join("a"), b"abc").unwrap_or_else(|e| panic!("{e}"));
        let objects = Objects::new(
            S3Settings::default(),
            vec![root.path().to_path_buf()],
            &[7; 32],
        );
        let loc = objects
            .locate(&StorageUrl::Local {
                path: root.path().to_path_buf(),
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let url = loc
            .presign_get(&key("a"), Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (path, sig) = url
            .trim_start_matches(BLOB_ROUTE_PREFIX)
            .split_once("?sig=")
            .unwrap_or_default();
        let granted = objects
            .verify_local_signature(path, sig)
            .expect("valid signature");
        let bytes = objects
            .local_store()
            .get(&granted)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bytes.bytes().await.unwrap_or_default().as_ref(), b"abc");
        assert!(
            objects.verify_local_signature("etc/passwd", sig).is_none(),
            "signature moved to another path"
        );
        let mut tampered = sig.to_owned();
        tampered.pop();
        assert!(
            objects.verify_local_signature(path, &tampered).is_none(),
            "tampered signature accepted"
        );
        let other = Objects::new(S3Settings::default(), vec![], &[8; 32]);
        assert!(
            other.verify_local_signature(path, sig).is_none(),
            "foreign key accepted"
        );
    }
}
