//! Local operations: the local server, provisioning, the demo pyramid, the OpenAPI document.

pub mod demo;
pub mod provision;
pub mod server;

/// The whole API's OpenAPI document: every function's part merged.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = datasets::openapi();
    doc.merge(chunks::openapi());
    doc.merge(accounts::openapi());
    doc.merge(annotations::openapi());
    doc.info.title = "zarrshare".into();
    doc.info.description = Some(
        "Share Zarr / OME-Zarr datasets: public data URLs, secret share links, and the chunk function viewers read from.".into(),
    );
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc
}
