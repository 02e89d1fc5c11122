//! The public gallery (public, featured datasets, no login) and dataset thumbnails rendered
//! from the lowest-resolution level.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shared::ApiError;
use shared::access::{Action, Actor};
use shared::domain::{DatasetId, Visibility};
use shared::error::{ApiJson, ApiQuery, Problem};
use shared::thumbnail::ThumbnailError;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{AppState, Page, Subject, public_viewer_url};
use shared::error::invalid_cursor;

/// Longest side of a thumbnail, in pixels.
const THUMBNAIL_SIDE: u32 = 256;

/// A gallery card.
#[derive(Serialize, ToSchema)]
pub struct GalleryCard {
    #[schema(value_type = String)]
    pub id: DatasetId,
    #[schema(value_type = String)]
    pub org: shared::domain::OrgId,
    pub display_name: String,
    pub description: String,
    pub thumbnail_url: String,
    /// The public data root, for any Zarr reader.
    pub data_url: String,
    pub neuroglancer_url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
pub struct GalleryPage {
    /// By display name.
    pub items: Vec<GalleryCard>,
    pub next_cursor: Option<String>,
}

/// The public gallery: public datasets marked featured, by display name, a page at a time. No
/// login. (Public datasets that are not featured stay reachable by their URL only.)
#[utoipa::path(
    get, path = "/api/gallery", tag = "datasets", params(Page),
    responses((status = 200, body = GalleryPage), (status = 400, body = Problem))
)]
pub(crate) async fn gallery(
    State(s): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Response, ApiError> {
    let services = &s.services;
    let (limit, cursor) = page.parts()?;
    let listing = services
        .catalog
        .gallery(limit, cursor)
        .await
        .map_err(invalid_cursor)?;
    let items = listing
        .items
        .into_iter()
        .map(|e| GalleryCard {
            thumbnail_url: services.public_url(&format!("/api/datasets/{}/thumbnail.png", e.id)),
            data_url: services.public_url(&format!("/data/{}/", e.id)),
            neuroglancer_url: public_viewer_url(services, &e.id),
            id: e.id,
            org: e.org,
            display_name: e.display_name,
            description: e.description,
            updated_at: e.updated_at,
        })
        .collect();
    let mut response = ApiJson(GalleryPage {
        items,
        next_cursor: listing.next.map(|c| c.0),
    })
    .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(response)
}

/// A thumbnail (PNG, at most 256 px) of the dataset's first image layer: the middle plane of
/// its lowest-resolution level, contrast-stretched. Public for public datasets.
#[utoipa::path(
    get, path = "/api/datasets/{id}/thumbnail.png", tag = "datasets",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "The thumbnail", content_type = "image/png"),
        (status = 304, description = "Unchanged (If-None-Match)"),
        (status = 404, body = Problem),
        (status = 422, description = "The dataset has no image to draw", body = Problem),
    )
)]
pub(crate) async fn thumbnail(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let services = &s.services;
    // Thumbnails are for the gallery and dataset cards: signed-in callers are recognised when
    // they send a token, anyone else reads public ones.
    let actor = if headers.contains_key(header::AUTHORIZATION) {
        services.auth.authenticate(&headers).await?
    } else {
        Actor::Anonymous
    };
    let subject = Subject::load(services, &actor, &id).await?;
    subject.require(&actor, Action::ViewDataset)?;
    let d = &subject.dataset;
    let etag = format!("\"t{}\"", d.version);
    let caching = if d.visibility == Visibility::Public {
        "public, max-age=3600"
    } else {
        "private, max-age=3600"
    };
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, caching.to_owned()),
            ],
        )
            .into_response());
    }
    let key = (d.id.clone(), d.version);
    let png = match s.thumbnails.get(&key) {
        Some(png) => png,
        None => {
            let resolved = services
                .resolve_dataset(&d.id)
                .await?
                .ok_or_else(|| ApiError::NotFound("no such dataset".into()))?;
            let png = shared::thumbnail::render(&resolved.location, d, THUMBNAIL_SIDE)
                .await
                .map_err(|e| match e {
                    ThumbnailError::NoImage
                    | ThumbnailError::TooLarge { .. }
                    | ThumbnailError::Unsupported { .. } => {
                        ApiError::Unprocessable(format!("no thumbnail: {e}"))
                    }
                    other => ApiError::internal(other),
                })?;
            let png = bytes::Bytes::from(png);
            s.thumbnails.insert(key, png.clone());
            png
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/png".to_owned()),
            (header::CACHE_CONTROL, caching.to_owned()),
            (header::ETAG, etag),
        ],
        png,
    )
        .into_response())
}
