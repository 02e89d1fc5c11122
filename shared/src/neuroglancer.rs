//! Neuroglancer view states for a dataset: which layers to load from where, and where to look.
//!
//! Pure: no I/O. [`state`] builds the JSON state, [`viewer_url`] puts it into a viewer link's
//! fragment, and [`viewer_url_for_state_url`] makes a link that loads the state from a URL.
//!
//! # Verified against Neuroglancer's source
//!
//! Read (not copied) from `google/neuroglancer` at commit `c0f79b10d046` (2026-08-14):
//!
//! - `src/ui/url_hash_binding.ts` (`UrlHashBinding.updateFromUrlHash`): a fragment matching
//!   `^#!([a-z][a-z\d+-.]*)://` is a **remote state**: everything after `#!` is taken verbatim
//!   (not percent-decoded), read through the kvstore layer (so `http`/`https` URLs work, subject
//!   to CORS), parsed as JSON and restored. Any other `#!…` fragment is percent-decoded with
//!   `decodeURIComponent` and parsed as the JSON state itself. Neuroglancer's own encoder
//!   (`encodeFragment`) is `encodeURI` plus escaping of `!'()*;,`; [`viewer_url`] escapes the
//!   same set (and a few more), so its links look like Neuroglancer's own.
//! - `src/datasource/zarr/register_default.ts`, `frontend.ts` (`ZarrDataSource.scheme`),
//!   `index.rst`: the schemes `zarr`, `zarr2` and `zarr3` exist; each is also registered through
//!   `KvStoreBasedDataSourceLegacyUrlAdapter` (`src/datasource/index.ts`), which accepts the
//!   `zarr3://https://host/path/` form used here (the new pipeline form is
//!   `https://host/path/|zarr3:`). The URL must name a directory holding an array or a group
//!   with OME-Zarr multiscales (versions 0.4, 0.5 and 0.6 are accepted); a trailing `/` is
//!   added by Neuroglancer if missing.
//! - `src/datasource/zarr/ome.ts`: dimension names are the OME axis names (an axis of type
//!   `channel` becomes the layer-local dimension `c'`, not a global one); units map to `m` or
//!   `s` (SI-prefixed `meter`/`second`, `angstrom`, `foot`, `inch`, `mile`, `parsec`, `yard`,
//!   `minute`, `hour`, `day`); an axis without a unit is unitless; the model space's scale per
//!   axis is the unit's factor times the finest level's `scale`; and since OME puts a voxel's
//!   *centre* at its coordinate, voxel `i` of the finest level spans
//!   `[translation/scale + i - 0.5, translation/scale + i + 0.5)` in those units.
//! - `src/datasource/zarr/frontend.ts` (`getNormalizedDimensionNames`,
//!   `getMultiscaleInfoForSingleArray`): a plain array's unnamed dimensions are called `d{i}`
//!   (Zarr v2) or `dim_{i}` (v3), its scales are 1 and unitless, and voxel `i` spans `[i, i+1)`.
//! - `src/viewer.ts`, `src/layer_group_viewer.ts`: the top-level keys `dimensions`, `position`,
//!   `crossSectionScale`, `projectionScale`, `layers`, `layout`. `src/layer/index.ts`
//!   (`TopLevelLayerListSpecification.restoreState`): `layers` may be an array of
//!   `{type, source, name}`; `src/layer/image/index.ts` and `src/layer/segmentation/index.ts`
//!   register the types `image` and `segmentation`.
//! - `src/coordinate_transform.ts` (`coordinateSpaceFromJson`, `src/util/si_units.ts`):
//!   `dimensions` maps a name to `[scale, unit]` with unit `""`, `m`, `s`, … and a positive
//!   scale. Layers' dimensions are matched to these by **name**, and rendering scales by the
//!   ratio of the two scales (units are not compared), so the names and scales here must be the
//!   ones Neuroglancer derives from the data. Dimensions a layer has but the state does not are
//!   appended to the global space.
//! - `src/navigation_state.ts`: `position` is one value per `dimensions` entry, in its units (so
//!   voxel coordinates here); if the final global space has a different number of dimensions,
//!   the position is dropped for the bounds' centre (`Position.handleCoordinateSpaceChanged`).
//!   The first three global dimensions are the display dimensions (`setToDefault`), the `xy`
//!   panel showing the first two. `crossSectionScale` is canonical voxels per screen pixel and
//!   `projectionScale` canonical voxels per viewport height, the canonical voxel being the
//!   smallest voxel size among the display dimensions.
//! - `src/data_panel_layout.ts` (`LAYOUTS`): layout names `xy`, `xz`, `yz`, `3d`, `4panel`
//!   (and `4panel-alt`, `*-3d`, not offered here).
//! - `src/navigation_state.ts` (`crossSectionOrientation`, `projectionOrientation`): unit
//!   quaternions `[x, y, z, w]`.
//! - Overlays: `src/datasource/local.ts` (`local://annotations`), `src/layer/annotation/index.ts`
//!   (the layer's `annotations` array), `src/annotation/index.ts` (`restoreAnnotation`: `type`
//!   is the lower-case type name, `id` a string, optional `description`; a `point` has `point`,
//!   a `line` has `pointA` and `pointB`, one coordinate per dimension of the layer's
//!   `source.transform.outputDimensions`, here the state's own `dimensions`).
//!
//! # Choices
//!
//! - The dimensions come from the first in-scope layer (the *reference layer*), at its finest
//!   level. The spatial axes are those named `x`, `y` and (if present) `z` (any case), listed in
//!   x, y, z order so that the `xy` panel shows the XY plane; when the names are not x/y, the
//!   last two or three axes are spatial, the last one shown horizontally. Other axes (e.g. `t`)
//!   follow the spatial ones, positioned at their first index, so that the position keeps the
//!   global space's rank; OME axes named `c` or `channel` are left out, as Neuroglancer makes
//!   channel axes layer-local.
//! - Voxel sizes are in metres for spatial OME units (seconds for time units); an empty or
//!   unrecognised unit stays **unitless** with the `scale` as voxel size, which is what
//!   Neuroglancer itself derives (declaring nanometres would scale such data by 10⁹).
//! - Key order in `dimensions` matters (display order); `serde_json`'s `preserve_order` is
//!   enabled in this crate's dependency graph, and a test guards it.
//! - Levels' own multiscale-wide `coordinateTransformations` are not in the catalog and are
//!   ignored.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::domain::{Dataset, Layer, LayerKind, ZarrFormat};

/// The nominal size, in screen pixels, of a data panel that [`ViewParams::zoom`] and the
/// default zoom are reckoned against.
pub const NOMINAL_PANEL_PX: f64 = 1000.0;

/// Accepted zoom range, in screen pixels per voxel.
pub const MIN_ZOOM: f64 = 1e-6;
pub const MAX_ZOOM: f64 = 1e6;

