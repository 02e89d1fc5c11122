//! Everything a function needs, built once per process (per Lambda instance), plus the
//! per-instance access cache that keeps metadata reads off the chunk hot path.

use std::path::PathBuf;
use std::sync::Arc;

use moka::sync::Cache;

use crate::ApiError;
use crate::auth::Authenticator;
use crate::config::{Config, MetadataBackend};
use crate::domain::skeleton::{Skeleton, UpdateAction};
use crate::domain::volume::VolumeContent;
use crate::domain::{
    Annotation, AnnotationId, Dataset, DatasetId, Email, Grant, LinkToken, ShareLink, TokenHash,
    User, UserId,
};
use crate::mail::{Mailer, OutboxMailer, SesMailer};
use crate::objects::{Location, Objects, ObjectsError, S3Settings};
use crate::store::catalog::CatalogError;
use crate::store::dynamo::DynamoStore;
use crate::store::embedded::EmbeddedStore;
use crate::store::{Catalog, Directory, DynStore, StoreError};
use crate::tokens::TokenIssuer;
use crate::usage::{UsageMeter, Use};

/// A dataset as the chunk function needs it: its record and its opened storage location.
pub struct ResolvedDataset {
    pub dataset: Dataset,
    pub location: Location,
}

/// Resolutions this instance trusts for at most `access_cache_ttl` (≤ 60 s). Negative answers
/// are cached too, so a flood of unknown ids or tokens cannot reach the database either.
#[derive(Clone)]
pub struct AccessCache {
    datasets: Cache<DatasetId, Option<Arc<ResolvedDataset>>>,
    links: Cache<TokenHash, Option<Arc<ShareLink>>>,
    /// Accounts behind personal viewer URLs (role, teams, active).
    users: Cache<UserId, Option<Arc<User>>>,
    /// A person's grant on a dataset, by address.
    grants: Cache<(DatasetId, Email), Option<Arc<Grant>>>,
    /// Annotation records (visibility, owner, latest version) for reads of volumes.
    annotations: Cache<AnnotationId, Option<Arc<Annotation>>>,
    /// Volume contents by version: immutable once saved, so kept as long as there is room.
    volumes: Cache<(AnnotationId, u64), Arc<VolumeContent>>,
    /// Skeletons by version (immutable too), weighed by their nodes: a warm instance saves
    /// on top of the latest without reading it back.
    skeletons: Cache<(AnnotationId, u64), Arc<SkeletonAt>>,
}

/// A skeleton at one version, with the snapshot version its stored chain starts from.
#[derive(Debug, Default)]
pub struct SkeletonAt {
    pub skeleton: Skeleton,
    /// The version whose stored body is a whole skeleton (0: the empty one) that this
    /// version's saves build on.
    pub anchor: u64,
}

/// Nodes (of all cached skeletons) one instance keeps in memory at most.
const CACHED_SKELETON_NODES: u64 = 2_000_000;

impl AccessCache {
    pub fn new(ttl: std::time::Duration) -> Self {
        Self {
            datasets: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            links: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            users: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            grants: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            annotations: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            volumes: Cache::builder().max_capacity(1_000).build(),
            skeletons: Cache::builder()
                .max_capacity(CACHED_SKELETON_NODES)
                .weigher(|_, s: &Arc<SkeletonAt>| {
                    u32::try_from(s.skeleton.stats().nodes + 1).unwrap_or(u32::MAX)
                })
                .build(),
        }
    }
}

