//! `GET /api/labels`: the one table of Japanese labels for every domain code. The UI loads
//! it once and takes every label from it, so a code cannot exist on the server and be
//! missing (or spelt differently) on a screen.

use std::collections::BTreeMap;

use axum::Json;
use serde::Serialize;

use crate::booking::{
    AddressMatch, ApplicationKind, BookingChange, BookingKind, BookingStatus, CallerRelation,
    FacilityStatus, FormKind, Guidance, HalfDay, IdDocument, VisitDayKind,
};
use crate::calls::callerid::WithheldReason;
use crate::calls::{
    CallPhase, CallbackResult, CallbackStatus, CallerKind, EndCode, LineState, Outcome, Party,
    PresenceState, TalkPath, Topic,
};
use crate::codes::Code;
use crate::hours::ClosedReason;
use crate::privacy::{AuditAction, AuditOutcome, AuditTarget, LoginRefusal, Role};
use crate::sharing::{DueState, SentVia, ShareKind, ShareStatus};
use crate::sip::registrar::RegisterOutcome;

/// The labels of one kind, in display order (a JSON object keeps the order it is written in).
pub struct KindLabels(Vec<(&'static str, &'static str)>);

impl Serialize for KindLabels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().copied())
    }
}

fn kind<C: Code>(table: &mut BTreeMap<&'static str, KindLabels>) {
    table.insert(C::KIND, KindLabels(crate::codes::labels::<C>()));
}

/// Every code kind the UI may show, kind → code → label.
pub fn label_table() -> BTreeMap<&'static str, KindLabels> {
    let mut t = BTreeMap::new();
    kind::<EndCode>(&mut t);
    kind::<ClosedReason>(&mut t);
    kind::<Outcome>(&mut t);
    kind::<Topic>(&mut t);
    kind::<CallbackResult>(&mut t);
    kind::<CallbackStatus>(&mut t);
    kind::<CallerKind>(&mut t);
    kind::<WithheldReason>(&mut t);
    kind::<Party>(&mut t);
    kind::<CallPhase>(&mut t);
    kind::<LineState>(&mut t);
    kind::<PresenceState>(&mut t);
    kind::<TalkPath>(&mut t);
    kind::<Role>(&mut t);
    kind::<AuditAction>(&mut t);
    kind::<AuditOutcome>(&mut t);
    kind::<AuditTarget>(&mut t);
    kind::<LoginRefusal>(&mut t);
    kind::<RegisterOutcome>(&mut t);
    kind::<super::messages::ErrorCode>(&mut t);
    kind::<VisitDayKind>(&mut t);
    kind::<HalfDay>(&mut t);
    kind::<BookingKind>(&mut t);
    kind::<BookingStatus>(&mut t);
    kind::<BookingChange>(&mut t);
    kind::<ApplicationKind>(&mut t);
    kind::<CallerRelation>(&mut t);
    kind::<IdDocument>(&mut t);
    kind::<Guidance>(&mut t);
    kind::<FormKind>(&mut t);
    kind::<FacilityStatus>(&mut t);
    kind::<AddressMatch>(&mut t);
    kind::<ShareKind>(&mut t);
    kind::<ShareStatus>(&mut t);
    kind::<DueState>(&mut t);
    kind::<SentVia>(&mut t);
    t
}

/// `GET /api/labels`.
pub async fn labels() -> Json<BTreeMap<&'static str, KindLabels>> {
    Json(label_table())
}
