//! Promotions and rollbacks: the switch, its failures, the transaction resumed at start, hooks,
//! and the history (the guard: `guard.rs`).

use super::*;
#[tokio::test(start_paused = true)]
async fn promotion_swaps_routes_then_drains_the_old_running() {
    let mut sim = Sim::new(PORTS);
    let (old, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.verdict(testing, Verdict::Promote);
    assert!(a.contains(&Action::Retire {
        id: testing,
        drain: false
    }));
    assert!(emitted(&a).contains(&&Event::Promoting {
        version: v("1.1.0")
    }));
    let (next, role, _) = start_in(&a).unwrap();
    assert_eq!(role, Role::Running);
    assert_eq!(
        routes_in(&a).unwrap().running.as_ref().unwrap().id,
        old,
        "users stay on the old running until the new one is ready"
    );
    sim.launch(next);
    let a = sim.event(next, InstanceEventKind::Ready);
    assert_eq!(routes_in(&a).unwrap().running.as_ref().unwrap().id, next);
    let promoted: Vec<&Event> = emitted(&a)
        .into_iter()
        .filter(|e| matches!(e, Event::Promoted { .. }))
        .collect();
    let once = Event::Promoted {
        from: Some(v("1.0.0")),
        to: v("1.1.0"),
        why: SwitchWhy::Automatic,
    };
    assert_eq!(promoted, vec![&once], "announced once");
    let route = position(&a, |a| matches!(a, Action::Route(_)));
    let retire = position(&a, |a| {
        *a == Action::Retire {
            id: old,
            drain: true,
        }
    });
    assert!(route < retire, "the old running drains after the switch");
    let a = sim.feed(Input::Stopped { id: testing });
    assert!(
        !a.iter().any(|a| matches!(a, Action::Archive(_))),
        "1.1.0 runs: {a:#?}"
    );
    let a = sim.feed(Input::Stopped { id: old });
    assert!(a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
    assert_eq!(sim.s.persisted.as_ref().unwrap().running, Some(v("1.1.0")));
}

#[tokio::test(start_paused = true)]
async fn a_failing_fresh_running_instance_leaves_the_old_one_serving() {
    let mut sim = Sim::new(PORTS);
    let (old, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.verdict(testing, Verdict::Promote);
    let (next, _, _) = start_in(&a).unwrap();
    sim.feed(Input::Stopped { id: testing });
    sim.launch(next);
    let a = sim.event(
        next,
        InstanceEventKind::Exited {
            status: "exit status: 3".into(),
            stderr_tail: "boom".into(),
            stdout_tail: String::new(),
        },
    );
    assert!(routes_in(&a).is_none(), "routes are not touched: {a:#?}");
    assert!(emitted(&a)
        .iter()
        .any(|e| matches!(e, Event::PromotionFailed { version, .. } if *version == v("1.1.0"))));
    assert!(a.contains(&Action::Retire {
        id: next,
        drain: false
    }));
    assert_eq!(sim.s.running().unwrap().id, old);
    assert!(sim.s.running().unwrap().is_ready());
    let a = sim.feed(Input::Stopped { id: next });
    assert!(
        a.iter().any(
            |a| matches!(a, Action::Reject { version, reasons } if *version == v("1.1.0") && reasons[0].contains("boom"))
        ),
        "{a:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn resume_mid_promotion_before_the_switch_is_undone_and_the_build_tested_again() {
    for txn in [
        None,
        Some(Txn {
            kind: TxnKind::Promotion,
            version: v("1.1.0"),
            from: Some(v("1.0.0")),
            step: TxnStep::Ready,
            why: SwitchWhy::Automatic,
            reject_from: None,
        }),
    ] {
        let mut sim = Sim::new(PORTS);
        let a = sim.feed(Input::Resume(Box::new(Resumed {
            running: Some(installed("1.0.0")),
            promoting: Some(installed("1.1.0")),
            txn: txn.clone(),
            ..Default::default()
        })));
        // The journal is resolved in the first state write: no transaction left.
        assert!(a.iter().any(|a| matches!(a, Action::Persist(p) if p.txn.is_none() && p.promoting.is_none() && p.testing == Some(v("1.1.0")))), "{a:#?}");
        let (running, a) = sim.bring_up(&a);
        assert_eq!(routes_in(&a).unwrap().running.as_ref().unwrap().id, running);
        assert_eq!(*sim.s.running().unwrap().version(), v("1.0.0"));
        let (_, role, _) = start_in(&a).unwrap();
        assert_eq!(role, Role::Testing, "1.1.0 is tested again ({txn:?})");
    }
}

#[tokio::test(start_paused = true)]
async fn resume_after_the_switch_completes_the_transaction() {
    let mut sim = Sim::new(PORTS);
    sim.s.hooks.post_promote = true;
    let a = sim.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.1.0")),
        txn: Some(operators_promotion("1.1.0", TxnStep::Switched)),
        hooks: HookSet {
            post_promote: true,
            ..Default::default()
        },
        ..Default::default()
    })));
    let (_, a) = sim.bring_up(&a);
    assert!(a.iter().any(|a| matches!(a, Action::RunHook { hook: Hook::PostPromote, version, .. } if *version == v("1.1.0"))), "{a:#?}");
    assert!(
        !a.contains(&Action::Archive(v("1.0.0"))),
        "hook first: {a:#?}"
    );
    let a = sim.feed(Input::HookDone {
        hook: Hook::PostPromote,
        id: None,
        version: v("1.1.0"),
        result: Ok(()),
    });
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Persist(p) if p.txn.is_none())),
        "{a:#?}"
    );
    assert!(a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
}

