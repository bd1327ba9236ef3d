//! Hot, warm and cold: each table of the archive is up to three Delta tables, one per tier,
//! each under its own URL, and one small file at the archive root, the *layout*, says which of
//! their files a reader sees.
//!
//! ```text
//! <root>/logs                hot: what ingestion commits (read at its latest version)
//! <warm>/logs                warm: compacted days, written only by maintenance
//! <cold>/logs                cold: re-sorted, stronger compression, written only by maintenance
//! <root>/_vigil/tiers.json   the layout: the warm and cold URLs and, per table, the warm and
//!                            cold versions readers see and the hot files already moved on
//! ```
//!
//! Moving rows between two Delta tables cannot be one commit, so readers never see warm or
//! cold at their latest version: they see the version the layout names. A move writes and
//! commits the rows into the next tier first (invisible: the layout still names the old
//! version), then replaces the layout (one PUT: readers see the old tiers or the new ones,
//! never a mix), and only then removes what moved from where it was. Hot is read at its
//! latest version (ingestion keeps committing), so hot files that have moved but are not yet
//! removed from hot are listed in the layout and left out by readers. A reader reads the
//! layout, loads the tables' snapshots, and reads the layout again: if it changed in between
//! (a move ran), it starts over, so every row is seen exactly once (see [`Archive::tier_views`]).
//! Files removed from a tier stay on the store for a grace period (the vacuum's) so that a
//! query already running keeps reading them.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::{Session, TableProvider};
use deltalake::DeltaTable;
use deltalake::delta_datafusion::FileSelection;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::archive::Archive;
use crate::error::StoreError;

/// Where the layout lives, relative to the archive root.
pub const LAYOUT_PATH: &str = "_vigil/tiers.json";

/// A tier of the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Freshly flushed files, where ingestion commits.
    Hot,
    /// Compacted days.
    Warm,
    /// Re-sorted, strongly compressed days, until retention deletes them.
    Cold,
}

impl Tier {
    /// Every tier, hottest first.
    pub const ALL: [Tier; 3] = [Tier::Hot, Tier::Warm, Tier::Cold];

    /// `hot`, `warm`, `cold`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }
}

/// The archive's tier layout (`<root>/_vigil/tiers.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Grows with every change; readers compare it before and after loading the tables.
    pub generation: u64,
    /// URL of the warm tier's root.
    pub warm: String,
    /// URL of the cold tier's root.
    pub cold: String,
    /// Per table name.
    pub tables: BTreeMap<String, TableLayout>,
}

/// What readers see of one table's tiers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableLayout {
    /// The warm table's visible version; `None`: no warm table yet.
    pub warm_version: Option<u64>,
    /// The cold table's visible version; `None`: no cold table yet.
    pub cold_version: Option<u64>,
    /// Hot files (paths relative to the hot table) already moved to another tier or deleted
    /// by retention, still in hot's latest version: readers leave them out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hot_moved: Vec<String>,
}

/// One table's tiers as a reader sees them, at one consistent moment.
pub struct TierViews {
    /// The hot table at its latest version, and the files of it to leave out.
    pub hot: Option<(DeltaTable, Vec<String>)>,
    /// The warm table at the layout's version.
    pub warm: Option<DeltaTable>,
    /// The cold table at the layout's version.
    pub cold: Option<DeltaTable>,
}

/// What a [`TierViews`] reads: each tier's version and the hot files left out. Two views of
/// one table with equal keys read the same rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierKey {
    hot: Option<(Option<u64>, Vec<String>)>,
    warm: Option<Option<u64>>,
    cold: Option<Option<u64>>,
}

impl TierViews {
    /// What these views read.
    pub fn key(&self) -> TierKey {
        TierKey {
            hot: self
                .hot
                .as_ref()
                .map(|(t, moved)| (t.version(), moved.clone())),
            warm: self.warm.as_ref().map(DeltaTable::version),
            cold: self.cold.as_ref().map(DeltaTable::version),
        }
    }

    /// A DataFusion table per tier that has one, hottest first; the tables' stores are
    /// registered with `session`.
    pub async fn providers(
        &self,
        session: &dyn Session,
    ) -> Result<Vec<(Tier, Arc<dyn TableProvider>)>, StoreError> {
        let mut out = Vec::new();
        let tables = [
            (Tier::Hot, self.hot.as_ref().map(|(t, _)| t)),
            (Tier::Warm, self.warm.as_ref()),
            (Tier::Cold, self.cold.as_ref()),
        ];
        for (tier, table) in tables {
            let Some(table) = table else { continue };
            let name = table.table_url().to_string();
            let df_err = |e: datafusion::error::DataFusionError| StoreError::Delta {
                table: name.clone(),
                source: Box::new(e.into()),
            };
            table
                .update_datafusion_session(session)
                .map_err(StoreError::delta(&name))?;
            let mut builder = table.table_provider();
            if let (Tier::Hot, Some((_, moved))) = (tier, &self.hot)
                && !moved.is_empty()
            {
                let moved: std::collections::HashSet<&str> =
                    moved.iter().map(String::as_str).collect();
                let snapshot = table.snapshot().map_err(StoreError::delta(&name))?;
                let keep: Vec<String> = snapshot
                    .log_data()
                    .iter()
                    .map(|f| f.path().to_string())
                    .filter(|p| !moved.contains(p.as_str()))
                    .collect();
                builder = builder.with_file_selection(FileSelection::from_file_paths(keep));
            }
            out.push((tier, builder.await.map_err(df_err)?));
        }
        Ok(out)
    }
}

