//! The base dir's size budget: archives (rollback targets) are deleted only when that brings the
//! base dir back under `MAX_BASE_SIZE`; what grows by itself is bounded or named.

use std::io::Write;
use std::time::Duration;

use crate::support::*;

/// v1.0.0 promoted over by v1.1.0 (operator), so `archive/app-1.0.0.zip` is there.
fn with_1_0_0_archived(name: &str, extra_env: &str) -> (Base, Understudy) {
    let (base, u) = start_with_testing(name, &format!("ROLLBACK_WINDOW=0\n{extra_env}"));
    let (code, _, err) = cli(&base, &["promote"]);
    assert_eq!(code, 0, "{err}");
    wait_until("1.0.0 archived", Duration::from_secs(30), || {
        let zip = base.path.join("archive/app-1.0.0.zip");
        (zip.is_file() && !base.path.join("app-1.0.0").exists()).then_some(())
    });
    (base, u)
}

/// Append `mib` MiB of zeros to `path`, as `head -c 40M /dev/zero >> path` does.
fn append_zeros(path: &std::path::Path, mib: usize) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        f.write_all(&chunk).unwrap();
    }
}

#[test]
fn an_app_whose_own_logs_fill_the_budget_costs_no_archive_and_is_named_once() {
    // 40 MiB written: not beside a test that measures free disk.
    let _disk = disk_lock();
    let (base, mut u) = with_1_0_0_archived("budget-logs", "MAX_BASE_SIZE=30MiB");
    // The app's own log, which only the app can rotate: the base dir is over budget by itself.
    let logs = base.path.join("running/logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Written beside the base dir and moved in whole: a collection running meanwhile (the one
    // after 1.0.0's archive) sees all of it or none, never a part.
    let aside = base.path.with_extension("app.log.1");
    append_zeros(&aside, 40);
    std::fs::rename(&aside, logs.join("app.log.1")).unwrap();
    // A refused build is filed away, and a collection follows every filing.
    base.drop_fixture("0.5.0", "");
    let line = wait_until("over_budget said", Duration::from_secs(20), || {
        u.log_text()
            .lines()
            .find(|l| l.contains("over_budget"))
            .map(str::to_string)
    });
    assert!(
        line.contains("over MAX_BASE_SIZE 30.0 MiB by")
            && line.contains("version folders (builds and instance logs) 40."),
        "{line}"
    );
    assert!(base.path.join("archive/app-1.0.0.zip").is_file());
    base.drop_fixture("0.6.0", "");
    wait_until("0.6.0 refused", Duration::from_secs(20), || {
        base.path
            .join("rejected/app-0.6.0.refused/reason.json")
            .is_file()
            .then_some(())
    });
    // The rollback target is still there, and works.
    let (code, _, err) = cli(&base, &["rollback", "1.0.0"]);
    assert_eq!(code, 0, "{err}");
    wait_until("1.0.0 running again", Duration::from_secs(30), || {
        (base.version_of("running").as_deref() == Some("app-1.0.0")).then_some(())
    });
    // 1.1.0, with the big log, is zipped away: within budget again, and said so.
    wait_until("within_budget said", Duration::from_secs(30), || {
        u.log_text().contains("within_budget").then_some(())
    });
    let log = u.log_text();
    assert_eq!(log.matches("over_budget").count(), 1, "said once:\n{log}");
    assert!(!log.contains("archive_deleted"), "{log}");
    u.stop();
}

#[test]
fn a_chatty_instance_stdout_is_rotated_and_the_child_writes_on_at_its_start() {
    // 32 MiB: an instance's stdout may hold 1 MiB.
    let (base, mut u, stdout) = running_wrote_5_mib("budget-stdout", "MAX_BASE_SIZE=32MiB");
    base.drop_fixture("0.5.0", "");
    wait_until("stdout rotated", Duration::from_secs(20), || {
        let len = std::fs::metadata(&stdout).ok()?.len();
        (len < 1 << 20 && stdout.with_file_name("stdout.1").is_file()).then_some(())
    });
    let kept = std::fs::metadata(stdout.with_file_name("stdout.1"))
        .unwrap()
        .len();
    assert!(kept <= 1 << 20, "stdout.1 holds the last 1 MiB: {kept}");
    // The fixture prints a line per request, through the descriptor it was started with.
    assert_eq!(u.get("/after-rotation").0, 200);
    let text = wait_until("the child's next line", Duration::from_secs(10), || {
        let text = std::fs::read(&stdout).ok()?;
        let s = String::from_utf8_lossy(&text).into_owned();
        s.contains("/after-rotation").then_some(text)
    });
    assert!(
        text.len() < 1 << 20 && !text.contains(&0),
        "the child wrote at the new start, leaving no hole: {} bytes, {:?}",
        text.len(),
        String::from_utf8_lossy(&text[..text.len().min(80)])
    );
    assert!(u.log_text().contains("starts afresh"));
    u.stop();
}

/// Set `path`'s modification time `days` days back, as `touch -d '<days> days ago'` does.
fn age(path: &std::path::Path, days: u64) {
    let when = std::time::SystemTime::now() - Duration::from_secs(days * 86_400);
    std::fs::File::open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[test]
fn the_collection_deletes_only_understudys_own_archives() {
    let base = Base::new("budget-foreign");
    base.write_env("MAX_BASE_SIZE=3MiB");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    // An operator's files beside the archives, older than any of them.
    let archive = base.path.join("archive");
    let backups = archive.join("operator-backups");
    std::fs::create_dir_all(&backups).unwrap();
    append_zeros(&backups.join("db-dump.sql"), 1);
    age(&backups, 30);
    std::fs::write(archive.join("NOTES.txt"), "keep me\n").unwrap();
    age(&archive.join("NOTES.txt"), 40);
    // An old archive, written beside and moved in whole: with it the base dir is over 3 MiB.
    let aside = base.path.with_extension("app-0.9.0.zip");
    append_zeros(&aside, 2);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&aside)
        .unwrap()
        .write_all(&[0u8; 600_000])
        .unwrap();
    age(&aside, 10);
    std::fs::rename(&aside, archive.join("app-0.9.0.zip")).unwrap();
    // A refused build is filed away, and a collection follows every filing.
    base.drop_fixture("0.5.0", "");
    // The deletion is logged just after it: wait for both (a busy machine showed the gap).
    wait_until("app-0.9.0.zip deleted", Duration::from_secs(20), || {
        let gone = !archive.join("app-0.9.0.zip").exists();
        (gone && u.log_text().contains("archive_deleted")).then_some(())
    });
    assert!(
        archive.join("NOTES.txt").is_file() && backups.join("db-dump.sql").is_file(),
        "{}",
        u.log_text()
    );
    let log = u.log_text();
    assert_eq!(log.matches("archive_deleted").count(), 1, "{log}");
    u.stop();
}

/// A hostile review's case: stdout was rotated only by the collection, once a minute, and a
/// chatty app wrote 66 MB past a 40 MiB budget's 1.25 MiB bound in between. It is looked at
/// every heartbeat now: no drop or filing needed, well within the minute.
#[test]
fn a_chatty_instance_stdout_is_rotated_within_heartbeats_not_the_minute() {
    let env = "MAX_BASE_SIZE=32MiB\nHEARTBEAT_EVERY=500ms";
    let (_base, mut u, stdout) = running_wrote_5_mib("budget-stdout-soon", env);
    wait_until("stdout rotated", Duration::from_secs(10), || {
        let len = std::fs::metadata(&stdout).ok()?.len();
        (len < 1 << 20 && stdout.with_file_name("stdout.1").is_file()).then_some(())
    });
    u.stop();
}

/// 1.0.0 serving under `env`, its `stdout` grown by 5 MiB as a chatty app's would: the base,
/// understudy and that file.
fn running_wrote_5_mib(name: &str, env: &str) -> (Base, Understudy, std::path::PathBuf) {
    let base = Base::new(name);
    base.write_env(env);
    let u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let stdout = std::fs::canonicalize(base.path.join("running"))
        .unwrap()
        .join("stdout");
    append_zeros(&stdout, 5);
    (base, u, stdout)
}
