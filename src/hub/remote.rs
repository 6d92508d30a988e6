//! Calls of the other instances sharing PostgreSQL (issue 16 item 1): their events pop on
//! this instance's screens as if local, and their stored signals recompute the figures.

use crate::calls::{CallEvent, CallPhase};

use super::{CallState, Hub, HubMessage, PopHistory};

impl Hub {
    /// Another instance's call event: shown like ours (the pop, answered, ended).
    pub async fn apply_remote(&self, ev: &CallEvent) {
        self.on_event(ev).await;
    }

    /// Another instance stored call events: today's figures are read again (the tally
    /// moves by this instance's events only).
    pub async fn remote_stored(&self) {
        self.request(|r| &r.rebase);
    }

    /// When the link to the other instances is (re)opened: calls shown as ringing or talking
    /// that the call log has ended meanwhile (their end announcement was missed) go, the
    /// other instances' calls still open that the screens do not show yet pop, and the
    /// figures are read again.
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
        if let Ok(open) = self.log.open_elsewhere().await {
            for row in open {
                if self.lock().calls.contains_key(&row.call_key) {
                    continue;
                }
                let state = CallState {
                    call_key: row.call_key.clone(),
                    caller: row.caller.clone(),
                    line_number: row.line_number.clone(),
                    arrived_at: row.arrived_at,
                    state: if row.answered_at.is_some() {
                        CallPhase::Talking
                    } else {
                        CallPhase::Ringing
                    },
                    answered_by: row.answered_by.clone(),
                    extension: row.answered_extension.clone(),
                    history: PopHistory::default(),
                    history_read: false,
                };
                let message = HubMessage::CallRinging {
                    call: state.clone(),
                };
                self.broadcast(message, |live| {
                    live.calls.insert(state.call_key.clone(), state);
                });
            }
        }
        self.request(|r| &r.rebase);
    }
}
