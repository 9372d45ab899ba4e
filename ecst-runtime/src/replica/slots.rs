//! The replica's table: key to slot, hashed once per event.
//!
//! `std`'s `HashMap` hashes a key on every call, so an event hashed its key
//! twice: once when the version gate looked it up (before `data` was
//! read, to skip the data of a stale upsert), once when the change was
//! written. With SipHash, which the table keeps (keys come from foreign
//! publishers: a keyed hash is the defence against flooding one bucket),
//! that second hash was about 5% of the time of decoding and applying an
//! event. [`Slots`] hands the hash out ([`Slots::hash`]) and takes it back
//! for the look-up and the write.
//!
//! Each value keeps its key's hash ([`KeyHash`]), so growing the table
//! does not hash every key again. That rehash had been the larger part of
//! the table's cost: it reads every key, each a separate allocation, so
//! a cache miss and a SipHash per key (in the decode-and-apply bench,
//! more time than the events' own look-ups). The hash is kept as 32 bits,
//! beside the slot's 16-bit read version, in what was padding: a slot is
//! no larger than before (see the size test in `replica.rs`).
//!
//! A hash is a function of the key and the table's own random SipHash key,
//! which never changes: the hash of a key taken from a table is valid for
//! that table for as long as it lives (growing it does not change it).

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, RandomState};

use hashbrown::hash_table::{Entry, HashTable};

/// A value that keeps the hash of its key in the table that holds it: the
/// [`Slots::kept`] form of its [`Slots::hash`].
pub(crate) trait KeyHash {
    fn key_hash(&self) -> u32;
}

/// A hash map from `K` to `V` whose callers hash a key once
/// ([`Slots::hash`]) and pass the hash to [`Slots::get_hashed`] and
/// [`Slots::entry`]; each value keeps its key's hash ([`KeyHash`]).
pub(crate) struct Slots<K, V> {
    table: HashTable<(K, V)>,
    /// SipHash 1-3 with a random key per table, as `std`'s `HashMap`.
    hasher: RandomState,
}

