//! The canary phase decided as a pure function: steps, the move on, the roll back, the hold, the
//! promotion that keeps the canary's users on it until the switch, and the step journaled.

use super::*;
use crate::score::canary::CanaryEvaluation;

/// Running 1.0.0 and testing 1.1.0 with steps of 20 % and 50 %, 8 s each.
fn canary_sim() -> (Sim, InstanceId, InstanceId) {
    let mut sim = Sim::new(PORTS);
    sim.s.canary_steps = vec![2000, 5000];
    sim.s.canary_window = Duration::from_secs(8);
    let (running, testing) = sim.serving_with_testing("1.1.0");
    (sim, running, testing)
}

fn canary_eval(testing: u64, regression: Option<&str>) -> CanaryEvaluation {
    CanaryEvaluation {
        testing_answers: testing,
        running_answers: testing * 4,
        server_errors: (0, 0),
        users: testing / 3,
        regression: regression.map(str::to_string),
        enough: testing >= 100,
        waiting: (testing < 100)
            .then(|| format!("{testing} answers from testing of MIN_MIRRORED 100")),
        all_on_testing: false,
    }
}

impl Sim {
    fn canary_scored(&mut self, testing: InstanceId, c: CanaryEvaluation) -> Vec<Action> {
        self.feed(Input::Scored(Scored {
            testing,
            evaluation: Evaluation {
                verdict: Verdict::Promote,
                score: 100,
                parts: Vec::new(),
                pairs: 500,
                diffs: Vec::new(),
                evidence: Default::default(),
                waiting_on: Vec::new(),
            },
            canary: Some(c),
        }))
    }
}

