//! Volume annotations: a segmentation painted over a dataset's image, saved the way webKnossos
//! saves it — `updateBucket` actions, each carrying one 32³ cube ("bucket") of segment ids at
//! full resolution — and kept as a Zarr v3 array whose chunks are exactly those buckets.
//!
//! Versions are copy-on-write: a save writes only the buckets it carries, under a directory of
//! its own, and the version's content is the index saying which save last wrote each bucket.
//! Any version is therefore readable as a complete Zarr array without copying anything, and a
//! save that loses its race leaves the winner's objects untouched.
//!
//! Layout below the annotation storage (`{annotation}/volume/`):
//! - `zarr.json` — an OME-Zarr 0.5 group (axes z, y, x with the image's units and voxel size)
//!   listing the resolution levels;
//! - `{level}/zarr.json` — level 0 has the shape of the image's finest level; each further
//!   level halves every axis (down to one bucket), its voxels the most frequent id of the 2×2×2
//!   voxels below (webKnossos' "mode" downsampling), so viewers zoomed out read few chunks;
//!   32³ chunks, zstd;
//! - `{save}/{level}/c/{z}/{y}/{x}` — the buckets one save wrote, and the coarser chunks it
//!   recomputed.
//!
//! Readers see it through the chunk function at `…/__annotations/{annotation}/volume/` (latest)
//! and `…/__annotations/{annotation}/versions/{n}/volume/` (any version); Zarr v3 reserves
//! names starting with `__`, so no dataset key can collide with them.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AnnotationId, Layer, LayerKind, ParseError};

/// The edge of a bucket (and of a chunk of the volume array), in voxels.
pub const BUCKET_EDGE: u64 = 32;
/// Voxels in one bucket.
pub const BUCKET_VOXELS: usize = 32 * 32 * 32;
/// Buckets one save may carry (the request body limit allows about 22 uint32 buckets anyway).
pub const MAX_BUCKETS_PER_SAVE: usize = 512;
/// Resolution levels at most (level 7 is 1/128 of the full resolution per axis).
pub const MAX_LEVELS: u32 = 8;
/// The key segment readers use to reach annotations inside a dataset's URL space.
pub const ANNOTATIONS_SEGMENT: &str = "__annotations";

/// The segment id type of a volume annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum SegmentType {
    Uint8,
    Uint16,
    #[default]
    Uint32,
    Uint64,
}

impl SegmentType {
    /// Bytes per voxel.
    pub const fn size(self) -> usize {
        match self {
            SegmentType::Uint8 => 1,
            SegmentType::Uint16 => 2,
            SegmentType::Uint32 => 4,
            SegmentType::Uint64 => 8,
        }
    }

    /// The Zarr v3 data type name.
    pub const fn zarr_name(self) -> &'static str {
        match self {
            SegmentType::Uint8 => "uint8",
            SegmentType::Uint16 => "uint16",
            SegmentType::Uint32 => "uint32",
            SegmentType::Uint64 => "uint64",
        }
    }

    /// The largest id in little-endian voxel data of this type.
    fn max_id(self, data: &[u8]) -> u64 {
        let mut max = 0u64;
        for voxel in data.chunks_exact(self.size()) {
            let mut le = [0u8; 8];
            le[..voxel.len()].copy_from_slice(voxel);
            max = max.max(u64::from_le_bytes(le));
        }
        max
    }
}

/// The geometry of a volume annotation, fixed when it is created from the image layer it
/// segments (its finest level).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolumeSpec {
    /// The segmented image layer's path in the dataset (`""` for the root).
    pub layer: String,
    pub data_type: SegmentType,
    /// Extent in voxels: z, y, x.
    pub shape: [u64; 3],
    /// Voxel size in `unit`s: z, y, x.
    pub voxel_size: [f64; 3],
    /// The image's spatial unit (OME name, e.g. `micrometer`), when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Resolution levels: 1 (full resolution only) up to [`MAX_LEVELS`].
    #[serde(default = "one_level")]
    pub levels: u32,
}

