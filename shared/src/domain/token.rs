//! Secret share-link tokens. A token is shown once, at creation; only its SHA-256 hash is
//! stored, and lookups go by hash, so a stolen table reveals no usable link.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ParseError;

/// 256 random bits (twice the 128-bit floor), URL-safe base64: 43 characters.
const TOKEN_BYTES: usize = 32;
const TOKEN_CHARS: usize = 43;

/// A share-link token as it travels in `/s/{token}/...`. Its `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkToken(String);

impl LinkToken {
    pub fn generate() -> Self {
        let mut raw = [0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut raw);
        Self(URL_SAFE_NO_PAD.encode(raw))
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let well_formed = s.len() == TOKEN_CHARS
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if well_formed {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::new("link token", "is not a share-link token"))
        }
    }

    /// The secret itself: only for building the URL handed to the link's creator.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken(…)")
    }
}

/// SHA-256 of a token; the only form in which tokens are stored.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenHash([u8; 32]);

impl std::hash::Hash for TokenHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl TokenHash {
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            s.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
        s
    }

    pub fn from_hex(s: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::new("token hash", "must be 64 hex digits");
        if s.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or_else(bad)?;
            let lo = (pair[1] as char).to_digit(16).ok_or_else(bad)?;
            out[i] = ((hi << 4) | lo) as u8;
        }
        Ok(Self(out))
    }
}

/// Equality in constant time, so comparing a presented hash with a stored one leaks no prefix.
impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for TokenHash {}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

impl TryFrom<String> for TokenHash {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::from_hex(&s)
    }
}

impl From<TokenHash> for String {
    fn from(h: TokenHash) -> String {
        h.to_hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_parse_back() {
        let t = LinkToken::generate();
        assert_eq!(t.expose().len(), TOKEN_CHARS);
        assert_eq!(LinkToken::parse(t.expose()), Ok(t.clone()));
        assert_ne!(t, LinkToken::generate());
    }

    #[test]
    fn hash_round_trips_through_hex_and_hides_the_token() {
        let t = LinkToken::generate();
        let h = t.hash();
        assert_eq!(TokenHash::from_hex(&h.to_hex()).ok(), Some(h));
        assert!(!format!("{t:?}{h:?}").contains(t.expose()));
        assert_ne!(h, LinkToken::generate().hash());
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}/", "a".repeat(42)),
        ] {
            assert!(LinkToken::parse(bad).is_err(), "{bad:?}");
        }
    }
}
