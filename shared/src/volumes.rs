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

use crate::domain::AnnotationId;
use crate::domain::volume::{BUCKET_EDGE, BucketWrite, VolumeSpec, bucket_key};
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
}

/// The Zarr store rooted at `{annotation storage}/{id}/volume[/{save}]`.
fn store(location: &Location, id: &AnnotationId, save: Option<&str>) -> Arc<Store> {
    let root = location.root();
    let mut prefix = if root.is_empty() {
        format!("{id}/volume")
    } else {
        format!("{root}/{id}/volume")
    };
    if let Some(save) = save {
        prefix = format!("{prefix}/{save}");
    }
    Arc::new(AsyncObjectStore::new(PrefixStore::new(
        location.store().clone(),
        prefix,
    )))
}

/// The volume's array (at `0` below the volume root): the image's finest-level shape, one
/// bucket per chunk, zstd-compressed, fill value 0 ("no segment").
fn array(storage: Arc<Store>, spec: &VolumeSpec) -> Result<Array<Store>, VolumeError> {
    Ok(ArrayBuilder::new(
        spec.shape.to_vec(),
        [BUCKET_EDGE; 3],
        spec.data_type.zarr_name(),
        0u64,
    )
    .bytes_to_bytes_codecs(vec![Arc::new(ZstdCodec::new(3, false))])
    .dimension_names(Some(["z", "y", "x"]))
    .build(storage, "/0")?)
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
    array(storage, spec)?.async_store_metadata().await?;
    Ok(())
}

/// Writes one save's buckets below its own directory `save`, encoded by the volume's codecs.
/// All-zero buckets are not written (they read as the fill value). Returns the chunk keys
/// written.
pub async fn write(
    location: Option<&Location>,
    id: &AnnotationId,
    spec: &VolumeSpec,
    save: &str,
    buckets: Vec<BucketWrite>,
) -> Result<Vec<String>, VolumeError> {
    let location = location.ok_or(VolumeError::NoStorage)?;
    let array = Arc::new(array(store(location, id, Some(save)), spec)?);
    futures::stream::iter(buckets.into_iter().filter(|b| !b.is_empty()))
        .map(|bucket| {
            let array = array.clone();
            async move {
                array
                    .async_store_chunk(&bucket.chunk, ArrayBytes::new_flen(bucket.data))
                    .await?;
                Ok::<_, VolumeError>(bucket_key(bucket.chunk))
            }
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_collect()
        .await
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
    use crate::domain::volume::{SegmentType, VolumeAction, decode_actions};
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
        };
        create(Some(&loc), &id, "cells", &spec)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Voxel (x=33, y=1, z=2) of the bucket at x 32.., y 0.., z 0.. holds 42.
        let mut voxels = vec![0u32; BUCKET_VOXELS];
        voxels[1 + 32 + 2 * 32 * 32] = 42;
        let bytes: Vec<u8> = voxels.iter().flat_map(|v| v.to_le_bytes()).collect();
        let action = |data: &[u8], x: u64| VolumeAction::UpdateBucket {
            position: [x, 0, 0],
            mag: [1, 1, 1],
            cube_size: 32,
            base64_data: base64::engine::general_purpose::STANDARD.encode(data),
        };
        let zeros = vec![0u8; BUCKET_VOXELS * 4];
        let (buckets, largest) = decode_actions(&spec, &[action(&bytes, 32), action(&zeros, 64)])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(largest, 42);
        let written = write(Some(&loc), &id, &spec, "s1-abc", buckets)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            written,
            vec!["0/c/0/0/1".to_owned()],
            "zero buckets are not stored"
        );

        // Read the array back with zarrs, with the saved bucket placed where the version's
        // index says (here: copy the metadata beside the save's chunk).
        let volume = root.join(format!("{id}/volume"));
        let group: serde_json::Value = serde_json::from_slice(
            &std::fs::read(volume.join("zarr.json")).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(group["attributes"]["ome"]["version"], "0.5");
        std::fs::copy(
            volume.join("0/zarr.json"),
            volume.join("s1-abc/0/zarr.json"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let fs = Arc::new(
            zarrs::filesystem::FilesystemStore::new(volume.join("s1-abc"))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let array = Array::open(fs, "/0").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(array.shape(), &[40, 70, 100]);
        let chunk: Vec<u32> = array
            .retrieve_chunk(&[0, 0, 1])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(chunk[1 + 32 + 2 * 32 * 32], 42);
        assert_eq!(chunk.iter().filter(|v| **v != 0).count(), 1);

        discard(Some(&loc), &id, "s1-abc", &written).await;
        assert!(!volume.join("s1-abc/0/c/0/0/1").exists());
    }
}
