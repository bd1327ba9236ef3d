//! The pane clock of a group of rules: rules sharing a table, a window length and a hop share
//! their panes (hop-long slices of event time, the unit raw rows are filed and folded by) and
//! the start of the next window to close.

use std::collections::BTreeMap;

use std::borrow::Cow;
use std::cell::OnceCell;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use vigil_core::arrays::one_value;
use vigil_core::schema::RecordKind;

/// Empty windows closed one by one while series are pending, firing or expected (`no_data`):
/// a week of minutes. After that many in a row (a clock far off, a source back after a long
/// outage) the rest of the gap is skipped rather than evaluated window by window.
const MAX_EMPTY_WINDOWS: i64 = 7 * 24 * 60;

/// Rules sharing a table, a window length and a hop share their panes and their clock.
pub(super) struct Group {
    pub(super) table: RecordKind,
    /// Window length, µs.
    pub(super) window: i64,
    /// Distance between window starts, µs; divides `window`.
    pub(super) hop: i64,
    /// Start of the next window to close; `closed` once one has.
    pub(super) next_close: Option<i64>,
    pub(super) closed: bool,
    /// Rows not yet folded into partial states, by pane start.
    pub(super) raw: BTreeMap<i64, Vec<RecordBatch>>,
    pub(super) raw_rows: usize,
    /// Windows closed in a row without any rows.
    pub(super) empty_run: i64,
}

/// Where a pane's rows go.
pub(super) enum Filing {
    /// Into the pane: its windows are still open.
    Open,
    /// Nowhere: a window the pane belongs to has closed.
    Late,
}

impl Group {
    pub(super) fn new(table: RecordKind, window: i64, hop: i64) -> Self {
        Self {
            table,
            window,
            hop,
            next_close: None,
            closed: false,
            raw: BTreeMap::new(),
            raw_rows: 0,
            empty_run: 0,
        }
    }

    /// The name of the clock in checkpoints: `table/window/hop` (µs).
    pub(super) fn key(&self) -> String {
        format!("{}/{}/{}", self.table.table(), self.window, self.hop)
    }

    /// The start of the pane an event time falls in.
    pub(super) fn pane(&self, t: i64) -> i64 {
        t.div_euclid(self.hop).saturating_mul(self.hop)
    }

    /// The first window a row of pane `pane` belongs to.
    pub(super) fn first_window(&self, pane: i64) -> i64 {
        pane.saturating_sub(self.window).saturating_add(self.hop)
    }

    /// Whether rows of `pane` still count, starting the clock (or moving it earlier, before
    /// any window closed) so the pane's first window is the next to close.
    pub(super) fn admit(&mut self, pane: i64) -> Filing {
        let first = self.first_window(pane);
        match self.next_close {
            Some(next) if self.closed && first < next => return Filing::Late,
            // Out of order before any window closed: the clock starts earlier.
            Some(next) if first < next => self.next_close = Some(first),
            Some(_) => {}
            None => self.next_close = Some(first),
        }
        Filing::Open
    }

    /// The window to close next if the watermark has passed its end: `(start, end)`. A
    /// window that would end past the last representable time never closes (saturating,
    /// its end would stay due forever).
    pub(super) fn due(&self, watermark: i64) -> Option<(i64, i64)> {
        let start = self.next_close?;
        let end = start.checked_add(self.window)?;
        (end <= watermark).then_some((start, end))
    }

    /// Files `rows` into pane `pane`.
    pub(super) fn file(&mut self, pane: i64, rows: RecordBatch) {
        self.raw_rows += rows.num_rows();
        self.raw.entry(pane).or_default().push(rows);
    }

    /// Takes the raw rows of panes starting before `before`.
    pub(super) fn take_raw(&mut self, before: i64) -> Vec<(i64, Batches)> {
        let rest = self.raw.split_off(&before);
        let taken = std::mem::replace(&mut self.raw, rest);
        let n: usize = taken.values().flatten().map(RecordBatch::num_rows).sum();
        self.raw_rows -= n;
        taken
            .into_iter()
            .map(|(pane, rows)| (pane, Batches::new(rows)))
            .collect()
    }

