//! The scorer task: folds mirrored pairs into a [`Scorecard`], evaluates it every
//! `EVALUATE_EVERY`, and sends each verdict to the supervisor, which steers it with
//! [`ScorerControl`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::canary::{CanaryEvaluation, Served};
use super::evaluation::{evaluate, Evaluation};
use super::logs::LevelRules;
use super::pair::Pair;
use super::replaying::{replay_want, ScorerReplay};
use super::scorecard::{Scorecard, Watch};
use crate::config::ScoreConfig;
use crate::instance::InstanceId;

/// What the supervisor tells the scorer.
#[derive(Debug, Clone, PartialEq)]
pub enum ScorerControl {
    /// Score this testing instance from now on (a fresh scorecard).
    Watch(Watch),
    /// Running was restarted: count its logs from the new instance folder, keeping the score.
    Running {
        /// The new running instance folder.
        running_dir: std::path::PathBuf,
        /// Its process.
        running_pid: Option<u32>,
    },
    /// No testing instance: stop scoring.
    Clear,
    /// The secondary was given up for this build: noise stays unknown.
    NoNoise,
    /// The secondary is ready (its pid, the id of its process group, and its folder) or gone
    /// (`None`): testing's memory, CPU and log lines are compared with its, which gets exactly
    /// testing's copies.
    Secondary(Option<super::SecondaryWatch>),
    /// New thresholds from a reloaded `.env` (SIGHUP); the scorecard is kept.
    Config(ScoreConfig),
    /// A canary step begins (`true`: its answers are counted afresh) or the canary ends.
    Canary(bool),
}

/// A verdict about one testing instance, sent to the supervisor.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The testing instance.
    pub testing: InstanceId,
    /// The evaluation.
    pub evaluation: Evaluation,
    /// The current canary step's answers judged, while one runs.
    pub canary: Option<CanaryEvaluation>,
}

/// What the scorer counts: mirrored pairs, and the answers served during a canary step.
pub struct Feeds {
    /// Pairs from the mirror.
    pub pairs: mpsc::Receiver<Pair>,
    /// Answers served to users during a canary step, from the proxy threads.
    pub served: mpsc::Receiver<Served>,
}

/// How long the scorer lets mirrored pairs gather after taking a batch (see [`run`]).
const PAIR_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Most pairs the scorer takes at once before pausing.
const PAIR_BATCH: usize = 1024;

/// The proxy's counters of user requests, shared with the scorer.
pub struct UserRequests {
    /// All user requests: the denominator for running's logs.
    pub all: Arc<AtomicU64>,
    /// Those not copied because `MIRROR_METHODS` leaves their method out or they open a
    /// WebSocket, while a build was tested: a wait for traffic says when most are.
    pub not_mirrorable: Arc<AtomicU64>,
}

