//! The two halves of the rules' windows when replicas share a pipeline's partitions (a
//! distributed pipeline; see `vigil-pipeline`'s `detect::shuffle`):
//!
//! ```text
//! stage 1, each replica, its own rows ─► partials: per rule and pane, partial states
//!                                              │ (shipped between replicas)
//!                                              ▼
//! stage 2, one replica ─► merge (tagged by source stream and first offset) ─► advance
//!                          revert: a stream re-read from an earlier offset
//! ```
//!
//! Stage 1 keeps nothing: it plans each rule over its rows, runs the plan up to its `Partial`
//! aggregate and hands the states on. Stage 2 files them into its panes exactly as if it had
//! folded the rows itself, so windows, lateness and the rules' state machines are the single
//! replica's. Each contribution remembers its source stream and the first offset it covers:
//! when a stream is read again from an earlier offset (its replica died before the archive
//! had those rows, or lost the partition), [`WindowedRules::revert`] drops what that stream
//! contributed from there on to windows still open, and the re-read rows take its place.
//! Windows already closed keep what they saw; the re-read rows are late for them.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use vigil_core::schema::RecordKind;

use super::clock::Filing;
use super::{Batches, WindowedRules, split_by_pane, time_range};
use crate::error::DetectError;

/// One rule's partial aggregate states over one pane's rows (one row per service).
#[derive(Debug, Clone)]
pub struct Partial {
    /// The rule's name.
    pub rule: String,
    /// Start of the pane, µs.
    pub pane: i64,
    /// The states, in the schema of the rule's `Partial` aggregate.
    pub states: RecordBatch,
}

/// Where merged states came from: a source stream (numbered by whoever merges) and the first
/// offset of the rows they were folded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    /// The source stream's number.
    pub stream: u32,
    /// The first offset covered.
    pub from: i64,
}

/// One rule's merged partial states of the windows still open, for a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedStates {
    /// The rule's name.
    pub rule: String,
    /// Per batch of `ipc`, in order: its pane and where it came from.
    pub tags: Vec<(i64, Option<Contribution>)>,
    /// The batches, an Arrow IPC stream, base64.
    pub ipc: String,
}

/// `batches` (of `schema`) as an Arrow IPC stream.
pub fn encode_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new(&mut out, schema).expect("an IPC writer over a Vec");
    for b in batches {
        w.write(b).expect("writing to a Vec");
    }
    w.finish().expect("writing to a Vec");
    drop(w);
    out
}

/// The batches of an Arrow IPC stream.
pub fn decode_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>, DetectError> {
    let shuffle = |e: arrow::error::ArrowError| DetectError::Shuffle {
        reason: format!("unreadable Arrow IPC: {e}"),
    };
    StreamReader::try_new(Cursor::new(bytes), None)
        .map_err(shuffle)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(shuffle)
}