/// Unguarded (`ROLLBACK_WINDOW=0`), the old version is filed away after `POST_PROMOTE` has run,
/// not while it runs (the hook may still look at it), whether the hook passes or fails; without
/// the hook, once the old instance has stopped.
#[tokio::test(start_paused = true)]
async fn the_old_version_is_archived_after_post_promote_not_while_it_runs() {
    for (hook, result) in [
        (true, Ok(())),
        (true, Err("exit status: 1".to_string())),
        (false, Ok(())),
    ] {
        let mut sim = Sim::new(PORTS);
        sim.s.hooks.post_promote = hook;
        let (old, testing) = sim.serving_with_testing("1.1.0");
        let a = sim.verdict(testing, Verdict::Promote);
        let (next, a) = sim.bring_up(&a);
        assert!(!a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
        let a = sim.feed(Input::Stopped { id: old });
        if !hook {
            assert!(a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
            continue;
        }
        assert_eq!(hooks_in(&a), vec![Hook::PostPromote]);
        assert!(
            !a.contains(&Action::Archive(v("1.0.0"))),
            "not while POST_PROMOTE runs: {a:#?}"
        );
        let a = sim.feed(Input::HookDone {
            hook: Hook::PostPromote,
            id: Some(next),
            version: v("1.1.0"),
            result: result.clone(),
        });
        assert!(
            a.contains(&Action::Archive(v("1.0.0"))),
            "{result:?}: {a:#?}"
        );
    }
}

/// Killed between the state write that says users are switched and the history's line: the
/// switch is recorded at start (once: not when the history has it), and a plain rollback
/// follows it.
#[tokio::test(start_paused = true)]
async fn a_switch_the_history_missed_is_recorded_at_start() {
    for (history_last, recorded) in [(Some("1.0.0"), true), (Some("1.1.0"), false)] {
        let mut sim = Sim::new(PORTS);
        let a = sim.feed(Input::Resume(Box::new(Resumed {
            running: Some(installed("1.1.0")),
            previous: Some(v("0.9.0")),
            history_last: history_last.map(v),
            txn: Some(Txn {
                kind: TxnKind::Rollback,
                version: v("1.1.0"),
                from: Some(v("1.2.0")),
                step: TxnStep::Switched,
                why: SwitchWhy::Rollback,
                reject_from: None,
            }),
            ..Default::default()
        })));
        let want = [(Some(v("1.2.0")), v("1.1.0"), SwitchWhy::Rollback)];
        assert_eq!(
            records_in(&a),
            &want[..usize::from(recorded)],
            "{history_last:?}"
        );
        if recorded {
            assert_eq!(sim.s.previous, None);
            assert_eq!(sim.s.rolled_back_from, Some(v("1.2.0")));
        }
    }
}

/// Killed after the guard's rollback switched users: completed at start, and the version it
/// rolled back from is rejected with the guard's reason (journaled with the switch), not
/// archived.
#[tokio::test(start_paused = true)]
async fn the_guards_rollback_completed_at_start_rejects_the_version_it_left() {
    let mut sim = Sim::new(PORTS);
    let a = sim.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.1.0")),
        history_last: Some(v("1.1.0")),
        txn: Some(Txn {
            kind: TxnKind::Rollback,
            version: v("1.1.0"),
            from: Some(v("1.2.0")),
            step: TxnStep::Switched,
            why: SwitchWhy::Rollback,
            reject_from: Some(vec!["rolled back by the guard: 5xx rate".into()]),
        }),
        ..Default::default()
    })));
    let (_, a) = sim.bring_up(&a);
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Reject { version, reasons }
            if *version == v("1.2.0") && reasons[0].contains("rolled back by the guard"))),
        "{a:#?}"
    );
    assert!(!a.contains(&Action::Archive(v("1.2.0"))), "{a:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_pre_promote_leaves_running_untouched_and_the_build_testing() {
    let mut sim = Sim::new(PORTS);
    sim.s.hooks = HookSet {
        pre_promote: true,
        post_promote: true,
        ..Default::default()
    };
    let (running, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.verdict(testing, Verdict::Promote);
    assert_eq!(hooks_in(&a), vec![Hook::PrePromote]);
    assert!(
        start_in(&a).is_none(),
        "nothing starts before PRE_PROMOTE says yes"
    );
    let a = sim.feed(Input::HookDone {
        hook: Hook::PrePromote,
        id: Some(testing),
        version: v("1.1.0"),
        result: Err("exit status: 1".into()),
    });
    assert!(emitted(&a)
        .iter()
        .any(|e| matches!(e, Event::PromotionFailed { .. })));
    assert_eq!(sim.s.testing().unwrap().id, testing);
    assert_eq!(sim.s.running().unwrap().id, running);
    let status = sim.s.status(|_| wall0());
    assert!(status.hook_failure.unwrap().contains("PRE_PROMOTE"));
    // Passing again does not retry on its own...
    assert!(hooks_in(&sim.verdict(testing, Verdict::Promote)).is_empty());
    // ...an operator's promote does, and a yes goes on to the promotion and POST_PROMOTE.
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Promote,
    });
    assert_eq!(hooks_in(&a), vec![Hook::PrePromote]);
    let a = sim.feed(Input::HookDone {
        hook: Hook::PrePromote,
        id: Some(testing),
        version: v("1.1.0"),
        result: Ok(()),
    });
    let (_, a) = sim.bring_up(&a);
    assert!(a.contains(&Action::Retire {
        id: running,
        drain: true
    }));
    assert!(
        hooks_in(&a).is_empty(),
        "POST_PROMOTE waits for the old to drain"
    );
    let a = sim.feed(Input::Stopped { id: running });
    assert_eq!(hooks_in(&a), vec![Hook::PostPromote]);
}

