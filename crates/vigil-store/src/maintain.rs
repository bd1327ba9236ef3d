//! Maintenance: moving days from hot to warm to cold, deleting what is past retention, and
//! vacuuming removed files once no running reader can need them. The layout protocol that
//! keeps every step invisible until it is whole is in [`crate::tiers`].
//!
//! Which tier a row belongs in is decided by its table's date partition (the event date):
//! a day moves once all of it is older than the tier's age (`now - hot` for warm, `now - warm`
//! for cold), and is deleted, whole, once all of it is older than `now - cold`. A record that
//! arrives late with an old event time lands in hot like any other and moves on (or is
//! deleted) at the next maintenance, so it neither sits in the wrong tier for long nor dodges
//! retention; records dated in the future are refused at decode (`decode.max_future`), so none
//! can hide in hot past its time.

use std::collections::HashSet;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, NaiveDate, Utc};
use deltalake::DeltaTable;
use deltalake::delta_datafusion::FileSelection;
use deltalake::kernel::Action;
use deltalake::kernel::Remove;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::protocol::DeltaOperation;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use crate::archive::Archive;
use crate::error::StoreError;
use crate::retention::Retention;
use crate::spec::TableSpec;
use crate::tiers::{Layout, TableLayout, Tier};
use crate::writer::{FlushPolicy, TableWriter};

/// zstd level of cold files: read rarely, kept long, so bytes matter more than write time.
pub const COLD_ZSTD_LEVEL: i32 = 9;

/// Where the maintenance lock lives, relative to the archive root.
const LOCK_PATH: &str = "_vigil/maintain.lock";

/// How long a maintenance lock holds if its holder dies without releasing it.
const LOCK_TTL: Duration = Duration::from_secs(3600);

/// Settings of one maintenance pass.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    /// The tier ages and the grace before a removed file is deleted (longer than any query
    /// runs; counted on the wall clock, whatever `now` says).
    pub retention: Retention,
    /// The time the ages count back from (the wall clock, or `--now` for tests and
    /// backfills).
    pub now: DateTime<Utc>,
    /// Rows per compacted file (and per commit) when a tier is written.
    pub target_rows: usize,
    /// Threads a compacted file's column chunks are encoded on.
    pub threads: usize,
}

impl MaintainOptions {
    /// `retention` at `now`, a million rows per compacted file, encoded on one thread.
    pub fn new(retention: Retention, now: DateTime<Utc>) -> Self {
        Self {
            retention,
            now,
            target_rows: 1_000_000,
            threads: 1,
        }
    }
}

/// What a maintenance pass did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableReport {
    /// Table name.
    pub table: String,
    /// Rows moved from hot to warm.
    pub to_warm: u64,
    /// Rows moved to cold (from hot or warm).
    pub to_cold: u64,
    /// Files deleted from any tier by retention (their days were past `cold`).
    pub expired_files: usize,
    /// Files deleted from the store by the vacuums.
    pub vacuumed_files: usize,
}

/// The boundaries of one pass: days before each are past that age.
#[derive(Debug, Clone, Copy)]
struct Cuts {
    hot: NaiveDate,
    warm: NaiveDate,
    drop: NaiveDate,
}

impl Cuts {
    fn new(opts: &MaintainOptions) -> Self {
        let before = |age: Duration| {
            (opts.now - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX))
                .date_naive()
        };
        Self {
            hot: before(opts.retention.hot),
            warm: before(opts.retention.warm),
            drop: before(opts.retention.cold),
        }
    }
}

/// One active file of a table.
struct File {
    path: String,
    date: Option<NaiveDate>,
    remove: Remove,
    /// Rows, from the file's statistics.
    rows: Option<usize>,
}

/// The files a pass takes out of one tier, by where they go. A day leaves its tier once all of
/// it is older than the tier's age, for the next tier its age still fits, or for nowhere once
/// past retention.
struct Moves<'a> {
    to_warm: Vec<&'a File>,
    to_cold: Vec<&'a File>,
    expired: Vec<&'a File>,
}

