//! The booking domain's codes (R-CAL, R-SLOT, R-BOOK, R-PREP-5), each with its Japanese label.

crate::code_enum! {
    /// What a visit day is for: home and facility visits never share a day (R-CAL-1).
    pub enum VisitDayKind: "visit_day_kind" {
        /// Home visits (自宅訪問).
        Home = "home" / "自宅訪問日",
        /// Facility visits (施設訪問).
        Facility = "facility" / "施設訪問日",
    }
}

crate::code_enum! {
    /// Morning or afternoon of a visit day (R-SLOT-1).
    pub enum HalfDay: "half_day" {
        /// Morning.
        Am = "am" / "午前",
        /// Afternoon.
        Pm = "pm" / "午後",
    }
}

crate::code_enum! {
    /// What holds a slot.
    pub enum BookingKind: "booking_kind" {
        /// A home visit (one household, one or more applicants).
        Home = "home" / "自宅訪問",
        /// A facility visit (R-BOOK-5, R-SLOT-2).
        Facility = "facility" / "施設訪問",
        /// A facility's on-site pre-meeting (事前打合せ, R-CAL-3): blocks the time for operators.
        PreMeeting = "pre_meeting" / "事前打合せ",
    }
}

crate::code_enum! {
    /// Where a booking stands.
    pub enum BookingStatus: "booking_status" {
        /// Holds its slot.
        Booked = "booked" / "予約済",
        /// Cancelled; the slot is free again, the reception number is never reused.
        Cancelled = "cancelled" / "取消",
    }
}

crate::code_enum! {
    /// A changing step in a booking's history.
    pub enum BookingChange: "booking_change" {
        /// Booked.
        Created = "created" / "予約",
        /// Moved to another slot.
        Rescheduled = "rescheduled" / "日程変更",
        /// Cancelled.
        Cancelled = "cancelled" / "取消",
    }
}

crate::code_enum! {
    /// The kind of application an applicant makes (R-BOOK-3 c).
    pub enum ApplicationKind: "application_kind" {
        /// First card.
        New = "new" / "新規",
        /// Renewal of an expiring card.
        Renewal = "renewal" / "更新",
        /// The card was lost.
        Loss = "loss" / "紛失",
        /// The card was damaged.
        Damage = "damage" / "破損",
    }
}

crate::code_enum! {
    /// Who is calling, as R-BOOK-1 allows.
    pub enum CallerRelation: "caller_relation" {
        /// The applicant.
        Applicant = "applicant" / "本人",
        /// A family member living with the applicant.
        Household = "household" / "同居の家族",
        /// A relative within the third degree (三親等以内).
        Relative = "relative" / "三親等以内の親族",
        /// Someone the applicant asked, phoning in front of them.
        Requested = "requested" / "本人から依頼を受けた方（本人同席）",
        /// Staff of the facility the applicant lives in.
        FacilityStaff = "facility_staff" / "施設職員",
    }
}

crate::code_enum! {
    /// Identity documents an applicant can show (R-BOOK-3 e).
    pub enum IdDocument: "id_document" {
        /// Driving licence.
        DrivingLicence = "driving_licence" / "運転免許証",
        /// Driving record certificate.
        DrivingRecord = "driving_record" / "運転経歴証明書",
        /// Passport.
        Passport = "passport" / "旅券（パスポート）",
        /// Disability certificate (physical).
        DisabilityPhysical = "disability_physical" / "身体障害者手帳",
        /// Disability certificate (mental health).
        DisabilityMental = "disability_mental" / "精神障害者保健福祉手帳",
        /// Disability certificate (intellectual).
        DisabilityIntellectual = "disability_intellectual" / "療育手帳",
        /// Residence card.
        ResidenceCard = "residence_card" / "在留カード",
        /// The old My Number card (renewal).
        MyNumberCard = "my_number_card" / "マイナンバーカード（旧）",
        /// Eligibility certificate or health insurance card.
        InsuranceCertificate = "insurance_certificate" / "資格確認書・健康保険証",
        /// Long-term care insurance card.
        CareInsurance = "care_insurance" / "介護保険被保険者証",
        /// Pension certificate or book.
        Pension = "pension" / "年金手帳・年金証書",
        /// Anything else (noted).
        Other = "other" / "その他",
    }
}

crate::code_enum! {
    /// Guidance the operator must give (R-BOOK-4), recorded as given.
    pub enum Guidance: "guidance" {
        /// a: the old card is collected on the day.
        RenewalOldCard = "renewal_old_card" / "更新：旧カードは当日回収します",
        /// a: health-insurance use without 資格確認書 needs one from the insurer first.
        RenewalInsuranceCertificate = "renewal_insurance_certificate" / "更新：保険証として利用中で資格確認書がない場合は、訪問日までに保険者から交付を受けてください",
        /// b: suspend the card at the My Number general free dial.
        LossSuspend = "loss_suspend" / "紛失・破損：マイナンバー総合フリーダイヤルで一時利用停止の手続きをしてください",
        /// b: report to the police where it fits.
        LossPolice = "loss_police" / "紛失：警察へ遺失届を出してください（受理番号を控えてください）",
        /// b: re-issue fee 2,000 yen paid on the day in exact change.
        LossFee = "loss_fee" / "紛失・破損（本人の責による）：再交付手数料2,000円を当日お釣りのないようご用意ください",
        /// b: express issuance and 資格確認書 as needed.
        LossExpress = "loss_express" / "紛失・破損：特急発行を利用します。必要に応じ資格確認書を申請してください",
        /// c: what to have ready and the identity documents accepted.
        Prepare = "prepare" / "全件：当日ご用意いただくものと本人確認書類のご案内",
    }
}

crate::code_enum! {
    /// Application form templates a visit needs (R-PREP-5).
    pub enum FormKind: "form_kind" {
        /// 交付申請書.
        IssueApplication = "issue_application" / "交付申請書",
        /// 暗証番号設定依頼書.
        PinSetting = "pin_setting" / "暗証番号設定依頼書",
        /// 顔写真証明書.
        PhotoCertificate = "photo_certificate" / "顔写真証明書",
        /// 保険証利用同意書.
        InsuranceConsent = "insurance_consent" / "保険証利用同意書",
        /// 紛失届.
        LossReport = "loss_report" / "紛失届",
        /// 返納届.
        ReturnReport = "return_report" / "返納届",
        /// 通知カード紛失届.
        NoticeCardLoss = "notice_card_loss" / "通知カード紛失届",
        /// 住基カード返納届.
        JukiCardReturn = "juki_card_return" / "住基カード返納届",
    }
}

crate::code_enum! {
    /// Where a facility request stands (R-BOOK-5).
    pub enum FacilityStatus: "facility_status" {
        /// Recorded by an operator; the manager calls back.
        Requested = "requested" / "折り返し待ち",
        /// Visit day(s) agreed.
        Scheduled = "scheduled" / "日程確定",
        /// Steered to home slots (5 or fewer applicants) or withdrawn.
        Closed = "closed" / "終了",
    }
}

crate::code_enum! {
    /// How an address was placed (R-BOOK-3 a).
    pub enum AddressMatch: "address_match" {
        /// Matched to a 町丁目 of the city.
        Town = "town" / "町丁目を特定",
        /// In the city, but the town is not in the list: travel is estimated by hand.
        UnknownTown = "unknown_town" / "町名不明（移動時間は手入力）",
        /// Outside the city: refused.
        OutsideCity = "outside_city" / "市外",
    }
}
