//! Table-style tests of `decide`: inputs in, actions out. No processes, files or sleeps; time is
//! tokio's paused clock, moved by hand.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use semver::Version;
use tokio::time::Instant;

use super::decide::{refusal, BUSY_PORT_RETRY, GC_EVERY, MAX_FILING_ATTEMPTS, RESTART_STABLE};
use super::schedule::{Origin, Outcome};
use super::*;
use crate::artifact::{ArtifactName, Installed, Kind};
use crate::events::{Event, VerdictKind};
use crate::history::SwitchWhy;
use crate::hooks::{Hook, HookSet};
use crate::instance::{InstanceEvent, InstanceEventKind, InstanceId};
use crate::layout::Role;
use crate::score::{Evaluation, Scored, ScorerControl, Verdict};
use crate::watcher::Dropped;

const PORTS: (u16, u16) = (30000, 30009);

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn build(ver: &str) -> Dropped {
    Dropped {
        path: PathBuf::from(format!("/base/app-{ver}")),
        name: ArtifactName {
            file_name: format!("app-{ver}"),
            version: v(ver),
            kind: Kind::Executable,
        },
    }
}

fn installed(ver: &str) -> Installed {
    Installed {
        version: v(ver),
        program: PathBuf::from(format!("/base/app-{ver}/app-{ver}")),
        kind: Kind::Executable,
    }
}

fn dir(id: InstanceId) -> PathBuf {
    PathBuf::from(format!("/base/instance-{}", id.0))
}

/// A supervisor state driven by hand, with tokio's (paused) clock as `now`.
struct Sim {
    s: State,
    /// The paused clock's start, and the wall-clock time it stands for.
    start: (Instant, SystemTime),
}

/// 2026-12-01T00:00:00Z, where every simulated wall clock starts.
fn wall0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_996_800)
}

impl Sim {
    fn new(ports: (u16, u16)) -> Sim {
        let mut sim = Sim {
            s: State::new(ports, Instant::now()),
            start: (Instant::now(), wall0()),
        };
        // Collection is due at once; take it out of the way so tables stay about the story.
        let _ = sim.feed(Input::Tick);
        sim
    }

    /// Both clocks, moved together by tokio's paused clock.
    fn now(&self) -> Now {
        let mono = Instant::now();
        Now {
            mono,
            wall: self.start.1 + mono.duration_since(self.start.0),
        }
    }

    fn feed(&mut self, input: Input) -> Vec<Action> {
        let now = self.now();
        decide(&mut self.s, input, now)
    }

    /// Drop and install a build; returns the actions of the install's completion.
    fn deliver(&mut self, ver: &str) -> Vec<Action> {
        let a = self.feed(Input::Dropped(build(ver)));
        assert!(a.contains(&Action::Install(build(ver))), "{a:#?}");
        self.feed(Input::Installed {
            version: v(ver),
            result: Ok(installed(ver)),
        })
    }

    fn launch(&mut self, id: InstanceId) -> Vec<Action> {
        self.feed(Input::Started {
            id,
            result: Ok(Launched {
                pid: 1000 + id.0 as u32,
                number: 1,
                dir: dir(id),
            }),
        })
    }

    fn event(&mut self, id: InstanceId, kind: InstanceEventKind) -> Vec<Action> {
        self.feed(Input::Instance(InstanceEvent { id, kind }))
    }

    /// Launch and ready the instance a `Start` in `actions` asked for.
    fn bring_up(&mut self, actions: &[Action]) -> (InstanceId, Vec<Action>) {
        let (id, _, _) = start_in(actions).expect("a Start action");
        self.launch(id);
        (id, self.event(id, InstanceEventKind::Ready))
    }

    /// Running 1.0.0 serving and `testing` ready; returns (running id, testing id).
    fn serving_with_testing(&mut self, testing: &str) -> (InstanceId, InstanceId) {
        let a = self.deliver("1.0.0");
        let (running, a) = self.bring_up(&a);
        assert!(start_in(&a).is_none(), "nothing pending yet: {a:#?}");
        let a = self.deliver(testing);
        let (testing, _) = self.bring_up(&a);
        (running, testing)
    }

