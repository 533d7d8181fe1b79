//! The conventions of an installed CLI: `understudy completions bash|zsh|fish` and `understudy man`
//! print what a packager installs, for every command `understudy --help` lists and none of the
//! hidden ones; bad input is clap's usage error (exit 2), as for every other command.

use std::process::{Command, Output};

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
