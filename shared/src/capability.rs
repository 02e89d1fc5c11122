//! Signed, expiring capabilities that travel in URL paths, checked with one HMAC and no
//! database call: the unlock of a password-protected share link (`/s/{token}.{exp}.{sig}/…`)
//! and a signed-in person's own viewer URL (`/u/{dataset}.{user}.{exp}.{sig}/…`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::domain::{DatasetId, Timestamp, TokenHash, UserId};

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

    fn personal_tag(&self, dataset: &DatasetId, user: &UserId, expires: i64) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(b"zarrshare-personal\0");
        mac.update(dataset.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(user.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// A viewer capability for `user` on `dataset` until `expires`: `{dataset}.{user}.{exp}.{sig}`.
    /// It only says who is asking; access is still decided (from cached facts) on every read.
    pub fn personal(&self, dataset: &DatasetId, user: &UserId, expires: Timestamp) -> String {
        let exp = expires.unix_timestamp();
        let sig = self
            .personal_tag(dataset, user, exp)
            .finalize()
            .into_bytes();
        format!(
            "{dataset}.{user}.{exp}.{}",
            URL_SAFE_NO_PAD.encode(&sig[..SIG_BYTES])
        )
    }

    /// The dataset and user a valid, unexpired personal capability names.
    pub fn verify_personal(&self, capability: &str, now: Timestamp) -> Option<(DatasetId, UserId)> {
        let mut parts = capability.splitn(4, '.');
        let (dataset, user, exp, sig) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let dataset = DatasetId::parse(dataset).ok()?;
        let user = UserId::parse(user).ok()?;
        let exp = exp.parse::<i64>().ok()?;
        if exp <= now.unix_timestamp() {
            return None;
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        (sig.len() == SIG_BYTES
            && self
                .personal_tag(&dataset, &user, exp)
                .verify_truncated_left(&sig)
                .is_ok())
        .then_some((dataset, user))
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

    #[test]
    fn personal_capabilities_name_their_dataset_and_user_until_they_expire() {
        let signer = Signer::new(b"a signing secret of some length!");
        let (d, u) = (DatasetId::generate(), UserId::generate());
        let t = now();
        let cap = signer.personal(&d, &u, t + Duration::hours(1));
        assert_eq!(
            signer.verify_personal(&cap, t),
            Some((d.clone(), u.clone()))
        );
        assert_eq!(signer.verify_personal(&cap, t + Duration::hours(2)), None);
        // Another user or dataset in the same signature fails.
        let other = UserId::generate();
        let forged = cap.replacen(u.as_str(), other.as_str(), 1);
        assert_eq!(signer.verify_personal(&forged, t), None);
        let forged = cap.replacen(d.as_str(), DatasetId::generate().as_str(), 1);
        assert_eq!(signer.verify_personal(&forged, t), None);
        // An unlock signature is not a personal one.
        let hash = LinkToken::generate().hash();
        let unlock = signer.unlock(&hash, t + Duration::hours(1));
        assert_eq!(
            signer.verify_personal(&format!("{d}.{u}.{unlock}"), t),
            None
        );
        assert_eq!(signer.verify_personal("junk", t), None);
    }
}
