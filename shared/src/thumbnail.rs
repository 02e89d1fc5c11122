//! Gallery thumbnails: one 2-D plane of a dataset's lowest-resolution level, contrast-stretched
//! and box-downscaled into an 8-bit grayscale PNG. The lowest level is read because it is the
//! smallest, so a thumbnail costs a few chunk reads however large the dataset.

use std::ops::Range;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::prefix::PrefixStore;
use zarrs::array::data_type::{
    Float32DataType, Float64DataType, Int8DataType, Int16DataType, Int32DataType, Int64DataType,
    UInt8DataType, UInt16DataType, UInt32DataType, UInt64DataType,
};
use zarrs::array::{Array, ArraySubset, ElementOwned};
use zarrs_object_store::AsyncObjectStore;

use crate::domain::{Dataset, Layer, LayerKind, Level};
use crate::objects::Location;

type Store = AsyncObjectStore<PrefixStore<Arc<dyn ObjectStore>>>;
type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The most elements a plane may have (4096 × 4096): a lowest level is far smaller, and this
/// bounds the memory one thumbnail takes.
const MAX_PLANE_ELEMENTS: u64 = 4096 * 4096;

/// Percentiles mapped to black and white, so a few outliers do not wash out the image.
const LOW_PERCENTILE: f64 = 0.5;
const HIGH_PERCENTILE: f64 = 99.5;

/// The gray of a plane whose values are all equal: nothing to stretch, so mid gray.
const FLAT_GRAY: u8 = 128;

#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    /// No image or plain-array layer with a level, or the level's array is empty.
    #[error("the dataset has no image to render")]
    NoImage,
    /// The chosen plane has more than 4096 × 4096 elements.
    #[error("the plane to render ({height} × {width}) is too large for a thumbnail")]
    TooLarge { height: u64, width: u64 },
    #[error("data type '{data_type}' cannot be rendered as a thumbnail")]
    Unsupported { data_type: String },
    /// The array could not be opened or read (storage, metadata or codec failure).
    #[error("the dataset's array could not be read")]
    Read { source: Source },
    #[error("PNG encoding failed")]
    Encode(#[source] png::EncodingError),
}

fn read_error(e: impl std::error::Error + Send + Sync + 'static) -> ThumbnailError {
    ThumbnailError::Read {
        source: Box::new(e),
    }
}

/// A PNG of `dataset`'s lowest-resolution level whose longer side is at most `max_side` pixels
/// (never upscaled): the middle z-slice, first time point and channel, with the
/// 0.5th–99.5th percentile of its values stretched to black–white. NaN pixels are black; a
/// constant plane is mid gray.
pub async fn render(
    location: &Location,
    dataset: &Dataset,
    max_side: u32,
) -> Result<Vec<u8>, ThumbnailError> {
    let (layer, level) = lowest_level(&dataset.layers).ok_or(ThumbnailError::NoImage)?;
    let storage: Arc<Store> = Arc::new(AsyncObjectStore::new(PrefixStore::new(
        location.store().clone(),
        location.root(),
    )));
    let array = Array::async_open(storage, &format!("/{}", level.path))
        .await
        .map_err(read_error)?;
    let plane = select_plane(&layer.axes, array.shape()).ok_or(ThumbnailError::NoImage)?;
    let too_large = ThumbnailError::TooLarge {
        height: plane.height,
        width: plane.width,
    };
    if plane.height.saturating_mul(plane.width) > MAX_PLANE_ELEMENTS {
        return Err(too_large);
    }
    let (Ok(height), Ok(width)) = (usize::try_from(plane.height), usize::try_from(plane.width))
    else {
        return Err(too_large);
    };

    let values = read_plane(&array, &ArraySubset::new_with_ranges(&plane.ranges)).await?;
    let values = if plane.x_major {
        transpose(&values, width, height)
    } else {
        values
    };
    let window = contrast_window(&values);
    let (out_height, out_width) = target_size(
        height,
        width,
        usize::try_from(max_side).unwrap_or(usize::MAX),
    );
    let pixels: Vec<u8> = box_downscale(&values, height, width, out_height, out_width)
        .into_iter()
        .map(|v| to_gray(v, window))
        .collect();
    encode_png(&pixels, out_height, out_width)
}

