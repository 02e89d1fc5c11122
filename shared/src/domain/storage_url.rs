//! Where a dataset's hierarchy lives: `s3://bucket/prefix` or an absolute local path.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ObjectKey, ParseError};

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StorageUrl {
    /// A bucket and a prefix without leading or trailing `/` (empty for the bucket root).
    S3 { bucket: String, prefix: String },
    /// An absolute, normalized directory path on the server's filesystem.
    Local { path: PathBuf },
}

impl StorageUrl {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !is_bucket_name(bucket) {
                return Err(ParseError::new(
                    "storage URL",
                    "has an invalid S3 bucket name",
                ));
            }
            let prefix = prefix.trim_end_matches('/');
            if !prefix.is_empty() {
                ObjectKey::parse(prefix).map_err(|_| {
                    ParseError::new(
                        "storage URL",
                        "has an invalid prefix ('.', '..', '//' or '\\')",
                    )
                })?;
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        let path = Path::new(path);
        if !path.is_absolute() {
            return Err(ParseError::new(
                "storage URL",
                "must be s3://bucket/prefix, file:///absolute/path or /absolute/path",
            ));
        }
        let mut normalized = PathBuf::new();
        for component in path.components() {
            match component {
                Component::RootDir => normalized.push("/"),
                Component::Normal(part) => normalized.push(part),
                Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(ParseError::new("storage URL", "must not contain '..'"));
                }
            }
        }
        Ok(Self::Local { path: normalized })
    }

    /// The object-store path of `key` below this root (for S3: within the bucket).
    pub fn object_path(&self, key: &ObjectKey) -> String {
        match self {
            Self::S3 { prefix, .. } if prefix.is_empty() => key.as_str().to_owned(),
            Self::S3 { prefix, .. } => format!("{prefix}/{}", key.as_str()),
            Self::Local { path } => {
                let root = path.to_string_lossy();
                format!("{}/{}", root.trim_matches('/'), key.as_str())
            }
        }
    }

    /// The root's own object-store path (no trailing `/`).
    pub fn root_path(&self) -> String {
        match self {
            Self::S3 { prefix, .. } => prefix.clone(),
            Self::Local { path } => path.to_string_lossy().trim_matches('/').to_owned(),
        }
    }
}

/// S3's bucket naming rules: 3–63 of `a-z 0-9 . -`, starting and ending alphanumeric.
fn is_bucket_name(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !b.contains("..")
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::Local { path } => write!(f, "file://{}", path.display()),
        }
    }
}

impl TryFrom<String> for StorageUrl {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl From<StorageUrl> for String {
    fn from(u: StorageUrl) -> String {
        u.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_urls() {
        let u =
            StorageUrl::parse("s3://lab-data/em/cells.ome.zarr/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            u,
            StorageUrl::S3 {
                bucket: "lab-data".into(),
                prefix: "em/cells.ome.zarr".into()
            }
        );
        assert_eq!(u.to_string(), "s3://lab-data/em/cells.ome.zarr");
        let key = ObjectKey::parse("0/zarr.json").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.object_path(&key), "em/cells.ome.zarr/0/zarr.json");
        let root = StorageUrl::parse("s3://lab-data").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(root.object_path(&key), "0/zarr.json");
    }

    #[test]
    fn parses_local_paths() {
        let u = StorageUrl::parse("file:///srv/data/./x.zarr").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            u,
            StorageUrl::Local {
                path: "/srv/data/x.zarr".into()
            }
        );
        assert_eq!(StorageUrl::parse(&u.to_string()), Ok(u));
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "",
            "relative/path",
            "s3://",
            "s3://Bad_Bucket/x",
            "s3://ab/x",
            "s3://bucket/../x",
            "s3://bucket/a//b",
            "/srv/../etc",
            "http://example.org/x.zarr",
        ] {
            assert!(StorageUrl::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
