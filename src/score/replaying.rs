//! What the scorer asks of the replay task (`REPLAY=auto`) and what it hears back: replay is
//! wanted while live pairs come too slowly to reach `MIN_MIRRORED`, or while the verdict waits
//! on an endpoint's pairs; the replay task says which of those endpoints it has nothing left to
//! replay of, so the waiting reason can tell the operator what to do instead.

use std::collections::BTreeSet;

use tokio::sync::watch;

use super::evaluation::Evaluation;
use super::scorecard::Summary;
use crate::config::ScoreConfig;
use crate::instance::InstanceId;

/// Replay wanted for one testing instance, and what for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWant {
    /// The testing instance scored.
    pub testing: InstanceId,
    /// Live pairs come too slowly to reach `MIN_MIRRORED` within the window: any recorded
    /// request helps.
    pub traffic: bool,
    /// Endpoints (keys as [`endpoint_key`](super::endpoint_key) makes them) the verdict waits on
    /// for pairs: their recorded requests go first, each up to as many times as the pairs they
    /// may need (the proxy's `replay::repeat_cap`).
    pub endpoints: BTreeSet<String>,
}

/// The replay task's answer: of the endpoints wanted for `testing`, those it holds no recorded
/// request of left to replay (tagged, so an answer about the build before is never taken for
/// this one's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unreplayable {
    /// The testing instance the answer is about (`None`: nothing wanted).
    pub testing: Option<InstanceId>,
    /// The endpoints.
    pub endpoints: BTreeSet<String>,
    /// Replay was wanted for traffic and every recorded request has been replayed its
    /// `REPLAY_REPEAT` times: replay has nothing more to offer until users bring new requests.
    pub traffic_exhausted: bool,
}

impl Unreplayable {
    /// Whether replay for traffic has nothing left to offer `testing`.
    pub fn exhausted_for(&self, testing: InstanceId) -> bool {
        self.testing == Some(testing) && self.traffic_exhausted
    }

    /// The endpoints, when the answer is about `testing`.
    pub fn of(&self, testing: InstanceId) -> BTreeSet<String> {
        match self.testing {
            Some(t) if t == testing => self.endpoints.clone(),
            _ => BTreeSet::new(),
        }
    }
}

/// The scorer's end of the link with the replay task.
pub struct ScorerReplay {
    /// What to replay now (`None`: nothing).
    pub want: watch::Sender<Option<ReplayWant>>,
    /// Endpoints of `want` with no recorded request left to replay.
    pub unreplayable: watch::Receiver<Unreplayable>,
}

/// The replay task's end of the link with the scorer.
pub struct ReplayLink {
    /// What the scorer wants replayed.
    pub want: watch::Receiver<Option<ReplayWant>>,
    /// Where the task says which wanted endpoints it cannot replay.
    pub unreplayable: watch::Sender<Unreplayable>,
}

/// A link between the scorer and the replay task, nothing wanted yet.
pub fn replay_link() -> (ScorerReplay, ReplayLink) {
    let (want_tx, want_rx) = watch::channel(None);
    let (unreplayable_tx, unreplayable_rx) = watch::channel(Unreplayable::default());
    (
        ScorerReplay {
            want: want_tx,
            unreplayable: unreplayable_rx,
        },
        ReplayLink {
            want: want_rx,
            unreplayable: unreplayable_tx,
        },
    )
}

