//! Run, step, approval and question states, and the legal run transitions (§4).

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::status::UnknownState;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::status::UnknownState { kind: stringify!($name), value: other.to_owned() }),
                }
            }
        }
    };
}
pub(crate) use string_enum;

/// A state string read from the database or a client that names no known state.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown {kind} \"{value}\"")]
pub struct UnknownState {
    pub kind: &'static str,
    pub value: String,
}

string_enum!(
    /// The state of a run.
    RunStatus {
        Queued => "QUEUED",
        Running => "RUNNING",
        Paused => "PAUSED",
        WaitingApproval => "WAITING_APPROVAL",
        WaitingInput => "WAITING_INPUT",
        RetryWait => "RETRY_WAIT",
        Succeeded => "SUCCEEDED",
        Failed => "FAILED",
        Cancelled => "CANCELLED",
        TimedOut => "TIMED_OUT",
    }
);

/// A transition the run state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run cannot go from {from} to {to}")]
pub struct IllegalTransition {
    pub from: RunStatus,
    pub to: RunStatus,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled | RunStatus::TimedOut
        )
    }

    /// States whose run is parked waiting for a person; the run deadline does not
    /// tick there (an approval may legitimately take hours, a run deadline is minutes).
    pub fn waits_for_human(self) -> bool {
        matches!(
            self,
            RunStatus::Paused | RunStatus::WaitingApproval | RunStatus::WaitingInput
        )
    }

    /// The §4 state machine. A paused run that never started resumes to QUEUED.
    ///
    /// FAILED and TIMED_OUT may go back to QUEUED, but only through an operator's
    /// retry (`Engine::retry_run`); workers never write that transition, and the
    /// states stay terminal (`is_terminal`) for everything else.
    pub fn check_transition(self, to: RunStatus) -> Result<(), IllegalTransition> {
        use RunStatus::*;
        let legal = match self {
            Queued => matches!(to, Running | Paused | Cancelled | TimedOut),
            Running => matches!(
                to,
                Paused
                    | WaitingApproval
                    | WaitingInput
                    | RetryWait
                    | Succeeded
                    | Failed
                    | Cancelled
                    | TimedOut
            ),
            Paused => matches!(to, Running | Queued | Cancelled),
            WaitingApproval | WaitingInput => matches!(to, Running | Cancelled | TimedOut),
            RetryWait => matches!(to, Running | Paused | Cancelled | TimedOut),
            Failed | TimedOut => matches!(to, Queued),
            Succeeded | Cancelled => false,
        };
        if legal {
            Ok(())
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }
}

string_enum!(
    /// The state of a step record.
    StepStatus {
        Running => "RUNNING",
        RetryWait => "RETRY_WAIT",
        Sleeping => "SLEEPING",
        Succeeded => "SUCCEEDED",
        Failed => "FAILED",
    }
);

string_enum!(
    /// The state of an approval (§4).
    ApprovalStatus {
        Pending => "PENDING",
        Approved => "APPROVED",
        Rejected => "REJECTED",
        Expired => "EXPIRED",
        Executed => "EXECUTED",
    }
);

string_enum!(
    /// The state of a question to a human.
    QuestionStatus {
        Pending => "PENDING",
        Answered => "ANSWERED",
        Expired => "EXPIRED",
    }
);

string_enum!(
    /// What started a run.
    Trigger {
        Manual => "MANUAL",
        Schedule => "SCHEDULE",
        Alertmanager => "ALERTMANAGER",
        Api => "API",
    }
);

string_enum!(
    /// What a run does when it asks for an approval: wait for a person (until the
    /// approval expires), or take a rejection at once. Unattended triggers choose
    /// (an Alertmanager receiver's `approval_mode`); runs started by people wait.
    ApprovalMode {
        Wait => "WAIT",
        Reject => "REJECT",
    }
);

// `string_enum!` has no `#[default]` variant attribute.
#[allow(clippy::derivable_impls)]
impl Default for ApprovalMode {
    fn default() -> Self {
        ApprovalMode::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_accept_no_transition_but_retry() {
        use RunStatus::*;
        for from in RunStatus::ALL.iter().filter(|s| s.is_terminal()) {
            for to in RunStatus::ALL {
                let retry = matches!(from, Failed | TimedOut) && *to == Queued;
                assert_eq!(from.check_transition(*to).is_ok(), retry, "{from} -> {to}");
            }
        }
        assert!(Failed.is_terminal() && TimedOut.is_terminal());
        assert!(Succeeded.check_transition(Queued).is_err());
        assert!(Cancelled.check_transition(Queued).is_err());
    }

    #[test]
    fn spec_transitions_are_legal_and_others_are_not() {
        use RunStatus::*;
        for (from, to) in [
            (Queued, Running),
            (Running, Paused),
            (Paused, Running),
            (Running, WaitingApproval),
            (WaitingApproval, Running),
            (Running, WaitingInput),
            (WaitingInput, Running),
            (Running, RetryWait),
            (RetryWait, Running),
            (Running, Succeeded),
            (Running, TimedOut),
            (Failed, Queued),
            (TimedOut, Queued),
        ] {
            assert_eq!(from.check_transition(to), Ok(()), "{from} -> {to}");
        }
        let err = Queued.check_transition(Succeeded).unwrap_err();
        assert_eq!(err.to_string(), "run cannot go from QUEUED to SUCCEEDED");
        assert!(WaitingApproval.check_transition(Succeeded).is_err());
        assert!(Paused.check_transition(WaitingInput).is_err());
    }

    #[test]
    fn states_round_trip_through_text() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), *s);
        }
        assert_eq!(
            "DONE".parse::<RunStatus>().unwrap_err().to_string(),
            "unknown RunStatus \"DONE\""
        );
    }
}