fn one_level() -> u32 {
    1
}

impl VolumeSpec {
    /// The volume over `layer`'s finest level. The layer must be an image (or plain array) with
    /// the spatial axes z, y and x; other axes (channel, time) are not segmented.
    pub fn for_layer(layer: &Layer, data_type: SegmentType) -> Result<Self, ParseError> {
        if layer.kind == LayerKind::Labels {
            return Err(ParseError::new(
                "volume layer",
                "must be an image layer, not a label image",
            ));
        }
        let level = layer
            .levels
            .first()
            .ok_or(ParseError::new("volume layer", "has no resolution level"))?;
        let mut shape = [0u64; 3];
        let mut voxel_size = [1.0f64; 3];
        let mut unit = None;
        for (slot, name) in ["z", "y", "x"].into_iter().enumerate() {
            let axis = layer
                .axes
                .iter()
                .position(|a| a == name)
                .ok_or(ParseError::new(
                    "volume layer",
                    "needs the spatial axes z, y and x",
                ))?;
            shape[slot] = *level
                .shape
                .get(axis)
                .ok_or(ParseError::new("volume layer", "has inconsistent axes"))?;
            if let Some(scale) = level.scale.as_ref().and_then(|s| s.get(axis)) {
                voxel_size[slot] = *scale;
            }
            if let Some(u) = layer.units.get(axis).filter(|u| !u.is_empty()) {
                unit = Some(u.clone());
            }
        }
        if shape.contains(&0) {
            return Err(ParseError::new("volume layer", "is empty"));
        }
        // Halve until the whole volume fits one bucket.
        let mut levels = 1;
        while levels < MAX_LEVELS
            && shape
                .iter()
                .any(|n| n.div_ceil(1 << (levels - 1)) > BUCKET_EDGE)
        {
            levels += 1;
        }
        Ok(Self {
            layer: layer.path.clone(),
            data_type,
            shape,
            voxel_size,
            unit,
            levels,
        })
    }

    /// Buckets along z, y, x at level 0.
    pub fn grid(&self) -> [u64; 3] {
        self.grid_at(0)
    }

    /// The shape of resolution level `level` (each level halves every axis, rounding up).
    pub fn shape_at(&self, level: u32) -> [u64; 3] {
        self.shape.map(|n| n.div_ceil(1 << level))
    }

    /// Chunks along z, y, x at `level`.
    pub fn grid_at(&self, level: u32) -> [u64; 3] {
        self.shape_at(level).map(|n| n.div_ceil(BUCKET_EDGE))
    }

    /// The OME-Zarr 0.5 attributes of the volume's root group.
    pub fn ome_attributes(&self, name: &str) -> serde_json::Value {
        let axes: Vec<serde_json::Value> = ["z", "y", "x"]
            .into_iter()
            .map(|a| match &self.unit {
                Some(unit) => serde_json::json!({"name": a, "type": "space", "unit": unit}),
                None => serde_json::json!({"name": a, "type": "space"}),
            })
            .collect();
        // A level-k voxel covers 2^k voxels per axis; OME places voxel centres, so its centre
        // lies (2^k - 1) / 2 full-resolution voxels further on.
        let datasets: Vec<serde_json::Value> = (0..self.levels)
            .map(|k| {
                let factor = f64::from(1u32 << k);
                let scale = self.voxel_size.map(|v| v * factor);
                let mut transforms = vec![serde_json::json!({"type": "scale", "scale": scale})];
                if k > 0 {
                    let shift = self.voxel_size.map(|v| v * (factor - 1.0) / 2.0);
                    transforms
                        .push(serde_json::json!({"type": "translation", "translation": shift}));
                }
                serde_json::json!({"path": k.to_string(), "coordinateTransformations": transforms})
            })
            .collect();
        serde_json::json!({
            "ome": {
                "version": "0.5",
                "multiscales": [{
                    "name": name,
                    "axes": axes,
                    "datasets": datasets,
                    "type": "mode",
                }],
            }
        })
    }
}

