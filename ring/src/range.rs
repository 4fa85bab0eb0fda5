//! Token ranges, and the ranges that change hands when the ring changes.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::placement::Replication;
use crate::ring::{NodeId, Ring};
use crate::token::Token;

/// A range of tokens `(start, end]`: exclusive start, inclusive end, wrapping
/// past `Token::MAX` when `start ≥ end`. `start == end` is the whole ring (a
/// ring with one vnode has one such range); there is no empty range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TokenRange {
    /// Exclusive lower bound.
    pub start: Token,
    /// Inclusive upper bound.
    pub end: Token,
}

impl TokenRange {
    /// The range `(start, end]`.
    pub fn new(start: Token, end: Token) -> TokenRange {
        TokenRange { start, end }
    }

    /// The whole ring.
    pub fn full() -> TokenRange {
        TokenRange {
            start: Token::MIN,
            end: Token::MIN,
        }
    }

    /// Whether the range is the whole ring.
    pub fn is_full(&self) -> bool {
        self.start == self.end
    }

    /// Whether the range wraps past `Token::MAX` back to `Token::MIN`.
    pub fn wraps(&self) -> bool {
        self.start >= self.end
    }

    /// Whether `token` lies in the range.
    pub fn contains(&self, token: Token) -> bool {
        if self.start < self.end {
            self.start < token && token <= self.end
        } else {
            token > self.start || token <= self.end
        }
    }

    /// The range's share of the ring, in `(0, 1]`.
    pub fn fraction(&self) -> f64 {
        if self.is_full() {
            1.0
        } else {
            self.start.distance_fraction(self.end)
        }
    }

    /// The range as at most two non-wrapping, inclusive token intervals
    /// `[first, last]`, in token order, for ordered scans.
    pub fn intervals(&self) -> Vec<(Token, Token)> {
        let after = |t: Token| Token(t.0.wrapping_add(1));
        if self.is_full() {
            vec![(Token::MIN, Token::MAX)]
        } else if self.start < self.end {
            vec![(after(self.start), self.end)]
        } else if self.start == Token::MAX {
            // (MAX, end]: only the part from MIN.
            vec![(Token::MIN, self.end)]
        } else {
            vec![(Token::MIN, self.end), (after(self.start), Token::MAX)]
        }
    }
}

impl fmt::Display for TokenRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}]", self.start, self.end)
    }
}

/// A range that a node starts or stops replicating when the ring changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeMovement {
    /// The range that moves.
    pub range: TokenRange,
    /// The node that gains (streams the range in) or loses (may drop it) the range.
    pub node: NodeId,
    /// For a gain: the nodes that replicated the range before, to stream from.
    /// Empty for a loss.
    pub sources: Vec<NodeId>,
}

/// What changes between two rings under one replication setting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeChanges {
    /// Ranges a node must stream in before it serves them.
    pub gained: Vec<RangeMovement>,
    /// Ranges a node no longer replicates.
    pub lost: Vec<RangeMovement>,
}

impl RangeChanges {
    /// The ranges that move when the ring goes from `before` to `after` (a
    /// node joining, leaving, or moving tokens). Ranges are cut at every token
    /// of either ring, so each piece has one replica set before and one after.
    pub fn between(before: &Ring, after: &Ring, replication: &Replication) -> RangeChanges {
        let bounds: BTreeSet<Token> = before
            .tokens()
            .chain(after.tokens())
            .map(|(token, _)| token)
            .collect();
        let bounds: Vec<Token> = bounds.into_iter().collect();
        let mut changes = RangeChanges::default();
        for (i, &end) in bounds.iter().enumerate() {
            let start = bounds[(i + bounds.len() - 1) % bounds.len()];
            let range = TokenRange::new(start, end);
            let old = before.replicas(end, replication);
            let new = after.replicas(end, replication);
            for node in new.iter().filter(|n| !old.contains(n)) {
                changes.gained.push(RangeMovement {
                    range,
                    node: node.clone(),
                    sources: old.clone(),
                });
            }
            for node in old.iter().filter(|n| !new.contains(n)) {
                changes.lost.push(RangeMovement {
                    range,
                    node: node.clone(),
                    sources: Vec::new(),
                });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_range_contains_both_ends_of_the_ring() {
        let range = TokenRange::new(Token(100), Token(-100));
        assert!(range.contains(Token::MAX));
        assert!(range.contains(Token(-100)));
        assert!(range.contains(Token::MIN));
        assert!(!range.contains(Token(100)));
        assert!(!range.contains(Token(0)));
        assert_eq!(
            range.intervals(),
            vec![(Token::MIN, Token(-100)), (Token(101), Token::MAX)]
        );
    }

    #[test]
    fn full_range_covers_everything() {
        let range = TokenRange::new(Token(5), Token(5));
        assert!(range.contains(Token(5)) && range.contains(Token(6)) && range.contains(Token::MIN));
        assert_eq!(range.fraction(), 1.0);
        assert_eq!(range.intervals(), vec![(Token::MIN, Token::MAX)]);
    }

    #[test]
    fn fraction_of_half_the_ring() {
        let range = TokenRange::new(Token(0), Token::MIN);
        assert_eq!(range.fraction(), 0.5);
    }
}
