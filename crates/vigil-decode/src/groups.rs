//! Column builders per service.
//!
//! The decoder keeps one set of builders per `service` and emits one batch per service, each
//! in input order. Telemetry arrives in time order per service, so each batch is already in
//! the archive's sort order (service, then time) and the writer can encode it as it is,
//! without gathering rows from many batches into a sorted copy.

use std::collections::HashMap;

use arrow::array::{ArrayBuilder, RecordBatch, StringBuilder};
use foldhash::fast::RandomState;

/// The builders of one group.
pub(crate) trait Columns {
    /// Rows appended since the last finish.
    fn len(&self) -> usize;
    /// Takes the rows as a batch; the builders are left empty but sized for a batch like
    /// this one, so the next does not grow them by repeated reallocation.
    fn finish(&mut self) -> RecordBatch;
}

/// Builders keyed by service, created on first sight.
pub(crate) struct Groups<C> {
    index: HashMap<Box<str>, usize, RandomState>,
    groups: Vec<(Box<str>, C)>,
    /// The group used last: consecutive records often share a service.
    last: usize,
}

impl<C: Columns> Groups<C> {
    pub(crate) fn new() -> Self {
        Self {
            index: HashMap::default(),
            groups: Vec::new(),
            last: usize::MAX,
        }
    }

    /// The builders for `key`, made by `make` the first time.
    pub(crate) fn get(&mut self, key: &str, make: impl FnOnce() -> C) -> &mut C {
        if !matches!(self.groups.get(self.last), Some((k, _)) if **k == *key) {
            self.last = match self.index.get(key) {
                Some(&i) => i,
                None => {
                    self.groups.push((key.into(), make()));
                    self.index.insert(key.into(), self.groups.len() - 1);
                    self.groups.len() - 1
                }
            };
        }
        &mut self.groups[self.last].1
    }

    /// Rows appended since the last finish, all groups.
    pub(crate) fn len(&self) -> usize {
        self.groups.iter().map(|(_, c)| c.len()).sum()
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
        self.groups.iter_mut().map(|(_, c)| c.finish()).collect()
    }
}

/// A string builder sized like `b` is now: for the batch after the one `b` holds.
pub(crate) fn sized_like(b: &StringBuilder) -> StringBuilder {
    StringBuilder::with_capacity(b.len(), b.values_slice().len())
}
