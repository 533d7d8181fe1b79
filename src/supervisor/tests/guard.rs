//! The guard: a promoted version watched for `ROLLBACK_WINDOW`, rolled back when worse (and
//! the version it left rejected), its watch saved across restarts.

use super::*;
use crate::proxy::Hold;

#[tokio::test(start_paused = true)]
async fn the_guard_rolls_back_a_promoted_version_that_answers_5xx_and_files_away_one_that_holds() {
    for bad in [true, false] {
        let mut sim = Sim::new(PORTS);
        sim.s.guard_window = Duration::from_secs(300);
        let (old, testing) = sim.serving_with_testing("1.1.0");
        // A clean minute before the switch.
        sim.feed(Input::Traffic {
            requests: 0,
            errors: 0,
        });
        tokio::time::advance(Duration::from_secs(30)).await;
        sim.feed(Input::Traffic {
            requests: 1000,
            errors: 2,
        });
        let a = sim.verdict(testing, Verdict::Promote);
        let (promoted, a) = sim.bring_up(&a);
        assert!(a.contains(&Action::Retire {
            id: old,
            drain: true
        }));
        let a = sim.feed(Input::Stopped { id: old });
        assert!(
            !a.contains(&Action::Archive(v("1.0.0"))),
            "kept for the window: {a:#?}"
        );
        assert!(sim.s.status(|_| wall0()).guarded.is_some());
        tokio::time::advance(Duration::from_secs(10)).await;
        let errors = if bad { 2 + 25 } else { 2 };
        let a = sim.feed(Input::Traffic {
            requests: 1030,
            errors,
        });
        if bad {
            assert!(a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
            assert!(emitted(&a).iter().any(
                |e| matches!(e, Event::GuardTripped { reason, .. } if reason.contains("5xx rate"))
            ));
            let (_, a) = sim.restored("1.0.0");
            assert_eq!(
                records_in(&a),
                vec![(Some(v("1.1.0")), v("1.0.0"), SwitchWhy::Rollback)]
            );
            // The version rolled back from is rejected with the guard's reason: archived, it
            // would be offered again as a version to come back to.
            let mut a = sim.feed(Input::Stopped { id: testing });
            a.extend(sim.feed(Input::Stopped { id: promoted }));
            assert!(
                a.iter()
                    .any(|a| matches!(a, Action::Reject { version, reasons }
                    if *version == v("1.1.0")
                        && reasons[0].contains("rolled back by the guard")
                        && reasons[0].contains("5xx rate"))),
                "{a:#?}"
            );
            assert!(!a.contains(&Action::Archive(v("1.1.0"))), "{a:#?}");
        } else {
            assert!(!a.contains(&Action::Restore(v("1.0.0"))));
            tokio::time::advance(Duration::from_secs(300)).await;
            let a = sim.feed(Input::Traffic {
                requests: 5000,
                errors: 2,
            });
            assert!(a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
            assert!(sim.s.status(|_| wall0()).guarded.is_none());
        }
    }
}

/// With `POST_ROLLBACK` set, the version the guard rolled back from is rejected once the hook has
/// run (the hook may look at its folder), not called off and then archived.
#[tokio::test(start_paused = true)]
async fn with_post_rollback_the_version_rolled_back_from_is_rejected_after_the_hook() {
    let mut sim = Sim::new(PORTS);
    sim.s.hooks.post_rollback = true;
    guarded_promotion(&mut sim).await;
    let promoted = sim.s.running().unwrap().id;
    tokio::time::advance(Duration::from_secs(10)).await;
    let a = sim.feed(Input::Traffic {
        requests: 1030,
        errors: 5 + 25,
    });
    assert!(a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
    let (_, mut a) = sim.restored("1.0.0");
    a.extend(sim.feed(Input::Stopped { id: promoted }));
    assert!(
        a.iter().any(|a| matches!(
            a,
            Action::RunHook {
                hook: Hook::PostRollback,
                ..
            }
        )),
        "{a:#?}"
    );
    let filed = |a: &[Action]| {
        a.iter()
            .any(|x| matches!(x, Action::Reject { version, .. } if *version == v("1.1.0")))
            || a.contains(&Action::Archive(v("1.1.0")))
    };
    assert!(!filed(&a), "nothing filed before the hook ran: {a:#?}");
    assert!(
        !emitted(&a)
            .iter()
            .any(|e| matches!(e, Event::FilingCalledOff { .. })),
        "{a:#?}"
    );
    let a = sim.feed(Input::HookDone {
        hook: Hook::PostRollback,
        id: None,
        version: v("1.0.0"),
        result: Ok(()),
    });
    // Journaled as a rejection (sent once its last instance, the old testing one, is gone).
    let persisted = sim.s.persisted.clone().expect("the state was written");
    let reasons: Vec<String> = persisted
        .filings
        .iter()
        .filter(|f| f.version == v("1.1.0"))
        .flat_map(|f| f.reject.clone().unwrap_or_default())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("rolled back by the guard: 5xx rate")),
        "{persisted:#?}"
    );
    assert!(!a.contains(&Action::Archive(v("1.1.0"))), "{a:#?}");
}

/// A promoted version that crashes within the window is rolled back and rejected with the crash
/// said whole: what it last wrote, not a cut-off "stdout ends with:".
#[tokio::test(start_paused = true)]
async fn a_promoted_version_that_crashes_is_rejected_quoting_what_it_last_wrote() {
    let mut sim = Sim::new(PORTS);
    guarded_promotion(&mut sim).await;
    let running = sim.s.running().unwrap().id;
    let a = sim.event(
        running,
        InstanceEventKind::Exited {
            status: "exit status: 3".into(),
            stderr_tail: String::new(),
            stdout_tail: "INFO bye".into(),
        },
    );
    let tripped = emitted(&a).iter().find_map(|e| match e {
        Event::GuardTripped { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    let tripped = tripped.expect("the guard trips");
    assert!(tripped.contains("INFO bye"), "{tripped}");
    assert!(a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
    let (_, a) = sim.restored("1.0.0");
    assert_eq!(
        records_in(&a),
        vec![(Some(v("1.1.0")), v("1.0.0"), SwitchWhy::Rollback)]
    );
    // Journaled as a rejection (sent once its instances are gone).
    let persisted = sim.s.persisted.clone().expect("the state was written");
    let reasons: Vec<String> = persisted
        .filings
        .iter()
        .filter(|f| f.version == v("1.1.0"))
        .flat_map(|f| f.reject.clone().unwrap_or_default())
        .collect();
    assert!(
        reasons.iter().any(|r| r
            .starts_with("rolled back by the guard: failed within ROLLBACK_WINDOW")
            && r.contains("INFO bye")),
        "{reasons:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_guard_rolls_back_only_a_5xx_rate_worse_with_confidence() {
    // Before the switch: 0.5 % 5xx. After it, 30 requests with `errors` 5xx.
    for (errors, rolls_back) in [(0, false), (1, false), (2, false), (25, true)] {
        let mut sim = Sim::new(PORTS);
        guarded_promotion(&mut sim).await;
        tokio::time::advance(Duration::from_secs(10)).await;
        let a = sim.feed(Input::Traffic {
            requests: 1030,
            errors: 5 + errors,
        });
        let tripped = emitted(&a).iter().find_map(|e| match e {
            Event::GuardTripped { reason, .. } => Some(reason.clone()),
            _ => None,
        });
        assert_eq!(
            a.contains(&Action::Restore(v("1.0.0"))),
            rolls_back,
            "{errors} of 30: {a:#?}"
        );
        assert_eq!(tripped.is_some(), rolls_back, "{errors} of 30");
        if let Some(reason) = tripped {
            assert!(
                reason.contains("25 of 30") && reason.contains("0.5% (5 of 1000)"),
                "{reason}"
            );
            assert!(reason.contains("99% confidence"), "{reason}");
        }
    }
}

/// A promotion of 1.1.0 over 1.0.0, guarded for 300 s against a minute of 0.5 % 5xx; returns
/// the state file as written once the old running stopped, read back as a restart reads it.
pub(super) async fn guarded_promotion(sim: &mut Sim) -> Persisted {
    sim.s.guard_window = Duration::from_secs(300);
    let (old, testing) = sim.serving_with_testing("1.1.0");
    sim.feed(Input::Traffic {
        requests: 0,
        errors: 0,
    });
    tokio::time::advance(Duration::from_secs(30)).await;
    sim.feed(Input::Traffic {
        requests: 1000,
        errors: 5,
    });
    let a = sim.verdict(testing, Verdict::Promote);
    sim.bring_up(&a);
    sim.feed(Input::Stopped { id: old });
    let written = sim.s.persisted.clone().expect("the state was written");
    let text = serde_json::to_string(&written).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A restart after [`guarded_promotion`]: a new state, the same clocks, the state file `p`.
fn restart_serving_1_1_0(sim: &Sim, p: &Persisted) -> (Sim, Vec<Action>) {
    let mut after = Sim::new(PORTS);
    after.start = sim.start;
    let a = after.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.1.0")),
        guard: p.guard.clone(),
        rollback_window: Duration::from_secs(300),
        max_5xx_delta: 0.01,
        confidence: 0.99,
        ..Default::default()
    })));
    (after, a)
}

#[tokio::test(start_paused = true)]
async fn the_guard_is_saved_and_watches_on_after_a_restart_until_its_deadline() {
    // What the restart does: 5xx after it (rolled back), a clean window (1.0.0 filed away at
    // the saved deadline), or a deadline passed while understudy was down (filed away at start).
    for case in ["5xx", "clean", "down past the deadline"] {
        let mut sim = Sim::new(PORTS);
        let p = guarded_promotion(&mut sim).await;
        let switched_at = sim.now().wall;
        let g = p.guard.clone().expect("the guard is in state.json");
        assert_eq!(
            (g.version.clone(), g.from.clone()),
            (v("1.1.0"), v("1.0.0"))
        );
        assert_eq!((g.before_errors, g.before_requests), (5, 1000));
        assert_eq!(
            crate::history::parse_rfc3339(&g.until),
            Some(switched_at + Duration::from_secs(300)),
            "its deadline as wall-clock time"
        );
        tokio::time::advance(Duration::from_secs(100)).await;
        if case == "down past the deadline" {
            tokio::time::advance(Duration::from_secs(300)).await;
        }
        let (mut after, a) = restart_serving_1_1_0(&sim, &p);
        if case == "down past the deadline" {
            assert!(a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
            assert!(emitted(&a)
                .iter()
                .any(|e| matches!(e, Event::GuardEnded { .. })));
            assert!(after.s.status(|_| wall0()).guarded.is_none());
            continue;
        }
        assert!(!a.contains(&Action::Archive(v("1.0.0"))), "kept: {a:#?}");
        let (_, a) = after.bring_up(&a);
        assert!(!a.contains(&Action::Archive(v("1.0.0"))), "kept: {a:#?}");
        assert!(after.s.status(|_| wall0()).guarded.is_some());
        assert!(
            after.s.persisted.as_ref().unwrap().guard == p.guard,
            "the same guard is saved again"
        );
        // The new process's counters start at zero.
        after.feed(Input::Traffic {
            requests: 0,
            errors: 0,
        });
        tokio::time::advance(Duration::from_secs(10)).await;
        if case == "5xx" {
            let a = after.feed(Input::Traffic {
                requests: 30,
                errors: 25,
            });
            assert!(a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
            assert!(emitted(&a).iter().any(|e| matches!(e,
                Event::GuardTripped { reason, .. } if reason.contains("0.5% (5 of 1000) before"))));
            continue;
        }
        let a = after.feed(Input::Traffic {
            requests: 30,
            errors: 0,
        });
        assert!(!a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
        // Not before the saved deadline (200 s after the restart)...
        tokio::time::advance(Duration::from_secs(185)).await;
        let a = after.feed(Input::Traffic {
            requests: 900,
            errors: 0,
        });
        assert!(!a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
        // ...but at it, as without the restart.
        tokio::time::advance(Duration::from_secs(6)).await;
        let a = after.feed(Input::Traffic {
            requests: 1000,
            errors: 0,
        });
        assert!(a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
        assert!(after.s.persisted.as_ref().unwrap().guard.is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn a_reloaded_confidence_reaches_the_guard() {
    let dir = tempfile::tempdir().unwrap();
    let load = |extra: &str| {
        std::fs::write(dir.path().join(".env"), format!("IDENTIFIER=app\n{extra}")).unwrap();
        let env = std::collections::BTreeMap::new();
        crate::config::Config::load(dir.path(), &env, &[]).unwrap()
    };
    let (before, after) = (load(""), load("CONFIDENCE=0.9"));
    // 2 answers in 30 are 5xx after the switch, against 0.5 % before it: not worse at the
    // default 99 % confidence, worse at 90 %.
    for reload in [false, true] {
        let mut sim = Sim::new(PORTS);
        sim.s.guard_max_delta = before.score.max_5xx_delta;
        sim.s.guard_confidence = before.score.confidence;
        guarded_promotion(&mut sim).await;
        if reload {
            // SIGHUP, as the executor hands it to decide (the scorer gets the same values).
            let input = super::executor::reloaded(&before, &after).expect("thresholds changed");
            sim.feed(input);
        }
        sim.feed(Input::Traffic {
            requests: 1000,
            errors: 5,
        });
        tokio::time::advance(Duration::from_secs(10)).await;
        let a = sim.feed(Input::Traffic {
            requests: 1030,
            errors: 7,
        });
        assert_eq!(a.contains(&Action::Restore(v("1.0.0"))), reload, "{a:#?}");
        if reload {
            assert!(emitted(&a).iter().any(|e| matches!(e,
                Event::GuardTripped { reason, .. } if reason.contains("at 90% confidence"))));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_operators_rollback_ends_the_guard_and_files_away_the_version_it_kept() {
    let mut sim = Sim::new(PORTS);
    guarded_promotion(&mut sim).await;
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Rollback(Some(v("0.9.0"))),
    });
    assert!(a.contains(&Action::Restore(v("0.9.0"))), "{a:#?}");
    let (_, a) = sim.restored("0.9.0");
    assert_eq!(
        records_in(&a),
        vec![(Some(v("1.1.0")), v("0.9.0"), SwitchWhy::Rollback)]
    );
    assert!(sim.s.status(|_| wall0()).guarded.is_none(), "{a:#?}");
    assert!(
        a.contains(&Action::Archive(v("1.0.0"))),
        "1.0.0, kept for the guard, is filed away: {a:#?}"
    );
    // 0.9.0 answers 5xx: nothing switches users to 1.0.0, which nobody asked for.
    tokio::time::advance(Duration::from_secs(10)).await;
    let a = sim.feed(Input::Traffic {
        requests: 1030,
        errors: 5 + 25,
    });
    assert!(!a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
    assert!(!emitted(&a)
        .iter()
        .any(|e| matches!(e, Event::GuardTripped { .. })));
}

/// The promoted version crashes: (running id, the crash's actions).
pub(super) fn crash_running(sim: &mut Sim) -> (InstanceId, Vec<Action>) {
    let running = sim.s.running().unwrap().id;
    let a = sim.event(
        running,
        InstanceEventKind::Exited {
            status: "exit status: 4".into(),
            stderr_tail: "boom".into(),
            stdout_tail: String::new(),
        },
    );
    (running, a)
}

/// Whether `actions` start an instance of `ver`.
fn starts(actions: &[Action], ver: &str) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Start { installed, .. } if installed.version == v(ver)))
}

/// A crash the guard rolls back from is not restarted beside the rollback (users were told
/// "running 1.1.0 is restarting" for seconds, then served by it until it crashed again): users
/// wait for the version coming back, which serves as soon as it is ready.
#[tokio::test(start_paused = true)]
async fn a_crash_the_guard_rolls_back_is_not_restarted_and_users_wait_for_the_version_coming_back()
{
    let mut sim = Sim::new(PORTS);
    guarded_promotion(&mut sim).await;
    let (_, a) = crash_running(&mut sim);
    assert!(a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
    assert!(!starts(&a, "1.1.0"), "1.1.0 is not restarted: {a:#?}");
    assert!(
        !emitted(&a)
            .iter()
            .any(|e| matches!(e, Event::RestartScheduled { .. })),
        "{a:#?}"
    );
    let routes = routes_in(&a).expect("routes published");
    assert_eq!(routes.running, None);
    assert_eq!(routes.restarting, Some(v("1.0.0")), "{routes:?}");
    assert_eq!(
        routes.hold,
        Some(Hold::Rollback),
        "users' requests wait for it: {routes:?}"
    );
    assert_eq!(sim.s.status(|_| wall0()).restarting, None);
    // No timer restarts it while the restore and the start take their time.
    tokio::time::advance(Duration::from_secs(60)).await;
    let a = sim.feed(Input::Tick);
    assert!(!starts(&a, "1.1.0"), "{a:#?}");
    let (_, a) = sim.restored("1.0.0");
    assert_eq!(
        records_in(&a),
        vec![(Some(v("1.1.0")), v("1.0.0"), SwitchWhy::Rollback)]
    );
    let routes = routes_in(&a).expect("routes published");
    assert_eq!(
        routes.running.as_ref().map(|t| t.version.clone()),
        Some(v("1.0.0"))
    );
    assert_eq!(routes.restarting, None);
    assert_eq!(routes.hold, None);
    // Rejected with the crash, as before.
    let persisted = sim.s.persisted.clone().expect("the state was written");
    assert!(
        persisted
            .filings
            .iter()
            .any(|f| f.version == v("1.1.0")
                && f.reject.as_ref().is_some_and(|r| r[0].contains("boom"))),
        "{persisted:#?}"
    );
    assert_eq!(persisted.running, Some(v("1.0.0")));
}

/// Held for the rollback, the version that crashed is still what serves if the rollback cannot
/// bring the other one back (its folder gone) or that one fails to start: it is restarted then.
#[tokio::test(start_paused = true)]
async fn a_crash_held_for_a_rollback_that_fails_is_restarted_after_all() {
    for how in ["restore fails", "start fails"] {
        let mut sim = Sim::new(PORTS);
        guarded_promotion(&mut sim).await;
        crash_running(&mut sim);
        assert_eq!(
            sim.s.persisted.as_ref().unwrap().running,
            Some(v("1.1.0")),
            "journaled as running until the rollback switches"
        );
        let a = if how == "restore fails" {
            sim.feed(Input::Restored {
                version: v("1.0.0"),
                result: Err(RestoreFailure::Missing),
            })
        } else {
            let a = sim.feed(Input::Restored {
                version: v("1.0.0"),
                result: Ok(installed("1.0.0")),
            });
            let (id, _, _) = start_in(&a).expect("1.0.0 starts");
            sim.feed(Input::Started {
                id,
                result: Err(StartFailure::Failed("no such file".into())),
            })
        };
        assert!(starts(&a, "1.1.0"), "{how}: {a:#?}");
        let routes = routes_in(&a).expect("routes published");
        assert_eq!(routes.restarting, Some(v("1.1.0")), "{how}");
        // Started again at once after its first crash: users wait for it, as at any such restart.
        assert_eq!(routes.hold, Some(Hold::Restart), "{how}");
    }
}

/// Killed between the guard's trip and the rollback's switch (the restore under way, or the
/// version coming back still starting): the restart undid the rollback (`switch_undone`), the
/// version the guard had thrown out served again (503s while it started), the one it kept was
/// archived, and recovery hung on the failure coming back within the window. The rollback was
/// decided: it is finished at start, the thrown-out version not started meanwhile, and it is
/// rejected with the guard's journaled reason (also from a state file written before the guard
/// was marked tripped, whose rollback entry names the reason).
#[tokio::test(start_paused = true)]
async fn a_restart_between_the_guards_trip_and_the_switch_finishes_the_rollback() {
    for when in ["restoring", "starting", "starting, older state file"] {
        let mut sim = Sim::new(PORTS);
        guarded_promotion(&mut sim).await;
        tokio::time::advance(Duration::from_secs(10)).await;
        let a = sim.feed(Input::Traffic {
            requests: 1030,
            errors: 5 + 25,
        });
        assert!(a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
        if when != "restoring" {
            sim.feed(Input::Restored {
                version: v("1.0.0"),
                result: Ok(installed("1.0.0")),
            });
        }
        let mut p = sim.s.persisted.clone().expect("the state was written");
        assert_eq!(p.running, Some(v("1.1.0")), "{when}");
        if when == "starting, older state file" {
            let text = serde_json::to_string(&p).unwrap();
            p = serde_json::from_str(&text.replace("\"tripped\":", "\"x\":")).unwrap();
            let guard = format!("{:?}", p.guard);
            assert!(!guard.contains("tripped: Some"), "unmarked: {guard}");
        }
        let mut after = Sim::new(PORTS);
        after.start = sim.start;
        let a = after.feed(Input::Resume(Box::new(Resumed {
            running: Some(installed("1.1.0")),
            promoting: p.promoting.as_ref().map(|v| installed(&v.to_string())),
            txn: p.txn.clone(),
            guard: p.guard.clone(),
            history_last: Some(v("1.1.0")),
            rollback_window: Duration::from_secs(300),
            max_5xx_delta: 0.01,
            confidence: 0.99,
            ..Default::default()
        })));
        assert!(a.contains(&Action::Restore(v("1.0.0"))), "{when}: {a:#?}");
        assert!(!starts(&a, "1.1.0"), "{when}: 1.1.0 is not started: {a:#?}");
        assert!(!a.contains(&Action::Archive(v("1.0.0"))), "{when}: {a:#?}");
        let events = emitted(&a);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::SwitchUndone { .. })),
            "{when}: {a:#?}"
        );
        assert!(
            events.iter().any(|e| matches!(e,
                Event::GuardTripped { reason, .. } if reason.contains("5xx rate"))),
            "{when}: tripped again with its reason: {a:#?}"
        );
        let routes = routes_in(&a).expect("routes published");
        assert_eq!(routes.running, None, "{when}");
        assert_eq!(routes.restarting, Some(v("1.0.0")), "{when}: {routes:?}");
        assert_eq!(
            routes.hold,
            Some(Hold::Rollback),
            "{when}: held: {routes:?}"
        );
        let (_, a) = after.restored("1.0.0");
        assert_eq!(
            records_in(&a),
            vec![(Some(v("1.1.0")), v("1.0.0"), SwitchWhy::Rollback)],
            "{when}"
        );
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Reject { version, reasons }
                if *version == v("1.1.0")
                    && reasons[0].contains("rolled back by the guard")
                    && reasons[0].contains("5xx rate"))),
            "{when}: {a:#?}"
        );
        let p = after.s.persisted.clone().expect("the state was written");
        assert_eq!(p.running, Some(v("1.0.0")), "{when}");
        assert_eq!(p.guard, None, "{when}: the watch ends with the switch");
    }
}

/// A promoted version whose 5xx rate tripped the guard, and which then crashes while the
/// rollback brings the old one back (before the restore reports, or while the old one starts), is
/// not restarted beside it either (users were told "running 1.1.0 is restarting" for seconds):
/// they wait for 1.0.0, and the rejection says it crashed too.
#[tokio::test(start_paused = true)]
async fn a_crash_during_the_guards_rollback_on_5xx_is_not_restarted() {
    for when in ["restoring", "starting"] {
        let mut sim = Sim::new(PORTS);
        guarded_promotion(&mut sim).await;
        tokio::time::advance(Duration::from_secs(10)).await;
        let a = sim.feed(Input::Traffic {
            requests: 1030,
            errors: 5 + 25,
        });
        assert!(a.contains(&Action::Restore(v("1.0.0"))), "tripped: {a:#?}");
        let old = (when == "starting").then(|| {
            let a = sim.feed(Input::Restored {
                version: v("1.0.0"),
                result: Ok(installed("1.0.0")),
            });
            let (id, _, _) = start_in(&a).expect("1.0.0 starts");
            sim.launch(id);
            id
        });
        let (_, a) = crash_running(&mut sim);
        assert!(
            !starts(&a, "1.1.0"),
            "{when}: 1.1.0 is not restarted: {a:#?}"
        );
        let routes = routes_in(&a).expect("routes published");
        assert_eq!(routes.running, None);
        assert_eq!(routes.restarting, Some(v("1.0.0")), "{when}: {routes:?}");
        assert_eq!(
            routes.hold,
            Some(Hold::Rollback),
            "{when}: held: {routes:?}"
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!starts(&sim.feed(Input::Tick), "1.1.0"), "{when}");
        let a = match old {
            Some(id) => sim.event(id, InstanceEventKind::Ready),
            None => sim.restored("1.0.0").1,
        };
        assert_eq!(
            records_in(&a),
            vec![(Some(v("1.1.0")), v("1.0.0"), SwitchWhy::Rollback)],
            "{when}"
        );
        let persisted = sim.s.persisted.clone().expect("the state was written");
        let reject = persisted
            .filings
            .iter()
            .find(|f| f.version == v("1.1.0"))
            .and_then(|f| f.reject.clone())
            .expect("1.1.0 is to be rejected");
        assert!(reject[0].contains("5xx rate"), "{when}: {reject:?}");
        assert!(
            reject.iter().any(|r| r.contains("boom")),
            "{when}: {reject:?}"
        );
    }
}

/// One the guard rolls back from that stops answering meanwhile is not healed by a fresh
/// instance of itself started beside the rollback.
#[tokio::test(start_paused = true)]
async fn a_hang_during_the_guards_rollback_starts_no_spare_of_the_version_left() {
    let mut sim = Sim::new(PORTS);
    guarded_promotion(&mut sim).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    sim.feed(Input::Traffic {
        requests: 1030,
        errors: 5 + 25,
    });
    let running = sim.s.running().unwrap().id;
    let a = sim.event(
        running,
        InstanceEventKind::Unresponsive {
            misses: 3,
            reason: "no answer within 2s".into(),
        },
    );
    assert!(!starts(&a, "1.1.0"), "no spare of 1.1.0: {a:#?}");
}

/// While the guard brings back the version it replaced, nothing else is promoted: neither an
/// operator's promote (told why) nor a verdict (a promotion failing meanwhile restarted the
/// crashed version and filed it as one to come back to, the guard's reason lost).
#[tokio::test(start_paused = true)]
async fn nothing_is_promoted_while_the_guards_rollback_brings_its_version_back() {
    let mut sim = Sim::new(PORTS);
    guarded_promotion(&mut sim).await;
    let a = sim.deliver("1.2.0");
    let (testing, _) = sim.bring_up(&a);
    let (_, a) = crash_running(&mut sim);
    assert!(a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
    let a = sim.feed(Input::Command {
        id: 7,
        command: Command::Promote,
    });
    let refused = format!("{:?}", reply_in(&a, 7));
    assert!(
        refused.contains("a rollback to 1.0.0 is under way"),
        "{refused}"
    );
    assert!(!starts(&a, "1.2.0"), "{a:#?}");
    let a = sim.verdict(testing, Verdict::Promote);
    assert!(!starts(&a, "1.2.0"), "{a:#?}");
    // Once 1.0.0 starts, the operator is told it is the rollback under way, not a promotion.
    let a = sim.feed(Input::Restored {
        version: v("1.0.0"),
        result: Ok(installed("1.0.0")),
    });
    assert!(starts(&a, "1.0.0"), "{a:#?}");
    let a = sim.feed(Input::Command {
        id: 8,
        command: Command::Promote,
    });
    let refused = format!("{:?}", reply_in(&a, 8));
    assert!(
        refused.contains("the rollback to 1.0.0 is already under way"),
        "{refused}"
    );
}
