//! The archive: a root URL under which each table is a Delta table.

use std::collections::{BTreeMap, HashMap};

use datafusion::execution::cache::cache_manager::{
    CacheManager, CacheManagerConfig, FileMetadataCache,
};
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{StructType, engine::arrow_conversion::TryIntoKernel};
use deltalake::protocol::SaveMode;
use url::Url;

use crate::error::StoreError;
use crate::spec::TableSpec;

/// The root of an archive: `<root>/logs`, `<root>/metrics`, `<root>/dead_letters`, ...
#[derive(Debug, Clone)]
pub struct Archive {
    pub(crate) root: Url,
    pub(crate) options: HashMap<String, String>,
    single_writer: bool,
    /// Roots of the warm and cold tiers (default `<root>/warm/`, `<root>/cold/`).
    pub(crate) warm: Url,
    pub(crate) cold: Url,
    /// Whether `warm` and `cold` were set by [`with_tiers`](Self::with_tiers).
    pub(crate) tiers_configured: bool,
    /// Tables opened for reading, kept to be brought up to date rather than read again from
    /// their whole log ([`with_read_cache`](Self::with_read_cache)).
    reads: Option<ReadCache>,
}

/// What a reading archive keeps between statements.
#[derive(Debug, Clone)]
struct ReadCache {
    /// Each table's latest snapshot opened for reading, by table URL (and version, when
    /// pinned).
    tables: std::sync::Arc<std::sync::Mutex<HashMap<String, DeltaTable>>>,
    /// The footers and page indexes of the data files read (DataFusion's file metadata cache,
    /// bounded by its default 50 MiB; an entry is used only while the file's size and
    /// modification time are unchanged).
    footers: std::sync::Arc<FileMetadataCache>,
    /// The object stores statements read through, keeping small ranges of data files (bloom
    /// filters) they read.
    stores: std::sync::Arc<crate::ranges::CachingRegistry>,
}

