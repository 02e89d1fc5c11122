//! Signed, expiring capabilities that travel in URL paths, checked with one HMAC and no
//! database call: the unlock of a password-protected share link (`/s/{token}.{exp}.{sig}/…`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::domain::{Timestamp, TokenHash};

type HmacSha256 = hmac::Hmac<Sha256>;

/// Signature bytes kept in the URL: 128 bits.
const SIG_BYTES: usize = 16;

/// Signs and verifies capabilities with the installation's signing secret.
#[derive(Clone)]
pub struct Signer {
    mac: HmacSha256,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer")
    }
}

impl Signer {
    pub fn new(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length.
        let mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self { mac }
    }

    fn tag(&self, token: &TokenHash, expires: i64) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(b"zarrshare-unlock\0");
        mac.update(token.to_hex().as_bytes());
        mac.update(b"\0");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The suffix (`{exp}.{sig}`) that unlocks the link with this token hash until `expires`.
    pub fn unlock(&self, token: &TokenHash, expires: Timestamp) -> String {
        let exp = expires.unix_timestamp();
        let sig = self.tag(token, exp).finalize().into_bytes();
        format!("{exp}.{}", URL_SAFE_NO_PAD.encode(&sig[..SIG_BYTES]))
    }

    /// Whether `suffix` is a valid, unexpired unlock of this token hash (constant-time).
    pub fn verify_unlock(&self, token: &TokenHash, suffix: &str, now: Timestamp) -> bool {
        let Some((exp, sig)) = suffix.split_once('.') else {
            return false;
        };
        let Ok(exp) = exp.parse::<i64>() else {
            return false;
        };
        if exp <= now.unix_timestamp() {
            return false;
        }
        let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        sig.len() == SIG_BYTES && self.tag(token, exp).verify_truncated_left(&sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LinkToken, now};
    use time::Duration;

    #[test]
    fn unlocks_verify_until_they_expire_and_only_for_their_link() {
        let signer = Signer::new(b"a signing secret of some length!");
        let (a, b) = (LinkToken::generate().hash(), LinkToken::generate().hash());
        let t = now();
        let suffix = signer.unlock(&a, t + Duration::hours(1));
        assert!(signer.verify_unlock(&a, &suffix, t));
        assert!(!signer.verify_unlock(&b, &suffix, t), "another link");
        assert!(
            !signer.verify_unlock(&a, &suffix, t + Duration::hours(2)),
            "expired"
        );
        let other = Signer::new(b"another secret, another installation");
        assert!(!other.verify_unlock(&a, &suffix, t), "another key");
        // Moving the expiry breaks the signature.
        let (exp, sig) = suffix.split_once('.').unwrap_or_else(|| panic!("{suffix}"));
        let later = format!("{}.{sig}", exp.parse::<i64>().unwrap_or(0) + 3600);
        assert!(!signer.verify_unlock(&a, &later, t));
        for junk in ["", ".", "x.y", "1.", "99999999999.AAAA"] {
            assert!(!signer.verify_unlock(&a, junk, t), "{junk:?}");
        }
    }
}
