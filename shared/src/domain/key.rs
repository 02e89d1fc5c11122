//! Object keys under a dataset root, as requested by viewers (`.zattrs`, `0/1/2/3`, `c/0/0/0`).

use std::fmt;

use super::ParseError;

/// A relative key inside a dataset: non-empty `/`-separated segments, none of them `.` or `..`,
/// no empty segments (`//`), no backslashes, no control characters. Parsed from the raw,
/// still percent-encoded request path so that encoded separators or dots (`%2e%2e`, `%2f`,
/// `%5c`) cannot smuggle a traversal past the check.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

const MAX_KEY_LEN: usize = 1024;

impl ObjectKey {
    /// Parses a raw (percent-encoded) path tail.
    pub fn parse_raw(raw: &str) -> Result<Self, ParseError> {
        let decoded = percent_decode(raw)?;
        // An encoded separator would change the segment structure after decoding.
        let lower = raw.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") {
            return Err(reject("contains an encoded path separator"));
        }
        Self::parse(&decoded)
    }

    /// Parses an already-decoded key.
    pub fn parse(key: &str) -> Result<Self, ParseError> {
        if key.is_empty() {
            return Err(reject("is empty"));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(reject("is longer than 1024 bytes"));
        }
        if key.contains('\\') {
            return Err(reject("contains a backslash"));
        }
        if key.chars().any(char::is_control) {
            return Err(reject("contains a control character"));
        }
        for segment in key.split('/') {
            match segment {
                "" => return Err(reject("has an empty segment")),
                "." | ".." => return Err(reject("has a '.' or '..' segment")),
                _ => {}
            }
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the key names a Zarr/OME metadata document rather than a chunk.
    pub fn is_metadata(&self) -> bool {
        let name = self.0.rsplit('/').next().unwrap_or(&self.0);
        matches!(
            name,
            "zarr.json" | ".zarray" | ".zgroup" | ".zattrs" | ".zmetadata"
        )
    }

    /// Whether this key lies at or below `prefix` (a directory-level scope).
    pub fn is_within(&self, prefix: &ObjectKey) -> bool {
        self.0 == prefix.0
            || (self.0.starts_with(&prefix.0)
                && self.0.as_bytes().get(prefix.0.len()) == Some(&b'/'))
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({:?})", self.0)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn reject(why: &'static str) -> ParseError {
    ParseError::new("object key", why)
}

fn percent_decode(raw: &str) -> Result<String, ParseError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or_else(|| reject("has a broken %-escape"))?;
            let hi = (hex[0] as char).to_digit(16);
            let lo = (hex[1] as char).to_digit(16);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(((hi << 4) | lo) as u8),
                _ => return Err(reject("has a broken %-escape")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| reject("is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_zarr_keys() {
        for ok in [
            "zarr.json",
            ".zattrs",
            "0/.zarray",
            "0/c/1/2/3",
            "labels/cells/0/0.0.0",
            "a%20b",
        ] {
            assert!(ObjectKey::parse_raw(ok).is_ok(), "{ok:?} rejected");
        }
        assert_eq!(ObjectKey::parse_raw("a%20b").map(|k| k.0), Ok("a b".into()));
    }

    #[test]
    fn rejects_traversal_in_every_spelling() {
        for bad in [
            "",
            "..",
            "../secret",
            "0/../../x",
            "./zarr.json",
            "a//b",
            "/abs",
            "trailing/",
            "a\\..\\b",
            "%2e%2e/x",
            "%2E%2E%2Fx",
            "a%2fb",
            "a%5cb",
            "%2e/zarr.json",
            "nul%00byte",
            "bad%zz",
            "cut%2",
        ] {
            assert!(ObjectKey::parse_raw(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn scopes_are_directory_aligned() {
        let scope = ObjectKey::parse("labels").unwrap_or_else(|e| panic!("{e}"));
        let inside = ObjectKey::parse("labels/cells/zarr.json").unwrap_or_else(|e| panic!("{e}"));
        let sibling = ObjectKey::parse("labelsX/zarr.json").unwrap_or_else(|e| panic!("{e}"));
        assert!(inside.is_within(&scope));
        assert!(!sibling.is_within(&scope));
    }

    #[test]
    fn knows_metadata_documents() {
        let k = |s| ObjectKey::parse(s).unwrap_or_else(|e| panic!("{e}"));
        assert!(k("0/zarr.json").is_metadata());
        assert!(k(".zattrs").is_metadata());
        assert!(!k("0/c/0/0/0").is_metadata());
    }
}