#[tokio::test(start_paused = true)]
async fn each_switch_of_the_serving_version_is_recorded_once_with_why() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.0.0");
    let (running, a) = sim.bring_up(&a);
    assert_eq!(records_in(&a), vec![(None, v("1.0.0"), SwitchWhy::First)]);
    // A restart of the same version is no switch.
    let a = sim.event(
        running,
        InstanceEventKind::Exited {
            status: "exit status: 1".into(),
            stderr_tail: String::new(),
            stdout_tail: String::new(),
        },
    );
    let (_, a) = sim.bring_up(&a);
    assert!(records_in(&a).is_empty(), "{a:#?}");
    // An operator's promotion is recorded as the operator's.
    let a = sim.deliver("1.1.0");
    sim.bring_up(&a);
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Promote,
    });
    let (_, a) = sim.bring_up(&a);
    assert_eq!(
        records_in(&a),
        vec![(Some(v("1.0.0")), v("1.1.0"), SwitchWhy::Operator)]
    );
}

#[tokio::test(start_paused = true)]
async fn rollback_restores_the_previous_version_and_answers_once_it_is_back() {
    let mut sim = Sim::new(PORTS);
    // Nothing served before: nothing to roll back to.
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Rollback(None),
    });
    assert!(
        matches!(reply_in(&a, 1), Err(CommandError::Refused(r)) if r.contains("name the version"))
    );
    let (old, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.verdict(testing, Verdict::Promote);
    let (_, a) = sim.bring_up(&a);
    assert_eq!(
        records_in(&a),
        vec![(Some(v("1.0.0")), v("1.1.0"), SwitchWhy::Automatic)]
    );
    // A rollback waits for the promotion's transaction to end (the old instance drained).
    let a = sim.feed(Input::Command {
        id: 9,
        command: Command::Rollback(None),
    });
    assert!(
        matches!(reply_in(&a, 9), Err(CommandError::Refused(r))
            if r.starts_with("the promotion of 1.1.0 is still under way")),
        "{a:#?}"
    );
    let a = sim.feed(Input::Stopped { id: old });
    assert!(a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
    sim.feed(Input::Filed {
        version: v("1.0.0"),
        result: Ok(Filed::Archived(PathBuf::from(
            "/base/archive/app-1.0.0.zip",
        ))),
        filing: Some(Action::Archive(v("1.0.0"))),
    });
    // Rolling back to what runs is refused.
    let a = sim.feed(Input::Command {
        id: 2,
        command: Command::Rollback(Some(v("1.1.0"))),
    });
    assert!(
        matches!(reply_in(&a, 2), Err(CommandError::Refused(r)) if r.contains("already running"))
    );
    // A plain rollback asks for the previous version; the answer waits for it.
    let a = sim.feed(Input::Command {
        id: 3,
        command: Command::Rollback(None),
    });
    assert!(a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
    assert!(!a.iter().any(|a| matches!(a, Action::Reply { .. })));
    // A version never archived: 404-style answer, nothing changes.
    let a = sim.feed(Input::Restored {
        version: v("1.0.0"),
        result: Err(RestoreFailure::Missing),
    });
    assert!(matches!(reply_in(&a, 3), Err(CommandError::UnknownVersion(x)) if x == "1.0.0"));
    assert!(start_in(&a).is_none());
    // Restored: promoted like any build, recorded as a rollback.
    sim.feed(Input::Command {
        id: 4,
        command: Command::Rollback(None),
    });
    let a = sim.feed(Input::Restored {
        version: v("1.0.0"),
        result: Ok(installed("1.0.0")),
    });
    assert!(matches!(reply_in(&a, 4), Ok(m) if m.contains("1.0.0")));
    let (next, a) = sim.bring_up(&a);
    assert_eq!(
        records_in(&a),
        vec![(Some(v("1.1.0")), v("1.0.0"), SwitchWhy::Rollback)]
    );
    assert_eq!(sim.s.running().unwrap().id, next);
}

/// Right after a rollback, a plain one would bring back the version just thrown out: refused,
/// naming it; named, it is what the operator asked for.
#[tokio::test(start_paused = true)]
async fn a_plain_rollback_after_a_rollback_is_refused_naming_the_version_rolled_back_from() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.1.0");
    let (promoted, _) = sim.bring_up(&a);
    sim.feed(Input::Command {
        id: 1,
        command: Command::Rollback(Some(v("1.0.0"))),
    });
    let (_, a) = sim.restored("1.0.0");
    assert_eq!(
        records_in(&a),
        vec![(Some(v("1.1.0")), v("1.0.0"), SwitchWhy::Rollback)]
    );
    sim.feed(Input::Stopped { id: promoted });
    let a = sim.feed(Input::Command {
        id: 5,
        command: Command::Rollback(None),
    });
    assert!(
        matches!(reply_in(&a, 5), Err(CommandError::Refused(r)) if r.contains("rolled back from 1.1.0")),
        "{a:#?}"
    );
    assert!(!a.iter().any(|x| matches!(x, Action::Restore(_))), "{a:#?}");
    let a = sim.feed(Input::Command {
        id: 6,
        command: Command::Rollback(Some(v("1.1.0"))),
    });
    assert!(
        !a.iter().any(|x| matches!(x, Action::Reply { .. })),
        "{a:#?}"
    );
}

/// After a restart, the history says the same: a plain rollback brings back what served before
/// running, unless running's switch was a rollback, whose version it came from is named instead.
#[test]
fn the_history_says_what_a_plain_rollback_brings_back_after_a_restart() {
    use crate::history::Switch;
    let switch = |from: Option<&str>, to: &str, why| Switch {
        at: "2026-12-01T00:00:00Z".into(),
        from: from.map(v),
        to: v(to),
        why,
        share: None,
    };
    let mut h = vec![
        switch(None, "1.0.0", SwitchWhy::First),
        switch(Some("1.0.0"), "1.1.0", SwitchWhy::Automatic),
    ];
    let before = crate::supervisor::resume::before;
    assert_eq!(before(&h, &v("1.1.0")), (Some(v("1.0.0")), None));
    // A canary step's share, recorded on a line of its own, changes nothing of that.
    h.push(Switch {
        share: Some(crate::history::Share {
            version: v("1.2.0"),
            percent: 10.0,
        }),
        ..switch(Some("1.1.0"), "1.1.0", SwitchWhy::Canary)
    });
    assert_eq!(before(&h, &v("1.1.0")), (Some(v("1.0.0")), None));
    h.pop();
    h.push(switch(Some("1.1.0"), "1.0.0", SwitchWhy::Rollback));
    assert_eq!(before(&h, &v("1.0.0")), (None, Some(v("1.1.0"))));
    assert_eq!(before(&h, &v("2.0.0")), (None, None));
}

/// During a rollback the version still serving is newer than the rollback's target: a drop of
/// it (a CI retry) must be refused, or it would be installed into the folder that serves.
#[tokio::test(start_paused = true)]
async fn a_drop_of_the_serving_version_during_a_rollback_is_refused() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.0.0");
    sim.bring_up(&a);
    sim.feed(Input::Command {
        id: 1,
        command: Command::Rollback(Some(v("0.9.0"))),
    });
    let a = sim.feed(Input::Restored {
        version: v("0.9.0"),
        result: Ok(installed("0.9.0")),
    });
    assert!(start_in(&a).is_some(), "{a:#?}");
    for dropped in ["1.0.0", "0.9.5"] {
        let a = sim.feed(Input::Dropped(build(dropped)));
        assert!(
            a.iter().any(|a| matches!(a, Action::Refuse { reason, .. }
                if reason.contains("not newer than running 1.0.0"))),
            "{dropped}: {a:#?}"
        );
        assert!(!a.contains(&Action::Install(build(dropped))), "{a:#?}");
    }
    let a = sim.feed(Input::Dropped(build("1.0.1")));
    assert!(a.contains(&Action::Install(build("1.0.1"))), "{a:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_rollback_whose_version_fails_to_start_goes_back_to_the_archive_not_to_rejected() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.0.0");
    sim.bring_up(&a);
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Rollback(Some(v("0.9.0"))),
    });
    assert!(a.contains(&Action::Restore(v("0.9.0"))));
    let a = sim.feed(Input::Restored {
        version: v("0.9.0"),
        result: Ok(installed("0.9.0")),
    });
    let (next, _, _) = start_in(&a).unwrap();
    sim.launch(next);
    sim.event(
        next,
        InstanceEventKind::NotReady {
            reason: "timeout".into(),
        },
    );
    let a = sim.feed(Input::Stopped { id: next });
    assert!(a.contains(&Action::Archive(v("0.9.0"))), "{a:#?}");
    assert!(!a.iter().any(|a| matches!(a, Action::Reject { .. })));
}

