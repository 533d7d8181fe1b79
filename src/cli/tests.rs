use std::io::Write;

use serde_json::json;

use super::events::Lines;
use super::logs::{copy_marked, copy_new};
use super::query_value;
use super::text::{differs_text, status_text, verdict_text};

#[test]
fn status_shows_a_pre_promote_refusal_and_the_transaction_only_when_present() {
    let quiet = json!({"running": {"version": "1.0.0"}, "testing": {"version": "1.1.0"},
                       "hook_failure": null, "transaction": null, "counters": {}});
    let text = status_text(&quiet);
    assert!(
        !text.contains("refused") && !text.contains("switch"),
        "{text}"
    );
    let mut refused = quiet.clone();
    refused["hook_failure"] = json!("1.1.0: PRE_PROMOTE refused it: exited with 1");
    let text = status_text(&refused);
    let line = "refused   1.1.0: PRE_PROMOTE refused it: exited with 1; it stays testing: promote again once fixed, or abort";
    assert!(text.lines().any(|l| l == line), "{text}");
    let mut switching = quiet;
    switching["transaction"] = json!({"kind": "promotion", "version": "1.1.0",
        "from": "1.0.0", "step": "pre_promote", "why": "operator"});
    let text = status_text(&switching);
    let line = "switch    promotion to 1.1.0 from 1.0.0 under way: pre promote (operator)";
    assert!(text.lines().any(|l| l == line), "{text}");
}

/// Running started again (after a crash, or at understudy's start) showed as `starting` alone,
/// though users' requests waited for it: a line now says so, and how long each may wait.
#[test]
fn status_says_users_wait_for_running_restarted_after_a_crash() {
    use crate::supervisor::control::{RestartHeldStatus, Status};
    let status = Status {
        restart_held: Some(RestartHeldStatus {
            version: semver::Version::parse("1.0.0").unwrap(),
            held_up_to_secs: 10.0,
        }),
        ..Default::default()
    };
    let text = status_text(&serde_json::to_value(&status).unwrap());
    let line =
        "held      1.0.0 is starting: users' requests wait for it, each up to 10 s, then 503";
    assert!(text.lines().any(|l| l == line), "{text}");
    let text = status_text(&serde_json::to_value(Status::default()).unwrap());
    assert!(!text.contains("held "), "{text}");
}

/// While the guard brings a version back, `running none` alone left users' waits unexplained:
/// the rollback (what, from what, why, how far) and the held requests are each a line, as are a
/// rollback that could not be carried out and the watch. The JSON is the supervisor's own.
#[test]
fn status_says_the_guards_rollback_and_the_requests_held_for_it() {
    use crate::supervisor::control::{GuardRollbackStatus, RollbackStep, Status};
    let version = |s: &str| semver::Version::parse(s).unwrap();
    let status = Status {
        guard_rollback: Some(GuardRollbackStatus {
            version: version("1.0.0"),
            from: version("1.1.0"),
            reason:
                "failed within ROLLBACK_WINDOW: exited (exit status: 4); stderr ends with:\n‹boom›"
                    .into(),
            step: RollbackStep::Starting,
            down_since: Some("2026-12-01T00:00:07Z".into()),
            requests_held: true,
            held_up_to_secs: 60.0,
        }),
        ..Default::default()
    };
    let mut v = serde_json::to_value(&status).unwrap();
    let text = status_text(&v);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "running   none", "{text}");
    assert_eq!(
        lines[1],
        "guard     rolling back from 1.1.0 to 1.0.0 (1.0.0 is starting): failed within ROLLBACK_WINDOW: exited (exit status: 4); stderr ends with: ‹boom›",
        "{text}"
    );
    assert_eq!(
        lines[2],
        "held      users' requests wait for 1.0.0, each up to 60 s (UPSTREAM_TIMEOUT), then 503; 1.1.0 crashed at 2026-12-01T00:00:07Z and is not restarted",
        "{text}"
    );
    v["guard_rollback"]["requests_held"] = json!(false);
    assert!(!status_text(&v).contains("held "), "{}", status_text(&v));
    v["guard_rollback"] = json!(null);
    v["guard_failed"] = json!("the guard's rollback from 1.1.0 to 1.0.0 could not start (gone); its watch of 1.1.0 is over, and 1.1.0 serves on");
    let text = status_text(&v);
    let line = "guard     the guard's rollback from 1.1.0 to 1.0.0 could not start (gone); its watch of 1.1.0 is over, and 1.1.0 serves on";
    assert!(text.lines().any(|l| l == line), "{text}");
}

