//! One line per event kind: what happened, which version, why.

use std::path::PathBuf;

use super::*;
use crate::layout::Role;

/// `event` stamped as the broadcast would.
fn stamped(event: Event) -> Stamped {
    Stamped {
        seq: 7,
        at: "2026-12-05T03:00:00Z".to_string(),
        event,
    }
}

/// The line for `event` from understudy supervising `myapp`.
fn line(event: Event) -> String {
    slack_text("myapp", &stamped(event))
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

/// A `scored` event of 1.2.0 with `verdict`.
fn scored(verdict: VerdictKind) -> Event {
    Event::Scored {
        version: v("1.2.0"),
        verdict,
        score: 41,
        pairs: 120,
        summary: "errors=0 (5xx rate 4.1 % vs 0.2 %)".to_string(),
        diffs: Vec::new(),
        evidence: Box::default(),
    }
}

#[test]
fn a_rejection_says_which_version_and_why() {
    let reasons = vec!["5xx rate 4.1 % vs 0.2 % on GET /api/orders".to_string()];
    assert_eq!(
        line(Event::Rejecting {
            version: v("1.2.0"),
            reasons: reasons.clone(),
        }),
        "understudy: myapp 1.2.0 rejected: 5xx rate 4.1 % vs 0.2 % on GET /api/orders"
    );
    assert_eq!(
        line(Event::Rejected {
            version: v("1.2.0"),
            reasons,
        }),
        "understudy: myapp 1.2.0 rejected, its files moved to rejected/: 5xx rate 4.1 % vs 0.2 % on GET /api/orders"
    );
}

#[test]
fn a_promotion_says_what_serves_now_what_did_before_and_why() {
    assert_eq!(
        line(Event::Promoted {
            from: Some(v("1.1.0")),
            to: v("1.2.0"),
            why: SwitchWhy::Automatic,
        }),
        "understudy: myapp 1.2.0 promoted, now serving users (it passed its scoring); was 1.1.0"
    );
    let first = line(Event::Promoted {
        from: None,
        to: v("1.0.0"),
        why: SwitchWhy::First,
    });
    assert!(
        first.contains("1.0.0") && first.contains("the first build"),
        "{first}"
    );
    assert_eq!(
        line(Event::Promoting {
            version: v("1.2.0")
        }),
        "understudy: myapp 1.2.0 passed; promoting it"
    );
}

#[test]
fn a_tripped_guard_names_both_versions_and_the_reason() {
    assert_eq!(
        line(Event::GuardTripped {
            version: v("1.2.0"),
            to: v("1.1.0"),
            reason: "5xx rate 3 % vs 0.1 % before the switch".to_string(),
        }),
        "understudy: myapp 1.2.0 did worse after its promotion; rolling back to 1.1.0: 5xx rate 3 % vs 0.1 % before the switch"
    );
}

/// Every kind not covered above: the line starts with the app, names each version in the event,
/// and carries the reason or detail.
#[test]
fn every_other_kind_names_its_versions_and_its_reason() {
    let cases = [cases_1(), cases_2(), cases_3(), cases_4(), cases_5()]
        .into_iter()
        .flatten();
    for (event, wanted) in cases {
        let text = line(event.clone());
        assert!(text.starts_with("understudy: myapp "), "{text}");
        assert!(!text.contains('\n'), "{text}");
        for w in wanted {
            assert!(text.contains(w), "{event:?}: {text:?} lacks {w:?}");
        }
    }
}

/// Events of kinds not covered above (part 1), with what their line must say.
fn cases_1() -> Vec<(Event, &'static [&'static str])> {
    vec![
        (
            Event::BuildFound {
                file: "myapp-1.2.0.jar".into(),
                version: v("1.2.0"),
            },
            &["1.2.0 found", "myapp-1.2.0.jar"],
        ),
        (
            Event::BuildWaiting {
                file: "myapp-1.2.0.jar".into(),
                version: v("1.2.0"),
                reason: "its rejected build is still stopping".into(),
            },
            &["1.2.0 (myapp-1.2.0.jar) waits: its rejected build is still stopping"],
        ),
        (
            Event::Installed {
                version: v("1.2.0"),
            },
            &["1.2.0 installed"],
        ),
        (
            Event::BuildRecovered {
                version: v("1.2.0"),
                outcome: "found installed: it takes its turn as if just installed".into(),
            },
            &["1.2.0 at start: found installed: it takes its turn"],
        ),
        (
            Event::RolledBack {
                from: Some(v("1.2.0")),
                to: v("1.1.0"),
            },
            &["rolled back to 1.1.0", "from 1.2.0"],
        ),
        (
            Event::Started {
                role: Role::Testing,
                version: v("1.2.0"),
                number: 3,
                port: 20001,
            },
            &["1.2.0 started as testing", "port 20001"],
        ),
        (
            Event::Ready {
                role: Role::Testing,
                version: v("1.2.0"),
                number: 3,
                port: 20001,
            },
            &["1.2.0 is ready as testing"],
        ),
        (
            Event::Exited {
                role: Role::Running,
                version: v("1.1.0"),
                status: "exit status: 1".into(),
            },
            &["1.1.0 (running) exited: exit status: 1"],
        ),
        (
            Event::Stopped {
                version: v("1.1.0"),
                number: 2,
            },
            &["1.1.0 instance 2 stopped"],
        ),
    ]
}

