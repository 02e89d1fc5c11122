//! Identifiers: random, URL-safe, parsed once at the edge.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::ParseError;

/// Lower-case RFC 4648 base32 alphabet without padding: URL-safe, case-stable, no look-alike
/// punctuation, so ids survive being printed in papers and typed back in.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn random_base32(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    let mut out = String::with_capacity(bytes * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in raw {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn is_id_text(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b))
}

macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $bytes:literal, $len:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// A fresh random id.
            pub fn generate() -> Self {
                Self(random_base32($bytes))
            }

            /// Parses an id as it appears in a URL or a request body.
            pub fn parse(s: &str) -> Result<Self, ParseError> {
                if is_id_text(s, $len) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(ParseError::new($what, concat!("must be ", $len, " characters of a-z and 2-7")))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, ParseError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

random_id!(
    /// A dataset's id: 80 random bits, 16 characters. Public data URLs carry it.
    DatasetId, "dataset id", 10, 16
);
random_id!(
    /// A share link's id (not its secret token): 80 random bits.
    LinkId, "link id", 10, 16
);

random_id!(
    /// A user's id: 80 random bits.
    UserId, "user id", 10, 16
);
random_id!(
    /// A team's id: 80 random bits.
    TeamId, "team id", 10, 16
);
random_id!(
    /// An invitation's id (not its secret token): 80 random bits.
    InviteId, "invitation id", 10, 16
);
random_id!(
    /// An annotation's id: 80 random bits.
    AnnotationId, "annotation id", 10, 16
);

/// An organization's id: a short slug chosen at creation (`[a-z0-9-]{2,40}`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrgId(String);

impl OrgId {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let ok = (2..=40).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::new(
                "organization id",
                "must be 2-40 characters of a-z, 0-9 and inner '-'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrgId {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl From<OrgId> for String {
    fn from(id: OrgId) -> String {
        id.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_differ() {
        let a = DatasetId::generate();
        let b = DatasetId::generate();
        assert_ne!(a, b);
        assert_eq!(DatasetId::parse(a.as_str()), Ok(a));
        assert_eq!(LinkId::generate().as_str().len(), 16);
    }

    #[test]
    fn ids_reject_foreign_text() {
        for bad in [
            "",
            "ABCDEFGHIJKLMNOP",
            "abcdefghijklmno",
            "abcdefghijklmnop1",
            "../../etc/passwd",
        ] {
            assert!(DatasetId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn org_ids_are_slugs() {
        assert!(OrgId::parse("lab-7").is_ok());
        for bad in ["a", "-lab", "lab-", "Lab", "la b", &"x".repeat(41)] {
            assert!(OrgId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