impl Archive {
    /// An archive at `url`: a plain path, a `file://` URL, or an `s3://` URL configured by
    /// `options` (`aws_endpoint`, `aws_region`, `aws_access_key_id`, ...; `AWS_*` environment
    /// variables are read too, as are a Kubernetes web-identity token's
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`). An `http://` endpoint allows plain
    /// HTTP without `aws_allow_http`. Nothing is created until a table is written.
    pub fn new(url: &str, options: &BTreeMap<String, String>) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        let root = if url.contains("://") {
            let mut u = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
            match u.scheme() {
                "file" | "s3" | "s3a" | "memory" => {}
                other => {
                    return Err(invalid(format!(
                        "scheme `{other}` is not supported; use a path, file://, or s3://"
                    )));
                }
            }
            if !u.path().ends_with('/') {
                u.set_path(&format!("{}/", u.path()));
            }
            if u.scheme() == "file" {
                let path = u
                    .to_file_path()
                    .map_err(|()| invalid("not a local path".into()))?;
                check_dir(&path).map_err(invalid)?;
            }
            u
        } else {
            let path = std::path::absolute(url).map_err(|e| invalid(e.to_string()))?;
            check_dir(&path).map_err(invalid)?;
            Url::from_directory_path(&path).map_err(|()| invalid("not an absolute path".into()))?
        };
        let mut options: HashMap<String, String> = options
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        if matches!(root.scheme(), "s3" | "s3a") {
            s3_defaults(&mut options);
        }
        let under_root = |name: &str| {
            root.join(&format!("{name}/"))
                .expect("a valid relative URL")
        };
        Ok(Self {
            warm: under_root("warm"),
            cold: under_root("cold"),
            root,
            options,
            single_writer: false,
            tiers_configured: false,
            reads: None,
        })
    }

    /// Puts the warm and cold tiers at their own URLs (paths, `file://` or `s3://`, with the
    /// archive's storage options); `None` keeps a tier under the root.
    pub fn with_tiers(
        mut self,
        warm: Option<&str>,
        cold: Option<&str>,
    ) -> Result<Self, StoreError> {
        let url = |u: &str| Archive::new(u, &BTreeMap::new()).map(|a| a.root);
        if let Some(w) = warm {
            self.warm = url(w)?;
            self.tiers_configured = true;
        }
        if let Some(c) = cold {
            self.cold = url(c)?;
            self.tiers_configured = true;
        }
        Ok(self)
    }

    /// Declares that this process is the only one that ever commits to the archive, which
    /// makes a store without conditional PUT usable (see [`check_commits`](Self::check_commits)).
    pub fn with_single_writer(mut self, single_writer: bool) -> Self {
        self.single_writer = single_writer;
        self
    }

    /// Fails unless concurrent commits to the archive are safe. A Delta commit is the creation
    /// of the log's next file, which must fail if another writer created it first: on S3 that
    /// is a conditional PUT (`If-None-Match: *`; object_store's `conditional_put = "etag"`,
    /// its default, which AWS S3, MinIO, R2 and moto honour). `AWS_S3_ALLOW_UNSAFE_RENAME`
    /// or `conditional_put = "disabled"` let a second writer overwrite a commit and lose its
    /// rows, so they are refused unless the archive has a single writer.
    pub fn check_commits(&self) -> Result<(), StoreError> {
        if !matches!(self.root.scheme(), "s3" | "s3a") || self.single_writer {
            return Ok(());
        }
        let setting = |keys: &[&str]| {
            keys.iter().find_map(|k| {
                self.options
                    .get(&k.to_ascii_lowercase())
                    .cloned()
                    .or_else(|| std::env::var(k.to_ascii_uppercase()).ok())
            })
        };
        let unsafe_rename = setting(&["aws_s3_allow_unsafe_rename"]).is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        let no_conditional_put = setting(&["aws_conditional_put", "conditional_put"])
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("disabled"));
        let reason = match (unsafe_rename, no_conditional_put) {
            (true, _) => "AWS_S3_ALLOW_UNSAFE_RENAME is set",
            (_, true) => "conditional_put is disabled",
            _ => return Ok(()),
        };
        Err(StoreError::UnsafeCommits {
            url: self.root.to_string(),
            reason: reason.into(),
        })
    }

    /// The root URL, ending in `/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Object-store options passed to every table.
    pub fn storage_options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// The URL of a table.
    pub fn table_url(&self, name: &str) -> Url {
        self.root
            .join(&format!("{name}/"))
            .expect("a table name is a valid relative URL")
    }

    /// Keeps the tables this archive (and its clones) opens for reading, and brings a kept
    /// table up to date with the commits made since (one listing of its log when there are
    /// none) instead of reading its whole log again; keeps the footers of the files read, and
    /// their small ranges (bloom filters), too:
    /// for a server answering many statements. Never for writers, which track their own
    /// snapshots.
    pub fn with_read_cache(mut self) -> Self {
        let footers = CacheManager::try_new(&CacheManagerConfig::default())
            .expect("the default cache settings are valid")
            .get_file_metadata_cache();
        self.reads = Some(ReadCache {
            tables: Default::default(),
            footers,
            stores: Default::default(),
        });
        self
    }

    /// The file metadata cache statements over this archive share, when reads are cached
    /// ([`with_read_cache`](Self::with_read_cache)): a data file's footer and page index are
    /// read once, not once per statement.
    pub fn file_metadata_cache(&self) -> Option<std::sync::Arc<FileMetadataCache>> {
        self.reads.as_ref().map(|r| r.footers.clone())
    }

    /// The object-store registry statements over this archive share, when reads are cached:
    /// its stores keep the small ranges of data files read (bloom filters), which never
    /// change once written.
    pub fn object_store_registry(&self) -> Option<std::sync::Arc<crate::ranges::CachingRegistry>> {
        self.reads.as_ref().map(|r| r.stores.clone())
    }

    /// A kept table by `key`, if any.
    pub(crate) fn cached(&self, key: &str) -> Option<DeltaTable> {
        let reads = self.reads.as_ref()?;
        let kept = reads.tables.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(key).cloned()
    }

    /// Keeps `table` by `key`, when reads are cached.
    pub(crate) fn keep(&self, key: String, table: &DeltaTable) {
        if let Some(reads) = &self.reads {
            let mut kept = reads.tables.lock().unwrap_or_else(|e| e.into_inner());
            kept.insert(key, table.clone());
        }
    }

    /// Opens a table; `None` if it does not exist yet.
    pub async fn open(&self, name: &str) -> Result<Option<DeltaTable>, StoreError> {
        let url = self.table_url(name);
        if let Some(mut kept) = self.cached(url.as_str()) {
            match kept.update_incremental(None).await {
                Ok(()) => {
                    self.keep(url.to_string(), &kept);
                    return Ok(Some(kept));
                }
                Err(e) => tracing::debug!(table = name, error = %e, "reading the table afresh"),
            }
        }
        // A table that does not exist yet is no error (and its absence is checked first: the
        // Delta kernel logs one at ERROR level when asked to open it).
        if url.scheme() == "file" {
            let log = url.to_file_path().expect("file URL").join("_delta_log");
            if !log.is_dir() {
                return Ok(None);
            }
        } else {
            use futures::StreamExt;
            let log = object_store::path::Path::from(format!("{name}/_delta_log"));
            let store = self.root_store()?;
            match store.list(Some(&log)).next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(StoreError::delta(name)(e.into())),
                Some(Ok(_)) => {}
            }
        }
        match deltalake::open_table_with_storage_options(url.clone(), self.options.clone()).await {
            Ok(t) => {
                self.keep(url.to_string(), &t);
                Ok(Some(t))
            }
            Err(deltalake::DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(StoreError::delta(name)(e)),
        }
    }

    /// The versions the table records for `app_ids` (their `txn` actions, e.g. the next
    /// offset of each Kafka partition), as of its latest commit; `None` where it records
    /// none, or the table does not exist.
    pub async fn app_versions(
        &self,
        table: &str,
        app_ids: &[String],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        let Some(t) = self.open(table).await? else {
            return Ok(vec![None; app_ids.len()]);
        };
        let mut out = Vec::with_capacity(app_ids.len());
        for id in app_ids {
            out.push(app_version(&t, table, id).await?);
        }
        Ok(out)
    }

    /// Opens a table, creating it from `spec` if it does not exist. Two writers creating the
    /// same table at once both end up with the one that won.
    ///
    /// A table without some of `spec`'s nullable columns (a pipeline that promotes one more
    /// field than the one that created it) gains them in a commit of its own: the rows written
    /// before read them as null.
    pub async fn open_or_create(&self, spec: &TableSpec) -> Result<DeltaTable, StoreError> {
        if let Some(t) = self.open(&spec.name).await? {
            let url = self.table_url(&spec.name);
            let missing = check_schema(&t, spec, &url)?;
            if missing.is_empty() {
                return Ok(t);
            }
            let names: Vec<String> = missing.iter().map(|f| f.name().to_string()).collect();
            let added = t.add_columns().with_fields(missing).await;
            return match added {
                Ok(t) => {
                    tracing::info!(table = %spec.name, columns = ?names, "added columns to the table");
                    Ok(t)
                }
                // Another writer may have added them first: what counts is the table now.
                Err(e) => match self.open(&spec.name).await? {
                    Some(t) if check_schema(&t, spec, &url)?.is_empty() => Ok(t),
                    _ => Err(StoreError::delta(&spec.name)(e)),
                },
            };
        }
        let schema: StructType = spec
            .schema
            .as_ref()
            .try_into_kernel()
            .map_err(|e| StoreError::delta(&spec.name)(e.into()))?;
        let url = self.table_url(&spec.name);
        if url.scheme() == "file" {
            let dir = url.to_file_path().expect("file URL");
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::InvalidUrl {
                url: self.root.to_string(),
                reason: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let created = deltalake::operations::create::CreateBuilder::new()
            .with_location(self.table_url(&spec.name).to_string())
            .with_storage_options(self.options.clone())
            .with_table_name(spec.name.clone())
            .with_columns(schema.fields().cloned())
            .with_partition_columns([spec.partition])
            .with_save_mode(SaveMode::Ignore)
            // No retry: a create that lost the race for version 0 would otherwise commit its
            // metadata again as version 1, and every writer holding version 0 would then fail
            // its next commit on a metadata change.
            .with_commit_properties(CommitProperties::default().with_max_retries(0))
            .await;
        match created {
            Ok(t) => Ok(t),
            // Lost a creation race: the other writer's table is the table.
            Err(e) => match self.open(&spec.name).await? {
                Some(t) => Ok(t),
                None => Err(StoreError::delta(&spec.name)(e)),
            },
        }
    }
}

/// S3 settings vigil fills in when they are missing: an `http://` endpoint (a local MinIO or
/// moto) needs `aws_allow_http`, which a user who wrote `http://` clearly wants.
/// An endpoint given under one of object_store's aliases is filed under `aws_endpoint`, the
/// key delta-rs looks for to tell an S3-compatible server from AWS.
fn s3_defaults(options: &mut HashMap<String, String>) {
    if !options.contains_key("aws_endpoint")
        && let Some(alias) = ["aws_endpoint_url", "endpoint", "endpoint_url"]
            .iter()
            .find(|k| options.contains_key(**k))
    {
        let value = options.remove(*alias).expect("found above");
        options.insert("aws_endpoint".into(), value);
    }
    let endpoint = options
        .get("aws_endpoint")
        .cloned()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT").ok());
    let allow_http_set = ["aws_allow_http", "allow_http"]
        .iter()
        .any(|k| options.contains_key(*k))
        || std::env::var_os("AWS_ALLOW_HTTP").is_some();
    if endpoint.is_some_and(|e| e.starts_with("http://")) && !allow_http_set {
        options.insert("aws_allow_http".into(), "true".into());
    }
}

/// A local archive root must be a directory, or not exist yet.
fn check_dir(path: &std::path::Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(format!("{} exists and is not a directory", path.display())),
        _ => Ok(()),
    }
}