/// An operator's rollback while a build is under test: it was scored on as before, its stable
/// window and pairs kept though they compared it with the version rolled back from (the review
/// saw it go on to a canary 11 s after the switch). It is scored afresh against the version
/// now serving.
#[tokio::test(start_paused = true)]
async fn a_build_under_test_is_scored_afresh_after_a_rollback_under_it() {
    let mut sim = Sim::new(PORTS);
    let (old, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.verdict(testing, Verdict::Promote);
    sim.feed(Input::Stopped { id: testing });
    sim.bring_up(&a);
    sim.feed(Input::Stopped { id: old });
    sim.feed(Input::Filed {
        version: v("1.0.0"),
        result: Ok(Filed::Archived(PathBuf::from(
            "/base/archive/app-1.0.0.zip",
        ))),
        filing: Some(Action::Archive(v("1.0.0"))),
    });
    let a = sim.deliver("1.2.0");
    let (testing, _) = sim.bring_up(&a);
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Rollback(Some(v("1.0.0"))),
    });
    assert!(a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
    let a = sim.feed(Input::Restored {
        version: v("1.0.0"),
        result: Ok(installed("1.0.0")),
    });
    let (_, a) = sim.bring_up(&a);
    assert_eq!(
        records_in(&a),
        vec![(Some(v("1.1.0")), v("1.0.0"), SwitchWhy::Rollback)]
    );
    let watched = a
        .iter()
        .any(|a| matches!(a, Action::Score(ScorerControl::Watch(w)) if w.testing == testing));
    assert!(watched, "a fresh scorecard for 1.2.0: {a:#?}");
    assert!(!a
        .iter()
        .any(|a| matches!(a, Action::Score(ScorerControl::Running { .. }))));
}