    fn verdict(&mut self, testing: InstanceId, verdict: Verdict) -> Vec<Action> {
        self.feed(Input::Scored(Scored {
            testing,
            evaluation: Evaluation {
                verdict,
                score: 100,
                parts: Vec::new(),
                pairs: 500,
                diffs: Vec::new(),
            },
        }))
    }
}

fn start_in(actions: &[Action]) -> Option<(InstanceId, Role, u16)> {
    actions.iter().find_map(|a| match a {
        Action::Start { id, role, port, .. } => Some((*id, *role, *port)),
        _ => None,
    })
}

fn routes_in(actions: &[Action]) -> Option<&Routing> {
    actions.iter().rev().find_map(|a| match a {
        Action::Route(r) => Some(r),
        _ => None,
    })
}

fn emitted(actions: &[Action]) -> Vec<&Event> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn position(actions: &[Action], f: impl Fn(&Action) -> bool) -> usize {
    actions
        .iter()
        .position(f)
        .unwrap_or_else(|| panic!("no such action in {actions:#?}"))
}

#[tokio::test(start_paused = true)]
async fn first_build_serves_route_before_symlink() {
    let mut sim = Sim::new(PORTS);
    let a = sim.feed(Input::Dropped(build("1.0.0")));
    assert_eq!(
        a,
        vec![
            Action::Emit(Event::BuildFound {
                file: "app-1.0.0".into(),
                version: v("1.0.0")
            }),
            Action::Install(build("1.0.0")),
        ]
    );
    let a = sim.feed(Input::Installed {
        version: v("1.0.0"),
        result: Ok(installed("1.0.0")),
    });
    let (id, role, port) = start_in(&a).unwrap();
    assert_eq!((role, port), (Role::Running, PORTS.0));
    assert!(a.contains(&Action::Persist(Persisted {
        running: Some(v("1.0.0")),
        ..Persisted::default()
    })));
    let a = sim.launch(id);
    assert!(matches!(emitted(&a)[..], [Event::Started { port: p, .. }] if *p == PORTS.0));
    let a = sim.event(id, InstanceEventKind::Ready);
    let route = position(&a, |a| matches!(a, Action::Route(_)));
    let point = position(
        &a,
        |a| matches!(a, Action::Point { role: Role::Running, dir: d } if *d == dir(id)),
    );
    assert!(route < point, "the route is live before the symlink moves");
    assert_eq!(routes_in(&a).unwrap().running.as_ref().unwrap().id, id);
}