/// Events of kinds not covered above (part 2), with what their line must say.
fn cases_2() -> Vec<(Event, &'static [&'static str])> {
    vec![
        (
            Event::RestartScheduled {
                version: v("1.1.0"),
                attempt: 2,
                delay_ms: 500,
                reason: "exited".into(),
            },
            &["1.1.0 failed: exited", "restart 2 in 500 ms"],
        ),
        (
            scored(VerdictKind::Reject),
            &["1.2.0 scored 41 over 120 pairs", "5xx rate 4.1 %"],
        ),
        (
            Event::PromotionFailed {
                version: v("1.2.0"),
                reasons: vec!["not ready in 60s".into()],
            },
            &["1.2.0 promotion failed", "not ready in 60s"],
        ),
        (Event::Paused, &["paused by an operator"]),
        (Event::Resumed, &["resumed by an operator"]),
        (
            Event::HeartbeatLost {
                role: Role::Testing,
                version: v("1.2.0"),
                misses: 3,
                reason: "timed out".into(),
            },
            &[
                "1.2.0 (testing) stopped answering",
                "3 heartbeats",
                "timed out",
            ],
        ),
        (
            Event::HookRan {
                hook: "PRE_PROMOTE".into(),
                version: v("1.2.0"),
                ok: false,
                detail: "exit 3: not allowed".into(),
            },
            &["1.2.0: hook PRE_PROMOTE failed: exit 3: not allowed"],
        ),
        (
            Event::HookRan {
                hook: "POST_PROMOTE".into(),
                version: v("1.2.0"),
                ok: true,
                detail: String::new(),
            },
            &["1.2.0: hook POST_PROMOTE succeeded"],
        ),
        (
            Event::Scheduled {
                id: 4,
                version: Some(v("1.2.0")),
                at: "2026-12-06T03:00:00Z".into(),
            },
            &[
                "1.2.0 scheduled for promotion at 2026-12-06T03:00:00Z",
                "#4",
            ],
        ),
    ]
}