impl<'a> Moves<'a> {
    fn of(files: &'a [File], from: Tier, cuts: Cuts) -> Self {
        let leaves = match from {
            Tier::Hot => cuts.hot,
            Tier::Warm => cuts.warm,
            Tier::Cold => cuts.drop,
        };
        let mut m = Self {
            to_warm: Vec::new(),
            to_cold: Vec::new(),
            expired: Vec::new(),
        };
        for f in files {
            match f.date {
                Some(d) if d >= leaves => {}
                None => {}
                Some(d) if from == Tier::Hot && d >= cuts.warm => m.to_warm.push(f),
                Some(d) if from != Tier::Cold && d >= cuts.drop => m.to_cold.push(f),
                Some(_) => m.expired.push(f),
            }
        }
        m
    }

    fn is_empty(&self) -> bool {
        self.to_warm.is_empty() && self.to_cold.is_empty() && self.expired.is_empty()
    }

    /// Every file leaving the tier.
    fn all(&self) -> impl Iterator<Item = &'a File> + '_ {
        (self.to_warm.iter())
            .chain(&self.to_cold)
            .chain(&self.expired)
            .copied()
    }
}

/// The rows of `files`, from their statistics.
fn rows(files: &[&File]) -> u64 {
    files.iter().filter_map(|f| f.rows).map(|r| r as u64).sum()
}

/// The maintenance lock's content.
#[derive(Debug, Serialize, Deserialize)]
struct Lock {
    holder: String,
    expires_ms: i64,
}

impl Archive {
    /// One maintenance pass over `specs`' tables: recovers from a pass that died half-way,
    /// moves days from hot to warm and from warm to cold, deletes days past retention, and
    /// vacuums files removed more than `grace` ago. Only one pass runs at a time per archive
    /// (a lock object at the root, created with a conditional PUT); another is refused with
    /// [`StoreError::MaintenanceBusy`].
    pub async fn maintain(
        &self,
        specs: &[TableSpec],
        opts: &MaintainOptions,
    ) -> Result<Vec<TableReport>, StoreError> {
        self.check_commits()?;
        let (archive, layout) = self.clone().with_recorded_tiers().await?;
        let lock = archive.lock_maintenance().await?;
        let result = archive.maintain_locked(specs, opts, layout).await;
        archive.unlock_maintenance(&lock).await;
        result
    }

    async fn maintain_locked(
        &self,
        specs: &[TableSpec],
        opts: &MaintainOptions,
        layout: Option<Layout>,
    ) -> Result<Vec<TableReport>, StoreError> {
        let mut layout = layout.unwrap_or_else(|| Layout {
            generation: 0,
            warm: self.warm.to_string(),
            cold: self.cold.to_string(),
            tables: Default::default(),
        });
        let cuts = Cuts::new(opts);
        let mut reports = Vec::new();
        for spec in specs {
            if self.open(&spec.name).await?.is_none() && !layout.tables.contains_key(&spec.name) {
                continue;
            }
            let mut report = TableReport {
                table: spec.name.clone(),
                ..TableReport::default()
            };
            self.recover(spec, &mut layout).await?;
            self.move_hot(spec, cuts, opts, &mut layout, &mut report)
                .await?;
            self.move_warm(spec, cuts, opts, &mut layout, &mut report)
                .await?;
            self.expire_cold(spec, cuts, &mut layout, &mut report)
                .await?;
            self.vacuum(spec, opts, &mut layout, &mut report).await?;
            reports.push(report);
        }
        Ok(reports)
    }

    /// Publishes a new layout: one PUT, the moment readers switch.
    async fn publish(&self, layout: &mut Layout) -> Result<(), StoreError> {
        layout.generation += 1;
        self.write_layout(layout).await
    }