#[test]
fn following_a_log_reads_on_and_starts_over_when_it_is_truncated_or_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stdout");
    let mut out = Vec::new();
    assert_eq!(
        copy_new(&file, None, &mut out).unwrap(),
        None,
        "not there yet"
    );
    std::fs::write(&file, "one\ntwo\n").unwrap();
    let at = copy_new(&file, None, &mut out).unwrap();
    assert_eq!(at.unwrap().offset, 8);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .and_then(|mut f| f.write_all(b"three\n"))
        .unwrap();
    let at = copy_new(&file, at, &mut out).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), "one\ntwo\nthree\n");
    // Truncated, then shorter than what was read: from the start.
    std::fs::write(&file, "four\n").unwrap();
    let at = copy_new(&file, at, &mut out).unwrap();
    // Rotated: another file under the name, even one longer than what was read.
    std::fs::rename(&file, dir.path().join("stdout.1")).unwrap();
    std::fs::write(&file, "five and more than before\n").unwrap();
    let at = copy_new(&file, at, &mut out).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        "one\ntwo\nthree\nfour\nfive and more than before\n"
    );
    assert_eq!(copy_new(&file, at, &mut out).unwrap(), at, "nothing new");
}

#[test]
fn query_values_are_percent_encoded_but_unreserved_characters() {
    assert_eq!(
        query_value("2026-12-01 03:00:00+02:00"),
        "2026-12-01%2003%3A00%3A00%2B02%3A00"
    );
    assert_eq!(query_value("aZ09-._~"), "aZ09-._~");
    assert_eq!(query_value("é&#%"), "%C3%A9%26%23%25");
}

#[test]
fn status_names_the_differences_that_count_or_are_unsure_and_no_others() {
    let row = |path: &str, judgement: &str| {
        json!({"endpoint": "GET /items", "path": path, "kind": "value", "rate": 0.25,
               "of": 40, "judgement": judgement, "running": "1", "testing": "2"})
    };
    let verdict = json!({"diffs": [
        row("$.price", "counts"), row("$.stock", "unsure"),
        row("$.at", "noise"), row("$.version", "expected"),
    ]});
    let text = differs_text(&verdict);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "differs   GET /items $.price value: 25.0% of 40 (counts); running 1 vs testing 2",
            "differs   GET /items $.stock value: 25.0% of 40 (unsure); running 1 vs testing 2",
        ]
    );
    assert_eq!(differs_text(&json!({})), "");
}

#[test]
fn a_character_split_across_two_reads_of_the_event_stream_comes_out_whole() {
    let text = "data: {\"summary\":\"1.0.0 → 1.1.0\"}\n";
    let bytes = text.as_bytes();
    let arrow = text.find('→').unwrap();
    let mut lines = Lines::new(1024);
    // Cut inside the arrow's three bytes, at each place.
    for cut in [arrow + 1, arrow + 2] {
        let mut got = lines.push(&bytes[..cut]);
        assert!(got.is_empty(), "{got:?}");
        got.extend(lines.push(&bytes[cut..]));
        assert_eq!(got, [text.trim_end()]);
    }
    // Several lines in one read, CRLF endings, and a line begun in one read, ended in the next.
    let got = lines.push(b"a\r\nb\nc");
    assert_eq!(got, ["a", "b"]);
    assert_eq!(lines.push("\u{e9}\n".as_bytes()), ["c\u{e9}"]);
}

#[test]
fn a_line_of_the_event_stream_past_the_bound_is_dropped_and_the_next_is_whole() {
    let mut lines = Lines::new(8);
    assert!(lines.push(b"12345").is_empty());
    assert!(lines.push(b"6789").is_empty(), "past 8 bytes: dropped");
    assert!(lines.push(b"more of it").is_empty());
    assert_eq!(lines.push(b" end\nok\n"), ["ok"]);
    assert_eq!(lines.skipped, 1);
    assert_eq!(lines.push(b"12345678\n"), ["12345678"], "8 bytes fit");
}

/// `understudy history` says a canary step's share and its end, and who answered at the instant
/// asked, as `/api/history` gives them.
#[test]
fn history_text_says_canary_shares() {
    let v = serde_json::json!({
        "at": "2026-12-01T02:30:00Z",
        "serving": "1.0.0",
        "canary": {"version": "1.1.0", "percent": 10.0},
        "switches": [
            {"at": "2026-12-01T01:00:00Z", "from": null, "to": "1.0.0", "why": "first"},
            {"at": "2026-12-01T02:00:00Z", "from": "1.0.0", "to": "1.0.0", "why": "canary",
             "share": {"version": "1.1.0", "percent": 10.0}},
            {"at": "2026-12-01T03:00:00Z", "from": "1.0.0", "to": "1.0.0", "why": "canary",
             "share": {"version": "1.1.0", "percent": 0.0}},
        ],
    });
    assert_eq!(
        super::text::history_text(&v),
        "2026-12-01T01:00:00Z  nothing -> 1.0.0  (first)\n\
         2026-12-01T02:00:00Z  1.1.0 serves 10 % of users, 1.0.0 the rest  (canary step)\n\
         2026-12-01T03:00:00Z  1.0.0 serves every user again  (canary of 1.1.0 ended)\n\
         at 2026-12-01T02:30:00Z: 1.0.0 served users, and 1.1.0 10 % of them (a canary step)\n"
    );
}