/// The content of one version of a volume annotation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VolumeContent {
    /// For every bucket written so far (by its chunk key, `0/c/{z}/{y}/{x}`), the save whose
    /// directory holds it (`{save}`, or `{annotation}/{save}` for buckets a copy shares with
    /// its origin). Buckets absent here are all zero (the fill value).
    pub buckets: BTreeMap<String, String>,
    /// The largest segment id ever painted (webKnossos' hint for the next new segment).
    pub largest_segment_id: u64,
}

impl VolumeContent {
    /// The object key (below the annotation storage) holding `key` of the volume at this
    /// version, where `key` is relative to the volume root; `None` for keys that do not exist
    /// (unwritten buckets read as fill value).
    pub fn object_key(&self, annotation: &AnnotationId, key: &str) -> Option<String> {
        let level_metadata = key
            .strip_suffix("/zarr.json")
            .is_some_and(|level| level.parse::<u32>().is_ok_and(|l| l < MAX_LEVELS));
        if key == "zarr.json" || level_metadata {
            return Some(format!("{annotation}/volume/{key}"));
        }
        self.buckets
            .get(key)
            .map(|save| match save.split_once('/') {
                // A copy shares the buckets of the annotation it was copied from.
                Some((origin, save)) => format!("{origin}/volume/{save}/{key}"),
                None => format!("{annotation}/volume/{save}/{key}"),
            })
    }
}

impl VolumeContent {
    /// The same content as seen from a copy of `origin`: every bucket still read from where
    /// it was written (buckets are immutable, so sharing them is safe).
    pub fn copied_from(&self, origin: &AnnotationId) -> Self {
        Self {
            buckets: self
                .buckets
                .iter()
                .map(|(key, save)| {
                    let save = if save.contains('/') {
                        save.clone()
                    } else {
                        format!("{origin}/{save}")
                    };
                    (key.clone(), save)
                })
                .collect(),
            largest_segment_id: self.largest_segment_id,
        }
    }
}

/// The chunk key of the bucket at chunk indices z, y, x (level 0).
pub fn bucket_key(chunk: [u64; 3]) -> String {
    chunk_key(0, chunk)
}

/// The chunk key at `level` and chunk indices z, y, x.
pub fn chunk_key(level: u32, chunk: [u64; 3]) -> String {
    format!("{level}/c/{}/{}/{}", chunk[0], chunk[1], chunk[2])
}

impl VolumeContent {
    /// Full-resolution buckets holding segments.
    pub fn painted_buckets(&self) -> usize {
        self.buckets.keys().filter(|k| k.starts_with("0/")).count()
    }
}

/// One chunk of the next level from its eight children (index `dz * 4 + dy * 2 + dx` of their
/// offsets; `None`: all zero): every voxel the most frequent of the 2×2×2 voxels below it,
/// the smallest id on a tie.
pub fn downsample(children: &[Option<Vec<u8>>; 8], data_type: SegmentType) -> Vec<u8> {
    let size = data_type.size();
    let edge = BUCKET_EDGE as usize;
    let half = edge / 2;
    let mut out = vec![0u8; BUCKET_VOXELS * size];
    let read = |data: &[u8], i: usize| {
        let mut le = [0u8; 8];
        le[..size].copy_from_slice(&data[i * size..(i + 1) * size]);
        u64::from_le_bytes(le)
    };
    let mut block = [0u64; 8];
    for z in 0..edge {
        for y in 0..edge {
            for x in 0..edge {
                let child = (z / half) * 4 + (y / half) * 2 + x / half;
                let Some(data) = &children[child] else {
                    continue;
                };
                let (cz, cy, cx) = (2 * (z % half), 2 * (y % half), 2 * (x % half));
                let mut n = 0;
                for dz in 0..2 {
                    for dy in 0..2 {
                        for dx in 0..2 {
                            block[n] =
                                read(data, (cz + dz) * edge * edge + (cy + dy) * edge + cx + dx);
                            n += 1;
                        }
                    }
                }
                block.sort_unstable();
                let (mut best, mut best_run, mut run) = (block[0], 1, 1);
                for i in 1..8 {
                    run = if block[i] == block[i - 1] { run + 1 } else { 1 };
                    if run > best_run {
                        (best, best_run) = (block[i], run);
                    }
                }
                let at = (z * edge * edge + y * edge + x) * size;
                out[at..at + size].copy_from_slice(&best.to_le_bytes()[..size]);
            }
        }
    }
    out
}

