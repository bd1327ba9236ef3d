//! The archive: a root URL under which each table is a Delta table.

use std::collections::{BTreeMap, HashMap};

use deltalake::DeltaTable;
use deltalake::kernel::{StructType, engine::arrow_conversion::TryIntoKernel};
use deltalake::protocol::SaveMode;
use url::Url;

use crate::error::StoreError;
use crate::spec::TableSpec;

/// The root of an archive: `<root>/logs`, `<root>/metrics`, `<root>/dead_letters`, ...
#[derive(Debug, Clone)]
pub struct Archive {
    root: Url,
    options: HashMap<String, String>,
}

impl Archive {
    /// An archive at `url`: a plain path, a `file://` URL, or an `s3://` URL configured by
    /// `options` (`aws_endpoint`, `aws_region`, `aws_access_key_id`, ...; `AWS_*` environment
    /// variables are read too). Nothing is created until a table is written.
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
        Ok(Self {
            root,
            options: options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
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

    /// Opens a table; `None` if it does not exist yet.
    pub async fn open(&self, name: &str) -> Result<Option<DeltaTable>, StoreError> {
        let url = self.table_url(name);
        if url.scheme() == "file" {
            let log = url.to_file_path().expect("file URL").join("_delta_log");
            if !log.is_dir() {
                return Ok(None);
            }
        }
        match deltalake::open_table_with_storage_options(url, self.options.clone()).await {
            Ok(t) => Ok(Some(t)),
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
    pub async fn open_or_create(&self, spec: &TableSpec) -> Result<DeltaTable, StoreError> {
        if let Some(t) = self.open(&spec.name).await? {
            check_schema(&t, spec, &self.table_url(&spec.name))?;
            return Ok(t);
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

/// A local archive root must be a directory, or not exist yet.
fn check_dir(path: &std::path::Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(format!("{} exists and is not a directory", path.display())),
        _ => Ok(()),
    }
}

/// Columns vigil writes must exist in the table with the same type.
fn check_schema(table: &DeltaTable, spec: &TableSpec, url: &Url) -> Result<(), StoreError> {
    let snapshot = table.snapshot().map_err(StoreError::delta(&spec.name))?;
    let existing = snapshot.schema();
    for field in spec.schema.fields() {
        let Some(have) = existing.field(field.name()) else {
            return Err(StoreError::IncompatibleSchema {
                table: spec.name.clone(),
                url: url.to_string(),
                reason: format!("column `{}` is missing", field.name()),
            });
        };
        let want: deltalake::kernel::DataType = field
            .data_type()
            .try_into_kernel()
            .map_err(|e| StoreError::delta(&spec.name)(e.into()))?;
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
    Ok(())
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
