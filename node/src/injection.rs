//! Faults a test harness (`ringdb lab`) injects into the running node, by
//! [`PeerRequest::InjectFaults`](ringdb_proto::PeerRequest::InjectFaults):
//! the fault hook on the messages it sends each peer (loss, delay, jitter
//! that reorders, duplication) and a skew of its wall clock. Taken only
//! when the config says `[faults] injectable = true`, from any caller the
//! cluster's CA signed (the transport checked it), after the figures are
//! checked; each injection replaces the one before.

use std::sync::Arc;
use std::time::Duration;

use ringdb_proto::{FaultInjection, PeerReply, RequestError};
use tracing::info;

use crate::network::{Fault, Faults};
use crate::world::SkewedClock;

/// The handles an injection acts on.
pub(crate) struct Injection {
    /// The fault hook of the node's outgoing messages.
    pub(crate) faults: Arc<Faults>,
    /// The node's clock.
    pub(crate) clock: Arc<SkewedClock>,
}

impl Injection {
    /// Applies `injection` in place of the one before.
    pub(crate) fn apply(&self, injection: &FaultInjection) -> Result<PeerReply, RequestError> {
        injection.check().map_err(RequestError::invalid)?;
        let ms = Duration::from_millis;
        let faults = injection
            .peers
            .iter()
            .map(|fault| {
                let hook = Fault {
                    drop_probability: fault.drop,
                    delay: ms(fault.delay_ms),
                    jitter: ms(fault.jitter_ms),
                    duplicate_probability: fault.duplicate,
                };
                (fault.peer.clone(), hook)
            })
            .collect();
        self.faults.replace(faults);
        self.clock
            .set_skew(injection.clock_skew_ms.saturating_mul(1000));
        info!(
            peers = injection.peers.len(),
            clock_skew_ms = injection.clock_skew_ms,
            "faults injected"
        );
        Ok(PeerReply::Applied)
    }
}