/// Checks that vigil can write `spec`'s rows into `table`: every column it has is of the
/// type vigil writes. Returns the nullable columns it lacks (to add); a missing column that
/// cannot be null is an incompatible schema.
fn check_schema(
    table: &DeltaTable,
    spec: &TableSpec,
    url: &Url,
) -> Result<Vec<deltalake::kernel::StructField>, StoreError> {
    let snapshot = table.snapshot().map_err(StoreError::delta(&spec.name))?;
    let existing = snapshot.schema();
    let mut missing = Vec::new();
    for field in spec.schema.fields() {
        let want: deltalake::kernel::DataType = field
            .data_type()
            .try_into_kernel()
            .map_err(|e| StoreError::delta(&spec.name)(e.into()))?;
        let Some(have) = existing.field(field.name()) else {
            if !field.is_nullable() {
                return Err(StoreError::IncompatibleSchema {
                    table: spec.name.clone(),
                    url: url.to_string(),
                    reason: format!("column `{}` is missing", field.name()),
                });
            }
            missing.push(deltalake::kernel::StructField::new(
                field.name(),
                want,
                true,
            ));
            continue;
        };
        if *have.data_type() != want {
            return Err(StoreError::IncompatibleSchema {
                table: spec.name.clone(),
                url: url.to_string(),
                reason: format!(
                    "column `{}` is {:?} in the table but vigil writes {:?}",
                    field.name(),
                    have.data_type(),
                    want
                ),
            });
        }
    }
    Ok(missing)
}

/// The version last committed for `app_id` in `table` (its `txn` actions), as of the table's
/// loaded snapshot.
pub async fn app_version(
    table: &DeltaTable,
    name: &str,
    app_id: &str,
) -> Result<Option<i64>, StoreError> {
    let snapshot = table.snapshot().map_err(StoreError::delta(name))?;
    snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(StoreError::delta(name))
}
