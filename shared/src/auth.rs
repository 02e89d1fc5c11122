//! Who is calling a management route. Until accounts exist, the only credential is an
//! organization admin key from configuration, presented as `Authorization: Bearer <key>`.
//! [`Authenticator::authenticate`] is the one place that turns headers into an [`Actor`]: user
//! tokens replace the key here and nowhere else.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ApiError;
use crate::access::Actor;
use crate::domain::OrgId;

#[derive(Clone)]
pub struct Authenticator {
    /// SHA-256 of the admin key: compared in constant time, never logged.
    admin_key_hash: Option<[u8; 32]>,
    org: OrgId,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("org", &self.org)
            .finish_non_exhaustive()
    }
}

/// Shortest admin key accepted from configuration.
pub const MIN_ADMIN_KEY_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
#[error("the admin key must be at least {MIN_ADMIN_KEY_LEN} characters")]
pub struct WeakKey;

impl Authenticator {
    /// `admin_key`: `None` disables key login (only public reads remain).
    pub fn new(admin_key: Option<&str>, org: OrgId) -> Result<Self, WeakKey> {
        let admin_key_hash = match admin_key {
            Some(k) if k.len() < MIN_ADMIN_KEY_LEN => return Err(WeakKey),
            Some(k) => Some(Sha256::digest(k.as_bytes()).into()),
            None => None,
        };
        Ok(Self {
            admin_key_hash,
            org,
        })
    }

    pub fn org(&self) -> &OrgId {
        &self.org
    }

    /// No `Authorization` header: anonymous. A header that does not authenticate: 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Actor, ApiError> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Ok(Actor::Anonymous);
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or(ApiError::Unauthorized)?;
        let expected = self.admin_key_hash.ok_or(ApiError::Unauthorized)?;
        let presented: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        if bool::from(presented.ct_eq(&expected)) {
            Ok(Actor::OrgAdmin {
                org: self.org.clone(),
            })
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// The authenticated caller of a management route.
#[derive(Clone, Debug)]
pub struct Caller(pub Actor);

impl<S> FromRequestParts<S> for Caller
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let auth = Arc::<Authenticator>::from_ref(state);
        auth.authenticate(&parts.headers).map(Caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(
            Some("correct horse battery staple"),
            OrgId::parse("lab").unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            v.parse().unwrap_or_else(|e| panic!("{e}")),
        );
        h
    }

    #[test]
    fn the_admin_key_makes_an_org_admin() {
        let actor = auth().authenticate(&headers("Bearer correct horse battery staple"));
        assert!(matches!(actor, Ok(Actor::OrgAdmin { .. })));
    }

    #[test]
    fn no_header_is_anonymous_and_a_wrong_one_is_refused() {
        assert!(matches!(
            auth().authenticate(&HeaderMap::new()),
            Ok(Actor::Anonymous)
        ));
        for bad in [
            "Bearer wrong",
            "Basic Y29ycmVjdA==",
            "Bearer ",
            "correct horse battery staple",
        ] {
            assert!(
                matches!(
                    auth().authenticate(&headers(bad)),
                    Err(ApiError::Unauthorized)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn short_keys_are_refused_at_startup() {
        let org = OrgId::parse("lab").unwrap_or_else(|e| panic!("{e}"));
        assert!(Authenticator::new(Some("short"), org).is_err());
    }
}
