//! Checks on Arrow arrays that several crates make on every batch.

use arrow::array::{Array, StringArray};

/// The one value every row of `strings` holds, if they all hold the same string (and none is
/// null). Decoded batches come one per service, so the archive's sort and trace assembly ask
/// this of every batch: it costs two passes over the array's buffers, not a comparison per
/// row. Every value has the first one's length when the offsets step by that length, and then
/// the values are all the first when their bytes, shifted by that length, equal themselves
/// (`b[k] == b[k + len]` for every `k` makes each value a copy of the one before).
pub fn one_value(strings: &StringArray) -> Option<&str> {
    if strings.is_empty() || strings.null_count() > 0 {
        return None;
    }
    let offsets = strings.value_offsets();
    let len = offsets[1] - offsets[0];
    if offsets.windows(2).any(|w| w[1] - w[0] != len) {
        return None;
    }
    let bytes = &strings.value_data()[offsets[0] as usize..offsets[offsets.len() - 1] as usize];
    let len = len as usize;
    (bytes[len..] == bytes[..bytes.len() - len]).then(|| strings.value(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[Option<&str>]) -> StringArray {
        values.iter().copied().collect()
    }

    #[test]
    fn one_value_throughout_is_found() {
        assert_eq!(one_value(&of(&[Some("api")])), Some("api"));
        assert_eq!(one_value(&of(&[Some("api"); 5])), Some("api"));
        assert_eq!(one_value(&of(&[Some(""); 3])), Some(""));
        // A slice of an array: offsets not starting at zero.
        let a = of(&[Some("db"), Some("api"), Some("api"), Some("api")]);
        assert_eq!(one_value(&a.slice(1, 3)), Some("api"));
        assert_eq!(one_value(&a.slice(0, 2)), None);
    }

    #[test]
    fn any_difference_is_seen() {
        assert_eq!(one_value(&of(&[])), None);
        assert_eq!(one_value(&of(&[Some("api"), None])), None);
        // Same length, one byte off, first, middle or last.
        assert_eq!(
            one_value(&of(&[Some("abc"), Some("abd"), Some("abc")])),
            None
        );
        assert_eq!(
            one_value(&of(&[Some("abc"), Some("abc"), Some("xbc")])),
            None
        );
        // Lengths that add up the same.
        assert_eq!(one_value(&of(&[Some("ab"), Some("a"), Some("bab")])), None);
        // A repeating text cut into values of another length.
        assert_eq!(
            one_value(&of(&[Some("abab"), Some("ab"), Some("ab")])),
            None
        );
        assert_eq!(one_value(&of(&[Some("aa"), Some("a"), Some("a")])), None);
        assert_eq!(one_value(&of(&[Some(""), Some("a")])), None);
    }
}
