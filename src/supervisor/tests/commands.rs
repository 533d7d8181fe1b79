//! An operator's commands and the scheduled promotions they set.

use super::*;
#[tokio::test(start_paused = true)]
async fn paused_scoring_is_shown_but_not_acted_on() {
    let mut sim = Sim::new(PORTS);
    let (_, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Pause,
    });
    assert!(reply_in(&a, 1).is_ok());
    let a = sim.verdict(testing, Verdict::Reject(vec!["5xx rate".into()]));
    assert!(emitted(&a)
        .iter()
        .any(|e| matches!(e, Event::Scored { .. })));
    assert!(
        !a.iter().any(|a| matches!(a, Action::Retire { .. })),
        "{a:#?}"
    );
    let a = sim.verdict(testing, Verdict::Promote);
    assert!(start_in(&a).is_none(), "no promotion while paused");
    let status = sim.s.status(|_| std::time::SystemTime::UNIX_EPOCH);
    assert!(status.paused);
    assert_eq!(status.verdict.unwrap().verdict, VerdictKind::Promote);
    sim.feed(Input::Command {
        id: 2,
        command: Command::Resume,
    });
    let a = sim.verdict(testing, Verdict::Promote);
    assert_eq!(start_in(&a).map(|(_, r, _)| r), Some(Role::Running));
}

/// A reviewer's case: `resume` when not paused said "resumed", and a second `pause` "paused",
/// as if something began. Each says nothing changed, and no event is told.
#[tokio::test(start_paused = true)]
async fn a_pause_or_resume_that_changes_nothing_says_so() {
    let mut sim = Sim::new(PORTS);
    sim.serving_with_testing("1.1.0");
    let mut say = |id, command| {
        let a = sim.feed(Input::Command { id, command });
        let reply = reply_in(&a, id).clone().expect("answered");
        (reply, emitted(&a).len())
    };
    let (reply, events) = say(1, Command::Resume);
    assert!(
        reply.starts_with("not paused: nothing changed") && events == 0,
        "{reply}"
    );
    let (reply, events) = say(2, Command::Pause);
    assert!(reply.starts_with("paused:") && events == 1, "{reply}");
    let (reply, events) = say(3, Command::Pause);
    assert!(
        reply.starts_with("already paused: nothing changed") && events == 0,
        "{reply}"
    );
    let (reply, events) = say(4, Command::Resume);
    assert!(reply.starts_with("resumed:") && events == 1, "{reply}");
}