    /// Finishes what a pass that died left: hot files it published as moved are removed from
    /// hot, and commits it made to warm or cold after the versions readers see are undone.
    async fn recover(&self, spec: &TableSpec, layout: &mut Layout) -> Result<(), StoreError> {
        let name = spec.name.as_str();
        let entry = layout.tables.get(name).cloned().unwrap_or_default();
        if !entry.hot_moved.is_empty() {
            if let Some(mut hot) = self.open(name).await? {
                let moved: HashSet<&str> = entry.hot_moved.iter().map(String::as_str).collect();
                let removes = files(&hot, name)?
                    .into_iter()
                    .filter(|f| moved.contains(f.path.as_str()))
                    .map(|f| f.remove)
                    .collect();
                remove_files(&mut hot, name, removes).await?;
            }
            entry_mut(layout, name).hot_moved.clear();
            self.publish(layout).await?;
        }
        for (tier, version) in [
            (Tier::Warm, entry.warm_version),
            (Tier::Cold, entry.cold_version),
        ] {
            let Some(table) = self.tier(tier).open(name).await? else {
                continue;
            };
            let latest = table.version().unwrap_or(0);
            let visible = version.unwrap_or(0);
            if latest > visible {
                tracing::warn!(
                    table = name,
                    tier = tier.name(),
                    latest,
                    visible,
                    "undoing the commits of a maintenance pass that did not finish"
                );
                table
                    .restore()
                    .with_version_to_restore(visible)
                    .await
                    .map_err(StoreError::delta(name))?;
            }
        }
        Ok(())
    }

    /// Hot days past `hot` go to warm, those past `warm` straight to cold (late records),
    /// those past retention nowhere.
    async fn move_hot(
        &self,
        spec: &TableSpec,
        cuts: Cuts,
        opts: &MaintainOptions,
        layout: &mut Layout,
        report: &mut TableReport,
    ) -> Result<(), StoreError> {
        let name = spec.name.as_str();
        let Some(mut hot) = self.open(name).await? else {
            return Ok(());
        };
        let files = files(&hot, name)?;
        let moves = Moves::of(&files, Tier::Hot, cuts);
        if moves.is_empty() {
            return Ok(());
        }
        check_columns(&hot, spec)?;
        report.expired_files += moves.expired.len();
        let copied = self
            .copy(&hot, &moves.to_warm, spec, Tier::Warm, opts)
            .await?;
        if let Some((version, rows)) = copied {
            entry_mut(layout, name).warm_version = Some(version);
            report.to_warm += rows;
        }
        let copied = self
            .copy(&hot, &moves.to_cold, spec, Tier::Cold, opts)
            .await?;
        if let Some((version, rows)) = copied {
            entry_mut(layout, name).cold_version = Some(version);
            report.to_cold += rows;
        }
        // The switch: readers now see the copies and leave the originals out ...
        entry_mut(layout, name).hot_moved = moves.all().map(|f| f.path.clone()).collect();
        self.publish(layout).await?;
        // ... which can then leave hot for good.
        let removes = moves.all().map(|f| f.remove.clone()).collect();
        remove_files(&mut hot, name, removes).await?;
        entry_mut(layout, name).hot_moved.clear();
        self.publish(layout).await
    }

    /// Warm days past `warm` go to cold, those past retention nowhere.
    async fn move_warm(
        &self,
        spec: &TableSpec,
        cuts: Cuts,
        opts: &MaintainOptions,
        layout: &mut Layout,
        report: &mut TableReport,
    ) -> Result<(), StoreError> {
        let name = spec.name.as_str();
        let Some(version) = layout.tables.get(name).and_then(|e| e.warm_version) else {
            return Ok(());
        };
        let mut warm = self.tier(Tier::Warm).open_at(name, version).await?;
        let files = files(&warm, name)?;
        let moves = Moves::of(&files, Tier::Warm, cuts);
        if moves.is_empty() {
            return Ok(());
        }
        report.expired_files += moves.expired.len();
        let copied = self
            .copy(&warm, &moves.to_cold, spec, Tier::Cold, opts)
            .await?;
        if let Some((version, rows)) = copied {
            entry_mut(layout, name).cold_version = Some(version);
            report.to_cold += rows;
        }
        let removes = moves.all().map(|f| f.remove.clone()).collect();
        let version = remove_files(&mut warm, name, removes).await?;
        // Both tiers switch in the one PUT.
        entry_mut(layout, name).warm_version = Some(version);
        self.publish(layout).await
    }

