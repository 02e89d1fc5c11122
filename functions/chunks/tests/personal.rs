//! Personal viewer URLs (`/u/{capability}/…`) and download manifests (`/files/…`), through
//! `chunks::router` with `oneshot`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use serde_json::Value;
use shared::Services;
use shared::config::Config;
use shared::domain::{
    AuditAction, AuditEntry, Dataset, DatasetId, DatasetName, Email, Grant, LinkPermission,
    LinkScope, LinkToken, OrgId, OrgRole, Organization, ShareLink, StorageUrl, TeamId, TeamRole,
    User, UserId, Visibility, ZarrFormat, now,
};
use shared::store::embedded::EmbeddedStore;
use shared::store::metered::{CallCounts, Metered};
use time::Duration;
use tower::ServiceExt;

struct App {
    services: Arc<Services>,
    counts: Arc<CallCounts>,
    public: Dataset,
    private: Dataset,
    team: TeamId,
    _dir: tempfile::TempDir,
}

fn dataset(
    root: &std::path::Path,
    name: &str,
    visibility: Visibility,
    teams: &[TeamId],
) -> Dataset {
    let t = now();
    Dataset {
        id: DatasetId::generate(),
        org: OrgId::parse("lab").unwrap(),
        name: DatasetName::parse(name).unwrap(),
        display_name: name.into(),
        description: String::new(),
        storage: StorageUrl::Local {
            path: root.join("ds.zarr"),
        },
        visibility,
        featured: false,
        owner: None,
        allowed_teams: teams.iter().cloned().collect(),
        zarr_format: ZarrFormat::V3,
        ome_version: None,
        layers: vec![],
        created_at: t,
        updated_at: t,
        version: 1,
    }
}

/// A dataset with a root document, two image chunks and a label image.
const FILES: [(&str, usize); 5] = [
    ("zarr.json", 52),
    ("0/c/0/0/0", 1000),
    ("0/c/0/0/1", 500),
    ("labels/cells/zarr.json", 40),
    ("labels/cells/0/c/0/0/0", 300),
];

async fn spawn() -> App {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let ds = root.join("ds.zarr");
    for (key, len) in FILES {
        let path = ds.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![7u8; len]).unwrap();
    }
    let db = root.join("meta.redb");
    let roots = root.to_string_lossy().into_owned();
    let config = Config::from_lookup(|name| match name {
        "ZARRSHARE_EMBEDDED_DB" => Some(db.to_string_lossy().into_owned()),
        "ZARRSHARE_LOCAL_ROOTS" => Some(roots.clone()),
        "ZARRSHARE_ORG" => Some("lab".into()),
        "ZARRSHARE_PUBLIC_BASE_URL" => Some("https://data.example.org".into()),
        _ => None,
    })
    .unwrap();
    let (store, counts) = Metered::wrap(Arc::new(EmbeddedStore::open(&db).unwrap()));
    let services = Arc::new(Services::new(config, store).unwrap());
    let team = TeamId::generate();
    let public = dataset(&root, "open", Visibility::Public, &[]);
    let private = dataset(
        &root,
        "closed",
        Visibility::Private,
        std::slice::from_ref(&team),
    );
    for d in [&public, &private] {
        services.catalog.create_dataset(d, "test").await.unwrap();
    }
    let t = now();
    let org = Organization {
        id: OrgId::parse("lab").unwrap(),
        name: "Lab".into(),
        auto_activate: false,
        created_at: t,
        version: 1,
    };
    let admin = user("admin@lab.org", "lab", OrgRole::Admin, &[]);
    services.directory.create_org(&org, &admin).await.unwrap();
    let rival = Organization {
        id: OrgId::parse("rival").unwrap(),
        name: "Rival".into(),
        ..org
    };
    let rival_admin = user("admin@rival.org", "rival", OrgRole::Admin, &[]);
    services
        .directory
        .create_org(&rival, &rival_admin)
        .await
        .unwrap();
    App {
        services,
        counts,
        public,
        private,
        team,
        _dir: dir,
    }
}

fn user(email: &str, org: &str, role: OrgRole, teams: &[TeamId]) -> User {
    User {
        teams: teams
            .iter()
            .map(|t| (t.clone(), TeamRole::Member))
            .collect::<BTreeMap<_, _>>(),
        ..User::new(
            OrgId::parse(org).unwrap(),
            Email::parse(email).unwrap(),
            email.into(),
            role,
            String::new(),
        )
    }
}

