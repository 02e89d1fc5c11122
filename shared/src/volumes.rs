//! Writing volume annotations as Zarr with `zarrs`, below the annotation storage (S3 in AWS, a
//! directory locally): the group and array metadata once at creation, then each save's buckets
//! under a directory of its own (see [`crate::domain::volume`] for the layout and versioning).

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use zarrs::array::codec::ZstdCodec;
use zarrs::array::{Array, ArrayBuilder, ArrayBytes, ArrayCreateError, ArrayError};
use zarrs::group::{GroupBuilder, GroupCreateError};
use zarrs::storage::StorageError;
use zarrs_object_store::AsyncObjectStore;

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::AnnotationId;
use crate::domain::volume::{
    BUCKET_EDGE, BucketWrite, VolumeContent, VolumeSpec, chunk_key, downsample,
};
use crate::objects::Location;

type Store = AsyncObjectStore<PrefixStore<Arc<dyn ObjectStore>>>;

/// Buckets written at once by one save (S3 round trips overlap).
const WRITE_CONCURRENCY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// No annotation storage is configured.
    #[error("no storage is configured for volume annotations")]
    NoStorage,
    #[error("the volume array could not be described")]
    Array(#[from] ArrayCreateError),
    #[error("the volume group could not be described")]
    Group(#[from] GroupCreateError),
    #[error("a volume bucket could not be encoded or written")]
    Write(#[from] ArrayError),
    #[error("volume storage failed")]
    Storage(#[from] StorageError),
    /// A stored chunk does not decode to a whole bucket.
    #[error("the stored volume chunk {key} is corrupt")]
    Corrupt { key: String },
}

/// The Zarr store rooted at `{annotation storage}/{id}/volume[/{save}]`; a save named
/// `{origin}/{save}` (a copy's shared bucket) is the origin annotation's.
fn store(location: &Location, id: &AnnotationId, save: Option<&str>) -> Arc<Store> {
    let root = location.root();
    let (owner, save) = match save.and_then(|s| s.split_once('/')) {
        Some((origin, save)) => (origin.to_owned(), Some(save)),
        None => (id.to_string(), save),
    };
    let mut prefix = if root.is_empty() {
        format!("{owner}/volume")
    } else {
        format!("{root}/{owner}/volume")
    };
    if let Some(save) = save {
        prefix = format!("{prefix}/{save}");
    }
    Arc::new(AsyncObjectStore::new(PrefixStore::new(
        location.store().clone(),
        prefix,
    )))
}

/// The volume's array at resolution `level` (at `{level}` below the volume root): one bucket
/// per chunk, zstd-compressed, fill value 0 ("no segment").
fn array(storage: Arc<Store>, spec: &VolumeSpec, level: u32) -> Result<Array<Store>, VolumeError> {
    Ok(ArrayBuilder::new(
        spec.shape_at(level).to_vec(),
        [BUCKET_EDGE; 3],
        spec.data_type.zarr_name(),
        0u64,
    )
    .bytes_to_bytes_codecs(vec![Arc::new(ZstdCodec::new(3, false))])
    .dimension_names(Some(["z", "y", "x"]))
    .build(storage, &format!("/{level}"))?)
}

/// Writes the volume's group (OME-Zarr 0.5 multiscales of one level) and array metadata.
pub async fn create(
    location: Option<&Location>,
    id: &AnnotationId,
    name: &str,
    spec: &VolumeSpec,
) -> Result<(), VolumeError> {
    let location = location.ok_or(VolumeError::NoStorage)?;
    let storage = store(location, id, None);
    let attributes = match spec.ome_attributes(name) {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    GroupBuilder::new()
        .attributes(attributes)
        .build(storage.clone(), "/")?
        .async_store_metadata()
        .await?;
    for level in 0..spec.levels {
        array(storage.clone(), spec, level)?
            .async_store_metadata()
            .await?;
    }
    Ok(())
}

/// What a save wrote and the version it makes.
#[derive(Debug)]
pub struct Saved {
    /// The next version's content.
    pub content: VolumeContent,
    /// The chunk keys written below the save's directory (to remove if it loses its race).
    pub written: Vec<String>,
}

/// Writes one save's buckets below its own directory `save`, encoded by the volume's codecs,
/// and recomputes every coarser level's chunks above them (from the written buckets and the
/// ones `base` already holds). All-zero chunks are not written: they read as the fill value.
pub async fn save(
    location: Option<&Location>,
    id: &AnnotationId,
    spec: &VolumeSpec,
    save: &str,
    buckets: Vec<BucketWrite>,
    base: &VolumeContent,
) -> Result<Saved, VolumeError> {
    let location = location.ok_or(VolumeError::NoStorage)?;
    let mut content = base.clone();
    let mut written = Vec::new();
    // This level's changed chunks: their voxels, or None when all zero.
    let mut changed: BTreeMap<[u64; 3], Option<Vec<u8>>> = buckets
        .into_iter()
        .map(|b| {
            let data = (!b.is_empty()).then_some(b.data);
            (b.chunk, data)
        })
        .collect();
    for level in 0..spec.levels {
        let target = Arc::new(array(store(location, id, Some(save)), spec, level)?);
        let to_write: Vec<([u64; 3], Vec<u8>)> = changed
            .iter()
            .filter_map(|(chunk, data)| data.clone().map(|d| (*chunk, d)))
            .collect();
        let stored: Vec<String> = futures::stream::iter(to_write)
            .map(|(chunk, data)| {
                let target = target.clone();
                async move {
                    target
                        .async_store_chunk(&chunk, ArrayBytes::new_flen(data))
                        .await?;
                    Ok::<_, VolumeError>(chunk_key(level, chunk))
                }
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_collect()
            .await?;
        for (chunk, data) in &changed {
            let key = chunk_key(level, *chunk);
            match data {
                Some(_) => content.buckets.insert(key, save.to_owned()),
                None => content.buckets.remove(&key),
            };
        }
        written.extend(stored);
        if level + 1 == spec.levels {
            break;
        }
        // The next level: each parent of a changed chunk, from its eight children.
        let parents: BTreeSet<[u64; 3]> = changed.keys().map(|c| c.map(|i| i / 2)).collect();
        let grid = spec.grid_at(level);
        let mut next = BTreeMap::new();
        for parent in parents {
            let mut children: [Option<Vec<u8>>; 8] = Default::default();
            let reads = (0..8usize).map(|n| {
                let child = [
                    parent[0] * 2 + (n as u64 >> 2 & 1),
                    parent[1] * 2 + (n as u64 >> 1 & 1),
                    parent[2] * 2 + (n as u64 & 1),
                ];
                let known = changed.get(&child).cloned();
                let holder = content.buckets.get(&chunk_key(level, child)).cloned();
                async move {
                    if child.iter().zip(grid).any(|(c, g)| *c >= g) {
                        return Ok::<_, VolumeError>((n, None));
                    }
                    if let Some(data) = known {
                        return Ok((n, data));
                    }
                    let Some(holder) = holder else {
                        return Ok((n, None));
                    };
                    let source = array(store(location, id, Some(&holder)), spec, level)?;
                    let bytes: Option<ArrayBytes<'static>> =
                        source.async_retrieve_chunk_if_exists(&child).await?;
                    let corrupt = || VolumeError::Corrupt {
                        key: chunk_key(level, child),
                    };
                    let data = match bytes {
                        Some(b) => Some(b.into_fixed().map_err(|_| corrupt())?.into_owned()),
                        None => None,
                    };
                    Ok((n, data))
                }
            });
            for (n, data) in futures::future::try_join_all(reads).await? {
                children[n] = data;
            }
            let data = downsample(&children, spec.data_type);
            let empty = data.iter().all(|b| *b == 0);
            next.insert(parent, (!empty).then_some(data));
        }
        changed = next;
    }
    Ok(Saved { content, written })
}

/// Removes what a save wrote (it lost its race, or failed before it was recorded). Best
/// effort: an object left behind is unreachable, not wrong.
pub async fn discard(location: Option<&Location>, id: &AnnotationId, save: &str, keys: &[String]) {
    let Some(location) = location else { return };
    let storage = store(location, id, Some(save));
    for key in keys {
        if let Ok(key) = zarrs::storage::StoreKey::new(key.as_str()) {
            let _ = zarrs::storage::AsyncWritableStorageTraits::erase(storage.as_ref(), &key).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use zarrs::array::Array;

    use super::*;
    use crate::domain::volume::{SegmentType, VolumeAction, VolumeContent, decode_actions};
    use crate::domain::{StorageUrl, volume::BUCKET_VOXELS};
    use crate::objects::{Objects, S3Settings};

    fn location(dir: &std::path::Path) -> Location {
        let objects = Objects::new(
            S3Settings::default(),
            vec![dir.to_path_buf()],
            b"volume-tests-signing-secret-0123456789",
        );
        let url = StorageUrl::parse(&format!("file://{}", dir.display()))
            .unwrap_or_else(|e| panic!("{e}"));
        objects.locate(&url).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn saves_write_zarr_buckets_that_zarrs_reads_back() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().canonicalize().unwrap_or_else(|e| panic!("{e}"));
        let loc = location(&root);
        let id = AnnotationId::generate();
        let spec = VolumeSpec {
            layer: "em".into(),
            data_type: SegmentType::Uint32,
            shape: [40, 70, 100],
            voxel_size: [0.5, 0.25, 0.25],
            unit: Some("micrometer".into()),
            levels: 3,
        };
        create(Some(&loc), &id, "cells", &spec)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The bucket at x 32.., y 0.., z 0.. holds segment 42, but for voxel (x=33, y=1, z=2).
        let mut voxels = vec![42u32; BUCKET_VOXELS];
        voxels[1 + 32 + 2 * 32 * 32] = 7;
        let bytes: Vec<u8> = voxels.iter().flat_map(|v| v.to_le_bytes()).collect();
        let action = |data: &[u8], x: u64| VolumeAction::UpdateBucket {
            position: [x, 0, 0],
            mag: [1, 1, 1],
            cube_size: 32,
            base64_data: base64::engine::general_purpose::STANDARD.encode(data),
        };
        let zeros = vec![0u8; BUCKET_VOXELS * 4];
        let crate::domain::volume::DecodedSave {
            buckets, largest, ..
        } = decode_actions(&spec, &[action(&bytes, 32), action(&zeros, 64)])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(largest, 42);
        let saved = save(
            Some(&loc),
            &id,
            &spec,
            "s1-abc",
            buckets,
            &VolumeContent::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        // Level 0 holds the painted bucket (the zero one is not stored); levels 1 and 2 the
        // chunks above it.
        let written = saved.written;
        assert_eq!(
            written,
            ["0/c/0/0/1", "1/c/0/0/0", "2/c/0/0/0"].map(String::from),
            "zero buckets are not stored"
        );
        assert_eq!(
            saved.content.buckets.keys().collect::<Vec<_>>(),
            ["0/c/0/0/1", "1/c/0/0/0", "2/c/0/0/0"]
        );
        assert_eq!(saved.content.painted_buckets(), 1);

        // Read the arrays back with zarrs, with the saved chunks placed where the version's
        // index says (here: copy the metadata beside the save's chunks).
        let volume = root.join(format!("{id}/volume"));
        let group: serde_json::Value = serde_json::from_slice(
            &std::fs::read(volume.join("zarr.json")).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(group["attributes"]["ome"]["version"], "0.5");
        let datasets = &group["attributes"]["ome"]["multiscales"][0]["datasets"];
        assert_eq!(datasets.as_array().map(Vec::len), Some(3));
        assert_eq!(
            datasets[1]["coordinateTransformations"][1]["translation"],
            serde_json::json!([0.25, 0.125, 0.125])
        );
        for level in ["0", "1", "2"] {
            std::fs::create_dir_all(volume.join("s1-abc").join(level))
                .unwrap_or_else(|e| panic!("{e}"));
            std::fs::copy(
                volume.join(level).join("zarr.json"),
                volume.join("s1-abc").join(level).join("zarr.json"),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let fs = Arc::new(
            zarrs::filesystem::FilesystemStore::new(volume.join("s1-abc"))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let array = Array::open(fs.clone(), "/0").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(array.shape(), &[40, 70, 100]);
        let chunk: Vec<u32> = array
            .retrieve_chunk(&[0, 0, 1])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(chunk[1 + 32 + 2 * 32 * 32], 7);
        assert_eq!(
            chunk.iter().filter(|v| **v == 42).count(),
            BUCKET_VOXELS - 1
        );
        // Each coarser level halves the bucket: 42 fills x 16..32, y and z 0..16 of level 1
        // (the odd voxel is outvoted) and x 8..16, y and z 0..8 of level 2; the rest is 0.
        for (level, shape, lo, hi) in [("/1", [20u64, 35, 50], 16, 32), ("/2", [10, 18, 25], 8, 16)]
        {
            let coarse = Array::open(fs.clone(), level).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(coarse.shape(), &shape);
            let chunk: Vec<u32> = coarse
                .retrieve_chunk(&[0, 0, 0])
                .unwrap_or_else(|e| panic!("{e}"));
            let edge = hi - lo;
            for (i, v) in chunk.iter().enumerate() {
                let (x, y, z) = (i % 32, i / 32 % 32, i / 1024);
                let inside = (lo..hi).contains(&x) && y < edge && z < edge;
                assert_eq!(*v, if inside { 42 } else { 0 }, "{level} voxel {x},{y},{z}");
            }
        }

        discard(Some(&loc), &id, "s1-abc", &written).await;
        assert!(!volume.join("s1-abc/0/c/0/0/1").exists());
    }
}
