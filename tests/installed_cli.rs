//! The conventions of an installed CLI: `understudy completions bash|zsh|fish` and `understudy man`
//! print what a packager installs, for every command `understudy --help` lists and none of the
//! hidden ones; bad input is clap's usage error (exit 2), as for every other command. The
//! operator commands end quietly (exit 0) on a closed stdout, `events` leaves out `scored`
//! unless `--all`, and `logs` shows every file the scorer reads.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::*;

/// `understudy <args>` to completion, without a base dir.
fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout_of(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "understudy {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The command names `understudy --help` lists under "Commands:".
fn listed_commands() -> Vec<String> {
    let help = stdout_of(&["--help"]);
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    for name in ["run", "demo", "promote", "rollback", "completions", "man"] {
        assert!(names.iter().any(|n| n == name), "{name} in --help: {help}");
    }
    names
}

/// How each shell's script names a command it offers after `understudy `.
fn offered(shell: &str, name: &str) -> String {
    match shell {
        "bash" => format!("understudy,{name})"),
        "zsh" => format!("'{name}:"),
        "fish" => format!("__fish_understudy_needs_command\" -f -a \"{name}\""),
        _ => unreachable!("{shell}"),
    }
}

#[test]
fn completions_for_bash_zsh_and_fish_offer_every_listed_command_and_no_hidden_one() {
    let names = listed_commands();
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout_of(&["completions", shell]);
        for name in &names {
            assert!(
                script.contains(&offered(shell, name)),
                "{shell} script offers {name}"
            );
        }
        for hidden in ["watchdog", "fixture-app"] {
            assert!(
                !script.contains(hidden),
                "{shell} script offers the hidden {hidden}"
            );
        }
    }
    assert!(stdout_of(&["completions", "zsh"]).starts_with("#compdef understudy"));
}

/// `completions --help` names every shell the argument accepts: it once said "bash, zsh or fish"
/// while powershell and elvish worked too.
#[test]
fn completions_help_names_every_shell_it_accepts() {
    let help = stdout_of(&["completions", "--help"]);
    let accepted: Vec<&str> = help
        .split_once("[possible values: ")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list.split(", ").collect())
        .unwrap_or_default();
    assert!(accepted.contains(&"powershell"), "{help}");
    let about = help.lines().next().unwrap_or_default();
    let listed = stdout_of(&["--help"]);
    let line = listed
        .lines()
        .find(|l| l.trim_start().starts_with("completions "))
        .unwrap_or_default();
    for shell in &accepted {
        assert!(about.contains(shell), "{shell} in {about:?}");
        assert!(line.contains(shell), "{shell} in {line:?}");
    }
}

#[test]
fn bash_accepts_the_completion_script_and_completes_with_it() {
    if Command::new("bash").arg("-c").arg("true").output().is_err() {
        eprintln!("skipped: no bash on this machine");
        return;
    }
    let base = Base::new("completions");
    let script = base.path.join("understudy.bash");
    std::fs::write(&script, stdout_of(&["completions", "bash"])).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    // What bash does on `understudy ro<TAB>` and `understudy completions <TAB>`.
    let complete = |words: &str, cword: usize| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source \"$0\"; COMP_WORDS=({words}); COMP_CWORD={cword}; \
                 _understudy understudy \"${{COMP_WORDS[$COMP_CWORD]}}\"; echo \"${{COMPREPLY[*]}}\""
            ))
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(complete("understudy ro", 1), "rollback");
    let shells = complete("understudy completions ''", 2);
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.split(' ').any(|s| s == shell), "{shell} in {shells}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error_naming_it_and_the_choices() {
    let out = run(&["completions", "tcsh"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "clap's usage error: {err}");
    assert!(out.stdout.is_empty(), "no script on a bad shell");
    assert!(
        err.contains("'tcsh'")
            && err.contains("bash")
            && err.contains("zsh")
            && err.contains("fish"),
        "names the value and the choices: {err}"
    );
}

#[test]
fn man_prints_a_roff_page_listing_every_command() {
    let page = stdout_of(&["man"]);
    let first = page.lines().next().unwrap_or_default();
    assert!(first.starts_with('.'), "roff from the first line: {first}");
    let th = page.find(".TH understudy 1").expect("a .TH header");
    let name = page.find(".SH NAME").expect("a NAME section");
    assert!(th < name, "the .TH header comes before any section");
    let commands = &page[page.find(".SH SUBCOMMANDS").expect("a SUBCOMMANDS section")..];
    for name in listed_commands().iter().filter(|n| *n != "help") {
        let entry = format!("understudy\\-{}(1)", name.replace('-', "\\-"));
        assert!(commands.contains(&entry), "man lists {name}");
    }
    // No page for `help` is written, so the page does not point to one.
    assert!(!commands.contains("understudy\\-help(1)"));
    assert!(!page.contains("watchdog"), "no hidden command in the page");
}

#[test]
fn man_dir_writes_the_page_of_every_command_it_lists() {
    let base = Base::new("man-pages");
    let dir = base.path.join("man1");
    stdout_of(&["man", "--dir", dir.to_str().unwrap()]);
    let main = std::fs::read_to_string(dir.join("understudy.1")).unwrap();
    assert_eq!(
        main,
        stdout_of(&["man"]),
        "understudy.1 is what `man` prints"
    );
    for name in listed_commands().iter().filter(|n| *n != "help") {
        let page = std::fs::read_to_string(dir.join(format!("understudy-{name}.1")))
            .unwrap_or_else(|e| panic!("understudy-{name}.1: {e}"));
        assert!(
            page.contains(&format!(".TH understudy-{name} 1")),
            "{name}: {page}"
        );
    }
    // A directory that cannot be made: a message naming it, exit 1, no panic.
    let blocked = base.path.join("a-file");
    std::fs::write(&blocked, "").unwrap();
    let out = run(&["man", "--dir", blocked.join("man1").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("a-file/man1") && err.contains("--dir"),
        "{err}"
    );
}

#[test]
fn a_stdout_that_refuses_the_script_ends_in_a_message_not_a_panic() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("skipped: no /dev/full on this machine");
        return;
    };
    let out = Command::new(BIN)
        .args(["completions", "bash"])
        .stdout(full)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write the completion script to stdout") && !err.contains("panicked"),
        "{err}"
    );
}