/// A build dropped while an operator's promotion is in its `PRE_PROMOTE` waits as pending: the
/// promotion is finished first and the new build is tested after it (it used to replace the
/// build being promoted, which was then archived without a word: a reviewer's scenario).
#[tokio::test(start_paused = true)]
async fn a_build_dropped_during_pre_promote_waits_for_the_promotion() {
    let mut sim = Sim::new(PORTS);
    sim.s.hooks = HookSet {
        pre_promote: true,
        ..Default::default()
    };
    let (_, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Promote,
    });
    assert_eq!(hooks_in(&a), vec![Hook::PrePromote]);
    let a = sim.deliver("1.2.0");
    assert!(start_in(&a).is_none(), "1.2.0 waits: {a:#?}");
    assert_eq!(sim.s.testing().unwrap().id, testing);
    assert_eq!(
        sim.s.pending.as_ref().map(|p| p.version.clone()),
        Some(v("1.2.0"))
    );
    let a = sim.feed(Input::HookDone {
        hook: Hook::PrePromote,
        id: Some(testing),
        version: v("1.1.0"),
        result: Ok(()),
    });
    assert_eq!(
        start_of(&a, Role::Running).map(|s| s.1),
        Some(v("1.1.0")),
        "{a:#?}"
    );
    assert!(start_of(&a, Role::Testing).is_none(), "{a:#?}");
    let (_, a) = sim.bring_up(&a);
    assert_eq!(*sim.s.running().unwrap().version(), v("1.1.0"));
    assert_eq!(
        start_of(&a, Role::Testing).map(|s| s.1),
        Some(v("1.2.0")),
        "{a:#?}"
    );
}

