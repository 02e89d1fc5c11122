//! Who is calling a management route. [`Authenticator::authenticate`] is the one place that
//! turns headers into an [`Actor`]: `Authorization: Bearer <access token>` for a signed-in user
//! (checked against the stored account on every request, so deactivation ends access at once),
//! or the installation's admin key, an administrator of its organization for operations.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ApiError;
use crate::access::{Actor, MemberFacts};
use crate::domain::OrgId;
use crate::store::Directory;
use crate::store::catalog::CatalogError;
use crate::tokens::TokenIssuer;

#[derive(Clone)]
pub struct Authenticator {
    /// SHA-256 of the admin key: compared in constant time, never logged.
    admin_key_hash: Option<[u8; 32]>,
    org: OrgId,
    tokens: TokenIssuer,
    directory: Directory,
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
    pub fn new(
        admin_key: Option<&str>,
        org: OrgId,
        tokens: TokenIssuer,
        directory: Directory,
    ) -> Result<Self, WeakKey> {
        let admin_key_hash = match admin_key {
            Some(k) if k.len() < MIN_ADMIN_KEY_LEN => return Err(WeakKey),
            Some(k) => Some(Sha256::digest(k.as_bytes()).into()),
            None => None,
        };
        Ok(Self {
            admin_key_hash,
            org,
            tokens,
            directory,
        })
    }

    pub fn org(&self) -> &OrgId {
        &self.org
    }

    /// No `Authorization` header: anonymous. A header that does not authenticate: 401.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Actor, ApiError> {
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
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        if let Some(expected) = self.admin_key_hash {
            let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
            if bool::from(digest.ct_eq(&expected)) {
                return Ok(Actor::OrgAdmin {
                    org: self.org.clone(),
                });
            }
        }
        let claims = self
            .tokens
            .verify(presented)
            .map_err(|_| ApiError::Unauthorized)?;
        let user = match self.directory.user(&claims.sub).await {
            Ok(user) => user,
            Err(CatalogError::NotFound) => return Err(ApiError::Unauthorized),
            Err(other) => return Err(other.into()),
        };
        // A token of an older generation (before a deactivation or logout-everywhere) is dead.
        if user.org != claims.org || user.token_generation != claims.tv || !user.active {
            return Err(ApiError::Unauthorized);
        }
        Ok(Actor::User(MemberFacts::from(user)))
    }
}

/// The OpenAPI security schemes the routes name: `bearer` (a signed-in user's access token or
/// the admin key, as [`Authenticator::authenticate`] takes them) and `link` (the holder of a
/// share link, on the routes that accept one). One modifier for every function's document.
pub struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "link",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Link {token}`, or `Link {token}.{unlock}` for a password-protected link after \
                 `POST /api/links/unlock`: the holder of a share link",
            ))),
        );
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
        auth.authenticate(&parts.headers).await.map(Caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Email, OrgRole, Organization, User, now};
    use std::time::Duration;

    struct Fixture {
        auth: Authenticator,
        directory: Directory,
        tokens: TokenIssuer,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store: crate::store::DynStore = std::sync::Arc::new(
            crate::store::embedded::EmbeddedStore::open(&dir.path().join("db"))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let directory = Directory::new(store);
        let tokens = TokenIssuer::new(&[1; 32], Duration::from_secs(60));
        let auth = Authenticator::new(
            Some("correct horse battery staple"),
            lab(),
            tokens.clone(),
            directory.clone(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Fixture {
            auth,
            directory,
            tokens,
            _dir: dir,
        }
    }

    fn lab() -> OrgId {
        OrgId::parse("lab").unwrap_or_else(|e| panic!("{e}"))
    }

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            v.parse().unwrap_or_else(|e| panic!("{e}")),
        );
        h
    }

    #[tokio::test]
    async fn the_admin_key_makes_an_org_admin() {
        let f = fixture();
        let actor = f
            .auth
            .authenticate(&headers("Bearer correct horse battery staple"))
            .await;
        assert!(matches!(actor, Ok(Actor::OrgAdmin { .. })));
    }

    #[tokio::test]
    async fn no_header_is_anonymous_and_a_wrong_one_is_refused() {
        let f = fixture();
        assert!(matches!(
            f.auth.authenticate(&HeaderMap::new()).await,
            Ok(Actor::Anonymous)
        ));
        for bad in [
            "Bearer wrong",
            "Basic Y29ycmVjdA==",
            "Bearer ",
            "correct horse battery staple",
            "Bearer a.b.c",
        ] {
            assert!(
                matches!(
                    f.auth.authenticate(&headers(bad)).await,
                    Err(ApiError::Unauthorized)
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn user_tokens_work_until_the_account_is_deactivated() {
        let f = fixture();
        let user = User::new(
            lab(),
            Email::parse("ada@example.org").unwrap_or_else(|e| panic!("{e}")),
            "Ada".into(),
            OrgRole::DatasetManager,
            String::new(),
        );
        let org = Organization {
            id: lab(),
            name: "Lab".into(),
            auto_activate: false,
            created_at: now(),
            version: 1,
        };
        f.directory
            .create_org(&org, &user)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let token = f
            .tokens
            .issue(&user.id, &user.org, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        let actor = f
            .auth
            .authenticate(&headers(&format!("Bearer {token}")))
            .await;
        match actor {
            Ok(Actor::User(m)) => assert_eq!(
                (m.id, m.role),
                (Some(user.id.clone()), OrgRole::DatasetManager)
            ),
            other => panic!("{other:?}"),
        }
        f.directory
            .update_user::<CatalogError>(&user.id, |u| {
                u.active = false;
                u.token_generation += 1;
                Ok(())
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let after = f
            .auth
            .authenticate(&headers(&format!("Bearer {token}")))
            .await;
        assert!(matches!(after, Err(ApiError::Unauthorized)), "{after:?}");
    }

    #[test]
    fn short_keys_are_refused_at_startup() {
        let f = fixture();
        assert!(
            Authenticator::new(Some("short"), lab(), f.tokens.clone(), f.directory.clone())
                .is_err()
        );
    }
}