/// `understudy events | head -1`: the reader gone is a normal end (exit 0, `verdict` its
/// verdict's code), not a panic (101), for every command that prints; the pipe here is closed before the first line, so the first
/// write already finds it closed.
#[test]
fn a_closed_stdout_ends_every_printing_command_quietly_with_exit_0() {
    let (base, mut u) = start_with_testing("cli-closed-stdout", "");
    for args in [
        &["events"][..],
        &["events", "--follow"],
        &["events", "--all"],
        &["status"],
        &["status", "--json"],
        &["verdict"],
        &["history"],
        &["schedule"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let child = Command::new(BIN)
            .args(args)
            .arg("--base")
            .arg(&base.path)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (code, _, err) = cli_finished(child, Duration::from_secs(20));
        // `verdict` keeps its verdict's code (wait: 3), which is what a script reads of it.
        let want = if args[0] == "verdict" { 3 } else { 0 };
        assert_eq!(code, Some(want), "understudy {args:?}: {err}");
        assert!(!err.contains("panicked"), "understudy {args:?}: {err}");
    }
    u.stop();
}

/// Every `scored` event (one per EVALUATE_EVERY) would push the decisions out of the last 100:
/// `events` leaves them out (the latest 100 others, however many came), `--all` keeps them, and
/// `--follow` leaves them out too.
#[test]
fn events_leave_out_scored_unless_all_and_keep_the_decisions_in_reach() {
    let (base, mut u) = start_with_testing("cli-events-scored", "EVALUATE_EVERY=100ms");
    let json_events = |args: &[&str]| -> Vec<serde_json::Value> {
        let (code, out, err) = cli(&base, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // The last 100 of every event are all `scored` now.
    wait_until(
        "100 scored events in a row",
        Duration::from_secs(60),
        || {
            let all = json_events(&["events", "--all", "--json"]);
            (all.len() == 100 && all.iter().all(|e| e["event"] == "scored")).then_some(())
        },
    );
    let decisions = json_events(&["events", "--json"]);
    assert!(!decisions.is_empty(), "the events before the scored ones");
    assert!(
        decisions.iter().all(|e| e["event"] != "scored"),
        "{decisions:?}"
    );
    // Following: a decision comes through, the scored events around it do not.
    let mut follow = KillOnDrop::new(spawn_cli(&base, &["events", "--follow"]));
    let (rx, reader) = stdout_lines(&mut follow);
    let (code, _, err) = cli(&base, &["pause"]);
    assert_eq!(code, 0, "{err}");
    let what = "no paused event followed";
    let mut seen = lines_until(&rx, " paused", Duration::from_secs(20), what);
    let _ = follow.kill();
    let _ = follow.wait();
    reader.join().unwrap();
    seen.extend(rx.try_iter());
    assert!(!seen.iter().any(|l| l.contains(" scored ")), "{seen:?}");
    u.stop();
}

/// `logs` shows what the scorer reads: stderr (a traceback) and the plain files of `logs/`, each
/// line marked with its file; a base dir that is not there is exit 2 naming it, a role nobody
/// plays exit 1 saying so, and `--json` (it reads files, not the API) a usage error.
#[test]
fn logs_show_stderr_and_plain_log_files_and_say_when_there_is_nothing_to_show() {
    let base = Base::new("cli-logs");
    base.write_env("");
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    let script = format!(
        "#!/bin/sh\necho 'Traceback on stderr' >&2\n{}",
        Base::fixture_script("1.1.0", "")
            .strip_prefix("#!/bin/sh\n")
            .unwrap()
    );
    base.drop_script("1.1.0", &script);
    base.wait_testing();
    std::fs::write(base.path.join("testing/logs/app.log"), "a plain line\n").unwrap();
    let (code, out, err) = cli(&base, &["logs", "testing"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().any(|l| l == "[stderr] Traceback on stderr"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l == "[logs/app.log] a plain line"),
        "{out}"
    );
    let (code, out, err) = cli(&base, &["logs", "testing", "--json"]);
    assert_eq!(code, 2, "a usage error: {out}");
    assert!(err.contains("--json"), "{err}");
    // Nothing under test: refused, saying so.
    assert_eq!(cli(&base, &["abort"]).0, 0);
    wait_until("testing to go", Duration::from_secs(10), || {
        base.link("testing").is_none().then_some(())
    });
    let (code, out, err) = cli(&base, &["logs", "testing"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("there is no testing instance"), "{err}");
    // The verdict says the one reason, with no empty part before it; `wait` exits 3.
    let (code, out, _) = cli(&base, &["verdict"]);
    assert_eq!(
        (code, out.as_str()),
        (3, "wait (score 0): no build is being tested\n")
    );
    // A schedule that is not there points to the command that lists them.
    let (code, _, err) = cli(&base, &["schedule", "cancel", "3"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("list them with `understudy schedule`"),
        "{err}"
    );
    // A base dir that is not there.
    let nowhere = base.path.join("nowhere");
    let out = Command::new(BIN)
        .args(["logs", "testing", "--base"])
        .arg(&nowhere)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&*nowhere.to_string_lossy()), "{err}");
    u.stop();
}