#[tokio::test(start_paused = true)]
async fn steps_grow_on_enough_evidence_then_the_build_is_promoted_its_users_kept_on_it() {
    let (mut sim, _, testing) = canary_sim();
    let a = sim.verdict(testing, Verdict::Promote);
    assert_eq!(routes_in(&a).unwrap().canary, 2000, "step 1: 20 % of users");
    assert!(a.contains(&Action::Score(ScorerControl::Canary(true))));
    assert!(emitted(&a).iter().any(
        |e| matches!(e, Event::CanaryStep { step: 1, steps: 2, share, .. } if share == "20 %")
    ));
    assert!(start_in(&a).is_none(), "no promotion yet: {a:#?}");
    assert!(
        a.iter().any(
            |a| matches!(a, Action::Persist(p) if p.canary.as_ref().is_some_and(|c| c.step == 0))
        ),
        "the step is journaled"
    );
    // Enough answers, but the window is not over: the step goes on.
    tokio::time::advance(Duration::from_secs(4)).await;
    let a = sim.canary_scored(testing, canary_eval(300, None));
    assert!(routes_in(&a).is_none(), "{a:#?}");
    // The window is over: step 2.
    tokio::time::advance(Duration::from_secs(5)).await;
    let a = sim.canary_scored(testing, canary_eval(300, None));
    assert_eq!(routes_in(&a).unwrap().canary, 5000);
    // After the last step, the promotion: testing keeps its share until the switch.
    tokio::time::advance(Duration::from_secs(9)).await;
    let a = sim.canary_scored(testing, canary_eval(300, None));
    let (next, _, _) = start_in(&a).expect("a fresh running instance");
    assert!(
        !a.contains(&Action::Retire {
            id: testing,
            drain: false
        }),
        "{a:#?}"
    );
    let r = routes_in(&a).unwrap();
    assert_eq!(
        (r.canary, r.testing.as_ref().map(|t| t.id)),
        (5000, Some(testing))
    );
    sim.launch(next);
    let a = sim.event(next, InstanceEventKind::Ready);
    let r = routes_in(&a).unwrap();
    assert_eq!(
        (r.canary, r.running.as_ref().map(|t| t.id)),
        (0, Some(next))
    );
    assert!(
        a.contains(&Action::Retire {
            id: testing,
            drain: true
        }),
        "drained: {a:#?}"
    );
    assert!(emitted(&a).iter().any(|e| matches!(
        e,
        Event::Promoted {
            why: SwitchWhy::Canary,
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn a_regression_rolls_back_at_once_naming_the_step() {
    let (mut sim, _, testing) = canary_sim();
    sim.verdict(testing, Verdict::Promote);
    let a = sim.canary_scored(
        testing,
        canary_eval(12, Some("POST /api/orders 5xx 100.0 %")),
    );
    assert_eq!(routes_in(&a).unwrap().canary, 0, "everyone back on running");
    assert!(
        a.contains(&Action::Retire {
            id: testing,
            drain: true
        }),
        "its users' requests in flight finish: {a:#?}"
    );
    assert!(emitted(&a).iter().any(|e| matches!(e, Event::Rejecting { reasons, .. } if reasons[0] == "canary at 20 %: POST /api/orders 5xx 100.0 %; 12 answers to about 4 users came from it")));
}

/// The shares users had, in the history's order: (build under test, percent).
fn shares_in(a: &[Action]) -> Vec<(Version, f64)> {
    a.iter()
        .filter_map(|a| match a {
            Action::RecordShare { running, share } => {
                assert_eq!(*running, v("1.0.0"), "the rest stay on running");
                Some((share.version.clone(), share.percent))
            }
            _ => None,
        })
        .collect()
}

/// The history says which build answered users at any instant: each step's share is recorded,
/// the end of a canary that rolls back too (0 %); a promotion after the last step records its
/// switch, with no 0 % before it, as the canary's users stay on the build until then.
#[tokio::test(start_paused = true)]
async fn the_history_records_each_steps_share_and_its_end() {
    let (mut sim, _, testing) = canary_sim();
    let a = sim.verdict(testing, Verdict::Promote);
    assert_eq!(shares_in(&a), [(v("1.1.0"), 20.0)]);
    tokio::time::advance(Duration::from_secs(9)).await;
    let a = sim.canary_scored(testing, canary_eval(300, None));
    assert_eq!(shares_in(&a), [(v("1.1.0"), 50.0)]);
    tokio::time::advance(Duration::from_secs(9)).await;
    let a = sim.canary_scored(testing, canary_eval(300, None));
    assert_eq!(
        shares_in(&a),
        [],
        "users stay on it until the switch: {a:#?}"
    );
    let (next, _, _) = start_in(&a).unwrap();
    sim.launch(next);
    let a = sim.event(next, InstanceEventKind::Ready);
    assert_eq!(shares_in(&a), []);
    assert_eq!(
        records_in(&a),
        [(Some(v("1.0.0")), v("1.1.0"), SwitchWhy::Canary)]
    );
    // A canary that rolls back says its users are all back on running.
    let (mut sim, _, testing) = canary_sim();
    sim.verdict(testing, Verdict::Promote);
    let a = sim.canary_scored(testing, canary_eval(12, Some("POST /x 5xx 100.0 %")));
    assert_eq!(shares_in(&a), [(v("1.1.0"), 0.0)]);
}

#[tokio::test(start_paused = true)]
async fn too_little_evidence_holds_after_three_windows_and_says_so_once() {
    let (mut sim, _, testing) = canary_sim();
    sim.verdict(testing, Verdict::Promote);
    tokio::time::advance(Duration::from_secs(20)).await;
    let held = |a: &[Action]| {
        emitted(a)
            .iter()
            .any(|e| matches!(e, Event::CanaryHeld { step: 1, .. }))
    };
    let a = sim.canary_scored(testing, canary_eval(30, None));
    assert!(!held(&a), "waits: {a:#?}");
    tokio::time::advance(Duration::from_secs(5)).await;
    let a = sim.canary_scored(testing, canary_eval(30, None));
    assert!(held(&a));
    let a = sim.canary_scored(testing, canary_eval(30, None));
    assert!(!held(&a), "said once: {a:#?}");
    assert!(start_in(&a).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_newer_build_ends_the_canary_and_the_old_one_drains() {
    let (mut sim, _, testing) = canary_sim();
    sim.verdict(testing, Verdict::Promote);
    let a = sim.deliver("1.2.0");
    assert!(
        a.contains(&Action::Retire {
            id: testing,
            drain: true
        }),
        "its canary users finish their requests: {a:#?}"
    );
    assert_eq!(routes_in(&a).unwrap().canary, 0, "{a:#?}");
    let (newer, _) = sim.bring_up(&a);
    assert_ne!(newer, testing);
    assert!(
        sim.s.canary.is_none(),
        "the newer build starts with its shadow"
    );
}

#[tokio::test(start_paused = true)]
async fn a_pre_promote_refused_after_the_last_step_is_not_asked_again_on_its_own() {
    let (mut sim, running, testing) = canary_sim();
    sim.s.hooks = HookSet {
        pre_promote: true,
        ..Default::default()
    };
    sim.verdict(testing, Verdict::Promote);
    tokio::time::advance(Duration::from_secs(9)).await;
    sim.canary_scored(testing, canary_eval(300, None));
    tokio::time::advance(Duration::from_secs(9)).await;
    let a = sim.canary_scored(testing, canary_eval(300, None));
    assert_eq!(hooks_in(&a), vec![Hook::PrePromote], "{a:#?}");
    let a = sim.feed(Input::HookDone {
        hook: Hook::PrePromote,
        id: Some(testing),
        version: v("1.1.0"),
        result: Err("exit status: 1".into()),
    });
    let failed = |a: &[Action]| {
        emitted(a)
            .iter()
            .filter(|e| matches!(e, Event::PromotionFailed { .. }))
            .count()
    };
    assert_eq!(failed(&a), 1);
    // Its users go back to running (half of them stayed on the refused build, for ever), and
    // the refusal is journaled: a restart does not ask the hook again on its own either.
    assert_eq!(routes_in(&a).unwrap().canary, 0, "{a:#?}");
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::RecordShare { share, .. } if share.percent == 0.0)),
        "{a:#?}"
    );
    assert!(
        a.iter().any(|a| matches!(a, Action::Persist(p) if p.hook_block.as_ref().is_some_and(|(v, _)| *v == super::v("1.1.0")))),
        "{a:#?}"
    );
    // Later evaluations of the last step neither rerun the hook nor announce a failure again.
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(9)).await;
        let a = sim.canary_scored(testing, canary_eval(300, None));
        assert!(hooks_in(&a).is_empty(), "{a:#?}");
        assert_eq!(failed(&a), 0, "{a:#?}");
        assert!(start_in(&a).is_none());
    }
    assert_eq!(sim.s.running().unwrap().id, running);
    assert_eq!(sim.s.testing().unwrap().id, testing);
    // An operator's promote asks the hook again.
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Promote,
    });
    assert_eq!(hooks_in(&a), vec![Hook::PrePromote], "{a:#?}");
}