    /// Cold days past retention are deleted.
    async fn expire_cold(
        &self,
        spec: &TableSpec,
        cuts: Cuts,
        layout: &mut Layout,
        report: &mut TableReport,
    ) -> Result<(), StoreError> {
        let name = spec.name.as_str();
        let Some(version) = layout.tables.get(name).and_then(|e| e.cold_version) else {
            return Ok(());
        };
        let mut cold = self.tier(Tier::Cold).open_at(name, version).await?;
        let files = files(&cold, name)?;
        let moves = Moves::of(&files, Tier::Cold, cuts);
        if moves.is_empty() {
            return Ok(());
        }
        report.expired_files += moves.expired.len();
        let removes = moves.all().map(|f| f.remove.clone()).collect();
        let version = remove_files(&mut cold, name, removes).await?;
        entry_mut(layout, name).cold_version = Some(version);
        self.publish(layout).await
    }

    /// Deletes, in every tier, the files removed more than `grace` ago (the removes' own
    /// wall-clock times); a vacuum's log entries move warm and cold on, so the layout follows.
    async fn vacuum(
        &self,
        spec: &TableSpec,
        opts: &MaintainOptions,
        layout: &mut Layout,
        report: &mut TableReport,
    ) -> Result<(), StoreError> {
        let name = spec.name.as_str();
        let mut moved = false;
        for tier in Tier::ALL {
            let entry = layout.tables.get(name).cloned().unwrap_or_default();
            let Some(table) = self.tier_table(tier, name, &entry).await? else {
                continue;
            };
            let before = table.version();
            let (table, deleted) = vacuum(table, name, opts, false).await?;
            report.vacuumed_files += deleted;
            if table.version() != before {
                let e = entry_mut(layout, name);
                match tier {
                    Tier::Hot => {}
                    Tier::Warm => {
                        e.warm_version = table.version();
                        moved = true;
                    }
                    Tier::Cold => {
                        e.cold_version = table.version();
                        moved = true;
                    }
                }
            }
        }
        if moved {
            self.publish(layout).await?;
        }
        Ok(())
    }

    /// A table's version in `tier` that readers see: hot's latest, warm's and cold's as the
    /// layout records them.
    async fn tier_table(
        &self,
        tier: Tier,
        name: &str,
        entry: &TableLayout,
    ) -> Result<Option<DeltaTable>, StoreError> {
        let version = match tier {
            Tier::Hot => return self.open(name).await,
            Tier::Warm => entry.warm_version,
            Tier::Cold => entry.cold_version,
        };
        match version {
            Some(v) => Ok(Some(self.tier(tier).open_at(name, v).await?)),
            None => Ok(None),
        }
    }

    /// What one pass would do now, without doing it (`vigil maintain --dry-run`): per table,
    /// the rows that would move to warm and to cold (from the files' statistics), the files
    /// retention would delete and those vacuum would. Nothing is written and no lock taken;
    /// the moves are chosen as a pass chooses them ([`Moves`]).
    pub async fn plan_maintenance(
        &self,
        specs: &[TableSpec],
        opts: &MaintainOptions,
    ) -> Result<Vec<TableReport>, StoreError> {
        let (archive, layout) = self.clone().with_recorded_tiers().await?;
        let cuts = Cuts::new(opts);
        let mut reports = Vec::new();
        for spec in specs {
            let name = spec.name.as_str();
            let entry = (layout.as_ref())
                .and_then(|l| l.tables.get(name))
                .cloned()
                .unwrap_or_default();
            let mut report = TableReport {
                table: spec.name.clone(),
                ..TableReport::default()
            };
            let mut found = false;
            for tier in Tier::ALL {
                let Some(table) = archive.tier_table(tier, name, &entry).await? else {
                    continue;
                };
                found = true;
                let files = files(&table, name)?;
                let moves = Moves::of(&files, tier, cuts);
                report.to_warm += rows(&moves.to_warm);
                report.to_cold += rows(&moves.to_cold);
                report.expired_files += moves.expired.len();
                report.vacuumed_files += vacuum(table, name, opts, true).await?.1;
            }
            if found {
                reports.push(report);
            }
        }
        Ok(reports)
    }

