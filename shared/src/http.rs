//! HTTP pieces every function shares: CORS, logging set-up.

use std::time::Duration;

use axum::http::{HeaderName, Method, header};
use tower_http::cors::{Any, CorsLayer};

/// `routes` as a function (or the local server) serves them: unknown routes answer a problem
/// document, and every answer carries [`cors`].
pub fn served(routes: axum::Router) -> axum::Router {
    routes.fallback(crate::error::no_route).layer(cors())
}

/// CORS for anonymous, cross-origin readers (Neuroglancer, zarr.js, notebooks): any origin, no
/// credentials, the range and caching headers viewers need exposed, preflight cached a day.
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::RANGE,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_MATCH,
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
        ])
        .expose_headers([
            header::CONTENT_RANGE,
            header::CONTENT_LENGTH,
            header::ETAG,
            header::ACCEPT_RANGES,
            header::LAST_MODIFIED,
            header::LOCATION,
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(Duration::from_secs(86_400))
}

/// Structured logs for a function (JSON lines in Lambda, readable text locally). Request
/// paths are never logged whole: share-link tokens travel in them.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        builder.json().without_time().try_init()
    } else {
        builder.try_init()
    };
}
