//! Status conditions with kstatus semantics, written once for every controller.
//!
//! * `Ready` is always present on a reconciled object.
//! * `Reconciling` and `Stalled` are "abnormal-true": present only while True, and never both.
//! * A condition's `lastTransitionTime` changes only when its status, reason or message change,
//!   and new times are truncated to whole seconds so they round-trip through the apiserver
//!   unchanged (otherwise every status write would look like a change).
//! * Conditions are kept sorted with `Stalled`, `Reconciling`, `Ready` first (as `kubectl`
//!   shows them), the rest by type.

use driftless_api::meta::{Condition, condition_types};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

/// Longest condition message kept; longer ones are cut (Flux's limit).
pub const MAX_MESSAGE_LEN: usize = 32 * 1024;

/// Status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    Unknown,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// The current time truncated to whole seconds.
pub fn now() -> Time {
    let secs = Timestamp::now().as_second();
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Finds a condition by type.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition exists with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Whether the condition exists with status False.
pub fn is_false(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "False")
}

/// Sets a condition, keeping its transition time when status, reason and message are unchanged.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: Status,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let message = trim_message(message);
    let new = Condition {
        type_: type_.to_string(),
        status: status.as_str().to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: now(),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let same_state = existing.status == new.status
                && existing.reason == new.reason
                && existing.message == new.message;
            let last_transition_time = if same_state {
                existing.last_transition_time.clone()
            } else {
                new.last_transition_time.clone()
            };
            *existing = Condition {
                last_transition_time,
                ..new
            };
        }
        None => conditions.push(new),
    }
    sort(conditions);
}

/// Removes a condition.
pub fn delete(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// Marks the object as being reconciled: `Reconciling=True`, and removes `Stalled`.
pub fn mark_reconciling(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    delete(conditions, condition_types::STALLED);
    set(
        conditions,
        condition_types::RECONCILING,
        Status::True,
        reason,
        message,
        generation,
    );
}

/// Marks the object as stalled: `Stalled=True`, and removes `Reconciling`.
pub fn mark_stalled(conditions: &mut Vec<Condition>, reason: &str, message: &str, generation: Option<i64>) {
    delete(conditions, condition_types::RECONCILING);
    set(
        conditions,
        condition_types::STALLED,
        Status::True,
        reason,
        message,
        generation,
    );
}

fn trim_message(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_LEN {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE_LEN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

fn rank(type_: &str) -> usize {
    match type_ {
        condition_types::STALLED => 0,
        condition_types::RECONCILING => 1,
        condition_types::READY => 2,
        _ => 3,
    }
}

fn sort(conditions: &mut [Condition]) {
    conditions.sort_by(|a, b| {
        rank(&a.type_)
            .cmp(&rank(&b.type_))
            .then_with(|| a.type_.cmp(&b.type_))
    });
}

/// A kstatus conformance violation found by [`check_kstatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

/// Checks the kstatus rules Flux's `conditions/check` enforces, for tests and debugging:
/// Ready present; Reconciling/Stalled never False and never both True; Ready not True while
/// Reconciling or Stalled; negative-polarity conditions not True while Ready is True.
pub fn check_kstatus(conditions: &[Condition], negative_polarity: &[&str]) -> Vec<Violation> {
    let mut out = Vec::new();
    let ready = get(conditions, condition_types::READY);
    if ready.is_none() {
        out.push(Violation("Ready condition must always be present".into()));
    }
    for abnormal in [condition_types::RECONCILING, condition_types::STALLED] {
        if is_false(conditions, abnormal) || get(conditions, abnormal).is_some_and(|c| c.status == "Unknown")
        {
            out.push(Violation(format!(
                "{abnormal} must be removed rather than set to non-True"
            )));
        }
    }
    if is_true(conditions, condition_types::RECONCILING) && is_true(conditions, condition_types::STALLED) {
        out.push(Violation("Reconciling and Stalled cannot both be True".into()));
    }
    if is_true(conditions, condition_types::READY) {
        for t in [condition_types::RECONCILING, condition_types::STALLED]
            .iter()
            .chain(negative_polarity)
        {
            if is_true(conditions, t) {
                out.push(Violation(format!("{t} cannot be True while Ready is True")));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_changes_only_when_the_state_changes() {
        let mut conds = Vec::new();
        set(
            &mut conds,
            "Ready",
            Status::False,
            "Progressing",
            "working",
            Some(1),
        );
        let first = conds[0].last_transition_time.clone();
        // Same state, new generation: the time is kept.
        conds[0].last_transition_time = Time(Timestamp::UNIX_EPOCH);
        set(
            &mut conds,
            "Ready",
            Status::False,
            "Progressing",
            "working",
            Some(2),
        );
        assert_eq!(conds[0].last_transition_time, Time(Timestamp::UNIX_EPOCH));
        assert_eq!(conds[0].observed_generation, Some(2));
        // New message: the time moves.
        set(&mut conds, "Ready", Status::True, "Succeeded", "done", Some(2));
        assert!(conds[0].last_transition_time >= first);
        assert_ne!(conds[0].last_transition_time, Time(Timestamp::UNIX_EPOCH));
    }

    #[test]
    fn new_transition_times_are_whole_seconds() {
        assert_eq!(now().0.subsec_nanosecond(), 0);
    }

    #[test]
    fn reconciling_and_stalled_exclude_each_other_and_sort_first() {
        let mut conds = Vec::new();
        set(
            &mut conds,
            "ArtifactInStorage",
            Status::True,
            "Succeeded",
            "",
            None,
        );
        set(&mut conds, "Ready", Status::False, "Failed", "x", None);
        mark_reconciling(&mut conds, "Progressing", "working", None);
        assert_eq!(
            conds.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["Reconciling", "Ready", "ArtifactInStorage"]
        );
        mark_stalled(&mut conds, "InvalidURL", "bad", None);
        assert_eq!(
            conds.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["Stalled", "Ready", "ArtifactInStorage"]
        );
        assert!(check_kstatus(&conds, &[]).is_empty());
    }

    #[test]
    fn long_messages_are_trimmed_on_a_char_boundary() {
        let mut conds = Vec::new();
        let long = "é".repeat(MAX_MESSAGE_LEN);
        set(&mut conds, "Ready", Status::False, "Failed", &long, None);
        assert!(conds[0].message.len() <= MAX_MESSAGE_LEN + 3);
        assert!(conds[0].message.ends_with("..."));
    }

    #[test]
    fn kstatus_checker_flags_each_rule() {
        assert_eq!(check_kstatus(&[], &[]).len(), 1);
        let mut conds = Vec::new();
        set(&mut conds, "Ready", Status::True, "Succeeded", "", None);
        set(&mut conds, "FetchFailed", Status::True, "X", "", None);
        set(&mut conds, "Reconciling", Status::False, "X", "", None);
        let v = check_kstatus(&conds, &["FetchFailed"]);
        assert_eq!(v.len(), 2, "{v:?}");
    }
}
