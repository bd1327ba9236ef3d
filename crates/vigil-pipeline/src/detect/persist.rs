//! Detection's part of the archive: the `anomalies` table, correlation's `service_edges` and
//! `error_origin`, and, for pipelines that resume, the checkpoint.
//!
//! Restarts: after every window close the rules' state and clocks are saved as a side file of
//! the `anomalies` table (`_vigil/detection/<name>.json`). A restarted pipeline restores them,
//! then replays from the archive the rows of the windows still open at the checkpoint: with
//! the sources resuming from the archive's positions, every row reaches its window once, a
//! firing episode does not fire again, and its resolution still comes.

use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use vigil_core::schema::{RecordKind, col};
use vigil_detect::AnomalyEvent;
use vigil_detect::correlate::{IncidentState, WindowEvidence, edges_batch, origins_batch};
use vigil_detect::windows::Checkpoint;
use vigil_store::{Archive, FlushPolicy, TableSpec, TableWriter};

use super::events::events_batch;
use crate::error::PipelineError;

/// What a checkpoint holds: the rules' state and clocks, and what correlation remembers.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Saved {
    #[serde(flatten)]
    pub(super) rules: Checkpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) incidents: Option<IncidentState>,
    /// The latest event of every series firing at the checkpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) firing: Vec<AnomalyEvent>,
    /// Stage 2's bookkeeping, for a distributed pipeline's merging replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) merge: Option<super::shuffle::MergeState>,
}

/// The tables detection writes, and where its checkpoint is.
pub(super) struct Persist {
    anomalies: TableWriter,
    /// `service_edges` and `error_origin`, when correlating.
    evidence: Option<(TableWriter, TableWriter)>,
    /// The checkpoint's side file.
    checkpoint: Option<String>,
}

impl Persist {
    /// Opens (or creates) detection's tables; `checkpoint` names the side file.
    pub(super) async fn open(
        archive: &Archive,
        correlating: bool,
        checkpoint: Option<&str>,
    ) -> Result<Self, PipelineError> {
        let open = |spec| TableWriter::open(archive, spec, FlushPolicy::manual());
        let anomalies = open(TableSpec::anomalies()).await?;
        let evidence = match correlating {
            true => Some((
                open(TableSpec::service_edges()).await?,
                open(TableSpec::error_origin()).await?,
            )),
            false => None,
        };
        Ok(Self {
            anomalies,
            evidence,
            checkpoint: checkpoint.map(|name| format!("_vigil/detection/{}.json", sanitize(name))),
        })
    }

    /// The last checkpoint saved, if this pipeline keeps one and has saved one.
    pub(super) async fn load(&self) -> Result<Option<Saved>, PipelineError> {
        let Some(path) = &self.checkpoint else {
            return Ok(None);
        };
        let Some(bytes) = self.anomalies.read_side_file(path).await? else {
            return Ok(Some(Saved::default()));
        };
        match serde_json::from_slice(&bytes) {
            Ok(saved) => {
                tracing::info!(checkpoint = %path, "detection state restored");
                Ok(Some(saved))
            }
            Err(e) => {
                // Losing rule state beats never starting again: keep the file for a look,
                // start afresh.
                let aside = format!("{path}.unreadable");
                self.anomalies.write_side_file(&aside, bytes).await?;
                tracing::error!(checkpoint = %path, kept_as = %aside, error = %e, "detection checkpoint unreadable; starting without rule state");
                Ok(Some(Saved::default()))
            }
        }
    }

    /// Whether a checkpoint is kept.
    pub(super) fn keeps_checkpoint(&self) -> bool {
        self.checkpoint.is_some()
    }

    /// Commits what a close produced: its events, and correlation's evidence.
    pub(super) async fn write(
        &mut self,
        events: &[AnomalyEvent],
        windows: &[WindowEvidence],
    ) -> Result<(), PipelineError> {
        if !events.is_empty() {
            self.anomalies.push(events_batch(events));
            self.anomalies.commit(&[]).await?;
        }
        if let Some((edges, origins)) = &mut self.evidence
            && !windows.is_empty()
        {
            edges.push(edges_batch(windows));
            edges.commit(&[]).await?;
            origins.push(origins_batch(windows));
            origins.commit(&[]).await?;
        }
        Ok(())
    }

    /// Replaces the checkpoint with `saved`.
    pub(super) async fn save(&self, saved: &Saved) -> Result<(), PipelineError> {
        if let Some(path) = &self.checkpoint {
            let json = serde_json::to_vec(saved).expect("a checkpoint serialises");
            self.anomalies.write_side_file(path, json).await?;
        }
        Ok(())
    }
}

/// Streams the archive's rows with event time at or after `since` into `push`, table by
/// table (`tables`: each kind's decoded schema). Returns the rows replayed.
pub(super) async fn replay(
    archive: &Archive,
    since: i64,
    tables: &[(RecordKind, SchemaRef)],
    mut push: impl FnMut(RecordKind, &arrow::array::RecordBatch),
) -> Result<usize, PipelineError> {
    let mut rows = 0;
    for (kind, schema) in tables {
        let mut batches = archive
            .scan_since(kind.table(), col::TIMESTAMP, since, schema.clone())
            .await?;
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            rows += batch.num_rows();
            push(*kind, &batch);
        }
    }
    Ok(rows)
}

/// `name` as one path segment.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_checkpoint_is_kept_aside_and_detection_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::new(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let persist = Persist::open(&archive, false, Some("p-g")).await.unwrap();
            assert!(persist.load().await.unwrap().is_some(), "none saved yet");
            let garbage = b"{\"rules\": [nul".to_vec();
            persist
                .anomalies
                .write_side_file("_vigil/detection/p-g.json", garbage.clone())
                .await
                .unwrap();
            let saved = persist.load().await.unwrap().expect("starts afresh");
            assert!(saved.incidents.is_none());
            let aside = persist
                .anomalies
                .read_side_file("_vigil/detection/p-g.json.unreadable")
                .await
                .unwrap();
            assert_eq!(aside, Some(garbage));
        });
    }
}
