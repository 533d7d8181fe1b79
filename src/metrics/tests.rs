//! The exposition and the event counters, checked on `Metrics` and `EventCounters` themselves.

use std::time::Duration;

use super::*;

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn promoted(to: &str, why: SwitchWhy) -> Event {
    Event::Promoted {
        from: Some(v("1.0.0")),
        to: v(to),
        why,
    }
}

fn get(c: &[Counter]) -> Vec<u64> {
    c.iter().map(Counter::get).collect()
}

#[test]
fn events_map_to_their_counters() {
    let mut registry = Registry::default();
    let mut c = EventCounters::register(&mut registry);
    for verdict in [VerdictKind::Wait, VerdictKind::Wait, VerdictKind::Reject] {
        c.count(&Event::Scored {
            version: v("1.1.0"),
            verdict,
            score: 40,
            pairs: 10,
            summary: String::new(),
            diffs: Vec::new(),
            evidence: Default::default(),
        });
    }
    c.count(&promoted("1.1.0", SwitchWhy::Automatic));
    c.count(&promoted("1.2.0", SwitchWhy::Operator));
    c.count(&promoted("1.3.0", SwitchWhy::Scheduled));
    c.count(&Event::Rejected {
        version: v("1.4.0"),
        reasons: vec!["5xx".into()],
    });
    c.count(&Event::RestartScheduled {
        version: v("1.3.0"),
        attempt: 1,
        delay_ms: 1000,
        reason: "exited".into(),
    });
    c.count(&Event::PromotionFailed {
        version: v("1.5.0"),
        reasons: vec![],
    });
    // Neither promotion nor decision: not counted anywhere.
    c.count(&Event::Paused);
    c.count(&Event::Promoting {
        version: v("1.5.0"),
    });

    assert_eq!(get(&c.verdicts), [2, 0, 1]);
    assert_eq!(get(&c.promotions), [0, 1, 1, 1, 0, 0]);
    assert_eq!(get(&c.rollbacks), [0, 0]);
    assert_eq!(c.rejections.get(), 1);
    assert_eq!(c.restarts.get(), 1);
    assert_eq!(c.promotion_failures.get(), 1);
    assert_eq!(c.guard_trips.get(), 0);
}

#[test]
fn a_rollback_counts_as_the_guards_only_when_the_guard_asked_for_that_version() {
    let mut registry = Registry::default();
    let mut c = EventCounters::register(&mut registry);
    // The guard trips and brings 1.0.0 back.
    c.count(&Event::GuardTripped {
        version: v("1.1.0"),
        to: v("1.0.0"),
        reason: "5xx rate".into(),
    });
    c.count(&promoted("1.0.0", SwitchWhy::Rollback));
    // An operator rolls back later.
    c.count(&promoted("0.9.0", SwitchWhy::Rollback));
    // The guard trips while another switch is under way: that switch is no rollback, and the
    // next operator rollback is not the guard's.
    c.count(&Event::GuardTripped {
        version: v("1.1.0"),
        to: v("1.0.0"),
        reason: "5xx rate".into(),
    });
    c.count(&promoted("1.2.0", SwitchWhy::Operator));
    c.count(&promoted("1.0.0", SwitchWhy::Rollback));
    assert_eq!(get(&c.rollbacks), [1, 2], "guard, operator");
    assert_eq!(c.guard_trips.get(), 2);
    assert_eq!(get(&c.promotions), [0, 0, 1, 0, 0, 0]);
}

#[test]
fn the_exposition_parses_with_cumulative_buckets_and_no_score_before_a_verdict() {
    let stats = Arc::new(ProxyStats::default());
    let (commands, _) = tokio::sync::mpsc::channel(1);
    let (_status, status) = tokio::sync::watch::channel(Arc::default());
    let hooks: Arc<[Arc<WebhookStats>]> = vec![Arc::new(WebhookStats::new(
        1,
        "http://user:secret@hooks.example:9000/services/T0/B0/s3cret",
    ))]
    .into();
    hooks[0].dropped.fetch_add(3, Ordering::Relaxed);
    let handle = SupervisorHandle::new(commands, status);
    let recorder = Arc::new(Recorder::new(10));
    let (metrics, _) = Metrics::new(stats.clone(), recorder, handle, hooks);
    let ok = http::StatusCode::OK;
    stats.running.answered(ok, Duration::from_micros(1_000)); // on a bound: in it
    stats.running.answered(ok, Duration::from_micros(1_001));
    stats
        .running
        .answered(http::StatusCode::NOT_FOUND, Duration::from_secs(60));
    stats.running.unanswered();
    let text = metrics.render().unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
            .map(|x| x.value.clone())
    };
    let counter = |class| {
        sample(
            "understudy_responses_total",
            &[("role", "running"), ("class", class)],
        )
    };
    use prometheus_parse::Value;
    assert_eq!(
        sample(
            "understudy_webhook_dropped_total",
            &[("url", "http://hooks.example:9000 (#1)")]
        ),
        Some(Value::Counter(3.0)),
        "{text}"
    );
    assert!(
        !text.contains("secret") && !text.contains("/services"),
        "{text}"
    );
    assert_eq!(counter("2xx"), Some(Value::Counter(2.0)));
    assert_eq!(counter("4xx"), Some(Value::Counter(1.0)));
    assert_eq!(counter("none"), Some(Value::Counter(1.0)));
    let Some(Value::Histogram(buckets)) = sample(
        "understudy_request_duration_seconds",
        &[("role", "running")],
    ) else {
        panic!("no running histogram in\n{text}");
    };
    let at = |le: f64| buckets.iter().find(|b| b.less_than == le).unwrap().count;
    assert_eq!((at(0.001), at(0.0025), at(10.0)), (1.0, 2.0, 2.0));
    assert_eq!(
        at(f64::INFINITY),
        3.0,
        "the unanswered request has no latency"
    );
    assert!(
        sample("understudy_score", &[]).is_none(),
        "no verdict, no score"
    );
    assert!(sample("understudy_child_resident_memory_bytes", &[]).is_none());
}

