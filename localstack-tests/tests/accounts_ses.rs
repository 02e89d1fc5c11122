//! E-mail invitations over DynamoDB and SES v1 in LocalStack, through the real SDK: an admin
//! invites two people into a team, the invitation mail is read back from the emulator
//! (`GET /_aws/ses`), and its link is followed — a new person signs up, is active and in the
//! team at once, the link is single-use, and of two concurrent accepts exactly one wins.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, StatusCode};
use infra::provision::Resources;
use localstack_tests::{
    LocalStack, Reply, TEST_BUCKET, TEST_TABLE, error_chain, localstack, send, unique,
};
use serde_json::{Value, json};
use shared::Services;
use shared::store::DynStore;
use shared::store::dynamo::DynamoStore;

/// The verified SES identity the invitations come from.
const SENDER: &str = "noreply@zarrshare.test";
const PUBLIC_BASE: &str = "http://example.test";
const JWT_SECRET: &str = "localstack-tests-jwt-secret-0123456789abcdef";
const INVITER: &str = "Grace Hopper";
const PASSWORD: &str = "correct horse battery staple 42";

/// One invited address and what its mail carried.
struct Invitee {
    email: String,
    /// The accept link from the mail, `{PUBLIC_BASE}/api/invites/accept?token=…`.
    link: String,
    token: String,
}