pub struct Services {
    pub config: Config,
    pub catalog: Catalog,
    pub directory: Directory,
    pub tokens: TokenIssuer,
    pub mailer: Arc<dyn Mailer>,
    pub objects: Arc<Objects>,
    pub auth: Arc<Authenticator>,
    /// Signs and checks link unlocks.
    pub signer: crate::capability::Signer,
    /// Link usage counted since the last flush.
    pub usage: Arc<UsageMeter>,
    /// Where annotation bodies go.
    pub bodies: crate::bodies::Bodies,
    cache: AccessCache,
    /// Writes started in the background (usage flushes), which [`Services::shutdown`] awaits.
    background: tokio_util::task::TaskTracker,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("catalog", &self.catalog)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    WeakKey(#[from] crate::auth::WeakKey),
    #[error("could not open the metadata store")]
    Store(#[from] StoreError),
    #[error("the annotation storage (ZARRSHARE_ANNOTATIONS_URL) cannot be opened")]
    Annotations(#[source] ObjectsError),
}

/// The AWS SDK configuration for this process (endpoint override for LocalStack).
pub async fn aws_sdk_config(config: &Config) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(config.aws_region.clone()));
    if let Some(endpoint) = &config.aws_endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// Opens the metadata store the configuration names.
pub async fn open_store(config: &Config) -> Result<DynStore, StoreError> {
    let sdk = match config.metadata {
        MetadataBackend::DynamoDb { .. } => Some(aws_sdk_config(config).await),
        MetadataBackend::Embedded { .. } => None,
    };
    open_store_with(config, sdk.as_ref())
}

/// Opens the metadata store with an already loaded AWS configuration (needed for DynamoDB).
fn open_store_with(
    config: &Config,
    sdk: Option<&aws_config::SdkConfig>,
) -> Result<DynStore, StoreError> {
    Ok(match (&config.metadata, sdk) {
        (MetadataBackend::DynamoDb { table }, Some(sdk)) => Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            table.clone(),
        )),
        (MetadataBackend::DynamoDb { .. }, None) => {
            return Err(StoreError::Invalid {
                what: "DynamoDB without an AWS configuration",
            });
        }
        (MetadataBackend::Embedded { path }, _) => Arc::new(EmbeddedStore::open(path)?),
    })
}

/// The mailer the configuration implies: an outbox file when one is named, otherwise SES (when
/// the metadata is in DynamoDB and a sender is set), otherwise an in-memory outbox.
fn mailer_for(config: &Config, sdk: Option<&aws_config::SdkConfig>) -> Arc<dyn Mailer> {
    match (&config.outbox, &config.sender_email, sdk) {
        (Some(path), _, _) => Arc::new(OutboxMailer::new(Some(path.clone()))),
        (None, Some(from), Some(sdk)) => {
            Arc::new(SesMailer::new(aws_sdk_ses::Client::new(sdk), from.clone()))
        }
        _ => Arc::new(OutboxMailer::new(None)),
    }
}

impl Services {
    /// Services over `store`, with the mailer the configuration implies (see [`mailer_for`]).
    pub async fn build(config: Config, store: DynStore) -> Result<Self, StartupError> {
        let sdk = match (&config.outbox, &config.sender_email, &config.metadata) {
            (None, Some(_), MetadataBackend::DynamoDb { .. }) => {
                Some(aws_sdk_config(&config).await)
            }
            _ => None,
        };
        let mailer = mailer_for(&config, sdk.as_ref());
        Self::with_mailer(config, store, mailer)
    }

    pub fn new(config: Config, store: DynStore) -> Result<Self, StartupError> {
        Self::with_mailer(config, store, Arc::new(OutboxMailer::new(None)))
    }

    pub fn with_mailer(
        config: Config,
        store: DynStore,
        mailer: Arc<dyn Mailer>,
    ) -> Result<Self, StartupError> {
        let objects = Arc::new(Objects::new(
            S3Settings {
                endpoint: config.aws_endpoint.clone(),
                region: config.aws_region.clone(),
            },
            config.local_roots.clone(),
            &config.signing_secret,
        ));
        let tokens = TokenIssuer::new(&config.jwt_secret, config.access_token_ttl);
        let directory = Directory::new(store.clone());
        let auth = Arc::new(Authenticator::new(
            config.admin_key.as_deref(),
            config.org.clone(),
            tokens.clone(),
            directory.clone(),
        )?);
        let bodies = crate::bodies::Bodies::new(&objects, config.annotations.as_ref())
            .map_err(StartupError::Annotations)?;
        Ok(Self {
            bodies,
            cache: AccessCache::new(config.access_cache_ttl),
            signer: crate::capability::Signer::new(&config.signing_secret),
            usage: Arc::new(UsageMeter::new(config.usage_flush_interval)),
            background: tokio_util::task::TaskTracker::new(),
            catalog: Catalog::new(store),
            directory,
            tokens,
            mailer,
            objects,
            auth,
            config,
        })
    }

