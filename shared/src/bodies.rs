//! Annotation version bodies: small ones live in the version item itself, larger ones are
//! written to object storage (S3 in AWS, a directory locally) before the version is recorded,
//! and are checked against their SHA-256 when read back.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::domain::{AnnotationId, MAX_INLINE_BODY_BYTES, ObjectKey, StorageUrl, VersionBody};
use crate::objects::{Location, Objects, ObjectsError};

/// The largest body accepted (a save's whole content).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Too large to inline, and no annotation storage is configured.
    #[error("no storage is configured for large annotation bodies")]
    NoStorage,
    #[error("the annotation body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// The stored object does not match what was recorded.
    #[error("the stored annotation body {key} is corrupt")]
    Corrupt { key: String },
    #[error("annotation body storage failed")]
    Storage(#[from] ObjectsError),
    #[error("annotation body encoding failed")]
    Encode(#[from] serde_json::Error),
}

/// Where annotation bodies go.
#[derive(Clone)]
pub struct Bodies {
    location: Option<Location>,
}

impl std::fmt::Debug for Bodies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bodies")
            .field("configured", &self.location.is_some())
            .finish()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Bodies {
    /// Bodies under `url` (none: only inline bodies).
    pub fn new(objects: &Objects, url: Option<&StorageUrl>) -> Result<Self, ObjectsError> {
        Ok(Self {
            location: url.map(|u| objects.locate(u)).transpose()?,
        })
    }

    /// The location volume annotations and bodies are written under, if any.
    pub fn location(&self) -> Option<&Location> {
        self.location.as_ref()
    }

    /// Keeps `content` as the body of `version`: inline when small, else as an object named
    /// after the version (plus a random part, so that a save that loses its race never
    /// overwrites the winner's object).
    pub async fn store(
        &self,
        id: &AnnotationId,
        version: u64,
        content: &serde_json::Value,
    ) -> Result<VersionBody, BodyError> {
        let bytes = serde_json::to_vec(content)?;
        if bytes.len() <= MAX_INLINE_BODY_BYTES {
            return Ok(VersionBody::Inline {
                content: content.clone(),
            });
        }
        if bytes.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        let location = self.location.as_ref().ok_or(BodyError::NoStorage)?;
        let nonce = crate::domain::LinkId::generate();
        let key = format!("{id}/v{version:020}-{nonce}.json");
        let object_key =
            ObjectKey::parse(&key).map_err(|_| BodyError::Corrupt { key: key.clone() })?;
        let sha256 = sha256_hex(&bytes);
        let size = bytes.len() as u64;
        location.put(&object_key, Bytes::from(bytes)).await?;
        Ok(VersionBody::Object {
            key,
            bytes: size,
            sha256,
        })
    }

    /// A version's content, from the item or from storage (checked against its hash).
    pub async fn load(&self, body: &VersionBody) -> Result<serde_json::Value, BodyError> {
        match body {
            VersionBody::Inline { content } => Ok(content.clone()),
            VersionBody::Object { key, bytes, sha256 } => {
                let location = self.location.as_ref().ok_or(BodyError::NoStorage)?;
                let corrupt = || BodyError::Corrupt { key: key.clone() };
                let object_key = ObjectKey::parse(key).map_err(|_| corrupt())?;
                let data = location
                    .get(&object_key, Default::default())
                    .await?
                    .bytes()
                    .await
                    .map_err(ObjectsError::from)?;
                if data.len() as u64 != *bytes || sha256_hex(&data) != *sha256 {
                    return Err(corrupt());
                }
                Ok(serde_json::from_slice(&data).map_err(|_| corrupt())?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::S3Settings;
    use serde_json::json;

    fn bodies(root: &std::path::Path) -> Bodies {
        let objects = Objects::new(S3Settings::default(), vec![root.to_path_buf()], b"k");
        let url = StorageUrl::Local {
            path: root.join("annotations"),
        };
        std::fs::create_dir_all(root.join("annotations")).unwrap_or_else(|e| panic!("{e}"));
        Bodies::new(&objects, Some(&url)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn large() -> serde_json::Value {
        json!({ "trees": (0..4000).map(|i| json!({"id": i, "name": format!("tree {i}")})).collect::<Vec<_>>() })
    }

    #[tokio::test]
    async fn small_bodies_stay_inline_and_large_ones_round_trip_through_storage() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        let b = bodies(&root);
        let id = AnnotationId::generate();
        let small = json!({"trees": []});
        assert_eq!(
            b.store(&id, 1, &small)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            VersionBody::Inline {
                content: small.clone()
            }
        );
        let big = large();
        let stored = b
            .store(&id, 2, &big)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let VersionBody::Object { key, bytes, .. } = &stored else {
            panic!("a large body must go to storage: {stored:?}");
        };
        assert!(key.starts_with(&format!("{id}/v00000000000000000002-")));
        assert!(*bytes as usize > MAX_INLINE_BODY_BYTES);
        assert!(root.join("annotations").join(key).is_file());
        assert_eq!(b.load(&stored).await.unwrap_or_else(|e| panic!("{e}")), big);

        // Changed bytes are caught.
        std::fs::write(root.join("annotations").join(key), b"{}").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            b.load(&stored).await,
            Err(BodyError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn without_storage_only_small_bodies_are_kept() {
        let objects = Objects::new(S3Settings::default(), vec![], b"k");
        let b = Bodies::new(&objects, None).unwrap_or_else(|e| panic!("{e}"));
        let id = AnnotationId::generate();
        assert!(b.store(&id, 1, &json!({})).await.is_ok());
        assert!(matches!(
            b.store(&id, 2, &large()).await,
            Err(BodyError::NoStorage)
        ));
    }
}
