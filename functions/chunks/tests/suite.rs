//! The chunk function end to end through its router.
//!
//! One test binary per crate: every file beside this one is a module of it, so the suite links
//! once instead of once per file (each link of these binaries is ~100 MB of disk and seconds of
//! a 2-core machine).

mod personal;
mod reads;
mod sharing;