/// From the first step (20 %), move to the last (50 %), then pass it four windows running
/// while something holds the promotion: nothing starts and no hook runs.
async fn reach_the_last_step_and_hold(sim: &mut Sim, testing: InstanceId) {
    tokio::time::advance(Duration::from_secs(9)).await;
    let a = sim.canary_scored(testing, canary_eval(300, None));
    assert_eq!(routes_in(&a).unwrap().canary, 5000, "the last step");
    for _ in 0..4 {
        tokio::time::advance(Duration::from_secs(9)).await;
        let a = sim.canary_scored(testing, canary_eval(300, None));
        assert!(start_in(&a).is_none(), "held: {a:#?}");
        assert!(hooks_in(&a).is_empty(), "{a:#?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_schedule_naming_the_build_holds_the_last_step_at_its_share_until_it_fires() {
    let (mut sim, running, testing) = canary_sim();
    sim.verdict(testing, Verdict::Promote);
    let at = sim.now().wall + Duration::from_secs(60);
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::PromoteAt(at),
    });
    assert!(matches!(reply_in(&a, 1), Ok(m) if m.contains("schedule #1")));
    // The last step passes, again and again, before the schedule's time: it holds at its share,
    // as a passing verdict without steps waits for the schedule.
    reach_the_last_step_and_hold(&mut sim, testing).await;
    assert_eq!(sim.s.running().unwrap().id, running);
    assert_eq!(
        sim.s.canary.as_ref().map(|c| c.step),
        Some(1),
        "its users stay on it"
    );
    // At its time the schedule promotes it, its users kept on it until the switch.
    tokio::time::advance(Duration::from_secs(60)).await;
    let a = sim.feed(Input::Tick);
    let (next, role, _) = start_in(&a).expect("the schedule fires");
    assert_eq!(role, Role::Running);
    assert_eq!(routes_in(&a).unwrap().canary, 5000, "{a:#?}");
    sim.launch(next);
    let a = sim.event(next, InstanceEventKind::Ready);
    assert_eq!(
        records_in(&a),
        vec![(Some(v("1.0.0")), v("1.1.0"), SwitchWhy::Scheduled)]
    );
}

