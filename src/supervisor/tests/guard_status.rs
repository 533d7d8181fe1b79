//! What status says of the guard's rollback: what it brings back, from what and why, that
//! users' requests wait for it; and, when it cannot be carried out, that the watch is over and
//! the version it left serves on (restarted after its crash).

use super::guard::{crash_running, guarded_promotion};
use super::*;
use crate::supervisor::control::{rfc3339, RollbackStep};

/// Running was empty in status (`running none`) while users' requests waited for the version
/// coming back: status now says what comes back, why, how far, and that requests are held.
#[tokio::test(start_paused = true)]
async fn status_says_what_the_guards_rollback_brings_back_and_that_users_wait_for_it() {
    let mut sim = Sim::new(PORTS);
    guarded_promotion(&mut sim).await;
    tokio::time::advance(Duration::from_secs(7)).await;
    let crashed_at = sim.now().wall;
    crash_running(&mut sim);
    let st = sim.s.status(|_| wall0());
    assert_eq!(st.running, None);
    let r = st
        .guard_rollback
        .expect("the guard's rollback is in status");
    assert_eq!(
        (r.version.clone(), r.from.clone()),
        (v("1.0.0"), v("1.1.0"))
    );
    assert!(
        r.reason.starts_with("failed within ROLLBACK_WINDOW") && r.reason.contains("boom"),
        "{r:?}"
    );
    assert_eq!(r.step, RollbackStep::Restoring);
    assert!(r.requests_held, "{r:?}");
    assert_eq!(r.held_up_to_secs, 60.0, "UPSTREAM_TIMEOUT's default");
    assert_eq!(r.down_since, Some(rfc3339(crashed_at)));
    let a = sim.feed(Input::Restored {
        version: v("1.0.0"),
        result: Ok(installed("1.0.0")),
    });
    let r = sim
        .s
        .status(|_| wall0())
        .guard_rollback
        .expect("still under way");
    assert_eq!(r.step, RollbackStep::Starting);
    assert!(r.requests_held);
    let (_, a) = sim.bring_up(&a);
    assert_eq!(
        records_in(&a),
        vec![(Some(v("1.1.0")), v("1.0.0"), SwitchWhy::Rollback)]
    );
    let st = sim.s.status(|_| wall0());
    assert_eq!(st.guard_rollback, None, "switched: {st:?}");
    assert_eq!(st.guard_failed, None);
}

/// On a worse 5xx rate the version rolled back from serves on meanwhile: nothing is held.
#[tokio::test(start_paused = true)]
async fn status_says_the_guards_rollback_on_5xx_holds_no_request() {
    let mut sim = Sim::new(PORTS);
    guarded_promotion(&mut sim).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    sim.feed(Input::Traffic {
        requests: 1030,
        errors: 5 + 25,
    });
    let st = sim.s.status(|_| wall0());
    assert!(st.running.is_some());
    let r = st
        .guard_rollback
        .expect("the guard's rollback is in status");
    assert!(r.reason.starts_with("5xx rate"), "{r:?}");
    assert!(!r.requests_held, "{r:?}");
    assert_eq!(r.down_since, None);
    // Restarted between the trip and the switch, with UPSTREAM_TIMEOUT=2s: the rollback is
    // finished, 1.1.0 held (not started), and users' requests wait up to 2 s each.
    let p = sim.s.persisted.clone().expect("the state was written");
    let mut after = Sim::new(PORTS);
    after.start = sim.start;
    after.feed(Input::Resume(Box::new(Resumed {
        running: Some(installed("1.1.0")),
        txn: p.txn.clone(),
        guard: p.guard.clone(),
        history_last: Some(v("1.1.0")),
        rollback_window: Duration::from_secs(300),
        max_5xx_delta: 0.01,
        confidence: 0.99,
        upstream_timeout: Duration::from_secs(2),
        ..Default::default()
    })));
    let r = after.s.status(|_| wall0()).guard_rollback.expect("resumed");
    assert!(r.reason.starts_with("5xx rate"), "{r:?}");
    assert!(r.requests_held, "{r:?}");
    assert_eq!(r.held_up_to_secs, 2.0);
    assert_eq!(r.down_since, None, "held at start, not crashed");
}

