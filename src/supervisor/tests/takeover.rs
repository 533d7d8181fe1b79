//! A new understudy started by an upgrade decides nothing of its own until it serves: the old
//! one goes on with its own state if the takeover fails, so a timer (a due schedule, the guard's
//! window, a filing to retry) or an operator's command acted on here would be done twice or lost.

use super::*;

/// What a new understudy resumes: running, testing, a guard whose window ended, a schedule due
/// in 5 s and a filing to retry; `taking_over` as an upgrade that is not done yet says.
fn resumed_while_taking_over(sim: &Sim, taking_over: bool) -> Resumed {
    let wall = sim.now().wall;
    Resumed {
        running: Some(installed("1.0.0")),
        testing: Some(installed("1.1.0")),
        // Its window ended while the old understudy was busy handing over.
        guard: Some(JournaledGuard {
            version: v("1.0.0"),
            from: v("0.9.0"),
            until: control::rfc3339(wall - Duration::from_secs(1)),
            before_errors: 0,
            before_requests: 1000,
            tripped: None,
        }),
        rollback_window: Duration::from_secs(300),
        schedules: vec![Schedule::new(
            1,
            Some(v("1.1.0")),
            wall + Duration::from_secs(5),
            Origin::Operator,
        )],
        schedule_grace: Duration::from_secs(3600),
        // A filing that failed, retried at the next collection.
        filings: vec![JournaledFiling {
            version: v("0.8.0"),
            reject: None,
        }],
        taking_over,
        ..Default::default()
    }
}

/// Whether `actions` start a fresh running instance of 1.1.0: its promotion.
fn promotes(actions: &[Action]) -> bool {
    actions.iter().any(|a| {
        matches!(a, Action::Start { role: Role::Running, installed, .. }
            if installed.version == v("1.1.0"))
    })
}

fn archives(actions: &[Action]) -> Vec<Version> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Archive(v) => Some(v.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_new_understudy_acts_on_no_timer_or_command_until_it_serves() {
    let mut sim = Sim::new(PORTS);
    let mut seen = sim.feed(Input::Resume(Box::new(resumed_while_taking_over(
        &sim, true,
    ))));
    let (_, a) = sim.bring_up(&seen); // running 1.0.0, adopted
    seen.extend(a.clone());
    let (_, a) = sim.bring_up(&a); // testing 1.1.0, adopted
    seen.extend(a);
    tokio::time::advance(Duration::from_secs(10)).await; // the schedule is due
    for input in [
        Input::Tick,
        Input::Traffic {
            requests: 0,
            errors: 0,
        },
        Input::Traffic {
            requests: 500,
            errors: 0,
        },
    ] {
        seen.extend(sim.feed(input));
    }
    let a = sim.feed(Input::Command {
        id: 7,
        command: Command::Promote,
    });
    assert_eq!(
        reply_in(&a, 7),
        &Err(CommandError::TakingOver),
        "refused, nothing done: {a:#?}"
    );
    seen.extend(a);
    assert!(!promotes(&seen), "no promotion before it serves: {seen:#?}");
    assert_eq!(archives(&seen), Vec::<Version>::new(), "{seen:#?}");
    assert!(!seen.contains(&Action::Collect), "{seen:#?}");
    let saved = sim.s.persisted.clone().expect("the state as it was read");
    assert!(saved.guard.is_some(), "the guard is kept in the state file");
    assert!(saved.schedules[0].is_pending(), "{:?}", saved.schedules);
    assert_eq!(saved.filings.len(), 1, "the filing is kept: {saved:?}");

    // Once it serves, as at any start: the guard ends, the filing is retried, the schedule fires.
    let a = sim.feed(Input::Serving);
    assert_eq!(archives(&a), vec![v("0.9.0"), v("0.8.0")], "{a:#?}");
    assert!(emitted(&a)
        .iter()
        .any(|e| matches!(e, Event::GuardEnded { .. })));
    assert!(promotes(&a), "the due schedule fires: {a:#?}");
    let a = sim.feed(Input::Command {
        id: 8,
        command: Command::Pause,
    });
    assert!(reply_in(&a, 8).is_ok(), "{a:#?}");
}

/// A plain start (or a process that serves from the first) decides the same at once.
#[tokio::test(start_paused = true)]
async fn a_plain_start_acts_on_its_timers_at_once() {
    let mut sim = Sim::new(PORTS);
    let a = sim.feed(Input::Resume(Box::new(resumed_while_taking_over(
        &sim, false,
    ))));
    assert_eq!(archives(&a), vec![v("0.9.0"), v("0.8.0")], "{a:#?}");
    let (_, a) = sim.bring_up(&a);
    let (_, _) = sim.bring_up(&a);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(promotes(&sim.feed(Input::Tick)));
}
