//! Handler tests for the accounts function: organizations, sign-up, login and sessions,
//! activation, teams and roles, experience levels and e-mail invitations, every route through
//! `accounts::router` over the embedded store, with an in-memory outbox for the mail.
//!
//! Every rejected request is checked for its status, for `application/problem+json` and its
//! fields, and (where it could) for leaving the stored users, teams and invitations as they were.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use shared::Services;
use shared::config::Config;
use shared::domain::{Email, Invite, InviteId, LinkToken, OrgId, OrgRole, Team, User, now};
use shared::mail::{Mail, OutboxMailer};
use shared::store::catalog::CatalogError;
use shared::store::embedded::EmbeddedStore;
use shared::tokens::TokenIssuer;
use tempfile::TempDir;
use tower::ServiceExt;

const ADMIN_KEY: &str = "test-admin-key-0123456789-abcdef";
const JWT_SECRET: &str = "test-jwt-secret-0123456789-abcdefghijkl";
const BASE_URL: &str = "http://example.test";
/// The organization the admin key administers.
const KEY_ORG: &str = "lab";
const PROBLEM: &str = "application/problem+json";
const PASSWORD: &str = "violet tangerine comet 42";
const ACCEPT_PREFIX: &str = "http://example.test/api/invites/accept?token=";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A router over fresh storage, and the handles a test needs around it.
struct TestApp {
    app: Router,
    services: Arc<Services>,
    outbox: Arc<OutboxMailer>,
    _dir: TempDir,
}

/// Builds the app as a function's `main` would, over an embedded store in a temp directory.
fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("meta.redb");
    let vars = [
        ("ZARRSHARE_EMBEDDED_DB", db.to_string_lossy().into_owned()),
        ("ZARRSHARE_ADMIN_KEY", ADMIN_KEY.to_owned()),
        ("ZARRSHARE_ORG", KEY_ORG.to_owned()),
        ("ZARRSHARE_JWT_SECRET", JWT_SECRET.to_owned()),
        ("ZARRSHARE_PUBLIC_BASE_URL", BASE_URL.to_owned()),
    ];
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("test configuration");
    let store = Arc::new(EmbeddedStore::open(&db).expect("embedded store"));
    let outbox = Arc::new(OutboxMailer::new(None));
    let services =
        Arc::new(Services::with_mailer(config, store, outbox.clone()).expect("services"));
    TestApp {
        app: accounts::router(services.clone()),
        services,
        outbox,
        _dir: dir,
    }
}

/// A response, its body read.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
            .to_str()
            .expect("visible ASCII header")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// Asserts a successful JSON answer with `status` and returns its body.
    fn ok(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        assert!(
            self.header(header::CONTENT_TYPE)
                .starts_with("application/json"),
            "content-type {:?}",
            self.headers.get(header::CONTENT_TYPE)
        );
        self.json()
    }

    /// Asserts an RFC 9457 problem document with `status` and returns its `detail`.
    fn problem(&self, status: StatusCode) -> String {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        assert_eq!(
            self.header(header::CONTENT_TYPE),
            PROBLEM,
            "errors must be problem documents"
        );
        let p = self.json();
        assert_eq!(p["status"], json!(status.as_u16()), "{p}");
        assert_eq!(
            p["title"],
            json!(status.canonical_reason().unwrap_or("Error")),
            "{p}"
        );
        let kind = p["type"]
            .as_str()
            .unwrap_or_else(|| panic!("no type in {p}"));
        assert!(kind.starts_with("https://"), "type must be a URI: {p}");
        let detail = p["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("no detail in {p}"))
            .to_owned();
        assert!(!detail.is_empty(), "empty detail: {p}");
        detail
    }

    /// A problem whose detail mentions `needle` (case-insensitive).
    fn problem_about(&self, status: StatusCode, needle: &str) -> String {
        let detail = self.problem(status);
        assert!(
            detail.to_lowercase().contains(&needle.to_lowercase()),
            "detail {detail:?} does not mention {needle:?}"
        );
        detail
    }

    /// A problem with one of `statuses`; returns the status.
    fn problem_among(&self, statuses: &[StatusCode]) -> StatusCode {
        assert!(
            statuses.contains(&self.status),
            "status {} not among {statuses:?}; body: {}",
            self.status,
            self.text()
        );
        self.problem(self.status);
        self.status
    }
}

/// Sends one request to a router (an owned clone, so it can run in a spawned task).
async fn call(
    app: Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let request = match body {
        Some(v) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string())),
        None => builder.body(Body::empty()),
    }
    .expect("request");
    send_request(app, request).await
}

async fn send_request(app: Router, request: Request<Body>) -> Reply {
    let response = app
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("response body");
    Reply {
        status,
        headers,
        body,
    }
}

/// A signed-in account.
#[derive(Clone, Debug)]
struct Account {
    id: String,
    access: String,
    refresh: String,
}

/// Everything stored about one organization: what "changes nothing" compares.
#[derive(Debug, PartialEq)]
struct Snapshot {
    users: Vec<User>,
    teams: Vec<Team>,
    invites: Vec<Invite>,
}

fn org_id(s: &str) -> OrgId {
    OrgId::parse(s).expect("organization id")
}

fn email(s: &str) -> Email {
    Email::parse(s).expect("e-mail address")
}

