//! What a stop (SIGTERM, `kill -9`, an upgrade) must not lose on the way in or out: a build
//! waiting behind the one under test, builds found installed that `state.json` did not name, a
//! version folder on its way out; and an upgrade waits for work on version folders.

use super::*;

/// The state file as the last write left it, read back as a restart reads it.
fn saved(sim: &Sim) -> Persisted {
    let text = serde_json::to_string(sim.s.persisted.as_ref().expect("written")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_build_waiting_behind_the_one_under_test_is_saved_and_tested_after_a_restart() {
    let mut sim = Sim::new(PORTS);
    let (running, _) = sim.serving_with_testing("1.1.0");
    // Running restarts: 1.2.0 waits for it behind 1.1.0, which is still under test.
    sim.event(
        running,
        InstanceEventKind::Exited {
            status: "signal: 9".into(),
            stderr_tail: String::new(),
            stdout_tail: String::new(),
        },
    );
    sim.deliver("1.2.0");
    assert_eq!(sim.s.pending().map(|p| p.version.clone()), Some(v("1.2.0")));
    let p = saved(&sim);
    assert_eq!(
        (p.testing.clone(), p.pending.clone()),
        (Some(v("1.1.0")), Some(v("1.2.0")))
    );
    let mut after = Sim::new(PORTS);
    let a = after.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.0.0")),
        testing: Some(installed("1.1.0")),
        pending: p.pending.as_ref().map(|v| installed(&v.to_string())),
        ..Default::default()
    })));
    // As running's readiness would have: 1.2.0 is tested, 1.1.0 filed away.
    assert!(a.contains(&Action::Archive(v("1.1.0"))), "{a:#?}");
    let (_, a) = after.bring_up(&a);
    assert_eq!(start_of(&a, Role::Testing).map(|s| s.1), Some(v("1.2.0")));
}

#[tokio::test(start_paused = true)]
async fn builds_found_installed_but_not_named_take_their_turn_or_are_filed_saying_why() {
    let mut sim = Sim::new(PORTS);
    let a = sim.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.0.0")),
        testing: Some(installed("1.1.0")),
        found: vec![installed("1.3.0"), installed("0.9.0"), installed("1.2.0")],
        ..Default::default()
    })));
    let recovered: Vec<(Version, String)> = emitted(&a)
        .iter()
        .filter_map(|e| match e {
            Event::BuildRecovered { version, outcome } => Some((version.clone(), outcome.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(recovered.len(), 3, "one event each: {recovered:#?}");
    assert!(
        recovered[0].0 == v("0.9.0")
            && recovered[0].1.contains("not newer than running 1.0.0")
            && recovered[0].1.contains("archived"),
        "{recovered:#?}"
    );
    assert!(recovered[2]
        .1
        .contains("takes its turn as if just installed"));
    // The newest takes the turn; the older ones are filed away, as newer drops supersede them.
    for old in ["0.9.0", "1.1.0", "1.2.0"] {
        assert!(a.contains(&Action::Archive(v(old))), "{old}: {a:#?}");
    }
    let (_, a) = sim.bring_up(&a);
    assert_eq!(start_of(&a, Role::Testing).map(|s| s.1), Some(v("1.3.0")));

    // The very first build, found installed: it serves.
    let mut first = Sim::new(PORTS);
    let a = first.feed(Input::Resume(Box::new(Resumed {
        found: vec![installed("1.0.0")],
        ..Default::default()
    })));
    assert_eq!(start_of(&a, Role::Running).map(|s| s.1), Some(v("1.0.0")));
}

#[tokio::test(start_paused = true)]
async fn a_rejection_cut_short_by_a_stop_is_saved_and_filed_at_the_next_start() {
    let mut sim = Sim::new(PORTS);
    let (_, testing) = sim.serving_with_testing("1.1.0");
    let reasons = vec!["5xx rate".to_string()];
    sim.verdict(testing, Verdict::Reject(reasons.clone()));
    // Its instance is still stopping when understudy stops: the rejection is in the state file.
    let p = saved(&sim);
    assert_eq!(p.testing, None);
    assert_eq!(
        p.filings,
        vec![JournaledFiling {
            version: v("1.1.0"),
            reject: Some(reasons.clone()),
        }]
    );
    let mut after = Sim::new(PORTS);
    let a = after.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.0.0")),
        filings: p.filings.clone(),
        ..Default::default()
    })));
    assert!(
        a.contains(&Action::Reject {
            version: v("1.1.0"),
            reasons
        }),
        "{a:#?}"
    );
    assert!(start_of(&a, Role::Testing).is_none());
}

