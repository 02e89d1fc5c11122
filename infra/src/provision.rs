//! Provisioning as code for LocalStack (and any AWS account without Terraform): the table
//! with its index and TTL, the data bucket with CORS, the SES sender identity. Idempotent.

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CorsConfiguration, CorsRule, CreateBucketConfiguration,
};

/// What to create.
#[derive(Clone, Debug)]
pub struct Resources {
    pub table: String,
    pub bucket: String,
    pub sender: Option<String>,
}

impl Resources {
    pub fn new(table: &str, bucket: &str) -> Self {
        Self {
            table: table.to_owned(),
            bucket: bucket.to_owned(),
            sender: std::env::var("ZARRSHARE_SENDER_EMAIL").ok(),
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("creating table {table}")]
    Table { table: String, source: Source },
    #[error("table {0} did not become active")]
    TableNotActive(String),
    #[error("creating bucket {bucket}")]
    Bucket { bucket: String, source: Source },
    #[error("verifying sender {sender}")]
    Sender { sender: String, source: Source },
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, aws_sdk_dynamodb::error::BuildError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
}

fn attr(name: &str) -> Result<AttributeDefinition, aws_sdk_dynamodb::error::BuildError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
}

pub async fn provision(sdk: &aws_config::SdkConfig, r: &Resources) -> Result<(), ProvisionError> {
    create_table(&aws_sdk_dynamodb::Client::new(sdk), &r.table).await?;
    let s3_config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .build();
    create_bucket(
        &aws_sdk_s3::Client::from_conf(s3_config),
        &r.bucket,
        sdk.region().map(|r| r.as_ref()),
    )
    .await?;
    if let Some(sender) = &r.sender {
        aws_sdk_ses::Client::new(sdk)
            .verify_email_identity()
            .email_address(sender)
            .send()
            .await
            .map_err(|e| ProvisionError::Sender {
                sender: sender.clone(),
                source: e.into(),
            })?;
    }
    Ok(())
}

async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), ProvisionError> {
    let fail = |e: Source| ProvisionError::Table {
        table: table.to_owned(),
        source: e,
    };
    let gsi = GlobalSecondaryIndex::builder()
        .index_name(shared::store::dynamo::GSI1_NAME)
        .key_schema(key("GSI1PK", KeyType::Hash).map_err(|e| fail(e.into()))?)
        .key_schema(key("GSI1SK", KeyType::Range).map_err(|e| fail(e.into()))?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| fail(e.into()))?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("PK", KeyType::Hash).map_err(|e| fail(e.into()))?)
        .key_schema(key("SK", KeyType::Range).map_err(|e| fail(e.into()))?)
        .attribute_definitions(attr("PK").map_err(|e| fail(e.into()))?)
        .attribute_definitions(attr("SK").map_err(|e| fail(e.into()))?)
        .attribute_definitions(attr("GSI1PK").map_err(|e| fail(e.into()))?)
        .attribute_definitions(attr("GSI1SK").map_err(|e| fail(e.into()))?)
        .global_secondary_indexes(gsi)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) if e.code() == Some("ResourceInUseException") => {}
        Err(e) => return Err(fail(e.into())),
    }
    for _ in 0..100 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| fail(e.into()))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return enable_ttl(client, table).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(ProvisionError::TableNotActive(table.to_owned()))
}

/// Turns TTL on for attribute `ttl`, unless it already is; TTL on another attribute is an error.
async fn enable_ttl(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), ProvisionError> {
    let fail = |e: Source| ProvisionError::Table {
        table: table.to_owned(),
        source: e,
    };
    let current = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| fail(e.into()))?;
    let description = current.time_to_live_description();
    let status = description.and_then(|d| d.time_to_live_status());
    let attribute = description.and_then(|d| d.attribute_name());
    match (status, attribute) {
        (Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling), Some("ttl")) => Ok(()),
        (Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling), Some(other)) => Err(fail(
            format!("TTL is already enabled on attribute '{other}', not 'ttl'").into(),
        )),
        _ => {
            let ttl = TimeToLiveSpecification::builder()
                .attribute_name("ttl")
                .enabled(true)
                .build()
                .map_err(|e| fail(e.into()))?;
            client
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(ttl)
                .send()
                .await
                .map_err(|e| fail(e.into()))?;
            Ok(())
        }
    }
}

async fn create_bucket(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    region: Option<&str>,
) -> Result<(), ProvisionError> {
    let fail = |e: Source| ProvisionError::Bucket {
        bucket: bucket.to_owned(),
        source: e,
    };
    let mut request = client.create_bucket().bucket(bucket);
    if let Some(region) = region.filter(|r| *r != "us-east-1") {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.code(),
                Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
            ) => {}
        Err(e) => return Err(fail(e.into())),
    }
    let rule = CorsRule::builder()
        .allowed_methods("GET")
        .allowed_methods("HEAD")
        .allowed_origins("*")
        .allowed_headers("*")
        .expose_headers("Content-Range")
        .expose_headers("Content-Length")
        .expose_headers("ETag")
        .max_age_seconds(3600)
        .build()
        .map_err(|e| fail(e.into()))?;
    let cors = CorsConfiguration::builder()
        .cors_rules(rule)
        .build()
        .map_err(|e| fail(e.into()))?;
    client
        .put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(cors)
        .send()
        .await
        .map_err(|e| fail(e.into()))?;
    Ok(())
}
