//! Faults a test harness injects into a running node (`ringdb lab`): what
//! happens to the messages it sends each peer, and how far its wall clock
//! is moved. A node takes them only when its config allows it
//! (`[faults] injectable = true`), from a caller holding a certificate of
//! the cluster's CA; what arrives is checked before it is used.

use ringdb_ring::NodeId;
use serde::{Deserialize, Serialize};

/// The longest delay or jitter a peer fault may add.
pub const MAX_FAULT_DELAY_MS: u64 = 60_000;
/// The most peers one injection names.
pub const MAX_FAULT_PEERS: usize = 1024;
/// The furthest a node's clock may be moved, either way.
pub const MAX_CLOCK_SKEW_MS: i64 = 24 * 3600 * 1000;

/// What happens to the messages a node sends one peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerFault {
    /// The peer.
    pub peer: NodeId,
    /// The share of messages dropped, 0 to 1.
    pub drop: f64,
    /// How long every message waits before it is sent, milliseconds.
    pub delay_ms: u64,
    /// A further wait drawn from 0 to this for each message, so messages
    /// overtake each other (reordering), milliseconds.
    pub jitter_ms: u64,
    /// The share of messages sent twice, 0 to 1.
    pub duplicate: f64,
}

/// Everything injected into one node: replaces what was injected before.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultInjection {
    /// Faults on the messages it sends, per peer (none: no fault).
    pub peers: Vec<PeerFault>,
    /// How far its wall clock is moved from the system's, milliseconds.
    pub clock_skew_ms: i64,
}

impl FaultInjection {
    /// Checks every figure: shares from 0 to 1, delays and skew within
    /// their limits, each peer once.
    pub fn check(&self) -> Result<(), String> {
        if self.peers.len() > MAX_FAULT_PEERS {
            return Err(format!(
                "{} peers named, more than the limit of {MAX_FAULT_PEERS}",
                self.peers.len()
            ));
        }
        if self.clock_skew_ms.unsigned_abs() > MAX_CLOCK_SKEW_MS as u64 {
            return Err(format!(
                "a clock skew of {} ms is beyond the limit of {MAX_CLOCK_SKEW_MS} ms",
                self.clock_skew_ms
            ));
        }
        for (i, fault) in self.peers.iter().enumerate() {
            for (what, share) in [("drop", fault.drop), ("duplicate", fault.duplicate)] {
                if !(0.0..=1.0).contains(&share) {
                    return Err(format!(
                        "{what} share {share} for {} is not from 0 to 1",
                        fault.peer
                    ));
                }
            }
            if fault.delay_ms > MAX_FAULT_DELAY_MS || fault.jitter_ms > MAX_FAULT_DELAY_MS {
                return Err(format!(
                    "a delay or jitter for {} is beyond the limit of {MAX_FAULT_DELAY_MS} ms",
                    fault.peer
                ));
            }
            if self.peers[..i].iter().any(|other| other.peer == fault.peer) {
                return Err(format!("{} is named twice", fault.peer));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(drop: f64, delay_ms: u64) -> PeerFault {
        PeerFault {
            peer: NodeId::new("n2"),
            drop,
            delay_ms,
            jitter_ms: 0,
            duplicate: 0.0,
        }
    }

    #[test]
    fn only_figures_within_their_limits_pass() {
        let good = FaultInjection {
            peers: vec![fault(0.2, 50)],
            clock_skew_ms: 30_000,
        };
        assert_eq!(good.check(), Ok(()));
        for bad in [
            FaultInjection {
                peers: vec![fault(1.5, 0)],
                ..FaultInjection::default()
            },
            FaultInjection {
                peers: vec![fault(f64::NAN, 0)],
                ..FaultInjection::default()
            },
            FaultInjection {
                peers: vec![fault(0.0, MAX_FAULT_DELAY_MS + 1)],
                ..FaultInjection::default()
            },
            FaultInjection {
                peers: vec![fault(0.0, 1), fault(0.1, 2)],
                ..FaultInjection::default()
            },
            FaultInjection {
                clock_skew_ms: i64::MIN,
                ..FaultInjection::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
