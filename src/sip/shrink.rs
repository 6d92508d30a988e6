//! Giving back the memory of a burst (issue 17): hash tables keep the capacity of their
//! fullest moment, so after a ramp of thousands of calls the proxy would hold its peak for
//! ever. Every few seconds the core shrinks each table that is mostly empty.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

/// Tables smaller than this are left alone (shrinking them saves nothing).
const FLOOR: usize = 64;

/// Whether a table of `capacity` holding `len` entries should shrink: under one eighth full,
/// so a table that breathes around a steady load is not resized back and forth.
fn worth(len: usize, capacity: usize) -> bool {
    capacity > FLOOR && len < capacity / 8
}

/// Shrinks a mostly empty map to twice its entries (room to grow without rehashing at once).
pub fn map<K: Eq + Hash, V>(m: &mut HashMap<K, V>) {
    if worth(m.len(), m.capacity()) {
        m.shrink_to((m.len() * 2).max(FLOOR / 2));
    }
}

/// As [`map`], for a set.
pub fn set<K: Eq + Hash>(s: &mut HashSet<K>) {
    if worth(s.len(), s.capacity()) {
        s.shrink_to((s.len() * 2).max(FLOOR / 2));
    }
}

/// As [`map`], for a queue.
pub fn queue<T>(q: &mut VecDeque<T>) {
    if worth(q.len(), q.capacity()) {
        q.shrink_to((q.len() * 2).max(FLOOR / 2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_emptied_after_a_burst_gives_its_room_back() {
        let mut m: HashMap<u32, [u8; 64]> = HashMap::new();
        for i in 0..100_000 {
            m.insert(i, [0; 64]);
        }
        let peak = m.capacity();
        m.retain(|k, _| *k < 10);
        map(&mut m);
        assert!(m.capacity() < peak / 100, "{} of {peak}", m.capacity());
        assert_eq!(m.len(), 10, "nothing is lost");
    }

    #[test]
    fn a_busy_or_small_table_is_left_alone() {
        let mut m: HashMap<u32, u32> = (0..1000).map(|i| (i, i)).collect();
        m.retain(|k, _| *k < 400);
        let cap = m.capacity();
        map(&mut m);
        assert_eq!(m.capacity(), cap, "still 40 % full: no resize");
        let mut q: VecDeque<u32> = VecDeque::with_capacity(32);
        q.push_back(1);
        queue(&mut q);
        assert!(q.capacity() >= 32, "small tables stay");
    }
}
