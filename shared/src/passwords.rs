//! Password hashing with Argon2id (OWASP's parameters: 19 MiB, 2 passes, 1 lane), stored as
//! PHC strings so parameters can be raised later without invalidating existing hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::domain::Password;

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError(#[source] argon2::password_hash::Error);

fn argon2() -> Argon2<'static> {
    // 19 MiB, t = 2, p = 1: the OWASP-recommended minimum for Argon2id.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn fresh_salt() -> Result<SaltString, HashError> {
    let mut raw = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut raw);
    SaltString::encode_b64(&raw).map_err(HashError)
}

pub fn hash(password: &Password) -> Result<String, HashError> {
    let salt = fresh_salt()?;
    argon2()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(HashError)
}

/// Whether `candidate` matches `stored`. A malformed stored hash never matches.
pub fn verify(stored: &str, candidate: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        argon2()
            .verify_password(candidate.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Spends the time a real verification takes, so that "no such account" and "wrong password"
/// cannot be told apart by timing.
pub fn verify_nothing(candidate: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        SaltString::encode_b64(b"zarrshare-timing")
            .ok()
            .and_then(|salt| {
                argon2()
                    .hash_password(b"not a password of anyone", &salt)
                    .ok()
                    .map(|h| h.to_string())
            })
            .unwrap_or_default()
    });
    let _ = verify(dummy, candidate);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;

    #[test]
    fn hashes_verify_only_the_right_password() {
        let email = Email::parse("ada@example.org").unwrap_or_else(|e| panic!("{e}"));
        let pw =
            Password::parse("analytical engine 1843", &email).unwrap_or_else(|e| panic!("{e}"));
        let h = hash(&pw).unwrap_or_else(|e| panic!("{e}"));
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify(&h, "analytical engine 1843"));
        assert!(!verify(&h, "analytical engine 1844"));
        assert!(!verify("not a hash", "analytical engine 1843"));
        assert_ne!(h, hash(&pw).unwrap_or_else(|e| panic!("{e}")), "salted");
        verify_nothing("anything");
    }
}
