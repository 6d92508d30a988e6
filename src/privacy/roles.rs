use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A staff role (R-PII-1). Each API route names the roles it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Answers the line, records calls and bookings.
    Operator,
    /// The contractor's manager: stats, calendar, callbacks, approvals, purge.
    Manager,
    /// City staff: receive slips, mark visits done.
    City,
    /// Runs the system: accounts and configuration; sees the audit log.
    Admin,
}

impl Role {
    /// Every role, for tables and tests.
    pub const ALL: [Role; 4] = [Role::Operator, Role::Manager, Role::City, Role::Admin];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Manager => "manager",
            Role::City => "city",
            Role::Admin => "admin",
        }
    }

    /// The name shown in the UI.
    pub fn label_ja(self) -> &'static str {
        match self {
            Role::Operator => "オペレーター",
            Role::Manager => "管理者",
            Role::City => "市職員",
            Role::Admin => "システム管理者",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role '{s}' (expected operator, manager, city or admin)")
            })
    }
}
