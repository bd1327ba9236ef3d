//! Column buffers the log decoder writes straight into.
//!
//! Arrow's builders check capacity, convert and overflow-check the offset, and update a
//! null mask through several layers per value; a record of the seed's format appends about
//! ten strings, so that was a fifth of the cost of writing columns. [`StrColumn`] keeps the
//! offsets and bytes in plain `Vec`s (amortised growth, one `memcpy` per value) and hands
//! them to Arrow without a copy when the batch is taken. The rows of one batch stay far
//! below a 32-bit offset's 2 GiB: the decoder ends a batch at `batch_bytes` of input.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::ArrayDataBuilder;
use arrow::array::builder::{BooleanBufferBuilder, NullBufferBuilder};
use arrow::array::{ArrayRef, BooleanArray, PrimitiveArray, StringArray, make_array};
use arrow::buffer::{BooleanBuffer, Buffer, MutableBuffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{ArrowPrimitiveType, DataType, ToByteSlice};

/// Appends `s` to `values`. Telemetry's values are mostly short (ids, names, levels): up to
/// 32 bytes they are moved as two overlapping words, not by a call to `memcpy`, which cost
/// more than the copy.
#[inline(always)]
fn push_short(values: &mut String, s: &str) {
    let n = s.len();
    if n > 32 {
        values.push_str(s);
        return;
    }
    values.reserve(n);
    // SAFETY: `reserve` made room for `n` bytes after `values`' end, and every load and store
    // below lies within `s` and within those `n` bytes (the two words overlap when `n` is
    // below twice their size); the bytes appended are `s`'s, whole, so `values` stays UTF-8.
    unsafe {
        let v = values.as_mut_vec();
        let len = v.len();
        let dst = v.as_mut_ptr().add(len);
        let src = s.as_ptr();
        macro_rules! two {
            ($t:ty) => {{
                let w = size_of::<$t>();
                let (a, b) = (
                    src.cast::<$t>().read_unaligned(),
                    src.add(n - w).cast::<$t>().read_unaligned(),
                );
                dst.cast::<$t>().write_unaligned(a);
                dst.add(n - w).cast::<$t>().write_unaligned(b);
            }};
        }
        match n {
            16.. => two!(u128),
            8.. => two!(u64),
            4.. => two!(u32),
            _ => {
                for i in 0..n {
                    *dst.add(i) = *src.add(i);
                }
            }
        }
        v.set_len(len + n);
    }
}

/// A nullable UTF-8 column (Arrow `Utf8`, 32-bit offsets).
pub(crate) struct StrColumn {
    /// One more than the rows: `offsets[0] == 0`, and row `i` is `values[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<i32>,
    values: String,
    nulls: NullBufferBuilder,
}

impl StrColumn {
    /// An empty column with room for `rows` values of `bytes` bytes in all.
    pub(crate) fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            offsets,
            values: String::with_capacity(bytes),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    /// Rows appended since the last [`StrColumn::finish`].
    pub(crate) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    // Always inlined: a call costs as much as the append itself (about ten per record).
    #[inline(always)]
    pub(crate) fn push(&mut self, s: &str) {
        push_short(&mut self.values, s);
        self.offsets.push(offset(self.values.len()));
        self.nulls.append_non_null();
    }

    /// Appends as one value the text `write` appends to the column's bytes, or a null if it
    /// appends nothing: a value written in place, not built elsewhere and copied.
    #[inline]
    pub(crate) fn push_written(&mut self, write: impl FnOnce(&mut String)) {
        let start = self.values.len();
        write(&mut self.values);
        if self.values.len() == start {
            self.push_null();
        } else {
            self.offsets.push(offset(self.values.len()));
            self.nulls.append_non_null();
        }
    }

    #[inline(always)]
    pub(crate) fn push_null(&mut self) {
        self.offsets.push(offset(self.values.len()));
        self.nulls.append_null();
    }

    /// A null if `kept`, else nothing (a column left out).
    #[inline(always)]
    pub(crate) fn push_null_if(&mut self, kept: bool) {
        if kept {
            self.push_null();
        }
    }

    #[inline]
    pub(crate) fn push_option(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.push(s),
            None => self.push_null(),
        }
    }

    /// Drops the rows after the first `rows`.
    pub(crate) fn truncate(&mut self, rows: usize) {
        if rows < self.len() {
            self.offsets.truncate(rows + 1);
            self.values.truncate(self.offsets[rows] as usize);
            self.nulls.truncate(rows);
        }
    }

    /// The column so far; the buffers are left empty, sized for a batch like this one with
    /// [`headroom`].
    pub(crate) fn finish(&mut self) -> ArrayRef {
        let next = Self::with_capacity(headroom(self.len()), headroom(self.values.len()));
        let Self {
            mut offsets,
            mut values,
            mut nulls,
        } = std::mem::replace(self, next);
        offsets.shrink_to_fit();
        values.shrink_to_fit();
        // SAFETY: the offsets start at 0, never decrease and end at `values.len()` (each
        // push adds the length it appended), and the bytes are a `String` cut only at those
        // offsets, each taken after a whole `&str` was appended: UTF-8, and every offset on a
        // character boundary.
        let offsets = unsafe { OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)) };
        // SAFETY: as above: valid offsets into valid UTF-8; the null mask has one bit per row.
        let array = unsafe {
            StringArray::new_unchecked(
                offsets,
                Buffer::from_vec(values.into_bytes()),
                nulls.finish(),
            )
        };
        Arc::new(array)
    }

    /// The bytes [`pack`](Self::pack) copies.
    pub(crate) fn packed_size(&self) -> usize {
        padded(self.offsets.len() * 4)
            + padded(self.values.len())
            + padded(self.nulls.len() / 8 + 1)
    }

    /// The column so far copied into `block` (offsets, bytes and null mask), keeping the
    /// column's buffers for the next batch.
    pub(crate) fn pack(&mut self, block: &mut Block) -> Packed {
        let rows = self.len();
        let offsets = block.put(self.offsets.to_byte_slice());
        let values = block.put(self.values.as_bytes());
        let mask = take_mask(&mut self.nulls, block, rows);
        self.offsets.truncate(1);
        self.values.clear();
        Packed {
            rows,
            buffers: [offsets, values],
            mask,
        }
    }
}

