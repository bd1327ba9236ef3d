//! How long data stays in each tier of the archive.

use std::time::Duration;

/// Tier ages, by event date: hot until `hot`, warm until `warm`, cold until `cold`, then
/// deleted. Validated (`hot ≤ warm ≤ cold`) when a pipeline file is read; enforced by
/// maintenance (`Archive::maintain`, `vigil maintain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Hot until this age.
    pub hot: Duration,
    /// Warm until this age.
    pub warm: Duration,
    /// Deleted after this age.
    pub cold: Duration,
    /// How long a file removed from a tier (moved on, compacted or expired) stays on the
    /// store for queries already reading it, before a vacuum deletes it.
    pub grace: Duration,
}

impl Default for Retention {
    /// The seed's policy: hot 7 days, warm 30 days, cold one year; an hour of grace.
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            hot: Duration::from_secs(7 * DAY),
            warm: Duration::from_secs(30 * DAY),
            cold: Duration::from_secs(365 * DAY),
            grace: Duration::from_secs(3600),
        }
    }
}