/// Events of kinds not covered above (part 3), with what their line must say.
fn cases_3() -> Vec<(Event, &'static [&'static str])> {
    vec![
        (
            Event::Scheduled {
                id: 5,
                version: None,
                at: "2026-12-06T03:00:00Z".into(),
            },
            &["the build under test scheduled"],
        ),
        (
            Event::ScheduleEnded {
                id: 4,
                outcome: "missed".into(),
                reason: "understudy was down".into(),
            },
            &["#4 missed: understudy was down"],
        ),
        (
            Event::Archived {
                version: v("1.0.0"),
                zip: PathBuf::from("archive/myapp-1.0.0.zip"),
            },
            &["1.0.0 archived as archive/myapp-1.0.0.zip"],
        ),
        (
            Event::ArchiveDeleted {
                zip: PathBuf::from("archive/myapp-0.9.0.zip"),
                reason: "over MAX_BASE_SIZE".into(),
            },
            &["myapp-0.9.0.zip deleted: over MAX_BASE_SIZE"],
        ),
        (
            Event::DiskFull {
                why: "No space left on device".into(),
            },
            &["cannot save its state", "No space left on device"],
        ),
        (Event::DiskRecovered, &["saves its state again"]),
        (
            Event::SwitchCompleted {
                kind: "promotion".into(),
                version: v("1.2.0"),
                from: Some(v("1.1.0")),
            },
            &["1.2.0 serves", "promotion", "was 1.1.0"],
        ),
        (
            Event::SwitchUndone {
                kind: "promotion".into(),
                version: v("1.2.0"),
                serving: Some(v("1.1.0")),
            },
            &["1.2.0: its promotion", "undone; 1.1.0 keeps serving"],
        ),
    ]
}

/// Events of kinds not covered above (part 4), with what their line must say.
fn cases_4() -> Vec<(Event, &'static [&'static str])> {
    vec![
        (
            Event::CrashLooping {
                version: v("1.1.0"),
                failures: 5,
                retry_every_ms: 30000,
            },
            &["1.1.0 keeps crashing (5 failures", "30000 ms"],
        ),
        (
            Event::CrashLoopReplaced {
                version: v("1.2.0"),
                replaced: v("1.1.0"),
                failures: 5,
            },
            &["1.2.0 replaces 1.1.0", "5 times"],
        ),
        (
            Event::CanaryStep {
                version: v("1.2.0"),
                step: 2,
                steps: 3,
                share: "25 %".into(),
            },
            &["1.2.0 serves 25 % of users (canary step 2 of 3)"],
        ),
        (
            Event::CanaryHeld {
                version: v("1.2.0"),
                step: 1,
                why: "too little evidence".into(),
            },
            &["1.2.0's canary holds: too little evidence"],
        ),
        (
            Event::SecondaryGivenUp {
                version: v("1.1.0"),
                reason: "not ready".into(),
            },
            &["1.1.0: running's secondary was given up (not ready)"],
        ),
        (
            Event::FilingFailed {
                version: v("1.0.0"),
                attempt: 2,
                error: "Permission denied".into(),
                retrying: true,
            },
            &["1.0.0 could not be filed away (attempt 2): Permission denied; retrying"],
        ),
        (
            Event::FilingFailed {
                version: v("1.0.0"),
                attempt: 5,
                error: "Permission denied".into(),
                retrying: false,
            },
            &["given up, its folder stays"],
        ),
    ]
}

/// Events of kinds not covered above (part 5), with what their line must say.
fn cases_5() -> Vec<(Event, &'static [&'static str])> {
    vec![
        (
            Event::RollbackFailed {
                version: v("1.1.0"),
                reason: "not ready".into(),
            },
            &["rollback to 1.1.0 failed", "not ready"],
        ),
        (
            Event::GuardEnded {
                version: v("1.2.0"),
                from: v("1.1.0"),
            },
            &["1.2.0 held through its rollback window; 1.1.0 is filed away"],
        ),
        (
            Event::FilingCalledOff {
                version: v("1.0.0"),
                what: "archive".into(),
                reason: "1.0.0 is running".into(),
            },
            &["1.0.0: its archive is called off, its folder stays: 1.0.0 is running"],
        ),
    ]
}