/// Where a buffer starts in a packed block: Arrow's 64-byte alignment.
const PACK_ALIGN: usize = 64;

/// Whether every buffer of `arrays` lies in one allocation.
#[cfg(test)]
pub(crate) fn one_block(arrays: &[&dyn arrow::array::Array]) -> bool {
    let data: Vec<_> = arrays.iter().map(|a| a.to_data()).collect();
    let mut buffers =
        (data.iter()).flat_map(|d| d.buffers().iter().chain(d.nulls().map(|n| n.buffer())));
    let first = buffers.next().expect("a buffer").data_ptr();
    buffers.all(|b| b.data_ptr() == first)
}

/// `n` bytes as a packed block holds them: from an aligned position.
fn padded(n: usize) -> usize {
    n.next_multiple_of(PACK_ALIGN)
}

/// A batch's columns copied into one block, each buffer at an aligned position.
///
/// A backtest decodes 256 KiB at a time (its watermark moves that finely), so a service's
/// batch holds a few hundred rows, and each column came out in two or three blocks of its
/// own, allocated by a decoder thread and freed by the detection thread. mimalloc hands a
/// block freed by another thread back to its owner through a list the owner walks, a cache
/// miss per block: taking the columns was 18% of a backtest's decoding, half of it that
/// walk. Packed, a batch is one block, copied while its bytes are still in cache, and the
/// columns' buffers are reused. Not for batches that are archived: Arrow counts a shared
/// block once per buffer in `get_array_memory_size`, which the writer's flush threshold
/// reads.
pub(crate) struct Block {
    bytes: MutableBuffer,
    rows: usize,
    /// The zeros every all-null column reads, once one needed them.
    zeros: Option<usize>,
}

impl Block {
    /// A block for columns of `rows` rows, with room for `size` bytes of them (the sum of
    /// their `packed_size`; more only costs a copy as the block grows).
    pub(crate) fn new(rows: usize, size: usize) -> Self {
        Self {
            // Arrow aligns the block itself to 64 bytes, so every buffer in it is aligned.
            bytes: MutableBuffer::with_capacity(size),
            rows,
            zeros: None,
        }
    }

