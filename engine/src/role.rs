//! Roles: what a principal may do, ordered (each includes the ones below it).

use std::cmp::Ordering;

use crate::status::{UnknownState, string_enum};

string_enum!(
    /// What a principal may do. Each role includes the ones below it:
    /// `VIEWER` reads; `OPERATOR` also starts, pauses and cancels runs, decides
    /// approvals and answers questions; `ADMIN` also manages teams, schedules,
    /// providers, credentials and users.
    Role {
        Viewer => "VIEWER",
        Operator => "OPERATOR",
        Admin => "ADMIN",
    }
);

impl Role {
    fn rank(self) -> u8 {
        match self {
            Role::Viewer => 0,
            Role::Operator => 1,
            Role::Admin => 2,
        }
    }

    /// Parses a role name in any case (`viewer`, `Operator`, `ADMIN`), as typed on a
    /// command line.
    pub fn parse_ignore_case(s: &str) -> std::result::Result<Role, UnknownState> {
        s.trim().to_ascii_uppercase().parse()
    }
}

impl Ord for Role {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for Role {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
