//! Filing versions away: decided when it is due, against what uses the version then.

use super::*;

/// 1.1.0 promoted over 1.0.0 (no guard): the old instance is stopped and 1.0.0's archive sent.
fn promoted_over_1_0_0(sim: &mut Sim) {
    let (old, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.verdict(testing, Verdict::Promote);
    sim.feed(Input::Stopped { id: testing });
    sim.bring_up(&a);
    let a = sim.feed(Input::Stopped { id: old });
    assert!(a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
}

fn called_off(a: &[Action]) -> Vec<(Version, String)> {
    emitted(a)
        .into_iter()
        .filter_map(|e| match e {
            Event::FilingCalledOff {
                version, reason, ..
            } => Some((version.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_queued_archive_of_a_version_rolled_back_to_is_called_off() {
    let mut sim = Sim::new(PORTS);
    promoted_over_1_0_0(&mut sim);
    sim.feed(Input::Filed {
        version: v("1.0.0"),
        result: Err("No space left on device".into()),
        filing: Some(Action::Archive(v("1.0.0"))),
    });
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Rollback(Some(v("1.0.0"))),
    });
    assert!(a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
    // Its retry falls due while 1.0.0 is being restored, and again once it serves users.
    tokio::time::advance(GC_EVERY).await;
    let a = sim.feed(Input::Tick);
    assert!(!a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
    assert!(
        matches!(&called_off(&a)[..], [(ver, why)] if *ver == v("1.0.0") && why.contains("being restored")),
        "{a:#?}"
    );
    let (next, _) = sim.restored("1.0.0");
    assert_eq!(sim.s.running().unwrap().id, next);
    for _ in 0..MAX_FILING_ATTEMPTS {
        tokio::time::advance(GC_EVERY).await;
        let a = sim.feed(Input::Tick);
        assert!(!a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_rollback_waits_for_an_archive_of_its_version_under_way_then_restores_it() {
    let mut sim = Sim::new(PORTS);
    promoted_over_1_0_0(&mut sim);
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Rollback(Some(v("1.0.0"))),
    });
    assert!(!a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
    assert!(!a.iter().any(|a| matches!(a, Action::Reply { .. })));
    let a = sim.feed(Input::Filed {
        version: v("1.0.0"),
        result: Ok(Filed::Archived(PathBuf::from(
            "/base/archive/app-1.0.0.zip",
        ))),
        filing: Some(Action::Archive(v("1.0.0"))),
    });
    assert!(a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
    let a = sim.feed(Input::Restored {
        version: v("1.0.0"),
        result: Ok(installed("1.0.0")),
    });
    assert!(matches!(reply_in(&a, 1), Ok(m) if m.contains("rolling back")));
}

#[tokio::test(start_paused = true)]
async fn a_restore_is_asked_for_once() {
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.1.0");
    sim.bring_up(&a);
    let a = sim.feed(Input::Command {
        id: 1,
        command: Command::Rollback(Some(v("1.0.0"))),
    });
    assert!(a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
    // A drop of 1.0.0 is refused meanwhile: its report is no reason to restore 1.0.0 again.
    let a = sim.feed(Input::Dropped(build("1.0.0")));
    assert!(
        a.iter().any(|a| matches!(a, Action::Refuse { .. })),
        "{a:#?}"
    );
    let a = sim.feed(Input::Filed {
        version: v("1.0.0"),
        result: Ok(Filed::Rejected(vec!["not newer".into()])),
        filing: None,
    });
    assert!(!a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_rejection_waits_for_every_instance_of_its_version_to_stop() {
    let mut sim = Sim::new(PORTS);
    let (_, testing) = sim.serving_with_testing("1.1.0");
    let a = sim.verdict(testing, Verdict::Promote);
    let (next, _, _) = start_in(&a).unwrap();
    sim.launch(next);
    // The fresh running instance fails while the tested one, same folder, is still stopping.
    sim.event(
        next,
        InstanceEventKind::Exited {
            status: "exit status: 3".into(),
            stderr_tail: "boom".into(),
            stdout_tail: String::new(),
        },
    );
    let a = sim.feed(Input::Stopped { id: next });
    assert!(
        !a.iter().any(|a| matches!(a, Action::Reject { .. })),
        "{a:#?}"
    );
    let a = sim.feed(Input::Stopped { id: testing });
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::Reject { version, reasons }
            if *version == v("1.1.0") && reasons[0].contains("boom"))),
        "{a:#?}"
    );
}

fn waiting(a: &[Action]) -> Vec<(Version, String)> {
    emitted(a)
        .into_iter()
        .filter_map(|e| match e {
            Event::BuildWaiting {
                version, reason, ..
            } => Some((version.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_build_dropped_again_while_its_rejected_one_is_retired_waits_then_installs() {
    let mut sim = Sim::new(PORTS);
    let (_, testing) = sim.serving_with_testing("1.1.0");
    sim.verdict(testing, Verdict::Reject(vec!["5xx rate".into()]));
    // Dropped again while the rejected instance is still stopping: its folder is about to go.
    let a = sim.feed(Input::Dropped(build("1.1.0")));
    assert!(!a.iter().any(|a| matches!(a, Action::Install(_))), "{a:#?}");
    assert!(
        matches!(&waiting(&a)[..], [(ver, why)] if *ver == v("1.1.0") && why.contains("rejected/")),
        "{a:#?}"
    );
    // Another version does not wait behind it.
    let a = sim.feed(Input::Dropped(build("1.2.0")));
    assert!(a.contains(&Action::Install(build("1.2.0"))), "{a:#?}");
    sim.feed(Input::Installed {
        version: v("1.2.0"),
        result: Err("not a program".into()),
    });
    let reject = Action::Reject {
        version: v("1.1.0"),
        reasons: vec!["5xx rate".into()],
    };
    let a = sim.feed(Input::Stopped { id: testing });
    assert!(a.contains(&reject), "{a:#?}");
    assert!(!a.iter().any(|a| matches!(a, Action::Install(_))), "{a:#?}");
    // The move fails once: the drop waits through the retry too.
    let a = sim.feed(Input::Filed {
        version: v("1.1.0"),
        result: Err("No space left on device".into()),
        filing: Some(reject.clone()),
    });
    assert!(!a.iter().any(|a| matches!(a, Action::Install(_))), "{a:#?}");
    tokio::time::advance(GC_EVERY).await;
    let a = sim.feed(Input::Tick);
    assert!(a.contains(&reject), "{a:#?}");
    assert!(waiting(&a).is_empty(), "said once: {a:#?}");
    let a = sim.feed(Input::Filed {
        version: v("1.1.0"),
        result: Ok(Filed::Rejected(vec!["5xx rate".into()])),
        filing: Some(reject),
    });
    assert!(a.contains(&Action::Install(build("1.1.0"))), "{a:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_base_dir_over_budget_beyond_its_archives_is_said_once_until_it_is_within_again() {
    use crate::archive::{Collection, Deleted};
    let mut sim = Sim::new(PORTS);
    let over = |why: &str| Collection {
        over_budget: Some(why.to_string()),
        ..Default::default()
    };
    let a = sim.feed(Input::Collected(over("40.0 MiB over")));
    assert_eq!(
        emitted(&a),
        [&Event::OverBudget {
            why: "40.0 MiB over".into()
        }]
    );
    // Every minute's collection finds it so again: nothing more is said; nor by one that failed
    // before it measured.
    assert!(emitted(&sim.feed(Input::Collected(over("41.0 MiB over")))).is_empty());
    let failed = Collection {
        failed: true,
        ..Default::default()
    };
    assert!(emitted(&sim.feed(Input::Collected(failed))).is_empty());
    let within = Collection {
        deleted: vec![
            Deleted {
                path: PathBuf::from("/base/rejected/app-0.1.0"),
                rejected: true,
                reason: "rejected/ keeps the newest 20 rejected builds".into(),
            },
            Deleted {
                path: PathBuf::from("/base/archive/app-0.1.0.zip"),
                rejected: false,
                reason: "over MAX_BASE_SIZE".into(),
            },
        ],
        ..Default::default()
    };
    let a = sim.feed(Input::Collected(within.clone()));
    assert_eq!(
        emitted(&a),
        [
            &Event::RejectedDeleted {
                dir: PathBuf::from("/base/rejected/app-0.1.0"),
                reason: "rejected/ keeps the newest 20 rejected builds".into(),
            },
            &Event::ArchiveDeleted {
                zip: PathBuf::from("/base/archive/app-0.1.0.zip"),
                reason: "over MAX_BASE_SIZE".into(),
            },
            &Event::WithinBudget,
        ]
    );
    assert!(emitted(&sim.feed(Input::Collected(Collection::default()))).is_empty());
    assert_eq!(
        emitted(&sim.feed(Input::Collected(over("again")))),
        [&Event::OverBudget {
            why: "again".into()
        }]
    );
}

/// One collection pass at a time and at most one waiting: a slow pass (a large rotation, a long
/// folder walk) must not pile up a pass a minute on the blocking threads.
#[tokio::test(start_paused = true)]
async fn collections_never_pile_up_behind_a_slow_one() {
    use crate::archive::Collection;
    let mut sim = Sim::new(PORTS);
    sim.collections_done = false;
    let collects = |a: &[Action]| a.iter().filter(|a| **a == Action::Collect).count();
    let mut asked = 0;
    for _ in 0..5 {
        tokio::time::advance(GC_EVERY).await;
        asked += collects(&sim.feed(Input::Tick));
    }
    assert_eq!(asked, 1, "one pass under way, the others wait as one");
    let a = sim.feed(Input::Collected(Collection::default()));
    assert_eq!(
        collects(&a),
        1,
        "the waiting pass runs once the first is done"
    );
    let a = sim.feed(Input::Collected(Collection::default()));
    assert_eq!(collects(&a), 0, "and nothing waits after it");
    tokio::time::advance(GC_EVERY).await;
    assert_eq!(collects(&sim.feed(Input::Tick)), 1);
}

/// A rollback never unpacks an archive that a collection pass may be deleting: asked during a
/// pass, the restore waits for it; a pass falling due during a restore waits for the restore.
#[tokio::test(start_paused = true)]
async fn a_rollback_and_a_collection_pass_never_overlap() {
    use crate::archive::Collection;
    let mut sim = Sim::new(PORTS);
    let a = sim.deliver("1.1.0");
    sim.bring_up(&a);
    sim.collections_done = false;
    tokio::time::advance(GC_EVERY).await;
    let a = sim.feed(Input::Tick);
    assert!(a.contains(&Action::Collect), "{a:#?}");
    let rollback = Input::Command {
        id: 1,
        command: Command::Rollback(Some(v("1.0.0"))),
    };
    let a = sim.feed(rollback);
    assert!(!a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
    let a = sim.feed(Input::Collected(Collection::default()));
    assert!(a.contains(&Action::Restore(v("1.0.0"))), "{a:#?}");
    // The next pass falls due while 1.0.0 is unpacked: it waits for the restore.
    tokio::time::advance(GC_EVERY).await;
    let a = sim.feed(Input::Tick);
    assert!(!a.contains(&Action::Collect), "{a:#?}");
    let a = sim.feed(Input::Restored {
        version: v("1.0.0"),
        result: Ok(installed("1.0.0")),
    });
    assert!(a.contains(&Action::Collect), "{a:#?}");
    assert!(matches!(reply_in(&a, 1), Ok(m) if m.contains("rolling back")));
}

/// A filing that fails is in status, with its error and whether it is tried again, until one of
/// its version's filings succeeds: a read-only `archive/` was said in the log alone.
#[tokio::test(start_paused = true)]
async fn a_failed_filing_is_in_status_until_its_version_is_filed() {
    let mut sim = Sim::new(PORTS);
    promoted_over_1_0_0(&mut sim);
    let status = |sim: &Sim| {
        sim.s
            .status(|_| std::time::SystemTime::UNIX_EPOCH)
            .filing_failed
    };
    sim.feed(Input::Filed {
        version: v("1.0.0"),
        result: Err("cannot write /base/archive: Read-only file system".into()),
        filing: Some(Action::Archive(v("1.0.0"))),
    });
    let said = status(&sim);
    assert!(
        matches!(&said[..], [s] if s.starts_with("1.0.0: cannot write") && s.contains("tried again")),
        "{said:?}"
    );
    tokio::time::advance(GC_EVERY).await;
    let a = sim.feed(Input::Tick);
    assert!(a.contains(&Action::Archive(v("1.0.0"))), "{a:#?}");
    sim.feed(Input::Filed {
        version: v("1.0.0"),
        result: Ok(Filed::Archived(PathBuf::from(
            "/base/archive/app-1.0.0.zip",
        ))),
        filing: Some(Action::Archive(v("1.0.0"))),
    });
    assert!(status(&sim).is_empty());
}