    /// The bytes an all-null column of the block's rows needs: one 64-bit value per row, or
    /// 32-bit offsets one more than the rows, all zero.
    pub(crate) fn all_null_size(rows: usize) -> usize {
        padded((rows + 1) * 8)
    }

    /// Where `part` went, copied in.
    fn put(&mut self, part: &[u8]) -> Range<usize> {
        let at = padded(self.bytes.len());
        self.bytes.resize(at, 0);
        self.bytes.extend_from_slice(part);
        at..at + part.len()
    }

    /// A column of `data_type` (Utf8, Boolean or primitive) whose every row is null: what a
    /// column left out of a batch holds ([`keep_only`](crate::Decoder::keep_only)), made
    /// once per batch instead of a null appended per row. All of them read one run of zeros.
    pub(crate) fn all_null(&mut self, data_type: &DataType) -> Packed {
        let rows = self.rows;
        let at = *self.zeros.get_or_insert_with(|| {
            let at = padded(self.bytes.len());
            self.bytes.resize(at + (rows + 1) * 8, 0);
            at
        });
        let width = match data_type {
            DataType::Utf8 => (rows + 1) * 4,
            DataType::Boolean => rows.div_ceil(8),
            t => rows * t.primitive_width().expect("a primitive column"),
        };
        Packed {
            rows,
            buffers: [at..at + width, at..at],
            mask: Some(at..at + rows.div_ceil(8)),
        }
    }

    pub(crate) fn finish(self) -> Buffer {
        self.bytes.into()
    }
}

/// A column copied into a [`Block`], an array once the block is whole.
pub(crate) struct Packed {
    rows: usize,
    /// A string column's offsets and bytes; another's values (the second unused).
    buffers: [Range<usize>; 2],
    mask: Option<Range<usize>>,
}

impl Packed {
    /// The array of `data_type` (the column's, as its schema says), reading `block`, the
    /// [`Block`] it was copied into.
    pub(crate) fn array(&self, data_type: &DataType, block: &Buffer) -> ArrayRef {
        let slice = |at: &Range<usize>| block.slice_with_length(at.start, at.len());
        let rows = self.rows;
        let nulls =
            (self.mask.as_ref()).map(|at| NullBuffer::new(BooleanBuffer::new(slice(at), 0, rows)));
        let [values, bytes] = &self.buffers;
        match data_type {
            // SAFETY: the offsets and bytes are a `StrColumn`'s copied unchanged (see
            // `StrColumn::finish`), or all zero; the null mask has one bit per row.
            DataType::Utf8 => Arc::new(unsafe {
                StringArray::new_unchecked(
                    OffsetBuffer::new_unchecked(ScalarBuffer::from(slice(values))),
                    slice(bytes),
                    nulls,
                )
            }),
            DataType::Boolean => Arc::new(BooleanArray::new(
                BooleanBuffer::new(slice(values), 0, rows),
                nulls,
            )),
            t => {
                let data = ArrayDataBuilder::new(t.clone())
                    .len(rows)
                    .add_buffer(slice(values))
                    .nulls(nulls);
                // SAFETY: `rows` values of the type's width (a `PrimColumn`'s, copied
                // unchanged, or zeros), aligned at 64 bytes; the null mask has one bit per row.
                make_array(unsafe { data.build_unchecked() })
            }
        }
    }
}

/// The null mask `nulls` held (if it held one) copied into `block`; `nulls` starts again
/// empty.
fn take_mask(
    nulls: &mut NullBufferBuilder,
    block: &mut Block,
    rows: usize,
) -> Option<Range<usize>> {
    let at = nulls.as_slice().map(|mask| block.put(mask));
    *nulls = NullBufferBuilder::new(rows);
    at
}

/// A nullable column of a primitive Arrow type.
pub(crate) struct PrimColumn<P: ArrowPrimitiveType> {
    values: Vec<P::Native>,
    nulls: NullBufferBuilder,
}