impl WindowedRules {
    /// Stage 1: the partial states of `batches` (rows of `kind`) for every rule reading
    /// `kind`, one per rule and pane. Nothing is kept and nothing is late here: whoever merges
    /// them judges that.
    pub async fn partials(
        &mut self,
        kind: RecordKind,
        batches: &[RecordBatch],
    ) -> Result<Vec<Partial>, DetectError> {
        let mut out = Vec::new();
        for g in 0..self.groups.len() {
            if self.groups[g].table != kind {
                continue;
            }
            let mut panes: std::collections::BTreeMap<i64, Vec<RecordBatch>> = Default::default();
            for b in batches {
                let Some(range) = time_range(b) else {
                    continue;
                };
                for (pane, rows) in split_by_pane(&self.groups[g], b, range) {
                    panes.entry(pane).or_default().push(rows);
                }
            }
            let panes: Vec<(i64, Batches)> = panes
                .into_iter()
                .map(|(pane, rows)| (pane, Batches::new(rows)))
                .collect();
            for i in 0..self.rules.len() {
                if self.rules[i].group != g {
                    continue;
                }
                for (pane, rows) in &panes {
                    if let Some(states) = self.partial(i, rows).await?
                        && states.num_rows() > 0
                    {
                        out.push(Partial {
                            rule: self.rules[i].evaluator.rule().name.clone(),
                            pane: *pane,
                            states,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Stage 2: plans every rule reading `kind` over rows of `schema` (the table's), so that
    /// merged states can be finished without rows of its own.
    pub async fn prepare(
        &mut self,
        kind: RecordKind,
        schema: &SchemaRef,
    ) -> Result<(), DetectError> {
        for i in 0..self.rules.len() {
            if self.groups[self.rules[i].group].table == kind {
                self.plan(i, schema).await?;
            }
        }
        Ok(())
    }

    /// Stage 2: files another replica's partial states into their pane, as if folded here.
    /// Returns `false` when a window the pane belongs to has already closed (late: counted in
    /// [`late_rows`](Self::late_rows) by state rows, not merged).
    pub fn merge(&mut self, p: Partial, from: Contribution) -> Result<bool, DetectError> {
        let Some(i) = self
            .rules
            .iter()
            .position(|r| r.evaluator.rule().name == p.rule)
        else {
            return Err(DetectError::Shuffle {
                reason: format!(
                    "partial states for rule `{}`, which this pipeline does not have: do all replicas run the same pipeline file?",
                    p.rule
                ),
            });
        };
        let r = &self.rules[i];
        let Some(plan) = &r.plan else {
            return Err(DetectError::Shuffle {
                reason: format!("rule `{}` is not prepared for merging", p.rule),
            });
        };
        let states = RecordBatch::try_new(plan.partial_schema(), p.states.columns().to_vec())
            .map_err(|e| DetectError::Shuffle {
                reason: format!(
                    "partial states for rule `{}` do not fit its plan here ({e}): do all replicas run the same pipeline file and version?",
                    p.rule
                ),
            })?;
        let g = r.group;
        if let Filing::Late = self.groups[g].admit(p.pane) {
            self.late += states.num_rows() as u64;
            return Ok(false);
        }
        self.rules[i]
            .states
            .entry(p.pane)
            .or_default()
            .push((Some(from), states));
        Ok(true)
    }

    /// Stage 2: `stream` is being read again from offset `from`: drops what it contributed
    /// from there on to the windows still open. Returns the contributions dropped.
    pub fn revert(&mut self, stream: u32, from: i64) -> usize {
        let mut dropped = 0;
        for r in &mut self.rules {
            for states in r.states.values_mut() {
                let before = states.len();
                states.retain(|(c, _)| !c.is_some_and(|c| c.stream == stream && c.from >= from));
                dropped += before - states.len();
            }
            r.states.retain(|_, s| !s.is_empty());
        }
        dropped
    }

    /// Stage 2: the merged states of the windows still open, per rule, for a checkpoint.
    pub fn saved_states(&self) -> Vec<SavedStates> {
        self.rules
            .iter()
            .filter(|r| !r.states.is_empty())
            .filter_map(|r| {
                let schema = r.plan.as_ref()?.partial_schema();
                let mut tags = Vec::new();
                let mut batches = Vec::new();
                for (&pane, states) in &r.states {
                    for (c, b) in states {
                        tags.push((pane, *c));
                        batches.push(b.clone());
                    }
                }
                Some(SavedStates {
                    rule: r.evaluator.rule().name.clone(),
                    tags,
                    ipc: BASE64.encode(encode_ipc(&schema, &batches)),
                })
            })
            .collect()
    }

    /// Stage 2: puts back the states of [`saved_states`](Self::saved_states), after
    /// [`restore`](Self::restore) and [`prepare`](Self::prepare). States of a rule no longer
    /// in the pipeline are dropped.
    pub fn restore_states(&mut self, saved: &[SavedStates]) -> Result<(), DetectError> {
        for s in saved {
            let Some(r) = self
                .rules
                .iter_mut()
                .find(|r| r.evaluator.rule().name == s.rule)
            else {
                continue;
            };
            let bytes = BASE64.decode(&s.ipc).map_err(|e| DetectError::Shuffle {
                reason: format!("checkpointed states of rule `{}`: {e}", s.rule),
            })?;
            let batches = decode_ipc(&bytes)?;
            if batches.len() != s.tags.len() {
                return Err(DetectError::Shuffle {
                    reason: format!(
                        "checkpointed states of rule `{}`: {} batches for {} tags",
                        s.rule,
                        batches.len(),
                        s.tags.len()
                    ),
                });
            }
            r.states.clear();
            for (&(pane, c), b) in s.tags.iter().zip(batches) {
                r.states.entry(pane).or_default().push((c, b));
            }
        }
        Ok(())
    }
}
