//! The demo dataset: a synthetic OME-Zarr 0.5 pyramid written with `zarrs` — an image of
//! "cells" in three levels of 64³ zstd chunks, and a label image whose levels use Zarr v3
//! sharding (128³ shards of 64³ inner chunks), so readers exercise range requests.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use zarrs::array::ArraySubset;
use zarrs::array::codec::ZstdCodec;
use zarrs::array::{ArrayBuilder, data_type};
use zarrs::filesystem::FilesystemStore;
use zarrs::group::GroupBuilder;

/// Level-0 shape `(z, y, x)`.
pub const SHAPE: [u64; 3] = [128, 256, 256];
pub const CHUNK: [u64; 3] = [64, 64, 64];
pub const LEVELS: usize = 3;
pub const LABEL_LEVELS: usize = 2;
pub const SHARD: [u64; 3] = [128, 128, 128];
/// Voxel size at level 0, micrometres.
const VOXEL: [f64; 3] = [0.5, 0.25, 0.25];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("could not open the demo directory")]
    Store(#[from] zarrs::filesystem::FilesystemStoreCreateError),
    #[error("zarr group")]
    Group(#[from] zarrs::group::GroupCreateError),
    #[error("zarr array")]
    ArrayCreate(#[from] zarrs::array::ArrayCreateError),
    #[error("zarr write")]
    Array(#[from] zarrs::array::ArrayError),
    #[error("zarr metadata write")]
    Storage(#[from] zarrs::storage::StorageError),
}

/// Cell centres `(z, y, x)` and radii, fixed so every run writes the same bytes.
const CELLS: [([f64; 3], f64); 9] = [
    ([40.0, 60.0, 70.0], 22.0),
    ([64.0, 128.0, 128.0], 30.0),
    ([90.0, 200.0, 60.0], 25.0),
    ([30.0, 190.0, 190.0], 20.0),
    ([100.0, 70.0, 200.0], 24.0),
    ([64.0, 40.0, 150.0], 14.0),
    ([20.0, 120.0, 30.0], 12.0),
    ([110.0, 150.0, 110.0], 16.0),
    ([70.0, 230.0, 230.0], 18.0),
];

/// A deterministic, cheap pseudo-random value in `0..1` for a voxel.
fn noise(z: u64, y: u64, x: u64) -> f64 {
    let mut h = z.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ y.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ x.wrapping_mul(0x1656_67B1_9E37_79F9);
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 32;
    (h & 0xFFFF) as f64 / 65_536.0
}

/// Level-0 image and labels, z-major.
pub fn synthesize() -> (Vec<u16>, Vec<u32>) {
    let [nz, ny, nx] = SHAPE;
    let n = (nz * ny * nx) as usize;
    let mut image = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let p = [z as f64, y as f64, x as f64];
                let mut value = 300.0 + 200.0 * noise(z, y, x);
                let mut label = 0u32;
                for (i, (c, r)) in CELLS.iter().enumerate() {
                    let d2: f64 = (0..3).map(|k| (p[k] - c[k]).powi(2)).sum();
                    let d = d2.sqrt() / r;
                    if d < 1.0 {
                        // Bright membrane, dimmer cytoplasm, a nucleus.
                        let shell = (-((d - 0.92) / 0.05).powi(2)).exp();
                        let nucleus = if d < 0.35 { 1800.0 } else { 0.0 };
                        value += 900.0 + 2500.0 * shell + nucleus;
                        label = i as u32 + 1;
                    }
                }
                image.push(value.min(f64::from(u16::MAX)) as u16);
                labels.push(label);
            }
        }
    }
    (image, labels)
}

/// 2× down-sampling in every axis: the mean for intensities.
fn downsample_mean(data: &[u16], shape: [u64; 3]) -> (Vec<u16>, [u64; 3]) {
    let out_shape = shape.map(|s| s / 2);
    let [oz, oy, ox] = out_shape.map(|s| s as usize);
    let [_, sy, sx] = shape.map(|s| s as usize);
    let mut out = Vec::with_capacity(oz * oy * ox);
    for z in 0..oz {
        for y in 0..oy {
            for x in 0..ox {
                let mut sum = 0u32;
                for (dz, dy, dx) in (0..8).map(|i| (i >> 2, (i >> 1) & 1, i & 1)) {
                    sum += u32::from(data[((2 * z + dz) * sy + 2 * y + dy) * sx + 2 * x + dx]);
                }
                out.push((sum / 8) as u16);
            }
        }
    }
    (out, out_shape)
}

/// 2× down-sampling by picking every other voxel, as labels must not be averaged.
fn downsample_pick(data: &[u32], shape: [u64; 3]) -> (Vec<u32>, [u64; 3]) {
    let out_shape = shape.map(|s| s / 2);
    let [oz, oy, ox] = out_shape.map(|s| s as usize);
    let [_, sy, sx] = shape.map(|s| s as usize);
    let mut out = Vec::with_capacity(oz * oy * ox);
    for z in 0..oz {
        for y in 0..oy {
            for x in 0..ox {
                out.push(data[((2 * z) * sy + 2 * y) * sx + 2 * x]);
            }
        }
    }
    (out, out_shape)
}

fn multiscales(name: &str, levels: usize) -> Value {
    let datasets: Vec<Value> = (0..levels)
        .map(|l| {
            let f = f64::from(1u32 << l);
            json!({
                "path": l.to_string(),
                "coordinateTransformations": [{"type": "scale", "scale": VOXEL.map(|v| v * f)}]
            })
        })
        .collect();
    json!([{
        "name": name,
        "axes": [
            {"name": "z", "type": "space", "unit": "micrometer"},
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"}
        ],
        "datasets": datasets
    }])
}

fn attrs(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// Writes the pyramid into `dir` (which becomes the dataset root).
pub fn write_pyramid(dir: &Path) -> Result<(), DemoError> {
    std::fs::create_dir_all(dir).map_err(|e| zarrs::storage::StorageError::from(Arc::new(e)))?;
    let store = Arc::new(FilesystemStore::new(dir)?);
    GroupBuilder::new()
        .attributes(attrs(
            json!({"ome": {"version": "0.5", "multiscales": multiscales("demo-cells", LEVELS)}}),
        ))
        .build(store.clone(), "/")?
        .store_metadata()?;

    let (mut image, mut labels) = synthesize();
    let mut shape = SHAPE;
    for level in 0..LEVELS {
        let array = ArrayBuilder::new(shape.to_vec(), CHUNK.to_vec(), data_type::uint16(), 0u16)
            .bytes_to_bytes_codecs(vec![Arc::new(ZstdCodec::new(3, false))])
            .dimension_names(["z", "y", "x"].into())
            .build(store.clone(), &format!("/{level}"))?;
        array.store_metadata()?;
        array.store_array_subset(
            &ArraySubset::new_with_shape(shape.to_vec()),
            image.as_slice(),
        )?;
        if level + 1 < LEVELS {
            (image, shape) = downsample_mean(&image, shape);
        }
    }

    GroupBuilder::new()
        .attributes(attrs(
            json!({"ome": {"version": "0.5", "labels": ["cells"]}}),
        ))
        .build(store.clone(), "/labels")?
        .store_metadata()?;
    GroupBuilder::new()
        .attributes(attrs(json!({"ome": {
            "version": "0.5",
            "multiscales": multiscales("cells", LABEL_LEVELS),
            "image-label": {"version": "0.5"}
        }})))
        .build(store.clone(), "/labels/cells")?
        .store_metadata()?;
    let mut shape = SHAPE;
    for level in 0..LABEL_LEVELS {
        let shard = [0, 1, 2].map(|i| SHARD[i].min(shape[i]));
        let array = ArrayBuilder::new(shape.to_vec(), shard.to_vec(), data_type::uint32(), 0u32)
            .subchunk_shape(CHUNK.to_vec())
            .bytes_to_bytes_codecs(vec![Arc::new(ZstdCodec::new(3, false))])
            .dimension_names(["z", "y", "x"].into())
            .build(store.clone(), &format!("/labels/cells/{level}"))?;
        array.store_metadata()?;
        array.store_array_subset(
            &ArraySubset::new_with_shape(shape.to_vec()),
            labels.as_slice(),
        )?;
        if level + 1 < LABEL_LEVELS {
            (labels, shape) = downsample_pick(&labels, shape);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_halves_every_axis() {
        let data: Vec<u16> = (0..64).collect();
        let (out, shape) = downsample_mean(&data, [4, 4, 4]);
        assert_eq!(shape, [2, 2, 2]);
        // The first 2×2×2 block: indices 0,1,4,5,16,17,20,21 → mean 10.5 → 10.
        assert_eq!(out[0], 10);
        let (picked, _) = downsample_pick(&(0..64).collect::<Vec<u32>>(), [4, 4, 4]);
        assert_eq!(picked, vec![0, 2, 8, 10, 32, 34, 40, 42]);
    }
}