impl<K: Hash + Eq, V: KeyHash> Slots<K, V> {
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Slots {
            table: HashTable::with_capacity(capacity),
            hasher: RandomState::new(),
        }
    }

    /// The hash of `key` in this table: what [`Slots::get_hashed`] and
    /// [`Slots::entry`] take for `key` (or for a key it borrows as).
    ///
    /// SipHash's 64 bits cut to the 32 a value keeps ([`Slots::kept`]) and
    /// spread back over 64: the table finds a bucket by the low bits (the
    /// 32 kept) and tells keys apart within a group by the top 7 (mixed
    /// from all 32 kept bits, so not the bucket's own bits even in a table
    /// of 2^25 buckets or more).
    #[inline]
    pub fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        Self::spread(Self::kept(self.hasher.hash_one(key)))
    }

    /// What a value keeps of its key's [`Slots::hash`] (or of SipHash's).
    #[inline]
    pub fn kept(hash: u64) -> u32 {
        hash as u32
    }

    /// The hash the table works with, from what a value keeps: `kept` in
    /// the low half, the high half of `kept` times an odd constant (2^64
    /// divided by the golden ratio) in the high half.
    #[inline]
    fn spread(kept: u32) -> u64 {
        let mixed = u64::from(kept).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed & 0xFFFF_FFFF_0000_0000) | u64::from(kept)
    }

    /// The value of `key`, hashing it.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_hashed(self.hash(key), key)
    }

    /// The value of `key`, whose [`Slots::hash`] is `hash`.
    #[inline]
    pub fn get_hashed<Q>(&self, hash: u64, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        debug_assert_eq!(hash, self.hash(key));
        self.table
            .find(hash, |(held, _)| held.borrow() == key)
            .map(|(_, value)| value)
    }

    /// The entry of `key`, whose [`Slots::hash`] is `hash`: a vacant entry
    /// is to be filled with `(key, value)`, `value` keeping
    /// [`Slots::kept`]`(hash)`, as must a value that replaces an occupied
    /// entry's.
    #[inline]
    pub fn entry(&mut self, hash: u64, key: &K) -> Entry<'_, (K, V)> {
        debug_assert_eq!(hash, self.hash(key));
        self.table.entry(
            hash,
            |(held, _)| held == key,
            |(_, value)| Self::spread(value.key_hash()),
        )
    }

    /// Every key and its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.table.iter().map(|(key, value)| (key, value))
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Keeps only the keys for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.table.retain(|(key, value)| keep(key, value));
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        match self
            .table
            .find_entry(hash, |(held, _)| held.borrow() == key)
        {
            Ok(occupied) => Some(occupied.remove().0 .1),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value and the hash of its key, as a replica's slot keeps it.
    #[derive(Debug, PartialEq)]
    struct Value(u32, u32);

    impl KeyHash for Value {
        fn key_hash(&self) -> u32 {
            self.1
        }
    }

    fn insert(slots: &mut Slots<String, Value>, key: String, value: u32) {
        let hash = slots.hash(&key);
        match slots.entry(hash, &key) {
            Entry::Vacant(vacant) => {
                vacant.insert((key, Value(value, Slots::<String, Value>::kept(hash))));
            }
            Entry::Occupied(_) => panic!("`{key}` twice"),
        }
    }

    /// A hash taken before the table grew still finds and writes the key
    /// after it grew: growing rehashes from the hashes the values keep,
    /// which are the table's own.
    #[test]
    fn a_hash_outlives_growth() {
        let mut slots = Slots::<String, Value>::new();
        let early = slots.hash("key-0");
        for i in 0..1000u32 {
            insert(&mut slots, format!("key-{i}"), i);
        }
        assert_eq!(slots.len(), 1000);
        for i in 0..1000u32 {
            let key = format!("key-{i}");
            assert_eq!(slots.get(key.as_str()).map(|v| v.0), Some(i), "{key}");
        }
        assert_eq!(slots.get_hashed(early, "key-0").map(|v| v.0), Some(0));
        assert!(matches!(
            slots.entry(early, &"key-0".to_owned()),
            Entry::Occupied(held) if held.get().1 .0 == 0
        ));
        assert_eq!(slots.remove("key-0").map(|v| v.0), Some(0));
        assert_eq!(slots.get_hashed(early, "key-0"), None);
        slots.retain(|_, value| value.0 % 2 == 0);
        assert_eq!(slots.len(), 499);
        assert_eq!(
            slots.iter().filter(|(_, value)| value.0 % 2 == 1).count(),
            0
        );
        // Still found after the removals.
        assert_eq!(slots.get("key-998").map(|v| v.0), Some(998));
    }

    /// What a value keeps is the whole hash: spread back, it is the hash.
    #[test]
    fn the_kept_hash_is_the_hash() {
        let slots = Slots::<String, Value>::new();
        for key in ["", "a", "cus-00000001", "a much longer key than the others"] {
            let hash = slots.hash(key);
            assert_eq!(
                Slots::<String, Value>::spread(Slots::<String, Value>::kept(hash)),
                hash
            );
        }
    }

    /// Random inserts, replacements, removals and retains over a few
    /// hundred keys, the table growing and shrinking in use: it holds what
    /// a `std` map given the same operations holds (several seeds).
    #[test]
    fn agrees_with_a_std_map() {
        for seed in 1..=8u64 {
            let mut state = seed;
            let mut next = move || {
                // SplitMix64.
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let z = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            };
            let mut slots = Slots::<String, Value>::new();
            let mut model = std::collections::HashMap::<String, u32>::new();
            for step in 0..20_000u32 {
                let key = format!("k{}", next() % 600);
                match next() % 10 {
                    0 => {
                        let removed = slots.remove(key.as_str()).map(|v| v.0);
                        assert_eq!(removed, model.remove(&key), "seed {seed} step {step}");
                    }
                    1 if step % 97 == 0 => {
                        let cut = step % 7;
                        slots.retain(|_, value| value.0 % 7 != cut);
                        model.retain(|_, value| *value % 7 != cut);
                    }
                    _ => {
                        let hash = slots.hash(&key);
                        let kept = Slots::<String, Value>::kept(hash);
                        match slots.entry(hash, &key) {
                            Entry::Vacant(vacant) => {
                                vacant.insert((key.clone(), Value(step, kept)));
                            }
                            Entry::Occupied(mut held) => held.get_mut().1 = Value(step, kept),
                        }
                        model.insert(key, step);
                    }
                }
                assert_eq!(slots.len(), model.len(), "seed {seed} step {step}");
            }
            for (key, value) in &model {
                assert_eq!(slots.get(key.as_str()).map(|v| v.0), Some(*value));
            }
            let mut listed: Vec<(String, u32)> = slots
                .iter()
                .map(|(key, value)| (key.clone(), value.0))
                .collect();
            listed.sort();
            let mut expected: Vec<(String, u32)> = model.into_iter().collect();
            expected.sort();
            assert_eq!(listed, expected, "seed {seed}");
        }
    }

    /// Two tables hash one key differently (each has its own SipHash key):
    /// a hash is good for the table that made it only.
    #[test]
    fn each_table_has_its_own_key() {
        let tables: Vec<Slots<u64, Value>> = (0..8).map(|_| Slots::new()).collect();
        let hashes: std::collections::HashSet<u64> =
            tables.iter().map(|table| table.hash(&7u64)).collect();
        assert!(hashes.len() > 1, "every table hashed 7 alike: not keyed");
    }
}
