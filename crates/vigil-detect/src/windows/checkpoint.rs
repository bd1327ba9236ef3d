//! What a restart needs of the rules: each rule's series state and each group's clock. Open
//! windows' rows are not in it: the pipeline replays them from the archive.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::WindowedRules;
use crate::rules::{RuleEvaluator, Saved};

/// Where the rules stand, for a checkpoint: each rule's series state and each group's next
/// window to close.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Rule name → what it has learned.
    pub rules: BTreeMap<String, Saved>,
    /// `table/window/hop` (µs) → start of the next window to close.
    pub next_close: BTreeMap<String, i64>,
}

impl WindowedRules {
    /// Where the rules stand, to be saved with [`restore`](Self::restore) in mind.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            rules: self
                .rules
                .iter()
                .map(|r| (r.evaluator.rule().name.clone(), r.evaluator.save().clone()))
                .collect(),
            next_close: self
                .groups
                .iter()
                .filter(|g| g.closed)
                .filter_map(|g| Some((g.key(), g.next_close?)))
                .collect(),
        }
    }

    /// Resumes from a checkpoint: each rule's series state (a rule that is new starts
    /// empty) and each group's clock, so windows closed before the checkpoint do not close
    /// again and rows for them count as late.
    pub fn restore(&mut self, c: &Checkpoint) {
        for r in &mut self.rules {
            if let Some(saved) = c.rules.get(&r.evaluator.rule().name) {
                let limits = r.evaluator.limits();
                r.evaluator = RuleEvaluator::resume(r.evaluator.rule().clone(), saved.clone());
                r.evaluator.set_limits(limits);
            }
        }
        for g in &mut self.groups {
            if let Some(&next) = c.next_close.get(&g.key()) {
                g.next_close = Some(next);
                g.closed = true;
                // The last window closed ended a window after the one before `next`.
                let end = next.saturating_sub(g.hop).saturating_add(g.window);
                self.closed_through = Some(self.closed_through.map_or(end, |c| c.max(end)));
            }
        }
    }

    /// The earliest event time a row can have and still count (the start of the oldest open
    /// window), if any window has closed.
    pub fn open_since(&self) -> Option<i64> {
        self.groups
            .iter()
            .filter(|g| g.closed)
            .filter_map(|g| g.next_close)
            .min()
    }
}
