//! Calls of the other instances sharing PostgreSQL (issue 16 item 1): their events pop on
//! this instance's screens as if local, and their stored signals recompute the figures.

use crate::calls::{CallEvent, CallPhase};

use super::{Hub, HubMessage};

impl Hub {
    /// Another instance's call event: shown like ours (the pop, answered, ended).
    pub async fn apply_remote(&self, ev: &CallEvent) {
        self.on_event(ev).await;
    }

    /// Another instance stored call events: today's figures are read again.
    pub async fn remote_stored(&self) {
        self.push_stats().await;
    }

    /// After the link to the other instances was lost: calls shown as ringing or talking
    /// that the call log has ended meanwhile (their end announcement was missed) go, and
    /// the figures are read again.
    pub async fn resync_remote(&self) {
        let keys: Vec<String> = self.lock().calls.keys().cloned().collect();
        for key in keys {
            let Ok(Some(row)) = self.log.get_by_key(&key).await else {
                continue;
            };
            let (Some(_), Some(cause)) = (row.ended_at, row.end_cause) else {
                continue;
            };
            let Some(mut call) = self.lock().calls.get(&key).cloned() else {
                continue;
            };
            call.state = CallPhase::Ended;
            let message = HubMessage::CallEnded {
                call,
                cause,
                detail: row.end_detail.clone(),
                hangup_by: None,
                ring_seconds: None,
                talk_seconds: None,
            };
            self.broadcast(message, |live| {
                live.calls.remove(&key);
            });
        }
        self.push_stats().await;
    }
}