fn ids_of(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// The accept link in a mail's text part, and the token in it.
fn link_in(mail: &Mail) -> (String, String) {
    let start = mail
        .text
        .find(ACCEPT_PREFIX)
        .unwrap_or_else(|| panic!("no accept link in {:?}", mail.text));
    let url: String = mail.text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let token = url[ACCEPT_PREFIX.len()..].to_owned();
    assert_eq!(token.len(), 43, "token of 256 bits in {url}");
    (url, token)
}

/// The path (with query) of an absolute link to this service.
fn path_of(url: &str) -> &str {
    url.strip_prefix(BASE_URL)
        .unwrap_or_else(|| panic!("{url} is not under {BASE_URL}"))
}

impl TestApp {
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        call(self.app.clone(), method, path, token, body).await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(Method::POST, path, token, Some(body)).await
    }

    async fn snapshot(&self, org: &str) -> Snapshot {
        let org = org_id(org);
        let dir = &self.services.directory;
        Snapshot {
            users: dir.users_of(&org).await.expect("users"),
            teams: dir.teams_of(&org).await.expect("teams"),
            invites: dir.invites_of(&org).await.expect("invites"),
        }
    }

    async fn stored_user(&self, id: &str) -> User {
        let id = shared::domain::UserId::parse(id).expect("user id");
        self.services
            .directory
            .user(&id)
            .await
            .expect("stored user")
    }

    async fn create_org_reply(&self, id: &str, auto: bool, admin_email: &str) -> Reply {
        self.post(
            "/api/organizations",
            None,
            json!({
                "id": id,
                "name": format!("{id} Laboratory"),
                "auto_activate": auto,
                "admin": {"email": admin_email, "password": PASSWORD, "name": "Ada Admin"},
            }),
        )
        .await
    }

    /// Creates an organization; returns its signed-in first admin.
    async fn create_org(&self, id: &str, auto: bool, admin_email: &str) -> Account {
        let body = self
            .create_org_reply(id, auto, admin_email)
            .await
            .ok(StatusCode::CREATED);
        Account {
            id: body["admin"]["id"].as_str().expect("admin id").to_owned(),
            access: body["tokens"]["access_token"]
                .as_str()
                .expect("access")
                .to_owned(),
            refresh: body["tokens"]["refresh_token"]
                .as_str()
                .expect("refresh")
                .to_owned(),
        }
    }

    async fn signup_reply(&self, org: &str, address: &str, password: &str) -> Reply {
        self.post(
            "/api/auth/signup",
            None,
            json!({"organization": org, "email": address, "password": password, "name": "Some One"}),
        )
        .await
    }

    /// Signs up; returns the new user's id.
    async fn signup(&self, org: &str, address: &str) -> String {
        let body = self
            .signup_reply(org, address, PASSWORD)
            .await
            .ok(StatusCode::CREATED);
        body["id"].as_str().expect("user id").to_owned()
    }

    async fn login_reply(&self, address: &str, password: &str) -> Reply {
        self.post(
            "/api/auth/login",
            None,
            json!({"email": address, "password": password}),
        )
        .await
    }

    async fn login(&self, address: &str) -> Account {
        let body = self.login_reply(address, PASSWORD).await.ok(StatusCode::OK);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900, "a short-lived access token");
        let access = body["access_token"].as_str().expect("access").to_owned();
        let me = self.get("/api/me", Some(&access)).await.ok(StatusCode::OK);
        Account {
            id: me["id"].as_str().expect("id").to_owned(),
            access,
            refresh: body["refresh_token"].as_str().expect("refresh").to_owned(),
        }
    }

    async fn create_team(&self, token: &str, name: &str) -> String {
        let body = self
            .post("/api/teams", Some(token), json!({"name": name}))
            .await
            .ok(StatusCode::CREATED);
        assert_eq!(body["name"], name);
        body["id"].as_str().expect("team id").to_owned()
    }

    async fn activate(&self, token: &str, user: &str, body: Value) -> Reply {
        self.post(&format!("/api/users/{user}/activate"), Some(token), body)
            .await
    }

    async fn deactivate(&self, token: &str, user: &str) -> Reply {
        self.send(
            Method::POST,
            &format!("/api/users/{user}/deactivate"),
            Some(token),
            None,
        )
        .await
    }

    /// Signs up in `org`, is activated by `admin` with `activation`, logs in.
    async fn member(
        &self,
        org: &str,
        admin: &Account,
        address: &str,
        activation: Value,
    ) -> Account {
        let id = self.signup(org, address).await;
        self.activate(&admin.access, &id, activation)
            .await
            .ok(StatusCode::OK);
        self.login(address).await
    }

    async fn invite(&self, token: &str, body: Value) -> Reply {
        self.post("/api/invites", Some(token), body).await
    }

    fn mails(&self) -> Vec<Mail> {
        self.outbox.sent()
    }

    /// The accept link of the last mail sent to `address`.
    fn last_link_to(&self, address: &str) -> (String, String) {
        let to = email(address);
        let mail = self
            .mails()
            .into_iter()
            .rev()
            .find(|m| m.to == to)
            .unwrap_or_else(|| panic!("no mail to {address}"));
        link_in(&mail)
    }

    async fn accept(&self, token: &str, name: Option<&str>, password: &str) -> Reply {
        let mut body = json!({"token": token, "password": password});
        if let Some(n) = name {
            body["name"] = json!(n);
        }
        self.post("/api/invites/accept", None, body).await
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Organizations and accounts
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_organization_is_created_with_a_signed_in_admin() {
    let t = spawn_app();
    let reply = t.create_org_reply("lab", false, "Ada@Example.org").await;
    let body = reply.ok(StatusCode::CREATED);
    assert_eq!(
        body["organization"],
        json!({"id": "lab", "name": "lab Laboratory", "auto_activate": false})
    );
    let admin = &body["admin"];
    assert_eq!(
        admin["email"], "ada@example.org",
        "addresses are lower-cased"
    );
    assert_eq!(admin["active"], true);
    assert_eq!(admin["role"], "admin");
    assert_eq!(admin["organization"], "lab");
    assert_eq!(admin["teams"], json!({}));
    assert!(admin.get("password_hash").is_none(), "{admin}");
    assert!(
        !reply.text().contains("argon2"),
        "no hash in {}",
        reply.text()
    );
    let stored = t.stored_user(admin["id"].as_str().expect("id")).await;
    assert!(
        stored.password_hash.starts_with("$argon2id$"),
        "argon2id: {}",
        stored.password_hash
    );
    assert_eq!(body["tokens"]["token_type"], "Bearer");
    let access = body["tokens"]["access_token"].as_str().expect("access");
    let me = t.get("/api/me", Some(access)).await.ok(StatusCode::OK);
    assert_eq!(me, *admin);
    // The refresh token of the creation works too.
    let refresh = body["tokens"]["refresh_token"].as_str().expect("refresh");
    t.post("/api/auth/refresh", None, json!({"refresh_token": refresh}))
        .await
        .ok(StatusCode::OK);
    // And the admin can log in.
    t.login("ADA@example.ORG").await;
}

#[tokio::test]
async fn organization_ids_and_email_addresses_are_unique() {
    let t = spawn_app();
    t.create_org("lab", false, "ada@example.org").await;
    let before = t.snapshot("lab").await;

    // The same id again, with another admin: 409, and the first organization is untouched.
    t.create_org_reply("lab", true, "bob@example.org")
        .await
        .problem_about(StatusCode::CONFLICT, "organization");
    assert_eq!(t.snapshot("lab").await, before);
    let org = t.services.directory.org(&org_id("lab")).await.expect("org");
    assert!(!org.auto_activate, "the first organization's settings stay");
    assert!(matches!(
        t.services
            .directory
            .user_by_email(&email("bob@example.org"))
            .await,
        Err(CatalogError::NotFound)
    ));

    // The same address in another case, in another organization: 409, nothing created.
    t.create_org_reply("rival", false, "ADA@EXAMPLE.ORG")
        .await
        .problem_about(StatusCode::CONFLICT, "e-mail");
    assert!(matches!(
        t.services.directory.org(&org_id("rival")).await,
        Err(CatalogError::NotFound)
    ));
    t.create_org("rival", true, "rita@example.org").await;
    t.signup_reply("rival", "Ada@Example.Org", PASSWORD)
        .await
        .problem_about(StatusCode::CONFLICT, "e-mail");
    t.signup_reply("lab", "ada@example.org", PASSWORD)
        .await
        .problem(StatusCode::CONFLICT);
    assert_eq!(t.snapshot("lab").await, before);
    assert_eq!(t.snapshot("rival").await.users.len(), 1);

    // An id that is not a slug.
    t.create_org_reply("Not A Slug", false, "carl@example.org")
        .await
        .problem_about(StatusCode::BAD_REQUEST, "organization id");
}

#[tokio::test]
async fn weak_passwords_and_bad_addresses_are_refused_and_change_nothing() {
    let t = spawn_app();
    let weak = [
        ("short1!", "at least 10"),
        ("Password123", "common"),
        ("1q2w3e4r5t", "common"),
        ("aaaaaaaaaaaaaaa", "different characters"),
        ("my marie.curie@radium.fr pw", "e-mail"),
        ("xxmarie.curiexx", "e-mail"),
    ];
    for (password, why) in weak {
        let reply = t
            .post(
                "/api/organizations",
                None,
                json!({"id": "radium", "name": "Radium", "admin":
                    {"email": "marie.curie@radium.fr", "password": password, "name": "Marie"}}),
            )
            .await;
        let status =
            reply.problem_among(&[StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY]);
        let detail = reply.problem_about(status, "password");
        assert!(
            detail.contains(why),
            "{password:?}: {detail:?} should say {why:?}"
        );
        assert!(
            !detail.contains(password),
            "the password is echoed: {detail}"
        );
    }
    for bad in [
        "not-an-address",
        "marie@",
        "@radium.fr",
        "marie curie@radium.fr",
        "marie@radium",
    ] {
        t.post(
            "/api/organizations",
            None,
            json!({"id": "radium", "name": "Radium", "admin":
                {"email": bad, "password": PASSWORD, "name": "Marie"}}),
        )
        .await
        .problem_about(StatusCode::BAD_REQUEST, "e-mail");
    }
    // None of that created the organization or an account.
    assert!(matches!(
        t.services.directory.org(&org_id("radium")).await,
        Err(CatalogError::NotFound)
    ));
    assert!(t.snapshot("radium").await.users.is_empty());

    // The same policy on sign-up.
    t.create_org("radium", true, "marie.curie@radium.fr").await;
    let before = t.snapshot("radium").await;
    t.signup_reply("radium", "pierre@radium.fr", "short")
        .await
        .problem_about(StatusCode::BAD_REQUEST, "password");
    t.signup_reply("radium", "pierre@radium.fr", "pierre@radium.fr!!")
        .await
        .problem_about(StatusCode::BAD_REQUEST, "password");
    t.signup_reply("radium", "pierre at radium.fr", PASSWORD)
        .await
        .problem_about(StatusCode::BAD_REQUEST, "e-mail");
    // Malformed requests.
    t.post(
        "/api/auth/signup",
        None,
        json!({"organization": "radium", "email": "p@radium.fr"}),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    t.post(
        "/api/auth/signup",
        None,
        json!({"organization": "radium", "email": "p@radium.fr", "password": PASSWORD,
            "name": "P", "role": "admin"}),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    let raw = Request::post("/api/auth/signup")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"organization\": "))
        .expect("request");
    send_request(t.app.clone(), raw)
        .await
        .problem(StatusCode::BAD_REQUEST);
    let untyped = Request::post("/api/auth/signup")
        .body(Body::from("{}"))
        .expect("request");
    send_request(t.app.clone(), untyped)
        .await
        .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    t.signup_reply("no-such-org", "pierre@radium.fr", PASSWORD)
        .await
        .problem_about(StatusCode::NOT_FOUND, "organization");
    assert_eq!(t.snapshot("radium").await, before);
}

// ---------------------------------------------------------------------------------------------
// 2. Activation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn self_signed_up_users_wait_for_activation_with_teams_and_role() {
    let t = spawn_app();
    let admin = t.create_org("lab", false, "ada@example.org").await;
    let imaging = t.create_team(&admin.access, "Imaging").await;
    let tracing = t.create_team(&admin.access, "Tracing").await;

    let reply = t.signup_reply("lab", "Grace@Example.org", PASSWORD).await;
    let user = reply.ok(StatusCode::CREATED);
    assert_eq!(user["active"], false);
    assert_eq!(user["role"], "user");
    assert_eq!(user["email"], "grace@example.org");
    let grace = user["id"].as_str().expect("id").to_owned();

    t.login_reply("grace@example.org", PASSWORD)
        .await
        .problem_about(StatusCode::FORBIDDEN, "not activated");

    let pending = t
        .get("/api/users?status=inactive", Some(&admin.access))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&pending), set(&[&grace]));
    let active = t
        .get("/api/users?status=active", Some(&admin.access))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&active), set(&[&admin.id]));

    // One call: active, in two teams (one as manager), dataset manager.
    let activated = t
        .activate(
            &admin.access,
            &grace,
            json!({"role": "dataset_manager", "teams": {&imaging: "member", &tracing: "manager"}}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(activated["active"], true);
    assert_eq!(activated["role"], "dataset_manager");
    assert_eq!(
        activated["teams"],
        json!({&imaging: "member", &tracing: "manager"})
    );

    let account = t.login("grace@example.org").await;
    let me = t
        .get("/api/me", Some(&account.access))
        .await
        .ok(StatusCode::OK);
    assert_eq!(me, activated);
    let pending = t
        .get("/api/users?status=inactive", Some(&admin.access))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&pending), BTreeSet::new());
    let in_tracing = t
        .get(&format!("/api/users?team={tracing}"), Some(&admin.access))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&in_tracing), set(&[&grace]));
    t.get("/api/users?status=sleeping", Some(&admin.access))
        .await
        .problem(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_auto_activating_organization_activates_at_once() {
    let t = spawn_app();
    t.create_org("open-lab", true, "ada@example.org").await;
    let user = t
        .signup_reply("open-lab", "grace@example.org", PASSWORD)
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(user["active"], true);
    assert_eq!(user["role"], "user", "sign-up never grants more than user");
    let account = t.login("grace@example.org").await;
    assert_eq!(account.id, user["id"].as_str().expect("id"));
}

// ---------------------------------------------------------------------------------------------
// 3. Login, sessions, deactivation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn failed_logins_look_alike_and_lock_the_account() {
    let t = spawn_app();
    t.create_org("lab", true, "ada@example.org").await;
    t.signup("lab", "grace@example.org").await;

    let wrong = t
        .login_reply("grace@example.org", "not the password at all")
        .await;
    let wrong_detail = wrong.problem(StatusCode::UNAUTHORIZED);
    let unknown = t.login_reply("nobody@example.org", PASSWORD).await;
    let unknown_detail = unknown.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_detail, unknown_detail, "no account enumeration");
    assert_eq!(wrong.json(), unknown.json());
    t.login_reply("not an address", PASSWORD)
        .await
        .problem(StatusCode::UNAUTHORIZED);

    // Four more wrong passwords (five in all), then even the right one is refused for a while.
    for _ in 0..4 {
        t.login_reply("grace@example.org", "still not the password")
            .await
            .problem(StatusCode::UNAUTHORIZED);
    }
    let locked = t.login_reply("grace@example.org", PASSWORD).await;
    locked.problem(StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = locked
        .header(header::RETRY_AFTER)
        .parse()
        .expect("Retry-After in seconds");
    assert!((60..=15 * 60).contains(&retry), "Retry-After {retry}");
    let stored = t
        .services
        .directory
        .user_by_email(&email("grace@example.org"))
        .await
        .expect("grace");
    assert!(stored.locked_until.is_some_and(|u| u > now()));
    // Another account is not affected.
    t.login("ada@example.org").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_tokens_rotate_once_and_logout_ends_them() {
    let t = spawn_app();
    t.create_org("lab", true, "ada@example.org").await;
    t.signup("lab", "grace@example.org").await;
    let first = t.login("grace@example.org").await;

    let rotated = t
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": first.refresh}),
        )
        .await
        .ok(StatusCode::OK);
    let second_refresh = rotated["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let second_access = rotated["access_token"].as_str().expect("access").to_owned();
    assert_ne!(second_refresh, first.refresh);
    t.get("/api/me", Some(&second_access))
        .await
        .ok(StatusCode::OK);
    // The old refresh token is spent.
    t.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": first.refresh}),
    )
    .await
    .problem(StatusCode::UNAUTHORIZED);
    // The new one works once.
    let third = t
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": second_refresh}),
        )
        .await
        .ok(StatusCode::OK);
    let third_refresh = third["refresh_token"].as_str().expect("refresh").to_owned();

    // Two concurrent refreshes with one token: exactly one wins.
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let app = t.app.clone();
            let token = third_refresh.clone();
            tokio::spawn(async move {
                call(
                    app,
                    Method::POST,
                    "/api/auth/refresh",
                    None,
                    Some(json!({"refresh_token": token})),
                )
                .await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("task"));
    }
    let winners: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    assert_eq!(winners.len(), 1, "{replies:?}");
    for loser in replies.iter().filter(|r| r.status != StatusCode::OK) {
        loser.problem(StatusCode::UNAUTHORIZED);
    }
    let survivor = winners[0].json()["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();

    // Logout ends that session; logging out twice is harmless.
    let out = t
        .post("/api/auth/logout", None, json!({"refresh_token": survivor}))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text());
    t.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": survivor}),
    )
    .await
    .problem(StatusCode::UNAUTHORIZED);
    let again = t
        .post("/api/auth/logout", None, json!({"refresh_token": survivor}))
        .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    // Garbage is simply not a session.
    t.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": "garbage"}),
    )
    .await
    .problem(StatusCode::UNAUTHORIZED);
    t.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": LinkToken::generate().expose()}),
    )
    .await
    .problem(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tampered_forged_and_missing_access_tokens_are_refused() {
    let t = spawn_app();
    t.create_org("lab", true, "ada@example.org").await;
    t.signup("lab", "grace@example.org").await;
    t.signup("lab", "alan@example.org").await;
    let grace = t.login("grace@example.org").await;
    let alan = t.login("alan@example.org").await;

    let parts: Vec<&str> = grace.access.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT");
    // Grace's header and signature over Alan's claims.
    let alan_claims = alan.access.split('.').nth(1).expect("payload");
    let swapped = format!("{}.{}.{}", parts[0], alan_claims, parts[2]);
    // A changed character inside the signature.
    let mut sig: Vec<char> = parts[2].chars().collect();
    sig[5] = if sig[5] == 'A' { 'B' } else { 'A' };
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        sig.iter().collect::<String>()
    );
    // Valid claims signed with another key.
    let user_id = shared::domain::UserId::parse(&grace.id).expect("id");
    let forged = TokenIssuer::new(&[7u8; 32], std::time::Duration::from_secs(900))
        .issue(&user_id, &org_id("lab"), 0)
        .expect("forged");
    for bad in [
        swapped.as_str(),
        flipped.as_str(),
        forged.as_str(),
        "a.b.c",
        "garbage",
    ] {
        t.get("/api/me", Some(bad))
            .await
            .problem(StatusCode::UNAUTHORIZED);
    }
    t.get("/api/me", None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    let basic = Request::get("/api/me")
        .header(header::AUTHORIZATION, "Basic Z3JhY2U6cGFzc3dvcmQ=")
        .body(Body::empty())
        .expect("request");
    send_request(t.app.clone(), basic)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    // The genuine token still works.
    let me = t
        .get("/api/me", Some(&grace.access))
        .await
        .ok(StatusCode::OK);
    assert_eq!(me["id"], grace.id.as_str());
}

#[tokio::test]
async fn deactivation_ends_access_at_once_and_reactivation_restores_it() {
    let t = spawn_app();
    let admin = t.create_org("lab", true, "ada@example.org").await;
    let grace_id = t.signup("lab", "grace@example.org").await;
    let grace = t.login("grace@example.org").await;
    let second_session = t.login("grace@example.org").await;

    let off = t
        .deactivate(&admin.access, &grace_id)
        .await
        .ok(StatusCode::OK);
    assert_eq!(off["active"], false);
    // The access token and both refresh tokens fail at once.
    t.get("/api/me", Some(&grace.access))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    t.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": grace.refresh}),
    )
    .await
    .problem(StatusCode::UNAUTHORIZED);
    t.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": second_session.refresh}),
    )
    .await
    .problem(StatusCode::UNAUTHORIZED);
    t.login_reply("grace@example.org", PASSWORD)
        .await
        .problem(StatusCode::FORBIDDEN);
    // Deactivating twice is harmless.
    t.deactivate(&admin.access, &grace_id)
        .await
        .ok(StatusCode::OK);

    // Never deleted: still listed, as inactive.
    let all = t
        .get("/api/users", Some(&admin.access))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&all), set(&[&admin.id, &grace_id]));
    let inactive = t
        .get("/api/users?status=inactive", Some(&admin.access))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&inactive), set(&[&grace_id]));
    // There is no way to delete a user.
    let delete = t
        .send(
            Method::DELETE,
            &format!("/api/users/{grace_id}"),
            Some(&admin.access),
            None,
        )
        .await;
    delete.problem_among(&[StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED]);
    assert!(!t.stored_user(&grace_id).await.active);

    // Reactivation: a new login works; the tokens from before stay dead.
    let on = t
        .activate(&admin.access, &grace_id, json!({}))
        .await
        .ok(StatusCode::OK);
    assert_eq!(on["active"], true);
    let again = t.login("grace@example.org").await;
    t.get("/api/me", Some(&again.access))
        .await
        .ok(StatusCode::OK);
    t.get("/api/me", Some(&grace.access))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    t.post(
        "/api/auth/refresh",
        None,
        json!({"refresh_token": second_session.refresh}),
    )
    .await
    .problem(StatusCode::UNAUTHORIZED);

    // Unknown and malformed user ids.
    let before = t.snapshot("lab").await;
    let unknown = shared::domain::UserId::generate();
    t.deactivate(&admin.access, unknown.as_str())
        .await
        .problem_about(StatusCode::NOT_FOUND, "user");
    t.activate(&admin.access, "not-an-id", json!({}))
        .await
        .problem(StatusCode::NOT_FOUND);
    assert_eq!(t.snapshot("lab").await, before);

    // A deactivated admin can do nothing either.
    let other_admin = t
        .member("lab", &admin, "alan@example.org", json!({"role": "admin"}))
        .await;
    t.deactivate(&admin.access, &other_admin.id)
        .await
        .ok(StatusCode::OK);
    t.get("/api/users", Some(&other_admin.access))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    let admin_before = t.stored_user(&admin.id).await;
    t.deactivate(&other_admin.access, &admin.id)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    assert_eq!(t.stored_user(&admin.id).await, admin_before);
}

