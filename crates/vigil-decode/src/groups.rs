//! Column builders per service.
//!
//! The decoder keeps one set of builders per `service` and emits one batch per service, each
//! in input order. Telemetry arrives in time order per service, so each batch is already in
//! the archive's sort order (service, then time) and the writer can encode it as it is,
//! without gathering rows from many batches into a sorted copy.
//!
//! Memory is bounded whatever the input: at most [`MAX_GROUPS`] services get builders of
//! their own per batch (the rest share one overflow group, which the writer sorts like any
//! mixed batch, and [`Groups::overflowed`] counts), and a new group starts with a share of
//! the previous batch's size, not all of it.

use std::collections::HashMap;

use arrow::array::{ArrayBuilder, RecordBatch, StringBuilder};
use foldhash::fast::RandomState;

use crate::tape::key_eq;

/// The builders of one group.
pub(crate) trait Columns {
    /// Rows appended since the last finish.
    fn len(&self) -> usize;
    /// Takes the rows as a batch; the builders are left empty but sized for a batch like
    /// this one, so the next does not grow them by repeated reallocation.
    fn finish(&mut self) -> RecordBatch;
}

/// Services with builders of their own per batch; rows of further services share one
/// overflow group.
pub(crate) const MAX_GROUPS: usize = 1024;

/// Builders keyed by service, created on first sight.
pub(crate) struct Groups<C> {
    index: HashMap<Box<str>, usize, RandomState>,
    groups: Vec<(Box<str>, C)>,
    /// Rows of services beyond [`MAX_GROUPS`], mixed.
    overflow: Option<C>,
    /// Rows that went to the overflow group, since the decoder was created.
    overflowed: u64,
    /// The group used last: consecutive records often share a service.
    last: usize,
}

impl<C: Columns> Groups<C> {
    pub(crate) fn new() -> Self {
        Self {
            index: HashMap::default(),
            groups: Vec::new(),
            overflow: None,
            overflowed: 0,
            last: usize::MAX,
        }
    }

    /// The builders for `key`, made by `make` the first time; `make` is given the rows a new
    /// group should have room for, out of `hint` (the rows of the previous batch's largest):
    /// a share that shrinks with the number of groups, so many new services cannot each
    /// reserve a whole batch.
    pub(crate) fn get(&mut self, key: &str, hint: usize, make: impl FnOnce(usize) -> C) -> &mut C {
        let same =
            (self.groups.get(self.last)).is_some_and(|(k, _)| key_eq(k.as_bytes(), key.as_bytes()));
        if !same {
            self.last = match self.index.get(key) {
                Some(&i) => i,
                None if self.groups.len() >= MAX_GROUPS => {
                    let rows = (hint / MAX_GROUPS).max(16);
                    return self.overflow.get_or_insert_with(|| make(rows));
                }
                None => {
                    let rows = (hint / (self.groups.len() + 1)).max(16);
                    self.groups.push((key.into(), make(rows)));
                    self.index.insert(key.into(), self.groups.len() - 1);
                    self.groups.len() - 1
                }
            };
        }
        &mut self.groups[self.last].1
    }

    /// Rows that went to the overflow group because a batch had more than [`MAX_GROUPS`]
    /// services, since the decoder was created.
    pub(crate) fn overflowed(&self) -> u64 {
        // Counted from the rows the group holds, not per `get`: a record rejected after its
        // group was looked up is truncated away and must not count.
        self.overflowed + self.overflow.as_ref().map_or(0, |c| c.len() as u64)
    }

    /// Rows appended since the last finish, all groups.
    pub(crate) fn len(&self) -> usize {
        let overflow = self.overflow.as_ref().map_or(0, Columns::len);
        self.groups.iter().map(|(_, c)| c.len()).sum::<usize>() + overflow
    }

    /// One batch per group that has rows, in key order. Groups that received nothing since
    /// the previous finish are dropped, so a service that went quiet holds no memory.
    pub(crate) fn finish(&mut self) -> Vec<RecordBatch> {
        self.groups.retain(|(_, c)| c.len() > 0);
        self.groups.sort_by(|a, b| a.0.cmp(&b.0));
        self.index = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        self.last = usize::MAX;
        let mut batches: Vec<RecordBatch> =
            self.groups.iter_mut().map(|(_, c)| c.finish()).collect();
        // The overflow group's builders are not kept: the next batch may not need them.
        if let Some(mut c) = self.overflow.take() {
            self.overflowed += c.len() as u64;
            batches.push(c.finish());
        }
        batches
    }
}

/// A string builder sized like `b` is now: for the batch after the one `b` holds.
pub(crate) fn sized_like(b: &StringBuilder) -> StringBuilder {
    StringBuilder::with_capacity(b.len(), b.values_slice().len())
}