/// An organization of its own with an admin and a team, the accounts function over DynamoDB
/// and SES, and two addresses invited into the team (their mail already read and checked).
struct Fixture {
    api: Router,
    org: String,
    /// The admin's access token.
    admin_token: String,
    team: String,
    invitees: Vec<Invitee>,
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn expect(reply: &Reply, status: StatusCode, what: &str) -> Value {
    assert_eq!(
        reply.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    if reply.body.is_empty() {
        Value::Null
    } else {
        reply.json()
    }
}

/// The accounts function as a deployment builds it (`Services::build`): the mailer is SES,
/// because the metadata is in DynamoDB and a sender is configured.
async fn accounts_over_ses(ls: &LocalStack, org: &str) -> Router {
    infra::provision::provision(
        &ls.sdk,
        &Resources {
            table: TEST_TABLE.into(),
            bucket: TEST_BUCKET.into(),
            sender: Some(SENDER.into()),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("provisioning with sender {SENDER}: {}", error_chain(&e)));
    let config = ls.config_with(
        TEST_TABLE,
        "proxy",
        org,
        &[
            ("ZARRSHARE_SENDER_EMAIL", SENDER),
            ("ZARRSHARE_PUBLIC_BASE_URL", PUBLIC_BASE),
            ("ZARRSHARE_JWT_SECRET", JWT_SECRET),
        ],
    );
    assert!(config.outbox.is_none());
    let store: DynStore = Arc::new(DynamoStore::new(ls.dynamodb(), TEST_TABLE));
    let services = Services::build(config, store)
        .await
        .unwrap_or_else(|e| panic!("services: {e}"));
    assert!(
        format!("{:?}", services.mailer).starts_with("SesMailer"),
        "{:?}",
        services.mailer
    );
    accounts::router(Arc::new(services))
}

/// The one invitation mail LocalStack's SES holds for `to` (polled briefly), checked against
/// what the issue asks of it; returns the accept link and its token.
async fn invitation_mail(ls: &LocalStack, to: &str, org_name: &str, admin_email: &str) -> Invitee {
    let mut mail = Vec::new();
    for _ in 0..50 {
        mail = ls.sent_mail(to).await;
        if !mail.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(mail.len(), 1, "exactly one mail to {to}: {mail:#?}");
    let m = &mail[0];
    assert_eq!(m["Source"], SENDER, "{m:#}");
    assert_eq!(m["Destination"]["ToAddresses"], json!([to]), "{m:#}");
    assert!(m["Id"].as_str().is_some_and(|id| !id.is_empty()), "{m:#}");
    let subject = m["Subject"].as_str().unwrap_or_else(|| panic!("{m:#}"));
    let text = m["Body"]["text_part"]
        .as_str()
        .unwrap_or_else(|| panic!("no text part: {m:#}"));
    let html = m["Body"]["html_part"]
        .as_str()
        .unwrap_or_else(|| panic!("no HTML part: {m:#}"));
    assert!(
        subject.contains(org_name),
        "subject names the org: {subject}"
    );
    assert!(
        subject.contains(INVITER),
        "subject names the inviter: {subject}"
    );
    for (part, body) in [("text", text), ("HTML", html)] {
        assert!(body.contains(org_name), "{part} names the org: {body}");
        assert!(body.contains(INVITER), "{part} names the inviter: {body}");
        assert!(
            body.contains(admin_email),
            "{part} names the inviter's address: {body}"
        );
    }
    assert!(html.contains("<a href=\""), "{html}");
    let prefix = format!("{PUBLIC_BASE}/api/invites/accept?token=");
    let start = text
        .find(&prefix)
        .unwrap_or_else(|| panic!("no link {prefix}… in the text part: {text}"));
    let link: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let token = link[prefix.len()..].to_owned();
    assert!(
        token.len() >= 32
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "token {token:?} in {link}"
    );
    assert!(
        html.contains(&format!("href=\"{link}\"")),
        "the HTML part links to {link}: {html}"
    );
    Invitee {
        email: to.to_owned(),
        link,
        token,
    }
}

async fn fixture(ls: &LocalStack) -> Fixture {
    let org = unique("org");
    let org_name = format!("Lab {org}");
    let admin_email = format!("{}@example.test", unique("admin"));
    let api = accounts_over_ses(ls, &org).await;

    let created = send(
        &api,
        Method::POST,
        "/api/organizations",
        &[],
        Some(json!({
            "id": org,
            "name": org_name,
            "admin": { "email": admin_email, "password": PASSWORD, "name": INVITER },
        })),
    )
    .await;
    let created = expect(&created, StatusCode::CREATED, "POST /api/organizations");
    assert_eq!(created["organization"]["id"], org.as_str());
    assert_eq!(created["admin"]["role"], "admin");
    let admin_token = created["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = bearer(&admin_token);
    let admin = [("authorization", admin.as_str())];

    let team = send(
        &api,
        Method::POST,
        "/api/teams",
        &admin,
        Some(json!({ "name": "Tracers" })),
    )
    .await;
    let team = expect(&team, StatusCode::CREATED, "POST /api/teams")["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let emails = [
        format!("{}@example.test", unique("ada")),
        format!("{}@example.test", unique("alan")),
    ];
    let invited = send(
        &api,
        Method::POST,
        "/api/invites",
        &admin,
        Some(json!({
            "emails": emails,
            "role": "user",
            "teams": { &team: "member" },
        })),
    )
    .await;
    let invited = expect(&invited, StatusCode::CREATED, "POST /api/invites");
    let views = invited.as_array().unwrap();
    assert_eq!(views.len(), 2, "{invited:#}");
    for view in views {
        assert!(emails.iter().any(|e| view["email"] == e.as_str()), "{view}");
        assert_eq!(view["state"], "pending", "{view}");
        assert_eq!(view["role"], "user", "{view}");
        assert_eq!(view["teams"], json!({ &team: "member" }), "{view}");
        assert_eq!(view["invited_by"], created["admin"]["id"], "{view}");
        assert_eq!(view["sent"], 1, "{view}");
    }

    let mut invitees = Vec::new();
    for email in &emails {
        invitees.push(invitation_mail(ls, email, &org_name, &admin_email).await);
    }
    assert_ne!(invitees[0].token, invitees[1].token);
    Fixture {
        api,
        org,
        admin_token,
        team,
        invitees,
    }
}

/// The path and query of an absolute link into the API (the router sees only those).
fn path_of(link: &str) -> &str {
    link.strip_prefix(PUBLIC_BASE)
        .unwrap_or_else(|| panic!("{link} is not below {PUBLIC_BASE}"))
}

fn accept_body(token: &str, name: &str) -> Value {
    json!({ "token": token, "name": name, "password": PASSWORD })
}

/// `GET /api/me` with an access token: the account, checked to be an active user in `team`.
async fn me_in_team(f: &Fixture, access_token: &str, email: &str) -> Value {
    let auth = bearer(access_token);
    let me = send(
        &f.api,
        Method::GET,
        "/api/me",
        &[("authorization", auth.as_str())],
        None,
    )
    .await;
    let me = expect(&me, StatusCode::OK, "GET /api/me");
    assert_eq!(me["email"], email, "{me:#}");
    assert_eq!(me["organization"], f.org.as_str(), "{me:#}");
    assert_eq!(me["active"], true, "{me:#}");
    assert_eq!(me["role"], "user", "{me:#}");
    assert_eq!(me["teams"], json!({ &f.team: "member" }), "{me:#}");
    me
}

async fn login(f: &Fixture, email: &str, password: &str) -> Reply {
    send(
        &f.api,
        Method::POST,
        "/api/auth/login",
        &[],
        Some(json!({ "email": email, "password": password })),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_invitation_mail_from_ses_leads_to_an_active_account_in_the_team() {
    let Some(ls) = localstack().await else { return };
    let f = fixture(&ls).await;
    let ada = &f.invitees[0];

    // What the link offers.
    let info = send(&f.api, Method::GET, path_of(&ada.link), &[], None).await;
    let info = expect(&info, StatusCode::OK, "GET the mail's link");
    assert_eq!(info["email"], ada.email.as_str(), "{info:#}");
    assert!(
        info["organization"].as_str().unwrap().contains(&f.org),
        "{info:#}"
    );
    assert_eq!(info["role"], "user", "{info:#}");
    assert_eq!(info["teams"], json!({ &f.team: "member" }), "{info:#}");
    assert_eq!(info["existing_account"], false, "{info:#}");
    assert_eq!(
        info["accept_url"],
        format!("{PUBLIC_BASE}/api/invites/accept"),
        "{info:#}"
    );

    // A new person accepts: signed up, signed in, active and in the team at once.
    let accepted = send(
        &f.api,
        Method::POST,
        "/api/invites/accept",
        &[],
        Some(accept_body(&ada.token, "Ada Lovelace")),
    )
    .await;
    let accepted = expect(&accepted, StatusCode::CREATED, "POST /api/invites/accept");
    assert_eq!(accepted["user"]["name"], "Ada Lovelace", "{accepted:#}");
    assert_eq!(accepted["user"]["active"], true, "{accepted:#}");
    assert_eq!(accepted["tokens"]["token_type"], "Bearer", "{accepted:#}");
    assert!(
        accepted["tokens"]["refresh_token"].is_string(),
        "{accepted:#}"
    );
    let me = me_in_team(
        &f,
        accepted["tokens"]["access_token"].as_str().unwrap(),
        &ada.email,
    )
    .await;
    assert_eq!(me["id"], accepted["user"]["id"]);

    // The link is single-use.
    let again = send(
        &f.api,
        Method::POST,
        "/api/invites/accept",
        &[],
        Some(accept_body(&ada.token, "Ada Again")),
    )
    .await;
    expect(&again, StatusCode::GONE, "accepting the same link again");
    let info = send(&f.api, Method::GET, path_of(&ada.link), &[], None).await;
    expect(&info, StatusCode::GONE, "GET the used link");

    // The new account logs in with its address and password.
    let wrong = login(&f, &ada.email, "not the password at all").await;
    expect(
        &wrong,
        StatusCode::UNAUTHORIZED,
        "login with a wrong password",
    );
    let tokens = login(&f, &ada.email.to_uppercase(), PASSWORD).await;
    let tokens = expect(&tokens, StatusCode::OK, "POST /api/auth/login");
    let me = me_in_team(&f, tokens["access_token"].as_str().unwrap(), &ada.email).await;
    assert_eq!(me["id"], accepted["user"]["id"]);

    // The admin sees this invitation accepted, the other one still pending.
    let auth = bearer(&f.admin_token);
    let list = send(
        &f.api,
        Method::GET,
        "/api/invites",
        &[("authorization", auth.as_str())],
        None,
    )
    .await;
    let list = expect(&list, StatusCode::OK, "GET /api/invites");
    let state = |email: &str| {
        let found: Vec<&Value> = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["email"] == email)
            .collect();
        assert_eq!(found.len(), 1, "{email} in {list:#}");
        found[0]["state"].clone()
    };
    assert_eq!(state(&ada.email), "accepted");
    assert_eq!(state(&f.invitees[1].email), "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_accepts_of_one_invitation_have_exactly_one_winner() {
    let Some(ls) = localstack().await else { return };
    let f = fixture(&ls).await;
    let alan = &f.invitees[1];

    let (a, b) = tokio::join!(
        send(
            &f.api,
            Method::POST,
            "/api/invites/accept",
            &[],
            Some(accept_body(&alan.token, "Alan Turing")),
        ),
        send(
            &f.api,
            Method::POST,
            "/api/invites/accept",
            &[],
            Some(accept_body(&alan.token, "Alan M. Turing")),
        ),
    );
    let statuses = [a.status, b.status];
    let (winner, loser) = match statuses {
        [StatusCode::CREATED, s] if s != StatusCode::CREATED => (a, b),
        [s, StatusCode::CREATED] if s != StatusCode::CREATED => (b, a),
        _ => panic!(
            "exactly one accept must win, got {statuses:?}: {} / {}",
            String::from_utf8_lossy(&a.body),
            String::from_utf8_lossy(&b.body)
        ),
    };
    assert!(
        matches!(loser.status, StatusCode::CONFLICT | StatusCode::GONE),
        "the loser: {} {}",
        loser.status,
        String::from_utf8_lossy(&loser.body)
    );
    let winner = winner.json();
    let me = me_in_team(
        &f,
        winner["tokens"]["access_token"].as_str().unwrap(),
        &alan.email,
    )
    .await;
    assert_eq!(me["id"], winner["user"]["id"]);
    assert_eq!(me["name"], winner["user"]["name"]);

    // One account came of it, the one that logs in; the link is used up.
    let tokens = login(&f, &alan.email, PASSWORD).await;
    let tokens = expect(&tokens, StatusCode::OK, "POST /api/auth/login");
    let me = me_in_team(&f, tokens["access_token"].as_str().unwrap(), &alan.email).await;
    assert_eq!(me["id"], winner["user"]["id"]);
    let third = send(
        &f.api,
        Method::POST,
        "/api/invites/accept",
        &[],
        Some(accept_body(&alan.token, "Alan Turing")),
    )
    .await;
    expect(&third, StatusCode::GONE, "accepting the used link");
}
