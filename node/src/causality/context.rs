//! The opaque causal context handed to clients, and read back from them.

use super::vector::VersionVector;

/// The opaque causal context handed to clients: a format marker and the
/// MessagePack of a [`VersionVector`].
pub struct CausalContext;

/// The [`CausalContext`] format this version writes: a version vector with
/// its cloud of dots beyond the counters.
const CONTEXT_FORMAT: u8 = 2;
/// The first format: a version vector without a cloud (read, never written).
const CONTEXT_FORMAT_1: u8 = 1;

/// The most actors a context from a client may name. A row's history names
/// one actor per life of each node that wrote it; this is far beyond that.
pub const MAX_CONTEXT_ACTORS: usize = 1024;
/// The most dots beyond their counters a context from a client may name.
pub const MAX_CONTEXT_EXTRA_DOTS: usize = 1024;
/// The most bytes of a context from a client, checked before decoding.
pub const MAX_CONTEXT_BYTES: usize = 256 << 10;

/// A context a client passed back that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The bytes are empty.
    #[error("causal context is empty")]
    Empty,
    /// The format marker is one this version does not know.
    #[error(
        "causal context has format {0}; this node reads formats {CONTEXT_FORMAT_1} and \
         {CONTEXT_FORMAT}"
    )]
    UnknownFormat(u8),
    /// The bytes do not decode.
    #[error("causal context does not decode: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    /// The context is larger than any row's history can be.
    #[error(
        "causal context of {0} bytes exceeds the limit of {MAX_CONTEXT_BYTES}: pass the context of a read"
    )]
    TooManyBytes(usize),
    /// The context names more than any row's history can hold.
    #[error(
        "causal context names {actors} actors and {extra} loose dots; the limits are \
         {MAX_CONTEXT_ACTORS} and {MAX_CONTEXT_EXTRA_DOTS}: pass the context of a read"
    )]
    TooLarge {
        /// Actors named.
        actors: usize,
        /// Dots beyond their actors' counters.
        extra: usize,
    },
}

impl CausalContext {
    /// Encodes a version vector as context bytes.
    pub fn encode(context: &VersionVector) -> Vec<u8> {
        let mut bytes = vec![CONTEXT_FORMAT];
        rmp_serde::encode::write(&mut bytes, context).expect("a version vector always encodes");
        bytes
    }

    /// Decodes context bytes from a client, in either format, and checks
    /// their size. Empty bytes are an error: a client without a context
    /// sends none rather than an empty one. The counters are still only the
    /// client's word: the write path clamps them to the row's history.
    pub fn decode(bytes: &[u8]) -> Result<VersionVector, ContextError> {
        if bytes.len() > MAX_CONTEXT_BYTES {
            return Err(ContextError::TooManyBytes(bytes.len()));
        }
        match bytes.split_first() {
            None => Err(ContextError::Empty),
            Some((&(CONTEXT_FORMAT | CONTEXT_FORMAT_1), rest)) => {
                // The first format is the second without its (defaulted) cloud.
                let context: VersionVector = rmp_serde::from_slice(rest)?;
                let (actors, extra) = (context.iter().count(), context.extra().len());
                if actors > MAX_CONTEXT_ACTORS || extra > MAX_CONTEXT_EXTRA_DOTS {
                    return Err(ContextError::TooLarge { actors, extra });
                }
                // A client may send anything: restore the canonical form
                // that lookups rely on.
                let entries = context.iter().map(|(a, c)| (a.clone(), c)).collect();
                Ok(VersionVector::from_parts(entries, context.extra().to_vec()))
            }
            Some((&format, _)) => Err(ContextError::UnknownFormat(format)),
        }
    }
}
