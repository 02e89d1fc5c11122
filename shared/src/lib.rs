//! zarrshare's shared library: the domain, the access decision, storage ports and adapters,
//! authentication, and the HTTP error type every function renders.

pub mod domain;
pub mod error;
pub mod store;

pub use error::ApiError;
