//! The dashboard (`GET /` on the admin listener) in a real headless browser: Debian's chromium,
//! driven from its command line (`--dump-dom`, `--screenshot`), each run bounded by a deadline
//! and followed by a check that none of its processes is left.
//!
//! Without chromium the test is skipped with a loud message, unless `UNDERSTUDY_REQUIRE_BROWSER`
//! (which `.ci/run` sets) or `CI` is set: then it fails. `UNDERSTUDY_SCREENSHOT=1` copies the
//! screenshot taken while a build is tested to `docs/dashboard.png`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// How long one chromium run may take before it is killed.
const CHROMIUM_LIMIT: Duration = Duration::from_secs(60);

#[test]
fn dashboard_shows_running_and_testing_and_follows_a_promotion() {
    let Some(chromium) =
        chromium_or_skip("dashboard_shows_running_and_testing_and_follows_a_promotion")
    else {
        return;
    };
    let (base, u) = start_with_testing(
        "dashboard",
        "EVALUATE_EVERY=200ms\nMIN_MIRRORED=20\nROLLBACK_WINDOW=0",
    );
    let (addr, token) = admin(&base);

    the_page_needs_no_token_and_changes_nothing(addr);
    // Some traffic, so that the scorer has pairs to score and the page has a score to draw.
    for i in 0..30 {
        assert_eq!(u.get(&format!("/page/{}", i % 3)).0, 200);
    }
    // And until the body's difference is in (bodies are diffed apart from the pairs' count, so
    // a slow machine, a browser's cold first start, showed the header's alone).
    wait_until(
        "scores over 20 pairs, bodies compared",
        Duration::from_secs(20),
        || {
            let (_, st) = api(addr, "GET", "/api/status", None, "");
            let pairs = st["verdict"]["pairs"].as_u64() >= Some(20);
            (pairs && st["verdict"]["diffs"].to_string().contains("line[*]")).then_some(())
        },
    );

    let mut browser = Browser::new(chromium);
    let url = format!("http://{addr}/");
    while_tested_it_shows_both_and_hides_values(&mut browser, &url, &base);
    // A screenshot while 1.1.0 is tested (docs/dashboard.png with UNDERSTUDY_SCREENSHOT=1).
    let png = browser.screenshot(&url);
    if std::env::var("UNDERSTUDY_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::copy(&png, &docs).unwrap();
        eprintln!("dashboard screenshot written to {}", docs.display());
    }

    it_follows_a_promotion(&mut browser, &url, &base, addr, &token);
}

