//! `infra`: run zarrshare locally, provision AWS resources, print the OpenAPI document.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use shared::config::Delivery;

#[derive(Parser)]
#[command(name = "infra", about = "zarrshare local operations")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeliveryArg {
    Proxy,
    Redirect,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every function on one port (embedded store; `--aws` for DynamoDB + S3).
    Serve {
        /// 0 picks a free port.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value = "./.zarrshare")]
        data_dir: PathBuf,
        /// Written once serving: base URL and the demo datasets' URLs.
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Use DynamoDB and S3 at AWS_ENDPOINT_URL (e.g. LocalStack) instead of the embedded store.
        #[arg(long, env = "ZARRSHARE_AWS")]
        aws: bool,
        #[arg(long, value_enum, default_value = "proxy")]
        delivery: DeliveryArg,
        /// Another directory whose datasets may be registered by local path (repeatable).
        #[arg(long = "local-root")]
        local_roots: Vec<PathBuf>,
        /// Do not seed the demo datasets.
        #[arg(long)]
        no_demo: bool,
    },
    /// Create the table, the data bucket (with CORS) and the SES sender at AWS_ENDPOINT_URL.
    Provision {
        #[arg(long, env = "ZARRSHARE_TABLE", default_value = "zarrshare")]
        table: String,
        #[arg(long, env = "ZARRSHARE_DATA_BUCKET", default_value = "zarrshare-data")]
        bucket: String,
    },
    /// Print the OpenAPI document of the whole API.
    Openapi,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    shared::http::init_logging(false);
    match Cli::parse().command {
        Command::Serve {
            port,
            data_dir,
            ready_file,
            aws,
            delivery,
            local_roots,
            no_demo,
        } => {
            let opts = infra::server::ServeOptions {
                port,
                data_dir,
                ready_file,
                aws,
                delivery: match delivery {
                    DeliveryArg::Proxy => Delivery::Proxy,
                    DeliveryArg::Redirect => Delivery::Redirect,
                },
                local_roots,
                seed_demo: !no_demo,
            };
            let data_dir_key = opts.data_dir.join("admin.key");
            let running = infra::server::start(opts).await?;
            println!("zarrshare serving on {} (Ctrl-C stops)", running.base_url);
            println!("  API description:   {}/api/openapi.json", running.base_url);
            println!("  admin key file:    {}", data_dir_key.display());
            if let Some(demo) = &running.demo {
                println!("  public demo:       {}", demo.public_url);
                println!("  private demo link: {}", demo.link_url);
            }
            running.server.await??;
        }
        Command::Provision { table, bucket } => {
            let config = shared::config::Config::from_lookup(|name| match name {
                "ZARRSHARE_TABLE" => Some(table.clone()),
                _ => std::env::var(name).ok(),
            })?;
            let sdk = shared::services::aws_sdk_config(&config).await;
            infra::provision::provision(&sdk, &infra::provision::Resources::new(&table, &bucket))
                .await?;
            println!("provisioned table {table} and bucket {bucket}");
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&infra::openapi())?);
        }
    }
    Ok(())
}