    /// Copies the rows of `files` of `from` into `to`'s table, in compacted, sorted files;
    /// returns the version of its last commit and the rows copied (`None` for no files).
    async fn copy(
        &self,
        from: &DeltaTable,
        files: &[&File],
        spec: &TableSpec,
        to: Tier,
        opts: &MaintainOptions,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        if files.is_empty() {
            return Ok(None);
        }
        let name = spec.name.as_str();
        let policy = FlushPolicy {
            max_rows: opts.target_rows,
            max_bytes: 512 << 20,
            interval: Duration::MAX,
        };
        let mut writer = TableWriter::open(&self.tier(to), spec.clone(), policy).await?;
        writer.set_tier(to);
        writer.set_threads(opts.threads);
        if to == Tier::Cold {
            writer.set_writer_properties(spec.writer_properties_at(COLD_ZSTD_LEVEL));
        }
        let mut rows = 0u64;
        let mut last = writer.table().version().unwrap_or(0);
        let mut batches = scan_files(from, name, files, &spec.schema).await?;
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            writer.push(batch);
            if writer.is_due()
                && let Some(c) = writer.commit(&[]).await?
            {
                last = c.version;
            }
        }
        if let Some(c) = writer.commit(&[]).await? {
            last = c.version;
        }
        Ok(Some((last, rows)))
    }

    /// Takes the maintenance lock, or fails with [`StoreError::MaintenanceBusy`] while another
    /// pass holds it. The lock is an object created with a conditional PUT; one left by a pass
    /// that died expires after an hour.
    pub async fn lock_maintenance(&self) -> Result<String, StoreError> {
        let store = self.root_store()?;
        let err = |e: object_store::Error| StoreError::delta("_vigil")(e.into());
        let holder = format!(
            "{}:{}:{}",
            hostname(),
            std::process::id(),
            uuid::Uuid::new_v4()
        );
        for _ in 0..2 {
            let lock = Lock {
                holder: holder.clone(),
                expires_ms: Utc::now().timestamp_millis() + LOCK_TTL.as_millis() as i64,
            };
            let bytes = serde_json::to_vec(&lock).expect("a lock serialises");
            match store
                .put_opts(
                    &LOCK_PATH.into(),
                    bytes.into(),
                    PutOptions::from(PutMode::Create),
                )
                .await
            {
                Ok(_) => return Ok(holder),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(err(e)),
            }
            let held: Option<Lock> = match store.get(&LOCK_PATH.into()).await {
                Ok(got) => serde_json::from_slice(&got.bytes().await.map_err(err)?).ok(),
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(err(e)),
            };
            match held {
                Some(l) if l.expires_ms > Utc::now().timestamp_millis() => {
                    return Err(StoreError::MaintenanceBusy {
                        url: self.root.to_string(),
                        holder: l.holder,
                    });
                }
                // Expired or unreadable: the holder died. Take it over.
                _ => {
                    store.delete(&LOCK_PATH.into()).await.map_err(err)?;
                }
            }
        }
        Err(StoreError::MaintenanceBusy {
            url: self.root.to_string(),
            holder: "another pass that took the lock first".into(),
        })
    }

    /// Releases the lock if `holder` still holds it.
    pub async fn unlock_maintenance(&self, holder: &str) {
        let Ok(store) = self.root_store() else { return };
        if let Ok(got) = store.get(&LOCK_PATH.into()).await
            && let Ok(bytes) = got.bytes().await
            && serde_json::from_slice::<Lock>(&bytes).is_ok_and(|l| l.holder == holder)
            && let Err(e) = store.delete(&LOCK_PATH.into()).await
        {
            tracing::warn!(error = %e, "cannot release the maintenance lock; it expires in an hour");
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "vigil".into())
}