    /// Configuration from the environment, store opened: what a Lambda's `main` calls.
    /// The AWS configuration is loaded once and shared by the DynamoDB and SES clients.
    pub async fn from_env() -> Result<Arc<Self>, StartupError> {
        let config = Config::from_env()?;
        let sdk = match config.metadata {
            MetadataBackend::DynamoDb { .. } => Some(aws_sdk_config(&config).await),
            MetadataBackend::Embedded { .. } => None,
        };
        let store = open_store_with(&config, sdk.as_ref())?;
        let mailer = mailer_for(&config, sdk.as_ref());
        Ok(Arc::new(Self::with_mailer(config, store, mailer)?))
    }

    /// The dataset and its storage, from this instance's cache when fresh.
    pub async fn resolve_dataset(
        &self,
        id: &DatasetId,
    ) -> Result<Option<Arc<ResolvedDataset>>, ApiError> {
        if let Some(hit) = self.cache.datasets.get(id) {
            return Ok(hit);
        }
        let resolved = match self.catalog.dataset(id).await {
            Ok(dataset) => {
                let location = self.objects.locate(&dataset.storage).map_err(|e| match e {
                    ObjectsError::Forbidden => {
                        ApiError::Forbidden("this dataset's storage is not readable here".into())
                    }
                    other => ApiError::internal(other),
                })?;
                Some(Arc::new(ResolvedDataset { dataset, location }))
            }
            Err(CatalogError::NotFound) => None,
            Err(other) => return Err(other.into()),
        };
        self.cache.datasets.insert(id.clone(), resolved.clone());
        Ok(resolved)
    }

    /// The link a token hash names, from this instance's cache when fresh.
    pub async fn resolve_link(&self, hash: &TokenHash) -> Result<Option<Arc<ShareLink>>, ApiError> {
        if let Some(hit) = self.cache.links.get(hash) {
            return Ok(hit);
        }
        self.load_link(hash).await
    }

    /// The link a token hash names, read from the catalog (and remembered in the cache).
    async fn load_link(&self, hash: &TokenHash) -> Result<Option<Arc<ShareLink>>, ApiError> {
        let link = match self.catalog.link_by_token(hash).await {
            Ok(link) => Some(Arc::new(link)),
            Err(CatalogError::NotFound) => None,
            Err(other) => return Err(other.into()),
        };
        self.cache.links.insert(*hash, link.clone());
        Ok(link)
    }

    /// The holder of a share link presented as `{token}`, or `{token}.{unlock}` for a
    /// password-protected link after `POST /api/links/unlock` — the segment of `/s/{segment}/…`
    /// URLs, or of an `Authorization: Link {segment}` header. `None`: no such link (a malformed
    /// token included). `fresh` reads the catalog, for writes, so that a revoked link stops at
    /// once; otherwise this instance's cache answers, within the revocation bound (chunk reads).
    pub async fn link_holder(
        &self,
        segment: &str,
        fresh: bool,
    ) -> Result<Option<(Arc<ShareLink>, crate::access::LinkFacts)>, ApiError> {
        let (token, unlock) = match segment.split_once('.') {
            Some((token, unlock)) => (token, Some(unlock)),
            None => (segment, None),
        };
        let Ok(token) = LinkToken::parse(token) else {
            return Ok(None);
        };
        let hash = token.hash();
        let link = if fresh {
            self.load_link(&hash).await?
        } else {
            self.resolve_link(&hash).await?
        };
        Ok(link.map(|link| {
            let unlocked = link.password_hash.is_some()
                && unlock
                    .is_some_and(|u| self.signer.verify_unlock(&hash, u, crate::domain::now()));
            let facts = crate::access::LinkFacts::of(&link, unlocked);
            (link, facts)
        }))
    }

