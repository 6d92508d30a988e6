//! The operator console's guarantees over real HTTP and WebSocket, with call events published
//! straight into the running server (no SIP needed): who may save a call's outcome, and what
//! the screen pop's WebSocket delivers, to whom, for how long and with which 取扱記録 rows.

use crate::common;

use chrono::{DateTime, Utc};
use common::{backends, Session, TestApp};
use madoguchi::calls::callerid::CallerId;
use madoguchi::calls::{CallEvent, CallInfo, EndCause, Party};
use madoguchi::clock::Clock;
use serde_json::{json, Value};

/// A caller with a valid number.
pub fn number(national: &str) -> Option<CallerId> {
    let e164 = madoguchi::calls::callerid::to_e164(national).expect("a valid number");
    Some(CallerId::Number {
        display: madoguchi::calls::callerid::display_national(&e164),
        e164,
    })
}

/// A caller whose digits form no valid number.
pub fn raw_digits(digits: &str) -> Option<CallerId> {
    Some(CallerId::Unparsed {
        raw_digits: digits.to_string(),
    })
}

pub fn call(key: &str, caller: Option<CallerId>, at: DateTime<Utc>) -> CallInfo {
    CallInfo {
        key: key.to_string(),
        sip_call_id: format!("{key}@trunk.example.net"),
        caller,
        line_number: Some("0120000000".into()),
        source: "192.0.2.10:5060".into(),
        arrived_at: at,
    }
}

pub fn ringing(app: &TestApp, call: &CallInfo) {
    app.server.state.events.publish(CallEvent::Ringing {
        call: call.clone(),
        at: call.arrived_at,
    });
}

/// The call rings, `operator` answers and the caller hangs up; returns once it is logged.
pub async fn answered_call(app: &TestApp, call: &CallInfo, operator: &str) {
    let at = call.arrived_at;
    let events = &app.server.state.events;
    ringing(app, call);
    events.publish(CallEvent::Answered {
        call: call.clone(),
        at,
        operator: Some(operator.to_string()),
        extension: "ph1".into(),
    });
    events.publish(CallEvent::Ended {
        call: call.clone(),
        at,
        cause: EndCause::Completed,
        hangup_by: Some(Party::Caller),
        rang_at: Some(at),
        answered_at: Some(at),
    });
    logged(app, &call.key).await;
}

/// Waits until the call-log writer has written the call's end.
pub async fn logged(app: &TestApp, key: &str) {
    for _ in 0..200 {
        if let Ok(Some(row)) = app.server.state.calls.get_by_key(key).await {
            if row.end_cause.is_some() {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("call {key} was not logged");
}

async fn patch_outcome(s: &Session, key: &str) -> reqwest::Response {
    s.client
        .patch(format!("{}/api/calls/{key}", s.base))
        .header("X-CSRF-Token", &s.csrf)
        .json(&json!({ "outcome": "inquiry", "note": "" }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn only_the_answering_operator_or_a_manager_saves_a_calls_outcome() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        let op1 = app.user_with_role("operator1", "operator").await;
        let op2 = app.user_with_role("operator2", "operator").await;
        let mgr = app.user_with_role("manager1", "manager").await;
        let c = call("k-outcome", number("0134220001"), app.clock.now());
        answered_call(&app, &c, "operator1").await;

        let other = patch_outcome(&op2, "k-outcome").await;
        assert_eq!(other.status(), 403, "{kind:?}: another operator");
        let body: Value = other.json().await.unwrap();
        assert_eq!(body["error"], "not_your_call");
        assert!(
            body["message"].as_str().unwrap().contains("応答した"),
            "{body}"
        );
        let row = app.server.state.calls.get_by_key("k-outcome").await;
        assert_eq!(
            row.unwrap().unwrap().outcome,
            None,
            "{kind:?}: nothing saved"
        );

        assert_eq!(patch_outcome(&op1, "k-outcome").await.status(), 200);
        assert_eq!(
            patch_outcome(&mgr, "k-outcome").await.status(),
            200,
            "{kind:?}: a manager corrects anyone's"
        );
        let rows: Value = app
            .admin()
            .await
            .get("/api/audit?action=call.outcome")
            .await
            .json()
            .await
            .unwrap();
        let outcomes: Vec<(&str, &str)> = rows["rows"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .map(|r| {
                (
                    r["actor_username"].as_str().unwrap(),
                    r["outcome"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                ("operator2", "denied"),
                ("operator1", "ok"),
                ("manager1", "ok")
            ],
            "{kind:?}"
        );
        app.stop().await;
    }
}
