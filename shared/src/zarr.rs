//! Reads a hierarchy's metadata with `zarrs` (through `object_store`) and describes it as
//! layers and multiscale levels: OME-Zarr 0.4 (Zarr v2) and 0.5 (Zarr v3) images with their
//! label images, plain Zarr v2/v3 groups of arrays, or a single array.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use serde_json::{Map, Value};
use zarrs::array::{Array, ArrayCreateError, ArrayMetadata};
use zarrs::group::{Group, GroupCreateError};
use zarrs::node::{Node, NodeMetadata};
use zarrs::storage::StorageError;
use zarrs_object_store::AsyncObjectStore;

use crate::domain::{Layer, LayerKind, Level, ZarrFormat};
use crate::objects::Location;

type Store = AsyncObjectStore<PrefixStore<Arc<dyn ObjectStore>>>;

/// What registration learns from the metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Inspection {
    pub zarr_format: ZarrFormat,
    pub ome_version: Option<String>,
    pub layers: Vec<Layer>,
    /// OME `name` of the first image, for a default display name.
    pub title: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Neither group nor array metadata at the root.
    #[error("no Zarr metadata (zarr.json, .zgroup or .zarray) at the dataset root")]
    NoMetadata,
    /// Metadata that does not parse or contradicts itself; the text is about the caller's data.
    #[error("invalid metadata: {0}")]
    Invalid(String),
    /// The storage could not be read (missing bucket, no permission, network).
    #[error("the dataset's storage could not be read")]
    Unreachable {
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

fn storage_error(e: StorageError) -> InspectError {
    match e {
        StorageError::InvalidMetadata(key, why) => InspectError::Invalid(format!("{key}: {why}")),
        StorageError::MissingMetadata(_) => InspectError::NoMetadata,
        other => InspectError::Unreachable {
            source: Box::new(other),
        },
    }
}

fn array_error(path: &str, e: ArrayCreateError) -> InspectError {
    match e {
        ArrayCreateError::StorageError(s) => match storage_error(s) {
            InspectError::NoMetadata => {
                InspectError::Invalid(format!("array '{path}' has no metadata"))
            }
            other => other,
        },
        ArrayCreateError::MissingMetadata => {
            InspectError::Invalid(format!("array '{path}' has no metadata"))
        }
        other => InspectError::Invalid(format!("array '{path}': {other}")),
    }
}

pub async fn inspect(location: &Location) -> Result<Inspection, InspectError> {
    let prefixed = PrefixStore::new(location.store().clone(), location.root());
    let storage: Arc<Store> = Arc::new(AsyncObjectStore::new(prefixed));

    match Group::async_open(storage.clone(), "/").await {
        Ok(group) => {
            let format = match group.metadata() {
                zarrs::group::GroupMetadata::V3(_) => ZarrFormat::V3,
                zarrs::group::GroupMetadata::V2(_) => ZarrFormat::V2,
            };
            inspect_group(&storage, format, group.attributes()).await
        }
        Err(GroupCreateError::MissingMetadata) => inspect_root_array(&storage).await,
        Err(GroupCreateError::StorageError(e)) => match storage_error(e) {
            InspectError::NoMetadata => inspect_root_array(&storage).await,
            // A v3 `zarr.json` of an array does not open as a group: try it as an array, and
            // report the group's complaint only when that fails too.
            InspectError::Invalid(why) => inspect_root_array(&storage)
                .await
                .map_err(|_| InspectError::Invalid(why)),
            other => Err(other),
        },
        Err(other) => {
            let why = other.to_string();
            inspect_root_array(&storage)
                .await
                .map_err(|_| InspectError::Invalid(why))
        }
    }
}

async fn inspect_root_array(storage: &Arc<Store>) -> Result<Inspection, InspectError> {
    match Array::async_open(storage.clone(), "/").await {
        Ok(array) => {
            let level = level_of(&array, "", None)?;
            let axes = dimension_names(&array);
            Ok(Inspection {
                zarr_format: format_of(array.metadata()),
                ome_version: None,
                title: None,
                layers: vec![Layer {
                    name: "array".into(),
                    kind: LayerKind::Array,
                    path: String::new(),
                    units: vec![String::new(); axes.len()],
                    axes,
                    levels: vec![level],
                }],
            })
        }
        Err(ArrayCreateError::MissingMetadata) => Err(InspectError::NoMetadata),
        Err(ArrayCreateError::StorageError(e)) => Err(storage_error(e)),
        Err(other) => Err(InspectError::Invalid(other.to_string())),
    }
}

/// `(version, multiscales)` from OME 0.5 (`attributes.ome`) or 0.4 (top-level) attributes.
fn ome_of(attrs: &Map<String, Value>) -> Option<(String, Vec<Value>)> {
    if let Some(ome) = attrs.get("ome").and_then(Value::as_object) {
        let version = ome
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("0.5")
            .to_owned();
        let ms = ome.get("multiscales").and_then(Value::as_array).cloned()?;
        return Some((version, ms));
    }
    let ms = attrs
        .get("multiscales")
        .and_then(Value::as_array)
        .cloned()?;
    let version = ms
        .first()
        .and_then(|m| m.get("version"))
        .and_then(Value::as_str)
        .unwrap_or("0.4")
        .to_owned();
    Some((version, ms))
}

fn label_names(attrs: &Map<String, Value>) -> Vec<String> {
    let list = attrs
        .get("ome")
        .and_then(|o| o.get("labels"))
        .or_else(|| attrs.get("labels"))
        .and_then(Value::as_array);
    list.map(|l| {
        l.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

async fn inspect_group(
    storage: &Arc<Store>,
    format: ZarrFormat,
    attrs: &Map<String, Value>,
) -> Result<Inspection, InspectError> {
    let Some((version, multiscales)) = ome_of(attrs) else {
        return inspect_plain_group(storage, format).await;
    };
    let mut layers = Vec::new();
    for (i, ms) in multiscales.iter().enumerate() {
        let name = ms.get("name").and_then(Value::as_str).map_or_else(
            || {
                if i == 0 {
                    "image".to_owned()
                } else {
                    format!("image-{i}")
                }
            },
            str::to_owned,
        );
        layers.push(multiscale_layer(storage, "", name, LayerKind::Image, ms).await?);
    }
    let title = multiscales
        .first()
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned);

    // Label images, when the image has a `labels` group.
    if let Ok(labels) = Group::async_open(storage.clone(), "/labels").await {
        for label in label_names(labels.attributes()) {
            if label.contains(['/', '\\']) || label == ".." || label == "." {
                return Err(InspectError::Invalid(format!(
                    "label name '{label}' is not a plain name"
                )));
            }
            let path = format!("labels/{label}");
            let group = Group::async_open(storage.clone(), &format!("/{path}"))
                .await
                .map_err(|e| InspectError::Invalid(format!("label image '{label}': {e}")))?;
            let Some((_, label_ms)) = ome_of(group.attributes()) else {
                return Err(InspectError::Invalid(format!(
                    "label image '{label}' has no multiscales"
                )));
            };
            if let Some(ms) = label_ms.first() {
                layers.push(multiscale_layer(storage, &path, label, LayerKind::Labels, ms).await?);
            }
        }
    }
    Ok(Inspection {
        zarr_format: format,
        ome_version: Some(version),
        layers,
        title,
    })
}

fn transform(dataset: &Value, kind: &str) -> Option<Vec<f64>> {
    dataset
        .get("coordinateTransformations")?
        .as_array()?
        .iter()
        .find(|t| t.get("type").and_then(Value::as_str) == Some(kind))?
        .get(kind)?
        .as_array()?
        .iter()
        .map(Value::as_f64)
        .collect()
}

async fn multiscale_layer(
    storage: &Arc<Store>,
    group_path: &str,
    name: String,
    kind: LayerKind,
    ms: &Value,
) -> Result<Layer, InspectError> {
    let (axes, units): (Vec<String>, Vec<String>) = ms
        .get("axes")
        .and_then(Value::as_array)
        .map(|axes| {
            axes.iter()
                .map(|a| match a {
                    Value::String(s) => (s.clone(), String::new()),
                    other => (
                        other
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        other
                            .get("unit")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                })
                .unzip()
        })
        .unwrap_or_default();
    let datasets = ms
        .get("datasets")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            InspectError::Invalid(format!("multiscales of '{name}' list no datasets"))
        })?;
    let mut levels = Vec::with_capacity(datasets.len());
    for ds in datasets {
        let rel = ds
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| InspectError::Invalid(format!("a dataset of '{name}' has no path")))?;
        crate::domain::ObjectKey::parse(rel).map_err(|_| {
            InspectError::Invalid(format!("dataset path '{rel}' is not a plain relative path"))
        })?;
        let path = if group_path.is_empty() {
            rel.to_owned()
        } else {
            format!("{group_path}/{rel}")
        };
        let array = Array::async_open(storage.clone(), &format!("/{path}"))
            .await
            .map_err(|e| array_error(&path, e))?;
        if !axes.is_empty() && array.shape().len() != axes.len() {
            return Err(InspectError::Invalid(format!(
                "array '{path}' has {} dimensions but the multiscales name {} axes",
                array.shape().len(),
                axes.len()
            )));
        }
        levels.push(level_of(&array, &path, Some(ds))?);
    }
    Ok(Layer {
        name,
        kind,
        path: group_path.to_owned(),
        axes,
        units,
        levels,
    })
}

async fn inspect_plain_group(
    storage: &Arc<Store>,
    format: ZarrFormat,
) -> Result<Inspection, InspectError> {
    let node = Node::async_open(storage.clone(), "/")
        .await
        .map_err(|e| match e {
            zarrs::node::NodeCreateError::StorageError(s) => storage_error(s),
            other => InspectError::Invalid(other.to_string()),
        })?;
    let mut arrays = Vec::new();
    collect_arrays(&node, &mut arrays);
    if arrays.is_empty() {
        return Err(InspectError::Invalid("the group contains no arrays".into()));
    }
    let mut layers = Vec::new();
    for path in arrays {
        let array = Array::async_open(storage.clone(), &path)
            .await
            .map_err(|e| array_error(&path, e))?;
        let rel = path.trim_start_matches('/').to_owned();
        let axes = dimension_names(&array);
        layers.push(Layer {
            name: rel.clone(),
            kind: LayerKind::Array,
            path: rel.clone(),
            units: vec![String::new(); axes.len()],
            axes,
            levels: vec![level_of(&array, &rel, None)?],
        });
    }
    Ok(Inspection {
        zarr_format: format,
        ome_version: None,
        layers,
        title: None,
    })
}

fn collect_arrays(node: &Node, out: &mut Vec<String>) {
    match node.metadata() {
        NodeMetadata::Array(_) => out.push(node.path().as_str().to_owned()),
        NodeMetadata::Group(_) => {
            for child in node.children() {
                collect_arrays(child, out);
            }
        }
    }
}

fn format_of(m: &ArrayMetadata) -> ZarrFormat {
    match m {
        ArrayMetadata::V3(_) => ZarrFormat::V3,
        ArrayMetadata::V2(_) => ZarrFormat::V2,
    }
}

fn dimension_names<T: ?Sized>(array: &Array<T>) -> Vec<String> {
    array
        .dimension_names()
        .as_ref()
        .map(|names| {
            names
                .iter()
                .map(|n| n.clone().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

fn level_of<T: ?Sized>(
    array: &Array<T>,
    path: &str,
    ome_dataset: Option<&Value>,
) -> Result<Level, InspectError> {
    let meta = serde_json::to_value(array.metadata())
        .map_err(|e| InspectError::Invalid(format!("array '{path}': {e}")))?;
    let shape_of = |v: Option<&Value>| -> Option<Vec<u64>> {
        v?.as_array()?.iter().map(Value::as_u64).collect()
    };
    let (grid_chunk, codecs, shard_inner) = match array.metadata() {
        ArrayMetadata::V3(_) => {
            let grid = shape_of(meta.pointer("/chunk_grid/configuration/chunk_shape"));
            let codecs = meta
                .get("codecs")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut names = Vec::new();
            let mut inner = None;
            for c in &codecs {
                let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                names.push(name.to_owned());
                if name == "sharding_indexed" {
                    inner = shape_of(c.pointer("/configuration/chunk_shape"));
                    for ic in c
                        .pointer("/configuration/codecs")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        names.push(
                            ic.get("name")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                        );
                    }
                }
            }
            (grid, names, inner)
        }
        ArrayMetadata::V2(_) => {
            let grid = shape_of(meta.get("chunks"));
            let mut names: Vec<String> = meta
                .get("filters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|f| f.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect();
            if let Some(c) = meta.pointer("/compressor/id").and_then(Value::as_str) {
                names.push(c.to_owned());
            }
            (grid, names, None)
        }
    };
    let grid_chunk = grid_chunk.ok_or_else(|| {
        InspectError::Invalid(format!("array '{path}' has no regular chunk grid"))
    })?;
    let (chunk_shape, shard_shape) = match shard_inner {
        Some(inner) => (inner, Some(grid_chunk)),
        None => (grid_chunk, None),
    };
    use zarrs::plugin::ExtensionName;
    let data_type = array
        .data_type()
        .name(zarrs::plugin::ZarrVersion::V3)
        .map_or_else(|| array.data_type().to_string(), |n| n.into_owned());
    Ok(Level {
        path: path.to_owned(),
        shape: array.shape().to_vec(),
        chunk_shape,
        shard_shape,
        data_type,
        codecs,
        scale: ome_dataset.and_then(|d| transform(d, "scale")),
        translation: ome_dataset.and_then(|d| transform(d, "translation")),
    })
}