/// `PROMOTE_AT` (no build named) holds the last step as a schedule naming the build does.
#[tokio::test(start_paused = true)]
async fn promote_at_from_the_config_holds_the_last_step_until_it_fires() {
    let mut sim = Sim::new(PORTS);
    sim.feed(Input::Resume(Box::new(Resumed {
        promote_at: Some(sim.now().wall + Duration::from_secs(60)),
        canary_steps: vec![2000, 5000],
        canary_window: Duration::from_secs(8),
        ..Default::default()
    })));
    let (running, testing) = sim.serving_with_testing("1.1.0");
    sim.verdict(testing, Verdict::Promote);
    reach_the_last_step_and_hold(&mut sim, testing).await;
    assert_eq!(sim.s.running().unwrap().id, running);
    tokio::time::advance(Duration::from_secs(30)).await;
    let a = sim.feed(Input::Tick);
    let (_, role, _) = start_in(&a).expect("PROMOTE_AT fires");
    assert_eq!(role, Role::Running);
}

/// The review's case: a canary step, a pause, a schedule, then a regression while paused.
#[tokio::test(start_paused = true)]
async fn a_schedule_due_while_paused_never_promotes_over_a_canary_regression() {
    let (mut sim, running, testing) = canary_sim();
    sim.verdict(testing, Verdict::Promote);
    sim.feed(Input::Command {
        id: 1,
        command: Command::Pause,
    });
    let at = sim.now().wall + Duration::from_secs(60);
    sim.feed(Input::Command {
        id: 2,
        command: Command::PromoteAt(at),
    });
    sim.canary_scored(
        testing,
        canary_eval(300, Some("POST /api/orders 5xx 100.0 %")),
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    let a = sim.feed(Input::Tick);
    assert!(start_in(&a).is_none(), "no promotion while paused: {a:#?}");
    assert!(emitted(&a)
        .iter()
        .any(|e| matches!(e, Event::ScheduleHeld { reason, .. } if reason.contains("paused"))));
    let a = sim.feed(Input::Command {
        id: 3,
        command: Command::Resume,
    });
    assert!(start_in(&a).is_none(), "not over the regression: {a:#?}");
    let a = sim.canary_scored(
        testing,
        canary_eval(300, Some("POST /api/orders 5xx 100.0 %")),
    );
    assert!(start_in(&a).is_none());
    assert!(emitted(&a)
        .iter()
        .any(|e| matches!(e, Event::Rejecting { .. })));
    assert_eq!(sim.s.running().unwrap().id, running);
}

/// A schedule due before the last step lets the steps run (it holds the last one) and says so;
/// it fires once the last step has passed.
#[tokio::test(start_paused = true)]
async fn a_schedule_due_before_the_last_step_waits_for_the_steps_then_fires() {
    let (mut sim, _, testing) = canary_sim();
    sim.verdict(testing, Verdict::Promote);
    let at = sim.now().wall + Duration::from_secs(5);
    sim.feed(Input::Command {
        id: 1,
        command: Command::PromoteAt(at),
    });
    tokio::time::advance(Duration::from_secs(5)).await;
    let a = sim.feed(Input::Tick);
    assert!(start_in(&a).is_none(), "step 1 of 2 is not skipped: {a:#?}");
    assert!(emitted(&a).iter().any(
        |e| matches!(e, Event::ScheduleHeld { reason, .. } if reason.contains("step 1 of 2"))
    ));
    tokio::time::advance(Duration::from_secs(4)).await;
    let a = sim.canary_scored(testing, canary_eval(300, None));
    assert_eq!(routes_in(&a).unwrap().canary, 5000, "the last step");
    assert!(start_in(&a).is_none(), "{a:#?}");
    tokio::time::advance(Duration::from_secs(9)).await;
    let a = sim.canary_scored(testing, canary_eval(300, None));
    let (next, _, _) = start_in(&a).expect("the schedule fires after the last step");
    sim.launch(next);
    let a = sim.event(next, InstanceEventKind::Ready);
    assert_eq!(
        records_in(&a),
        vec![(Some(v("1.0.0")), v("1.1.0"), SwitchWhy::Scheduled)]
    );
}

/// The canary's build exits while its promotion starts: its share of users goes back to running
/// at once (not 502s until the switch), and the crash counts against the build.
#[tokio::test(start_paused = true)]
async fn a_canary_build_that_crashes_while_its_promotion_starts_sends_its_users_back() {
    let (mut sim, running, testing) = canary_sim();
    sim.verdict(testing, Verdict::Promote);
    tokio::time::advance(Duration::from_secs(9)).await;
    sim.canary_scored(testing, canary_eval(300, None));
    tokio::time::advance(Duration::from_secs(9)).await;
    let a = sim.canary_scored(testing, canary_eval(300, None));
    let (next, _, _) = start_in(&a).expect("the promotion starts");
    sim.launch(next);
    let a = sim.event(
        testing,
        InstanceEventKind::Exited {
            status: "signal: 9 (SIGKILL)".into(),
            stderr_tail: "out of memory".into(),
            stdout_tail: String::new(),
        },
    );
    let r = routes_in(&a).expect("routes republished");
    assert_eq!((r.canary, r.testing.as_ref()), (0, None), "{a:#?}");
    assert_eq!(r.running.as_ref().map(|t| t.id), Some(running));
    assert!(a.contains(&Action::Retire {
        id: testing,
        drain: false
    }));
    assert!(a.contains(&Action::Retire {
        id: next,
        drain: false
    }));
    assert!(emitted(&a).iter().any(|e| matches!(
        e,
        Event::PromotionFailed { reasons, .. } if reasons[0].starts_with("canary at 50 %: the build serving it exited")
    )), "{a:#?}");
    let a = sim.event(next, InstanceEventKind::Ready);
    assert!(
        routes_in(&a).is_none(),
        "no switch to the failed build: {a:#?}"
    );
    assert_eq!(sim.s.running().unwrap().id, running);
}

/// Running 1.0.0, testing 1.1.0 waiting to start, steps of 20 % and 50 %, resumed with the
/// state file's canary step (0-based) and what the history's last line says of shares.
fn resumed_canary(sim: &mut Sim, step: Option<usize>, history: HistoryShare) -> Vec<Action> {
    sim.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.0.0")),
        testing: Some(installed("1.1.0")),
        canary_steps: vec![2000, 5000],
        canary_window: Duration::from_secs(8),
        canary: step.map(|step| state::JournaledCanary {
            version: v("1.1.0"),
            step,
        }),
        history_last: Some(v("1.0.0")),
        history_share: history,
        ..Default::default()
    })))
}