/// The last (coarsest) level of the first image layer that has levels, else of the first such
/// plain array. Label images are skipped: their ids would render as noise.
fn lowest_level(layers: &[Layer]) -> Option<(&Layer, &Level)> {
    [LayerKind::Image, LayerKind::Array]
        .into_iter()
        .find_map(|kind| {
            layers
                .iter()
                .filter(|l| l.kind == kind)
                .find_map(|l| Some((l, l.levels.last()?)))
        })
}

/// Which elements of an array form the thumbnail's plane.
#[derive(Debug, PartialEq)]
struct Plane {
    /// One range per dimension: the whole of y and x, a single index elsewhere.
    ranges: Vec<Range<u64>>,
    height: u64,
    width: u64,
    /// Whether x comes before y in the array, so the block read is x-major and needs a transpose.
    x_major: bool,
}

/// The plane of an array of `shape` with axis names `axes` (ignored unless one per dimension):
/// the axes named y and x, else the last two; the middle of z; index 0 of every other axis.
/// A 1-D array is a single row. `None` for a 0-D array or one with an empty dimension.
fn select_plane(axes: &[String], shape: &[u64]) -> Option<Plane> {
    let n = shape.len();
    if n == 0 || shape.contains(&0) {
        return None;
    }
    let names_fit = axes.len() == n;
    let named = |name: &str| {
        names_fit
            .then(|| axes.iter().position(|a| a.eq_ignore_ascii_case(name)))
            .flatten()
    };
    let (y, x) = match (named("y"), named("x")) {
        (Some(y), Some(x)) => (Some(y), x),
        _ if n == 1 => (None, 0),
        _ => (Some(n - 2), n - 1),
    };
    let ranges = shape
        .iter()
        .zip(0..)
        .map(|(&len, i)| {
            if i == x || Some(i) == y {
                0..len
            } else if names_fit && axes[i].eq_ignore_ascii_case("z") {
                len / 2..len / 2 + 1
            } else {
                0..1
            }
        })
        .collect();
    Some(Plane {
        ranges,
        height: y.map_or(1, |y| shape[y]),
        width: shape[x],
        x_major: y.is_some_and(|y| x < y),
    })
}

/// The plane's values as `f64`, in the array's element order.
async fn read_plane(
    array: &Array<Store>,
    subset: &ArraySubset,
) -> Result<Vec<f64>, ThumbnailError> {
    let dt = array.data_type();
    if dt.is::<UInt8DataType>() {
        read_as::<u8>(array, subset, f64::from).await
    } else if dt.is::<UInt16DataType>() {
        read_as::<u16>(array, subset, f64::from).await
    } else if dt.is::<UInt32DataType>() {
        read_as::<u32>(array, subset, f64::from).await
    } else if dt.is::<UInt64DataType>() {
        read_as(array, subset, |v: u64| v as f64).await
    } else if dt.is::<Int8DataType>() {
        read_as::<i8>(array, subset, f64::from).await
    } else if dt.is::<Int16DataType>() {
        read_as::<i16>(array, subset, f64::from).await
    } else if dt.is::<Int32DataType>() {
        read_as::<i32>(array, subset, f64::from).await
    } else if dt.is::<Int64DataType>() {
        read_as(array, subset, |v: i64| v as f64).await
    } else if dt.is::<Float32DataType>() {
        read_as::<f32>(array, subset, f64::from).await
    } else if dt.is::<Float64DataType>() {
        read_as(array, subset, |v: f64| v).await
    } else {
        use zarrs::plugin::ExtensionName;
        let data_type = dt
            .name(zarrs::plugin::ZarrVersion::V3)
            .map_or_else(|| dt.to_string(), |n| n.into_owned());
        Err(ThumbnailError::Unsupported { data_type })
    }
}

