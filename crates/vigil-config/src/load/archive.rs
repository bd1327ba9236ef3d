//! `[archive]` and `[retention]`: where records go and how long they stay.

use toml::Spanned;
use vigil_pipeline::ArchiveConfig;
use vigil_store::{FlushPolicy, Retention};

use super::Validator;
use crate::raw::{RawArchive, RawRetention};

impl Validator<'_> {
    pub(super) fn archive(&mut self, raw: RawArchive) -> Option<ArchiveConfig> {
        let defaults = ArchiveConfig::default();
        let url = raw
            .url
            .as_ref()
            .map_or(defaults.url, |u| u.get_ref().clone());
        if url.trim().is_empty() {
            self.problem(
                raw.url.as_ref().map(Spanned::span),
                "`archive.url` is empty".into(),
            );
        }
        let defaults_single_writer = defaults.single_writer;
        let defaults = defaults.flush;
        let max_rows = raw.flush.max_rows.unwrap_or(defaults.max_rows);
        if max_rows == 0 {
            self.problem(None, "`archive.flush.max_rows` must be at least 1".into());
        }
        let max_bytes = self.size(&raw.flush.max_bytes, defaults.max_bytes);
        let interval = self.duration(&raw.flush.interval, defaults.interval);
        let maintain_every = match &raw.maintain_every {
            Some(_) => Some(self.duration(&raw.maintain_every, Default::default())?),
            None => None,
        };
        Some(ArchiveConfig {
            url,
            storage_options: raw.storage_options,
            single_writer: raw.single_writer.unwrap_or(defaults_single_writer),
            warm: raw.tiers.warm.map(Spanned::into_inner),
            cold: raw.tiers.cold.map(Spanned::into_inner),
            maintain_every,
            flush: FlushPolicy {
                max_rows,
                max_bytes: max_bytes?,
                interval: interval?,
            },
        })
    }

    pub(super) fn retention(&mut self, raw: RawRetention) -> Option<Retention> {
        let d = Retention::default();
        let hot = self.duration(&raw.hot, d.hot)?;
        let warm = self.duration(&raw.warm, d.warm)?;
        let cold = self.duration(&raw.cold, d.cold)?;
        let grace = self.duration(&raw.grace, d.grace)?;
        if !(hot <= warm && warm <= cold) {
            self.problem(
                raw.hot.as_ref().map(Spanned::span),
                "retention ages must grow: hot ≤ warm ≤ cold".into(),
            );
            return None;
        }
        Some(Retention {
            hot,
            warm,
            cold,
            grace,
        })
    }
}