/// Killed between the state write of a step and the history's line (or with the history's
/// append failing meanwhile), or with the history saying the step: at start no user is on the
/// canary, so a share in force is ended (0 %); the step is recorded once it resumes, when users
/// are routed to it again, once (a reviewer found the history saying 50 % while testing started).
#[tokio::test(start_paused = true)]
async fn a_resumed_canary_step_is_recorded_when_it_routes_users_again_once() {
    let share = |w| HistoryShare::Share(v("1.1.0"), w);
    let resumed = vec![(v("1.1.0"), 50.0)];
    for (history, at_start) in [
        (HistoryShare::None, vec![]),
        (share(2000), vec![(v("1.1.0"), 0.0)]),
        (share(5000), vec![(v("1.1.0"), 0.0)]),
        (HistoryShare::Unknown, vec![]),
    ] {
        let mut sim = Sim::new(PORTS);
        let a = resumed_canary(&mut sim, Some(1), history.clone());
        assert_eq!(shares_in(&a), at_start, "{history:?}: {a:#?}");
        let (_, a) = sim.bring_up(&a);
        let (_, a) = sim.bring_up(&a);
        assert_eq!(routes_in(&a).unwrap().canary, 5000, "the step resumed");
        assert_eq!(shares_in(&a), resumed, "{history:?}: {a:#?}");
        let a = sim.feed(Input::Tick);
        assert_eq!(shares_in(&a), [], "{history:?}: recorded once: {a:#?}");
    }
}