/// The scorer task: folds pairs, evaluates every `EVALUATE_EVERY`, reports to the supervisor and
/// tells the replay task what to replay, counting user requests in `users`.
pub async fn run(
    cfg: ScoreConfig,
    users: UserRequests,
    feeds: Feeds,
    mut control: mpsc::UnboundedReceiver<ScorerControl>,
    verdicts: mpsc::Sender<Scored>,
    replay: ScorerReplay,
    cancel: CancellationToken,
) {
    let Feeds {
        mut pairs,
        mut served,
    } = feeds;
    let requests = users.all;
    let not_mirrored = users.not_mirrorable;
    let mut cfg = cfg;
    let mut rules = LevelRules::new(&cfg.plain_error_regex, &cfg.plain_warn_regex);
    let mut card: Option<Scorecard> = None;
    let mut tick = tokio::time::interval(cfg.evaluate_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // In this order: a new testing instance (or none) is known before the pairs queued
        // behind it are counted, and pairs arriving without pause never delay an evaluation.
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(c) = control.recv() => {
                if let ScorerControl::Config(new) = c {
                    if new.evaluate_every != cfg.evaluate_every {
                        tick = tokio::time::interval(new.evaluate_every);
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                    rules = LevelRules::new(&new.plain_error_regex, &new.plain_warn_regex);
                    cfg = new;
                } else {
                    let counts = (requests.load(Ordering::Relaxed), not_mirrored.load(Ordering::Relaxed));
                    follow(&mut card, c, &cfg, counts);
                }
            }
            _ = tick.tick() => {
                if let Some(c) = card.as_mut() {
                    let counts = (requests.load(Ordering::Relaxed), not_mirrored.load(Ordering::Relaxed));
                    let scored = evaluate_card(c, (&rules, &cfg), counts, &replay);
                    // A supervisor that lags skips a verdict; the next evaluation follows soon.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = verdicts.try_send(scored) {
                        break;
                    }
                } else {
                    replay.want.send_if_modified(|w| w.take().is_some());
                }
            }
            Some(s) = served.recv() => {
                if let Some(c) = card.as_mut() {
                    c.record_served(&s);
                    for _ in 0..PAIR_BATCH {
                        let Ok(s) = served.try_recv() else { break };
                        c.record_served(&s);
                    }
                }
            }
            Some(p) = pairs.recv() => {
                if let Some(c) = card.as_mut() { c.record(&p, Instant::now()) }
                // Take what has queued, then let the next pairs gather: under load this task is
                // woken once per PAIR_PAUSE, not once per mirrored request (each the wake-up of a
                // parked runtime thread; measured in docs/benchmarks.md).
                for _ in 0..PAIR_BATCH {
                    let Ok(p) = pairs.try_recv() else { break };
                    if let Some(c) = card.as_mut() { c.record(&p, Instant::now()) }
                }
                tokio::time::sleep(PAIR_PAUSE).await;
            }
        }
    }
}

/// One evaluation of the build under test (`counts`: user requests so far, and of those not
/// mirrored for their method), telling the replay task what to replay from now on.
fn evaluate_card(
    c: &mut Scorecard,
    (rules, cfg): (&LevelRules, &ScoreConfig),
    (requests, not_mirrored): (u64, u64),
    replay: &ScorerReplay,
) -> Scored {
    let noise = c.noise;
    let mut s = c.summary(rules, requests, Instant::now(), noise);
    let unreplayable = replay.unreplayable.borrow().clone();
    s.unreplayable = unreplayable.of(c.testing);
    s.replay_exhausted = unreplayable.exhausted_for(c.testing);
    s.not_mirrorable = c.not_mirrored_since(not_mirrored);
    let evaluation = evaluate(&s, cfg);
    let canary = c.canary.as_ref().map(|k| super::canary::evaluate(k, cfg));
    let wanted = replay_want(c.testing, &s, &evaluation, cfg);
    replay.want.send_if_modified(|w| {
        let changed = *w != wanted;
        *w = wanted;
        changed
    });
    Scored {
        testing: c.testing,
        evaluation,
        canary,
    }
}