/// One change to a volume annotation (webKnossos' volume update actions).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "name", content = "value", rename_all = "camelCase")]
pub enum VolumeAction {
    /// Replaces one 32³ bucket of segment ids.
    #[serde(rename_all = "camelCase")]
    UpdateBucket {
        /// The bucket's first voxel, x, y, z (multiples of 32), at `mag`.
        position: [u64; 3],
        /// The resolution level, x, y, z: only `[1, 1, 1]` (full resolution) is saved.
        mag: [u64; 3],
        /// The bucket edge: 32.
        cube_size: u64,
        /// The voxels, little-endian, x fastest then y then z, base64-encoded.
        base64_data: String,
    },
}

/// A bucket ready to be written: its chunk indices (z, y, x) and voxels (x fastest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketWrite {
    pub chunk: [u64; 3],
    pub data: Vec<u8>,
}

impl BucketWrite {
    /// True when every voxel is 0 (the fill value): nothing needs storing.
    pub fn is_empty(&self) -> bool {
        self.data.iter().all(|b| *b == 0)
    }
}

/// Why a volume save was refused; names the action (its 0-based index in the save).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VolumeActionError {
    #[error(
        "action {index}: mag must be [1, 1, 1] (full resolution) or one of the volume's coarser levels, [2, 2, 2], [4, 4, 4] …"
    )]
    Mag { index: usize },
    #[error("action {index}: cubeSize must be {BUCKET_EDGE}")]
    CubeSize { index: usize },
    #[error("action {index}: the position must be a multiple of {BUCKET_EDGE} × mag on every axis")]
    Unaligned { index: usize },
    #[error("action {index}: the bucket lies outside the volume")]
    OutOfBounds { index: usize },
    #[error("action {index}: base64Data is not valid base64")]
    Base64 { index: usize },
    #[error(
        "action {index}: base64Data must hold {expected} bytes ({BUCKET_VOXELS} voxels of the volume's type), not {got}"
    )]
    Length {
        index: usize,
        expected: usize,
        got: usize,
    },
    #[error("a save carries 1-{MAX_BUCKETS_PER_SAVE} volume actions")]
    Count,
}

/// A save's volume actions, checked and decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedSave {
    /// The full-resolution buckets to write (a bucket written twice keeps its last data).
    pub buckets: Vec<BucketWrite>,
    /// The largest segment id painted.
    pub largest: u64,
    /// Buckets of coarser levels the save carried (webKnossos sends the mags it downsampled
    /// itself): checked like the others, then left out, since every coarser level is
    /// recomputed from full resolution.
    pub derived: usize,
}

