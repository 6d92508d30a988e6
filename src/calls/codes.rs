//! The calls domain's codes, each with its Japanese label (see [`crate::codes`]).

crate::code_enum! {
    /// How a call ended, as stored in `calls.end_cause` (R-LINE-3).
    pub enum EndCode: "end_cause" {
        /// Answered and then hung up by one side.
        Completed = "completed" / "通話完了",
        /// The caller hung up while it rang.
        Abandoned = "abandoned" / "放棄",
        /// The line was already in use (R-LINE-2).
        Busy = "busy" / "話中",
        /// Outside the opening hours (R-HOURS-1).
        Closed = "closed" / "時間外",
        /// No operator phone was registered.
        Unstaffed = "unstaffed" / "不在",
        /// Nobody answered before the ring timeout.
        NoAnswer = "no_answer" / "応答なし",
        /// Every operator phone refused it.
        Refused = "refused" / "全電話機が拒否",
        /// Not from the trunk: refused before any routing.
        Rejected = "rejected" / "拒否（不正発信元）",
        /// The adapter restarted while the call was open.
        Interrupted = "interrupted" / "中断（再起動）",
        /// Answered, but no BYE came within `line.max_call_minutes`.
        Expired = "expired" / "終話未検知（上限時間で終了）",
    }
}

impl EndCode {
    /// Causes that put the number on the callback list (every phone refusing counts as no
    /// answer).
    pub const MISSED: &'static [EndCode] = &[
        EndCode::Abandoned,
        EndCode::Busy,
        EndCode::NoAnswer,
        EndCode::Unstaffed,
        EndCode::Refused,
    ];
    /// Causes of calls that never reached an open line; they are not "offered".
    pub const NOT_OFFERED: &'static [EndCode] = &[EndCode::Closed, EndCode::Rejected];
    /// Causes counted as "no answer" in the statistics.
    pub const NO_ANSWER: &'static [EndCode] = &[EndCode::NoAnswer, EndCode::Refused];

    /// Whether a call that ended this way waits for a callback.
    pub fn is_missed(self) -> bool {
        Self::MISSED.contains(&self)
    }
}

crate::code_enum! {
    /// What the operator records about an answered call (R-LINE-3, R-REP-3).
    pub enum Outcome: "outcome" {
        /// A home visit was booked.
        Booking = "booking" / "予約受付",
        /// A facility asked for a visit.
        FacilityRequest = "facility_request" / "施設依頼",
        /// A general question (tagged with topics).
        Inquiry = "inquiry" / "一般問合せ",
        /// An opinion.
        Opinion = "opinion" / "意見",
        /// A complaint.
        Complaint = "complaint" / "苦情",
        /// A wrong number.
        WrongNumber = "wrong_number" / "間違い電話",
        /// Anything else.
        Other = "other" / "その他",
    }
}

crate::code_enum! {
    /// Topic tags of general questions (R-LINE-5).
    pub enum Topic: "topic" {
        /// The My Number health insurance card.
        HealthInsurance = "health_insurance" / "マイナ保険証",
        /// Renewal of the card or its certificates.
        Renewal = "renewal" / "更新",
        /// A lost card.
        Loss = "loss" / "紛失",
        /// Fees.
        Fee = "fee" / "手数料",
        /// Anything else.
        Other = "other" / "その他",
    }
}

crate::code_enum! {
    /// How an operator closes a callback entry.
    pub enum CallbackResult: "callback_result" {
        /// The number was called back.
        CalledBack = "called_back" / "折り返し済み",
        /// Closed without a call (e.g. the matter was settled otherwise).
        Closed = "closed" / "対応不要で終了",
    }
}

crate::code_enum! {
    /// Where a callback entry stands.
    pub enum CallbackStatus: "callback_status" {
        /// Waiting for a callback.
        Open = "open" / "折り返し待ち",
        /// Called back.
        CalledBack = "called_back" / "折り返し済み",
        /// Closed without a call.
        Closed = "closed" / "対応不要で終了",
        /// The caller got through on a later call.
        AnsweredLater = "answered_later" / "再着信で応答済み",
    }
}

impl From<CallbackResult> for CallbackStatus {
    fn from(r: CallbackResult) -> Self {
        match r {
            CallbackResult::CalledBack => CallbackStatus::CalledBack,
            CallbackResult::Closed => CallbackStatus::Closed,
        }
    }
}

crate::code_enum! {
    /// What the network told us of the caller, as stored in `calls.caller_kind`.
    pub enum CallerKind: "caller_kind" {
        /// A valid number.
        Number = "number" / "番号通知",
        /// Digits that are not a valid number.
        Unparsed = "unparsed" / "番号（形式不明）",
        /// The number was withheld.
        Withheld = "withheld" / "番号非通知",
        /// Nothing usable arrived.
        Unknown = "unknown" / "不明",
    }
}

crate::code_enum! {
    /// Which side of a call hung up.
    pub enum Party: "party" {
        /// The citizen, through the trunk.
        Caller = "caller" / "お客様が終話",
        /// The operator's phone.
        Operator = "operator" / "オペレーターが終話",
    }
}

crate::code_enum! {
    /// A live call as the screens see it.
    pub enum CallPhase: "call_phase" {
        /// The operators' phones ring.
        Ringing = "ringing" / "呼出中",
        /// An operator is talking.
        Talking = "talking" / "通話中",
        /// Over.
        Ended = "ended" / "終了",
    }
}

crate::code_enum! {
    /// An operator phone (extension) on the manager's presence list (issue 18 item 5).
    pub enum PresenceState: "presence_state" {
        /// Registered and in no call: it rings for the next one.
        Available = "available" / "受付可",
        /// Registered and in a call.
        Talking = "talking" / "通話中",
        /// No live registration: it does not ring.
        Unregistered = "unregistered" / "未登録",
    }
}

crate::code_enum! {
    /// What the line is doing now.
    pub enum LineState: "line_state" {
        /// No call.
        Idle = "idle" / "待機中",
        /// A call is ringing the operators' phones.
        Ringing = "ringing" / "着信中",
        /// An operator is talking.
        Talking = "talking" / "通話中",
    }
}

crate::code_enum! {
    /// The talk script's paths (R-LINE-6); the console's buttons pick one.
    pub enum TalkPath: "talk_path" {
        /// A first application.
        New = "new" / "新規申請",
        /// Renewal.
        Renewal = "renewal" / "更新",
        /// Loss or damage.
        Loss = "loss" / "紛失・破損",
        /// A facility's request.
        Facility = "facility" / "施設",
        /// A general question.
        Inquiry = "inquiry" / "一般問合せ",
    }
}