/// Positions further than this from the origin (in voxels) are rejected.
const MAX_ABS_POSITION: f64 = 1e15;

/// A Neuroglancer panel layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Layout {
    /// One cross-section panel in the XY plane.
    #[serde(rename = "xy")]
    Xy,
    /// One cross-section panel in the XZ plane.
    #[serde(rename = "xz")]
    Xz,
    /// One cross-section panel in the YZ plane.
    #[serde(rename = "yz")]
    Yz,
    /// One 3-D projection panel.
    #[serde(rename = "3d")]
    ThreeD,
    /// XY, XZ, YZ and 3-D panels.
    #[serde(rename = "4panel")]
    FourPanel,
}

impl Layout {
    /// The name Neuroglancer's state uses.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Xy => "xy",
            Self::Xz => "xz",
            Self::Yz => "yz",
            Self::ThreeD => "3d",
            Self::FourPanel => "4panel",
        }
    }
}

/// Where a view looks. Every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ViewParams {
    /// Centre of the view, in voxels of the finest level of the first layer shown: one value
    /// per spatial axis, in the dataset's axis order (e.g. z, y, x). Voxel `i`'s centre is `i`;
    /// fractions are allowed. Default: the centre of the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Vec<f64>>,
    /// Screen pixels per voxel of the finest level (per its smallest voxel edge, for anisotropic
    /// data), between 1e-6 and 1e6. The 3-D panel is zoomed so that 1000 px span as many voxels
    /// as a 1000 px cross-section does. Default: the whole XY extent fits in about 1000 px.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zoom: Option<f64>,
    /// Panel layout. Default: `4panel` for 3-D data, `xy` for 2-D (2-D data allows only `xy`
    /// and `3d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
    /// Rotation of the view, in degrees about the x, y and z axes (applied in that order, as
    /// webKnossos' `rotation`), each within ±360. Sets both the cross-section and the 3-D
    /// orientation. Default: none (axis-aligned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<[f64; 3]>,
}

/// Layers drawn over the dataset's own: an annotation's skeleton or segmentation.
#[derive(Clone, Debug, PartialEq)]
pub enum Overlay {
    /// A skeleton, as a local annotation layer: nodes as points, edges as lines. Positions
    /// are voxels (x, y, z) of the reference layer's finest level.
    Skeleton {
        name: String,
        nodes: Vec<OverlayNode>,
        /// Pairs of node positions.
        edges: Vec<([f64; 3], [f64; 3])>,
    },
    /// A segmentation layer read from a Zarr v3 URL (an OME-Zarr group).
    Segmentation { name: String, source: String },
}

/// One skeleton node shown as a point annotation.
#[derive(Clone, Debug, PartialEq)]
pub struct OverlayNode {
    pub id: String,
    pub position: [f64; 3],
    /// Its comment, shown as the annotation's description.
    pub description: Option<String>,
}

/// The unit quaternion `[x, y, z, w]` (Neuroglancer's order) of rotating by `degrees` about
/// x, then y, then z (q = qz · qy · qx).
pub fn orientation(degrees: [f64; 3]) -> [f64; 4] {
    let half = degrees.map(|d| d.to_radians() / 2.0);
    let (sx, cx) = half[0].sin_cos();
    let (sy, cy) = half[1].sin_cos();
    let (sz, cz) = half[2].sin_cos();
    [
        sx * cy * cz - cx * sy * sz,
        cx * sy * cz + sx * cy * sz,
        cx * cy * sz - sx * sy * cz,
        cx * cy * cz + sx * sy * sz,
    ]
}

fn checked_rotation(r: [f64; 3]) -> Result<[f64; 3], ViewError> {
    if r.iter().all(|v| v.is_finite() && v.abs() <= 360.0) {
        Ok(r)
    } else {
        Err(ViewError::InvalidView(
            "rotation must be three angles in degrees, each between -360 and 360".into(),
        ))
    }
}

/// A view query (`position=64,128,128&rotation=0,0,45`) that does not parse; the text is safe
/// to show to the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// `stored` (a link's default view, or none) with what a URL query gives on top of it:
/// `position` as comma-separated voxel coordinates, `rotation` as three comma-separated angles
/// in degrees, `zoom` and `layout`. Ranges are checked later, against the data, by [`state`].
pub fn view_from_query(
    stored: Option<&ViewParams>,
    position: Option<&str>,
    rotation: Option<&str>,
    zoom: Option<f64>,
    layout: Option<Layout>,
) -> Result<ViewParams, QueryError> {
    let numbers = |what: &str, text: &str| {
        text.split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| QueryError(format!("{what} must be comma-separated numbers")))
    };
    let mut view = stored.cloned().unwrap_or_default();
    if let Some(p) = position {
        view.position = Some(numbers("position", p)?);
    }
    if let Some(r) = rotation {
        view.rotation = Some(
            numbers("rotation", r)?
                .try_into()
                .map_err(|_| QueryError("rotation has three angles: about x, y and z".into()))?,
        );
    }
    if zoom.is_some() {
        view.zoom = zoom;
    }
    if layout.is_some() {
        view.layout = layout;
    }
    Ok(view)
}

/// Why no view state could be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// No layer with data lies at or below the scope prefix.
    #[error("no viewable layer of the dataset lies within the shared path")]
    NothingInScope,
    /// The view parameters are unusable; the text is safe to show to the caller.
    #[error("invalid view: {0}")]
    InvalidView(String),
}