/// `/` is the page: HTML under a strict content security policy, and no POST.
fn the_page_needs_no_token_and_changes_nothing(addr: SocketAddr) {
    // The page needs no token and changes nothing.
    let head = raw_get(addr, "/");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/html"), "{head}");
    assert!(
        lower.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    let (code, _) = api(addr, "POST", "/", None, "");
    assert_eq!(code, 405, "POST / is not a thing");
}

/// While 1.1.0 is tested, without a token: both versions, running's port, the verdict and its
/// parts, the differences with values hidden, the events, and the score drawn over time.
fn while_tested_it_shows_both_and_hides_values(browser: &mut Browser, url: &str, base: &Base) {
    let dom = browser.dump_dom(url);
    assert_eq!(
        shown(&dom, "running-version").as_deref(),
        Some("1.0.0"),
        "{dom}"
    );
    assert_eq!(
        shown(&dom, "testing-version").as_deref(),
        Some("1.1.0"),
        "{dom}"
    );
    let (port, _) = base.wait_instance_info("running");
    assert_eq!(shown(&dom, "running-port"), Some(port.to_string()), "{dom}");
    assert_eq!(shown(&dom, "verdict").as_deref(), Some("wait"), "{dom}");
    assert!(dom.contains(">5xx<"), "the parts of the score: {dom}");
    assert!(
        dom.contains(">line[*]<") && dom.contains(">expected<"),
        "the differences table: the text answers differ by their versions only: {dom}"
    );
    assert!(
        dom.contains("(hidden: send the token) → (hidden: send the token)")
            && !dom.contains("hello from 1.1.0"),
        "without a token the page hides the answers' values: {dom}"
    );
    assert!(dom.contains(">scored<"), "the recent events: {dom}");
    assert!(
        dom.contains("<polyline"),
        "the score drawn over time: {dom}"
    );
}

/// Promoted over TCP with the token, as the page's button does: the page follows.
fn it_follows_a_promotion(
    browser: &mut Browser,
    url: &str,
    base: &Base,
    addr: SocketAddr,
    token: &str,
) {
    // Promote (over TCP, with the token, as the page's button does) and watch the page follow.
    let (code, body) = api(addr, "POST", "/api/promote", Some(token), "");
    assert_eq!(code, 200, "{body}");
    wait_until("1.1.0 running", Duration::from_secs(20), || {
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let dom = loop {
        let dom = browser.dump_dom(url);
        if shown(&dom, "running-version").as_deref() == Some("1.1.0") || Instant::now() > deadline {
            break dom;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        shown(&dom, "running-version").as_deref(),
        Some("1.1.0"),
        "{dom}"
    );
    assert_eq!(
        shown(&dom, "testing-version").as_deref(),
        Some("none"),
        "{dom}"
    );
    assert!(
        dom.contains(">promoted<"),
        "the promotion among the events: {dom}"
    );
}

/// Chromium, or None after saying loudly that `test` is skipped; without it a run that must test
/// the dashboard (`UNDERSTUDY_REQUIRE_BROWSER` or `CI` set) fails.
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(c) = find_chromium() {
        return Some(c);
    }
    let required = ["UNDERSTUDY_REQUIRE_BROWSER", "CI"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false"));
    assert!(
        !required,
        "chromium is not installed, and UNDERSTUDY_REQUIRE_BROWSER or CI says the dashboard \
         test must run: apt-get install chromium (or set CHROMIUM=/path/to/chromium)"
    );
    // Straight to stderr: `eprintln!` of a passing test is swallowed by the test harness.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!! SKIPPED {test}: chromium is not installed (apt-get install chromium, or set \
         CHROMIUM=/path/to/chromium). The dashboard was NOT tested. !!!!!\n"
    );
    None
}

#[test]
fn dashboard_shows_a_canary_step_and_both_sides_answers() {
    let Some(chromium) = chromium_or_skip("dashboard_shows_a_canary_step_and_both_sides_answers")
    else {
        return;
    };
    let base = Base::new("dashboard-canary");
    base.write_env(
        "STABLE_WINDOW=2s\nMIN_MIRRORED=20\nEVALUATE_EVERY=200ms\nROLLBACK_WINDOW=0\nCANARY_STEPS=30%\nCANARY_STEP_WINDOW=10m",
    );
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture("1.1.0", "");
    let (addr, _) = admin(&base);
    // Users from many addresses are one key (ip): one user, on one side; traffic until the step
    // says why it waits.
    let one_side = "users all land on one side";
    wait_until("the canary step", Duration::from_secs(60), || {
        for i in 0..10 {
            let _ = u.get(&format!("/page/{}", i % 3));
        }
        let (_, st) = api(addr, "GET", "/api/status", None, "");
        let waiting = st["canary"]["waiting"].as_str().unwrap_or_default();
        waiting.contains(one_side).then_some(())
    });
    let mut browser = Browser::new(chromium);
    let dom = browser.dump_dom(&format!("http://{addr}/"));
    assert!(
        dom.contains("Canary step 1 of 1: 1.1.0 serves 30 % of users"),
        "the step in the notes: {dom}"
    );
    assert!(dom.contains("vs running"), "both sides' answers: {dom}");
    assert!(
        dom.contains(". Waiting: ") && dom.contains("CANARY_STICKY=header:X-Real-IP"),
        "why the step waits, in its note: {dom}"
    );
    u.stop();
}

/// `$CHROMIUM`, or `chromium` on the `PATH`.
fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
}

/// Chromium with a fresh profile and home of its own (so nothing is written to the user's), run
/// once per page view.
struct Browser {
    exe: PathBuf,
    dir: tempfile::TempDir,
    runs: u32,
}

impl Browser {
    fn new(exe: PathBuf) -> Browser {
        let dir = tempfile::Builder::new()
            .prefix("dashboard-browser-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        Browser { exe, dir, runs: 0 }
    }

    /// The DOM once the page's scripts ran on what it arrived with. (`--virtual-time-budget`
    /// cannot be used: the page's open event stream keeps virtual time from ever running out.)
    fn dump_dom(&mut self, url: &str) -> String {
        String::from_utf8(self.run(&["--dump-dom", url])).unwrap()
    }

    /// A 1280×900 screenshot; the path of the PNG.
    fn screenshot(&mut self, url: &str) -> PathBuf {
        let png = self.dir.path().join("dashboard.png");
        let shot = format!("--screenshot={}", png.display());
        self.run(&[&shot, "--window-size=1280,900", "--hide-scrollbars", url]);
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", png.display());
        assert!(bytes.len() > 10_000, "the screenshot is not blank");
        png
    }

    /// One headless run in its own process group; stdout. Killed at [`CHROMIUM_LIMIT`]; whatever
    /// it leaves is killed too, and the test fails if any of its processes survives.
    fn run(&mut self, args: &[&str]) -> Vec<u8> {
        self.runs += 1;
        let home = self.dir.path().join(format!("run-{}", self.runs));
        std::fs::create_dir_all(&home).unwrap();
        let log = home.join("chromium.log");
        let mut child = Command::new(&self.exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!(
                "--user-data-dir={}",
                home.join("profile").display()
            ))
            .args(args)
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_CACHE_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.exe.display()));
        let group = child.id() as i32;
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            out
        });
        let deadline = Instant::now() + CHROMIUM_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Whatever is left of the group (the main process, on a timeout; helpers otherwise).
        unsafe {
            libc::killpg(group, libc::SIGKILL);
        }
        if status.is_none() {
            let _ = child.wait();
        }
        // Before reading to the end: a helper outside the group could hold stdout open.
        let left = wait_gone(&home, group);
        assert!(
            left.is_empty(),
            "chromium processes survived their run: {left:?}"
        );
        let out = reader.join().unwrap();
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        match status {
            None => panic!(
                "chromium {args:?} took over {CHROMIUM_LIMIT:?} and was killed; its log:\n{log}"
            ),
            Some(s) if !s.success() => panic!("chromium {args:?} failed ({s}); its log:\n{log}"),
            Some(_) => out,
        }
    }
}

/// Wait (briefly) until no live process is in `group` or names `dir` (chromium's crash handler
/// leaves the group but names the home it was given); kill those that linger; the survivors.
fn wait_gone(dir: &Path, group: i32) -> Vec<(i32, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = browser_processes(dir, group);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        for (pid, _) in &left {
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Live (not zombie) processes in `group` or with `dir` in their command line.
fn browser_processes(dir: &Path, group: i32) -> Vec<(i32, String)> {
    let dir = dir.to_string_lossy();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if !process_running(pid) {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        let in_group = unsafe { libc::getpgid(pid) } == group;
        if in_group || cmd.contains(dir.as_ref()) {
            out.push((pid, cmd));
        }
    }
    out
}

/// The text of the element with this id in a dumped DOM (one without markup inside).
fn shown(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let rest = &dom[at..];
    let open = rest.find('>')? + 1;
    let len = rest[open..].find('<')?;
    Some(rest[open..open + len].trim().to_string())
}

/// A GET's status line and headers.
fn raw_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}