    /// The account behind a personal viewer URL, from this instance's cache when fresh.
    pub async fn resolve_user(&self, id: &UserId) -> Result<Option<Arc<User>>, ApiError> {
        if let Some(hit) = self.cache.users.get(id) {
            return Ok(hit);
        }
        let user = match self.directory.user(id).await {
            Ok(u) => Some(Arc::new(u)),
            Err(CatalogError::NotFound) => None,
            Err(other) => return Err(other.into()),
        };
        self.cache.users.insert(id.clone(), user.clone());
        Ok(user)
    }

    /// A person's grant on a dataset, from this instance's cache when fresh.
    pub async fn resolve_grant(
        &self,
        dataset: &DatasetId,
        email: &Email,
    ) -> Result<Option<Arc<Grant>>, ApiError> {
        let key = (dataset.clone(), email.clone());
        if let Some(hit) = self.cache.grants.get(&key) {
            return Ok(hit);
        }
        let grant = match self.catalog.grant(dataset, email).await {
            Ok(g) => Some(Arc::new(g)),
            Err(CatalogError::NotFound) => None,
            Err(other) => return Err(other.into()),
        };
        self.cache.grants.insert(key, grant.clone());
        Ok(grant)
    }

    /// The caller's own grant on a dataset (one bound to their account), from this instance's
    /// cache when fresh.
    pub async fn caller_grant(
        &self,
        actor: &crate::access::Actor,
        dataset: &DatasetId,
    ) -> Result<Option<Arc<Grant>>, ApiError> {
        let crate::access::Actor::User(m) = actor else {
            return Ok(None);
        };
        let (Some(email), Some(me)) = (&m.email, &m.id) else {
            return Ok(None);
        };
        Ok(self
            .resolve_grant(dataset, email)
            .await?
            .filter(|g| g.user.as_ref() == Some(me)))
    }

    /// The teams of `org` named by `ids`, each checked to exist there (422 otherwise).
    pub async fn org_teams(
        &self,
        org: &crate::domain::OrgId,
        ids: &[String],
    ) -> Result<std::collections::BTreeSet<crate::domain::TeamId>, ApiError> {
        let mut out = std::collections::BTreeSet::new();
        for id in ids {
            let unknown = || ApiError::Unprocessable(format!("no team {id} in this organization"));
            let team = crate::domain::TeamId::parse(id).map_err(|_| unknown())?;
            match self.directory.team(&team).await {
                Ok(t) if &t.org == org => {}
                Ok(_) | Err(CatalogError::NotFound) => return Err(unknown()),
                Err(e) => return Err(e.into()),
            }
            out.insert(team);
        }
        Ok(out)
    }

    /// An annotation's record, from this instance's cache when fresh.
    pub async fn resolve_annotation(
        &self,
        id: &AnnotationId,
    ) -> Result<Option<Arc<Annotation>>, ApiError> {
        if let Some(hit) = self.cache.annotations.get(id) {
            return Ok(hit);
        }
        let found = match self.annotations().get(id).await {
            Ok(a) => Some(Arc::new(a)),
            Err(CatalogError::NotFound) => None,
            Err(other) => return Err(other.into()),
        };
        self.cache.annotations.insert(id.clone(), found.clone());
        Ok(found)
    }

    /// The teams of an annotation's owner (their managers may read its private annotations),
    /// from this instance's cache when fresh; none once the account is gone.
    pub async fn owner_teams(
        &self,
        annotation: &Annotation,
    ) -> Result<std::collections::BTreeSet<crate::domain::TeamId>, ApiError> {
        Ok(match self.resolve_user(&annotation.owner).await? {
            Some(u) => u.teams.keys().cloned().collect(),
            None => std::collections::BTreeSet::new(),
        })
    }