async fn read_as<T: ElementOwned>(
    array: &Array<Store>,
    subset: &ArraySubset,
    convert: fn(T) -> f64,
) -> Result<Vec<f64>, ThumbnailError> {
    let elements: Vec<T> = array
        .async_retrieve_array_subset(subset)
        .await
        .map_err(read_error)?;
    Ok(elements.into_iter().map(convert).collect())
}

/// `values` (`rows` × `cols`, row-major) transposed to `cols` × `rows`.
fn transpose(values: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| values.get(r * cols + c).copied().unwrap_or(f64::NAN)))
        .collect()
}

/// The `p`th percentile (0–100) of ascending `sorted`, linearly interpolated between ranks.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = p / 100.0 * last as f64;
    let (below, above) = (rank.floor() as usize, rank.ceil() as usize);
    let (lo, hi) = (*sorted.get(below)?, *sorted.get(above)?);
    Some(lo + (hi - lo) * (rank - below as f64))
}

/// The values mapped to black and white: the 0.5th and 99.5th percentiles of the finite values
/// (NaN and infinities ignored); `None` when there are none.
fn contrast_window(values: &[f64]) -> Option<(f64, f64)> {
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    finite.sort_unstable_by(f64::total_cmp);
    Some((
        percentile(&finite, LOW_PERCENTILE)?,
        percentile(&finite, HIGH_PERCENTILE)?,
    ))
}

/// A value's gray level in `window`, clamped: NaN (or no window) is black, a flat window gray.
fn to_gray(value: f64, window: Option<(f64, f64)>) -> u8 {
    match window {
        _ if value.is_nan() => 0,
        None => 0,
        Some((lo, hi)) if hi > lo => {
            ((value - lo) / (hi - lo) * 255.0).round().clamp(0.0, 255.0) as u8
        }
        Some(_) => FLAT_GRAY,
    }
}

/// `(height, width)` scaled so the longer side is `max_side` (rounded, at least 1 pixel per
/// side), or unchanged when it already fits: thumbnails are never upscaled.
fn target_size(height: usize, width: usize, max_side: usize) -> (usize, usize) {
    let max_side = max_side.max(1);
    let long = height.max(width);
    if long <= max_side {
        return (height, width);
    }
    let scale =
        |side: usize| (side.saturating_mul(max_side).saturating_add(long / 2) / long).max(1);
    (scale(height), scale(width))
}

/// Box-average downscaling of a row-major `height` × `width` plane: each output pixel is the
/// mean of the non-NaN source values in its (disjoint) box, NaN when all are NaN.
fn box_downscale(
    values: &[f64],
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
) -> Vec<f64> {
    let (out_height, out_width) = (
        out_height.clamp(1, height.max(1)),
        out_width.clamp(1, width.max(1)),
    );
    let mut out = Vec::with_capacity(out_height * out_width);
    for oy in 0..out_height {
        let rows = oy * height / out_height..(oy + 1) * height / out_height;
        for ox in 0..out_width {
            let cols = ox * width / out_width..(ox + 1) * width / out_width;
            let (mut sum, mut count) = (0.0, 0u32);
            for y in rows.clone() {
                for x in cols.clone() {
                    if let Some(&v) = values.get(y * width + x)
                        && !v.is_nan()
                    {
                        sum += v;
                        count += 1;
                    }
                }
            }
            out.push(if count == 0 {
                f64::NAN
            } else {
                sum / f64::from(count)
            });
        }
    }
    out
}