#[tokio::test(start_paused = true)]
async fn operator_promote_and_abort_and_their_refusals() {
    let mut sim = Sim::new(PORTS);
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Promote,
    });
    assert!(
        matches!(reply_in(&a, 1), Err(CommandError::NothingToPromote(r)) if r.contains("no build")),
        "{a:#?}"
    );
    let a = sim.feed(Input::Command {
        id: 2,
        command: Command::Abort,
    });
    assert_eq!(reply_in(&a, 2), &Err(CommandError::NothingToAbort));

    let (running, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.feed(Input::Command {
        id: 3,
        command: Command::Abort,
    });
    assert_eq!(reply_in(&a, 3), &Ok("rejected 1.1.0".to_string()));
    assert!(a.contains(&Action::Retire {
        id: testing,
        drain: false
    }));
    let a = sim.feed(Input::Stopped { id: testing });
    assert!(a.iter().any(|a| matches!(a,
        Action::Reject { version, reasons } if *version == v("1.1.0") && reasons == &["aborted by operator"])));

    let a = sim.deliver("1.2.0");
    sim.bring_up(&a);
    let a = sim.feed(Input::Command {
        id: 4,
        command: Command::Promote,
    });
    assert_eq!(reply_in(&a, 4), &Ok("promoting 1.2.0".to_string()));
    let (next, role, _) = start_in(&a).unwrap();
    assert_eq!(role, Role::Running);
    let a = sim.feed(Input::Command {
        id: 5,
        command: Command::Promote,
    });
    assert!(
        matches!(reply_in(&a, 5), Err(CommandError::NothingToPromote(r)) if r.contains("under way"))
    );
    sim.launch(next);
    let a = sim.event(next, InstanceEventKind::Ready);
    assert!(a.contains(&Action::Retire {
        id: running,
        drain: true
    }));
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_promotion_is_saved_before_the_answer_and_fires_once_at_its_time() {
    let mut sim = Sim::new(PORTS);
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::PromoteAt(sim.now().wall + Duration::from_secs(60)),
    });
    assert!(matches!(
        reply_in(&a, 1),
        Err(CommandError::NothingToPromote(_))
    ));
    let (_, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.feed(Input::Command {
        id: 2,
        command: Command::PromoteAt(sim.now().wall - Duration::from_secs(1)),
    });
    assert!(
        matches!(reply_in(&a, 2), Err(CommandError::Refused(r)) if r.contains("not in the future"))
    );
    // A mistyped year is refused, not a build held for decades.
    let a = sim.feed(Input::Command {
        id: 2,
        command: Command::PromoteAt(sim.now().wall + Duration::from_secs(367 * 24 * 3600)),
    });
    assert!(
        matches!(reply_in(&a, 2), Err(CommandError::Refused(r)) if r.contains("more than a year ahead")),
        "{a:#?}"
    );
    let a = sim.feed(Input::Command {
        id: 3,
        command: Command::PromoteAt(sim.now().wall + Duration::from_secs(60)),
    });
    assert!(
        matches!(reply_in(&a, 3), Ok(m) if m.contains("schedule #1")),
        "{a:#?}"
    );
    // The state write comes before the answer.
    let persist = a
        .iter()
        .position(|a| matches!(a, Action::Persist(p) if p.schedules.len() == 1));
    let reply = a.iter().position(|a| matches!(a, Action::Reply { .. }));
    assert!(persist.is_some() && persist < reply, "{a:#?}");
    // Passing before its time does not promote: the schedule holds it.
    let a = sim.verdict(testing, Verdict::Promote);
    assert!(start_in(&a).is_none(), "{a:#?}");
    assert!(sim.s.deadline() <= Instant::now() + Duration::from_secs(60));
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(start_in(&sim.feed(Input::Tick)).is_none());
    tokio::time::advance(Duration::from_secs(1)).await;
    let a = sim.feed(Input::Tick);
    let (next, role, _) = start_in(&a).expect("fires at its time");
    assert_eq!(role, Role::Running);
    assert!(a.iter().any(|a| matches!(a, Action::Persist(p)
        if p.promoting == Some(v("1.1.0")) && matches!(p.schedules[0].outcome, Outcome::Promoting { .. }))));
    let (_, a) = {
        sim.launch(next);
        (next, sim.event(next, InstanceEventKind::Ready))
    };
    assert_eq!(
        records_in(&a),
        vec![(Some(v("1.0.0")), v("1.1.0"), SwitchWhy::Scheduled)]
    );
    // Fired in the write that journals the switch, before the route changes.
    let persist = a.iter().position(|a| {
        matches!(a, Action::Persist(p)
        if matches!(p.schedules[0].outcome, Outcome::Fired { .. }))
    });
    let route = a.iter().position(|a| matches!(a, Action::Route(_)));
    assert!(persist.is_some() && persist < route, "{a:#?}");
    tokio::time::advance(Duration::from_secs(3600)).await;
    let a = sim.feed(Input::Tick);
    assert!(start_in(&a).is_none(), "never fires twice: {a:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_schedule_due_while_a_switch_finishes_waits_for_it_then_fires() {
    let mut sim = Sim::new(PORTS);
    sim.s.hooks = HookSet {
        post_promote: true,
        ..Default::default()
    };
    let (old, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.verdict(testing, Verdict::Promote);
    let (next, _, _) = start_in(&a).unwrap();
    sim.deliver("1.2.0");
    // 1.1.0 serves; the old running drains, then POST_PROMOTE runs; 1.2.0 is tested meanwhile.
    sim.launch(next);
    let a = sim.event(next, InstanceEventKind::Ready);
    let (newest, _) = sim.bring_up(&a);
    assert_eq!(*sim.s.testing().unwrap().version(), v("1.2.0"));
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::PromoteAt(sim.now().wall + Duration::from_secs(60)),
    });
    assert!(reply_in(&a, 1).is_ok(), "{a:#?}");
    let ended = |a: &[Action]| {
        emitted(a)
            .into_iter()
            .filter_map(|e| match e {
                Event::ScheduleEnded {
                    outcome, reason, ..
                } => Some(format!("{outcome}: {reason}")),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    tokio::time::advance(Duration::from_secs(60)).await;
    let a = sim.feed(Input::Tick);
    assert!(start_in(&a).is_none(), "{a:#?}");
    assert!(ended(&a).is_empty(), "{a:#?}");
    let a = sim.feed(Input::Stopped { id: old });
    assert_eq!(hooks_in(&a), vec![Hook::PostPromote]);
    assert!(start_in(&a).is_none() && ended(&a).is_empty(), "{a:#?}");
    assert_eq!(schedules(&sim)[0].outcome, Outcome::Pending);
    assert_eq!(sim.s.testing().unwrap().id, newest);
    // POST_PROMOTE is done: the switch is over, and the schedule fires.
    let a = sim.feed(Input::HookDone {
        hook: Hook::PostPromote,
        id: Some(next),
        version: v("1.1.0"),
        result: Ok(()),
    });
    assert_eq!(
        start_of(&a, Role::Running),
        Some((start_in(&a).unwrap().0, v("1.2.0")))
    );
    assert!(
        ended(&a).is_empty(),
        "fired once users are switched: {a:#?}"
    );
    let (next, _) = start_of(&a, Role::Running).unwrap();
    sim.launch(next);
    let a = sim.event(next, InstanceEventKind::Ready);
    assert_eq!(
        ended(&a),
        vec!["fired: users switched to 1.2.0".to_string()]
    );
    assert!(matches!(
        &schedules(&sim)[0].outcome,
        Outcome::Fired { promoted, .. } if *promoted == v("1.2.0")
    ));
}

#[tokio::test(start_paused = true)]
async fn a_schedule_due_while_down_fires_at_start_within_the_grace_else_it_is_missed() {
    for (late_min, fires) in [(5u64, true), (90, false)] {
        let mut sim = Sim::new(PORTS);
        let at = sim.now().wall - Duration::from_secs(late_min * 60);
        let a = sim.feed(Input::Resume(Box::new(Resumed {
            running: Some(installed("1.0.0")),
            testing: Some(installed("1.1.0")),
            schedules: vec![Schedule::new(7, Some(v("1.1.0")), at, Origin::Operator)],
            schedule_grace: Duration::from_secs(3600),
            ..Default::default()
        })));
        if !fires {
            assert!(
                matches!(&schedules(&sim)[0].outcome, Outcome::Missed { reason } if reason.contains("MISSED_SCHEDULE_GRACE")),
                "{:?}",
                schedules(&sim)
            );
        }
        let (_, a) = sim.bring_up(&a); // running
        let (_, a) = sim.bring_up(&a); // testing
        let started = start_in(&a);
        assert_eq!(started.is_some(), fires, "late by {late_min} min: {a:#?}");
        if fires {
            assert!(matches!(
                schedules(&sim)[0].outcome,
                Outcome::Promoting { .. }
            ));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_schedule_of_a_build_rejected_before_its_time_is_cancelled_with_the_reason() {
    let mut sim = Sim::new(PORTS);
    let (_, testing) = sim.serving_with_testing("1.1.0");
    sim.feed(Input::Command {
        id: 1,
        command: Command::PromoteAt(sim.now().wall + Duration::from_secs(60)),
    });
    sim.verdict(testing, Verdict::Reject(vec!["5xx rate".into()]));
    assert!(
        matches!(&schedules(&sim)[0].outcome, Outcome::Cancelled { reason } if reason.contains("5xx rate")),
        "{:?}",
        schedules(&sim)
    );
    // And an operator can cancel one.
    let a = sim.deliver("1.2.0");
    sim.bring_up(&a);
    sim.feed(Input::Command {
        id: 2,
        command: Command::PromoteAt(sim.now().wall + Duration::from_secs(60)),
    });
    let a = sim.feed(Input::Command {
        id: 3,
        command: Command::CancelSchedule(2),
    });
    assert_eq!(reply_in(&a, 3), &Ok("schedule #2 cancelled".to_string()));
    let a = sim.feed(Input::Command {
        id: 4,
        command: Command::CancelSchedule(99),
    });
    assert_eq!(reply_in(&a, 4), &Err(CommandError::UnknownSchedule(99)));
}

#[tokio::test(start_paused = true)]
async fn promote_at_from_the_config_is_added_once_across_restarts() {
    let mut sim = Sim::new(PORTS);
    let at = sim.now().wall + Duration::from_secs(30);
    sim.feed(Input::Resume(Box::new(Resumed {
        promote_at: Some(at),
        ..Default::default()
    })));
    let first = schedules(&sim);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].version, None);
    // Restarted: the saved schedule (fired or not) is recognised, not added again.
    let mut fired = first[0].clone();
    fired.outcome = Outcome::Fired {
        fired_at: fired.at.clone(),
        promoted: v("1.1.0"),
    };
    let mut sim = Sim::new(PORTS);
    sim.feed(Input::Resume(Box::new(Resumed {
        promote_at: Some(at),
        schedules: vec![fired.clone()],
        ..Default::default()
    })));
    assert_eq!(schedules(&sim), vec![fired]);
}

/// `PROMOTE_AT` names no build: whatever is under test at its instant is promoted then, so a
/// build that passes earlier waits for it, as one named by `promote --at` does; a rejected build
/// does not cancel it, and the next build under test is held the same way.
#[tokio::test(start_paused = true)]
async fn promote_at_from_the_config_holds_whatever_passes_until_its_time() {
    let mut sim = Sim::new(PORTS);
    sim.feed(Input::Resume(Box::new(Resumed {
        promote_at: Some(sim.now().wall + Duration::from_secs(60)),
        ..Default::default()
    })));
    let (_, testing) = sim.serving_with_testing("1.1.0");
    sim.verdict(testing, Verdict::Reject(vec!["5xx rate".into()]));
    assert_eq!(schedules(&sim)[0].outcome, Outcome::Pending);
    let a = sim.deliver("1.2.0");
    let (testing, _) = sim.bring_up(&a);
    let a = sim.verdict(testing, Verdict::Promote);
    assert!(start_in(&a).is_none(), "held until PROMOTE_AT: {a:#?}");
    tokio::time::advance(Duration::from_secs(30)).await;
    let a = sim.verdict(testing, Verdict::Promote);
    assert!(start_in(&a).is_none(), "still held: {a:#?}");
    tokio::time::advance(Duration::from_secs(30)).await;
    let a = sim.feed(Input::Tick);
    let (next, role, _) = start_in(&a).expect("fires at its time");
    assert_eq!(role, Role::Running);
    sim.launch(next);
    let a = sim.event(next, InstanceEventKind::Ready);
    assert_eq!(
        records_in(&a),
        vec![(Some(v("1.0.0")), v("1.2.0"), SwitchWhy::Scheduled)]
    );
}

#[test]
fn schedules_round_trip_through_the_state_file() {
    let mut s = Schedule::new(1, Some(v("1.1.0")), wall0(), Origin::Operator);
    for outcome in [
        Outcome::Pending,
        Outcome::Promoting {
            started_at: "2026-12-01T00:00:00Z".into(),
            promoting: v("1.1.0"),
        },
        Outcome::Failed {
            reason: "PRE_PROMOTE refused it".into(),
        },
        Outcome::Fired {
            fired_at: "2026-12-01T00:00:01Z".into(),
            promoted: v("1.1.0"),
        },
        Outcome::Missed {
            reason: "late".into(),
        },
        Outcome::Cancelled {
            reason: "no".into(),
        },
    ] {
        s.outcome = outcome;
        let p = Persisted {
            schedules: vec![s.clone()],
            ..Default::default()
        };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(
            serde_json::from_str::<Persisted>(&text).unwrap(),
            p,
            "{text}"
        );
    }
}

/// An upgrade hands over what runs; a new understudy's slots take the ports their children hold
/// (no `PRE_START`: nothing new starts), and nobody else takes a port still held.
#[tokio::test(start_paused = true)]
async fn an_upgrade_hands_what_runs_and_the_next_one_starts_on_the_handed_ports() {
    let mut sim = Sim::new(PORTS);
    let (running, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.feed(Input::Command {
        id: 7,
        command: Command::Upgrade(None),
    });
    let Some(Action::Upgrade {
        reply, children, ..
    }) = a.iter().find(|a| matches!(a, Action::Upgrade { .. }))
    else {
        panic!("no upgrade in {a:?}");
    };
    assert_eq!(*reply, 7);
    assert!(children.contains(&("running", running)), "{children:?}");
    assert!(children.contains(&("testing", testing)), "{children:?}");

    let mut next = Sim::new(PORTS);
    let a = next.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.0.0")),
        testing: Some(installed("1.1.0")),
        hooks: HookSet {
            pre_start: true,
            ..Default::default()
        },
        handed: vec![
            HandedPort {
                part: "running".into(),
                version: v("1.0.0"),
                port: 30004,
            },
            HandedPort {
                part: "testing".into(),
                version: v("1.1.0"),
                port: 30000,
            },
        ],
        ..Default::default()
    })));
    let (_, role, port) = start_in(&a).expect("running starts at once");
    assert_eq!((role, port), (Role::Running, 30004), "on its handed port");
    assert!(
        hooks_in(&a).is_empty(),
        "no PRE_START for a child that runs"
    );
    assert!(
        next.s.handed.iter().any(|h| h.port == 30000),
        "testing's, unclaimed yet"
    );
}

#[tokio::test(start_paused = true)]
async fn an_upgrade_waits_for_a_switch_under_way() {
    let mut sim = Sim::new(PORTS);
    sim.serving_with_testing("1.1.0");
    sim.feed(Input::Command {
        id: 1,
        command: Command::Promote,
    });
    let a = sim.feed(Input::Command {
        id: 2,
        command: Command::Upgrade(None),
    });
    assert!(
        matches!(reply_in(&a, 2), Err(CommandError::Refused(why)) if why.contains("upgrade understudy once")),
        "{a:?}"
    );
}

fn held_in(actions: &[Action]) -> Vec<String> {
    emitted(actions)
        .iter()
        .filter_map(|e| match e {
            Event::ScheduleHeld { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// Running 1.0.0, testing 1.1.0, paused, and a schedule for 60 s from now.
fn paused_with_a_schedule() -> (Sim, InstanceId) {
    let mut sim = Sim::new(PORTS);
    let (_, testing) = sim.serving_with_testing("1.1.0");
    sim.feed(Input::Command {
        id: 1,
        command: Command::Pause,
    });
    let at = sim.now().wall + Duration::from_secs(60);
    let a = sim.feed(Input::Command {
        id: 2,
        command: Command::PromoteAt(at),
    });
    assert!(reply_in(&a, 2).is_ok(), "{a:#?}");
    (sim, testing)
}

#[tokio::test(start_paused = true)]
async fn a_schedule_due_while_paused_holds_says_so_once_and_fires_once_resumed() {
    let (mut sim, testing) = paused_with_a_schedule();
    sim.verdict(testing, Verdict::Promote);
    tokio::time::advance(Duration::from_secs(60)).await;
    let a = sim.feed(Input::Tick);
    assert!(start_in(&a).is_none(), "paused: {a:#?}");
    let held = held_in(&a);
    assert!(
        held.len() == 1 && held[0].contains("paused"),
        "said: {a:#?}"
    );
    assert!(schedules(&sim)[0].is_pending());
    tokio::time::advance(Duration::from_secs(5)).await;
    let a = sim.feed(Input::Tick);
    assert!(start_in(&a).is_none() && held_in(&a).is_empty(), "{a:#?}");
    let a = sim.feed(Input::Command {
        id: 3,
        command: Command::Resume,
    });
    let (_, role, _) = start_in(&a).expect("fires once resumed");
    assert_eq!(role, Role::Running);
    assert!(matches!(
        schedules(&sim)[0].outcome,
        Outcome::Promoting { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_schedule_never_promotes_over_a_rejection_that_came_while_paused() {
    let (mut sim, testing) = paused_with_a_schedule();
    sim.verdict(testing, Verdict::Reject(vec!["5xx rate up".into()]));
    tokio::time::advance(Duration::from_secs(60)).await;
    let a = sim.feed(Input::Tick);
    assert!(start_in(&a).is_none(), "{a:#?}");
    let a = sim.feed(Input::Command {
        id: 3,
        command: Command::Resume,
    });
    assert!(start_in(&a).is_none(), "not over a rejection: {a:#?}");
    assert!(
        held_in(&a).iter().any(|h| h.contains("5xx rate up")),
        "{a:#?}"
    );
    // The next evaluation is acted on: the build is rejected, its schedule cancelled.
    let a = sim.verdict(testing, Verdict::Reject(vec!["5xx rate up".into()]));
    assert!(start_in(&a).is_none());
    assert!(matches!(
        schedules(&sim)[0].outcome,
        Outcome::Cancelled { .. }
    ));
}

/// `promote` right after a drop was told "nothing to promote: no build is
/// being tested", though status showed the build installing: it names the build on its way.
#[tokio::test(start_paused = true)]
async fn promote_before_a_dropped_build_is_under_test_names_it() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.0.0");
    sim.bring_up(&a);
    sim.feed(Input::Dropped(build("1.1.0")));
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Promote,
    });
    assert!(
        matches!(reply_in(&a, 1), Err(CommandError::NothingToPromote(r))
            if r == "no build is being tested: 1.1.0 is being installed and is tested next; promote it once it is under test"),
        "{a:#?}"
    );
    // A schedule takes it as it comes (the schedule's own tests).
}

/// `abort` while a build is being installed (as when it waits for room for its protected copy,
/// which may never come): the install is told to stop waiting, and the build is rejected as its
/// install ends, waiting or not. Before, `abort` said there was nothing to abort.
#[tokio::test(start_paused = true)]
async fn abort_during_an_install_rejects_the_build_as_its_install_ends() {
    for waited in [true, false] {
        let mut sim = Sim::new(PORTS);
        sim.serving_with_testing("1.1.0");
        sim.feed(Input::Command {
            id: 1,
            command: Command::Abort,
        });
        let a = sim.feed(Input::Dropped(build("1.2.0")));
        assert!(a.contains(&Action::Install(build("1.2.0"))), "{a:#?}");
        let a = sim.feed(Input::Command {
            id: 2,
            command: Command::Abort,
        });
        assert!(
            matches!(reply_in(&a, 2), Ok(r) if r.starts_with("rejecting 1.2.0: it is being installed")),
            "{a:#?}"
        );
        assert!(a.contains(&Action::AbortInstall), "{a:#?}");
        let result = match waited {
            true => Err("aborted by operator while it waited for room (disk)".to_string()),
            false => Ok(installed("1.2.0")),
        };
        let a = sim.feed(Input::Installed {
            version: v("1.2.0"),
            result,
        });
        let reasons = a.iter().find_map(|a| match a {
            Action::Reject { version, reasons } if *version == v("1.2.0") => Some(reasons),
            _ => None,
        });
        assert!(
            reasons.is_some_and(|r| r[0].starts_with("aborted by operator")),
            "{a:#?}"
        );
        assert!(
            start_in(&a).is_none(),
            "an aborted build is not tested: {a:#?}"
        );
        let a = sim.feed(Input::Command {
            id: 3,
            command: Command::Abort,
        });
        assert_eq!(reply_in(&a, 3), &Err(CommandError::NothingToAbort));
    }
}