    /// Forgets an annotation record here (after it changed in this process).
    pub fn forget_annotation(&self, id: &AnnotationId) {
        self.cache.annotations.invalidate(id);
    }

    /// The annotation store over this process's metadata store.
    pub fn annotations(&self) -> crate::store::Annotations {
        crate::store::Annotations::new(self.catalog.store().clone())
    }

    /// A skeleton annotation's content at `version` (0: empty).
    pub async fn skeleton(&self, id: &AnnotationId, version: u64) -> Result<Skeleton, ApiError> {
        Ok(self.skeleton_at(id, version).await?.skeleton.clone())
    }

    /// A skeleton at `version` with its snapshot anchor: from this instance's cache, else from
    /// the nearest snapshot (or cached version) and the saved batches after it.
    pub async fn skeleton_at(
        &self,
        id: &AnnotationId,
        version: u64,
    ) -> Result<Arc<SkeletonAt>, ApiError> {
        if version == 0 {
            return Ok(Arc::new(SkeletonAt::default()));
        }
        if let Some(hit) = self.cache.skeletons.get(&(id.clone(), version)) {
            return Ok(hit);
        }
        let saved = self.saved_version(id, version).await?;
        let at = match saved.delta_of {
            None => SkeletonAt {
                skeleton: self.body_as(&saved).await?,
                anchor: version,
            },
            Some(anchor) => {
                // Start from the latest cached version in the chain, else from its snapshot.
                let cached = (anchor + 1..version)
                    .rev()
                    .find_map(|v| self.cache.skeletons.get(&(id.clone(), v)).map(|s| (v, s)));
                let (from, mut skeleton) = match cached {
                    Some((v, s)) => (v, s.skeleton.clone()),
                    None if anchor == 0 => (0, Skeleton::default()),
                    None => {
                        let snapshot = self.saved_version(id, anchor).await?;
                        (anchor, self.body_as(&snapshot).await?)
                    }
                };
                let between = futures::future::try_join_all(
                    (from + 1..version).map(|v| self.saved_version(id, v)),
                )
                .await?;
                for batch in between.iter().chain(std::iter::once(&saved)) {
                    let actions: Vec<UpdateAction> = self.body_as(batch).await?;
                    skeleton.apply(&actions).map_err(ApiError::internal)?;
                }
                SkeletonAt { skeleton, anchor }
            }
        };
        let at = Arc::new(at);
        self.cache
            .skeletons
            .insert((id.clone(), version), at.clone());
        Ok(at)
    }

    /// Keeps a skeleton just saved, so that the next save builds on it without a read.
    pub fn remember_skeleton(&self, id: &AnnotationId, version: u64, at: SkeletonAt) {
        self.cache
            .skeletons
            .insert((id.clone(), version), Arc::new(at));
    }

    async fn saved_version(
        &self,
        id: &AnnotationId,
        version: u64,
    ) -> Result<crate::domain::AnnotationVersion, ApiError> {
        self.annotations()
            .version(id, version)
            .await
            .map_err(|e| match e {
                CatalogError::NotFound => ApiError::NotFound(format!("no version {version}")),
                other => other.into(),
            })
    }

    async fn body_as<T: serde::de::DeserializeOwned>(
        &self,
        saved: &crate::domain::AnnotationVersion,
    ) -> Result<T, ApiError> {
        let value = self
            .bodies
            .load(&saved.body)
            .await
            .map_err(ApiError::internal)?;
        serde_json::from_value(value).map_err(ApiError::internal)
    }

