//! Which operator phones are in a call, for the presence list (issue 18 item 5).

use std::collections::HashSet;

use super::Hub;
use crate::calls::CallPhase;

impl Hub {
    /// The extensions (phone SIP usernames) talking now, on this instance or another.
    pub fn talking(&self) -> HashSet<String> {
        self.lock()
            .calls
            .values()
            .filter(|c| c.state == CallPhase::Talking)
            .filter_map(|c| c.extension.clone())
            .collect()
    }
}
