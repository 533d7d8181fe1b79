//! What a test needs of the machine it runs on: the shared disk, held one test at a time by
//! those that measure or fill it, and the rule for a test that cannot run here.

use std::io::Write;

/// Held by every test that measures free disk (the spill tests' `MIN_FREE_DISK` is set relative
/// to it) or writes tens of MiB to the shared filesystem (a large bundle, a log filling a budget):
/// one's writes then never move the line another measures against (a 400 MiB bundle unpacking
/// beside a spill test left it no room to spill, and it timed out).
static DISK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Take [`DISK`] for the rest of the test; a test that failed holding it does not fail the rest.
pub fn disk_lock() -> std::sync::MutexGuard<'static, ()> {
    DISK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a test that cannot run here must fail rather than skip: `require` (an
/// `UNDERSTUDY_REQUIRE_*` variable) set to anything but empty, `0` or `false`. Not `CI`: a
/// clone CI makes under a private home cannot be run by another user, and that is no defect.
pub fn must_run(require: &str) -> bool {
    std::env::var(require).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Fail `test`, which cannot run here because of `why`, when [`must_run`] says it must; else say
/// loudly that it was skipped (straight to stderr: the harness swallows a passing test's
/// `eprintln!`).
pub fn skip_or_fail(test: &str, require: &str, why: &str) {
    assert!(
        !must_run(require),
        "{test} cannot run here ({why}), and {require} says it must"
    );
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!! SKIPPED {test}: {why}. It was NOT tested (set {require}=1 to make this a failure). !!!!!\n"
    );
}