    /// The content of one version of a volume annotation (version 0: nothing painted). Saved
    /// versions never change, so they are cached here without expiry.
    pub async fn volume_content(
        &self,
        id: &AnnotationId,
        version: u64,
    ) -> Result<Arc<VolumeContent>, ApiError> {
        if version == 0 {
            return Ok(Arc::new(VolumeContent::default()));
        }
        let key = (id.clone(), version);
        if let Some(hit) = self.cache.volumes.get(&key) {
            return Ok(hit);
        }
        let saved = self.saved_version(id, version).await?;
        let content: Arc<VolumeContent> = Arc::new(self.body_as(&saved).await?);
        self.cache.volumes.insert(key, content.clone());
        Ok(content)
    }

    /// Forgets an account here (after it was deactivated or its roles changed in this process).
    pub fn forget_user(&self, id: &UserId) {
        self.cache.users.invalidate(id);
    }

    /// Forgets a person's grant here (after it changed in this process).
    pub fn forget_grant(&self, dataset: &DatasetId, email: &Email) {
        self.cache
            .grants
            .invalidate(&(dataset.clone(), email.clone()));
    }

    /// Called after a change in this process, so that it takes effect here at once.
    pub fn forget_dataset(&self, id: &DatasetId) {
        self.cache.datasets.invalidate(id);
    }

    pub fn forget_link(&self, hash: &TokenHash) {
        self.cache.links.invalidate(hash);
    }

    /// Counts one read through a link; when a flush is due, writes the counts in the
    /// background (off the request's path).
    pub fn record_use(&self, link: &ShareLink, what: Use, redirected: bool, bytes: u64) {
        if self
            .usage
            .record(&link.dataset_id, &link.id, what, redirected, bytes)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (usage, catalog) = (self.usage.clone(), self.catalog.clone());
            self.background.spawn_on(
                async move {
                    usage.flush(&catalog).await;
                },
                &runtime,
            );
        }
    }

    /// Waits for the background writes this instance has started (usage flushes), then writes
    /// the usage counted since: before its storage is opened again (the embedded database
    /// admits one opener at a time), or at exit. Returns how many links' counts it wrote.
    pub async fn shutdown(&self) -> usize {
        self.background.close();
        self.background.wait().await;
        self.flush_usage().await
    }

    /// Writes the counted link usage now (tests, shutdown).
    pub async fn flush_usage(&self) -> usize {
        self.usage.flush(&self.catalog).await
    }

    /// Where an invitation's recipient accepts it.
    pub fn invite_accept_url(&self, token: &crate::domain::LinkToken) -> String {
        self.public_url(&format!("/api/invites/accept?token={}", token.expose()))
    }

    /// An absolute URL for `path` (which starts with `/`), when the public base is known.
    pub fn public_url(&self, path: &str) -> String {
        match &self.config.public_base_url {
            Some(base) => format!("{base}{path}"),
            None => path.to_owned(),
        }
    }

    pub fn local_roots(&self) -> &[PathBuf] {
        &self.config.local_roots
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrgId;

    fn link() -> ShareLink {
        ShareLink {
            label: "flushed".into(),
            ..ShareLink::new(
                DatasetId::generate(),
                OrgId::parse("lab").unwrap_or_else(|e| panic!("{e}")),
                LinkToken::generate().hash(),
                "test".into(),
            )
        }
    }

    /// A read through a link starts a usage flush in the background when one is due (here:
    /// always); `shutdown` waits for it, so the embedded database opens again at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_waits_for_background_flushes_so_storage_reopens_at_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = dir.path().join("meta.redb");
        let vars = [
            ("ZARRSHARE_EMBEDDED_DB", db.to_string_lossy().into_owned()),
            ("ZARRSHARE_USAGE_FLUSH_SECS", "0".to_owned()),
        ];
        let config = Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let links: Vec<ShareLink> = (0..8).map(|_| link()).collect();
        for round in 0..20 {
            let store: DynStore =
                Arc::new(EmbeddedStore::open(&db).unwrap_or_else(|e| panic!("round {round}: {e}")));
            let services = Services::new(config.clone(), store).unwrap_or_else(|e| panic!("{e}"));
            for l in &links {
                services.record_use(l, Use::Read, false, 4096);
            }
            services.shutdown().await;
            drop(services);
        }
    }
}