/// Taking over from an upgrade mid-canary: the old understudy still serves the step's share, so
/// the new one records no 0 % at start (a failed takeover would leave the history wrong), and
/// the step it resumes, at the same share, records nothing new.
#[tokio::test(start_paused = true)]
async fn a_takeover_mid_canary_leaves_the_history_as_it_is() {
    let mut sim = Sim::new(PORTS);
    let a = sim.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.0.0")),
        testing: Some(installed("1.1.0")),
        canary_steps: vec![2000, 5000],
        canary_window: Duration::from_secs(8),
        canary: Some(state::JournaledCanary {
            version: v("1.1.0"),
            step: 1,
        }),
        history_last: Some(v("1.0.0")),
        history_share: HistoryShare::Share(v("1.1.0"), 5000),
        taking_over: true,
        ..Default::default()
    })));
    assert_eq!(shares_in(&a), [], "{a:#?}");
}

/// Killed after the history's line of a step but before the state's (or while the canary's
/// build kept its share during a promotion that is undone at start): no step keeps the share,
/// so it is ended at start (0 %), not left in force while every user is on running.
#[tokio::test(start_paused = true)]
async fn a_canary_share_no_step_keeps_is_ended_at_start() {
    let mut sim = Sim::new(PORTS);
    let a = resumed_canary(&mut sim, None, HistoryShare::Share(v("1.1.0"), 2000));
    assert_eq!(shares_in(&a), [(v("1.1.0"), 0.0)], "{a:#?}");
    // Unreadable, the history is not known to say a share: nothing is recorded.
    let mut sim = Sim::new(PORTS);
    let a = resumed_canary(&mut sim, None, HistoryShare::Unknown);
    assert_eq!(shares_in(&a), [], "{a:#?}");
    // A journaled step whose build fails before it resumes is never recorded: no user met it.
    let mut sim = Sim::new(PORTS);
    let a = resumed_canary(&mut sim, Some(0), HistoryShare::None);
    assert_eq!(shares_in(&a), []);
    let (_, a) = sim.bring_up(&a);
    let (testing, _, _) = start_in(&a).expect("testing starts");
    sim.launch(testing);
    let a = sim.event(
        testing,
        InstanceEventKind::Exited {
            status: "exit status: 1".into(),
            stderr_tail: String::new(),
            stdout_tail: String::new(),
        },
    );
    assert_eq!(shares_in(&a), [], "{a:#?}");
}

