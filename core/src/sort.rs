//! One stable sort for every element type.
//!
//! `slice::sort_by` is generic over the element and the comparison, so
//! each element type sorted somewhere links its own copy of the standard
//! library's sort: about 4.5 KB of Wasm each, and a core that sorts labels,
//! buckets, alerts, readiness checks and JSON objects carried eight of them.
//! [`sort_by`] sorts a permutation of indices instead, with one copy of the
//! standard sort shared by every caller, and then moves the elements into
//! that order: the same stable `O(n log n)` sort, one extra `usize` per
//! element.
//!
//! Collecting into a `BTreeMap` (and so into a `serde_json::Map`) sorts
//! the entries first with that same generic sort; [`map`] builds either by
//! insertion instead.

use std::cmp::Ordering;

/// Sorts `items` stably by `compare`, as `slice::sort_by` would.
pub fn sort_by<T>(items: &mut [T], mut compare: impl FnMut(&T, &T) -> Ordering) {
    if items.len() < 2 {
        return;
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    sort_indices(&mut order, &mut |a, b| compare(&items[a], &items[b]));
    permute(items, &mut order);
}

/// Sorts `items` stably by their own order, as `slice::sort` would.
pub fn sort<T: Ord>(items: &mut [T]) {
    sort_by(items, T::cmp);
}

/// A map (`BTreeMap`, `serde_json::Map`) of `entries`, inserted one by
/// one; of repeated keys the last value stays, as `collect()` keeps it.
pub fn map<M: Default + Extend<(K, V)>, K, V>(entries: impl IntoIterator<Item = (K, V)>) -> M {
    let mut map = M::default();
    map.extend(entries);
    map
}

/// The only instantiation of the standard sort: indices, compared through
/// a trait object.
#[allow(clippy::disallowed_methods)] // the one use the rest are sent to
fn sort_indices(order: &mut [usize], compare: &mut dyn FnMut(usize, usize) -> Ordering) {
    order.sort_by(|&a, &b| compare(a, b));
}

/// Moves `items[order[i]]` to `i` for every `i`, one cycle of the
/// permutation at a time; `order` is spent (each entry becomes its index).
fn permute<T>(items: &mut [T], order: &mut [usize]) {
    for start in 0..items.len() {
        let mut at = start;
        loop {
            let from = order[at];
            order[at] = at;
            if from == start || from == at {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    #[allow(clippy::disallowed_methods)] // compared with the standard sort
    fn sorts_like_the_standard_sort_and_keeps_equal_elements_in_their_order() {
        // Pairs compared by the first field only: the second shows stability.
        let mut seed = 0x2545_f491_u32;
        for len in [0, 1, 2, 3, 7, 20, 33, 100, 257] {
            let items: Vec<(u32, usize)> = (0..len)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    (seed % 7, i)
                })
                .collect();
            let mut ours = items.clone();
            let mut std = items;
            sort_by(&mut ours, |a, b| a.0.cmp(&b.0));
            std.sort_by_key(|a| a.0);
            assert_eq!(ours, std, "length {len}");
        }
    }

    #[test]
    fn sorts_owned_strings_without_losing_or_repeating_any() {
        let mut labels: Vec<(String, String)> = ["zone", "job", "instance", "az", "job"]
            .iter()
            .enumerate()
            .map(|(i, n)| ((*n).to_owned(), i.to_string()))
            .collect();
        sort(&mut labels);
        let got: Vec<(&str, &str)> = labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("az", "3"),
                ("instance", "2"),
                ("job", "1"),
                ("job", "4"),
                ("zone", "0")
            ]
        );
    }

    #[test]
    fn a_reversed_and_an_already_sorted_slice_come_out_sorted() {
        let mut down: Vec<u16> = (0..500).rev().collect();
        sort(&mut down);
        assert!(down.windows(2).all(|w| w[0] < w[1]));
        let mut up: Vec<u16> = (0..500).collect();
        sort(&mut up);
        assert_eq!(up, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn a_map_keeps_the_last_value_of_a_repeated_key_as_collect_does() {
        let entries = [("b", 1), ("a", 2), ("b", 3)];
        let ours: BTreeMap<&str, i32> = map(entries);
        let collected: BTreeMap<&str, i32> = entries.into_iter().collect();
        assert_eq!(ours, collected);
        assert_eq!(ours["b"], 3);
    }
}