/// `PRE_PROMOTE` refuses the promotion a drop waited for: the waiting build is tested at once.
#[tokio::test(start_paused = true)]
async fn a_build_dropped_during_a_refused_pre_promote_is_tested_after_it() {
    let mut sim = Sim::new(PORTS);
    sim.s.hooks = HookSet {
        pre_promote: true,
        ..Default::default()
    };
    let (running, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.verdict(testing, Verdict::Promote);
    assert_eq!(hooks_in(&a), vec![Hook::PrePromote]);
    assert!(start_in(&sim.deliver("1.2.0")).is_none());
    let a = sim.feed(Input::HookDone {
        hook: Hook::PrePromote,
        id: Some(testing),
        version: v("1.1.0"),
        result: Err("exit status: 1".into()),
    });
    assert!(emitted(&a)
        .iter()
        .any(|e| matches!(e, Event::PromotionFailed { .. })));
    assert_eq!(
        start_of(&a, Role::Testing).map(|s| s.1),
        Some(v("1.2.0")),
        "{a:#?}"
    );
    assert!(a.contains(&Action::Retire {
        id: testing,
        drain: false
    }));
    assert_eq!(sim.s.running().unwrap().id, running);
}

/// Stopped while a promotion started and a newer build waited behind it: at start the promotion
/// is undone, the promoted build goes back to testing, where the newer one replaces it as a newer
/// drop would, and the log says so (it said only `archived`, as if the build were lost).
#[tokio::test(start_paused = true)]
async fn an_undone_promotion_with_a_newer_build_waiting_says_the_newer_one_replaces_it() {
    let mut sim = Sim::new(PORTS);
    let a = sim.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.0.0")),
        promoting: Some(installed("1.1.0")),
        testing: Some(installed("1.2.0")),
        txn: Some(operators_promotion("1.1.0", TxnStep::Starting)),
        ..Default::default()
    })));
    assert!(
        emitted(&a).iter().any(|e| matches!(e,
            Event::BuildRecovered { version, outcome } if *version == v("1.1.0")
                && outcome.contains("went back to testing")
                && outcome.contains("1.2.0"))),
        "{a:#?}"
    );
    assert!(a.contains(&Action::Archive(v("1.1.0"))), "{a:#?}");
    let (_, a) = sim.bring_up(&a);
    assert_eq!(
        start_of(&a, Role::Testing).map(|s| s.1),
        Some(v("1.2.0")),
        "{a:#?}"
    );
}