/// The samples of an exposition, as Prometheus parses them.
fn parsed(text: &str) -> Vec<prometheus_parse::Sample> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).unwrap().samples
}

/// The value of the sample `name` whose labels are exactly `labels`.
fn exact(
    samples: &[prometheus_parse::Sample],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<prometheus_parse::Value> {
    samples
        .iter()
        .find(|x| {
            x.metric == name
                && x.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
        })
        .map(|x| x.value.clone())
}

/// Testing's answers to replayed requests show under `source="replay"`, its answers to live
/// copies under `source="live"`, each series with its own counts and latencies; running's
/// answers are all live; the recorder's size is a gauge.
#[test]
fn replayed_answers_have_a_source_label_of_their_own() {
    use prometheus_parse::Value;
    let stats = Arc::new(ProxyStats::default());
    let (commands, _) = tokio::sync::mpsc::channel(1);
    let (_status, status) = tokio::sync::watch::channel(Arc::default());
    let handle = SupervisorHandle::new(commands, status);
    let recorder = Arc::new(Recorder::new(10));
    for p in ["/a", "/b", "/c"] {
        let pq = http::uri::PathAndQuery::from_static(p);
        recorder.record(http::Method::GET, pq, http::HeaderMap::new());
    }
    let (metrics, _) = Metrics::new(stats.clone(), recorder, handle, Arc::new([]));
    let (ok, ms) = (http::StatusCode::OK, Duration::from_millis(1));
    stats.running.answered(ok, ms);
    stats.testing.answered(ok, ms);
    stats.testing.answered(http::StatusCode::BAD_GATEWAY, ms);
    for _ in 0..4 {
        stats
            .testing_replayed
            .answered(ok, Duration::from_millis(30));
    }
    stats.testing_replayed.unanswered();
    stats.replayed.fetch_add(5, Ordering::Relaxed);
    let text = metrics.render().unwrap();
    let s = parsed(&text);
    let responses = |role, source, class| {
        let labels = [("role", role), ("source", source), ("class", class)];
        exact(&s, "understudy_responses_total", &labels)
    };
    let c = Value::Counter;
    assert_eq!(responses("running", "live", "2xx"), Some(c(1.0)), "{text}");
    assert_eq!(
        responses("running", "replay", "2xx"),
        None,
        "never replayed"
    );
    assert_eq!(responses("testing", "live", "2xx"), Some(c(1.0)));
    assert_eq!(responses("testing", "live", "5xx"), Some(c(1.0)));
    assert_eq!(responses("testing", "live", "none"), Some(c(0.0)));
    assert_eq!(responses("testing", "replay", "2xx"), Some(c(4.0)));
    assert_eq!(responses("testing", "replay", "5xx"), Some(c(0.0)));
    assert_eq!(responses("testing", "replay", "none"), Some(c(1.0)));
    assert_eq!(
        exact(&s, "understudy_replayed_total", &[]),
        Some(c(5.0)),
        "every replay, answered or not, is counted once"
    );
    let histogram = |source| {
        let labels = [("role", "testing"), ("source", source)];
        let Some(Value::Histogram(b)) = exact(&s, "understudy_request_duration_seconds", &labels)
        else {
            panic!("no {source} histogram in\n{text}");
        };
        let at = |le: f64| b.iter().find(|x| x.less_than == le).unwrap().count;
        (at(0.001), at(0.05), at(f64::INFINITY))
    };
    assert_eq!(histogram("live"), (2.0, 2.0, 2.0));
    assert_eq!(histogram("replay"), (0.0, 4.0, 4.0));
    assert_eq!(
        exact(&s, "understudy_replay_recorded", &[]),
        Some(Value::Gauge(3.0))
    );
}

#[tokio::test]
async fn lagging_skips_the_lost_events_and_counts_them() {
    let (tx, rx) = broadcast::channel(2);
    let mut registry = Registry::default();
    let counters = EventCounters::register(&mut registry);
    let (rejections, missed) = (counters.rejections.clone(), counters.missed.clone());
    for n in 0..5 {
        let event = Event::Rejected {
            version: Version::new(1, n, 0),
            reasons: vec![],
        };
        let stamped = Stamped {
            seq: n + 1,
            at: String::new(),
            event,
        };
        tx.send(Arc::new(stamped)).unwrap();
    }
    let stop = CancellationToken::new();
    let task = tokio::spawn(count_events(rx, counters, stop.clone()));
    while rejections.get() + missed.get() < 5 {
        tokio::task::yield_now().await;
    }
    stop.cancel();
    task.await.unwrap();
    assert_eq!((rejections.get(), missed.get()), (2, 3));
}
