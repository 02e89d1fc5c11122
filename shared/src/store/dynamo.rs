//! The DynamoDB adapter. One table: `PK`, `SK` (strings), index `GSI1` on `GSI1PK`/`GSI1SK`,
//! TTL attribute `ttl`, version `v`, the domain record as a native map under `data`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{
    Cond, Cursor, Index, Item, ItemStore, Key, Page, Query, StoreError, Write, validate_batch,
};

pub const GSI1_NAME: &str = "GSI1";

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

type Attrs = HashMap<String, AttributeValue>;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn key_attrs(key: &Key) -> Attrs {
    HashMap::from([("PK".to_owned(), s(&key.pk)), ("SK".to_owned(), s(&key.sk))])
}

fn to_attrs(item: &Item) -> Result<Attrs, StoreError> {
    let mut attrs = key_attrs(&item.key);
    if let Some(g) = &item.gsi1 {
        attrs.insert("GSI1PK".into(), s(&g.pk));
        attrs.insert("GSI1SK".into(), s(&g.sk));
    }
    if let Some(ttl) = item.ttl {
        attrs.insert("ttl".into(), AttributeValue::N(ttl.to_string()));
    }
    attrs.insert("v".into(), AttributeValue::N(item.version.to_string()));
    let data = serde_dynamo::to_attribute_value(&item.body).map_err(StoreError::backend)?;
    attrs.insert("data".into(), data);
    Ok(attrs)
}

fn from_attrs(mut attrs: Attrs) -> Result<Item, StoreError> {
    let text = |attrs: &Attrs, name: &str| match attrs.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    let number = |attrs: &Attrs, name: &str| match attrs.get(name) {
        Some(AttributeValue::N(v)) => v.parse::<i64>().ok(),
        _ => None,
    };
    let pk = text(&attrs, "PK").unwrap_or_default();
    let sk = text(&attrs, "SK").unwrap_or_default();
    let corrupt = |why: &'static str| StoreError::Corrupt {
        pk: pk.clone(),
        sk: sk.clone(),
        source: why.into(),
    };
    let version = number(&attrs, "v")
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| corrupt("no version"))?;
    let gsi1 = match (text(&attrs, "GSI1PK"), text(&attrs, "GSI1SK")) {
        (Some(p), Some(s)) => Some(Key { pk: p, sk: s }),
        _ => None,
    };
    let ttl = number(&attrs, "ttl");
    let data = attrs.remove("data").ok_or_else(|| corrupt("no data"))?;
    let body = serde_dynamo::from_attribute_value(data).map_err(|e| StoreError::Corrupt {
        pk: pk.clone(),
        sk: sk.clone(),
        source: e.into(),
    })?;
    Ok(Item {
        key: Key { pk, sk },
        gsi1,
        ttl,
        version,
        body,
    })
}

/// `(expression, names, values)` for a condition, `None` for [`Cond::Always`].
fn condition(cond: Cond) -> Option<(String, HashMap<String, String>, Option<Attrs>)> {
    match cond {
        Cond::Always => None,
        Cond::NotExists => Some(("attribute_not_exists(PK)".into(), HashMap::new(), None)),
        Cond::Exists => Some(("attribute_exists(PK)".into(), HashMap::new(), None)),
        Cond::Version(v) => Some((
            "#v = :v".into(),
            HashMap::from([("#v".to_owned(), "v".to_owned())]),
            Some(HashMap::from([(
                ":v".to_owned(),
                AttributeValue::N(v.to_string()),
            )])),
        )),
    }
}

type Expr = (
    Option<String>,
    Option<HashMap<String, String>>,
    Option<Attrs>,
);

fn split(c: Option<(String, HashMap<String, String>, Option<Attrs>)>) -> Expr {
    c.map_or((None, None, None), |(e, n, v)| {
        (Some(e), (!n.is_empty()).then_some(n), v)
    })
}

fn classify<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    err: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StoreError {
    match err.code() {
        Some("ConditionalCheckFailedException" | "TransactionConflictException") => {
            StoreError::Conflict
        }
        Some("TransactionCanceledException") => {
            let msg = err.message().unwrap_or_default();
            if msg.contains("ConditionalCheckFailed") || msg.contains("TransactionConflict") {
                StoreError::Conflict
            } else if msg.contains("Throttling") || msg.contains("ProvisionedThroughputExceeded") {
                StoreError::Throttled { source: err.into() }
            } else {
                StoreError::backend(err)
            }
        }
        Some(
            "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "ThrottlingException"
            | "LimitExceededException",
        ) => StoreError::Throttled { source: err.into() },
        _ => StoreError::backend(err),
    }
}

