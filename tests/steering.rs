//! Steering that must survive understudy itself: a scheduled promotion across hard kills.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::*;

/// The switches recorded in history.jsonl, as (to, why).
fn switches(base: &Base) -> Vec<(String, String, String)> {
    std::fs::read_to_string(base.path.join(".understudy/history.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|s| {
            (
                s["to"].as_str().unwrap_or("?").to_string(),
                s["why"].as_str().unwrap_or("?").to_string(),
                s["at"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

fn scheduled_switches(base: &Base) -> usize {
    switches(base)
        .iter()
        .filter(|(_, why, _)| why == "scheduled")
        .count()
}

#[test]
fn a_scheduled_promotion_survives_a_hard_kill_and_fires_exactly_once() {
    let (base, mut u) = start_with_testing("schedule-kill", "");
    let due = SystemTime::now() + Duration::from_secs(6);
    let at = understudy::supervisor::control::rfc3339(due);
    let (code, out, err) = cli(&base, &["promote", "--at", &at]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("schedule #1"), "{out}");
    // Saved before the answer: the state file already holds it.
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(base.path.join(".understudy/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["schedules"][0]["state"], "pending", "{state}");
    assert_eq!(state["schedules"][0]["version"], "1.1.0", "{state}");
    let (_, out, _) = cli(&base, &["status"]);
    assert!(out.contains("scheduled") && out.contains(&at), "{out}");

    u.kill_hard();
    let mut u = Understudy::start(&base);
    assert!(
        SystemTime::now() < due,
        "the restart must come before the schedule's time for this test to mean anything"
    );
    assert_eq!(
        base.version_of("running").as_deref(),
        None.or(Some("app-1.0.0"))
    );
    wait_until("the scheduled promotion", Duration::from_secs(40), || {
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });
    assert_eq!(scheduled_switches(&base), 1, "{:?}", switches(&base));
    let (_, _, switched_at) = switches(&base).pop().unwrap();
    let switched = understudy::history::parse_rfc3339(&switched_at).unwrap();
    assert!(switched >= due, "fired at {switched_at}, before {at}");
    let (_, out, _) = cli(&base, &["schedule", "--json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["schedules"][0]["state"], "fired", "{list}");

    // Restarted again after it fired: it does not fire again.
    u.kill_hard();
    let mut u = Understudy::start(&base);
    u.wait_serving();
    base.drop_fixture("1.2.0", "");
    base.wait_testing();
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.1.0"));
    assert_eq!(scheduled_switches(&base), 1, "{:?}", switches(&base));
    let (_, out, _) = cli(&base, &["schedule"]);
    assert!(out.contains("#1") && out.contains("fired"), "{out}");
    // Cancelling a finished schedule is refused; an unknown one is 404 (exit 1).
    let (code, _, err) = cli(&base, &["schedule", "cancel", "1"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = cli(&base, &["schedule", "cancel", "42"]);
    assert_eq!(code, 1);
    assert!(err.contains("42"), "{err}");
    u.stop();
}