/// What to replay for `testing` after evaluation `e` of `s`: nothing with `REPLAY=off` or
/// without a secondary to judge replays against; else the endpoints the verdict waits on, and
/// whether live pairs so far plus the live rate over what is left of `STABLE_WINDOW` fall short
/// of `MIN_MIRRORED`. `None` when neither.
pub(super) fn replay_want(
    testing: InstanceId,
    s: &Summary,
    e: &Evaluation,
    cfg: &ScoreConfig,
) -> Option<ReplayWant> {
    if !cfg.replay || !s.noise_expected {
        return None;
    }
    let live = s.pairs.saturating_sub(s.replayed) as f64;
    let rate = live / s.elapsed.as_secs_f64().max(1.0);
    let left = cfg.stable_window.saturating_sub(s.elapsed).as_secs_f64();
    let traffic = live + rate * left < cfg.min_mirrored as f64;
    let endpoints: BTreeSet<String> = e.waiting_on.iter().cloned().collect();
    (traffic || !endpoints.is_empty()).then_some(ReplayWant {
        testing,
        traffic,
        endpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::evaluate;
    use crate::score::test_support::{cfg, statuses, summarised};

    fn on() -> ScoreConfig {
        ScoreConfig {
            replay: true,
            ..cfg()
        }
    }

    /// The want of a summary with a secondary, as the scorer computes it.
    fn want(mut s: Summary, cfg: &ScoreConfig) -> Option<ReplayWant> {
        s.noise_expected = true;
        let e = evaluate(&s, cfg);
        replay_want(InstanceId(1), &s, &e, cfg)
    }

    /// Replay is wanted for traffic when live pairs, at their pace, would not reach MIN_MIRRORED
    /// within the window; never with REPLAY=off or without a secondary; replayed pairs are not
    /// live ones.
    #[test]
    fn replay_is_wanted_for_traffic_only_when_live_pairs_come_too_slowly() {
        // 60 s window, 100 pairs needed: 10 live in 10 s make 60 by the end; 30 make 180.
        let mut s = crate::score::test_support::summary(10, 10);
        let w = want(s.clone(), &on()).expect("too slow");
        assert!(w.traffic && w.endpoints.is_empty(), "{w:?}");
        assert_eq!(want(s.clone(), &cfg()), None, "REPLAY=off");
        let e = evaluate(&s, &on());
        assert_eq!(
            replay_want(InstanceId(1), &s, &e, &on()),
            None,
            "no secondary"
        );
        s.pairs = 30;
        assert_eq!(want(s.clone(), &on()), None, "fast enough");
        s.replayed = 25;
        assert!(want(s, &on()).unwrap().traffic, "only 5 of the 30 are live");
    }

    /// Enough live traffic, but the verdict waits on an endpoint seen once and gone on testing:
    /// replay is wanted for that endpoint alone; once it has MIN_ENDPOINT_PAIRS pairs the
    /// verdict rejects and nothing more is wanted.
    #[test]
    fn replay_is_wanted_while_the_verdict_waits_on_an_endpoints_pairs() {
        let healthy = statuses("/a", 200, 200, Some(200), 200);
        let rare = |n| statuses("/rare/7", n, 200, Some(200), 404);
        let s = summarised(&[healthy.clone(), rare(1)].concat(), 10);
        let w = want(s, &on()).expect("the verdict waits on GET /rare/{n}");
        assert!(!w.traffic, "200 live pairs are plenty: {w:?}");
        assert_eq!(w.endpoints, BTreeSet::from(["GET /rare/{n}".to_string()]));
        assert_eq!(
            want(summarised(&[healthy.clone(), rare(1)].concat(), 10), &cfg()),
            None
        );
        let s = summarised(&[healthy, rare(5)].concat(), 10);
        assert_eq!(
            want(s, &on()),
            None,
            "judged (rejected): nothing to wait on"
        );
    }

    /// An answer about another testing instance (the build before) says nothing about this one.
    #[test]
    fn an_answer_about_another_build_is_not_taken_for_this_ones() {
        let u = Unreplayable {
            testing: Some(InstanceId(1)),
            endpoints: BTreeSet::from(["GET /rare".to_string()]),
            ..Default::default()
        };
        assert_eq!(u.of(InstanceId(1)).len(), 1);
        assert!(u.of(InstanceId(2)).is_empty());
        assert!(Unreplayable::default().of(InstanceId(1)).is_empty());
    }
}