fn encode_cursor(key: &Attrs) -> Cursor {
    let plain: HashMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| match v {
            AttributeValue::S(s) => Some((k.as_str(), s.as_str())),
            _ => None,
        })
        .collect();
    Cursor(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&plain).unwrap_or_default()))
}

fn decode_cursor(c: &Cursor) -> Result<Attrs, StoreError> {
    let bad = || StoreError::Invalid {
        what: "a cursor from another query",
    };
    let raw = URL_SAFE_NO_PAD.decode(&c.0).map_err(|_| bad())?;
    let plain: HashMap<String, String> = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok(plain
        .into_iter()
        .map(|(k, v)| (k, AttributeValue::S(v)))
        .collect())
}

fn transact_item(w: Write, table: &str) -> Result<TransactWriteItem, StoreError> {
    let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::backend(e);
    Ok(match w {
        Write::Put { item, cond } => {
            let (expr, names, values) = split(condition(cond));
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(to_attrs(&item)?))
                .set_condition_expression(expr)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .build()
                .map_err(build)?;
            TransactWriteItem::builder().put(put).build()
        }
        Write::Delete { key, cond } => {
            let (expr, names, values) = split(condition(cond));
            let delete = Delete::builder()
                .table_name(table)
                .set_key(Some(key_attrs(&key)))
                .set_condition_expression(expr)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .build()
                .map_err(build)?;
            TransactWriteItem::builder().delete(delete).build()
        }
        Write::Check { key, cond } => {
            let (expr, names, values) = split(condition(cond));
            if expr.is_none() {
                return Err(StoreError::Invalid {
                    what: "a check without a condition",
                });
            }
            let check = ConditionCheck::builder()
                .table_name(table)
                .set_key(Some(key_attrs(&key)))
                .set_condition_expression(expr)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .build()
                .map_err(build)?;
            TransactWriteItem::builder().condition_check(check).build()
        }
    })
}

#[async_trait]
impl ItemStore for DynamoStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        out.item.map(from_attrs).transpose()
    }

    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let (pk_name, sk_name, index) = match q.index {
            Index::Primary => ("PK", "SK", None),
            Index::Gsi1 => ("GSI1PK", "GSI1SK", Some(GSI1_NAME)),
        };
        let mut names = HashMap::from([("#pk".to_owned(), pk_name.to_owned())]);
        let mut values = HashMap::from([(":pk".to_owned(), s(&q.pk))]);
        let mut expr = "#pk = :pk".to_owned();
        if !q.sk_prefix.is_empty() {
            expr.push_str(" AND begins_with(#sk, :sk)");
            names.insert("#sk".into(), sk_name.into());
            values.insert(":sk".into(), s(&q.sk_prefix));
        }
        let limit = i32::try_from(q.limit.clamp(1, 1000)).unwrap_or(1000);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(index.map(str::to_owned))
            .key_condition_expression(expr)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .scan_index_forward(!q.descending)
            .limit(limit)
            .consistent_read(index.is_none())
            .set_exclusive_start_key(q.cursor.as_ref().map(decode_cursor).transpose()?)
            .send()
            .await
            .map_err(classify)?;
        let items = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_attrs)
            .collect::<Result<Vec<_>, _>>()?;
        // DynamoDB may hand back a last key although nothing follows; that costs one empty page.
        let next = out.last_evaluated_key.as_ref().map(encode_cursor);
        Ok(Page { items, next })
    }

    async fn write(&self, mut writes: Vec<Write>) -> Result<(), StoreError> {
        validate_batch(&writes)?;
        if writes.len() == 1 {
            match writes.pop() {
                Some(Write::Put { item, cond }) => {
                    let (expr, names, values) = split(condition(cond));
                    self.client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(to_attrs(&item)?))
                        .set_condition_expression(expr)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .send()
                        .await
                        .map_err(classify)?;
                    return Ok(());
                }
                Some(Write::Delete { key, cond }) => {
                    let (expr, names, values) = split(condition(cond));
                    self.client
                        .delete_item()
                        .table_name(&self.table)
                        .set_key(Some(key_attrs(&key)))
                        .set_condition_expression(expr)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .send()
                        .await
                        .map_err(classify)?;
                    return Ok(());
                }
                // A lone check only exists inside a transaction.
                Some(check) => writes.push(check),
                None => {}
            }
        }
        let items = writes
            .into_iter()
            .map(|w| transact_item(w, &self.table))
            .collect::<Result<Vec<_>, _>>()?;
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}