/// The Neuroglancer state (JSON) showing a dataset's layers.
///
/// `data_root` is the absolute URL of the dataset root (`https://host/s/{token}/` or
/// `https://host/data/{id}/`); every layer's source is `zarr2://` or `zarr3://` (by the
/// dataset's Zarr format) followed by `data_root` and the layer's path. With `scope_prefix`,
/// only layers whose path equals it or lies below it are shown.
///
/// Errors: [`ViewError::NothingInScope`] when no layer with data is left;
/// [`ViewError::InvalidView`] for a position of the wrong length or with non-finite values, a
/// zoom outside [`MIN_ZOOM`]..=[`MAX_ZOOM`], or an `xz`, `yz` or `4panel` layout for data with
/// fewer than three spatial axes.
pub fn state(
    dataset: &Dataset,
    data_root: &str,
    scope_prefix: Option<&str>,
    view: &ViewParams,
    overlays: &[Overlay],
) -> Result<Value, ViewError> {
    let zoom = view.zoom.map(checked_zoom).transpose()?;
    let rotation = view.rotation.map(checked_rotation).transpose()?;
    let scope = scope_prefix.map(|p| p.trim_matches('/'));
    let layers: Vec<&Layer> = dataset
        .layers
        .iter()
        .filter(|l| in_scope(&l.path, scope) && viewable(l))
        .collect();
    let frame = layers
        .first()
        .and_then(|l| Frame::of(l, dataset.zarr_format))
        .ok_or(ViewError::NothingInScope)?;

    let spatial_count = frame.spatial.len();
    let layout = match view.layout {
        None if spatial_count >= 3 => Layout::FourPanel,
        None => Layout::Xy,
        Some(l @ (Layout::Xy | Layout::ThreeD)) => l,
        Some(l) if spatial_count >= 3 => l,
        Some(l) => {
            return Err(ViewError::InvalidView(format!(
                "layout \"{}\" needs three spatial axes; this data has {spatial_count}",
                l.as_str()
            )));
        }
    };

    // Voxel indices per spatial axis, in dataset order.
    let voxels = match &view.position {
        Some(p) => checked_position(p, &frame)?,
        None => frame
            .spatial
            .iter()
            .map(|&i| (frame.axes[i].extent as f64 - 1.0).max(0.0) / 2.0)
            .collect(),
    };

    let mut dimensions = Map::new();
    let mut position = Vec::new();
    for &i in &frame.display {
        let axis = &frame.axes[i];
        let k = frame.spatial.iter().position(|&s| s == i).unwrap_or(0);
        let voxel = voxels.get(k).copied().unwrap_or(0.0);
        dimensions.insert(axis.name.clone(), json!([axis.voxel_size, axis.unit]));
        position.push(axis.offset + voxel);
    }
    for &i in &frame.extra {
        let axis = &frame.axes[i];
        dimensions.insert(axis.name.clone(), json!([axis.voxel_size, axis.unit]));
        position.push(axis.offset);
    }

    // Neuroglancer's canonical voxel: the smallest voxel size among the display dimensions.
    let canonical = frame
        .display
        .iter()
        .map(|&i| frame.axes[i].voxel_size)
        .fold(f64::INFINITY, f64::min);
    let xy_extent = frame
        .display
        .iter()
        .take(2)
        .map(|&i| frame.axes[i].extent as f64 * frame.axes[i].voxel_size / canonical)
        .fold(1.0, f64::max);
    let (cross_section_scale, projection_scale) = match zoom {
        Some(z) => (1.0 / z, NOMINAL_PANEL_PX / z),
        None => (xy_extent / NOMINAL_PANEL_PX, xy_extent),
    };

    let scheme = match dataset.zarr_format {
        ZarrFormat::V2 => "zarr2://",
        ZarrFormat::V3 => "zarr3://",
    };
    let root: Cow<'_, str> = if data_root.ends_with('/') {
        Cow::Borrowed(data_root)
    } else {
        Cow::Owned(format!("{data_root}/"))
    };
    let mut taken = HashSet::new();
    let mut layer_specs: Vec<Value> = layers
        .iter()
        .map(|layer| {
            let path = layer.path.trim_matches('/');
            let source = if path.is_empty() {
                format!("{scheme}{root}")
            } else {
                format!("{scheme}{root}{}/", percent_encode(path, is_path_safe))
            };
            let kind = match layer.kind {
                LayerKind::Image | LayerKind::Array => "image",
                LayerKind::Labels => "segmentation",
            };
            json!({
                "type": kind,
                "source": source,
                "name": unique_name(&layer.name, &mut taken),
            })
        })
        .collect();

    // Overlay coordinates: a node's x, y, z voxel on the matching axes, the view's position on
    // any other global axis.
    let place = |voxel: &[f64; 3]| -> Vec<f64> {
        frame
            .display
            .iter()
            .chain(&frame.extra)
            .zip(&position)
            .map(|(&i, current)| {
                let axis = &frame.axes[i];
                match ["x", "y", "z"]
                    .iter()
                    .position(|n| axis.name.eq_ignore_ascii_case(n))
                {
                    Some(k) => axis.offset + voxel[k],
                    None => *current,
                }
            })
            .collect()
    };
    for overlay in overlays {
        layer_specs.push(match overlay {
            Overlay::Segmentation { name, source } => json!({
                "type": "segmentation",
                "source": format!("zarr3://{source}"),
                "name": unique_name(name, &mut taken),
            }),
            Overlay::Skeleton { name, nodes, edges } => {
                let mut annotations: Vec<Value> = nodes
                    .iter()
                    .map(|n| {
                        let mut a = json!({"type": "point", "id": n.id, "point": place(&n.position)});
                        if let Some(d) = &n.description {
                            a["description"] = json!(d);
                        }
                        a
                    })
                    .collect();
                annotations.extend(edges.iter().enumerate().map(|(i, (a, b))| {
                    json!({"type": "line", "id": format!("edge-{i}"), "pointA": place(a), "pointB": place(b)})
                }));
                json!({
                    "type": "annotation",
                    "source": {
                        "url": "local://annotations",
                        "transform": {"outputDimensions": dimensions.clone()},
                    },
                    "annotations": annotations,
                    "name": unique_name(name, &mut taken),
                })
            }
        });
    }

    let mut state = json!({
        "dimensions": dimensions,
        "position": position,
        "crossSectionScale": cross_section_scale,
        "projectionScale": projection_scale,
        "layers": layer_specs,
        "layout": layout.as_str(),
    });
    if let Some(r) = rotation {
        let q = orientation(r);
        state["crossSectionOrientation"] = json!(q);
        state["projectionOrientation"] = json!(q);
    }
    Ok(state)
}

/// A viewer link carrying the state itself: `viewer_base` (without any fragment it had) +
/// `#!` + the compact JSON, percent-encoded as Neuroglancer's own links are.
pub fn viewer_url(viewer_base: &str, state: &Value) -> String {
    format!(
        "{}#!{}",
        without_fragment(viewer_base),
        percent_encode(&state.to_string(), is_state_fragment_safe)
    )
}

/// A viewer link that makes Neuroglancer fetch the state from `state_json_url`:
/// `viewer_base` + `#!` + the URL. Neuroglancer treats a fragment `#!<scheme>://…` with a
/// lower-case scheme as a remote state and uses the rest verbatim (see the module docs), so
/// the scheme is lower-cased here and only characters that cannot stand in a fragment are
/// escaped. The URL must be absolute and served with CORS headers the viewer's origin accepts.
pub fn viewer_url_for_state_url(viewer_base: &str, state_json_url: &str) -> String {
    let url = match state_json_url.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => {
            Cow::Owned(format!("{}://{rest}", scheme.to_ascii_lowercase()))
        }
        _ => Cow::Borrowed(state_json_url),
    };
    format!(
        "{}#!{}",
        without_fragment(viewer_base),
        percent_encode(&url, is_url_fragment_safe)
    )
}

fn checked_zoom(zoom: f64) -> Result<f64, ViewError> {
    if zoom.is_finite() && (MIN_ZOOM..=MAX_ZOOM).contains(&zoom) {
        Ok(zoom)
    } else {
        Err(ViewError::InvalidView(format!(
            "zoom must be a number of screen pixels per voxel between {MIN_ZOOM:e} and {MAX_ZOOM:e}"
        )))
    }
}

