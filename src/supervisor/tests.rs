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

mod canary;
mod commands;
mod filing;
mod guard;
mod guard_status;
mod lifecycle;
mod promotion;
mod resume;
mod schedules;
mod takeover;

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
    /// Each collection pass asked for is reported done (nothing deleted) at once, as the
    /// executor's are within moments; tests about collections turn it off.
    collections_done: bool,
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
            collections_done: true,
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
        let mut actions = decide(&mut self.s, input, now);
        if self.collections_done && actions.contains(&Action::Collect) {
            let done = Input::Collected(crate::archive::Collection::default());
            actions.extend(decide(&mut self.s, done, now));
        }
        actions
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
    /// A rollback's restore of `ver` done, and its fresh instance ready: its id and the
    /// actions of its readiness (the switch).
    fn restored(&mut self, ver: &str) -> (InstanceId, Vec<Action>) {
        let a = self.feed(Input::Restored {
            version: v(ver),
            result: Ok(installed(ver)),
        });
        self.bring_up(&a)
    }

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
                evidence: Default::default(),
                waiting_on: Vec::new(),
            },
            canary: None,
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

/// A promotion of `version` from 1.0.0 as the journal holds it at `step`, asked by the operator.
fn operators_promotion(version: &str, step: TxnStep) -> Txn {
    Txn {
        kind: TxnKind::Promotion,
        version: v(version),
        from: Some(v("1.0.0")),
        step,
        why: SwitchWhy::Operator,
        reject_from: None,
    }
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
    assert!(a.contains(&Action::Persist(Box::new(Persisted {
        running: Some(v("1.0.0")),
        ..Persisted::default()
    }))));
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
async fn a_build_named_too_long_to_handle_is_refused_not_installed() {
    let mut sim = Sim::new(PORTS);
    let d = build(&format!("1.0.0-{}", "a".repeat(240)));
    assert_eq!(d.name.file_name.len(), 250);
    let a = sim.feed(Input::Dropped(d));
    assert!(
        a.iter().any(|x| matches!(x, Action::Refuse { reason, .. }
            if reason.contains("250 bytes, longer than the 241"))),
        "{a:#?}"
    );
    assert!(!a.iter().any(|x| matches!(x, Action::Install(_))), "{a:#?}");
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

/// The drops given their turn in `actions`: installed (`true`) or refused.
fn turns(actions: &[Action]) -> Vec<(Version, bool)> {
    let turn = |a: &Action| match a {
        Action::Install(d) => Some((d.name.version.clone(), true)),
        Action::Refuse { dropped, .. } => Some((dropped.name.version.clone(), false)),
        _ => None,
    };
    actions.iter().filter_map(turn).collect()
}

#[tokio::test(start_paused = true)]
async fn a_file_reported_again_while_it_waits_is_queued_once() {
    let mut sim = Sim::new(PORTS);
    sim.feed(Input::Dropped(build("1.0.0")));
    let a = sim.feed(Input::Dropped(build("1.1.0")));
    assert_eq!(emitted(&a).len(), 1, "build_found: {a:#?}");
    // Touched (or written again) while 1.0.0 installs: reported a second time.
    let a = sim.feed(Input::Dropped(build("1.1.0")));
    assert!(emitted(&a).is_empty(), "found once: {a:#?}");
    let a = sim.feed(Input::Installed {
        version: v("1.0.0"),
        result: Ok(installed("1.0.0")),
    });
    assert_eq!(turns(&a), [(v("1.1.0"), true)]);
    // A second entry would now be refused, and its file (installed) be missing.
    let a = sim.feed(Input::Installed {
        version: v("1.1.0"),
        result: Ok(installed("1.1.0")),
    });
    assert_eq!(turns(&a), [], "{a:#?}");
    assert!(sim.s.drops.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_drop_gone_or_being_written_at_its_turn_passes_the_turn_on() {
    let mut sim = Sim::new(PORTS);
    sim.feed(Input::Dropped(build("1.0.0")));
    sim.feed(Input::Dropped(build("1.1.0")));
    let a = sim.feed(Input::Withdrawn {
        dropped: build("1.0.0"),
        why: Withdrawn::Gone,
        install: true,
    });
    assert!(emitted(&a).is_empty(), "passed over quietly: {a:#?}");
    assert_eq!(turns(&a), [(v("1.1.0"), true)]);
    let a = sim.feed(Input::Withdrawn {
        dropped: build("1.1.0"),
        why: Withdrawn::BeingWritten,
        install: true,
    });
    assert!(
        matches!(emitted(&a)[..], [Event::BuildWaiting { version, .. }] if *version == v("1.1.0")),
        "{a:#?}"
    );
    assert!(sim.s.installing.is_none() && sim.s.drops.is_empty());
    // The watcher reports it once its writer is done: a drop like any other.
    let a = sim.feed(Input::Dropped(build("1.1.0")));
    assert_eq!(turns(&a), [(v("1.1.0"), true)]);
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
    // The pass at start is done (the executor answers every pass).
    sim.feed(Input::Collected(Default::default()));
    assert_eq!(sim.s.deadline(), Instant::now() + GC_EVERY);
    tokio::time::advance(GC_EVERY).await;
    assert!(sim.feed(Input::Tick).contains(&Action::Collect));
    sim.feed(Input::Collected(Default::default()));
    let a = sim.feed(Input::Filed {
        version: v("1.0.0"),
        result: Ok(Filed::Archived(PathBuf::from(
            "/base/archive/app-1.0.0.zip",
        ))),
        filing: Some(Action::Archive(v("1.0.0"))),
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
            filing: Some(Action::Archive(v("1.0.0"))),
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
async fn a_filing_retried_successfully_is_not_sent_again() {
    let mut sim = Sim::new(PORTS);
    let reject = Action::Reject {
        version: v("1.1.0"),
        reasons: vec!["testing exited".into()],
    };
    sim.feed(Input::Filed {
        version: v("1.1.0"),
        result: Err("No space left on device".into()),
        filing: Some(reject.clone()),
    });
    tokio::time::advance(GC_EVERY).await;
    assert!(sim.feed(Input::Tick).contains(&reject));
    sim.feed(Input::Filed {
        version: v("1.1.0"),
        result: Ok(Filed::Rejected(vec!["testing exited".into()])),
        filing: Some(reject.clone()),
    });
    // Sent again, it would find rejected/app-1.1.0 and start over on it.
    tokio::time::advance(GC_EVERY).await;
    let a = sim.feed(Input::Tick);
    assert!(!a.contains(&reject), "{a:#?}");
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
    let fail = |sim: &mut Sim, filing| {
        sim.feed(Input::Filed {
            version: v("1.0.0"),
            result: Err("disk full".into()),
            filing,
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

fn records_in(actions: &[Action]) -> Vec<(Option<Version>, Version, SwitchWhy)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record { from, to, why } => Some((from.clone(), to.clone(), *why)),
            _ => None,
        })
        .collect()
}

fn schedules(sim: &Sim) -> Vec<Schedule> {
    sim.s.status(|_| wall0()).schedules
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
