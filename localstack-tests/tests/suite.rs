//! Everything against LocalStack: DynamoDB, S3 and SES adapters, the server in --aws mode.
//!
//! One test binary per crate: every file beside this one is a module of it, so the suite links
//! once instead of once per file (each link of these binaries is ~100 MB of disk and seconds of
//! a 2-core machine).

mod accounts_ses;
mod chunks_s3;
mod conformance;
mod server_aws;
mod sharing_aws;
mod skeletons_aws;
mod volumes_aws;