fn checked_position(position: &[f64], frame: &Frame) -> Result<Vec<f64>, ViewError> {
    let names: Vec<&str> = frame
        .spatial
        .iter()
        .map(|&i| frame.axes[i].name.as_str())
        .collect();
    if position.len() != names.len() {
        return Err(ViewError::InvalidView(format!(
            "position must have {} values, one per spatial axis ({})",
            names.len(),
            names.join(", ")
        )));
    }
    if position
        .iter()
        .any(|v| !v.is_finite() || v.abs() > MAX_ABS_POSITION)
    {
        return Err(ViewError::InvalidView(format!(
            "position values must be finite numbers of voxels no larger than {MAX_ABS_POSITION:e}"
        )));
    }
    Ok(position.to_vec())
}

/// Whether a layer at `path` is shown under the scope prefix (already trimmed of `/`).
fn in_scope(path: &str, scope: Option<&str>) -> bool {
    let path = path.trim_matches('/');
    match scope {
        None | Some("") => true,
        Some(prefix) => {
            path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        }
    }
}

fn viewable(layer: &Layer) -> bool {
    layer.levels.first().is_some_and(|l| !l.shape.is_empty())
}

fn unique_name(name: &str, taken: &mut HashSet<String>) -> String {
    let base = if name.trim().is_empty() {
        "layer"
    } else {
        name
    };
    if taken.insert(base.to_owned()) {
        return base.to_owned();
    }
    let mut n = 2u32;
    loop {
        let candidate = format!("{base} ({n})");
        if taken.insert(candidate.clone()) {
            return candidate;
        }
        n += 1;
    }
}

/// One axis of the reference layer, as Neuroglancer's global coordinate space sees it.
#[derive(Debug)]
struct Axis {
    /// Neuroglancer's dimension name for it.
    name: String,
    /// Voxel size of the finest level, in `unit`.
    voxel_size: f64,
    /// `m`, `s` or `""` (unitless).
    unit: &'static str,
    /// The global coordinate of the centre of voxel 0 of the finest level.
    offset: f64,
    /// Voxels along it at the finest level.
    extent: u64,
}

/// The reference layer's axes and which of them are displayed.
#[derive(Debug)]
struct Frame {
    /// All axes, in dataset order.
    axes: Vec<Axis>,
    /// Spatial axes' indices, in dataset order.
    spatial: Vec<usize>,
    /// Spatial axes' indices, in display order (x, y, z).
    display: Vec<usize>,
    /// Other global (non-channel) axes' indices, in dataset order.
    extra: Vec<usize>,
}

impl Frame {
    fn of(layer: &Layer, format: ZarrFormat) -> Option<Self> {
        let level = layer.levels.first()?;
        let rank = level.shape.len();
        if rank == 0 {
            return None;
        }
        let ome = layer.kind != LayerKind::Array;
        let names = neuroglancer_names(&layer.axes, rank, format);
        let scale = level
            .scale
            .as_ref()
            .filter(|s| s.len() == rank && s.iter().all(|v| v.is_finite() && *v > 0.0));
        let translation = level
            .translation
            .as_ref()
            .filter(|t| t.len() == rank && t.iter().all(|v| v.is_finite()));

        let axes: Vec<Axis> = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let raw = scale.map_or(1.0, |s| s[i]);
                let unit = if ome {
                    layer.units.get(i).and_then(|u| ome_unit(u))
                } else {
                    None
                };
                let (unit, voxel_size) = match unit.map(|(symbol, f)| (symbol, f.apply(raw))) {
                    // Neuroglancer needs a finite positive scale; keep the raw one otherwise.
                    Some((symbol, size)) if size.is_finite() && size > 0.0 => (symbol, size),
                    _ => ("", raw),
                };
                let offset = if ome {
                    translation.map_or(0.0, |t| t[i] / raw)
                } else {
                    0.5
                };
                Axis {
                    name,
                    voxel_size,
                    unit,
                    offset,
                    extent: level.shape[i],
                }
            })
            .collect();

        let find = |wanted: &str| {
            axes.iter()
                .position(|a| a.name.eq_ignore_ascii_case(wanted))
        };
        let (spatial, display) = match (find("x"), find("y")) {
            (Some(x), Some(y)) => {
                let display: Vec<usize> = [Some(x), Some(y), find("z")]
                    .into_iter()
                    .flatten()
                    .collect();
                let mut spatial = display.clone();
                spatial.sort_unstable();
                (spatial, display)
            }
            _ => {
                let spatial: Vec<usize> = (rank - rank.min(3)..rank).collect();
                let display = spatial.iter().rev().copied().collect();
                (spatial, display)
            }
        };
        let extra = (0..rank)
            .filter(|i| !spatial.contains(i))
            .filter(|&i| !(ome && is_channel_name(&axes[i].name)))
            .collect();
        Some(Self {
            axes,
            spatial,
            display,
            extra,
        })
    }
}

fn is_channel_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("c") || name.eq_ignore_ascii_case("channel")
}

/// Dimension names as Neuroglancer gives them: the given ones, unnamed ones `d{i}` (Zarr v2)
/// or `dim_{i}` (v3), duplicates suffixed with a number.
fn neuroglancer_names(axes: &[String], rank: usize, format: ZarrFormat) -> Vec<String> {
    let prefix = match format {
        ZarrFormat::V2 => "d",
        ZarrFormat::V3 => "dim_",
    };
    let mut seen = HashSet::new();
    let mut names = Vec::with_capacity(rank);
    for i in 0..rank {
        let given = axes.get(i).filter(|n| axes.len() == rank && !n.is_empty());
        let mut j = 0usize;
        let name = loop {
            let candidate = match given {
                None => format!("{prefix}{}", i + j),
                Some(name) if j == 0 => name.clone(),
                Some(name) => format!("{name}{j}"),
            };
            if seen.insert(candidate.clone()) {
                break candidate;
            }
            j += 1;
        };
        names.push(name);
    }
    names
}

/// How an OME unit converts to Neuroglancer's base unit.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Factor {
    /// Times ten to this power (divided by an exact power of ten when negative, so that
    /// `30 nanometer` becomes exactly `3e-8`).
    Exp10(i32),
    Times(f64),
}

impl Factor {
    fn apply(self, value: f64) -> f64 {
        match self {
            Self::Exp10(e) if e < 0 => value / 10f64.powi(-e),
            Self::Exp10(e) => value * 10f64.powi(e),
            Self::Times(m) => value * m,
        }
    }
}

const SI_PREFIXES: [(&str, i32); 21] = [
    ("yotta", 24),
    ("zetta", 21),
    ("exa", 18),
    ("peta", 15),
    ("tera", 12),
    ("giga", 9),
    ("mega", 6),
    ("kilo", 3),
    ("hecto", 2),
    ("deca", 1),
    ("", 0),
    ("deci", -1),
    ("centi", -2),
    ("milli", -3),
    ("micro", -6),
    ("nano", -9),
    ("pico", -12),
    ("femto", -15),
    ("atto", -18),
    ("zepto", -21),
    ("yocto", -24),
];