/// With nothing under test the verdict has no evidence text and no pairs: no empty part before
/// the reason (it read `wait (score 0), : no build is being tested`).
#[test]
fn a_verdict_without_a_build_reads_as_one_reason() {
    let none = json!({"verdict": "wait", "score": 0, "reasons": ["no build is being tested"],
                      "version": null, "pairs": 0, "evidence": {"text": ""}});
    assert_eq!(
        verdict_text(&none),
        "wait (score 0): no build is being tested"
    );
    let fresh = json!({"verdict": "wait", "score": 0, "reasons": ["1.1.0 is not scored yet"],
                       "version": "1.1.0", "pairs": 0, "evidence": {"text": ""}});
    assert_eq!(
        verdict_text(&fresh),
        "wait (score 0), 0 pairs: 1.1.0 is not scored yet"
    );
}

/// The CLI's `schedule cancel` and the API's `DELETE /api/schedule/<id>` both answer with this.
#[test]
fn an_unknown_schedule_names_the_cli_command_that_lists_them() {
    let text = crate::supervisor::CommandError::UnknownSchedule(3).to_string();
    assert_eq!(
        text,
        "no schedule #3: list them with `understudy schedule` (GET /api/schedule)"
    );
}

/// stderr's lines come marked, whole: a line not ended yet waits while following (so another
/// file's lines never land inside it), and is written, ended, on the last read.
#[test]
fn a_marked_log_is_copied_a_whole_line_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stderr");
    std::fs::write(
        &file,
        "Traceback (most recent call last):\n  File \"app.py\"",
    )
    .unwrap();
    let mut out = Vec::new();
    let at = copy_marked(&file, None, "[stderr] ", false, &mut out).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        "[stderr] Traceback (most recent call last):\n"
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .and_then(|mut f| f.write_all(b", line 1\nValueError"))
        .unwrap();
    let at = copy_marked(&file, at, "[stderr] ", true, &mut out).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        "[stderr] Traceback (most recent call last):\n\
         [stderr]   File \"app.py\", line 1\n\
         [stderr] ValueError\n"
    );
    assert_eq!(at.unwrap().offset, std::fs::metadata(&file).unwrap().len());
}

/// Users told 503 while a first build started showed as `traffic 0 requests`: the answers
/// understudy gave itself are counted on the same line, when there are any.
#[test]
fn status_counts_the_answers_understudy_gave_itself() {
    let mut v = json!({"running": null, "testing": null, "counters": {
        "requests": 4, "mirrored": 2, "dropped_copies": 0, "unavailable": 3, "bad_gateway": 1,
        "gateway_timeout": 0}});
    let text = status_text(&v);
    let line = "traffic   4 requests, 2 mirrored, 0 copies dropped; understudy answered 3 with 503, 1 with 502";
    assert!(text.lines().any(|l| l == line), "{text}");
    v["counters"]["unavailable"] = json!(0);
    v["counters"]["bad_gateway"] = json!(0);
    let text = status_text(&v);
    let line = "traffic   4 requests, 2 mirrored, 0 copies dropped";
    assert!(text.lines().any(|l| l == line), "{text}");
}

/// Running waiting out a backoff showed as `1.0.0 is restarting` alone, though users' 503s said
/// when it is started again: status says how many failures and when too.
#[test]
fn status_says_when_running_down_after_failures_is_started_again() {
    let v = json!({"running": null, "testing": null, "counters": {}, "restarting": "1.0.0",
        "restart_due": {"failures": 6, "at": "2026-12-07T03:00:30Z"}});
    let text = status_text(&v);
    let line =
        "          1.0.0 is restarting (6 failures in a row; starts again at 2026-12-07T03:00:30Z)";
    assert!(text.lines().any(|l| l == line), "{text}");
}

/// `installing` fills the label column: it once ran into its version (`installing1.6.0`).
#[test]
fn status_keeps_a_space_after_installing() {
    let v = json!({"running": null, "testing": null, "counters": {}, "installing": "1.6.0",
        "pending": "1.5.0"});
    let text = status_text(&v);
    assert!(text.lines().any(|l| l == "installing 1.6.0"), "{text}");
    assert!(text.lines().any(|l| l == "pending   1.5.0"), "{text}");
}

/// A build waiting to install (a disk too short, say) shows why beside `installing`, when the
/// status says it (`installing_waiting`): it showed the version alone.
#[test]
fn status_shows_why_an_install_waits() {
    let v = json!({"running": null, "testing": null, "counters": {}, "installing": "1.6.0",
        "installing_waiting": "the disk is short"});
    let text = status_text(&v);
    let line = "installing 1.6.0 (waiting: the disk is short)";
    assert!(text.lines().any(|l| l == line), "{text}");
}