impl App {
    async fn get(&self, uri: &str) -> Response {
        chunks::router(self.services.clone())
            .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn status(&self, uri: &str) -> StatusCode {
        self.get(uri).await.status()
    }

    async fn add_user(&self, email: &str, org: &str, teams: &[TeamId]) -> User {
        let u = user(email, org, OrgRole::User, teams);
        self.services.directory.create_user(&u).await.unwrap();
        u
    }

    fn personal(&self, d: &Dataset, u: &User) -> String {
        self.services
            .signer
            .personal(&d.id, &u.id, now() + Duration::hours(1))
    }

    async fn link(&self, d: &Dataset, scope: LinkScope, permission: LinkPermission) -> String {
        let token = LinkToken::generate();
        let link = ShareLink {
            scope,
            permission,
            ..ShareLink::new(d.id.clone(), d.org.clone(), token.hash(), "test".into())
        };
        self.services.catalog.create_link(&link).await.unwrap();
        token.expose().to_owned()
    }
}

async fn json(r: Response) -> Value {
    assert_eq!(r.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn team_members_and_grantees_read_through_their_personal_urls() {
    let app = spawn().await;
    let member = app
        .add_user("member@lab.org", "lab", std::slice::from_ref(&app.team))
        .await;
    let stranger = app.add_user("stranger@lab.org", "lab", &[]).await;
    let outsider = app.add_user("guest@rival.org", "rival", &[]).await;

    let cap = app.personal(&app.private, &member);
    assert_eq!(
        app.status(&format!("/u/{cap}/zarr.json")).await,
        StatusCode::OK
    );
    assert_eq!(
        app.status(&format!("/u/{cap}/0/c/0/0/0")).await,
        StatusCode::OK
    );
    // Steady state: no metadata call per read.
    let before = app.counts.total();
    for _ in 0..20 {
        assert_eq!(
            app.status(&format!("/u/{cap}/0/c/0/0/1")).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        app.counts.total(),
        before,
        "personal reads hit the database"
    );

    // Someone of the organization without the team: known dataset, no access.
    let cap = app.personal(&app.private, &stranger);
    assert_eq!(
        app.status(&format!("/u/{cap}/zarr.json")).await,
        StatusCode::FORBIDDEN
    );
    // Another organization's user without a grant: the dataset is hidden.
    let cap = app.personal(&app.private, &outsider);
    assert_eq!(
        app.status(&format!("/u/{cap}/zarr.json")).await,
        StatusCode::NOT_FOUND
    );

    // A grant opens it; revoking the grant closes it again (here at once: same instance).
    let t = now();
    let grant = Grant {
        dataset_id: app.private.id.clone(),
        email: outsider.email.clone(),
        user: Some(outsider.id.clone()),
        invite: None,
        can_modify: false,
        can_share: false,
        granted_by: "test".into(),
        granted_by_user: None,
        created_at: t,
        updated_at: t,
        version: 1,
    };
    let audit = AuditEntry::new(&app.private.id, "test", AuditAction::GrantCreated);
    app.services
        .catalog
        .save_grant(&grant, None, &audit)
        .await
        .unwrap();
    app.services.forget_grant(&grant.dataset_id, &grant.email);
    assert_eq!(
        app.status(&format!("/u/{cap}/zarr.json")).await,
        StatusCode::OK
    );
    app.services
        .catalog
        .delete_grant(&grant, &audit)
        .await
        .unwrap();
    app.services.forget_grant(&grant.dataset_id, &grant.email);
    assert_eq!(
        app.status(&format!("/u/{cap}/zarr.json")).await,
        StatusCode::NOT_FOUND
    );

    // A deactivated member loses access as soon as the account is re-read.
    let cap = app.personal(&app.private, &member);
    app.services
        .directory
        .update_user::<shared::store::catalog::CatalogError>(&member.id, |u| {
            u.active = false;
            Ok(())
        })
        .await
        .unwrap();
    app.services.forget_user(&member.id);
    assert_eq!(
        app.status(&format!("/u/{cap}/zarr.json")).await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn personal_urls_are_bound_to_their_dataset_user_and_lifetime() {
    let app = spawn().await;
    let member = app
        .add_user("member@lab.org", "lab", std::slice::from_ref(&app.team))
        .await;
    let signer = &app.services.signer;
    let expired = signer.personal(&app.private.id, &member.id, now() - Duration::seconds(1));
    assert_eq!(
        app.status(&format!("/u/{expired}/zarr.json")).await,
        StatusCode::FORBIDDEN
    );
    let good = app.personal(&app.private, &member);
    let other_dataset = good.replacen(app.private.id.as_str(), app.public.id.as_str(), 1);
    assert_eq!(
        app.status(&format!("/u/{other_dataset}/zarr.json")).await,
        StatusCode::FORBIDDEN,
        "a capability must not move to another dataset"
    );
    let ghost = signer.personal(
        &app.private.id,
        &UserId::generate(),
        now() + Duration::hours(1),
    );
    assert_eq!(
        app.status(&format!("/u/{ghost}/zarr.json")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.status("/u/not-a-capability/zarr.json").await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn download_manifests_list_every_object_in_scope_for_download_links_only() {
    let app = spawn().await;
    // A public dataset: everyone may download; keys in order with sizes and URLs.
    let all = json(app.get(&format!("/files/data/{}", app.public.id)).await).await;
    let mut expected: Vec<(&str, usize)> = FILES.to_vec();
    expected.sort_unstable();
    let listed: Vec<(String, u64)> = all["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["key"].as_str().unwrap().to_owned(),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        expected
            .iter()
            .map(|(k, n)| ((*k).to_owned(), *n as u64))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        all["files"][0]["url"],
        format!("https://data.example.org/data/{}/0/c/0/0/0", app.public.id)
    );
    assert_eq!(all["next_cursor"], Value::Null);

    // Pages follow the cursor.
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/files/data/{}?limit=2&cursor={c}", app.public.id),
            None => format!("/files/data/{}?limit=2", app.public.id),
        };
        let page = json(app.get(&uri).await).await;
        for f in page["files"].as_array().unwrap() {
            keys.push(f["key"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        keys,
        expected
            .iter()
            .map(|(k, _)| (*k).to_owned())
            .collect::<Vec<_>>()
    );

    // A private dataset is hidden from anonymous downloads.
    assert_eq!(
        app.status(&format!("/files/data/{}", app.private.id)).await,
        StatusCode::NOT_FOUND
    );

    // Links: view-only cannot download; download can; a sub-path link lists only its scope.
    let view = app
        .link(&app.private, LinkScope::Dataset, LinkPermission::View)
        .await;
    assert_eq!(
        app.status(&format!("/files/s/{view}")).await,
        StatusCode::FORBIDDEN
    );
    let download = app
        .link(&app.private, LinkScope::Dataset, LinkPermission::Download)
        .await;
    let listed = json(app.get(&format!("/files/s/{download}")).await).await;
    assert_eq!(listed["files"].as_array().unwrap().len(), FILES.len());
    assert!(
        listed["files"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("https://data.example.org/s/{download}/"))
    );
    let scoped = app
        .link(
            &app.private,
            LinkScope::path("labels/cells").unwrap(),
            LinkPermission::Download,
        )
        .await;
    let listed = json(app.get(&format!("/files/s/{scoped}")).await).await;
    let keys: Vec<&str> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["labels/cells/0/c/0/0/0", "labels/cells/zarr.json"]);
    assert_eq!(
        app.status(&format!("/files/s/{scoped}?prefix=0")).await,
        StatusCode::FORBIDDEN,
        "a prefix outside the link's scope"
    );
    assert_eq!(
        app.status(&format!("/files/s/{download}?prefix=../x"))
            .await,
        StatusCode::BAD_REQUEST
    );
    // Every listed URL reads through the function.
    for f in listed["files"].as_array().unwrap() {
        let url = f["url"].as_str().unwrap();
        let path = url.strip_prefix("https://data.example.org").unwrap();
        assert_eq!(app.status(path).await, StatusCode::OK, "{path}");
    }
    // Grantees and team members download with their personal URL.
    let member = app
        .add_user("member@lab.org", "lab", std::slice::from_ref(&app.team))
        .await;
    let cap = app.personal(&app.private, &member);
    let listed = json(app.get(&format!("/files/u/{cap}")).await).await;
    assert_eq!(listed["files"].as_array().unwrap().len(), FILES.len());
}