#[tokio::test(start_paused = true)]
async fn older_or_same_builds_are_refused() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.0.0");
    sim.bring_up(&a);
    for ver in ["1.0.0", "0.9.0"] {
        let a = sim.feed(Input::Dropped(build(ver)));
        assert!(
            matches!(&a[1], Action::Refuse { reason, .. } if reason.contains("not newer than running 1.0.0")),
            "{a:#?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn newer_build_replaces_testing_and_the_old_is_archived_once_stopped() {
    let mut sim = Sim::new(PORTS);
    let (_, old_testing) = sim.serving_with_testing("1.1.0");
    let a = sim.deliver("1.2.0");
    assert!(a.contains(&Action::Retire {
        id: old_testing,
        drain: false
    }));
    assert!(a.contains(&Action::Score(ScorerControl::Clear)));
    assert!(a.contains(&Action::Unpoint(Role::Testing)));
    assert_eq!(routes_in(&a).unwrap().testing, None);
    let (_, role, _) = start_in(&a).unwrap();
    assert_eq!(role, Role::Testing);
    assert!(!a.iter().any(|a| matches!(a, Action::Archive(_))));
    let a = sim.feed(Input::Stopped { id: old_testing });
    assert!(a.contains(&Action::Archive(v("1.1.0"))), "{a:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_pending_build_is_superseded_by_a_newer_one() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.0.0");
    let (running, _, _) = start_in(&a).unwrap();
    sim.launch(running);
    let a = sim.deliver("1.1.0");
    assert!(start_in(&a).is_none(), "running is not ready: 1.1.0 waits");
    let a = sim.deliver("1.2.0");
    assert!(a.contains(&Action::Archive(v("1.1.0"))), "{a:#?}");
    let a = sim.event(running, InstanceEventKind::Ready);
    let (id, role, _) = start_in(&a).unwrap();
    assert_eq!(role, Role::Testing);
    assert_eq!(sim.s.testing().unwrap().id, id);
    assert_eq!(*sim.s.testing().unwrap().version(), v("1.2.0"));
}

#[tokio::test(start_paused = true)]
async fn drops_during_an_install_wait_their_turn() {
    let mut sim = Sim::new(PORTS);
    sim.feed(Input::Dropped(build("1.0.0")));
    let a = sim.feed(Input::Dropped(build("1.1.0")));
    assert!(!a.iter().any(|a| matches!(a, Action::Install(_))), "{a:#?}");
    let a = sim.feed(Input::Installed {
        version: v("1.0.0"),
        result: Ok(installed("1.0.0")),
    });
    assert!(a.contains(&Action::Install(build("1.1.0"))), "{a:#?}");
}

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
    assert!(emitted(&a).contains(&&Event::Promoted {
        from: Some(v("1.0.0")),
        to: v("1.1.0"),
        why: SwitchWhy::Automatic,
    }));
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
    sim.launch(next);
    let a = sim.event(
        next,
        InstanceEventKind::Exited {
            status: "exit status: 3".into(),
            stderr_tail: "boom".into(),
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
async fn running_that_crashes_is_restarted_with_backoff_and_a_newer_build_replaces_a_crash_loop() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.0.0");
    let (mut id, _) = sim.bring_up(&a);
    let crash = |sim: &mut Sim, id| {
        sim.event(
            id,
            InstanceEventKind::Exited {
                status: "signal: 9".into(),
                stderr_tail: String::new(),
            },
        )
    };
    // (attempt, delay before the restart) for crashes a second after each ready.
    let table = [
        (1, 0),
        (2, 1),
        (3, 2),
        (4, 4),
        (5, 8),
        (6, 16),
        (7, 30),
        (8, 30),
    ];
    for (attempt, delay) in table {
        tokio::time::advance(Duration::from_secs(1)).await;
        let a = crash(&mut sim, id);
        assert!(
            emitted(&a).iter().any(|e| matches!(e,
                Event::RestartScheduled { attempt: n, delay_ms, .. } if *n == attempt && *delay_ms == delay * 1000)),
            "attempt {attempt}: {a:#?}"
        );
        assert_eq!(
            routes_in(&a).unwrap().restarting,
            Some(v("1.0.0")),
            "users are told running restarts"
        );
        assert!(!a
            .iter()
            .any(|a| matches!(a, Action::Reject { .. } | Action::Archive(_))));
        sim.feed(Input::Stopped { id });
        let a = if delay == 0 {
            a
        } else {
            assert!(start_in(&a).is_none(), "attempt {attempt} waits {delay}s");
            assert_eq!(
                sim.s.restart.as_ref().unwrap().at,
                Instant::now() + Duration::from_secs(delay)
            );
            assert!(sim.s.deadline() <= Instant::now() + Duration::from_secs(delay));
            tokio::time::advance(Duration::from_secs(delay) - Duration::from_millis(1)).await;
            assert!(
                start_in(&sim.feed(Input::Tick)).is_none(),
                "not before its time"
            );
            tokio::time::advance(Duration::from_millis(1)).await;
            sim.feed(Input::Tick)
        };
        let (restarted, a) = sim.bring_up(&a);
        assert_eq!(
            routes_in(&a).unwrap().running.as_ref().unwrap().id,
            restarted
        );
        assert_eq!(routes_in(&a).unwrap().restarting, None);
        id = restarted;
    }
    // Past the limit, a newer build is the way out: it serves as soon as it is installed.
    tokio::time::advance(Duration::from_secs(1)).await;
    let a = crash(&mut sim, id);
    assert!(
        emitted(&a).iter().any(|e| matches!(
            e,
            Event::CrashLooping {
                failures: 9,
                retry_every_ms: 30_000,
                ..
            }
        )),
        "{a:#?}"
    );
    let a = sim.deliver("1.1.0");
    assert!(
        emitted(&a).iter().any(|e| matches!(e,
            Event::CrashLoopReplaced { version, replaced, failures: 9 }
                if *version == v("1.1.0") && *replaced == v("1.0.0"))),
        "{a:#?}"
    );
    let (_, role, _) = start_in(&a).unwrap();
    assert_eq!(role, Role::Running);
    let stopped = sim.feed(Input::Stopped { id });
    assert!(
        stopped.contains(&Action::Archive(v("1.0.0"))),
        "{stopped:#?}"
    );

    // A running instance that stays up a while starts a fresh count.
    let (id, _) = sim.bring_up(&a);
    tokio::time::advance(Duration::from_secs(1)).await;
    let a = crash(&mut sim, id);
    let (id, _) = sim.bring_up(&a);
    tokio::time::advance(Duration::from_secs(1)).await;
    let a = crash(&mut sim, id);
    assert!(emitted(&a)
        .iter()
        .any(|e| matches!(e, Event::RestartScheduled { attempt: 2, .. })));
    tokio::time::advance(Duration::from_secs(1)).await;
    let a = sim.feed(Input::Tick);
    let (id, _) = sim.bring_up(&a);
    tokio::time::advance(RESTART_STABLE).await;
    let a = crash(&mut sim, id);
    assert!(
        emitted(&a).iter().any(|e| matches!(
            e,
            Event::RestartScheduled {
                attempt: 1,
                delay_ms: 0,
                ..
            }
        )),
        "{a:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_build_that_never_works_is_rejected_and_the_next_one_serves() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.0.0");
    let (id, _, _) = start_in(&a).unwrap();
    sim.launch(id);
    sim.deliver("1.1.0");
    let a = sim.event(
        id,
        InstanceEventKind::NotReady {
            reason: "no answer".into(),
        },
    );
    assert!(a.contains(&Action::Unpoint(Role::Running)));
    let (next, role, _) = start_in(&a).unwrap();
    assert_eq!(role, Role::Running);
    assert_eq!(*sim.s.running().unwrap().version(), v("1.1.0"));
    let a = sim.feed(Input::Stopped { id });
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::Reject { version, .. } if *version == v("1.0.0"))));
    assert_ne!(next, id);
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
        }),
    ] {
        let mut sim = Sim::new(PORTS);
        let a = sim.feed(Input::Resume(Resumed {
            running: Some(installed("1.0.0")),
            promoting: Some(installed("1.1.0")),
            txn: txn.clone(),
            ..Default::default()
        }));
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
    let a = sim.feed(Input::Resume(Resumed {
        running: Some(installed("1.1.0")),
        txn: Some(Txn {
            kind: TxnKind::Promotion,
            version: v("1.1.0"),
            from: Some(v("1.0.0")),
            step: TxnStep::Switched,
            why: SwitchWhy::Operator,
        }),
        hooks: HookSet {
            post_promote: true,
            ..Default::default()
        },
        ..Default::default()
    }));
    let (_, a) = sim.bring_up(&a);
    assert!(a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
    assert!(a.iter().any(|a| matches!(a, Action::RunHook { hook: Hook::PostPromote, version, .. } if *version == v("1.1.0"))), "{a:#?}");
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
}

fn hooks_in(actions: &[Action]) -> Vec<Hook> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RunHook { hook, .. } => Some(*hook),
            _ => None,
        })
        .collect()
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
async fn a_failing_pre_start_rejects_the_build_before_it_runs() {
    let mut sim = Sim::new(PORTS);
    sim.s.hooks.pre_start = true;
    let a = sim.deliver("1.0.0");
    assert_eq!(hooks_in(&a), vec![Hook::PreStart]);
    assert!(start_in(&a).is_none());
    let id = sim.s.running().unwrap().id;
    let a = sim.feed(Input::HookDone {
        hook: Hook::PreStart,
        id: Some(id),
        version: v("1.0.0"),
        result: Ok(()),
    });
    let (_, a) = sim.bring_up(&a);
    assert_eq!(hooks_in(&a), vec![], "running is up");
    let a = sim.deliver("1.1.0");
    assert_eq!(hooks_in(&a), vec![Hook::PreStart]);
    let tid = sim.s.testing().unwrap().id;
    let a = sim.feed(Input::HookDone {
        hook: Hook::PreStart,
        id: Some(tid),
        version: v("1.1.0"),
        result: Err("PRE_START `check` failed (exit status: 2)".into()),
    });
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Reject { version, reasons }
        if *version == v("1.1.0") && reasons[0].contains("PRE_START"))),
        "{a:#?}"
    );
    assert!(sim.s.testing().is_none());
}

