//! A scheduled promotion fires when users are switched, not when its promotion starts: one
//! undone at start fires again within the grace, one that failed says so.

use super::*;

/// Running 1.0.0, testing 1.1.0 ready, `hooks` set, and a schedule of 1.1.0 that came due and
/// started its promotion: the actions of that start.
async fn a_schedule_firing(sim: &mut Sim, hooks: HookSet) -> Vec<Action> {
    sim.s.hooks = hooks;
    sim.s.schedule_grace = Duration::from_secs(3600);
    sim.serving_with_testing("1.1.0");
    schedule_come_due(sim).await
}

/// Schedule the build under test 6 s from now, then let it come due: the actions of that tick.
async fn schedule_come_due(sim: &mut Sim) -> Vec<Action> {
    let at = sim.now().wall + Duration::from_secs(6);
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::PromoteAt(at),
    });
    assert!(reply_in(&a, 1).is_ok(), "{a:#?}");
    tokio::time::advance(Duration::from_secs(6)).await;
    sim.feed(Input::Tick)
}

fn ended_in(actions: &[Action]) -> Vec<(String, String)> {
    emitted(actions)
        .into_iter()
        .filter_map(|e| match e {
            Event::ScheduleEnded {
                outcome, reason, ..
            } => Some((outcome.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

/// The restart of a Sim killed mid-promotion: its journal (running, the version promoting, the
/// transaction, the schedules, as the last state write had them), `late` after the schedule's
/// time.
fn restarted(killed: &Sim, late: Duration) -> (Sim, Vec<Action>) {
    let schedules = killed.s.schedules.clone();
    let at = schedules[0].instant();
    let mut sim = Sim::new(PORTS);
    sim.start = (Instant::now(), at + late);
    let a = sim.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.0.0")),
        promoting: Some(installed("1.1.0")),
        txn: killed.s.txn.clone(),
        schedules,
        schedule_grace: Duration::from_secs(3600),
        ..Default::default()
    })));
    (sim, a)
}

/// Killed after the schedule started its promotion, before users were switched: the switch is
/// undone at start, and the schedule fires again (within the grace) once the build is ready,
/// with the why `scheduled`; past the grace it is recorded as missed, saying why.
#[tokio::test(start_paused = true)]
async fn a_scheduled_promotion_undone_at_start_fires_again_within_the_grace() {
    for (late_min, fires) in [(5u64, true), (90, false)] {
        let mut killed = Sim::new(PORTS);
        let a = a_schedule_firing(&mut killed, HookSet::default()).await;
        let (next, role, _) = start_in(&a).expect("the schedule starts its promotion");
        assert_eq!(role, Role::Running);
        killed.launch(next); // killed before it is ready

        let (mut sim, a) = restarted(&killed, Duration::from_secs(late_min * 60));
        assert!(
            emitted(&a)
                .iter()
                .any(|e| matches!(e, Event::SwitchUndone { .. })),
            "{a:#?}"
        );
        let (_, a) = sim.bring_up(&a); // running 1.0.0
        let (_, a) = sim.bring_up(&a); // 1.1.0, tested again
        let Some((next, Role::Running, _)) = start_in(&a) else {
            assert!(!fires, "late by {late_min} min, it fires again: {a:#?}");
            let sch = &schedules(&sim)[0];
            assert!(
                matches!(&sch.outcome, Outcome::Missed { reason }
                    if reason.contains("undone at start") && reason.contains("MISSED_SCHEDULE_GRACE")),
                "{sch:?}"
            );
            continue;
        };
        assert!(fires, "late by {late_min} min: {a:#?}");
        sim.launch(next);
        let a = sim.event(next, InstanceEventKind::Ready);
        assert_eq!(
            records_in(&a),
            vec![(Some(v("1.0.0")), v("1.1.0"), SwitchWhy::Scheduled)]
        );
        assert!(
            matches!(&schedules(&sim)[0].outcome, Outcome::Fired { promoted, .. } if *promoted == v("1.1.0")),
            "{:?}",
            schedules(&sim)
        );
    }
}

/// `PRE_PROMOTE` refuses the build a schedule promotes: the schedule ends `failed` with the
/// hook's reason, not `fired`, and running stays.
#[tokio::test(start_paused = true)]
async fn a_scheduled_promotion_refused_by_pre_promote_ends_failed() {
    let mut sim = Sim::new(PORTS);
    let hooks = HookSet {
        pre_promote: true,
        ..Default::default()
    };
    let a = a_schedule_firing(&mut sim, hooks).await;
    assert_eq!(hooks_in(&a), vec![Hook::PrePromote]);
    assert!(ended_in(&a).is_empty(), "not ended while under way: {a:#?}");
    assert!(matches!(
        schedules(&sim)[0].outcome,
        Outcome::Promoting { .. }
    ));
    let a = sim.feed(Input::HookDone {
        hook: Hook::PrePromote,
        id: None,
        version: v("1.1.0"),
        result: Err("exit status: 1".into()),
    });
    let ended = ended_in(&a);
    assert!(
        ended.len() == 1 && ended[0].0 == "failed" && ended[0].1.contains("PRE_PROMOTE"),
        "{ended:?}"
    );
    assert!(
        matches!(&schedules(&sim)[0].outcome, Outcome::Failed { reason } if reason.contains("exit status: 1")),
        "{:?}",
        schedules(&sim)
    );
    assert_eq!(*sim.s.running().unwrap().version(), v("1.0.0"));
    // Not retried on its own.
    tokio::time::advance(Duration::from_secs(600)).await;
    assert!(start_in(&sim.feed(Input::Tick)).is_none());
}

/// The new instance a schedule started fails before the switch: the schedule ends `failed`.
#[tokio::test(start_paused = true)]
async fn a_scheduled_promotion_whose_instance_fails_ends_failed() {
    let mut sim = Sim::new(PORTS);
    let a = a_schedule_firing(&mut sim, HookSet::default()).await;
    let (next, _, _) = start_in(&a).unwrap();
    sim.launch(next);
    let a = sim.event(
        next,
        InstanceEventKind::Exited {
            status: "exit status: 3".into(),
            stderr_tail: String::new(),
            stdout_tail: String::new(),
        },
    );
    assert_eq!(
        ended_in(&a).first().map(|(o, _)| o.as_str()),
        Some("failed"),
        "{a:#?}"
    );
}

/// The guard rolls running back while a schedule's next promotion is in `PRE_PROMOTE`: the
/// rollback takes the promotion's place, and the schedule ends `failed` at once, saying so, never
/// `promoting` for ever (a reviewer's scenario).
#[tokio::test(start_paused = true)]
async fn a_schedule_whose_pre_promote_a_guard_rollback_cuts_short_ends_failed() {
    let mut sim = Sim::new(PORTS);
    sim.s.schedule_grace = Duration::from_secs(3600);
    super::guard::guarded_promotion(&mut sim).await;
    // 1.2.0 under test, scheduled; its PRE_PROMOTE starts when the schedule comes due.
    sim.s.hooks = HookSet {
        pre_promote: true,
        ..Default::default()
    };
    let a = sim.deliver("1.2.0");
    sim.bring_up(&a);
    let a = schedule_come_due(&mut sim).await;
    assert_eq!(hooks_in(&a), vec![Hook::PrePromote], "{a:#?}");
    // 1.1.0 answers 5xx: the guard rolls back to 1.0.0 while PRE_PROMOTE runs.
    let a = sim.feed(Input::Traffic {
        requests: 1030,
        errors: 5 + 25,
    });
    assert!(a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
    let ended = ended_in(&a);
    assert!(
        ended.len() == 1 && ended[0].0 == "failed" && ended[0].1.contains("guard"),
        "{ended:?}"
    );
    // PRE_PROMOTE's late answer changes nothing.
    let a = sim.feed(Input::HookDone {
        hook: Hook::PrePromote,
        id: None,
        version: v("1.2.0"),
        result: Ok(()),
    });
    assert!(ended_in(&a).is_empty(), "{a:#?}");
    assert!(matches!(
        &schedules(&sim)[0].outcome,
        Outcome::Failed { .. }
    ));
}

/// The reviewer's case: a second `promote --at` of the same build replaced the first without a
/// `schedule_ended` event, so a webhook consumer saw the first pending for ever. It ends as a
/// cancel does, and the reply names the schedule it replaces.
#[tokio::test(start_paused = true)]
async fn a_schedule_replaced_by_another_of_its_build_ends_with_an_event() {
    let mut sim = Sim::new(PORTS);
    sim.serving_with_testing("1.1.0");
    let wall = sim.now().wall;
    let (first, second) = (
        wall + Duration::from_secs(600),
        wall + Duration::from_secs(1200),
    );
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::PromoteAt(first),
    });
    assert!(ended_in(&a).is_empty(), "{a:#?}");
    let a = sim.feed(Input::Command {
        id: 2,
        command: Command::PromoteAt(second),
    });
    let reply = reply_in(&a, 2).as_ref().expect("scheduled");
    assert!(reply.contains("it replaces schedule #1"), "{reply}");
    assert_eq!(
        ended_in(&a),
        vec![(
            "cancelled".to_string(),
            "replaced by schedule #2".to_string()
        )]
    );
}