impl Archive {
    /// The archive whose root is `tier`'s root: hot is the archive itself.
    pub fn tier(&self, tier: Tier) -> Archive {
        let mut a = self.clone();
        a.root = match tier {
            Tier::Hot => self.root.clone(),
            Tier::Warm => self.warm.clone(),
            Tier::Cold => self.cold.clone(),
        };
        a
    }

    /// The root URL of a tier.
    pub fn tier_url(&self, tier: Tier) -> &Url {
        match tier {
            Tier::Hot => &self.root,
            Tier::Warm => &self.warm,
            Tier::Cold => &self.cold,
        }
    }

    /// The object store at the archive root, for the layout and other side files.
    pub(crate) fn root_store(&self) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let config = deltalake::logstore::StorageConfig::parse_options(self.options.clone())
            .map_err(StoreError::delta("_vigil"))?;
        let log_store = deltalake::logstore::logstore_for(&self.root, config)
            .map_err(StoreError::delta("_vigil"))?;
        Ok(log_store.object_store(None))
    }

    /// The layout, or `None` if maintenance never ran on this archive.
    pub async fn layout(&self) -> Result<Option<Layout>, StoreError> {
        let store = self.root_store()?;
        let bytes = match store.get(&LAYOUT_PATH.into()).await {
            Ok(got) => got.bytes().await,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => Err(e),
        }
        .map_err(|e| StoreError::delta("_vigil")(e.into()))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::InvalidUrl {
                url: format!("{}{LAYOUT_PATH}", self.root),
                reason: format!("the tier layout cannot be read: {e}"),
            })
    }

    /// Replaces the layout in one PUT. Only maintenance writes it, one process at a time
    /// (see [`Archive::lock_maintenance`]).
    pub(crate) async fn write_layout(&self, layout: &Layout) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(layout).expect("a layout serialises");
        self.root_store()?
            .put_opts(
                &LAYOUT_PATH.into(),
                bytes.into(),
                PutOptions::from(PutMode::Overwrite),
            )
            .await
            .map(|_| ())
            .map_err(|e| StoreError::delta("_vigil")(e.into()))
    }

    /// The archive with the warm and cold URLs its layout records, if it has one: a reader
    /// given only the root sees every tier. Fails if the archive's own settings name other
    /// URLs than the layout (tiers cannot be moved by changing the configuration).
    pub async fn with_recorded_tiers(mut self) -> Result<(Archive, Option<Layout>), StoreError> {
        let Some(layout) = self.layout().await? else {
            return Ok((self, None));
        };
        let recorded = |u: &str| {
            Url::parse(u).map_err(|e| StoreError::InvalidUrl {
                url: u.into(),
                reason: format!("in {LAYOUT_PATH}: {e}"),
            })
        };
        let (warm, cold) = (recorded(&layout.warm)?, recorded(&layout.cold)?);
        if self.tiers_configured && (warm != self.warm || cold != self.cold) {
            return Err(StoreError::InvalidUrl {
                url: self.root.to_string(),
                reason: format!(
                    "the archive's tiers are warm = {warm}, cold = {cold} (recorded in {LAYOUT_PATH}), not warm = {}, cold = {} as configured; moving a tier is not supported",
                    self.warm, self.cold
                ),
            });
        }
        self.warm = warm;
        self.cold = cold;
        Ok((self, Some(layout)))
    }

    /// One table's tiers as the layout says a reader sees them. Reads the layout, loads the
    /// tables, and reads the layout again, starting over if a move ran in between: the views
    /// hold each row exactly once.
    pub async fn tier_views(&self, table: &str) -> Result<TierViews, StoreError> {
        loop {
            let before = self.layout().await?;
            let views = self.load_views(table, before.as_ref()).await?;
            let after = self.layout().await?;
            if before.as_ref().map(|l| l.generation) == after.as_ref().map(|l| l.generation) {
                return Ok(views);
            }
            tracing::debug!(
                table,
                "the tier layout changed while loading; loading again"
            );
        }
    }

    async fn load_views(
        &self,
        table: &str,
        layout: Option<&Layout>,
    ) -> Result<TierViews, StoreError> {
        let hot = self.open(table).await?;
        let Some(entry) = layout.and_then(|l| l.tables.get(table)) else {
            return Ok(TierViews {
                hot: hot.map(|t| (t, Vec::new())),
                warm: None,
                cold: None,
            });
        };
        let pinned = |tier: Tier, version: Option<u64>| async move {
            match version {
                None => Ok(None),
                Some(v) => self.tier(tier).open_at(table, v).await.map(Some),
            }
        };
        Ok(TierViews {
            hot: hot.map(|t| (t, entry.hot_moved.clone())),
            warm: pinned(Tier::Warm, entry.warm_version).await?,
            cold: pinned(Tier::Cold, entry.cold_version).await?,
        })
    }

    /// A table at `version`.
    pub(crate) async fn open_at(
        &self,
        table: &str,
        version: u64,
    ) -> Result<DeltaTable, StoreError> {
        // A version never changes: a kept one is used as it is. One version is kept per table.
        let url = self.table_url(table);
        let key = format!("{url}@pinned");
        if let Some(kept) = self.cached(&key)
            && kept.version() == Some(version)
        {
            return Ok(kept);
        }
        let t = deltalake::DeltaTableBuilder::from_url(url)
            .map_err(StoreError::delta(table))?
            .with_storage_options(self.options.clone())
            .with_version(version)
            .load()
            .await
            .map_err(StoreError::delta(table))?;
        self.keep(key, &t);
        Ok(t)
    }
}
