//! [`VecMap`]: an ordered map kept as a sorted `Vec`, for the small maps of one context (its
//! running transfers, claims, answered credentials...).
//!
//! It has the part of `BTreeMap`'s API those maps use, with the same order and the same
//! replace-on-insert rule. The reason is wasm size: every `BTreeMap<K, V>` with a new `V` brings its
//! own copy of the B-tree code (about 10 KB each in our release wasm), a `VecMap<K, V>` about
//! 1 KB. Lookups are a binary search; insert and remove move the entries after the key, which is
//! nothing for the tens of entries these maps hold and still only a memmove for thousands. The
//! manager's own state, which holds every download, stays in `BTreeMap`s.
//!
//! # Example
//! ```
//! use background_assets::core::vec_map::VecMap;
//!
//! let mut m = VecMap::new();
//! assert_eq!(m.insert("b", 2), None);
//! assert_eq!(m.insert("a", 1), None);
//! assert_eq!(m.insert("b", 3), Some(2));
//! assert_eq!(m.keys().copied().collect::<Vec<_>>(), ["a", "b"]);
//! assert_eq!(m.get("b"), Some(&3));
//! m.retain(|_, v| *v > 1);
//! assert_eq!(m.remove("b"), Some(3));
//! assert!(m.is_empty());
//! ```

use std::borrow::Borrow;

/// An ordered map as a sorted `Vec` of entries (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> VecMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    fn find<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The value for `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// The value for `key`, to change.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).is_ok()
    }

    /// Sets `key`'s value; the value it replaces, if any (the key is kept, as in `BTreeMap`).
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`; its value, if it had one.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// Keeps the entries for which `keep` is true (in key order, as `BTreeMap::retain`).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    /// The values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K, V> IntoIterator for VecMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    /// The entries in key order.
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    /// Inserts one entry after the other: for a repeated key the last value wins, as in
    /// `BTreeMap` (without a sort, whose code would be in the wasm once more per entry type).
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = VecMap::new();
        for (k, v) in entries {
            map.insert(k, v);
        }
        map
    }
}