impl<P: ArrowPrimitiveType> PrimColumn<P> {
    pub(crate) fn with_capacity(rows: usize) -> Self {
        Self {
            values: Vec::with_capacity(rows),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    /// Rows appended since the last [`PrimColumn::finish`].
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, v: P::Native) {
        self.values.push(v);
        self.nulls.append_non_null();
    }

    #[inline(always)]
    pub(crate) fn push_null(&mut self) {
        self.values.push(P::Native::default());
        self.nulls.append_null();
    }

    /// Drops the rows after the first `rows`.
    pub(crate) fn truncate(&mut self, rows: usize) {
        self.values.truncate(rows);
        self.nulls.truncate(rows);
    }

    /// The column so far; the buffers are left empty, sized for a batch like this one with
    /// [`headroom`].
    pub(crate) fn finish(&mut self) -> PrimitiveArray<P> {
        let next = Self::with_capacity(headroom(self.values.len()));
        let Self {
            mut values,
            mut nulls,
        } = std::mem::replace(self, next);
        values.shrink_to_fit();
        PrimitiveArray::new(ScalarBuffer::from(values), nulls.finish())
    }

    /// The bytes [`pack`](Self::pack) copies.
    pub(crate) fn packed_size(&self) -> usize {
        padded(self.values.len() * size_of::<P::Native>()) + padded(self.nulls.len() / 8 + 1)
    }

    /// The column so far copied into `block`, keeping the column's buffers for the next
    /// batch.
    pub(crate) fn pack(&mut self, block: &mut Block) -> Packed {
        let rows = self.len();
        let values = block.put(self.values.to_byte_slice());
        let mask = take_mask(&mut self.nulls, block, rows);
        self.values.clear();
        Packed {
            rows,
            buffers: [values, 0..0],
            mask,
        }
    }
}

/// A nullable boolean column.
pub(crate) struct BoolColumn {
    values: BooleanBufferBuilder,
    nulls: NullBufferBuilder,
}

impl BoolColumn {
    pub(crate) fn with_capacity(rows: usize) -> Self {
        Self {
            values: BooleanBufferBuilder::new(rows),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    pub(crate) fn push(&mut self, v: bool) {
        self.values.append(v);
        self.nulls.append_non_null();
    }

    pub(crate) fn push_null(&mut self) {
        self.values.append(false);
        self.nulls.append_null();
    }

    /// Drops the rows after the first `rows`.
    pub(crate) fn truncate(&mut self, rows: usize) {
        self.values.truncate(rows);
        self.nulls.truncate(rows);
    }

    /// The column so far; the buffers are left empty, sized for a batch like this one with
    /// [`headroom`].
    pub(crate) fn finish(&mut self) -> BooleanArray {
        let next = Self::with_capacity(headroom(self.values.len()));
        let Self {
            mut values,
            mut nulls,
        } = std::mem::replace(self, next);
        BooleanArray::new(values.finish(), nulls.finish())
    }

    /// The bytes [`pack`](Self::pack) copies.
    pub(crate) fn packed_size(&self) -> usize {
        padded(self.values.len() / 8 + 1) + padded(self.nulls.len() / 8 + 1)
    }

    /// The column so far copied into `block`, keeping the column's buffers for the next
    /// batch.
    pub(crate) fn pack(&mut self, block: &mut Block) -> Packed {
        let rows = self.values.len();
        let values = block.put(self.values.as_slice());
        let mask = take_mask(&mut self.nulls, block, rows);
        self.values.truncate(0);
        Packed {
            rows,
            buffers: [values, 0..0],
            mask,
        }
    }
}

/// What the next batch's buffers are sized for, from what this batch's held: an eighth more.
/// A service's share of a batch varies from batch to batch by a few percent, and a buffer
/// sized exactly like the last batch's was outgrown by about every other batch: its contents
/// copied into one twice its size, on pages touched for the first time (7% of a one-thread
/// ingest's samples were in those copies). The room not used is given back when
/// the batch is taken (`shrink_to_fit`: in place under mimalloc, which keeps a block that
/// shrinks by at most half), so the arrays report the bytes they hold, which is what the
/// writer's flush threshold (`max_bytes`) counts. (A boolean column keeps its room: a bit
/// per row.)
fn headroom(n: usize) -> usize {
    n + n / 8 + 64
}

/// A byte position as an Arrow offset.
#[inline]
fn offset(len: usize) -> i32 {
    i32::try_from(len)
        .expect("a batch's string column stays below 2 GiB (DecoderOptions::batch_bytes)")
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::Int64Type;

    use super::*;

    #[test]
    fn strings_of_every_short_length_are_appended_whole() {
        let text: String = ('a'..='z').chain('A'..='Z').collect();
        let mut c = StrColumn::with_capacity(0, 0);
        let mut expected = Vec::new();
        for n in 0..=40 {
            // After values of every length, so the copies start at every alignment.
            for start in [0, 3, 7] {
                let v = &text[start..start + n];
                c.push(v);
                expected.push(v);
            }
        }
        let a = c.finish();
        assert_eq!(a.as_ref(), &StringArray::from(expected) as &dyn Array);
    }

    #[test]
    fn finishes_into_the_array_arrow_builds_and_starts_again_empty() {
        let mut c = StrColumn::with_capacity(2, 4);
        for round in 0..2 {
            let rows = [Some("héllo"), None, Some(""), Some("x"), None];
            for r in rows {
                c.push_option(r);
            }
            assert_eq!(c.len(), rows.len());
            let a = c.finish();
            let expected = StringArray::from(rows.to_vec());
            assert_eq!(a.as_ref(), &expected as &dyn Array, "round {round}");
            assert_eq!(a.null_count(), 2);
            assert_eq!(c.len(), 0);
        }
        let mut c = StrColumn::with_capacity(0, 0);
        c.push("a");
        c.push("b");
        let a = c.finish();
        assert_eq!(a.null_count(), 0);
        assert!(a.nulls().is_none(), "no null mask when nothing is null");
    }

    #[test]
    fn truncated_rows_leave_no_trace() {
        let mut c = StrColumn::with_capacity(0, 0);
        c.push("kept");
        c.push_null();
        c.push_written(|s| s.push_str("dropped"));
        c.push_written(|_| {});
        c.truncate(2);
        c.truncate(5);
        c.push("after");
        let expected = StringArray::from(vec![Some("kept"), None, Some("after")]);
        assert_eq!(c.finish().as_ref(), &expected as &dyn Array);

        let mut b = BoolColumn::with_capacity(0);
        b.push(true);
        b.push_null();
        b.push(false);
        b.truncate(1);
        b.push_null();
        assert_eq!(b.finish(), BooleanArray::from(vec![Some(true), None]));

        let mut p = PrimColumn::<Int64Type>::with_capacity(0);
        p.push(1);
        p.push(2);
        p.truncate(1);
        assert_eq!(p.finish(), Int64Array::from(vec![1]));
    }

    /// A batch a little larger than the one before fits the room left for it: nothing is
    /// copied into a larger buffer halfway through. And a finished array reports the bytes it
    /// holds, not that room.
    #[test]
    fn a_batch_a_little_larger_than_the_last_fits_without_growing() {
        let value = "0123456789abcdef";
        let mut s = StrColumn::with_capacity(0, 0);
        let mut p = PrimColumn::<Int64Type>::with_capacity(0);
        for i in 0..1000 {
            s.push(value);
            p.push(i);
        }
        let (strings, numbers) = (s.finish(), p.finish());
        let held = strings.to_data().buffers()[1].len();
        assert_eq!(held, 1000 * value.len());
        assert_eq!(strings.to_data().buffers()[1].capacity(), held);
        assert_eq!(numbers.values().inner().capacity(), 1000 * 8);
        let (bytes, offsets, values) = (s.values.as_ptr(), s.offsets.as_ptr(), p.values.as_ptr());
        for i in 0..1100 {
            s.push(value);
            p.push(i);
        }
        assert_eq!(s.values.as_ptr(), bytes, "the bytes grew");
        assert_eq!(s.offsets.as_ptr(), offsets, "the offsets grew");
        assert_eq!(p.values.as_ptr(), values, "the values grew");
    }

    #[test]
    fn a_primitive_column_finishes_into_the_array_arrow_builds() {
        let mut c = PrimColumn::<Int64Type>::with_capacity(1);
        for _ in 0..2 {
            let rows = [Some(3), None, Some(-1)];
            for r in rows {
                match r {
                    Some(v) => c.push(v),
                    None => c.push_null(),
                }
            }
            assert_eq!(c.finish(), Int64Array::from(rows.to_vec()));
        }
    }

    #[test]
    fn packed_columns_equal_the_columns_taken_whole_batch_after_batch() {
        let mut g = vigil_gen::Rng::new(11);
        let (mut whole, mut packed) = (
            StrColumn::with_capacity(0, 0),
            StrColumn::with_capacity(0, 0),
        );
        let (mut whole_n, mut packed_n) = (
            PrimColumn::<Int64Type>::with_capacity(0),
            PrimColumn::<Int64Type>::with_capacity(0),
        );
        // Batches of every size from none to a few thousand rows; with nulls, without, and
        // all null, so a mask comes and goes between batches of the same column.
        for batch in 0..40 {
            let rows = [0, 1, 7, 300, 2500][batch % 5];
            let nulls = [0, 3, 1, 0][batch % 4];
            for _ in 0..rows {
                let null = nulls == 1 || (nulls > 1 && g.below(nulls) == 0);
                if null {
                    for c in [&mut whole, &mut packed] {
                        c.push_null();
                    }
                    for c in [&mut whole_n, &mut packed_n] {
                        c.push_null();
                    }
                } else {
                    let len = g.below(60) as usize;
                    let v: String = (0..len)
                        .map(|i| char::from(b'a' + (i % 26) as u8))
                        .collect();
                    let n = g.below(1 << 40) as i64;
                    for c in [&mut whole, &mut packed] {
                        c.push(&v);
                    }
                    for c in [&mut whole_n, &mut packed_n] {
                        c.push(n);
                    }
                }
            }
            // Each column packed into a block of its own.
            let alone = |rows, size, t, pack: &mut dyn FnMut(&mut Block) -> Packed| {
                let mut block = Block::new(rows, size);
                let packed = pack(&mut block);
                packed.array(&t, &block.finish())
            };
            let (rows, size) = (packed.len(), packed.packed_size());
            let (a, b) = (
                whole.finish(),
                alone(rows, size, DataType::Utf8, &mut |b| packed.pack(b)),
            );
            assert_eq!(a.as_ref(), b.as_ref(), "batch {batch}");
            assert_eq!(a.null_count(), b.null_count(), "batch {batch}");
            assert!(
                one_block(&[b.as_ref()]),
                "batch {batch}: strings in one block"
            );
            let (rows, size) = (packed_n.len(), packed_n.packed_size());
            let (a, b) = (
                whole_n.finish(),
                alone(rows, size, DataType::Int64, &mut |b| packed_n.pack(b)),
            );
            assert_eq!(&a as &dyn Array, b.as_ref(), "batch {batch}");
            assert!(
                one_block(&[b.as_ref()]),
                "batch {batch}: numbers in one block"
            );
            assert_eq!((packed.len(), packed_n.len()), (0, 0), "starts again empty");
        }
    }

    #[test]
    fn all_null_columns_are_the_null_arrays_arrow_makes_and_share_one_run_of_zeros() {
        use arrow::array::new_null_array;
        for rows in [0, 1, 7, 8, 9, 300] {
            let types = [
                DataType::Utf8,
                DataType::Int32,
                DataType::Float64,
                DataType::Boolean,
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
            ];
            // After a column, so the zeros do not start the block.
            let mut column = PrimColumn::<Int64Type>::with_capacity(rows);
            (0..rows).for_each(|i| column.push(i as i64));
            let mut block = Block::new(rows, 0);
            let packed = column.pack(&mut block);
            let nulls: Vec<Packed> = types.iter().map(|t| block.all_null(t)).collect();
            let block = block.finish();
            assert_eq!(
                packed.array(&DataType::Int64, &block).as_ref(),
                &Int64Array::from_iter_values(0..rows as i64) as &dyn Array
            );
            let arrays: Vec<ArrayRef> = (nulls.iter().zip(&types))
                .map(|(n, t)| n.array(t, &block))
                .collect();
            for (array, t) in arrays.iter().zip(&types) {
                array.to_data().validate_full().unwrap();
                assert_eq!(
                    array.as_ref(),
                    new_null_array(t, rows).as_ref(),
                    "{t} of {rows}"
                );
                assert_eq!(array.null_count(), rows, "{t} of {rows}");
            }
            let arrays: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            assert!(one_block(&arrays));
        }
    }
}
