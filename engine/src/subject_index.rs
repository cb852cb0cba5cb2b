//! The per-subject index of one stream: every subject with live messages, its sequences (a
//! compressed [`SeqList`]), and a token trie so `*` and `>` filters enumerate the matching
//! subjects without touching messages.
//!
//! Memory: subject names live once in an arena; the name lookup and the trie's prefix lookup
//! are open-addressing tables of `u32` ids. A subject costs its bytes plus about 64 bytes,
//! plus one to three bytes per message (see `docs/architecture.md`).

use std::ops::ControlFlow;

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

use crate::id_table::IdTable;
use crate::seqlist::SeqList;

const ROOT: u32 = 0;

struct Subject {
    seqs: SeqList,
    /// Where the name's `u16` length and bytes start in the arena; `FREE` for an unused slot.
    name_off: u32,
    /// Position in the `leaves` of the trie node of the subject's prefix (all tokens but the
    /// last).
    pos: u32,
}

/// Subjects by id; a slot whose `name_off` is `FREE` is unused (ids are reused).
#[derive(Default)]
struct Subjects(Vec<Subject>);

const FREE: u32 = u32::MAX;

impl Subjects {
    fn get(&self, id: u32) -> Option<&Subject> {
        self.0.get(id as usize).filter(|s| s.name_off != FREE)
    }
    fn get_mut(&mut self, id: u32) -> Option<&mut Subject> {
        self.0.get_mut(id as usize).filter(|s| s.name_off != FREE)
    }
    fn put(&mut self, id: u32, s: Subject) {
        match self.0.get_mut(id as usize) {
            Some(slot) => *slot = s,
            None => self.0.push(s),
        }
    }
    fn take(&mut self, id: u32) -> Option<Subject> {
        let slot = self.get_mut(id)?;
        let free = Subject {
            seqs: SeqList::new(0),
            name_off: FREE,
            pos: 0,
        };
        Some(std::mem::replace(slot, free))
    }
    fn iter(&self) -> impl Iterator<Item = &Subject> + '_ {
        self.0.iter().filter(|s| s.name_off != FREE)
    }
    fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut Subject)> + '_ {
        self.0
            .iter_mut()
            .enumerate()
            .filter(|(_, s)| s.name_off != FREE)
            .map(|(id, s)| (id as u32, s))
    }
}

#[derive(Default)]
struct Node {
    /// The prefix this node stands for (`a.b` for subjects `a.b.*`); empty for the root.
    key_off: u32,
    key_len: u32,
    parent: u32,
    pos: u32,
    children: Vec<u32>,
    leaves: Vec<u32>,
}

/// Slots are reused, so ids stay dense; `None` marks a free slot.
pub(crate) struct SubjectIndex {
    names: Vec<u8>,
    name_garbage: usize,
    subjects: Subjects,
    free: Vec<u32>,
    by_name: IdTable,
    keys: Vec<u8>,
    key_garbage: usize,
    nodes: Vec<Option<Node>>,
    free_nodes: Vec<u32>,
    by_key: HashTable<u32>,
    live: usize,
}

fn hash(b: &[u8]) -> u64 {
    xxh3_64(b)
}

/// The name stored at `off` of the arena (a `u16` length, then the bytes).
fn name_at(names: &[u8], off: u32) -> &[u8] {
    let at = off as usize;
    let len = match names.get(at..at + 2) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]) as usize,
        None => return &[],
    };
    names.get(at + 2..at + 2 + len).unwrap_or(&[])
}

/// Where the last token of `s` starts (0 for a one-token subject).
fn prefix_len(s: &[u8]) -> usize {
    s.iter().rposition(|&c| c == b'.').unwrap_or(0)
}

impl Default for SubjectIndex {
    fn default() -> Self {
        SubjectIndex {
            names: Vec::new(),
            name_garbage: 0,
            subjects: Subjects::default(),
            free: Vec::new(),
            by_name: IdTable::default(),
            keys: Vec::new(),
            key_garbage: 0,
            nodes: vec![Some(Node::default())],
            free_nodes: Vec::new(),
            by_key: HashTable::new(),
            live: 0,
        }
    }
}

