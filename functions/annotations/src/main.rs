//! The annotations function as a Lambda: configuration and state once, then the router.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::http::init_logging(true);
    let services = shared::Services::from_env().await?;
    lambda_http::run(annotations::router(services)).await
}