/// The share in force is the history's last line's, when it is a share above 0 %.
#[test]
fn the_share_in_force_is_the_last_lines() {
    use crate::history::{Share, Switch};
    let line = |share: Option<f64>| Switch {
        at: "2026-12-01T01:00:00Z".into(),
        from: Some(v("1.0.0")),
        to: v("1.0.0"),
        why: SwitchWhy::Canary,
        share: share.map(|percent| Share {
            version: v("1.1.0"),
            percent,
        }),
    };
    let in_force = |lines: &[Switch]| super::super::resume::share_in_force(lines);
    assert_eq!(in_force(&[]), HistoryShare::None);
    assert_eq!(
        in_force(&[line(None), line(Some(12.5))]),
        HistoryShare::Share(v("1.1.0"), 1250)
    );
    assert_eq!(
        in_force(&[line(Some(20.0)), line(Some(0.0))]),
        HistoryShare::None
    );
    assert_eq!(
        in_force(&[line(Some(20.0)), line(None)]),
        HistoryShare::None
    );
}

/// A rollback during a canary step switches running: the step ends, its users back on the version
/// now serving (the switch line ends the share in the history), and the build, scored afresh
/// against that version, begins its steps again once it passes. The step went on before, and
/// froze: the scorecard began afresh, and what the build answered its users was judged no more.
#[tokio::test(start_paused = true)]
async fn a_rollback_mid_canary_ends_the_step_and_the_steps_begin_again() {
    let (mut sim, _, testing) = canary_sim();
    sim.verdict(testing, Verdict::Promote);
    sim.feed(Input::Command {
        id: 1,
        command: Command::Rollback(Some(v("0.9.0"))),
    });
    let (_, a) = sim.restored("0.9.0");
    assert_eq!(
        records_in(&a),
        [(Some(v("1.0.0")), v("0.9.0"), SwitchWhy::Rollback)]
    );
    let r = routes_in(&a).expect("routes after the switch");
    assert_eq!(
        (r.canary, r.testing.as_ref().map(|t| t.id)),
        (0, Some(testing)),
        "the canary's users are back on running"
    );
    let shares = |a: &[Action]| -> Vec<_> {
        a.iter()
            .filter_map(|a| match a {
                Action::RecordShare { running, share } => {
                    Some((running.clone(), share.version.clone(), share.percent))
                }
                _ => None,
            })
            .collect()
    };
    assert!(shares(&a).is_empty(), "{a:#?}");
    let a = sim.verdict(testing, Verdict::Promote);
    assert!(
        emitted(&a)
            .iter()
            .any(|e| matches!(e, Event::CanaryStep { step: 1, .. })),
        "{a:#?}"
    );
    assert_eq!(shares(&a), [(v("0.9.0"), v("1.1.0"), 20.0)], "{a:#?}");
}

/// A hostile review's case: a schedule due while the shadow verdict still waits (before the
/// steps began) promoted the build to every user at once, a build that broke writes for half of
/// them. The steps begin at its time instead, and it fires once the last step has passed.
#[tokio::test(start_paused = true)]
async fn a_schedule_due_before_the_steps_began_begins_them_and_fires_after_the_last() {
    let (mut sim, running, testing) = canary_sim();
    let at = sim.now().wall + Duration::from_secs(3);
    sim.feed(Input::Command {
        id: 1,
        command: Command::PromoteAt(at),
    });
    tokio::time::advance(Duration::from_secs(3)).await;
    let a = sim.feed(Input::Tick);
    assert!(
        start_in(&a).is_none(),
        "no promotion before the steps: {a:#?}"
    );
    assert!(
        emitted(&a)
            .iter()
            .any(|e| matches!(e, Event::CanaryStep { step: 1, .. })),
        "{a:#?}"
    );
    assert!(
        emitted(&a).iter().any(
            |e| matches!(e, Event::ScheduleHeld { reason, .. } if reason.contains("canary steps"))
        ),
        "{a:#?}"
    );
    assert_eq!(routes_in(&a).unwrap().canary, 2000);
    assert_eq!(sim.s.running().unwrap().id, running);
    // Both steps pass: the due schedule fires then.
    tokio::time::advance(Duration::from_secs(8)).await;
    sim.canary_scored(testing, canary_eval(300, None));
    tokio::time::advance(Duration::from_secs(8)).await;
    let a = sim.canary_scored(testing, canary_eval(300, None));
    let a = if start_in(&a).is_some() {
        a
    } else {
        sim.feed(Input::Tick)
    };
    let (_, role, _) = start_in(&a).expect("the schedule fires after the last step");
    assert_eq!(role, Role::Running);
}