#[tokio::test(start_paused = true)]
async fn verdicts_and_exits_of_replaced_instances_are_ignored() {
    let mut sim = Sim::new(PORTS);
    let (running, old_testing) = sim.serving_with_testing("1.1.0");
    sim.deliver("1.2.0");
    assert_eq!(sim.verdict(old_testing, Verdict::Promote), vec![]);
    assert_eq!(
        sim.verdict(old_testing, Verdict::Reject(vec!["x".into()])),
        vec![]
    );
    assert_eq!(
        sim.event(
            old_testing,
            InstanceEventKind::Exited {
                status: "signal: 15".into(),
                stderr_tail: String::new()
            }
        ),
        vec![]
    );
    assert_eq!(sim.s.running().unwrap().id, running);
    // A verdict for a testing instance that is not ready yet is ignored too.
    let new_testing = sim.s.testing().unwrap().id;
    assert_eq!(sim.verdict(new_testing, Verdict::Promote), vec![]);
}

#[tokio::test(start_paused = true)]
async fn two_ports_are_enough_a_promotion_waits_for_a_freed_port() {
    let mut sim = Sim::new((40000, 40001));
    let (old, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.verdict(testing, Verdict::Promote);
    assert!(start_in(&a).is_none(), "both ports are held: {a:#?}");
    let a = sim.feed(Input::Stopped { id: testing });
    let (next, role, port) = start_in(&a).unwrap();
    assert_eq!((role, port), (Role::Running, 40001));
    sim.launch(next);
    sim.event(next, InstanceEventKind::Ready);
    // A build dropped meanwhile gets the old running's port once it is reaped.
    let a = sim.deliver("1.2.0");
    assert!(start_in(&a).is_none());
    let a = sim.feed(Input::Stopped { id: old });
    let (_, role, port) = start_in(&a).unwrap();
    assert_eq!((role, port), (Role::Testing, 40000));
}

#[tokio::test(start_paused = true)]
async fn a_port_held_by_another_program_is_skipped_then_retried() {
    let mut sim = Sim::new((50000, 50001));
    let a = sim.deliver("1.0.0");
    let (id, _, port) = start_in(&a).unwrap();
    assert_eq!(port, 50000);
    let a = sim.feed(Input::Started {
        id,
        result: Err(StartFailure::PortBusy(50000)),
    });
    assert_eq!(start_in(&a), Some((id, Role::Running, 50001)));
    let a = sim.feed(Input::Started {
        id,
        result: Err(StartFailure::PortBusy(50001)),
    });
    assert!(start_in(&a).is_none(), "every port is busy: wait");
    tokio::time::advance(BUSY_PORT_RETRY).await;
    let a = sim.feed(Input::Tick);
    assert_eq!(start_in(&a), Some((id, Role::Running, 50000)));
}

#[tokio::test(start_paused = true)]
async fn garbage_collection_runs_on_its_timer_and_after_filing() {
    let mut sim = Sim::new(PORTS);
    assert_eq!(sim.s.deadline(), Instant::now() + GC_EVERY);
    tokio::time::advance(GC_EVERY).await;
    assert!(sim.feed(Input::Tick).contains(&Action::Collect));
    let a = sim.feed(Input::Filed {
        version: v("1.0.0"),
        result: Ok(Filed::Archived(PathBuf::from(
            "/base/archive/app-1.0.0.zip",
        ))),
        retry: None,
    });
    assert!(a.contains(&Action::Collect));
    assert!(emitted(&a)
        .iter()
        .any(|e| matches!(e, Event::Archived { .. })));
}

#[test]
fn only_newer_builds_are_started() {
    assert_eq!(
        refusal(&v("1.0.0"), None, None),
        None,
        "the first build runs"
    );
    assert!(refusal(&v("1.0.0"), Some(&v("1.0.0")), None)
        .unwrap()
        .contains("not newer than running 1.0.0"));
    assert!(
        refusal(&v("1.9.0"), Some(&v("1.10.0")), None).is_some(),
        "semver order, not text order"
    );
    assert_eq!(refusal(&v("1.10.0"), Some(&v("1.9.0")), None), None);
    assert!(refusal(&v("1.1.0"), Some(&v("1.0.0")), Some(&v("1.1.0")))
        .unwrap()
        .contains("being tested"));
    assert_eq!(
        refusal(&v("1.2.0"), Some(&v("1.0.0")), Some(&v("1.1.0"))),
        None,
        "a newer build replaces testing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_filing_is_retried_at_each_collection_then_given_up() {
    let mut sim = Sim::new(PORTS);
    let archive = Action::Archive(v("1.0.0"));
    let fail = |sim: &mut Sim| {
        sim.feed(Input::Filed {
            version: v("1.0.0"),
            result: Err("No space left on device".into()),
            retry: Some(Action::Archive(v("1.0.0"))),
        })
    };
    fail(&mut sim);
    for attempt in 2..=MAX_FILING_ATTEMPTS {
        tokio::time::advance(GC_EVERY).await;
        let a = sim.feed(Input::Tick);
        assert!(a.contains(&archive), "attempt {attempt} is made: {a:#?}");
        fail(&mut sim);
    }
    tokio::time::advance(GC_EVERY).await;
    assert!(
        !sim.feed(Input::Tick).contains(&archive),
        "given up after {MAX_FILING_ATTEMPTS} attempts"
    );
}

#[tokio::test(start_paused = true)]
async fn decide_announces_a_failed_filing_as_an_event_not_a_log_line() {
    // decide logs nothing itself: what an operator must hear comes back as an event.
    let mut sim = Sim::new(PORTS);
    let filing_failed = |a: &[Action]| -> Vec<(u32, bool)> {
        emitted(a)
            .into_iter()
            .filter_map(|e| match e {
                Event::FilingFailed {
                    version,
                    attempt,
                    error,
                    retrying,
                } => {
                    assert_eq!((version, error.as_str()), (&v("1.0.0"), "disk full"));
                    Some((*attempt, *retrying))
                }
                _ => None,
            })
            .collect()
    };
    let fail = |sim: &mut Sim, retry| {
        sim.feed(Input::Filed {
            version: v("1.0.0"),
            result: Err("disk full".into()),
            retry,
        })
    };
    let a = fail(&mut sim, Some(Action::Archive(v("1.0.0"))));
    assert_eq!(filing_failed(&a), vec![(1, true)], "{a:#?}");
    let a = fail(&mut sim, None);
    assert_eq!(
        filing_failed(&a),
        vec![(1, false)],
        "nothing to retry: {a:#?}"
    );
}

fn reply_in(actions: &[Action], id: u64) -> &Result<String, CommandError> {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Reply { id: i, result } if *i == id => Some(result),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no reply {id} in {actions:#?}"))
}

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

fn records_in(actions: &[Action]) -> Vec<(Option<Version>, Version, SwitchWhy)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record { from, to, why } => Some((from.clone(), to.clone(), *why)),
            _ => None,
        })
        .collect()
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
    assert!(matches!(reply_in(&a, 9), Err(CommandError::Refused(r)) if r.contains("under way")));
    sim.feed(Input::Stopped { id: old });
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

fn schedules(sim: &Sim) -> Vec<Schedule> {
    sim.s.status(|_| wall0()).schedules
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
        if p.promoting == Some(v("1.1.0")) && matches!(p.schedules[0].outcome, Outcome::Fired { .. }))));
    let (_, a) = {
        sim.launch(next);
        (next, sim.event(next, InstanceEventKind::Ready))
    };
    assert_eq!(
        records_in(&a),
        vec![(Some(v("1.0.0")), v("1.1.0"), SwitchWhy::Scheduled)]
    );
    tokio::time::advance(Duration::from_secs(3600)).await;
    let a = sim.feed(Input::Tick);
    assert!(start_in(&a).is_none(), "never fires twice: {a:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_schedule_due_while_down_fires_at_start_within_the_grace_else_it_is_missed() {
    for (late_min, fires) in [(5u64, true), (90, false)] {
        let mut sim = Sim::new(PORTS);
        let at = sim.now().wall - Duration::from_secs(late_min * 60);
        let a = sim.feed(Input::Resume(Resumed {
            running: Some(installed("1.0.0")),
            testing: Some(installed("1.1.0")),
            schedules: vec![Schedule::new(7, Some(v("1.1.0")), at, Origin::Operator)],
            schedule_grace: Duration::from_secs(3600),
            ..Default::default()
        }));
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
            assert!(matches!(schedules(&sim)[0].outcome, Outcome::Fired { .. }));
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
    sim.feed(Input::Resume(Resumed {
        promote_at: Some(at),
        ..Default::default()
    }));
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
    sim.feed(Input::Resume(Resumed {
        promote_at: Some(at),
        schedules: vec![fired.clone()],
        ..Default::default()
    }));
    assert_eq!(schedules(&sim), vec![fired]);
}

#[test]
fn schedules_round_trip_through_the_state_file() {
    let mut s = Schedule::new(1, Some(v("1.1.0")), wall0(), Origin::Operator);
    for outcome in [
        Outcome::Pending,
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

#[tokio::test(start_paused = true)]
async fn readiness_reported_before_the_start_completion_is_not_lost() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.0.0");
    let (id, _, _) = start_in(&a).unwrap();
    // A fast child: its owner says "ready" before the spawner's completion arrives.
    let a = sim.event(id, InstanceEventKind::Ready);
    assert!(
        routes_in(&a).is_none(),
        "not routed before it is known to run: {a:#?}"
    );
    let a = sim.launch(id);
    assert_eq!(
        routes_in(&a).and_then(|r| r.running.as_ref()).map(|t| t.id),
        Some(id),
        "{a:#?}"
    );
}

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
        let (_, a) = sim.bring_up(&a);
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
            let a = sim.feed(Input::Restored {
                version: v("1.0.0"),
                result: Ok(installed("1.0.0")),
            });
            let (_, a) = sim.bring_up(&a);
            assert_eq!(
                records_in(&a),
                vec![(Some(v("1.1.0")), v("1.0.0"), SwitchWhy::Rollback)]
            );
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

/// The `Start` of `role` in `actions`, if any.
fn start_of(actions: &[Action], role: Role) -> Option<(InstanceId, Version)> {
    actions.iter().find_map(|a| match a {
        Action::Start {
            id,
            role: r,
            installed,
            ..
        } if *r == role => Some((*id, installed.version.clone())),
        _ => None,
    })
}

#[tokio::test(start_paused = true)]
async fn a_secondary_of_running_measures_noise_while_a_build_is_tested() {
    let mut sim = Sim::new(PORTS);
    sim.s.noise_cancel = true;
    let a = sim.deliver("1.0.0");
    let (_running, a) = sim.bring_up(&a);
    assert!(
        start_of(&a, Role::Secondary).is_none(),
        "nothing tested, no secondary: {a:#?}"
    );
    let a = sim.deliver("1.1.0");
    let (testing, _) = start_of(&a, Role::Testing).unwrap();
    let (secondary, version) = start_of(&a, Role::Secondary).expect("a secondary starts");
    assert_eq!(version, v("1.0.0"), "of running's version");
    sim.launch(testing);
    sim.event(testing, InstanceEventKind::Ready);
    sim.launch(secondary);
    let a = sim.event(secondary, InstanceEventKind::Ready);
    assert_eq!(
        routes_in(&a).unwrap().secondary.as_ref().unwrap().id,
        secondary
    );
    assert!(a.iter().any(|a| matches!(
        a,
        Action::Point {
            role: Role::Secondary,
            ..
        }
    )));
    // Promotion: the secondary of the old version goes with it.
    let a = sim.verdict(testing, Verdict::Promote);
    assert!(a.contains(&Action::Retire {
        id: secondary,
        drain: false
    }));
    assert!(a.contains(&Action::Unpoint(Role::Secondary)));
    assert_eq!(routes_in(&a).unwrap().secondary, None);
    let (next, _) = start_of(&a, Role::Running).unwrap();
    sim.launch(next);
    let a = sim.event(next, InstanceEventKind::Ready);
    assert!(start_of(&a, Role::Secondary).is_none(), "nothing tested");
    // The next build gets a secondary of the new running version.
    let a = sim.deliver("1.2.0");
    let (testing, _) = start_of(&a, Role::Testing).unwrap();
    let (secondary, version) = start_of(&a, Role::Secondary).unwrap();
    assert_eq!(version, v("1.1.0"));
    sim.launch(secondary);
    // A secondary that dies costs testing nothing, and is not started again for it.
    let a = sim.event(
        secondary,
        InstanceEventKind::Exited {
            status: "exit status: 1".into(),
            stderr_tail: String::new(),
        },
    );
    assert!(
        !a.iter().any(|a| matches!(a, Action::Reject { .. })),
        "{a:#?}"
    );
    assert!(start_of(&a, Role::Secondary).is_none(), "{a:#?}");
    assert_eq!(sim.s.testing().unwrap().id, testing);
    assert!(sim.s.secondary().is_none());
}

#[tokio::test(start_paused = true)]
async fn without_a_port_to_spare_the_build_is_judged_with_noise_unknown() {
    let mut sim = Sim::new((30000, 30001));
    sim.s.noise_cancel = true;
    let a = sim.deliver("1.0.0");
    sim.bring_up(&a);
    let a = sim.deliver("1.1.0");
    assert!(start_of(&a, Role::Secondary).is_none(), "{a:#?}");
    assert!(sim.s.secondary().is_none());
    let (testing, _) = start_of(&a, Role::Testing).unwrap();
    sim.launch(testing);
    let a = sim.event(testing, InstanceEventKind::Ready);
    let watch = a
        .iter()
        .find_map(|a| match a {
            Action::Score(ScorerControl::Watch(w)) => Some(w.clone()),
            _ => None,
        })
        .expect("scored");
    assert!(!watch.noise, "the scorer is told noise is unknown");
}

#[tokio::test(start_paused = true)]
async fn an_unresponsive_running_is_replaced_start_then_switch_then_stop() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.0.0");
    let (old, _) = sim.bring_up(&a);
    let lost = InstanceEventKind::Unresponsive {
        misses: 3,
        reason: "GET /health timed out".into(),
    };
    let a = sim.event(old, lost);
    // A fresh instance starts beside it; nothing is stopped and users stay on the old one.
    let (fresh, role, _) = start_in(&a).expect("a fresh instance starts first");
    assert_eq!(role, Role::Running);
    assert!(
        !a.iter().any(|x| matches!(x, Action::Retire { .. })),
        "{a:#?}"
    );
    assert!(
        routes_in(&a).is_none_or(|r| r.running.as_ref().is_some_and(|t| t.id == old)),
        "{a:#?}"
    );
    sim.launch(fresh);
    let a = sim.event(fresh, InstanceEventKind::Ready);
    // Switch first, then drain and stop the old one.
    let routed = position(
        &a,
        |x| matches!(x, Action::Route(r) if r.running.as_ref().is_some_and(|t| t.id == fresh)),
    );
    let retired = position(&a, |x| {
        *x == Action::Retire {
            id: old,
            drain: true,
        }
    });
    assert!(routed < retired, "{a:#?}");
    assert!(routes_in(&a).unwrap().restarting.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_spare_that_never_gets_ready_falls_back_to_stop_then_start() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.0.0");
    let (old, _) = sim.bring_up(&a);
    let lost = InstanceEventKind::Unresponsive {
        misses: 3,
        reason: "refused".into(),
    };
    let a = sim.event(old, lost);
    let (fresh, _, _) = start_in(&a).unwrap();
    sim.launch(fresh);
    let a = sim.event(
        fresh,
        InstanceEventKind::NotReady {
            reason: "port never opened".into(),
        },
    );
    assert!(
        a.contains(&Action::Retire {
            id: old,
            drain: false
        }),
        "{a:#?}"
    );
    let (again, _, _) = start_in(&a).expect("the plain restart");
    assert_ne!(again, fresh);
}

#[tokio::test(start_paused = true)]
async fn when_the_unresponsive_running_dies_the_spare_on_its_way_takes_over() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.0.0");
    let (old, _) = sim.bring_up(&a);
    let lost = InstanceEventKind::Unresponsive {
        misses: 3,
        reason: "refused".into(),
    };
    let a = sim.event(old, lost);
    let (fresh, _, _) = start_in(&a).unwrap();
    let died = InstanceEventKind::Exited {
        status: "signal: 9".into(),
        stderr_tail: String::new(),
    };
    let a = sim.event(old, died);
    assert!(start_in(&a).is_none(), "no second fresh instance: {a:#?}");
    sim.launch(fresh);
    let a = sim.event(fresh, InstanceEventKind::Ready);
    let r = routes_in(&a).unwrap();
    assert_eq!(r.running.as_ref().map(|t| t.id), Some(fresh));
}
