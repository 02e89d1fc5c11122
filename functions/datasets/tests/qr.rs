//! QR codes for links: what `/api/qr` draws decodes back to the link.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use shared::Services;
use shared::config::Config;
use shared::domain::{
    Dataset, DatasetId, DatasetName, OrgId, StorageUrl, Visibility, ZarrFormat, now,
};
use shared::store::embedded::EmbeddedStore;
use tower::ServiceExt;

const KEY: &str = "qr-test-admin-key-0123456789abcdef";

async fn app() -> (axum::Router, DatasetId, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.redb");
    let config = Config::from_lookup(|name| match name {
        "ZARRSHARE_EMBEDDED_DB" => Some(db.to_string_lossy().into_owned()),
        "ZARRSHARE_ADMIN_KEY" => Some(KEY.into()),
        "ZARRSHARE_ORG" => Some("lab".into()),
        "ZARRSHARE_PUBLIC_BASE_URL" => Some("https://data.example.org".into()),
        _ => None,
    })
    .unwrap();
    let store = Arc::new(EmbeddedStore::open(&db).unwrap());
    let services = Arc::new(Services::new(config, store).unwrap());
    let t = now();
    let dataset = Dataset {
        id: DatasetId::generate(),
        org: OrgId::parse("lab").unwrap(),
        name: DatasetName::parse("poster").unwrap(),
        display_name: "Poster".into(),
        description: String::new(),
        storage: StorageUrl::parse("s3://bucket/poster.zarr").unwrap(),
        visibility: Visibility::Private,
        featured: false,
        owner: None,
        allowed_teams: Default::default(),
        zarr_format: ZarrFormat::V3,
        ome_version: None,
        layers: vec![],
        created_at: t,
        updated_at: t,
        version: 1,
    };
    services
        .catalog
        .create_dataset(&dataset, "test")
        .await
        .unwrap();
    (datasets::router(services), dataset.id, dir)
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let r = app
        .clone()
        .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = r.status();
    let ct = r
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        ct,
        axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
}

fn decode(png_bytes: &[u8]) -> String {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    grids[0].decode().unwrap().1
}

#[tokio::test]
async fn a_new_links_qr_codes_decode_to_the_link() {
    let (app, id, _dir) = app().await;
    let request = Request::builder()
        .method("POST")
        .uri(format!("/api/datasets/{id}/links"))
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"label": "poster"}"#))
        .unwrap();
    let created = app.clone().oneshot(request).await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let link: serde_json::Value = serde_json::from_slice(
        &axum::body::to_bytes(created.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    let url = link["url"].as_str().unwrap();
    assert!(url.starts_with("https://data.example.org/s/"));

    let png_uri = link["qr_png"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://data.example.org");
    let (status, ct, body) = get(&app, png_uri).await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "image/png"));
    assert_eq!(decode(&body), url, "the PNG decodes to the link");

    let svg_uri = link["qr_svg"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://data.example.org");
    let (status, ct, body) = get(&app, svg_uri).await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "image/svg+xml"));
    assert!(String::from_utf8(body).unwrap().contains("<svg"));
}

#[tokio::test]
async fn only_links_of_this_service_get_qr_codes() {
    let (app, _, _dir) = app().await;
    let public =
        shared::qr::endpoint_path("https://data.example.org/data/k3v7q2mnb4xw5rta/", "png");
    let (status, _, body) = get(&app, &public).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        decode(&body),
        "https://data.example.org/data/k3v7q2mnb4xw5rta/"
    );
    for bad in [
        shared::qr::endpoint_path("https://evil.example.com/phish", "svg"),
        shared::qr::endpoint_path("https://data.example.org.evil.com/x", "svg"),
        format!(
            "{}&scale=0",
            shared::qr::endpoint_path("https://data.example.org/x", "png")
        ),
        format!(
            "{}&scale=33",
            shared::qr::endpoint_path("https://data.example.org/x", "png")
        ),
        shared::qr::endpoint_path("https://data.example.org/x", "gif"),
        "/api/qr".to_owned(),
    ] {
        let (status, ct, _) = get(&app, &bad).await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::BAD_REQUEST, "application/problem+json"),
            "{bad}"
        );
    }
}