/// Checks and decodes a save's volume actions against the volume, all or nothing. Positions
/// are full-resolution voxels (x, y, z), as webKnossos sends them for every mag.
pub fn decode_actions(
    spec: &VolumeSpec,
    actions: &[VolumeAction],
) -> Result<DecodedSave, VolumeActionError> {
    if actions.is_empty() || actions.len() > MAX_BUCKETS_PER_SAVE {
        return Err(VolumeActionError::Count);
    }
    let expected = BUCKET_VOXELS * spec.data_type.size();
    let mut by_chunk: BTreeMap<[u64; 3], Vec<u8>> = BTreeMap::new();
    let mut largest = 0;
    let mut derived = 0;
    for (index, action) in actions.iter().enumerate() {
        let VolumeAction::UpdateBucket {
            position,
            mag,
            cube_size,
            base64_data,
        } = action;
        // Level k halves every axis k times: mag [2^k, 2^k, 2^k].
        let level = match mag {
            [m, n, o] if m == n && n == o && m.is_power_of_two() => m.trailing_zeros(),
            _ => return Err(VolumeActionError::Mag { index }),
        };
        if level >= spec.levels {
            return Err(VolumeActionError::Mag { index });
        }
        if *cube_size != BUCKET_EDGE {
            return Err(VolumeActionError::CubeSize { index });
        }
        let edge = BUCKET_EDGE << level;
        if position.iter().any(|p| p % edge != 0) {
            return Err(VolumeActionError::Unaligned { index });
        }
        // Position is x, y, z; chunk indices are z, y, x.
        let chunk = [position[2] / edge, position[1] / edge, position[0] / edge];
        if chunk.iter().zip(spec.grid_at(level)).any(|(c, n)| *c >= n) {
            return Err(VolumeActionError::OutOfBounds { index });
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(base64_data)
            .map_err(|_| VolumeActionError::Base64 { index })?;
        if data.len() != expected {
            return Err(VolumeActionError::Length {
                index,
                expected,
                got: data.len(),
            });
        }
        if level > 0 {
            derived += 1;
            continue;
        }
        largest = largest.max(spec.data_type.max_id(&data));
        by_chunk.insert(chunk, data);
    }
    Ok(DecodedSave {
        buckets: by_chunk
            .into_iter()
            .map(|(chunk, data)| BucketWrite { chunk, data })
            .collect(),
        largest,
        derived,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Level;

    fn layer() -> Layer {
        Layer {
            name: "em".into(),
            kind: LayerKind::Image,
            path: "em".into(),
            axes: vec!["c".into(), "z".into(), "y".into(), "x".into()],
            units: vec![
                String::new(),
                "micrometer".into(),
                "micrometer".into(),
                "micrometer".into(),
            ],
            levels: vec![Level {
                path: "em/0".into(),
                shape: vec![2, 40, 70, 100],
                chunk_shape: vec![1, 32, 32, 32],
                shard_shape: None,
                data_type: "uint8".into(),
                codecs: vec![],
                scale: Some(vec![1.0, 0.5, 0.25, 0.25]),
                translation: None,
            }],
        }
    }

    fn spec() -> VolumeSpec {
        VolumeSpec::for_layer(&layer(), SegmentType::Uint32).unwrap_or_else(|e| panic!("{e}"))
    }

    fn bucket(position: [u64; 3], value: u32) -> VolumeAction {
        let data: Vec<u8> = std::iter::repeat_n(value.to_le_bytes(), BUCKET_VOXELS)
            .flatten()
            .collect();
        VolumeAction::UpdateBucket {
            position,
            mag: [1, 1, 1],
            cube_size: 32,
            base64_data: base64::engine::general_purpose::STANDARD.encode(data),
        }
    }

    #[test]
    fn the_volume_follows_the_finest_level_spatial_axes() {
        let s = spec();
        assert_eq!(s.shape, [40, 70, 100]);
        assert_eq!(s.voxel_size, [0.5, 0.25, 0.25]);
        assert_eq!(s.unit.as_deref(), Some("micrometer"));
        assert_eq!(s.grid(), [2, 3, 4]);
        // 100 → 50 → 25 voxels along x: three levels, the last one bucket wide.
        assert_eq!(s.levels, 3);
        assert_eq!(s.shape_at(1), [20, 35, 50]);
        assert_eq!(s.shape_at(2), [10, 18, 25]);
        assert_eq!(s.grid_at(2), [1, 1, 1]);
        let attrs = s.ome_attributes("cells");
        assert_eq!(attrs["ome"]["multiscales"][0]["axes"][2]["name"], "x");
        assert_eq!(
            attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"],
            serde_json::json!([0.5, 0.25, 0.25])
        );
        let mut flat = layer();
        flat.axes = vec!["c".into(), "y".into(), "x".into(), "t".into()];
        assert!(VolumeSpec::for_layer(&flat, SegmentType::Uint8).is_err());
        let mut labels = layer();
        labels.kind = LayerKind::Labels;
        assert!(VolumeSpec::for_layer(&labels, SegmentType::Uint8).is_err());
    }

    #[test]
    fn buckets_map_xyz_positions_to_zyx_chunks_and_keep_the_last_write() {
        let DecodedSave {
            buckets: writes,
            largest,
            derived,
        } = decode_actions(
            &spec(),
            &[
                bucket([64, 32, 0], 7),
                bucket([96, 64, 32], 3),
                bucket([64, 32, 0], 9),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(derived, 0);
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].chunk, [0, 1, 2]);
        assert_eq!(&writes[0].data[..4], &9u32.to_le_bytes());
        assert_eq!(writes[1].chunk, [1, 2, 3]);
        assert_eq!(largest, 9);
        assert_eq!(bucket_key(writes[1].chunk), "0/c/1/2/3");
    }

    #[test]
    fn coarser_buckets_are_checked_then_left_to_the_recomputation() {
        let s = spec();
        assert_eq!(s.levels, 3, "100 → 50 → 25 voxels along x");
        let at = |position: [u64; 3], mag: u64| {
            let mut a = bucket(position, 4);
            let VolumeAction::UpdateBucket { mag: m, .. } = &mut a;
            *m = [mag; 3];
            a
        };
        let decoded = decode_actions(
            &s,
            &[bucket([32, 0, 0], 5), at([0, 64, 0], 2), at([0, 0, 0], 4)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded.derived, 2);
        assert_eq!(decoded.buckets.len(), 1);
        assert_eq!(decoded.buckets[0].chunk, [0, 0, 1]);
        assert_eq!(decoded.largest, 5, "only full-resolution ids count");
        // Positions are full-resolution voxels, aligned to the coarser bucket's extent …
        assert_eq!(
            decode_actions(&s, &[at([32, 0, 0], 2)]),
            Err(VolumeActionError::Unaligned { index: 0 })
        );
        // … inside that level's grid (25 voxels along x at mag 4: one bucket) …
        assert_eq!(
            decode_actions(&s, &[at([128, 0, 0], 4)]),
            Err(VolumeActionError::OutOfBounds { index: 0 })
        );
        // … and the mag one of the volume's levels.
        assert_eq!(
            decode_actions(&s, &[at([0, 0, 0], 8)]),
            Err(VolumeActionError::Mag { index: 0 })
        );
        assert_eq!(
            decode_actions(&s, &[at([0, 0, 0], 3)]),
            Err(VolumeActionError::Mag { index: 0 })
        );
    }

    #[test]
    fn bad_buckets_are_refused_naming_the_action() {
        let s = spec();
        let good = bucket([0, 0, 0], 1);
        let with = |f: &dyn Fn(&mut VolumeAction)| {
            let mut a = bucket([0, 0, 0], 1);
            f(&mut a);
            decode_actions(&s, &[good.clone(), a]).err()
        };
        let VolumeAction::UpdateBucket { .. } = good;
        assert_eq!(
            with(&|VolumeAction::UpdateBucket { mag, .. }| *mag = [2, 2, 1]),
            Some(VolumeActionError::Mag { index: 1 })
        );
        assert_eq!(
            with(&|VolumeAction::UpdateBucket { cube_size, .. }| *cube_size = 64),
            Some(VolumeActionError::CubeSize { index: 1 })
        );
        assert_eq!(
            with(&|VolumeAction::UpdateBucket { position, .. }| *position = [16, 0, 0]),
            Some(VolumeActionError::Unaligned { index: 1 })
        );
        assert_eq!(
            with(&|VolumeAction::UpdateBucket { position, .. }| *position = [128, 0, 0]),
            Some(VolumeActionError::OutOfBounds { index: 1 })
        );
        assert_eq!(
            with(&|VolumeAction::UpdateBucket { base64_data, .. }| *base64_data = "%%".into()),
            Some(VolumeActionError::Base64 { index: 1 })
        );
        assert_eq!(
            with(&|VolumeAction::UpdateBucket { base64_data, .. }| *base64_data = "AAAA".into()),
            Some(VolumeActionError::Length {
                index: 1,
                expected: BUCKET_VOXELS * 4,
                got: 3
            })
        );
        assert_eq!(decode_actions(&s, &[]), Err(VolumeActionError::Count));
    }

    #[test]
    fn versions_point_each_bucket_at_the_save_that_wrote_it() {
        let id = AnnotationId::generate();
        let mut content = VolumeContent::default();
        content.buckets.insert("0/c/0/1/2".into(), "s3-abc".into());
        assert_eq!(
            content.object_key(&id, "0/c/0/1/2"),
            Some(format!("{id}/volume/s3-abc/0/c/0/1/2"))
        );
        assert_eq!(content.object_key(&id, "0/c/9/9/9"), None);
        let origin = AnnotationId::generate();
        let copied = content.copied_from(&origin);
        assert_eq!(
            copied.object_key(&id, "0/c/0/1/2"),
            Some(format!("{origin}/volume/s3-abc/0/c/0/1/2"))
        );
        assert_eq!(
            copied.copied_from(&id),
            copied,
            "a copy of a copy keeps the first owner"
        );
        assert_eq!(
            content.object_key(&id, "zarr.json"),
            Some(format!("{id}/volume/zarr.json"))
        );
        assert_eq!(content.object_key(&id, "0/.zarray"), None);
    }

    #[test]
    fn coarser_levels_take_the_most_frequent_id_of_each_2x2x2_block() {
        let uniform = |v: u16| -> Vec<u8> {
            std::iter::repeat_n(v.to_le_bytes(), BUCKET_VOXELS)
                .flatten()
                .collect()
        };
        let at = |data: &[u8], x: usize, y: usize, z: usize| {
            let i = (z * 1024 + y * 32 + x) * 2;
            u16::from_le_bytes([data[i], data[i + 1]])
        };
        // Child 0 (z, y, x offsets 0) is 5 but for one voxel per block: 5 wins 7 to 1.
        let mut mostly = uniform(5);
        for z in (0..32).step_by(2) {
            for y in (0..32).step_by(2) {
                for x in (0..32).step_by(2) {
                    let i = (z * 1024 + y * 32 + x) * 2;
                    mostly[i..i + 2].copy_from_slice(&9u16.to_le_bytes());
                }
            }
        }
        // Child 7 (offsets 1, 1, 1): 4 voxels of 3 and 4 of 8 in every block: a tie, 3 wins.
        let mut tied = uniform(8);
        for i in 0..BUCKET_VOXELS {
            if i % 2 == 0 {
                tied[i * 2..i * 2 + 2].copy_from_slice(&3u16.to_le_bytes());
            }
        }
        let mut children: [Option<Vec<u8>>; 8] = Default::default();
        children[0] = Some(mostly);
        children[1] = Some(uniform(6)); // x offset 1
        children[4] = Some(uniform(0)); // z offset 1, all background
        children[7] = Some(tied);
        let out = downsample(&children, SegmentType::Uint16);
        assert_eq!(out.len(), BUCKET_VOXELS * 2);
        assert_eq!(at(&out, 0, 0, 0), 5);
        assert_eq!(at(&out, 15, 15, 15), 5);
        assert_eq!(at(&out, 16, 0, 0), 6);
        assert_eq!(at(&out, 0, 16, 0), 0, "missing child: background");
        assert_eq!(at(&out, 0, 0, 16), 0);
        assert_eq!(at(&out, 31, 31, 31), 3);
        assert_eq!(at(&out, 16, 16, 16), 3);
    }

    #[test]
    fn the_action_format_is_webknossos_update_bucket() {
        let json = serde_json::json!({"name": "updateBucket", "value": {
            "position": [0, 32, 64], "mag": [1, 1, 1], "cubeSize": 32, "base64Data": "AA=="}});
        let action: VolumeAction = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            action,
            VolumeAction::UpdateBucket {
                position: [0, 32, 64],
                ..
            }
        ));
    }
}
