//! String interning: each distinct string stored once, addressed by a `u32` id.
//!
//! Creators, templates and brands repeat millions of times; the pipeline carries
//! their ids, not their bytes. Chunks intern locally while they are validated in
//! parallel, then [`Interner::sorted`] gives ids in byte order so that comparing
//! ids is comparing strings.

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;

/// A set of distinct strings with dense ids in insertion order.
#[derive(Default, Clone)]
pub struct Interner {
    offsets: Vec<u32>,
    text: String,
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl Interner {
    /// An empty interner.
    pub fn new() -> Self {
        Interner {
            offsets: vec![0],
            ..Default::default()
        }
    }

    /// Number of distinct strings.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether no string was interned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The string with id `id`.
    #[inline]
    pub fn get(&self, id: u32) -> &str {
        let (start, end) = (self.offsets[id as usize], self.offsets[id as usize + 1]);
        &self.text[start as usize..end as usize]
    }

    /// The strings with ids `first..=last`, back to back, and where each one
    /// ends in those bytes.
    pub fn span(&self, first: u32, last: u32) -> (&[u8], impl ExactSizeIterator<Item = u32> + '_) {
        let ends = &self.offsets[first as usize + 1..=last as usize + 1];
        let start = self.offsets[first as usize];
        let bytes = &self.text.as_bytes()[start as usize..ends[ends.len() - 1] as usize];
        (bytes, ends.iter().map(move |&end| end - start))
    }

    /// The id of `value`, interning it if it is new.
    pub fn intern(&mut self, value: &str) -> u32 {
        let hash = self.hasher.hash_one(value.as_bytes());
        if let Some(id) = self.find_hashed(hash, value) {
            return id;
        }
        let id = self.len() as u32;
        self.text.push_str(value);
        self.offsets.push(self.text.len() as u32);
        let Interner {
            offsets,
            text,
            table,
            hasher,
        } = self;
        table.insert_unique(hash, id, |&id| {
            let range = offsets[id as usize] as usize..offsets[id as usize + 1] as usize;
            hasher.hash_one(&text.as_bytes()[range])
        });
        id
    }

    /// The id of `value`, if it was interned.
    pub fn find(&self, value: &str) -> Option<u32> {
        self.find_hashed(self.hasher.hash_one(value.as_bytes()), value)
    }

    fn find_hashed(&self, hash: u64, value: &str) -> Option<u32> {
        self.table.find(hash, |&id| self.get(id) == value).copied()
    }

    /// Iterates over the strings in id order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len() as u32).map(|id| self.get(id))
    }

    /// The same strings with ids in byte order, and for each old id its new id.
    pub fn sorted(&self) -> (Interner, Vec<u32>) {
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| self.get(a).as_bytes().cmp(self.get(b).as_bytes()));
        let mut sorted = Interner::new();
        let mut remap = vec![0u32; self.len()];
        for old in order {
            remap[old as usize] = sorted.intern(self.get(old));
        }
        (sorted, remap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_once_and_sorts_by_bytes() {
        let mut interner = Interner::new();
        let b = interner.intern("b");
        let a = interner.intern("a");
        assert_eq!(interner.intern("b"), b);
        assert_eq!(interner.len(), 2);
        assert_eq!(interner.get(a), "a");
        let (sorted, remap) = interner.sorted();
        assert_eq!(sorted.get(remap[a as usize]), "a");
        assert_eq!(remap[a as usize], 0);
        assert_eq!(remap[b as usize], 1);
    }
}
