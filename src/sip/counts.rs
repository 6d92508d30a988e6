//! SIP messages in and out, by request method and by response status, for `/metrics`.
//!
//! Counted from the start line only, so the count costs no parsing. Methods outside the known
//! list share `OTHER`, and statuses outside 100..=699 are not counted: a scanner cannot make
//! the label set grow. Nothing personal is read.

use std::sync::atomic::{AtomicU64, Ordering};

/// The request methods counted by name; anything else counts as [`OTHER`].
pub const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];
/// The label of a method not in [`METHODS`].
pub const OTHER: &str = "other";

const STATUS_MIN: u16 = 100;
const STATUS_MAX: u16 = 699;
const STATUSES: usize = (STATUS_MAX - STATUS_MIN + 1) as usize;

/// Messages in one direction, by method and by status.
pub struct MessageCounts {
    requests: [AtomicU64; METHODS.len() + 1],
    responses: Box<[AtomicU64]>,
}

impl Default for MessageCounts {
    fn default() -> Self {
        Self {
            requests: [const { AtomicU64::new(0) }; METHODS.len() + 1],
            responses: (0..STATUSES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl std::fmt::Debug for MessageCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageCounts")
            .field("requests", &self.requests())
            .field("responses", &self.responses())
            .finish()
    }
}

impl MessageCounts {
    /// Counts a message from its bytes (a datagram, or a message we send).
    pub fn count_bytes(&self, bytes: &[u8]) {
        let line = bytes.split(|&b| b == b'\r' || b == b'\n').next();
        let Some(line) = line.filter(|l| !l.is_empty()) else {
            return;
        };
        if let Some(rest) = line.strip_prefix(b"SIP/2.0 ") {
            let code = rest
                .get(..3)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse().ok());
            if let Some(code) = code {
                self.count_response(code);
            }
            return;
        }
        let method = line.split(|&b| b == b' ').next().unwrap_or_default();
        self.count_request(std::str::from_utf8(method).unwrap_or(OTHER));
    }

    /// Counts a request by its method.
    pub fn count_request(&self, method: &str) {
        let i = METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len());
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response by its status (ignored outside 100..=699).
    pub fn count_response(&self, status: u16) {
        if (STATUS_MIN..=STATUS_MAX).contains(&status) {
            self.responses[usize::from(status - STATUS_MIN)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests by method: every known method (zero included), then [`OTHER`].
    pub fn requests(&self) -> Vec<(&'static str, u64)> {
        METHODS
            .iter()
            .copied()
            .chain(std::iter::once(OTHER))
            .zip(&self.requests)
            .map(|(m, n)| (m, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Responses by status, only the statuses seen.
    pub fn responses(&self) -> Vec<(u16, u64)> {
        self.responses
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let n = n.load(Ordering::Relaxed);
                // `i` < STATUSES (600): fits in u16.
                (n > 0).then(|| (STATUS_MIN + i as u16, n))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_start_line_and_bounds_the_labels() {
        let c = MessageCounts::default();
        c.count_bytes(b"INVITE sip:0120000000@x SIP/2.0\r\nVia: x\r\n\r\n");
        c.count_bytes(b"SIP/2.0 200 OK\r\n\r\n");
        c.count_bytes(b"SIP/2.0 180 Ringing\r\n\r\n");
        c.count_bytes(b"SIP/2.0 200 OK\r\n\r\n");
        c.count_bytes(b"FOO sip:x SIP/2.0\r\n\r\n");
        c.count_bytes(b"SIP/2.0 999 Nope\r\n\r\n");
        c.count_bytes(b"\r\n\r\n");
        let req = c.requests();
        assert_eq!(req.len(), METHODS.len() + 1);
        assert!(req.contains(&("INVITE", 1)));
        assert!(req.contains(&("BYE", 0)));
        assert!(req.contains(&(OTHER, 1)));
        assert_eq!(c.responses(), vec![(180, 1), (200, 2)]);
    }
}
