//! Where each origin's stream of changes stands: which change comes next, which one is a
//! repeat, and which one shows that changes were missed. Pure.

use std::collections::HashMap;
use std::sync::Arc;

/// How a change relates to what was seen of its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Continuity {
    /// The next one (or the first seen of this origin): apply it.
    Next,
    /// Seen already (a replay and the subscription both delivered it): skip it.
    Repeat,
    /// Changes `after + 1 .. seq` were missed.
    Gap { after: u64 },
}

/// The last change seen per origin.
#[derive(Debug, Default, Clone)]
pub(crate) struct StreamOrder {
    last: HashMap<Arc<str>, u64>,
}

impl StreamOrder {
    /// Places change `seq` of `origin`; `Next` moves the origin on to `seq`.
    pub(crate) fn place(&mut self, origin: &str, seq: u64) -> Continuity {
        match self.last.get_mut(origin) {
            Some(last) if seq == last.saturating_add(1) => {
                *last = seq;
                Continuity::Next
            }
            Some(last) if seq <= *last => Continuity::Repeat,
            Some(last) => Continuity::Gap { after: *last },
            None => {
                self.last.insert(origin.into(), seq);
                Continuity::Next
            }
        }
    }

    /// Records that everything of `origin` up to `seq` was applied (a replay or a reset).
    pub(crate) fn advance(&mut self, origin: &str, seq: u64) {
        match self.last.get_mut(origin) {
            Some(last) => *last = (*last).max(seq),
            None => {
                self.last.insert(origin.into(), seq);
            }
        }
    }

    /// The origins seen and their last change.
    pub(crate) fn positions(&self) -> Vec<(Arc<str>, u64)> {
        self.last.iter().map(|(o, s)| (o.clone(), *s)).collect()
    }

    /// Forgets every origin (after a reset, the next change of any origin is a start).
    pub(crate) fn clear(&mut self) {
        self.last.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_repeated_and_missing_changes() {
        let mut order = StreamOrder::default();
        assert_eq!(order.place("a", 7), Continuity::Next);
        assert_eq!(order.place("a", 8), Continuity::Next);
        assert_eq!(order.place("a", 8), Continuity::Repeat);
        assert_eq!(order.place("a", 3), Continuity::Repeat);
        assert_eq!(order.place("a", 11), Continuity::Gap { after: 8 });
        // A gap does not move the origin on: the missed changes come first.
        assert_eq!(order.place("a", 9), Continuity::Next);
        // Origins are numbered apart.
        assert_eq!(order.place("b", 100), Continuity::Next);
        assert_eq!(order.place("b", 102), Continuity::Gap { after: 100 });
    }

    #[test]
    fn advancing_skips_what_a_replay_applied() {
        let mut order = StreamOrder::default();
        order.place("a", 1);
        order.advance("a", 5);
        assert_eq!(order.place("a", 4), Continuity::Repeat);
        assert_eq!(order.place("a", 6), Continuity::Next);
        order.advance("a", 2);
        assert_eq!(order.place("a", 7), Continuity::Next);
        order.advance("c", 9);
        assert_eq!(order.place("c", 10), Continuity::Next);
        let mut positions = order.positions();
        positions.sort();
        assert_eq!(positions, vec![("a".into(), 7), ("c".into(), 10)]);
        order.clear();
        assert!(order.positions().is_empty());
        assert_eq!(order.place("a", 50), Continuity::Next);
    }
}
