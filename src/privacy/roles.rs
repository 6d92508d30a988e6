crate::code_enum! {
    /// A staff role (R-PII-1). Each API route names the roles it admits.
    pub enum Role: "role" {
        /// Answers the line, records calls and bookings.
        Operator = "operator" / "オペレーター",
        /// The contractor's manager: stats, calendar, callbacks, approvals, purge.
        Manager = "manager" / "管理者",
        /// City staff: receive slips, mark visits done.
        City = "city" / "市職員",
        /// Runs the system: accounts and configuration; sees the audit log.
        Admin = "admin" / "システム管理者",
    }
}