#[tokio::test(start_paused = true)]
async fn an_upgrade_waits_for_an_install_under_way() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.0.0");
    sim.bring_up(&a);
    sim.feed(Input::Dropped(build("1.1.0")));
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Upgrade(None),
    });
    assert!(
        matches!(reply_in(&a, 1), Err(CommandError::Refused(why))
            if why.contains("the install of 1.1.0 is under way") && why.contains("upgrade understudy once it is done")),
        "{a:#?}"
    );
    assert!(!a.iter().any(|a| matches!(a, Action::Upgrade { .. })));
}

/// The proxy holds users' requests until this first decision (`Routes::at_start`): with a
/// running resumed it says to wait for it, as after a crash (they were told 503 "no running
/// instance yet" while it started); with nothing to run it says so, and users are told at once.
#[tokio::test(start_paused = true)]
async fn the_first_decision_says_users_wait_for_running_resumed_or_that_there_is_none() {
    let mut sim = Sim::new(PORTS);
    let a = sim.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.0.0")),
        ..Default::default()
    })));
    let routes = routes_in(&a).expect("routes published at resume");
    assert_eq!(routes.hold, Some(crate::proxy::Hold::Restart), "{routes:?}");
    assert_eq!(routes.restarting, Some(v("1.0.0")));
    let mut empty = Sim::new(PORTS);
    let a = empty.feed(Input::Resume(Box::default()));
    let routes = routes_in(&a).expect("routes published at resume");
    assert_eq!(
        (routes.hold, routes.running.is_none()),
        (None, true),
        "{routes:?}"
    );
}

/// A first build still starting when understudy stopped (or upgraded): once ready after the
/// restart it was never announced (`promoted`) nor recorded in the history, which went on saying
/// nothing had served users. It is both, once, as at a first start.
#[tokio::test(start_paused = true)]
async fn a_first_build_that_got_ready_only_after_a_restart_is_announced_and_recorded() {
    let mut sim = Sim::new(PORTS);
    let a = sim.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.0.0")),
        history_last: None,
        ..Default::default()
    })));
    let (_, a) = sim.bring_up(&a);
    assert_eq!(records_in(&a), vec![(None, v("1.0.0"), SwitchWhy::First)]);
    let promoted = emitted(&a)
        .iter()
        .filter(|e| matches!(e, Event::Promoted { .. }))
        .count();
    assert_eq!(promoted, 1, "{a:#?}");
    // One that had served: nothing recorded again.
    let mut sim = Sim::new(PORTS);
    let a = sim.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.0.0")),
        history_last: Some(v("1.0.0")),
        ..Default::default()
    })));
    let (_, a) = sim.bring_up(&a);
    assert_eq!(records_in(&a), vec![]);
}

/// An operator's pause is kept across a restart (or an upgrade) of understudy: it was lost, and
/// the build the operator meant to check by hand was promoted automatically after the restart.
#[tokio::test(start_paused = true)]
async fn a_pause_is_saved_and_holds_after_a_restart() {
    let mut sim = Sim::new(PORTS);
    sim.serving_with_testing("1.1.0");
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Pause,
    });
    assert!(reply_in(&a, 1).is_ok());
    let p = saved(&sim);
    assert!(p.paused, "{p:?}");
    let mut after = Sim::new(PORTS);
    let a = after.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.0.0")),
        testing: Some(installed("1.1.0")),
        paused: p.paused,
        ..Default::default()
    })));
    let (_, a) = after.bring_up(&a);
    let (testing, _) = after.bring_up(&a);
    assert_eq!(after.s.testing().map(|t| t.id), Some(testing));
    let a = after.verdict(testing, Verdict::Promote);
    assert!(start_in(&a).is_none(), "promoted though paused: {a:#?}");
    let a = after.feed(Input::Command {
        id: 2,
        command: Command::Resume,
    });
    assert!(reply_in(&a, 2).is_ok());
    assert!(!saved(&after).paused);
}

