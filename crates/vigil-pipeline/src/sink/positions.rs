//! The positions a sink has buffered and not committed, per partition: what each records
//! table's next commit records as `txn` actions, and the dead-letter table's own.
//!
//! Dead letters live in a table of their own, so a batch is two commits: dead letters first,
//! each partition's `txn` there being the offset after its last dead letter, then the records
//! table. A crash between the two re-reads the batch; dead letters below the offset the
//! dead-letter table records are dropped instead of written twice.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::Int64Type;
use vigil_core::Partition;
use vigil_core::schema::{RecordKind, dead};
use vigil_store::AppTxn;

use crate::source::CheckpointDelta;

/// A partition's uncommitted move.
#[derive(Debug, Clone)]
pub(super) struct Move {
    /// The source it came from.
    pub(super) origin: u32,
    /// The records table it is committed with.
    pub(super) table: RecordKind,
    /// Where the table records the partition now (as the source last knew).
    pub(super) from: Option<i64>,
    /// Where the commit moves it.
    pub(super) to: i64,
}

/// Uncommitted positions and what the dead-letter table is known to hold.
#[derive(Default)]
pub(super) struct Positions {
    moves: BTreeMap<Partition, Move>,
    /// The dead-letter table's recorded version per partition, read once per assignment.
    dead_archived: HashMap<Partition, Option<i64>>,
    /// Offset after the last dead letter buffered, per partition.
    dead_moves: BTreeMap<Partition, i64>,
    /// When the oldest uncommitted move arrived.
    since: Option<Instant>,
}

impl Positions {
    /// Records a batch's delta from source `origin`, whose rows go to `table`.
    pub(super) fn advance(&mut self, origin: u32, table: RecordKind, delta: &CheckpointDelta) {
        self.since.get_or_insert_with(Instant::now);
        match self.moves.get_mut(&delta.partition) {
            Some(m) => {
                debug_assert_eq!(Some(m.to), delta.from, "deltas of a partition chain");
                m.to = delta.to;
            }
            None => {
                self.moves.insert(
                    delta.partition.clone(),
                    Move {
                        origin,
                        table,
                        from: delta.from,
                        to: delta.to,
                    },
                );
            }
        }
    }

    /// When the oldest uncommitted move arrived, if any.
    pub(super) fn oldest(&self) -> Option<Instant> {
        self.since
    }

    /// Whether the dead-letter table's version for `p` is known.
    pub(super) fn knows_dead(&self, p: &Partition) -> bool {
        self.dead_archived.contains_key(p)
    }

    /// Notes the dead-letter table's version for `p`.
    pub(super) fn set_dead_archived(&mut self, p: Partition, version: Option<i64>) {
        self.dead_archived.insert(p, version);
    }

    /// Drops the dead letters of `p` the archive already has and notes the offset after the
    /// last one kept.
    pub(super) fn new_dead_letters(&mut self, p: &Partition, batch: RecordBatch) -> RecordBatch {
        let archived = self.dead_archived.get(p).copied().flatten();
        let offsets = batch
            .column(
                batch
                    .schema()
                    .index_of(dead::OFFSET)
                    .expect("dead-letter schema"),
            )
            .as_primitive::<Int64Type>()
            .clone();
        let keep: BooleanArray = offsets
            .iter()
            .map(|o| Some(archived.is_none_or(|next| o.unwrap_or(0) >= next)))
            .collect();
        if let Some(last) = offsets
            .iter()
            .zip(keep.values())
            .filter_map(|(o, k)| k.then_some(o?))
            .max()
        {
            let next = self.dead_moves.entry(p.clone()).or_insert(0);
            *next = (*next).max(last + 1);
            self.since.get_or_insert_with(Instant::now);
        }
        if keep.true_count() == keep.len() {
            return batch;
        }
        arrow::compute::filter_record_batch(&batch, &keep).expect("a mask as long as the batch")
    }

    /// The dead-letter table's transactions for the next commit.
    pub(super) fn dead_txns(&self) -> Vec<AppTxn> {
        self.dead_moves
            .iter()
            .map(|(p, &to)| AppTxn {
                app_id: p.app_id(),
                from: self.dead_archived.get(p).copied().flatten(),
                to,
            })
            .collect()
    }

    /// The dead-letter commit succeeded.
    pub(super) fn dead_committed(&mut self) {
        let moved = std::mem::take(&mut self.dead_moves);
        self.dead_archived
            .extend(moved.into_iter().map(|(p, to)| (p, Some(to))));
    }

    /// The records table `table`'s transactions for the next commit, with their partitions.
    pub(super) fn txns(&self, table: RecordKind) -> Vec<(Partition, u32, AppTxn)> {
        self.moves
            .iter()
            .filter(|(_, m)| m.table == table)
            .map(|(p, m)| {
                let txn = AppTxn {
                    app_id: p.app_id(),
                    from: m.from,
                    to: m.to,
                };
                (p.clone(), m.origin, txn)
            })
            .collect()
    }

    /// The records table `table` committed its moves.
    pub(super) fn committed(&mut self, table: RecordKind) {
        self.moves.retain(|_, m| m.table != table);
        if self.moves.is_empty() && self.dead_moves.is_empty() {
            self.since = None;
        }
    }

    /// Forgets everything about `partitions` (revoked, or fenced): their moves were never
    /// committed, and the dead-letter table is read again when they come back.
    pub(super) fn forget<'a>(&mut self, partitions: impl IntoIterator<Item = &'a Partition>) {
        for p in partitions {
            self.moves.remove(p);
            self.dead_moves.remove(p);
            self.dead_archived.remove(p);
        }
        if self.moves.is_empty() && self.dead_moves.is_empty() {
            self.since = None;
        }
    }

    /// The partitions of `origin` with an uncommitted move.
    pub(super) fn partitions_of(&self, origin: u32) -> Vec<(Partition, RecordKind)> {
        self.moves
            .iter()
            .filter(|(_, m)| m.origin == origin)
            .map(|(p, m)| (p.clone(), m.table))
            .collect()
    }
}