fn entry_mut<'a>(layout: &'a mut Layout, table: &str) -> &'a mut TableLayout {
    layout.tables.entry(table.to_string()).or_default()
}

/// Vacuums `table`'s files removed more than `grace` ago (the removes' own wall-clock times);
/// with `dry_run`, only counts them. Returns the table after and the files deleted.
async fn vacuum(
    table: DeltaTable,
    name: &str,
    opts: &MaintainOptions,
    dry_run: bool,
) -> Result<(DeltaTable, usize), StoreError> {
    let grace = chrono::Duration::from_std(opts.retention.grace).unwrap_or(chrono::Duration::MAX);
    let (table, metrics) = table
        .vacuum()
        .with_retention_period(grace)
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Lite)
        .with_dry_run(dry_run)
        .await
        .map_err(StoreError::delta(name))?;
    Ok((table, metrics.files_deleted.len()))
}

/// The active files of a table's loaded version, with their date partition.
fn files(table: &DeltaTable, name: &str) -> Result<Vec<File>, StoreError> {
    let snapshot = table.snapshot().map_err(StoreError::delta(name))?;
    Ok(snapshot
        .log_data()
        .iter()
        .map(|f| {
            let date = f
                .partition_values_map()
                .get("date")
                .cloned()
                .flatten()
                .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok());
            File {
                path: f.path().to_string(),
                date,
                remove: f.remove_action(true),
                rows: f.num_records(),
            }
        })
        .collect())
}

/// Every column of the table must be one the spec writes, or copying would drop it.
fn check_columns(table: &DeltaTable, spec: &TableSpec) -> Result<(), StoreError> {
    let snapshot = table.snapshot().map_err(StoreError::delta(&spec.name))?;
    for field in snapshot.schema().fields() {
        if spec.schema.field_with_name(field.name()).is_err() {
            return Err(StoreError::IncompatibleSchema {
                table: spec.name.clone(),
                url: table.table_url().to_string(),
                reason: format!(
                    "column `{}` is in the archive but not in the pipeline's schema; maintain with the pipeline file that writes it, so no column is lost when days move",
                    field.name()
                ),
            });
        }
    }
    Ok(())
}

/// Commits the removal of files (a delete without a predicate: concurrent appends do not
/// conflict with it); returns the new version.
async fn remove_files(
    table: &mut DeltaTable,
    name: &str,
    removes: Vec<Remove>,
) -> Result<u64, StoreError> {
    let snapshot = table.snapshot().map_err(StoreError::delta(name))?;
    let finalized = CommitBuilder::from(CommitProperties::default())
        .with_actions(removes.into_iter().map(Action::Remove).collect())
        .build(
            Some(snapshot),
            table.log_store(),
            DeltaOperation::Delete { predicate: None },
        )
        .await
        .map_err(StoreError::delta(name))?;
    let version = finalized.version();
    table.state = Some(finalized.snapshot());
    Ok(version)
}

/// The rows of some files of a table, as batches of `schema`.
async fn scan_files(
    table: &DeltaTable,
    name: &str,
    files: &[&File],
    schema: &SchemaRef,
) -> Result<
    futures::stream::BoxStream<'static, Result<arrow::array::RecordBatch, StoreError>>,
    StoreError,
> {
    let selection = FileSelection::from_file_paths(files.iter().map(|f| f.path.clone()));
    crate::scan::scan(table, name, Some(selection), None, schema.clone()).await
}