/// Stopped while the promotion of 1.1.0 ran its `PRE_PROMOTE`, with 1.2.0 dropped meanwhile
/// (waiting behind it): at start the promotion is undone and said so, and 1.2.0 replacing 1.1.0
/// is said too; the operator's promotion was lost without a word. Without a newer build, 1.1.0
/// is tested again.
#[tokio::test(start_paused = true)]
async fn a_promotion_stopped_in_its_pre_promote_is_said_undone_at_start() {
    for newer in [Some("1.2.0"), None] {
        let mut sim = Sim::new(PORTS);
        let a = sim.feed(Input::Resume(Box::new(Resumed {
            running: Some(installed("1.0.0")),
            testing: Some(installed("1.1.0")),
            pending: newer.map(installed),
            txn: Some(operators_promotion("1.1.0", TxnStep::PrePromote)),
            ..Default::default()
        })));
        let events = emitted(&a);
        assert!(
            events.iter().any(|e| matches!(e,
                Event::SwitchUndone { version, .. } if *version == v("1.1.0"))),
            "{events:#?}"
        );
        let recovered = events.iter().any(|e| matches!(e,
            Event::BuildRecovered { version, outcome }
                if *version == v("1.1.0") && outcome.contains("1.2.0, dropped while it was being promoted")));
        assert_eq!(recovered, newer.is_some(), "{newer:?}: {events:#?}");
        let (_, a) = sim.bring_up(&a);
        let tested = start_of(&a, Role::Testing).map(|s| s.1);
        assert_eq!(tested, Some(v(newer.unwrap_or("1.1.0"))), "{a:#?}");
    }
}

/// The state file and the `running` symlink lost, the build the history's last switch made
/// serve is found installed and nothing else names it: it serves again. It was taken for a build
/// to test, archived as older than the one under test, and nothing served until a drop.
#[tokio::test(start_paused = true)]
async fn running_lost_with_the_state_file_is_the_build_the_history_last_switched_to() {
    let mut sim = Sim::new(PORTS);
    let a = sim.feed(Input::Resume(Box::new(Resumed {
        testing: Some(installed("1.1.0")),
        found: vec![installed("1.0.0")],
        history_last: Some(v("1.0.0")),
        ..Default::default()
    })));
    assert!(!a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
    assert_eq!(start_of(&a, Role::Running).map(|s| s.1), Some(v("1.0.0")));
    let (_, a) = sim.bring_up(&a);
    assert_eq!(start_of(&a, Role::Testing).map(|s| s.1), Some(v("1.1.0")));
    // Already served: nothing recorded again.
    assert_eq!(records_in(&a), vec![]);
}

/// A build under test before the stop that is not newer than running (a symlink left behind, or
/// running rebuilt from the history, can make it so) is not tested against it: archived, saying
/// why.
#[tokio::test(start_paused = true)]
async fn a_resumed_build_under_test_not_newer_than_running_is_archived_saying_why() {
    let mut sim = Sim::new(PORTS);
    let a = sim.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.2.0")),
        testing: Some(installed("1.1.0")),
        history_last: Some(v("1.2.0")),
        ..Default::default()
    })));
    assert!(a.contains(&Action::Archive(v("1.1.0"))), "{a:#?}");
    let said = emitted(&a).iter().any(|e| {
        matches!(e, Event::BuildRecovered { version, outcome }
            if *version == v("1.1.0") && outcome.contains("not newer than running 1.2.0"))
    });
    assert!(said, "{a:#?}");
    let (_, a) = sim.bring_up(&a);
    assert!(start_of(&a, Role::Testing).is_none(), "{a:#?}");
}

/// Nothing to serve at start, a build waiting to be tested: a newer first drop serves, and the
/// older build is not tested against it (it was, a downgrade on its promotion).
#[tokio::test(start_paused = true)]
async fn a_waiting_build_older_than_the_first_drop_to_serve_is_not_tested() {
    let mut sim = Sim::new(PORTS);
    sim.feed(Input::Resume(Box::new(Resumed {
        testing: Some(installed("1.1.0")),
        ..Default::default()
    })));
    let a = sim.deliver("1.2.0");
    assert!(a.contains(&Action::Archive(v("1.1.0"))), "{a:#?}");
    let (_, a) = sim.bring_up(&a);
    assert!(start_of(&a, Role::Testing).is_none(), "{a:#?}");
    assert!(sim.s.pending().is_none());
}