/// The Neuroglancer base unit (`m` or `s`) and conversion factor of an OME-Zarr unit, for the
/// units Neuroglancer's OME reader knows; `None` for empty or unknown ones.
fn ome_unit(unit: &str) -> Option<(&'static str, Factor)> {
    let special = match unit {
        "angstrom" => Some(("m", Factor::Exp10(-10))),
        "foot" => Some(("m", Factor::Times(0.3048))),
        "inch" => Some(("m", Factor::Times(0.0254))),
        "mile" => Some(("m", Factor::Times(1609.34))),
        "parsec" => Some(("m", Factor::Times(3.085_677_581_491_367e16))),
        "yard" => Some(("m", Factor::Times(0.9144))),
        "minute" => Some(("s", Factor::Times(60.0))),
        "hour" => Some(("s", Factor::Times(3600.0))),
        "day" => Some(("s", Factor::Times(86400.0))),
        _ => None,
    };
    special.or_else(|| {
        [("meter", "m"), ("second", "s")]
            .into_iter()
            .find_map(|(base, symbol)| {
                let prefix = unit.strip_suffix(base)?;
                SI_PREFIXES
                    .iter()
                    .find(|(p, _)| *p == prefix)
                    .map(|&(_, e)| (symbol, Factor::Exp10(e)))
            })
    })
}

fn without_fragment(url: &str) -> &str {
    url.split_once('#').map_or(url, |(base, _)| base)
}

fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// RFC 3986 unreserved characters and `/`: what a layer path keeps in a source URL.
fn is_path_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/')
}

/// What a JSON state keeps unescaped in a fragment: what `encodeURI` keeps, minus `#` and the
/// `!'()*;,` Neuroglancer escapes (links ending in them get mangled by chat and mail clients).
fn is_state_fragment_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'_' | b'~' | b'/' | b'?' | b':' | b'@' | b'&' | b'=' | b'+' | b'$'
        )
}

/// What a state URL keeps unescaped: RFC 3986 fragment characters, and `%` so that an
/// already-encoded URL stays as it is (Neuroglancer does not decode it).
fn is_url_fragment_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'/'
                | b'?'
                | b':'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'%'
        )
}