fn encode_png(pixels: &[u8], height: usize, width: usize) -> Result<Vec<u8>, ThumbnailError> {
    let too_large = || ThumbnailError::TooLarge {
        height: height as u64,
        width: width as u64,
    };
    let h = u32::try_from(height).map_err(|_| too_large())?;
    let w = u32::try_from(width).map_err(|_| too_large())?;
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(ThumbnailError::Encode)?;
        writer
            .write_image_data(pixels)
            .map_err(ThumbnailError::Encode)?;
        writer.finish().map_err(ThumbnailError::Encode)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StorageUrl;
    use crate::objects::{Objects, S3Settings};
    use serde_json::json;
    use zarrs::array::{ArrayBuilder, data_type};
    use zarrs::filesystem::FilesystemStore;
    use zarrs::group::GroupBuilder;

    fn names(axes: &[&str]) -> Vec<String> {
        axes.iter().map(|&a| a.to_owned()).collect()
    }

    #[test]
    fn plane_takes_y_x_middle_z_and_first_c_t() {
        let plane = select_plane(&names(&["t", "c", "z", "y", "x"]), &[3, 2, 9, 40, 60]);
        assert_eq!(
            plane,
            Some(Plane {
                ranges: vec![0..1, 0..1, 4..5, 0..40, 0..60],
                height: 40,
                width: 60,
                x_major: false,
            })
        );
    }

    #[test]
    fn plane_falls_back_to_the_last_two_dimensions() {
        // No names, or names that do not match the dimensions: last two, index 0 elsewhere.
        for axes in [names(&[]), names(&["z", "y", "x"])] {
            let plane = select_plane(&axes, &[7, 5, 4, 3]);
            assert_eq!(
                plane.map(|p| (p.ranges, p.height, p.width, p.x_major)),
                Some((vec![0..1, 0..1, 0..4, 0..3], 4, 3, false)),
                "{axes:?}"
            );
        }
        // Named, but without y and x: z is still the middle slice.
        let plane = select_plane(&names(&["z", "a", "b"]), &[5, 2, 3]);
        assert_eq!(plane.map(|p| p.ranges), Some(vec![2..3, 0..2, 0..3]));
    }

    #[test]
    fn plane_follows_named_axes_in_any_order() {
        let plane = select_plane(&names(&["x", "y", "c"]), &[6, 4, 3]);
        assert_eq!(
            plane,
            Some(Plane {
                ranges: vec![0..6, 0..4, 0..1],
                height: 4,
                width: 6,
                x_major: true,
            })
        );
    }

    #[test]
    fn plane_of_one_dimension_is_a_row_and_empty_arrays_have_none() {
        assert_eq!(
            select_plane(&names(&["x"]), &[5]),
            Some(Plane {
                ranges: std::iter::once(0..5).collect(),
                height: 1,
                width: 5,
                x_major: false,
            })
        );
        assert_eq!(select_plane(&[], &[]), None);
        assert_eq!(select_plane(&[], &[3, 0, 2]), None);
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        // 2 × 3 → 3 × 2.
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }

    #[test]
    fn percentiles_interpolate_and_ignore_nan() {
        let sorted: Vec<f64> = (0..=200).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), Some(1.0));
        assert_eq!(percentile(&sorted, 99.5), Some(199.0));
        assert_eq!(percentile(&[2.0, 4.0], 25.0), Some(2.5));
        assert_eq!(percentile(&[], 50.0), None);

        let mut values: Vec<f64> = (0..=200).map(f64::from).collect();
        values.extend([f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
        values.reverse();
        assert_eq!(contrast_window(&values), Some((1.0, 199.0)));
        assert_eq!(contrast_window(&[f64::NAN]), None);
    }

    #[test]
    fn stretch_maps_the_window_to_black_and_white() {
        let window = Some((10.0, 20.0));
        assert_eq!(to_gray(10.0, window), 0);
        assert_eq!(to_gray(15.0, window), 128); // 127.5 rounds up
        assert_eq!(to_gray(20.0, window), 255);
        assert_eq!(to_gray(-1e9, window), 0);
        assert_eq!(to_gray(1e9, window), 255);
        assert_eq!(to_gray(f64::NAN, window), 0);
        assert_eq!(to_gray(7.0, Some((7.0, 7.0))), FLAT_GRAY);
        assert_eq!(to_gray(7.0, None), 0);
    }

    #[test]
    fn target_size_keeps_aspect_and_never_upscales() {
        assert_eq!(target_size(40, 60, 256), (40, 60));
        assert_eq!(target_size(40, 60, 60), (40, 60));
        assert_eq!(target_size(40, 60, 15), (10, 15));
        assert_eq!(target_size(60, 40, 16), (16, 11)); // 10.67 rounds to 11
        assert_eq!(target_size(1, 1000, 10), (1, 10)); // at least one pixel
        assert_eq!(target_size(5, 5, 0), (1, 1));
    }

    #[test]
    fn box_downscale_averages_disjoint_boxes_without_nan() {
        // 2 × 4 → 1 × 2: boxes of 2 × 2.
        let values = [1.0, 3.0, 10.0, f64::NAN, 5.0, 7.0, 20.0, 30.0];
        assert_eq!(box_downscale(&values, 2, 4, 1, 2), vec![4.0, 20.0]);
        // 3 → 2 columns: boxes [0, 1) and [1, 3).
        assert_eq!(box_downscale(&[1.0, 2.0, 4.0], 1, 3, 1, 2), vec![1.0, 3.0]);
        assert!(box_downscale(&[f64::NAN; 4], 2, 2, 1, 1)[0].is_nan());
        // Same size: unchanged.
        assert_eq!(box_downscale(&[1.0, 2.0], 1, 2, 1, 2), vec![1.0, 2.0]);
    }

    // End to end, through the project's own `Objects`/`Location` and `zarr::inspect`.

    struct Fixture {
        _dir: tempfile::TempDir,
        root: std::path::PathBuf,
        objects: Objects,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().join("data.zarr");
        std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
        let objects = Objects::new(
            S3Settings::default(),
            vec![dir.path().to_path_buf()],
            &[7; 32],
        );
        Fixture {
            _dir: dir,
            root,
            objects,
        }
    }

    impl Fixture {
        fn store(&self) -> Arc<FilesystemStore> {
            Arc::new(FilesystemStore::new(&self.root).unwrap_or_else(|e| panic!("{e}")))
        }

        fn storage(&self) -> StorageUrl {
            StorageUrl::Local {
                path: self.root.clone(),
            }
        }

        fn location(&self) -> Location {
            self.objects
                .locate(&self.storage())
                .unwrap_or_else(|e| panic!("{e}"))
        }

        /// A registered dataset as the datasets function would store it (layers from
        /// `zarr::inspect`, unless given).
        async fn dataset(&self, layers: Option<Vec<Layer>>) -> Dataset {
            let layers = match layers {
                Some(l) => l,
                None => {
                    crate::zarr::inspect(&self.location())
                        .await
                        .unwrap_or_else(|e| panic!("{e}"))
                        .layers
                }
            };
            // Through serde, so fields added to `Dataset` with defaults need no change here.
            serde_json::from_value(json!({
                "id": crate::domain::DatasetId::generate(),
                "org": "lab",
                "name": "thumb",
                "display_name": "thumb",
                "description": "",
                "storage": self.storage(),
                "visibility": "public",
                "featured": true,
                "zarr_format": "3",
                "layers": layers,
                "created_at": "2025-01-01T00:00:00Z",
                "updated_at": "2025-01-01T00:00:00Z",
                "version": 1
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        }

        async fn render(
            &self,
            layers: Option<Vec<Layer>>,
            max_side: u32,
        ) -> Result<Vec<u8>, ThumbnailError> {
            let (location, dataset) = (self.location(), self.dataset(layers).await);
            // Spawned, so the tests also check that the future is `Send`, as handlers need.
            tokio::spawn(async move { render(&location, &dataset, max_side).await })
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    }

    /// `(width, height, gray pixels)` of an 8-bit grayscale PNG.
    fn decode(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap_or_else(|e| panic!("{e}"));
        let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
        let info = reader
            .next_frame(&mut buf)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        (info.width as usize, info.height as usize, buf)
    }

    /// Level 0 of the gradient image: at z = 2 (the middle of 4) `1000·x + y`, dark on the left
    /// and bright on the right; every other z is a flat 60000, so a wrong slice renders gray.
    fn gradient(shape: [u64; 3]) -> Vec<u16> {
        let [nz, ny, nx] = shape;
        let mut out = Vec::new();
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    out.push(if z == 2 {
                        (1000 * x + y) as u16
                    } else {
                        60_000
                    });
                }
            }
        }
        out
    }

    /// An OME-Zarr 0.5 image `[4, 40, 60]` (z, y, x) uint16 with a 2× downsampled second level.
    fn write_ome_gradient(fx: &Fixture) {
        let store = fx.store();
        let axes = json!([
            {"name": "z", "type": "space"},
            {"name": "y", "type": "space"},
            {"name": "x", "type": "space"}
        ]);
        let datasets = json!([
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]},
            {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0, 2.0]}]}
        ]);
        let attrs = json!({"ome": {"version": "0.5", "multiscales": [
            {"name": "gradient", "axes": axes, "datasets": datasets}
        ]}});
        let serde_json::Value::Object(attrs) = attrs else {
            panic!("attributes are an object")
        };
        GroupBuilder::new()
            .attributes(attrs)
            .build(store.clone(), "/")
            .unwrap_or_else(|e| panic!("{e}"))
            .store_metadata()
            .unwrap_or_else(|e| panic!("{e}"));
        let full = gradient([4, 40, 60]);
        let half: Vec<u16> = (0..4usize)
            .flat_map(|z| (0..20usize).flat_map(move |y| (0..30usize).map(move |x| (z, y, x))))
            .map(|(z, y, x)| full[(z * 40 + 2 * y) * 60 + 2 * x])
            .collect();
        for (level, shape, data) in [(0, [4u64, 40, 60], full.clone()), (1, [4, 20, 30], half)] {
            let array =
                ArrayBuilder::new(shape.to_vec(), vec![2, 16, 16], data_type::uint16(), 0u16)
                    .dimension_names(["z", "y", "x"].into())
                    .build(store.clone(), &format!("/{level}"))
                    .unwrap_or_else(|e| panic!("{e}"));
            array.store_metadata().unwrap_or_else(|e| panic!("{e}"));
            array
                .store_array_subset(
                    &ArraySubset::new_with_shape(shape.to_vec()),
                    data.as_slice(),
                )
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[tokio::test]
    async fn renders_the_middle_slice_of_the_lowest_level() {
        let fx = fixture();
        write_ome_gradient(&fx);

        // Larger than the lowest level (30 × 20): its own size, not level 0's 60 × 40.
        let (w, h, px) = decode(&fx.render(None, 256).await.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!((w, h), (30, 20));
        for row in px.chunks(w) {
            assert!(row[0] <= 5, "left edge is dark: {row:?}");
            assert!(row[w - 1] >= 250, "right edge is bright: {row:?}");
            assert!(
                row.windows(2).all(|p| p[0] <= p[1]),
                "gradient rises: {row:?}"
            );
        }

        // Smaller: box-downscaled so the longer side is `max_side`, aspect kept.
        let (w, h, px) = decode(&fx.render(None, 15).await.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!((w, h), (15, 10));
        assert!(
            px.chunks(w).all(|row| row[0] < 20 && row[w - 1] > 235),
            "{px:?}"
        );
    }

    #[tokio::test]
    async fn renders_a_float_array_and_ignores_nan() {
        let fx = fixture();
        // A plain Zarr v3 array at the root: rows (y) 0..10 of value 1.5·y, one NaN.
        let mut data: Vec<f32> = (0..10u8)
            .flat_map(|y| std::iter::repeat_n(f32::from(y) * 1.5, 8))
            .collect();
        data[3 * 8 + 4] = f32::NAN;
        let array = ArrayBuilder::new(vec![10, 8], vec![4, 4], data_type::float32(), 0f32)
            .dimension_names(["y", "x"].into())
            .build(fx.store(), "/")
            .unwrap_or_else(|e| panic!("{e}"));
        array.store_metadata().unwrap_or_else(|e| panic!("{e}"));
        array
            .store_array_subset(&ArraySubset::new_with_shape(vec![10, 8]), data.as_slice())
            .unwrap_or_else(|e| panic!("{e}"));

        let (w, h, px) = decode(&fx.render(None, 64).await.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!((w, h), (8, 10));
        // Window 0 … 13.5 (the percentiles of the 79 finite values).
        assert!(px[..8].iter().all(|&p| p == 0), "top row black");
        assert!(px[72..].iter().all(|&p| p == 255), "bottom row white");
        assert_eq!(px[5 * 8], 142); // 7.5 / 13.5 · 255 = 141.7
        assert_eq!(px[3 * 8], 85); // 4.5 / 13.5 · 255
        assert_eq!(px[3 * 8 + 4], 0, "NaN is black");
    }

    #[tokio::test]
    async fn renders_x_before_y_upright() {
        let fx = fixture();
        // Stored (x, y) = 3 × 2 with value 100·y + 10·x: the PNG is 3 wide and 2 high.
        let data: Vec<u8> = (0..3u8)
            .flat_map(|x| (0..2u8).map(move |y| 100 * y + 10 * x))
            .collect();
        let array = ArrayBuilder::new(vec![3, 2], vec![3, 2], data_type::uint8(), 0u8)
            .dimension_names(["x", "y"].into())
            .build(fx.store(), "/")
            .unwrap_or_else(|e| panic!("{e}"));
        array.store_metadata().unwrap_or_else(|e| panic!("{e}"));
        array
            .store_array_subset(&ArraySubset::new_with_shape(vec![3, 2]), data.as_slice())
            .unwrap_or_else(|e| panic!("{e}"));

        let (w, h, px) = decode(&fx.render(None, 64).await.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!((w, h), (3, 2));
        // Window 0.25 … 119.75.
        assert_eq!(px, vec![0, 21, 42, 213, 234, 255]);
    }

    #[tokio::test]
    async fn datasets_without_an_image_have_no_thumbnail() {
        let fx = fixture();
        write_ome_gradient(&fx);
        assert!(matches!(
            fx.render(Some(vec![]), 64).await,
            Err(ThumbnailError::NoImage)
        ));
        // Only a label image, or an image without levels.
        let mut layers = fx.dataset(None).await.layers;
        layers[0].kind = LayerKind::Labels;
        let mut no_levels = layers[0].clone();
        no_levels.kind = LayerKind::Image;
        no_levels.levels.clear();
        layers.push(no_levels);
        assert!(matches!(
            fx.render(Some(layers), 64).await,
            Err(ThumbnailError::NoImage)
        ));
    }

    #[tokio::test]
    async fn unsupported_types_and_huge_planes_are_refused() {
        let fx = fixture();
        let array = ArrayBuilder::new(
            vec![4, 4],
            vec![4, 4],
            data_type::bool(),
            zarrs::array::FillValue::from(false),
        )
        .build(fx.store(), "/")
        .unwrap_or_else(|e| panic!("{e}"));
        array.store_metadata().unwrap_or_else(|e| panic!("{e}"));
        let result = fx.render(None, 64).await;
        assert!(
            matches!(&result, Err(ThumbnailError::Unsupported { data_type }) if data_type == "bool"),
            "{result:?}"
        );

        // Metadata only: the size is refused before any chunk is read.
        let array = ArrayBuilder::new(
            vec![2, 5000, 4000],
            vec![1, 512, 512],
            data_type::uint8(),
            0u8,
        )
        .build(fx.store(), "/")
        .unwrap_or_else(|e| panic!("{e}"));
        array.store_metadata().unwrap_or_else(|e| panic!("{e}"));
        let result = fx.render(None, 64).await;
        assert!(
            matches!(
                result,
                Err(ThumbnailError::TooLarge {
                    height: 5000,
                    width: 4000
                })
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn missing_arrays_are_read_errors_with_a_source() {
        let fx = fixture();
        write_ome_gradient(&fx);
        let layers = fx.dataset(None).await.layers;
        std::fs::remove_dir_all(fx.root.join("1")).unwrap_or_else(|e| panic!("{e}"));
        let result = fx.render(Some(layers), 64).await;
        let Err(err @ ThumbnailError::Read { .. }) = result else {
            panic!("{result:?}")
        };
        assert!(std::error::Error::source(&err).is_some());
    }
}