/// A refusal journaled before a restart holds after it: the hook is not asked again, and no
/// step begins, on the build's passing verdict (it ran again by itself one window later).
#[tokio::test(start_paused = true)]
async fn a_pre_promote_refusal_holds_across_a_restart() {
    let mut sim = Sim::new(PORTS);
    sim.feed(Input::Resume(Box::new(Resumed {
        canary_steps: vec![2000, 5000],
        canary_window: Duration::from_secs(8),
        hook_block: Some((v("1.1.0"), "PRE_PROMOTE refused it: exit status: 1".into())),
        ..Default::default()
    })));
    sim.s.hooks = HookSet {
        pre_promote: true,
        ..Default::default()
    };
    let (_, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.verdict(testing, Verdict::Promote);
    assert!(hooks_in(&a).is_empty(), "{a:#?}");
    assert!(sim.s.canary.is_none(), "{a:#?}");
    let status = sim.s.status(|_| std::time::SystemTime::UNIX_EPOCH);
    assert!(status
        .hook_failure
        .is_some_and(|h| h.contains("PRE_PROMOTE refused")));
}

/// A hostile review's case: every user one place (one address behind a front proxy, with
/// `CANARY_STICKY=ip`), all on testing's side: a "20 %" step served every user, writes
/// included, and stayed so. Once its windows are over (a regression meanwhile still rejects),
/// the step gives them back to running and holds, saying why, once.
#[tokio::test(start_paused = true)]
async fn a_step_whose_answers_all_came_from_testing_gives_its_users_back() {
    let (mut sim, _, testing) = canary_sim();
    let a = sim.verdict(testing, Verdict::Promote);
    assert_eq!(routes_in(&a).unwrap().canary, 2000);
    let all_on_testing = CanaryEvaluation {
        running_answers: 0,
        all_on_testing: true,
        waiting: Some("running served none of the step's answers".into()),
        enough: false,
        ..canary_eval(300, None)
    };
    let a = sim.canary_scored(testing, all_on_testing.clone());
    assert!(
        routes_in(&a).is_none_or(|r| r.canary == 2000),
        "within its windows: {a:#?}"
    );
    tokio::time::advance(Duration::from_secs(25)).await;
    let a = sim.canary_scored(testing, all_on_testing.clone());
    assert_eq!(routes_in(&a).unwrap().canary, 0, "{a:#?}");
    let held = |a: &[Action]| {
        emitted(a)
            .iter()
            .filter(|e| matches!(e, Event::CanaryHeld { why, .. } if why.contains("CANARY_STICKY")))
            .count()
    };
    assert_eq!(held(&a), 1, "{a:#?}");
    tokio::time::advance(Duration::from_secs(9)).await;
    let a = sim.canary_scored(testing, all_on_testing);
    assert_eq!(held(&a), 0, "said once: {a:#?}");
    // Its answers are running's alone now, enough and past the window: it still holds.
    tokio::time::advance(Duration::from_secs(9)).await;
    let a = sim.canary_scored(testing, canary_eval(300, None));
    assert!(start_in(&a).is_none());
    assert!(routes_in(&a).is_none_or(|r| r.canary == 0), "{a:#?}");
    assert_eq!(sim.s.canary.as_ref().map(|c| c.step), Some(0), "it holds");
}