/// Apply a control message about what is scored (anything but a new configuration).
/// `counts`: user requests so far, and of those not mirrored for their method.
fn follow(card: &mut Option<Scorecard>, c: ScorerControl, cfg: &ScoreConfig, counts: (u64, u64)) {
    match c {
        ScorerControl::Watch(w) => {
            let before = card.as_ref().and_then(Scorecard::secondary_pid);
            let mut c = Scorecard::new(w, counts.0, Instant::now());
            c.count_not_mirrored_from(counts.1);
            if before.is_some() && c.secondary_pid() == before {
                c.secondary_kept();
            }
            c.limit_endpoints(cfg.max_endpoints);
            *card = Some(c);
        }
        ScorerControl::Clear => *card = None,
        ScorerControl::Running {
            running_dir,
            running_pid,
        } => {
            if let Some(c) = card.as_mut() {
                c.follow_running(running_dir, running_pid);
            }
        }
        ScorerControl::NoNoise => {
            if let Some(c) = card.as_mut() {
                c.noise = false;
            }
        }
        ScorerControl::Secondary(secondary) => {
            if let Some(c) = card.as_mut() {
                c.follow_secondary(secondary);
            }
        }
        ScorerControl::Canary(on) => {
            if let Some(c) = card.as_mut() {
                c.canary = on.then(Default::default);
            }
        }
        ScorerControl::Config(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::score::test_support::{cfg, watch_instance_1};

    /// The scorer takes pairs in batches and pauses between them: a burst larger than one batch,
    /// sent while it pauses, is counted in full, and the evaluation after it says so.
    #[tokio::test(start_paused = true)]
    async fn the_scorer_counts_every_pair_of_a_burst() {
        let (pairs_tx, pairs_rx) = mpsc::channel(4 * PAIR_BATCH);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (verdict_tx, mut verdicts) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        let scorer = tokio::spawn(run(
            cfg(),
            UserRequests {
                all: Arc::new(AtomicU64::new(0)),
                not_mirrorable: Arc::new(AtomicU64::new(0)),
            },
            Feeds {
                pairs: pairs_rx,
                served: mpsc::channel(1).1,
            },
            control_rx,
            verdict_tx,
            crate::score::replay_link().0,
            cancel.clone(),
        ));
        control_tx
            .send(ScorerControl::Watch(watch_instance_1()))
            .unwrap();
        let pair = crate::score::test_support::pair("/a");
        let burst = 3 * PAIR_BATCH as u64 + 7;
        for _ in 0..burst {
            pairs_tx.send(pair.clone()).await.unwrap();
        }
        // Evaluations come every second (paused time runs ahead while all tasks wait).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut seen = 0;
        while seen < burst && tokio::time::Instant::now() < deadline {
            seen = verdicts.recv().await.unwrap().evaluation.pairs;
        }
        assert_eq!(seen, burst, "every pair of the burst is counted");
        cancel.cancel();
        scorer.await.unwrap();
    }

    /// A secondary kept from the build tested before has logged (and answered) for that build:
    /// the next build's baseline counts it from the new watch on, never its whole history over
    /// the copies of the new watch alone.
    #[test]
    fn a_secondary_kept_for_the_next_build_counts_its_lines_from_the_new_watch() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let log = dir.path().join("logs/app.log");
        std::fs::write(&log, "ERROR at start\n".repeat(3000)).unwrap();
        let cfg = cfg();
        let rules = LevelRules::new(r"\bERROR\b", r"\bWARN\b");
        let secondary = crate::score::SecondaryWatch {
            pid: 4242,
            dir: dir.path().to_path_buf(),
        };
        let watch = |testing| Watch {
            testing: crate::instance::InstanceId(testing),
            secondary: Some(secondary.clone()),
            ..watch_instance_1()
        };
        let answered = crate::score::Pair {
            secondary_latency: Some(Duration::from_millis(1)),
            secondary_status: Some(200),
            ..crate::score::test_support::pair("/a")
        };
        let mut card = None;
        follow(&mut card, ScorerControl::Watch(watch(1)), &cfg, (0, 0));
        let c = card.as_mut().unwrap();
        let logs = |c: &mut Scorecard| c.summary(&rules, 0, Instant::now(), true).secondary_logs;
        // The first build: the secondary's lines from its start, over the copies it answered.
        assert_eq!(logs(c).unwrap().errors, 3000);
        // The next build, the same secondary: only what comes from now on.
        follow(&mut card, ScorerControl::Watch(watch(2)), &cfg, (0, 0));
        let c = card.as_mut().unwrap();
        let p = crate::score::Pair {
            testing: crate::instance::InstanceId(2),
            ..answered
        };
        for _ in 0..10 {
            c.record(&p, Instant::now());
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"ERROR now\n"))
            .unwrap();
        let counts = logs(c).unwrap();
        assert_eq!((counts.errors, counts.requests), (1, 10));
    }
}