impl SubjectIndex {
    /// Number of subjects with live messages.
    pub fn len(&self) -> usize {
        self.live
    }

    fn subject(&self, id: u32) -> Option<&Subject> {
        self.subjects.get(id)
    }

    pub fn name(&self, id: u32) -> &[u8] {
        match self.subject(id) {
            Some(s) => name_at(&self.names, s.name_off),
            None => &[],
        }
    }

    pub fn seqs(&self, id: u32) -> Option<&SeqList> {
        self.subject(id).map(|s| &s.seqs)
    }

    fn key(&self, n: u32) -> &[u8] {
        match self.nodes.get(n as usize).and_then(Option::as_ref) {
            Some(n) => &self.keys[n.key_off as usize..(n.key_off + n.key_len) as usize],
            None => &[],
        }
    }

    fn node(&self, n: u32) -> Option<&Node> {
        self.nodes.get(n as usize)?.as_ref()
    }

    fn node_mut(&mut self, n: u32) -> Option<&mut Node> {
        self.nodes.get_mut(n as usize)?.as_mut()
    }

    pub fn lookup(&self, name: &[u8]) -> Option<u32> {
        let (names, subjects) = (&self.names, &self.subjects);
        self.by_name.find(hash(name), |id| {
            subjects
                .get(id)
                .is_some_and(|s| name_at(names, s.name_off) == name)
        })
    }

    fn lookup_node(&self, key: &[u8]) -> Option<u32> {
        if key.is_empty() {
            return Some(ROOT);
        }
        self.by_key
            .find(hash(key), |&n| self.key(n) == key)
            .copied()
    }

    /// Records that `seq` (after every sequence already recorded for it) has subject `name`;
    /// returns the subject's id.
    pub fn insert(&mut self, name: &[u8], seq: u64) -> u32 {
        if let Some(id) = self.lookup(name) {
            self.push(id, seq);
            return id;
        }
        let node = self.ensure_node(&name[..prefix_len(name)]);
        let name_off = self.names.len() as u32;
        // Subjects are at most 4096 bytes (`MAX_SUBJECT_LEN`), so the length fits a u16.
        self.names
            .extend_from_slice(&(name.len().min(u16::MAX as usize) as u16).to_le_bytes());
        self.names.extend_from_slice(name);
        let id = self.free.pop().unwrap_or(self.subjects.0.len() as u32);
        let pos = self.node(node).map_or(0, |n| n.leaves.len()) as u32;
        let s = Subject {
            seqs: SeqList::new(seq),
            name_off,
            pos,
        };
        self.subjects.put(id, s);
        if let Some(n) = self.node_mut(node) {
            n.leaves.push(id);
        }
        self.by_name.insert(hash(name), id);
        self.live += 1;
        id
    }

    /// Records `seqs` (sorted, after the subject's last) for the existing subject `id`.
    pub fn extend(&mut self, id: u32, seqs: &[u64]) {
        if let Some(s) = self.subjects.get_mut(id) {
            s.seqs.extend(seqs);
        }
    }

    /// Records `seq` for the existing subject `id`.
    pub fn push(&mut self, id: u32, seq: u64) {
        if let Some(s) = self.subjects.get_mut(id) {
            s.seqs.push(seq);
        }
    }

    /// The node for prefix `key`, created (with its ancestors) if missing.
    fn ensure_node(&mut self, key: &[u8]) -> u32 {
        if let Some(n) = self.lookup_node(key) {
            return n;
        }
        let parent = self.ensure_node(&key[..prefix_len(key)]);
        let key_off = self.keys.len() as u32;
        self.keys.extend_from_slice(key);
        let id = self.free_nodes.pop().unwrap_or(self.nodes.len() as u32);
        let pos = self.node(parent).map_or(0, |p| p.children.len()) as u32;
        let n = Node {
            key_off,
            key_len: key.len() as u32,
            parent,
            pos,
            children: Vec::new(),
            leaves: Vec::new(),
        };
        if id as usize == self.nodes.len() {
            self.nodes.push(Some(n));
        } else {
            self.nodes[id as usize] = Some(n);
        }
        if let Some(p) = self.node_mut(parent) {
            p.children.push(id);
        }
        let (keys, nodes) = (&self.keys, &self.nodes);
        let key_of = |id: &u32| match nodes.get(*id as usize).and_then(Option::as_ref) {
            Some(n) => hash(&keys[n.key_off as usize..(n.key_off + n.key_len) as usize]),
            None => 0,
        };
        self.by_key.insert_unique(hash(key), id, key_of);
        id
    }

