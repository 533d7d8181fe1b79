//! Judging answers too large to compare, or by choice not compared (`DIFF_MAX_BODY`): too
//! little evidence waits and says why; left out by choice, the rest still judges.

use std::time::Duration;

use crate::judging::{promoted, FAST};
use crate::support::*;

/// Every answer over `DIFF_MAX_BODY`: the bodies are fingerprinted only, never compared, so the
/// build waits and says why and which key helps, past its stable window, and is not promoted
/// (issue: such pairs counted as compared answers, and an identical-looking build passed).
#[test]
fn a_build_whose_answers_are_all_too_large_to_compare_waits_and_says_why() {
    let base = Base::new("judge-all-large");
    base.write_env(&format!("{FAST}\nDIFF_MAX_BODY=1KiB"));
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let traffic = Traffic::on(u.addr, |_| "/__fixture/bytes/4096");
    base.drop_fixture("1.1.0", "");
    let (addr, _) = admin(&base);
    let waiting = |s: &serde_json::Value| {
        let why = s["verdict"]["reasons"][0].as_str().unwrap_or_default();
        s["verdict"]["version"] == "1.1.0" && why.contains("more answers are not compared")
    };
    let (seen, why) = wait_until(
        "the wait saying the bodies are not compared",
        Duration::from_secs(30),
        || {
            let (_, s) = api(addr, "GET", "/api/status", None, "");
            waiting(&s).then(|| {
                (
                    std::time::Instant::now(),
                    s["verdict"]["reasons"][0].clone(),
                )
            })
        },
    );
    let why = why.as_str().unwrap_or_default().to_string();
    assert!(
        why.contains("DIFF_MAX_BODY") && why.contains("`understudy promote`"),
        "{why}"
    );
    // Well past the 3 s stable window, it still waits: not promoted, not rejected.
    let rejected = base.path.join("rejected/app-1.1.0/reason.json");
    while seen.elapsed() < Duration::from_secs(6) {
        let (_, s) = api(addr, "GET", "/api/status", None, "");
        assert!(waiting(&s), "the wait changed: {s}");
        assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
        assert!(!rejected.exists(), "rejected on no evidence");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(traffic);
    u.stop();
}

/// `DIFF_MAX_BODY=0` is the operator judging answers by status and headers alone: no body is
/// waited for, and an identical build is promoted (this stop's evidence rule first made it wait
/// for ever on bodies it was told never to compare).
#[test]
fn with_bodies_never_compared_by_choice_a_build_is_promoted_on_the_rest() {
    let base = Base::new("judge-no-bodies");
    base.write_env(&format!("{FAST}\nDIFF_MAX_BODY=0"));
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let traffic = Traffic::on(u.addr, |_| "/__fixture/bytes/4096");
    base.drop_fixture("1.1.0", "");
    promoted(&base);
    drop(traffic);
    u.stop();
}

/// At `DIFF_MAX_BODY=0` headers are still compared, so testing's and the secondary's must be kept
/// too: they were dropped with the bodies while running's were kept, so every sampled answer
/// differed in `$content_type`. With the noise measured that read as "noise 100%"; without it
/// (`NOISE_CANCEL=off`, a set `MAX_BODY_DIFF`), an identical build was rejected.
#[test]
fn without_bodies_an_identical_build_has_the_same_headers() {
    let base = Base::new("judge-no-bodies-headers");
    let env = "DIFF_MAX_BODY=0\nNOISE_CANCEL=off\nMAX_BODY_DIFF=0.05";
    base.write_env(&format!("{FAST}\n{env}"));
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let traffic = Traffic::on(u.addr, |_| "/api/items");
    base.drop_fixture("1.1.0", "");
    promoted(&base);
    drop(traffic);
    let log = u.log_text();
    assert!(!log.contains("$content_type"), "{log}");
    u.stop();
}
