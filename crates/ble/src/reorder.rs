//! Restoring the order of GATT values.
//!
//! I/O-free. BlueZ spreads the ATT PDUs of one connection over several
//! bearers when Enhanced ATT (EATT, on by default since BlueZ 5.62 with
//! kernels that have L2CAP ECRED) is up, so write commands and indications
//! may arrive in another order than they were sent. Every GATT value
//! therefore starts with a one-byte transport sequence number (modulo 256)
//! and the receiver puts values back in order before the link sees them.
//!
//! The sender never has more than [`WINDOW`] values in flight in practice
//! (DATA frames are bounded by credits, control frames are few), so a value
//! more than [`WINDOW`] − 1 positions ahead of the next expected one, or one
//! that was already delivered or buffered, is a protocol error. A lost value
//! stalls the link until its idle timeout: loss is detected, never papered over.
//! At most [`WINDOW`] values are buffered.

/// Values up to this distance ahead of the next expected one are buffered;
/// values up to this distance behind are recognised as duplicates.
pub const WINDOW: u8 = 96;

/// A value that cannot be put in order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReorderError {
    /// Already delivered or already buffered.
    #[error("duplicate value {seq} (next expected {next})")]
    Duplicate {
        /// Its sequence number.
        seq: u8,
        /// The next expected one.
        next: u8,
    },
    /// Too far ahead of the next expected value.
    #[error("value {seq} is too far ahead of {next}")]
    TooFarAhead {
        /// Its sequence number.
        seq: u8,
        /// The next expected one.
        next: u8,
    },
}

/// Stamps outgoing values.
#[derive(Debug, Clone, Default)]
pub struct Sequencer {
    next: u8,
}

impl Sequencer {
    /// `seq | frame`, with the next sequence number.
    pub fn stamp(&mut self, frame: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(frame.len() + 1);
        v.push(self.next);
        v.extend_from_slice(frame);
        self.next = self.next.wrapping_add(1);
        v
    }
}

/// Puts incoming values back in sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resequencer {
    next: u8,
    /// Buffered values, indexed by sequence number.
    slots: Vec<Option<Vec<u8>>>,
    buffered: usize,
}

impl Default for Resequencer {
    fn default() -> Self {
        Self {
            next: 0,
            slots: vec![None; 256],
            buffered: 0,
        }
    }
}

impl Resequencer {
    /// Takes one value; its frames become available through [`pop`](Self::pop)
    /// once everything before it arrived. Leaves the state unchanged on error.
    pub fn push(&mut self, seq: u8, frame: Vec<u8>) -> Result<(), ReorderError> {
        let d = seq.wrapping_sub(self.next);
        if d >= WINDOW {
            return Err(if d >= 0u8.wrapping_sub(WINDOW) {
                ReorderError::Duplicate {
                    seq,
                    next: self.next,
                }
            } else {
                ReorderError::TooFarAhead {
                    seq,
                    next: self.next,
                }
            });
        }
        let slot = &mut self.slots[usize::from(seq)];
        if slot.is_some() {
            return Err(ReorderError::Duplicate {
                seq,
                next: self.next,
            });
        }
        *slot = Some(frame);
        self.buffered += 1;
        Ok(())
    }

    /// The next frame in sequence, if it arrived.
    pub fn pop(&mut self) -> Option<Vec<u8>> {
        let frame = self.slots[usize::from(self.next)].take()?;
        self.next = self.next.wrapping_add(1);
        self.buffered -= 1;
        Some(frame)
    }

    /// Values waiting for an earlier one.
    pub fn buffered(&self) -> usize {
        self.buffered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_order_across_wraparound() {
        let mut s = Sequencer::default();
        let values: Vec<Vec<u8>> = (0..600u32).map(|i| s.stamp(&i.to_be_bytes())).collect();
        let mut r = Resequencer::default();
        let mut out = Vec::new();
        // Swap neighbours pairwise: 1,0,3,2,…
        for pair in values.chunks(2) {
            for v in pair.iter().rev() {
                r.push(v[0], v[1..].to_vec()).unwrap();
                while let Some(f) = r.pop() {
                    out.push(u32::from_be_bytes([f[0], f[1], f[2], f[3]]));
                }
            }
        }
        assert_eq!(out, (0..600).collect::<Vec<_>>());
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn duplicates_and_far_values_are_rejected() {
        let mut r = Resequencer::default();
        r.push(0, vec![0]).unwrap();
        assert_eq!(r.pop(), Some(vec![0]));
        assert_eq!(
            r.push(0, vec![0]),
            Err(ReorderError::Duplicate { seq: 0, next: 1 })
        );
        r.push(5, vec![5]).unwrap();
        let before = r.clone();
        assert_eq!(
            r.push(5, vec![5]),
            Err(ReorderError::Duplicate { seq: 5, next: 1 })
        );
        assert_eq!(
            r.push(100, vec![]),
            Err(ReorderError::TooFarAhead { seq: 100, next: 1 })
        );
        assert_eq!(
            r.push(200, vec![]),
            Err(ReorderError::Duplicate { seq: 200, next: 1 })
        );
        assert_eq!(r, before);
        assert_eq!(r.pop(), None);
    }
}