// ---------------------------------------------------------------------------------------------
// 4. Teams and roles
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn team_names_are_unique_per_organization_ignoring_case() {
    let t = spawn_app();
    let admin = t.create_org("lab", true, "ada@example.org").await;
    let rival = t.create_org("rival", true, "rita@example.org").await;
    let imaging = t.create_team(&admin.access, "Imaging").await;
    let before = t.snapshot("lab").await;
    t.post(
        "/api/teams",
        Some(&admin.access),
        json!({"name": "IMAGING"}),
    )
    .await
    .problem_about(StatusCode::CONFLICT, "team");
    t.post("/api/teams", Some(&admin.access), json!({"name": "   "}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    t.post("/api/teams", Some(&admin.access), json!({"name": 7}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    t.post("/api/teams", None, json!({"name": "Anon"}))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    t.signup("lab", "grace@example.org").await;
    let grace = t.login("grace@example.org").await;
    t.post("/api/teams", Some(&grace.access), json!({"name": "Mine"}))
        .await
        .problem(StatusCode::FORBIDDEN);
    let mut after = t.snapshot("lab").await;
    after.users.retain(|u| u.id.as_str() != grace.id);
    assert_eq!(after, before);

    // Another organization may use the name; each sees only its own teams.
    let theirs = t.create_team(&rival.access, "imaging").await;
    let ours = t
        .get("/api/teams", Some(&admin.access))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ours, json!([{"id": imaging, "name": "Imaging"}]));
    let listed = t
        .get("/api/teams", Some(&rival.access))
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed, json!([{"id": theirs, "name": "imaging"}]));
}

#[tokio::test]
async fn bulk_edit_sets_teams_and_role_of_several_users_in_one_call() {
    let t = spawn_app();
    let admin = t.create_org("lab", true, "ada@example.org").await;
    let imaging = t.create_team(&admin.access, "Imaging").await;
    let tracing = t.create_team(&admin.access, "Tracing").await;
    let mut users = Vec::new();
    for who in ["u1@example.org", "u2@example.org", "u3@example.org"] {
        users.push(t.signup("lab", who).await);
    }

    let edited = t
        .post(
            "/api/users/bulk",
            Some(&admin.access),
            json!({"user_ids": users, "add_teams": {&imaging: "member", &tracing: "manager"},
                "role": "dataset_manager"}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        ids_of(&edited),
        users
            .iter()
            .map(String::as_str)
            .map(str::to_owned)
            .collect()
    );
    for id in &users {
        let u = t.stored_user(id).await;
        assert_eq!(u.role, OrgRole::DatasetManager, "{id}");
        let teams: BTreeMap<String, String> = u
            .teams
            .iter()
            .map(|(t, r)| (t.as_str().to_owned(), format!("{r:?}").to_lowercase()))
            .collect();
        assert_eq!(
            teams,
            BTreeMap::from([
                (imaging.clone(), "member".to_owned()),
                (tracing.clone(), "manager".to_owned())
            ]),
            "{id}"
        );
    }
    // Team filter, and a removal plus a role change for one of them.
    t.post(
        "/api/users/bulk",
        Some(&admin.access),
        json!({"user_ids": [&users[0]], "remove_teams": [&tracing], "role": "user"}),
    )
    .await
    .ok(StatusCode::OK);
    let in_tracing = t
        .get(&format!("/api/users?team={tracing}"), Some(&admin.access))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&in_tracing), set(&[&users[1], &users[2]]));
    assert_eq!(t.stored_user(&users[0]).await.role, OrgRole::User);

    // Everything is checked before anything changes.
    let before = t.snapshot("lab").await;
    let unknown_user = shared::domain::UserId::generate();
    t.post(
        "/api/users/bulk",
        Some(&admin.access),
        json!({"user_ids": [&users[0], unknown_user.as_str()], "add_teams": {&tracing: "member"}}),
    )
    .await
    .problem_about(StatusCode::NOT_FOUND, "user");
    let unknown_team = shared::domain::TeamId::generate();
    t.post(
        "/api/users/bulk",
        Some(&admin.access),
        json!({"user_ids": [&users[0]], "add_teams": {unknown_team.as_str(): "member"}}),
    )
    .await
    .problem_about(StatusCode::NOT_FOUND, "team");
    t.post(
        "/api/users/bulk",
        Some(&admin.access),
        json!({"user_ids": [&users[0]], "add_teams": {&tracing: "owner"}}),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    t.post(
        "/api/users/bulk",
        Some(&admin.access),
        json!({"user_ids": ["nope"], "role": "admin"}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    t.post(
        "/api/users/bulk",
        Some(&admin.access),
        json!({"user_ids": []}),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(t.snapshot("lab").await, before);
}

/// An organization with an admin, teams A and B, a manager of A, a member of A, a member of B
/// and two people waiting for activation.
struct TeamsFixture {
    t: TestApp,
    admin: Account,
    team_a: String,
    team_b: String,
    manager: Account,
    member_a: Account,
    member_b: Account,
    pending_1: String,
    pending_2: String,
}

async fn teams_fixture() -> TeamsFixture {
    let t = spawn_app();
    let admin = t.create_org("lab", false, "ada@example.org").await;
    let team_a = t.create_team(&admin.access, "Team A").await;
    let team_b = t.create_team(&admin.access, "Team B").await;
    let manager = t
        .member(
            "lab",
            &admin,
            "manager@example.org",
            json!({"teams": {&team_a: "manager"}}),
        )
        .await;
    let member_a = t
        .member(
            "lab",
            &admin,
            "amy@example.org",
            json!({"teams": {&team_a: "member"}}),
        )
        .await;
    let member_b = t
        .member(
            "lab",
            &admin,
            "bob@example.org",
            json!({"teams": {&team_b: "member"}}),
        )
        .await;
    let pending_1 = t.signup("lab", "pat@example.org").await;
    let pending_2 = t.signup("lab", "quinn@example.org").await;
    TeamsFixture {
        t,
        admin,
        team_a,
        team_b,
        manager,
        member_a,
        member_b,
        pending_1,
        pending_2,
    }
}

#[tokio::test]
async fn team_managers_manage_only_their_own_teams() {
    let f = teams_fixture().await;
    let t = &f.t;
    let m = &f.manager.access;

    // They see their team's members and the unassigned — not the admin, not team B.
    let visible = t.get("/api/users", Some(m)).await.ok(StatusCode::OK);
    assert_eq!(
        ids_of(&visible),
        set(&[&f.manager.id, &f.member_a.id, &f.pending_1, &f.pending_2])
    );
    let waiting = t
        .get("/api/users?status=inactive", Some(m))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&waiting), set(&[&f.pending_1, &f.pending_2]));

    // Activate a pending user into their own team.
    let pat = t
        .activate(m, &f.pending_1, json!({"teams": {&f.team_a: "member"}}))
        .await
        .ok(StatusCode::OK);
    assert_eq!(pat["active"], true);
    assert_eq!(pat["teams"], json!({&f.team_a: "member"}));
    t.login("pat@example.org").await;

    let before = t.snapshot("lab").await;
    // Not into another team, not with a role, not both teams at once.
    t.activate(m, &f.pending_2, json!({"teams": {&f.team_b: "member"}}))
        .await
        .problem(StatusCode::FORBIDDEN);
    t.activate(
        m,
        &f.pending_2,
        json!({"teams": {&f.team_a: "member", &f.team_b: "member"}}),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    t.activate(
        m,
        &f.pending_2,
        json!({"teams": {&f.team_a: "member"}, "role": "dataset_manager"}),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    // No role changes in bulk either, and no moving people into team B.
    t.post(
        "/api/users/bulk",
        Some(m),
        json!({"user_ids": [&f.member_a.id], "role": "admin"}),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    t.post(
        "/api/users/bulk",
        Some(m),
        json!({"user_ids": [&f.member_a.id], "add_teams": {&f.team_b: "member"}}),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    t.post(
        "/api/users/bulk",
        Some(m),
        json!({"user_ids": [&f.member_a.id, &f.member_b.id], "add_teams": {&f.team_a: "manager"}}),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    // Not the admin, not team B's member, not themselves.
    t.deactivate(m, &f.admin.id)
        .await
        .problem(StatusCode::FORBIDDEN);
    t.deactivate(m, &f.member_b.id)
        .await
        .problem(StatusCode::FORBIDDEN);
    t.deactivate(m, &f.manager.id)
        .await
        .problem(StatusCode::FORBIDDEN);
    assert_eq!(t.snapshot("lab").await, before);
    t.get("/api/me", Some(&f.admin.access))
        .await
        .ok(StatusCode::OK);
    t.get("/api/me", Some(&f.member_b.access))
        .await
        .ok(StatusCode::OK);

    // Their own team's member they can deactivate and reactivate, and promote within the team.
    t.deactivate(m, &f.member_a.id).await.ok(StatusCode::OK);
    t.get("/api/me", Some(&f.member_a.access))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    t.activate(m, &f.member_a.id, json!({}))
        .await
        .ok(StatusCode::OK);
    let promoted = t
        .post(
            "/api/users/bulk",
            Some(m),
            json!({"user_ids": [&f.member_a.id], "add_teams": {&f.team_a: "manager"}}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(promoted[0]["teams"], json!({&f.team_a: "manager"}));
    assert_eq!(promoted[0]["role"], "user");
}

#[tokio::test]
async fn plain_users_and_dataset_managers_cannot_administer_people() {
    let f = teams_fixture().await;
    let t = &f.t;
    let dm = t
        .member(
            "lab",
            &f.admin,
            "dm@example.org",
            json!({"role": "dataset_manager"}),
        )
        .await;
    let before = t.snapshot("lab").await;
    for who in [&f.member_a, &dm] {
        let a = &who.access;
        t.get("/api/users", Some(a))
            .await
            .problem(StatusCode::FORBIDDEN);
        t.activate(a, &f.pending_1, json!({}))
            .await
            .problem(StatusCode::FORBIDDEN);
        t.deactivate(a, &f.member_b.id)
            .await
            .problem(StatusCode::FORBIDDEN);
        t.post(
            "/api/users/bulk",
            Some(a),
            json!({"user_ids": [&f.pending_1], "add_teams": {&f.team_a: "member"}}),
        )
        .await
        .problem(StatusCode::FORBIDDEN);
        t.invite(a, json!({"emails": ["x@example.org"]}))
            .await
            .problem(StatusCode::FORBIDDEN);
        // Their own record they can see.
        let me = t.get("/api/me", Some(a)).await.ok(StatusCode::OK);
        assert_eq!(me["id"], who.id.as_str());
    }
    t.get("/api/users", None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    assert_eq!(t.snapshot("lab").await, before);
    assert!(t.mails().is_empty());
}

#[tokio::test]
async fn another_organizations_admin_never_reaches_our_users() {
    let f = teams_fixture().await;
    let t = &f.t;
    let rival = t.create_org("rival", true, "rita@example.org").await;
    let r = &rival.access;
    let before = t.snapshot("lab").await;

    let listed = t.get("/api/users", Some(r)).await.ok(StatusCode::OK);
    assert_eq!(ids_of(&listed), set(&[&rival.id]));
    let listed = t
        .get(&format!("/api/users?team={}", f.team_a), Some(r))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&listed), BTreeSet::new());
    let teams = t.get("/api/teams", Some(r)).await.ok(StatusCode::OK);
    assert_eq!(teams, json!([]));

    for target in [&f.pending_1, &f.member_a.id, &f.admin.id] {
        t.activate(r, target, json!({}))
            .await
            .problem_about(StatusCode::NOT_FOUND, "user");
        t.deactivate(r, target)
            .await
            .problem_about(StatusCode::NOT_FOUND, "user");
    }
    t.post(
        "/api/users/bulk",
        Some(r),
        json!({"user_ids": [&f.member_a.id], "role": "user"}),
    )
    .await
    .problem_among(&[StatusCode::NOT_FOUND, StatusCode::FORBIDDEN]);
    t.post(
        "/api/users/experience",
        Some(r),
        json!({"user_ids": [&f.member_a.id], "set": {"nuclei": 1}}),
    )
    .await
    .problem_among(&[StatusCode::NOT_FOUND, StatusCode::FORBIDDEN]);
    // Nor into our teams, from either side.
    t.activate(r, &rival.id, json!({"teams": {&f.team_a: "member"}}))
        .await
        .problem_about(StatusCode::NOT_FOUND, "team");
    t.invite(
        r,
        json!({"emails": ["spy@example.org"], "teams": {&f.team_a: "member"}}),
    )
    .await
    .problem_about(StatusCode::NOT_FOUND, "team");
    assert_eq!(t.snapshot("lab").await, before);
    assert!(t.mails().is_empty());
    // Our admin does not reach theirs either.
    t.deactivate(&f.admin.access, &rival.id)
        .await
        .problem(StatusCode::NOT_FOUND);
    t.get("/api/me", Some(r)).await.ok(StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// 5. Experience levels
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn experience_levels_are_set_removed_and_queried_in_bulk() {
    let t = spawn_app();
    let admin = t.create_org("lab", true, "ada@example.org").await;
    let u1 = t.signup("lab", "u1@example.org").await;
    let u2 = t.signup("lab", "u2@example.org").await;
    let u3 = t.signup("lab", "u3@example.org").await;
    let a = &admin.access;

    let set_ten = t
        .post(
            "/api/users/experience",
            Some(a),
            json!({"user_ids": [&u1, &u2], "set": {"nuclei": 10, "Axons": 4}}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&set_ten), set(&[&u1, &u2]));
    t.post(
        "/api/users/experience",
        Some(a),
        json!({"user_ids": [&u3], "set": {"nuclei": 3}}),
    )
    .await
    .ok(StatusCode::OK);
    // Removal in bulk.
    let removed = t
        .post(
            "/api/users/experience",
            Some(a),
            json!({"user_ids": [&u2], "remove": ["axons"]}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(removed[0]["experience"], json!({"nuclei": 10}));
    assert_eq!(
        t.stored_user(&u1).await.experience,
        BTreeMap::from([("axons".to_owned(), 4), ("nuclei".to_owned(), 10)]),
        "domain names are case-insensitive, created by naming them"
    );

    let query = |q: &str| format!("/api/users?experience={q}");
    let at_least_5 = t
        .get(&query("nuclei%3E%3D5"), Some(a))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&at_least_5), set(&[&u1, &u2]));
    let below_5 = t
        .get(&query("nuclei%3C5"), Some(a))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&below_5), set(&[&u3]));
    let exactly_3 = t
        .get(&query("nuclei%3D3"), Some(a))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&exactly_3), set(&[&u3]));
    let axons = t
        .get(&query("AXONS%3E%3D1"), Some(a))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&axons), set(&[&u1]));
    let nobody = t
        .get(&query("synapses%3E%3D0"), Some(a))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&nobody), BTreeSet::new());
    t.get(&query("nuclei~5"), Some(a))
        .await
        .problem(StatusCode::BAD_REQUEST);
    t.get(&query("nuclei%3E%3Dmany"), Some(a))
        .await
        .problem(StatusCode::BAD_REQUEST);
    t.get(&query("nu%20clei!%3E%3D5"), Some(a))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);

    // Bad input changes nothing.
    let before = t.snapshot("lab").await;
    t.post(
        "/api/users/experience",
        Some(a),
        json!({"user_ids": [&u1], "set": {"nu clei!": 5}}),
    )
    .await
    .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "experience domain");
    t.post(
        "/api/users/experience",
        Some(a),
        json!({"user_ids": [&u1], "set": {"nuclei": 1}, "remove": [""]}),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    t.post(
        "/api/users/experience",
        Some(a),
        json!({"user_ids": [&u1], "set": {"nuclei": "ten"}}),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = shared::domain::UserId::generate();
    t.post(
        "/api/users/experience",
        Some(a),
        json!({"user_ids": [&u1, unknown.as_str()], "set": {"nuclei": 1}}),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    assert_eq!(t.snapshot("lab").await, before);

    // Only admins edit experience — not a dataset manager, not a team manager.
    let team = t.create_team(a, "Nuclei").await;
    t.post(
        "/api/users/bulk",
        Some(a),
        json!({"user_ids": [&u1], "role": "dataset_manager"}),
    )
    .await
    .ok(StatusCode::OK);
    t.post(
        "/api/users/bulk",
        Some(a),
        json!({"user_ids": [&u2], "add_teams": {&team: "manager"}}),
    )
    .await
    .ok(StatusCode::OK);
    t.post(
        "/api/users/bulk",
        Some(a),
        json!({"user_ids": [&u3], "add_teams": {&team: "member"}}),
    )
    .await
    .ok(StatusCode::OK);
    let before = t.snapshot("lab").await;
    for who in ["u1@example.org", "u2@example.org", "u3@example.org"] {
        let acc = t.login(who).await;
        t.post(
            "/api/users/experience",
            Some(&acc.access),
            json!({"user_ids": [&u3], "set": {"nuclei": 99}}),
        )
        .await
        .problem(StatusCode::FORBIDDEN);
    }
    t.post(
        "/api/users/experience",
        None,
        json!({"user_ids": [&u3], "set": {"nuclei": 99}}),
    )
    .await
    .problem(StatusCode::UNAUTHORIZED);
    assert_eq!(t.snapshot("lab").await, before);
    assert_eq!(t.stored_user(&u3).await.experience["nuclei"], 3);
}

// ---------------------------------------------------------------------------------------------
// 6. Invitations
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invitations_are_mailed_and_a_new_person_joins_activated_in_the_teams() {
    let t = spawn_app();
    let admin = t.create_org("lab", false, "ada@example.org").await;
    let imaging = t.create_team(&admin.access, "Imaging").await;
    let tracing = t.create_team(&admin.access, "Tracing").await;

    let created = t
        .invite(
            &admin.access,
            json!({"emails": ["newton@example.org", "Hopper@Example.org"],
                "teams": {&imaging: "member", &tracing: "manager"}, "role": "dataset_manager"}),
        )
        .await
        .ok(StatusCode::CREATED);
    let created = created.as_array().expect("list");
    assert_eq!(created.len(), 2);
    let addresses: BTreeSet<&str> = created
        .iter()
        .map(|i| i["email"].as_str().expect("email"))
        .collect();
    assert_eq!(
        addresses,
        BTreeSet::from(["newton@example.org", "hopper@example.org"])
    );
    for i in created {
        assert_eq!(i["state"], "pending");
        assert_eq!(i["role"], "dataset_manager");
        assert_eq!(i["teams"], json!({&imaging: "member", &tracing: "manager"}));
        assert_eq!(i["invited_by"], admin.id.as_str());
        assert_eq!(i["sent"], 1);
        let expires = time::OffsetDateTime::parse(
            i["expires_at"].as_str().expect("expiry"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("RFC 3339");
        let days = (expires - now()).whole_hours();
        assert!(
            (14 * 24 - 1..=14 * 24).contains(&days),
            "expires in {days} h"
        );
        assert!(!i.to_string().contains("token"), "no token in the API: {i}");
    }

    // Two mails, text and HTML, naming the inviter and the organization, with the link.
    let mails = t.mails();
    assert_eq!(mails.len(), 2);
    let mut tokens = BTreeSet::new();
    for mail in &mails {
        let (url, token) = link_in(mail);
        tokens.insert(token);
        for part in [&mail.text, &mail.html] {
            assert!(part.contains("Ada Admin"), "inviter missing: {part}");
            assert!(
                part.contains("ada@example.org"),
                "inviter address missing: {part}"
            );
            assert!(
                part.contains("lab Laboratory"),
                "organization missing: {part}"
            );
            assert!(part.contains(&url), "link missing: {part}");
        }
        assert!(
            mail.html.contains(&format!("href=\"{url}\"")),
            "{}",
            mail.html
        );
        assert!(mail.subject.contains("lab Laboratory"), "{}", mail.subject);
    }
    assert_eq!(tokens.len(), 2, "each address has its own link");
    let (url, token) = t.last_link_to("newton@example.org");

    // Following the link shows what the invitation offers.
    let info = t.get(path_of(&url), None).await.ok(StatusCode::OK);
    assert_eq!(info["organization"], "lab Laboratory");
    assert_eq!(info["email"], "newton@example.org");
    assert_eq!(info["role"], "dataset_manager");
    assert_eq!(
        info["teams"],
        json!({&imaging: "member", &tracing: "manager"})
    );
    assert_eq!(info["existing_account"], false);
    assert_eq!(info["accept_url"], format!("{BASE_URL}/api/invites/accept"));

    // Weak password or no name: refused, the invitation stays usable.
    let before = t.snapshot("lab").await;
    t.accept(&token, Some("Isaac Newton"), "short")
        .await
        .problem_about(StatusCode::BAD_REQUEST, "password");
    t.accept(&token, None, PASSWORD)
        .await
        .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "name");
    assert_eq!(t.snapshot("lab").await, before);

    // Accepting as a new person: active at once, in the teams, with the role, signed in.
    let accepted = t
        .accept(&token, Some("Isaac Newton"), PASSWORD)
        .await
        .ok(StatusCode::CREATED);
    let user = &accepted["user"];
    assert_eq!(user["email"], "newton@example.org");
    assert_eq!(user["name"], "Isaac Newton");
    assert_eq!(user["organization"], "lab");
    assert_eq!(user["active"], true);
    assert_eq!(user["role"], "dataset_manager");
    assert_eq!(
        user["teams"],
        json!({&imaging: "member", &tracing: "manager"})
    );
    let access = accepted["tokens"]["access_token"].as_str().expect("access");
    let me = t.get("/api/me", Some(access)).await.ok(StatusCode::OK);
    assert_eq!(me, *user);
    t.login("newton@example.org").await;

    // Single use.
    t.accept(&token, Some("Isaac Again"), PASSWORD)
        .await
        .problem(StatusCode::GONE);
    t.get(path_of(&url), None).await.problem(StatusCode::GONE);
    let listed = t
        .get("/api/invites", Some(&admin.access))
        .await
        .ok(StatusCode::OK);
    let states: BTreeMap<String, String> = listed
        .as_array()
        .expect("list")
        .iter()
        .map(|i| {
            (
                i["email"].as_str().expect("email").to_owned(),
                i["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("hopper@example.org".to_owned(), "pending".to_owned()),
            ("newton@example.org".to_owned(), "accepted".to_owned()),
        ])
    );

    // Unknown and malformed tokens.
    let stranger = LinkToken::generate();
    t.get(
        &format!("/api/invites/accept?token={}", stranger.expose()),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    t.accept("not-a-token", Some("X"), PASSWORD)
        .await
        .problem(StatusCode::NOT_FOUND);
    t.get("/api/invites/accept", None)
        .await
        .problem(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_existing_account_joins_through_an_invitation_with_its_password() {
    let t = spawn_app();
    let admin = t.create_org("lab", false, "ada@example.org").await;
    let imaging = t.create_team(&admin.access, "Imaging").await;
    let sam = t.signup("lab", "sam@example.org").await;
    t.login_reply("sam@example.org", PASSWORD)
        .await
        .problem(StatusCode::FORBIDDEN);

    t.invite(
        &admin.access,
        json!({"emails": ["SAM@example.org"], "teams": {&imaging: "manager"}}),
    )
    .await
    .ok(StatusCode::CREATED);
    let (url, token) = t.last_link_to("sam@example.org");
    let info = t.get(path_of(&url), None).await.ok(StatusCode::OK);
    assert_eq!(info["existing_account"], true);

    let before = t.snapshot("lab").await;
    t.accept(&token, None, "a wrong password here")
        .await
        .problem(StatusCode::UNAUTHORIZED);
    assert_eq!(
        t.snapshot("lab").await,
        before,
        "a wrong password changes nothing"
    );

    let joined = t.accept(&token, None, PASSWORD).await.ok(StatusCode::OK);
    assert_eq!(joined["user"]["id"], sam.as_str());
    assert_eq!(joined["user"]["active"], true);
    assert_eq!(joined["user"]["teams"], json!({&imaging: "manager"}));
    assert_eq!(joined["user"]["role"], "user");
    let access = joined["tokens"]["access_token"].as_str().expect("access");
    t.get("/api/me", Some(access)).await.ok(StatusCode::OK);
    t.login("sam@example.org").await;
    t.accept(&token, None, PASSWORD)
        .await
        .problem(StatusCode::GONE);
    assert_eq!(t.snapshot("lab").await.users.len(), 2, "no second account");

    // An address that has an account in another organization cannot join this one.
    t.create_org("rival", true, "rita@example.org").await;
    t.invite(&admin.access, json!({"emails": ["rita@example.org"]}))
        .await
        .ok(StatusCode::CREATED);
    let (_, rita_token) = t.last_link_to("rita@example.org");
    t.accept(&rita_token, None, PASSWORD)
        .await
        .problem_about(StatusCode::CONFLICT, "another organization");
    let rita = t
        .services
        .directory
        .user_by_email(&email("rita@example.org"))
        .await
        .expect("rita");
    assert_eq!(rita.org, org_id("rival"));
    assert_eq!(rita.role, OrgRole::Admin);
}

#[tokio::test]
async fn pending_invitations_can_be_revoked_and_resent() {
    let t = spawn_app();
    let admin = t.create_org("lab", false, "ada@example.org").await;
    let a = &admin.access;
    let created = t
        .invite(a, json!({"emails": ["x@example.org", "y@example.org"]}))
        .await
        .ok(StatusCode::CREATED);
    let id_of = |address: &str| {
        created
            .as_array()
            .expect("list")
            .iter()
            .find(|i| i["email"] == address)
            .and_then(|i| i["id"].as_str())
            .expect("invite id")
            .to_owned()
    };
    let (x, y) = (id_of("x@example.org"), id_of("y@example.org"));
    let (x_url, x_token) = t.last_link_to("x@example.org");
    let (y_old_url, y_old_token) = t.last_link_to("y@example.org");

    // Revoke: the link is dead.
    let revoked = t
        .send(Method::DELETE, &format!("/api/invites/{x}"), Some(a), None)
        .await
        .ok(StatusCode::OK);
    assert_eq!(revoked["state"], "revoked");
    t.get(path_of(&x_url), None)
        .await
        .problem_about(StatusCode::GONE, "revoked");
    t.accept(&x_token, Some("X"), PASSWORD)
        .await
        .problem(StatusCode::GONE);
    assert!(matches!(
        t.services
            .directory
            .user_by_email(&email("x@example.org"))
            .await,
        Err(CatalogError::NotFound)
    ));
    t.post(&format!("/api/invites/{x}/resend"), Some(a), json!({}))
        .await
        .problem(StatusCode::CONFLICT);

    // Resend: a new mail with a new link; the old link is dead, the new one works.
    let resent = t
        .send(
            Method::POST,
            &format!("/api/invites/{y}/resend"),
            Some(a),
            None,
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(resent["sent"], 2);
    assert_eq!(resent["state"], "pending");
    assert_eq!(t.mails().len(), 3);
    let (y_url, y_token) = t.last_link_to("y@example.org");
    assert_ne!(y_token, y_old_token);
    t.get(path_of(&y_old_url), None)
        .await
        .problem_among(&[StatusCode::NOT_FOUND, StatusCode::GONE]);
    t.accept(&y_old_token, Some("Y"), PASSWORD)
        .await
        .problem_among(&[StatusCode::NOT_FOUND, StatusCode::GONE]);
    t.get(path_of(&y_url), None).await.ok(StatusCode::OK);
    t.accept(&y_token, Some("Yvonne"), PASSWORD)
        .await
        .ok(StatusCode::CREATED);

    // An accepted invitation can be neither revoked nor resent.
    let before = t.snapshot("lab").await;
    t.send(Method::DELETE, &format!("/api/invites/{y}"), Some(a), None)
        .await
        .problem(StatusCode::CONFLICT);
    t.send(
        Method::POST,
        &format!("/api/invites/{y}/resend"),
        Some(a),
        None,
    )
    .await
    .problem(StatusCode::CONFLICT);
    let unknown = InviteId::generate();
    t.send(
        Method::DELETE,
        &format!("/api/invites/{unknown}"),
        Some(a),
        None,
    )
    .await
    .problem_about(StatusCode::NOT_FOUND, "invitation");
    t.send(Method::POST, "/api/invites/nonsense/resend", Some(a), None)
        .await
        .problem(StatusCode::NOT_FOUND);
    assert_eq!(t.snapshot("lab").await, before);
    assert_eq!(t.mails().len(), 3);
}

#[tokio::test]
async fn expired_invitations_cannot_be_accepted() {
    let t = spawn_app();
    let admin = t.create_org("lab", false, "ada@example.org").await;
    let token = LinkToken::generate();
    let created = now() - time::Duration::days(15);
    let invite = Invite {
        id: InviteId::generate(),
        org: org_id("lab"),
        email: email("late@example.org"),
        invited_by: None,
        role: OrgRole::User,
        teams: BTreeMap::new(),
        token_hash: token.hash(),
        created_at: created,
        expires_at: now() - time::Duration::hours(1),
        accepted_at: None,
        accepted_by: None,
        revoked_at: None,
        sent: 1,
        version: 1,
    };
    t.services
        .directory
        .create_invite(&invite)
        .await
        .expect("stored invite");
    let path = format!("/api/invites/accept?token={}", token.expose());
    t.get(&path, None)
        .await
        .problem_about(StatusCode::GONE, "expired");
    let before = t.snapshot("lab").await;
    t.accept(token.expose(), Some("Late"), PASSWORD)
        .await
        .problem_about(StatusCode::GONE, "expired");
    assert_eq!(t.snapshot("lab").await, before);
    assert!(matches!(
        t.services
            .directory
            .user_by_email(&email("late@example.org"))
            .await,
        Err(CatalogError::NotFound)
    ));
    let listed = t
        .get("/api/invites", Some(&admin.access))
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed[0]["state"], "expired");

    // An expired invitation can be sent again, with a fresh link and expiry.
    t.send(
        Method::POST,
        &format!("/api/invites/{}/resend", invite.id),
        Some(&admin.access),
        None,
    )
    .await
    .ok(StatusCode::OK);
    let (_, fresh) = t.last_link_to("late@example.org");
    t.accept(token.expose(), Some("Late"), PASSWORD)
        .await
        .problem_among(&[StatusCode::NOT_FOUND, StatusCode::GONE]);
    t.accept(&fresh, Some("Late"), PASSWORD)
        .await
        .ok(StatusCode::CREATED);
}

/// Runs two accepts of one token at the same time.
async fn accept_twice(t: &TestApp, token: &str, name: Option<&str>) -> Vec<Reply> {
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let app = t.app.clone();
            let mut body = json!({"token": token, "password": PASSWORD});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            tokio::spawn(async move {
                call(app, Method::POST, "/api/invites/accept", None, Some(body)).await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("task"));
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_accepts_of_one_invitation_have_exactly_one_winner() {
    let t = spawn_app();
    let admin = t.create_org("lab", false, "ada@example.org").await;
    let team = t.create_team(&admin.access, "Imaging").await;

    // A new person.
    t.invite(
        &admin.access,
        json!({"emails": ["race@example.org"], "teams": {&team: "member"}}),
    )
    .await
    .ok(StatusCode::CREATED);
    let (_, token) = t.last_link_to("race@example.org");
    let replies = accept_twice(&t, &token, Some("Racer")).await;
    let winners: Vec<&Reply> = replies.iter().filter(|r| r.status.is_success()).collect();
    assert_eq!(winners.len(), 1, "{replies:?}");
    assert_eq!(winners[0].status, StatusCode::CREATED);
    for loser in replies.iter().filter(|r| !r.status.is_success()) {
        loser.problem_among(&[StatusCode::CONFLICT, StatusCode::GONE]);
    }
    let winner_id = winners[0].json()["user"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let users = t.snapshot("lab").await.users;
    let racers: Vec<&User> = users
        .iter()
        .filter(|u| u.email == email("race@example.org"))
        .collect();
    assert_eq!(racers.len(), 1);
    assert_eq!(racers[0].id.as_str(), winner_id);
    let invites = t.snapshot("lab").await.invites;
    assert_eq!(
        invites[0]
            .accepted_by
            .as_ref()
            .map(|u| u.as_str().to_owned()),
        Some(winner_id)
    );

    // An existing account.
    let sam = t.signup("lab", "sam@example.org").await;
    t.invite(
        &admin.access,
        json!({"emails": ["sam@example.org"], "teams": {&team: "manager"}}),
    )
    .await
    .ok(StatusCode::CREATED);
    let (_, token) = t.last_link_to("sam@example.org");
    let replies = accept_twice(&t, &token, None).await;
    let winners: Vec<&Reply> = replies.iter().filter(|r| r.status.is_success()).collect();
    assert_eq!(winners.len(), 1, "{replies:?}");
    assert_eq!(winners[0].status, StatusCode::OK);
    for loser in replies.iter().filter(|r| !r.status.is_success()) {
        loser.problem_among(&[StatusCode::CONFLICT, StatusCode::GONE]);
    }
    let stored = t.stored_user(&sam).await;
    assert!(stored.active);
    assert_eq!(stored.teams.len(), 1);
}

#[tokio::test]
async fn team_managers_invite_only_into_their_own_teams() {
    let f = teams_fixture().await;
    let t = &f.t;
    let m = &f.manager.access;
    // The admin's invitation into team B, which the manager must not see or touch.
    let admins = t
        .invite(
            &f.admin.access,
            json!({"emails": ["b-person@example.org"], "teams": {&f.team_b: "member"}}),
        )
        .await
        .ok(StatusCode::CREATED);
    let admins_invite = admins[0]["id"].as_str().expect("id").to_owned();

    let mine = t
        .invite(
            m,
            json!({"emails": ["a-person@example.org"], "teams": {&f.team_a: "member"}}),
        )
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(mine[0]["invited_by"], f.manager.id.as_str());
    let mine_id = mine[0]["id"].as_str().expect("id").to_owned();
    let mail = t.mails().pop().expect("mail");
    assert!(mail.text.contains("manager@example.org"), "{}", mail.text);

    let before = t.snapshot("lab").await;
    let mails_before = t.mails().len();
    for body in [
        json!({"emails": ["z@example.org"], "teams": {&f.team_b: "member"}}),
        json!({"emails": ["z@example.org"], "teams": {&f.team_a: "member", &f.team_b: "member"}}),
        json!({"emails": ["z@example.org"], "teams": {&f.team_a: "member"}, "role": "dataset_manager"}),
        json!({"emails": ["z@example.org"], "teams": {&f.team_a: "member"}, "role": "admin"}),
        // Into no team at all: only administrators may.
        json!({"emails": ["z@example.org"]}),
    ] {
        t.invite(m, body).await.problem(StatusCode::FORBIDDEN);
    }
    t.send(
        Method::DELETE,
        &format!("/api/invites/{admins_invite}"),
        Some(m),
        None,
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    t.send(
        Method::POST,
        &format!("/api/invites/{admins_invite}/resend"),
        Some(m),
        None,
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    assert_eq!(t.snapshot("lab").await, before);
    assert_eq!(t.mails().len(), mails_before);

    let listed = t.get("/api/invites", Some(m)).await.ok(StatusCode::OK);
    assert_eq!(ids_of(&listed), set(&[&mine_id]));
    let all = t
        .get("/api/invites", Some(&f.admin.access))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&all), set(&[&mine_id, &admins_invite]));
    t.get("/api/invites", Some(&f.member_a.access))
        .await
        .problem(StatusCode::FORBIDDEN);

    // Their own they can resend and revoke; the invitee lands in team A.
    t.send(
        Method::POST,
        &format!("/api/invites/{mine_id}/resend"),
        Some(m),
        None,
    )
    .await
    .ok(StatusCode::OK);
    let (_, token) = t.last_link_to("a-person@example.org");
    let joined = t
        .accept(&token, Some("A Person"), PASSWORD)
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(joined["user"]["teams"], json!({&f.team_a: "member"}));
    assert_eq!(joined["user"]["role"], "user");
}

#[tokio::test]
async fn invalid_invitation_requests_change_nothing() {
    let t = spawn_app();
    let admin = t.create_org("lab", false, "ada@example.org").await;
    let a = &admin.access;
    let team = t.create_team(a, "Imaging").await;
    let before = t.snapshot("lab").await;
    t.invite(a, json!({"emails": ["ok@example.org", "not an address"]}))
        .await
        .problem_about(StatusCode::BAD_REQUEST, "e-mail");
    t.invite(a, json!({"emails": []}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    let too_many: Vec<String> = (0..101).map(|i| format!("p{i}@example.org")).collect();
    t.invite(a, json!({"emails": too_many}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = shared::domain::TeamId::generate();
    t.invite(
        a,
        json!({"emails": ["ok@example.org"], "teams": {unknown.as_str(): "member"}}),
    )
    .await
    .problem_about(StatusCode::NOT_FOUND, "team");
    t.invite(
        a,
        json!({"emails": ["ok@example.org"], "teams": {"bad": "member"}}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    t.invite(
        a,
        json!({"emails": ["ok@example.org"], "teams": {&team: "boss"}}),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    t.invite(a, json!({"emails": "ok@example.org"}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    t.post("/api/invites", None, json!({"emails": ["ok@example.org"]}))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    let raw = Request::post("/api/invites")
        .header(header::AUTHORIZATION, format!("Bearer {a}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"emails\": [\"ok@example.org\""))
        .expect("request");
    send_request(t.app.clone(), raw)
        .await
        .problem(StatusCode::BAD_REQUEST);
    assert_eq!(t.snapshot("lab").await, before);
    assert!(t.mails().is_empty());
}

// ---------------------------------------------------------------------------------------------
// The installation's admin key, and routing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_admin_key_administers_its_organization() {
    let t = spawn_app();
    let admin = t.create_org(KEY_ORG, false, "ada@example.org").await;
    let rival = t.create_org("rival", false, "rita@example.org").await;
    let pending = t.signup(KEY_ORG, "grace@example.org").await;

    let listed = t
        .get("/api/users", Some(ADMIN_KEY))
        .await
        .ok(StatusCode::OK);
    assert_eq!(ids_of(&listed), set(&[&admin.id, &pending]));
    t.get("/api/me", Some(ADMIN_KEY))
        .await
        .problem(StatusCode::NOT_FOUND);
    let team = t.create_team(ADMIN_KEY, "Operations").await;
    t.activate(ADMIN_KEY, &pending, json!({"teams": {&team: "member"}}))
        .await
        .ok(StatusCode::OK);
    // Not another organization's users.
    t.deactivate(ADMIN_KEY, &rival.id)
        .await
        .problem(StatusCode::NOT_FOUND);

    let invited = t
        .invite(
            ADMIN_KEY,
            json!({"emails": ["ops@example.org"], "teams": {&team: "manager"}}),
        )
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(invited[0]["invited_by"], Value::Null);
    let mail = t.mails().pop().expect("mail");
    assert!(mail.text.contains("An administrator"), "{}", mail.text);
    assert!(mail.html.contains("lab Laboratory"), "{}", mail.html);
    let (_, token) = link_in(&mail);
    let joined = t
        .accept(&token, Some("Ops"), PASSWORD)
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(joined["user"]["organization"], KEY_ORG);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problem_documents() {
    let t = spawn_app();
    t.get("/api/nothing-here", None)
        .await
        .problem(StatusCode::NOT_FOUND);
    t.send(Method::DELETE, "/api/me", None, None)
        .await
        .problem(StatusCode::METHOD_NOT_ALLOWED);
    t.get("/api/auth/login", None)
        .await
        .problem(StatusCode::METHOD_NOT_ALLOWED);
    let huge = "x".repeat(128 * 1024);
    t.post(
        "/api/auth/signup",
        None,
        json!({"organization": "lab", "email": "a@example.org", "password": huge, "name": "A"}),
    )
    .await
    .problem(StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn an_invitation_cannot_reactivate_someone_its_sender_may_not_manage() {
    let f = teams_fixture().await;
    let t = &f.t;
    // The admin deactivates a member of team B.
    t.deactivate(&f.admin.access, &f.member_b.id)
        .await
        .ok(StatusCode::OK);
    // Team A's manager could not reactivate them directly...
    t.activate(&f.manager.access, &f.member_b.id, json!({}))
        .await
        .problem(StatusCode::FORBIDDEN);
    // ...nor through an invitation into team A.
    t.invite(
        &f.manager.access,
        json!({"emails": ["bob@example.org"], "teams": {&f.team_a: "member"}}),
    )
    .await
    .ok(StatusCode::CREATED);
    let (_, token) = t.last_link_to("bob@example.org");
    let before = t.snapshot("lab").await;
    t.accept(&token, None, PASSWORD)
        .await
        .problem(StatusCode::FORBIDDEN);
    assert_eq!(t.snapshot("lab").await, before);
    assert!(!t.stored_user(&f.member_b.id).await.active);
    t.login_reply("bob@example.org", PASSWORD)
        .await
        .problem(StatusCode::FORBIDDEN);

    // An administrator's invitation does bring them back.
    t.invite(
        &f.admin.access,
        json!({"emails": ["bob@example.org"], "teams": {&f.team_a: "member"}}),
    )
    .await
    .ok(StatusCode::CREATED);
    let (_, token) = t.last_link_to("bob@example.org");
    let joined = t.accept(&token, None, PASSWORD).await.ok(StatusCode::OK);
    assert_eq!(joined["user"]["active"], true);
    assert_eq!(
        joined["user"]["teams"],
        json!({&f.team_a: "member", &f.team_b: "member"})
    );
    // And a pending, unassigned person a team manager may activate joins through theirs.
    t.invite(
        &f.manager.access,
        json!({"emails": ["pat@example.org"], "teams": {&f.team_a: "member"}}),
    )
    .await
    .ok(StatusCode::CREATED);
    let (_, token) = t.last_link_to("pat@example.org");
    let joined = t.accept(&token, None, PASSWORD).await.ok(StatusCode::OK);
    assert_eq!(joined["user"]["id"], f.pending_1.as_str());
    assert_eq!(joined["user"]["active"], true);
}

#[tokio::test]
async fn invitation_mail_escapes_names_in_its_html_part() {
    let t = spawn_app();
    let admin = t
        .post(
            "/api/organizations",
            None,
            json!({"id": "curie", "name": "Curie & Co <Lab>", "admin":
                {"email": "marie@example.org", "password": PASSWORD, "name": "Marie \"<b>\" Curie"}}),
        )
        .await
        .ok(StatusCode::CREATED);
    let access = admin["tokens"]["access_token"].as_str().expect("access");
    t.invite(access, json!({"emails": ["pierre@example.org"]}))
        .await
        .ok(StatusCode::CREATED);
    let mail = t.mails().pop().expect("mail");
    assert!(mail.text.contains("Curie & Co <Lab>"), "{}", mail.text);
    assert!(mail.text.contains("Marie \"<b>\" Curie"), "{}", mail.text);
    assert!(
        mail.html.contains("Curie &amp; Co &lt;Lab&gt;"),
        "{}",
        mail.html
    );
    assert!(
        mail.html.contains("Marie &quot;&lt;b&gt;&quot; Curie"),
        "{}",
        mail.html
    );
    assert!(!mail.html.contains("<b>"), "{}", mail.html);
    let (url, token) = link_in(&mail);
    assert!(
        mail.html.contains(&format!("href=\"{url}\"")),
        "{}",
        mail.html
    );
    let info = t.get(path_of(&url), None).await.ok(StatusCode::OK);
    assert_eq!(info["organization"], "Curie & Co <Lab>");
    t.accept(&token, Some("Pierre"), PASSWORD)
        .await
        .ok(StatusCode::CREATED);
}
