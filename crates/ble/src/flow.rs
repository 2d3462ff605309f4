//! Credit-based flow control, counted in DATA frames.
//!
//! I/O-free. The receiver grants credits (HELLO carries the central's initial
//! grant, CREDIT frames the rest); each DATA frame costs the sender one
//! credit, and a sender without credits waits. The receiver hands credits
//! back only once it has *consumed* frames (reassembled them and handed any
//! completed message to the application), so a slow application slows the
//! peer down instead of filling buffers: at most [`RecvCredits::window`] DATA
//! frames are ever in flight towards a link. Control frames (HELLO, CREDIT,
//! PING, PONG, CLOSE) are not counted; they are small and each is a reaction
//! to something bounded.

/// Default window: DATA frames a receiver lets the peer have in flight.
pub const DEFAULT_WINDOW: u16 = 64;

/// A peer broke flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CreditError {
    /// A DATA frame arrived although no credit was outstanding.
    #[error("DATA frame without credit (window {window})")]
    Exhausted {
        /// Our window.
        window: u16,
    },
    /// A grant would give the sender more than 65535 credits.
    #[error("credit grant of {grant} on top of {have} overflows")]
    Overflow {
        /// Credits already held.
        have: u32,
        /// Received grant.
        grant: u16,
    },
}

/// Sender side: credits we may spend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendCredits {
    available: u32,
}

impl SendCredits {
    /// Credits available now.
    pub fn available(&self) -> u32 {
        self.available
    }

    /// Adds a grant from the peer. More than 65535 outstanding credits is a
    /// protocol error (no receiver window is that large).
    pub fn grant(&mut self, grant: u16) -> Result<(), CreditError> {
        let have = self.available;
        let new = have + u32::from(grant);
        if new > u32::from(u16::MAX) {
            return Err(CreditError::Overflow { have, grant });
        }
        self.available = new;
        Ok(())
    }

    /// Spends one credit; false if none is left.
    pub fn try_spend(&mut self) -> bool {
        if self.available == 0 {
            return false;
        }
        self.available -= 1;
        true
    }
}

/// Receiver side: credits granted but not used yet, and consumed frames not
/// yet returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvCredits {
    window: u16,
    outstanding: u32,
    consumed: u32,
}

impl RecvCredits {
    /// A receiver that grants `window` credits at once (see [`initial_grant`](Self::initial_grant)).
    pub fn new(window: u16) -> Self {
        Self {
            window: window.max(2),
            outstanding: 0,
            consumed: 0,
        }
    }

    /// The window.
    pub fn window(&self) -> u16 {
        self.window
    }

    /// The first grant, the whole window; to be sent to the peer.
    pub fn initial_grant(&mut self) -> u16 {
        self.outstanding = u32::from(self.window);
        self.window
    }

    /// A DATA frame arrived: it must be covered by a credit.
    pub fn on_data(&mut self) -> Result<(), CreditError> {
        if self.outstanding == 0 {
            return Err(CreditError::Exhausted {
                window: self.window,
            });
        }
        self.outstanding -= 1;
        Ok(())
    }

    /// A DATA frame has been consumed (reassembled, and any message it
    /// completed handed on).
    pub fn on_consumed(&mut self) {
        self.consumed += 1;
    }

    /// A grant to send now, once a quarter of the window has been consumed.
    /// Credits count as outstanding from this call on, so the frames a peer
    /// sends between two calls can never exceed the window.
    pub fn take_grant(&mut self) -> Option<u16> {
        if self.consumed < u32::from(self.window / 4).max(1) {
            return None;
        }
        let grant = u16::try_from(self.consumed).unwrap_or(u16::MAX);
        self.consumed -= u32::from(grant);
        self.outstanding += u32::from(grant);
        Some(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_never_exceeds_window() {
        let mut rx = RecvCredits::new(8);
        let mut tx = SendCredits::default();
        tx.grant(rx.initial_grant()).unwrap();
        let mut in_flight = 0u32;
        for step in 0..1000 {
            // Sender sends as much as it may.
            while tx.try_spend() {
                in_flight += 1;
                assert!(in_flight <= 8, "step {step}");
            }
            // Receiver consumes one frame per step.
            rx.on_data().unwrap();
            in_flight -= 1;
            rx.on_consumed();
            if let Some(g) = rx.take_grant() {
                tx.grant(g).unwrap();
            }
        }
    }

    #[test]
    fn violations_are_detected() {
        let mut rx = RecvCredits::new(2);
        rx.initial_grant();
        rx.on_data().unwrap();
        rx.on_data().unwrap();
        assert_eq!(rx.on_data(), Err(CreditError::Exhausted { window: 2 }));
        let mut tx = SendCredits::default();
        tx.grant(u16::MAX).unwrap();
        assert!(matches!(tx.grant(1), Err(CreditError::Overflow { .. })));
    }
}