/// Escapes every byte (of the UTF-8 text) that `keep` rejects as `%XX`.
fn percent_encode(text: &str, keep: fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::domain::{
        DatasetId, DatasetName, Level, OrgId, StorageUrl, Visibility, ZarrFormat, now,
    };

    const ROOT: &str = "https://zarr.example.org/s/tok3n5ecret/";

    fn level(path: &str, shape: &[u64], scale: &[f64]) -> Level {
        Level {
            path: path.into(),
            shape: shape.to_vec(),
            chunk_shape: shape.iter().map(|&s| s.min(64)).collect(),
            shard_shape: None,
            data_type: "uint16".into(),
            codecs: vec!["bytes".into(), "zstd".into()],
            scale: Some(scale.to_vec()),
            translation: None,
        }
    }

    fn zyx(units: &str) -> (Vec<String>, Vec<String>) {
        (
            vec!["z".into(), "y".into(), "x".into()],
            vec![units.into(); 3],
        )
    }

    /// A 3-level OME image (z, y, x in micrometres) with one label image of 2 levels.
    fn image_layer() -> Layer {
        let (axes, units) = zyx("micrometer");
        Layer {
            name: "raw".into(),
            kind: LayerKind::Image,
            path: String::new(),
            axes,
            units,
            levels: vec![
                level("0", &[64, 512, 1024], &[2.0, 0.5, 0.5]),
                level("1", &[64, 256, 512], &[2.0, 1.0, 1.0]),
                level("2", &[64, 128, 256], &[2.0, 2.0, 2.0]),
            ],
        }
    }

    fn labels_layer() -> Layer {
        let (axes, units) = zyx("micrometer");
        Layer {
            name: "cells".into(),
            kind: LayerKind::Labels,
            path: "labels/cells".into(),
            axes,
            units,
            levels: vec![
                level("labels/cells/0", &[32, 256, 512], &[4.0, 1.0, 1.0]),
                level("labels/cells/1", &[32, 128, 256], &[4.0, 2.0, 2.0]),
            ],
        }
    }

    fn dataset_with(format: ZarrFormat, layers: Vec<Layer>) -> Dataset {
        let t = now();
        Dataset {
            id: DatasetId::generate(),
            org: OrgId::parse("home-lab").expect("org id"),
            name: DatasetName::parse("cells.ome").expect("dataset name"),
            display_name: "Cells".into(),
            description: String::new(),
            storage: StorageUrl::parse("s3://lab-data/cells.ome.zarr").expect("storage url"),
            visibility: Visibility::Private,
            featured: false,
            owner: None,
            allowed_teams: BTreeSet::new(),
            zarr_format: format,
            ome_version: Some("0.5".into()),
            layers,
            created_at: t,
            updated_at: t,
            version: 1,
        }
    }

    fn dataset() -> Dataset {
        dataset_with(ZarrFormat::V3, vec![image_layer(), labels_layer()])
    }

    fn state_of(d: &Dataset, scope: Option<&str>, view: &ViewParams) -> Value {
        state(d, ROOT, scope, view, &[]).expect("state")
    }

    fn invalid(d: &Dataset, view: ViewParams) -> String {
        match state(d, ROOT, None, &view, &[]) {
            Err(ViewError::InvalidView(why)) => why,
            other => panic!("expected InvalidView for {view:?}, got {other:?}"),
        }
    }

    fn percent_decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex digit"));
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn sources_carry_the_data_root_and_layer_types() {
        let s = state_of(&dataset(), None, &ViewParams::default());
        assert_eq!(
            s["layers"],
            json!([
                {
                    "type": "image",
                    "source": "zarr3://https://zarr.example.org/s/tok3n5ecret/",
                    "name": "raw",
                },
                {
                    "type": "segmentation",
                    "source": "zarr3://https://zarr.example.org/s/tok3n5ecret/labels/cells/",
                    "name": "cells",
                },
            ])
        );
        // A data root without its trailing slash is joined the same way.
        let again = state(
            &dataset(),
            ROOT.trim_end_matches('/'),
            None,
            &ViewParams::default(),
            &[],
        )
        .expect("state");
        assert_eq!(again["layers"], s["layers"]);
    }

    #[test]
    fn zarr_v2_datasets_use_the_zarr2_scheme() {
        let d = dataset_with(ZarrFormat::V2, vec![image_layer(), labels_layer()]);
        let s = state_of(&d, None, &ViewParams::default());
        for layer in s["layers"].as_array().expect("layers") {
            let source = layer["source"].as_str().expect("source");
            assert!(source.starts_with("zarr2://https://zarr.example.org/s/tok3n5ecret/"));
        }
    }

    #[test]
    fn default_state_is_exact() {
        let s = state_of(&dataset(), None, &ViewParams::default());
        assert_eq!(
            s,
            json!({
                "dimensions": {
                    "x": [5e-7, "m"],
                    "y": [5e-7, "m"],
                    "z": [2e-6, "m"],
                },
                // Centre of a 1024 x 512 x 64 volume whose voxel i is centred on i.
                "position": [511.5, 255.5, 31.5],
                // The 1024 voxels of the wider XY side fill the nominal 1000 px.
                "crossSectionScale": 1.024,
                "projectionScale": 1024.0,
                "layers": s["layers"].clone(),
                "layout": "4panel",
            })
        );
        // Key order is display order (needs serde_json's preserve_order).
        let keys: Vec<&str> = s["dimensions"]
            .as_object()
            .expect("dimensions")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["x", "y", "z"]);
    }

    #[test]
    fn units_convert_to_metres() {
        for (unit, x, z) in [
            ("nanometer", 4e-9, 3e-8),
            ("micrometer", 4e-6, 3e-5),
            ("millimeter", 4e-3, 3e-2),
            ("angstrom", 4e-10, 3e-9),
            ("meter", 4.0, 30.0),
        ] {
            let mut layer = image_layer();
            layer.units = vec![unit.into(); 3];
            layer.levels.truncate(1);
            layer.levels[0].scale = Some(vec![30.0, 4.0, 4.0]);
            let s = state_of(
                &dataset_with(ZarrFormat::V3, vec![layer]),
                None,
                &ViewParams::default(),
            );
            assert_eq!(
                s["dimensions"],
                json!({"x": [x, "m"], "y": [x, "m"], "z": [z, "m"]}),
                "{unit}"
            );
        }
    }

    #[test]
    fn unknown_or_missing_units_stay_unitless() {
        for units in [
            vec![],
            vec![String::new(); 3],
            vec!["furlong".to_owned(); 3],
        ] {
            let mut layer = image_layer();
            layer.units = units;
            let s = state_of(
                &dataset_with(ZarrFormat::V3, vec![layer]),
                None,
                &ViewParams::default(),
            );
            assert_eq!(
                s["dimensions"],
                json!({"x": [0.5, ""], "y": [0.5, ""], "z": [2.0, ""]})
            );
        }
    }

    #[test]
    fn ome_units_table_matches_neuroglancer() {
        assert_eq!(ome_unit("nanometer"), Some(("m", Factor::Exp10(-9))));
        assert_eq!(ome_unit("micrometer"), Some(("m", Factor::Exp10(-6))));
        assert_eq!(ome_unit("centimeter"), Some(("m", Factor::Exp10(-2))));
        assert_eq!(ome_unit("kilometer"), Some(("m", Factor::Exp10(3))));
        assert_eq!(ome_unit("millisecond"), Some(("s", Factor::Exp10(-3))));
        assert_eq!(ome_unit("inch"), Some(("m", Factor::Times(0.0254))));
        assert_eq!(ome_unit("hour"), Some(("s", Factor::Times(3600.0))));
        for unknown in ["", "um", "micron", "Nanometer", "nanometers", "pixel"] {
            assert_eq!(ome_unit(unknown), None, "{unknown}");
        }
        assert_eq!(Factor::Exp10(-9).apply(30.0), 3e-8);
        assert_eq!(Factor::Exp10(3).apply(2.5), 2500.0);
    }

    #[test]
    fn translation_shifts_the_position() {
        let mut image = image_layer();
        image.levels[0].translation = Some(vec![10.0, 4.0, 2.0]);
        let d = dataset_with(ZarrFormat::V3, vec![image]);
        let s = state_of(&d, None, &ViewParams::default());
        // translation / scale: z 10/2, y 4/0.5, x 2/0.5.
        assert_eq!(s["position"], json!([4.0 + 511.5, 8.0 + 255.5, 5.0 + 31.5]));
        let view = ViewParams {
            position: Some(vec![0.0, 0.0, 0.0]),
            ..ViewParams::default()
        };
        assert_eq!(
            state_of(&d, None, &view)["position"],
            json!([4.0, 8.0, 5.0])
        );
    }

    #[test]
    fn explicit_position_zoom_and_layout_are_honoured() {
        let view = ViewParams {
            position: Some(vec![10.0, 20.5, 30.0]),
            zoom: Some(2.0),
            layout: Some(Layout::Xz),
            rotation: None,
        };
        let s = state_of(&dataset(), None, &view);
        // Given as z, y, x; stored in the dimensions' x, y, z order.
        assert_eq!(s["position"], json!([30.0, 20.5, 10.0]));
        assert_eq!(s["crossSectionScale"], json!(0.5));
        assert_eq!(s["projectionScale"], json!(500.0));
        assert_eq!(s["layout"], json!("xz"));
        for (layout, name) in [
            (Layout::Xy, "xy"),
            (Layout::Yz, "yz"),
            (Layout::ThreeD, "3d"),
            (Layout::FourPanel, "4panel"),
        ] {
            let view = ViewParams {
                layout: Some(layout),
                ..ViewParams::default()
            };
            assert_eq!(state_of(&dataset(), None, &view)["layout"], json!(name));
        }
    }

    #[test]
    fn view_params_use_neuroglancer_layout_names_in_json() {
        let view: ViewParams =
            serde_json::from_value(json!({"position": [1, 2, 3], "zoom": 0.5, "layout": "3d"}))
                .expect("view params");
        assert_eq!(
            view,
            ViewParams {
                position: Some(vec![1.0, 2.0, 3.0]),
                zoom: Some(0.5),
                layout: Some(Layout::ThreeD),
                rotation: None,
            }
        );
        let empty: ViewParams = serde_json::from_value(json!({})).expect("empty view");
        assert_eq!(empty, ViewParams::default());
        assert!(serde_json::from_value::<ViewParams>(json!({"layout": "5panel"})).is_err());
    }

    #[test]
    fn scope_prefix_keeps_layers_at_or_below_it() {
        for scope in ["labels", "labels/cells", "/labels/cells/"] {
            let s = state_of(&dataset(), Some(scope), &ViewParams::default());
            assert_eq!(
                s["layers"],
                json!([{
                    "type": "segmentation",
                    "source": "zarr3://https://zarr.example.org/s/tok3n5ecret/labels/cells/",
                    "name": "cells",
                }]),
                "{scope}"
            );
            // The labels layer is now the reference: its own voxel size and centre.
            assert_eq!(
                s["dimensions"],
                json!({"x": [1e-6, "m"], "y": [1e-6, "m"], "z": [4e-6, "m"]})
            );
            assert_eq!(s["position"], json!([255.5, 127.5, 15.5]));
        }
        for scope in ["", "/"] {
            let s = state_of(&dataset(), Some(scope), &ViewParams::default());
            assert_eq!(s["layers"].as_array().map(Vec::len), Some(2));
        }
    }

    #[test]
    fn nothing_in_scope_is_an_error() {
        for scope in ["labels/cel", "labels/cells/0", "raw", "labelsx"] {
            assert_eq!(
                state(&dataset(), ROOT, Some(scope), &ViewParams::default(), &[]),
                Err(ViewError::NothingInScope),
                "{scope}"
            );
        }
        let mut empty = image_layer();
        empty.levels.clear();
        assert_eq!(
            state(
                &dataset_with(ZarrFormat::V3, vec![empty]),
                ROOT,
                None,
                &ViewParams::default(),
                &[]
            ),
            Err(ViewError::NothingInScope)
        );
    }

    #[test]
    fn invalid_views_are_rejected() {
        let d = dataset();
        let why = invalid(
            &d,
            ViewParams {
                position: Some(vec![1.0, 2.0]),
                ..ViewParams::default()
            },
        );
        assert_eq!(
            why,
            "position must have 3 values, one per spatial axis (z, y, x)"
        );
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e16] {
            invalid(
                &d,
                ViewParams {
                    position: Some(vec![1.0, bad, 3.0]),
                    ..ViewParams::default()
                },
            );
        }
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-7, 1e7] {
            invalid(
                &d,
                ViewParams {
                    zoom: Some(bad),
                    ..ViewParams::default()
                },
            );
        }
        let flat = two_d_dataset();
        for layout in [Layout::Xz, Layout::Yz, Layout::FourPanel] {
            invalid(
                &flat,
                ViewParams {
                    layout: Some(layout),
                    ..ViewParams::default()
                },
            );
        }
        assert_eq!(
            ViewError::InvalidView("zoom".into()).to_string(),
            "invalid view: zoom"
        );
    }

    /// A 2-D time series with channels: t, c, y, x.
    fn two_d_dataset() -> Dataset {
        let mut layer = image_layer();
        layer.axes = ["t", "c", "y", "x"].map(String::from).to_vec();
        layer.units = ["second", "", "micrometer", "micrometer"]
            .map(String::from)
            .to_vec();
        layer.levels = vec![level("0", &[5, 3, 100, 200], &[1.5, 1.0, 0.25, 0.25])];
        dataset_with(ZarrFormat::V3, vec![layer])
    }

    #[test]
    fn two_d_data_defaults_to_xy_and_keeps_time_but_not_channels() {
        let s = state_of(&two_d_dataset(), None, &ViewParams::default());
        assert_eq!(
            s["dimensions"],
            json!({"x": [2.5e-7, "m"], "y": [2.5e-7, "m"], "t": [1.5, "s"]})
        );
        let keys: Vec<&str> = s["dimensions"]
            .as_object()
            .expect("dimensions")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["x", "y", "t"]);
        assert_eq!(s["position"], json!([99.5, 49.5, 0.0]));
        assert_eq!(s["layout"], json!("xy"));
        assert_eq!(s["crossSectionScale"], json!(0.2));
        let view = ViewParams {
            position: Some(vec![7.0, 9.0]),
            layout: Some(Layout::ThreeD),
            ..ViewParams::default()
        };
        let s = state_of(&two_d_dataset(), None, &view);
        assert_eq!(s["position"], json!([9.0, 7.0, 0.0]));
        assert_eq!(s["layout"], json!("3d"));
    }

    #[test]
    fn unnamed_array_axes_use_neuroglancer_default_names() {
        let array = |path: &str| Layer {
            name: "array".into(),
            kind: LayerKind::Array,
            path: path.into(),
            axes: vec![],
            units: vec![],
            levels: vec![Level {
                scale: None,
                ..level(path, &[10, 20, 30], &[])
            }],
        };
        let s = state_of(
            &dataset_with(ZarrFormat::V3, vec![array("")]),
            None,
            &ViewParams::default(),
        );
        assert_eq!(
            s,
            json!({
                "dimensions": {"dim_2": [1.0, ""], "dim_1": [1.0, ""], "dim_0": [1.0, ""]},
                // Plain arrays: voxel i spans [i, i + 1), so the centre is shape / 2.
                "position": [15.0, 10.0, 5.0],
                "crossSectionScale": 0.03,
                "projectionScale": 30.0,
                "layers": [{
                    "type": "image",
                    "source": "zarr3://https://zarr.example.org/s/tok3n5ecret/",
                    "name": "array",
                }],
                "layout": "4panel",
            })
        );
        let s = state_of(
            &dataset_with(ZarrFormat::V2, vec![array("raw")]),
            None,
            &ViewParams::default(),
        );
        let keys: Vec<&str> = s["dimensions"]
            .as_object()
            .expect("dimensions")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["d2", "d1", "d0"]);
        assert_eq!(
            s["layers"][0]["source"],
            json!("zarr2://https://zarr.example.org/s/tok3n5ecret/raw/")
        );
    }

    #[test]
    fn neuroglancer_names_fill_gaps_and_duplicates() {
        let names = |axes: &[&str], rank| {
            let axes: Vec<String> = axes.iter().map(|a| (*a).to_owned()).collect();
            neuroglancer_names(&axes, rank, ZarrFormat::V3)
        };
        assert_eq!(names(&["", "y", ""], 3), ["dim_0", "y", "dim_2"]);
        assert_eq!(names(&["a", "a", "a"], 3), ["a", "a1", "a2"]);
        assert_eq!(names(&["dim_1", ""], 2), ["dim_1", "dim_2"]);
        assert_eq!(names(&["x"], 2), ["dim_0", "dim_1"]);
    }

    #[test]
    fn layer_names_are_made_unique() {
        let mut second = labels_layer();
        second.name = "raw".into();
        let mut third = labels_layer();
        third.name = String::new();
        third.path = "labels/other".into();
        let d = dataset_with(ZarrFormat::V3, vec![image_layer(), second, third]);
        let s = state_of(&d, None, &ViewParams::default());
        let names: Vec<&str> = s["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .filter_map(|l| l["name"].as_str())
            .collect();
        assert_eq!(names, ["raw", "raw (2)", "layer"]);
    }

    #[test]
    fn layer_paths_are_percent_encoded_in_sources() {
        let mut labels = labels_layer();
        labels.path = "labels/nuclei #2 (ü)".into();
        let d = dataset_with(ZarrFormat::V3, vec![image_layer(), labels]);
        let s = state_of(&d, None, &ViewParams::default());
        assert_eq!(
            s["layers"][1]["source"],
            json!(
                "zarr3://https://zarr.example.org/s/tok3n5ecret/labels/nuclei%20%232%20%28%C3%BC%29/"
            )
        );
    }

    #[test]
    fn rotations_become_unit_quaternions_about_x_then_y_then_z() {
        let close = |a: [f64; 4], b: [f64; 4]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert!(close(orientation([0.0, 0.0, 0.0]), [0.0, 0.0, 0.0, 1.0]));
        assert!(close(orientation([90.0, 0.0, 0.0]), [h, 0.0, 0.0, h]));
        assert!(close(orientation([0.0, 90.0, 0.0]), [0.0, h, 0.0, h]));
        assert!(close(orientation([0.0, 0.0, 90.0]), [0.0, 0.0, h, h]));
        // x then y: q = qy · qx.
        let q = orientation([90.0, 90.0, 0.0]);
        assert!(close(q, [0.5, 0.5, -0.5, 0.5]), "{q:?}");
        for r in [[10.0, -20.0, 30.0], [359.0, 1.0, -180.0]] {
            let n: f64 = orientation(r).iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-12);
        }
        let view = ViewParams {
            rotation: Some([0.0, 0.0, 90.0]),
            ..ViewParams::default()
        };
        let s = state_of(&dataset(), None, &view);
        assert_eq!(s["crossSectionOrientation"], s["projectionOrientation"]);
        let q: Vec<f64> =
            serde_json::from_value(s["crossSectionOrientation"].clone()).expect("quaternion");
        assert!(close([q[0], q[1], q[2], q[3]], [0.0, 0.0, h, h]));
        assert!(
            state_of(&dataset(), None, &ViewParams::default())
                .get("crossSectionOrientation")
                .is_none()
        );
        let why = invalid(
            &dataset(),
            ViewParams {
                rotation: Some([0.0, 400.0, 0.0]),
                ..ViewParams::default()
            },
        );
        assert!(why.contains("rotation"), "{why}");
    }

    #[test]
    fn overlays_add_a_skeleton_and_a_segmentation_in_the_global_space() {
        let overlays = [
            Overlay::Skeleton {
                name: "raw".into(),
                nodes: vec![
                    OverlayNode {
                        id: "n1".into(),
                        position: [10.0, 20.0, 3.0],
                        description: Some("soma".into()),
                    },
                    OverlayNode {
                        id: "n2".into(),
                        position: [11.0, 22.0, 4.0],
                        description: None,
                    },
                ],
                edges: vec![([10.0, 20.0, 3.0], [11.0, 22.0, 4.0])],
            },
            Overlay::Segmentation {
                name: "painted".into(),
                source: "https://h/s/t/__annotations/a/volume/".into(),
            },
        ];
        let s = state(&dataset(), ROOT, None, &ViewParams::default(), &overlays).expect("state");
        let layers = s["layers"].as_array().expect("layers");
        assert_eq!(layers.len(), 4);
        let skeleton = &layers[2];
        assert_eq!(skeleton["type"], "annotation");
        assert_eq!(skeleton["name"], "raw (2)", "names stay unique");
        assert_eq!(skeleton["source"]["url"], "local://annotations");
        assert_eq!(
            skeleton["source"]["transform"]["outputDimensions"],
            s["dimensions"]
        );
        // Dimensions are x, y, z with voxel centres at integers (no translation here).
        assert_eq!(
            skeleton["annotations"][0],
            json!({"type": "point", "id": "n1", "point": [10.0, 20.0, 3.0], "description": "soma"})
        );
        assert_eq!(
            skeleton["annotations"][2],
            json!({"type": "line", "id": "edge-0", "pointA": [10.0, 20.0, 3.0], "pointB": [11.0, 22.0, 4.0]})
        );
        assert_eq!(
            layers[3],
            json!({"type": "segmentation", "source": "zarr3://https://h/s/t/__annotations/a/volume/", "name": "painted"})
        );
    }

    #[test]
    fn queries_override_the_stored_view() {
        let stored = ViewParams {
            position: Some(vec![1.0, 2.0, 3.0]),
            zoom: Some(2.0),
            layout: Some(Layout::Xy),
            rotation: Some([0.0, 0.0, 10.0]),
        };
        let view = view_from_query(
            Some(&stored),
            Some("4, 5.5,6"),
            Some("90,0,-45"),
            None,
            None,
        )
        .expect("a view");
        assert_eq!(view.position, Some(vec![4.0, 5.5, 6.0]));
        assert_eq!(view.rotation, Some([90.0, 0.0, -45.0]));
        assert_eq!((view.zoom, view.layout), (Some(2.0), Some(Layout::Xy)));
        assert_eq!(
            view_from_query(Some(&stored), None, None, None, None),
            Ok(stored)
        );
        for (position, rotation) in [(Some("1,a"), None), (None, Some("1,2")), (None, Some(""))] {
            assert!(view_from_query(None, position, rotation, None, None).is_err());
        }
    }

    #[test]
    fn viewer_url_round_trips() {
        let view = ViewParams {
            position: Some(vec![1.25, 2.0, 3.0]),
            zoom: Some(0.75),
            layout: None,
            rotation: Some([0.0, 90.0, 45.0]),
        };
        let mut labels = labels_layer();
        labels.name = "cells & nuclei, \"v2\" (100%) ü".into();
        let d = dataset_with(ZarrFormat::V3, vec![image_layer(), labels]);
        let s = state_of(&d, None, &view);
        let base = "https://neuroglancer-demo.appspot.com/";
        let url = viewer_url(&format!("{base}#!{{}}"), &s);
        let fragment = url
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix("#!"))
            .expect("viewer base and #!");
        assert!(
            fragment
                .bytes()
                .all(|b| is_state_fragment_safe(b) || b == b'%'),
            "{fragment}"
        );
        // Not mistaken for a remote state URL by Neuroglancer.
        assert!(fragment.starts_with("%7B"));
        let back: Value = serde_json::from_str(&percent_decode(fragment)).expect("JSON");
        assert_eq!(back, s);
    }

    #[test]
    fn fragment_encoding_escapes_unsafe_characters() {
        assert_eq!(
            percent_encode("{\"a\": [1, 'b']}#!()*;,%", is_state_fragment_safe),
            "%7B%22a%22:%20%5B1%2C%20%27b%27%5D%7D%23%21%28%29%2A%3B%2C%25"
        );
        assert_eq!(
            percent_encode("a-z_0.9~/?:@&=+$", is_state_fragment_safe),
            "a-z_0.9~/?:@&=+$"
        );
        assert_eq!(percent_encode("é", is_state_fragment_safe), "%C3%A9");
        assert_eq!(percent_decode("%7B%22%C3%A9%22%7D"), "{\"é\"}");
    }

    #[test]
    fn state_url_link_uses_the_url_verbatim() {
        let base = "https://neuroglancer-demo.appspot.com/";
        assert_eq!(
            viewer_url_for_state_url(base, "https://zarr.example.org/s/tok3n5ecret/view.json"),
            "https://neuroglancer-demo.appspot.com/#!https://zarr.example.org/s/tok3n5ecret/view.json"
        );
        assert_eq!(
            viewer_url_for_state_url(
                "https://ng.example.org/#!{}",
                "HTTPS://h.example.org/a b/v.json?x=1%2F"
            ),
            "https://ng.example.org/#!https://h.example.org/a%20b/v.json?x=1%2F"
        );
    }
}