    /// A window closed; `had_rows`: whether any of its rules had rows in it.
    pub(super) fn closed_one(&mut self, had_rows: bool) {
        self.closed = true;
        self.empty_run = if had_rows { 0 } else { self.empty_run + 1 };
    }

    /// After a close: moves the clock to the next window, jumping over windows that have no
    /// rows and no series to resolve (a gap in the data, or a timestamp far ahead).
    /// `active`: some rule has series pending, firing or expected. `first_state`: the
    /// earliest pane holding partial states.
    pub(super) fn skip_idle(&mut self, watermark: i64, active: bool, first_state: Option<i64>) {
        let next = self
            .next_close
            .expect("a window just closed")
            .saturating_add(self.hop);
        let first_data = first_state
            .into_iter()
            .chain(self.raw.keys().next().copied())
            .min();
        // The next window with data, or (no data at all) the first one the watermark does
        // not allow yet.
        let data_at = match first_data {
            Some(pane) => self.first_window(pane),
            None => watermark
                .saturating_sub(self.window)
                .div_euclid(self.hop)
                .saturating_mul(self.hop)
                .saturating_add(self.hop),
        };
        self.next_close = Some(if active && self.empty_run < MAX_EMPTY_WINDOWS {
            // Series to resolve or to count as absent: empty windows close one by one.
            next
        } else {
            if active && data_at > next {
                tracing::warn!(
                    from = next,
                    to = data_at,
                    "no rows for a week of windows; skipping ahead to the next data"
                );
            }
            next.max(data_at)
        });
    }
}

/// A pane's raw batches (at least one), and which of them hold rows of one service only,
/// found once for all the rules that read them. A decoder's batches each hold one service's
/// rows, and most rules read one service (`service = 'a'` in their filter): such a rule
/// need not copy and filter the other services' rows.
pub(super) struct Batches {
    batches: Vec<RecordBatch>,
    /// Per batch, whether all its rows have the same service (none null).
    single: OnceCell<Vec<bool>>,
}

impl Batches {
    pub(super) fn new(batches: Vec<RecordBatch>) -> Self {
        debug_assert!(!batches.is_empty());
        Self {
            batches,
            single: OnceCell::new(),
        }
    }

    pub(super) fn schema(&self) -> SchemaRef {
        self.batches[0].schema()
    }

    /// Per batch, whether all its rows have the service column's first value.
    fn single(&self, column: usize) -> &[bool] {
        self.single.get_or_init(|| {
            self.batches
                .iter()
                .map(|b| {
                    b.column(column)
                        .as_string_opt::<i32>()
                        .is_some_and(|s| one_value(s).is_some())
                })
                .collect()
        })
    }

    /// The rows of each service, in the services' order, when every batch holds one
    /// service's rows (`None` otherwise: then only reading the rows says).
    pub(super) fn counts(&self) -> Option<Vec<(&str, usize)>> {
        let column = self.schema().index_of("service").ok()?;
        let single = self.single(column);
        let mut counts = BTreeMap::new();
        for (b, single) in self.batches.iter().zip(single) {
            if !*single {
                return None;
            }
            let service = b.column(column).as_string::<i32>().value(0);
            *counts.entry(service).or_insert(0) += b.num_rows();
        }
        Some(counts.into_iter().collect())
    }

    /// The batches whose rows can be of `services` (every batch for `None`): those holding
    /// rows of one other service only are left out.
    pub(super) fn of(&self, services: Option<&[String]>) -> Cow<'_, [RecordBatch]> {
        let all = Cow::Borrowed(self.batches.as_slice());
        let Some(services) = services else {
            return all;
        };
        let Ok(column) = self.schema().index_of("service") else {
            return all;
        };
        let single = self.single(column);
        // A batch of one service is read when it is one of `services`; any other, always.
        let kept = |(b, single): (&RecordBatch, &bool)| {
            !*single
                || b.column(column)
                    .as_string_opt::<i32>()
                    .is_some_and(|s| services.iter().any(|want| want.as_str() == s.value(0)))
        };
        if self.batches.iter().zip(single).all(kept) {
            return all;
        }
        Cow::Owned(
            self.batches
                .iter()
                .zip(single)
                .filter(|&p| kept(p))
                .map(|(b, _)| b.clone())
                .collect(),
        )
    }
}
