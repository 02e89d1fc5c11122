//! The local server and the real clients against it: zarr-python, webknossos, Neuroglancer in Chromium.
//!
//! One test binary per crate: every file beside this one is a module of it, so the suite links
//! once instead of once per file (each link of these binaries is ~100 MB of disk and seconds of
//! a 2-core machine).

mod neuroglancer_browser;
mod real_clients;
mod server;
mod support;
mod volume_client;
mod webknossos_nml;
