//! zarrshare's shared library: the domain, the access decision, storage ports and adapters,
//! authentication, and the HTTP error type every function renders.

pub mod domain;
pub mod error;
pub mod store;

pub use error::ApiError;
pub mod access;
pub mod auth;
pub mod bodies;
pub mod capability;
pub mod config;
pub mod mail;
pub mod neuroglancer;
pub mod objects;
pub mod passwords;
pub mod qr;
pub mod services;
pub mod thumbnail;
pub mod tokens;
pub mod usage;
pub mod volumes;
pub mod zarr;

pub use services::Services;
pub mod http;