    /// Forgets `seq` of subject `name`; false if it was not recorded.
    pub fn remove(&mut self, name: &[u8], seq: u64) -> bool {
        let Some(id) = self.lookup(name) else {
            return false;
        };
        let Some(s) = self.subjects.get_mut(id) else {
            return false;
        };
        let ok = s.seqs.remove(seq);
        if s.seqs.len() == 0 {
            self.drop_subject(id);
        }
        ok
    }

    /// Forgets `seqs` (sorted) of subject `id`, rewriting its list once; returns how many.
    pub fn remove_sorted(&mut self, id: u32, seqs: &[u64]) -> u64 {
        let Some(s) = self.subjects.get_mut(id) else {
            return 0;
        };
        let n = s.seqs.remove_sorted(seqs);
        if s.seqs.len() == 0 {
            self.drop_subject(id);
        }
        n
    }

    /// Forgets `seq` whatever its subject (its record can no longer name it).
    pub fn remove_seq(&mut self, seq: u64) -> bool {
        let hit = self
            .subjects
            .iter_mut()
            .find_map(|(id, s)| s.seqs.remove(seq).then_some((id, s.seqs.len())));
        match hit {
            Some((id, 0)) => {
                self.drop_subject(id);
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Forgets every sequence below `floor`; returns how many.
    pub fn remove_below(&mut self, floor: u64) -> u64 {
        self.trim(|l| l.remove_below(floor))
    }

    /// Forgets every sequence above `last`; returns how many.
    pub fn remove_above(&mut self, last: u64) -> u64 {
        self.trim(|l| l.remove_above(last))
    }

    fn trim(&mut self, mut f: impl FnMut(&mut SeqList) -> u64) -> u64 {
        let mut n = 0;
        let mut empty = Vec::new();
        for (id, s) in self.subjects.iter_mut() {
            n += f(&mut s.seqs);
            if s.seqs.len() == 0 {
                empty.push(id);
            }
        }
        for id in empty {
            self.drop_subject(id);
        }
        n
    }

    fn drop_subject(&mut self, id: u32) {
        let Some(s) = self.subjects.take(id) else {
            return;
        };
        let name = name_at(&self.names, s.name_off);
        let h = hash(name);
        // The trie node of the subject's prefix, found again rather than stored per subject.
        let node = self.lookup_node(&name[..prefix_len(name)]).unwrap_or(ROOT);
        let name_len = name.len();
        self.by_name.remove(h, id);
        self.free.push(id);
        self.live -= 1;
        self.name_garbage += 2 + name_len;
        // Unlink from the node's leaves (swap-remove, fixing the moved leaf's position).
        let moved = match self.nodes.get_mut(node as usize) {
            Some(Some(n)) if (s.pos as usize) < n.leaves.len() => {
                n.leaves.swap_remove(s.pos as usize);
                n.leaves.get(s.pos as usize).copied()
            }
            _ => None,
        };
        if let Some(m) = moved.and_then(|m| self.subjects.get_mut(m)) {
            m.pos = s.pos;
        }
        self.prune(node);
        if self.live == 0 {
            *self = SubjectIndex::default();
        } else if self.name_garbage > 4096 && self.name_garbage * 2 > self.names.len() {
            self.compact_names();
        }
    }

    /// Drops `n` and its ancestors while they have neither leaves nor children.
    fn prune(&mut self, mut n: u32) {
        while n != ROOT {
            let Some(node) = self.node(n) else { return };
            if !node.leaves.is_empty() || !node.children.is_empty() {
                return;
            }
            let (parent, pos, key_len) = (node.parent, node.pos as usize, node.key_len);
            let h = hash(self.key(n));
            if let Ok(e) = self.by_key.find_entry(h, |&x| x == n) {
                e.remove();
            }
            self.nodes[n as usize] = None;
            self.free_nodes.push(n);
            self.key_garbage += key_len as usize;
            let moved = match self.nodes.get_mut(parent as usize) {
                Some(Some(p)) if pos < p.children.len() => {
                    p.children.swap_remove(pos);
                    p.children.get(pos).copied()
                }
                _ => None,
            };
            if let Some(m) = moved.and_then(|m| self.node_mut(m)) {
                m.pos = pos as u32;
            }
            n = parent;
        }
        if self.key_garbage > 4096 && self.key_garbage * 2 > self.keys.len() {
            let mut keys = Vec::with_capacity(self.keys.len() - self.key_garbage);
            for n in self.nodes.iter_mut().flatten() {
                let off = keys.len() as u32;
                keys.extend_from_slice(
                    &self.keys[n.key_off as usize..(n.key_off + n.key_len) as usize],
                );
                n.key_off = off;
            }
            self.keys = keys;
            self.key_garbage = 0;
        }
    }

    fn compact_names(&mut self) {
        let mut names = Vec::with_capacity(self.names.len() - self.name_garbage);
        for (_, s) in self.subjects.iter_mut() {
            let off = names.len() as u32;
            let name = name_at(&self.names, s.name_off);
            names.extend_from_slice(&(name.len() as u16).to_le_bytes());
            names.extend_from_slice(name);
            s.name_off = off;
        }
        self.names = names;
        self.name_garbage = 0;
    }

    /// Calls `f` with the id of every subject matching `filter` (a valid filter).
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(u32)) {
        let _ = self.try_each_match(filter, &mut |id| {
            f(id);
            ControlFlow::Continue(())
        });
    }

    /// Like `for_each_match`, stopping as soon as `f` breaks.
    fn try_each_match(
        &self,
        filter: &str,
        f: &mut impl FnMut(u32) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let toks: Vec<&str> = filter.split('.').collect();
        if !toks.iter().any(|t| *t == "*" || *t == ">") {
            return match self.lookup(filter.as_bytes()) {
                Some(id) => f(id),
                None => ControlFlow::Continue(()),
            };
        }
        self.walk(ROOT, &toks, f)
    }

    /// Matches `toks` against the subjects below node `n`.
    fn walk(
        &self,
        n: u32,
        toks: &[&str],
        f: &mut impl FnMut(u32) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let (Some((&t, rest)), Some(node)) = (toks.split_first(), self.node(n)) else {
            return ControlFlow::Continue(());
        };
        match (t, rest.is_empty()) {
            (">", _) => self.all_below(n, f),
            ("*", true) => node.leaves.iter().try_for_each(|&id| f(id)),
            ("*", false) => node
                .children
                .iter()
                .try_for_each(|&c| self.walk(c, rest, f)),
            (_, last) => {
                let mut key = self.key(n).to_vec();
                if !key.is_empty() {
                    key.push(b'.');
                }
                key.extend_from_slice(t.as_bytes());
                if last {
                    match self.lookup(&key) {
                        Some(id) => f(id),
                        None => ControlFlow::Continue(()),
                    }
                } else if let Some(c) = self.lookup_node(&key) {
                    self.walk(c, rest, f)
                } else {
                    ControlFlow::Continue(())
                }
            }
        }
    }

    /// Every subject with at least one token after node `n`'s prefix.
    fn all_below(&self, n: u32, f: &mut impl FnMut(u32) -> ControlFlow<()>) -> ControlFlow<()> {
        let mut stack = vec![n];
        while let Some(n) = stack.pop() {
            if let Some(node) = self.node(n) {
                node.leaves.iter().try_for_each(|&id| f(id))?;
                stack.extend_from_slice(&node.children);
            }
        }
        ControlFlow::Continue(())
    }

    /// The ids of the subjects matching `filter` if there are at most `limit` of them (the
    /// walk stops at the first one past it).
    pub fn matching_upto(&self, filter: &str, limit: usize) -> Option<Vec<u32>> {
        let mut v = Vec::new();
        let flow = self.try_each_match(filter, &mut |id| {
            v.push(id);
            if v.len() > limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        flow.is_continue().then_some(v)
    }

    /// Ids of the subjects matching `filter`.
    pub fn matching(&self, filter: &str) -> Vec<u32> {
        let mut v = Vec::new();
        self.for_each_match(filter, |id| v.push(id));
        v
    }

    /// Bytes held by the index (capacity, not just length).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let nodes: usize = self
            .nodes
            .iter()
            .flatten()
            .map(|n| (n.children.capacity() + n.leaves.capacity()) * 4)
            .sum();
        let lists: usize = self.subjects.iter().map(|s| s.seqs.heap_bytes()).sum();
        self.names.capacity()
            + self.keys.capacity()
            + self.subjects.0.capacity() * size_of::<Subject>()
            + self.nodes.capacity() * size_of::<Option<Node>>()
            + (self.free.capacity() + self.free_nodes.capacity()) * 4
            + self.by_name.capacity_bytes()
            + self.by_key.capacity() * (size_of::<u32>() + 1)
            + nodes
            + lists
    }

    /// Every (subject, sequences) pair (checks, and retention's re-check at open).
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &SeqList)> + '_ {
        self.subjects
            .iter()
            .map(|s| (name_at(&self.names, s.name_off), &s.seqs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ix: &SubjectIndex, filter: &str) -> Vec<String> {
        let mut v: Vec<String> = ix
            .matching(filter)
            .into_iter()
            .map(|id| String::from_utf8_lossy(ix.name(id)).into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn trie_matches_like_the_matcher() {
        let subjects = [
            "a", "a.b", "a.b.c", "a.c", "a.b.d", "x.b.c", "x", "a.bb.c", "b.b.b.b",
        ];
        let mut ix = SubjectIndex::default();
        for (i, s) in subjects.iter().enumerate() {
            ix.insert(s.as_bytes(), i as u64 + 1);
        }
        for f in [
            ">", "*", "a", "a.>", "a.*", "*.b.c", "*.*.c", "a.*.c", "*.>", "b.*.*.*", "q.>",
            "a.b.c", "a.b.*", "*.*", "*.*.*.>",
        ] {
            let mut want: Vec<String> = subjects
                .iter()
                .filter(|s| crate::subject::matches(f, s))
                .map(|s| s.to_string())
                .collect();
            want.sort();
            assert_eq!(names(&ix, f), want, "filter {f}");
        }
        // `a.>` matches a.b, a.c, a.b.c, a.b.d and a.bb.c.
        assert_eq!(ix.matching_upto("a.>", 4), None);
        assert_eq!(ix.matching_upto("a.>", 5).map(|v| v.len()), Some(5));
        assert_eq!(ix.matching_upto("q.>", 0), Some(vec![]));
        // Dropping subjects prunes the trie and keeps the rest findable.
        for (i, s) in subjects.iter().enumerate() {
            assert!(ix.remove(s.as_bytes(), i as u64 + 1));
            assert!(!ix.remove(s.as_bytes(), i as u64 + 1));
            for (j, t) in subjects.iter().enumerate().skip(i + 1) {
                assert_eq!(
                    ix.lookup(t.as_bytes()).map(|id| ix.name(id)),
                    Some(t.as_bytes())
                );
                let _ = j;
            }
            assert_eq!(ix.len(), subjects.len() - i - 1);
        }
        assert_eq!(ix.nodes.iter().flatten().count(), 1);
    }

    #[test]
    fn arenas_are_compacted() {
        let mut ix = SubjectIndex::default();
        for round in 0..5u64 {
            for i in 0..2000u64 {
                ix.insert(format!("k.{round}.{i}").as_bytes(), round * 10_000 + i + 1);
            }
            for i in 0..2000u64 {
                ix.remove(format!("k.{round}.{i}").as_bytes(), round * 10_000 + i + 1);
            }
            ix.insert(b"keep.me", 1_000_000 + round);
        }
        assert_eq!(ix.len(), 1);
        assert!(ix.names.len() < 8192, "{}", ix.names.len());
        assert_eq!(names(&ix, "keep.*"), vec!["keep.me".to_string()]);
    }
}
#[cfg(test)]
mod size_tests {
    #[test]
    fn subject_is_56_bytes() {
        assert_eq!(std::mem::size_of::<super::Subject>(), 56);
    }
}