#[test]
fn slack_markup_from_traffic_is_escaped_and_a_long_line_is_cut() {
    let text = line(Event::Rejecting {
        version: v("1.2.0"),
        reasons: vec!["GET /a?x=<!channel>&y=1\nsecond line".to_string()],
    });
    assert!(
        text.ends_with("GET /a?x=&lt;!channel&gt;&amp;y=1 second line"),
        "{text}"
    );
    let long = line(Event::Rejecting {
        version: v("1.2.0"),
        reasons: vec!["x".repeat(5000)],
    });
    assert_eq!(long.chars().count(), MAX_TEXT + 1, "{long}");
    assert!(long.ends_with('…'));
}

#[test]
fn outside_text_can_neither_mention_nor_link_nor_open_code() {
    let reasons = vec![
        "404 rate 50 % on GET /@everyone".to_string(),
        "@here @channel <@123> mail a@b.example".to_string(),
        "body differs: [click](https://evil.example/login) `x` ```".to_string(),
    ];
    let summary = "errors=1 (GET /[a](http://evil.example) differs: \"@all\")".to_string();
    for text in [
        line(Event::Rejecting {
            version: v("1.2.0"),
            reasons,
        }),
        line(Event::Scored {
            version: v("1.2.0"),
            verdict: VerdictKind::Reject,
            score: 12,
            pairs: 30,
            summary,
            diffs: Vec::new(),
            evidence: Box::default(),
        }),
    ] {
        for pinging in ["@everyone", "@here", "@channel", "@all", "<@"] {
            assert!(!text.contains(pinging), "{pinging} in {text}");
        }
        assert!(!text.contains("](") && !text.contains("://"), "{text}");
        assert!(!text.contains('`'), "{text}");
        // Still readable: the zero width space shows nothing.
        let shown = text.replace('\u{200B}', "");
        assert!(
            shown.contains("@everyone") || shown.contains("@all"),
            "{shown}"
        );
    }
    let own = "understudy: myapp 1.2.0 rejected: 5xx rate 4.1 % vs 0.2 % on GET /api/orders";
    let text = line(Event::Rejecting {
        version: v("1.2.0"),
        reasons: vec!["5xx rate 4.1 % vs 0.2 % on GET /api/orders".to_string()],
    });
    assert_eq!(text, own, "understudy's own words are untouched");
}

#[test]
fn the_scorer_is_told_only_when_its_verdict_changes() {
    let mut told = Told::default();
    assert!(!told.worth_telling(&scored(VerdictKind::Wait)));
    assert!(told.worth_telling(&scored(VerdictKind::Promote)));
    // Paused: the same verdict every EVALUATE_EVERY is said once.
    assert!(!told.worth_telling(&scored(VerdictKind::Promote)));
    assert!(told.worth_telling(&Event::Paused));
    assert!(told.worth_telling(&scored(VerdictKind::Reject)));
    assert!(!told.worth_telling(&scored(VerdictKind::Reject)));
    assert!(told.worth_telling(&scored(VerdictKind::Promote)));
}

#[test]
fn a_rejection_is_told_once_with_its_reasons() {
    let mut told = Told::default();
    let reasons = vec!["exited at start".to_string()];
    let rejecting = |s: &str| Event::Rejecting {
        version: v(s),
        reasons: reasons.clone(),
    };
    let rejected = |s: &str| Event::Rejected {
        version: v(s),
        reasons: reasons.clone(),
    };
    assert!(told.worth_telling(&rejecting("1.2.0")));
    assert!(!told.worth_telling(&rejected("1.2.0")));
    // A build refused before it ever ran (a bad bundle) has only its `rejected`.
    assert!(told.worth_telling(&rejected("1.3.0")));
    assert!(told.worth_telling(&rejecting("1.4.0")));
    assert!(told.worth_telling(&rejected("1.3.1")));
    assert!(!told.worth_telling(&rejected("1.4.0")));
}