/// The rollback cannot be carried out (the old build gone, or it fails to start): status said
/// only that 1.1.0 was restarting, as after any crash. It now says the guard's watch is over,
/// why the rollback failed, and that 1.1.0 is restarted after its crash (or serves on); the
/// restart's event says the same.
#[tokio::test(start_paused = true)]
async fn status_says_the_guard_gave_up_and_that_the_version_left_crashed_since_its_promotion() {
    for how in ["restore fails", "start fails", "restore fails after 5xx"] {
        let mut sim = Sim::new(PORTS);
        guarded_promotion(&mut sim).await;
        tokio::time::advance(Duration::from_secs(7)).await;
        let crashed_at = sim.now().wall;
        if how.ends_with("5xx") {
            sim.feed(Input::Traffic {
                requests: 1030,
                errors: 5 + 25,
            });
        } else {
            crash_running(&mut sim);
        }
        tokio::time::advance(Duration::from_secs(3)).await;
        let a = if how == "start fails" {
            let a = sim.feed(Input::Restored {
                version: v("1.0.0"),
                result: Ok(installed("1.0.0")),
            });
            let (id, _, _) = start_in(&a).expect("1.0.0 starts");
            sim.feed(Input::Started {
                id,
                result: Err(StartFailure::Failed("no such file".into())),
            })
        } else {
            sim.feed(Input::Restored {
                version: v("1.0.0"),
                result: Err(RestoreFailure::Missing),
            })
        };
        let st = sim.s.status(|_| wall0());
        assert_eq!(st.guard_rollback, None, "{how}");
        assert_eq!(st.guarded, None, "{how}");
        let note = st.guard_failed.expect("status says the guard gave up");
        let failed = match how {
            "start fails" => "the guard's rollback from 1.1.0 to 1.0.0 failed (",
            _ => "the guard's rollback from 1.1.0 to 1.0.0 could not start (no archived version 1.0.0",
        };
        assert!(note.starts_with(failed), "{how}: {note}");
        assert!(note.contains("its watch of 1.1.0 is over"), "{how}: {note}");
        let serves = match how {
            "restore fails after 5xx" => "1.1.0 serves on".to_string(),
            _ => format!(
                "1.1.0, which crashed at {} since its promotion, is restarted",
                rfc3339(crashed_at)
            ),
        };
        assert!(note.ends_with(&serves), "{how}: {note}");
        // Journaled: a restart of understudy still says it (it forgot it).
        let saved = sim.s.persisted.clone().expect("written");
        assert_eq!(saved.guard_failed.as_ref(), Some(&note), "{how}");
        let mut after = Sim::new(PORTS);
        after.feed(Input::Resume(Box::new(Resumed {
            running: Some(installed("1.1.0")),
            guard_failed: saved.guard_failed,
            ..Default::default()
        })));
        let said = after.s.status(|_| wall0()).guard_failed;
        assert_eq!(said.as_ref(), Some(&note), "{how}");
        let events = emitted(&a);
        if how != "restore fails after 5xx" {
            assert!(
                events.iter().any(|e| matches!(e,
                    Event::RestartScheduled { version, reason, .. }
                        if *version == v("1.1.0") && *reason == note)),
                "{how}: {a:#?}"
            );
        }
        if how != "start fails" {
            assert!(
                events.iter().any(|e| matches!(e,
                    Event::RollbackFailed { reason, .. }
                        if reason.contains("its watch of 1.1.0 is over"))),
                "{how}: {a:#?}"
            );
        }
    }
}

/// The guard's rollback from a crash cannot begin while another switch is under way: status
/// said so, but the restart's event gave only the crash. Both now say the same.
#[tokio::test(start_paused = true)]
async fn a_guard_rollback_that_cannot_begin_says_so_in_the_restart_too() {
    let mut sim = Sim::new(PORTS);
    guarded_promotion(&mut sim).await;
    tokio::time::advance(Duration::from_secs(7)).await;
    // An operator's rollback to 0.9.0 is restoring its build.
    sim.s.restoring = Some((v("0.9.0"), None));
    let (_, a) = crash_running(&mut sim);
    let note = sim
        .s
        .status(|_| wall0())
        .guard_failed
        .expect("status says it");
    assert!(
        note.starts_with(
            "the guard's rollback from 1.1.0 to 1.0.0 could not start (another switch is under way)"
        ),
        "{note}"
    );
    assert!(note.contains("is restarted"), "{note}");
    let events = emitted(&a);
    assert!(
        events.iter().any(|e| matches!(e,
            Event::RestartScheduled { version, reason, .. }
                if *version == v("1.1.0") && *reason == note)),
        "{a:#?}"
    );
    assert!(
        events.iter().any(|e| matches!(e,
            Event::RollbackFailed { reason, .. } if *reason == note)),
        "{a:#?}"
    );
}
