//! Access tokens: short-lived JWTs (HS256, pinned), with issuer, audience and expiry checked.
//! A token names its user and the user's token generation (`tv`): deactivating a user bumps the
//! generation, so every token issued before stops working at once.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::{OrgId, UserId};

pub const ISSUER: &str = "zarrshare";
pub const AUDIENCE: &str = "zarrshare-api";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: UserId,
    pub org: OrgId,
    /// The user's token generation when the token was issued.
    pub tv: u64,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Expired, tampered with, for another audience or issuer, or not a JWT at all.
    #[error("the access token is not valid")]
    Invalid,
    #[error("could not sign a token")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenIssuer {
    /// `secret`: at least 32 bytes (checked by the configuration).
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, user: &UserId, org: &OrgId, generation: u64) -> Result<String, TokenError> {
        let iat = now_secs();
        let claims = AccessClaims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: user.clone(),
            org: org.clone(),
            tv: generation,
            iat,
            exp: iat + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(TokenError::Signing)
    }

    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|_| TokenError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(&[42; 32], Duration::from_secs(900))
    }

    fn ids() -> (UserId, OrgId) {
        (
            UserId::generate(),
            OrgId::parse("lab").unwrap_or_else(|e| panic!("{e}")),
        )
    }

    #[test]
    fn issued_tokens_verify() {
        let (user, org) = ids();
        let token = issuer()
            .issue(&user, &org, 3)
            .unwrap_or_else(|e| panic!("{e}"));
        let claims = issuer().verify(&token).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((claims.sub, claims.org, claims.tv), (user, org, 3));
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn foreign_expired_and_tampered_tokens_fail() {
        let (user, org) = ids();
        let token = issuer()
            .issue(&user, &org, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        let other_key = TokenIssuer::new(&[7; 32], Duration::from_secs(900));
        assert!(other_key.verify(&token).is_err(), "another key");
        let mut tampered = token.clone();
        tampered.insert(tampered.len() - 3, 'x');
        assert!(issuer().verify(&tampered).is_err(), "tampered");
        let claims = |aud: &str, iss: &str, exp: u64| AccessClaims {
            iss: iss.into(),
            aud: aud.into(),
            sub: user.clone(),
            org: org.clone(),
            tv: 0,
            iat: 0,
            exp,
        };
        let key = EncodingKey::from_secret(&[42; 32]);
        let far = now_secs() + 600;
        for (c, why) in [
            (claims(AUDIENCE, ISSUER, now_secs() - 60), "expired"),
            (claims("other", ISSUER, far), "audience"),
            (claims(AUDIENCE, "other", far), "issuer"),
        ] {
            let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &key)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(issuer().verify(&t).is_err(), "{why}");
        }
        // The algorithm is pinned: the same claims under HS384 are refused.
        let c = claims(AUDIENCE, ISSUER, far);
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS384), &c, &key)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(issuer().verify(&t).is_err(), "algorithm not pinned");
    }
}
