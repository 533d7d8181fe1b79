//! Log scanning: the `regex` crate against `regex-lite` on 1 M generated log lines, with the
//! defaults of PLAIN_LOG_ERROR_REGEX and PLAIN_LOG_WARN_REGEX (from `understudy::config::KEYS`).
//!
//!   cargo bench --profile dist --bench logscan            # 1 000 000 lines, 5 runs per engine
//!   cargo bench --profile dist --bench logscan -- 200000 3
//!
//! Three measurements, each the median of the runs (the engines alternate within each run, so
//! a neighbour's load hits both alike):
//! - **regex only**: every line (plain and JSON) through the two regexes as `LevelRules::classify`
//!   does for plain lines: `is_match(error)`, else `is_match(warn)`;
//! - **scorer path**: the scorer's own code (`understudy::score::logs`), where a JSON line is
//!   judged by its level field and only the other lines reach the regexes: for `regex`,
//!   `LevelRules::classify` itself; for `regex-lite`, the same `json_level` and then its regexes;
//! - **non-ASCII**: regex only, on the lines with a non-ASCII character (`µs`, `josé`). The
//!   `regex` crate's `\b` is Unicode-aware, and its lazy DFA can give up on such a haystack and
//!   fall back to a slower engine; `regex-lite`'s `\b` is ASCII-only.
//!
//! Both engines must give the same counts; the bench panics otherwise.

use std::hint::black_box;
use std::time::{Duration, Instant};

use understudy::score::logs::{json_level, Level, LevelRules};

/// A key's default, as understudy ships it.
fn default_of(key: &str) -> &'static str {
    understudy::config::KEYS
        .iter()
        .find(|k| k.key == key)
        .map(|k| k.default)
        .unwrap_or_else(|| panic!("{key} is not a config key"))
}

/// The two compiled regexes of one engine.
trait Engine {
    const NAME: &'static str;
    fn is_error(&self, line: &str) -> bool;
    fn is_warn(&self, line: &str) -> bool;
}

struct Full(regex::Regex, regex::Regex);
struct Lite(regex_lite::Regex, regex_lite::Regex);

impl Engine for Full {
    const NAME: &'static str = "regex";
    fn is_error(&self, line: &str) -> bool {
        self.0.is_match(line)
    }
    fn is_warn(&self, line: &str) -> bool {
        self.1.is_match(line)
    }
}

impl Engine for Lite {
    const NAME: &'static str = "regex-lite";
    fn is_error(&self, line: &str) -> bool {
        self.0.is_match(line)
    }
    fn is_warn(&self, line: &str) -> bool {
        self.1.is_match(line)
    }
}

/// The plain-line half of `LevelRules::classify`.
fn classify_plain<E: Engine>(e: &E, line: &str) -> Level {
    let t = line.trim();
    if e.is_error(t) {
        Level::Error
    } else if e.is_warn(t) {
        Level::Warn
    } else {
        Level::Other
    }
}

/// The scorer path with another engine: the scorer's JSON half, then the engine's regexes.
fn classify_scorer<E: Engine>(e: &E, line: &str) -> Level {
    json_level(line).unwrap_or_else(|| classify_plain(e, line))
}

/// (errors, warns, others) and the time it took.
fn scan(lines: &[String], f: impl Fn(&str) -> Level) -> ([u64; 3], Duration) {
    let start = Instant::now();
    let mut counts = [0u64; 3];
    for line in lines {
        let i = match f(black_box(line)) {
            Level::Error => 0,
            Level::Warn => 1,
            Level::Other => 2,
        };
        counts[i] += 1;
    }
    (black_box(counts), start.elapsed())
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const PATHS: &[&str] = &[
    "/api/items",
    "/api/items/{n}",
    "/items/{n}",
    "/api/users/{n}/orders",
    "/healthz",
    "/api/search?q=blue+chair&page={n}",
    "/static/app.{n}.js",
    "/api/errors/summary",
];
const METHODS: &[&str] = &["GET", "GET", "GET", "GET", "POST", "PUT", "DELETE"];
const NAMES: &[&str] = &[
    "alice", "bob", "josé", "zoë", "chen_wei", "søren", "ops-bot",
];

/// One plain line; what it says is decided by `r`.
fn plain_line(r: &mut Rng, ts: &str) -> String {
    let n = r.below(100_000);
    let ms = r.below(900) + 1;
    let path = r.pick(PATHS).replace("{n}", &n.to_string());
    let method = r.pick(METHODS);
    let status = [200, 200, 200, 200, 200, 201, 204, 304, 404, 500][r.below(10) as usize];
    let user = r.pick(NAMES);
    match r.below(1000) {
        // Ordinary traffic and chatter (~86%).
        0..=579 => format!("{ts} INFO {method} {path} {status} in {ms}ms"),
        580..=659 => format!("{ts} DEBUG cache hit key=items:{n} ttl=300s"),
        660..=709 => format!(
            "{ts} INFO user {user} logged in from 10.0.{}.{} in {ms}µs",
            n % 256,
            ms % 256
        ),
        710..=749 => format!("{ts} INFO retried request {method} {path}: errors=0 warnings=0"),
        750..=779 => format!("{ts} INFO metrics error_count=0 warn_count=2 requests={n}"),
        780..=809 => format!("{ts} INFO handled panicked-task cleanup for job {n}"),
        810..=839 => {
            format!("    at com.example.items.ItemService.load(ItemService.java:{ms})")
        }
        840..=859 => format!(
            "{ts} INFO request {method} {path} headers={{user-agent: Mozilla/5.0 (X11; Linux \
             x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36, accept: \
             application/json, accept-language: en-US,en;q=0.9,fr;q=0.8, x-request-id: \
             {n:08x}-{ms:04x}-4a1e-9c2b-{n:012x}}} body={{\"items\":[{n},{ms},{status}]}}"
        ),
        // Warnings (~7%), the word in various positions and cases.
        860..=889 => format!("{ts} WARN slow query on items took {ms}ms (limit 250ms)"),
        890..=904 => format!("{ts} warning: deprecated header X-Item-Version from {user}"),
        905..=914 => format!("[Warning] {ts} connection pool at {}% capacity", ms % 100),
        915..=929 => {
            format!("{ts} INFO {method} {path} {status} in {ms}ms, warn: retry budget low")
        }
        // Errors (~7%).
        930..=954 => format!(
            "{ts} ERROR upstream 10.0.0.{}:8080 connect failed: connection refused",
            n % 256
        ),
        955..=964 => format!("{ts} error: {method} {path} returned {status} after {ms}ms"),
        965..=974 => "Exception in thread \"worker-3\" java.lang.NullPointerException".into(),
        975..=984 => format!("{ts} INFO job {n} finished; last state=Error (will retry)"),
        985..=994 => format!("{ts} FATAL could not bind 0.0.0.0:{}", 8000 + n % 1000),
        _ => format!(
            "thread 'tokio-runtime-worker' PANIC at src/items.rs:{ms}:5: index out of bounds"
        ),
    }
}

/// One JSON line (bunyan/pino/zap style).
fn json_line(r: &mut Rng, ts: &str) -> String {
    let n = r.below(100_000);
    let ms = r.below(900) + 1;
    let path = r.pick(PATHS).replace("{n}", &n.to_string());
    let method = r.pick(METHODS);
    match r.below(100) {
        0..=79 => format!(
            "{{\"ts\":\"{ts}\",\"level\":\"info\",\"msg\":\"request\",\"method\":\"{method}\",\
             \"path\":\"{path}\",\"status\":200,\"ms\":{ms}}}"
        ),
        80..=87 => format!(
            "{{\"time\":{n},\"level\":30,\"pid\":4242,\"hostname\":\"app-1\",\"msg\":\"no error, \
             cache warm\",\"req\":{{\"method\":\"{method}\",\"url\":\"{path}\"}}}}"
        ),
        88..=93 => format!(
            "{{\"ts\":\"{ts}\",\"severity\":\"WARNING\",\"msg\":\"slow upstream\",\"ms\":{ms}}}"
        ),
        94..=97 => format!(
            "{{\"ts\":\"{ts}\",\"level\":\"error\",\"msg\":\"upstream failed\",\"err\":\"connection \
             reset by peer\",\"path\":\"{path}\"}}"
        ),
        _ => format!("{{\"time\":{n},\"level\":50,\"msg\":\"unhandled exception\",\"code\":{ms}}}"),
    }
}

/// `n` lines, ~70% plain and ~30% JSON, the same every run.
fn generate(n: usize) -> Vec<String> {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|i| {
            let s = 7 * 3600 + i / 400; // about 400 lines a second from 07:00
            let ts = format!(
                "2026-12-01T{:02}:{:02}:{:02}Z",
                s / 3600 % 24,
                s / 60 % 60,
                s % 60
            );
            if r.below(10) < 7 {
                plain_line(&mut r, &ts)
            } else {
                json_line(&mut r, &ts)
            }
        })
        .collect()
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn report(what: &str, engine: &str, lines: usize, runs: &[Duration]) -> Duration {
    let m = median(runs.to_vec());
    let all: Vec<String> = runs
        .iter()
        .map(|d| format!("{:.3}", d.as_secs_f64()))
        .collect();
    println!(
        "{what:<11} {engine:<10} median {:>7.1} ns/line  {:.3} s total  (runs: {} s)",
        m.as_nanos() as f64 / lines as f64,
        m.as_secs_f64(),
        all.join(" ")
    );
    m
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args
        .first()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);

    let t = Instant::now();
    let lines = generate(n);
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let json = lines.iter().filter(|l| l.starts_with('{')).count();
    let non_ascii = lines.iter().filter(|l| !l.is_ascii()).count();
    println!(
        "{n} lines ({json} JSON, {} plain, {non_ascii} with non-ASCII), {:.1} MB, mean {:.0} bytes, \
         generated in {:.2} s",
        n - json,
        bytes as f64 / 1e6,
        bytes as f64 / n as f64,
        t.elapsed().as_secs_f64()
    );

    let (error_re, warn_re) = (
        default_of("PLAIN_LOG_ERROR_REGEX"),
        default_of("PLAIN_LOG_WARN_REGEX"),
    );
    let t = Instant::now();
    let full = Full(
        regex::Regex::new(error_re).unwrap(),
        regex::Regex::new(warn_re).unwrap(),
    );
    let full_build = t.elapsed();
    let t = Instant::now();
    let lite = Lite(
        regex_lite::Regex::new(error_re).unwrap(),
        regex_lite::Regex::new(warn_re).unwrap(),
    );
    let lite_build = t.elapsed();
    println!(
        "compiling both regexes: regex {} µs, regex-lite {} µs",
        full_build.as_micros(),
        lite_build.as_micros()
    );
    // The scorer's own rules, with the same (default) regexes.
    let rules = LevelRules::new(error_re, warn_re);
    let plain_full = |l: &str| classify_plain(&full, l);
    let plain_lite = |l: &str| classify_plain(&lite, l);
    let scorer_full = |l: &str| rules.classify(l);
    let scorer_lite = |l: &str| classify_scorer(&lite, l);

    // Warm-up (caches, the lazy DFA's states, page faults), checking the counts on the way.
    let (cf, _) = scan(&lines, plain_full);
    let (cl, _) = scan(&lines, plain_lite);
    assert_eq!(cf, cl, "regex only: regex and regex-lite disagree");
    println!(
        "regex only:  errors {}, warns {}, other {} (both engines)",
        cf[0], cf[1], cf[2]
    );
    let (sf, _) = scan(&lines, scorer_full);
    let (sl, _) = scan(&lines, scorer_lite);
    assert_eq!(sf, sl, "scorer path: regex and regex-lite disagree");
    println!(
        "scorer path: errors {}, warns {}, other {} (both engines)",
        sf[0], sf[1], sf[2]
    );

    let wide: Vec<String> = lines.iter().filter(|l| !l.is_ascii()).cloned().collect();
    let (wf, _) = scan(&wide, plain_full);
    let (wl, _) = scan(&wide, plain_lite);
    assert_eq!(wf, wl, "non-ASCII: regex and regex-lite disagree");
    println!(
        "non-ASCII:   {} lines: errors {}, warns {}, other {} (both engines)",
        wide.len(),
        wf[0],
        wf[1],
        wf[2]
    );

    let (mut rf, mut rl, mut pf, mut pl) = (vec![], vec![], vec![], vec![]);
    let (mut nf, mut nl) = (vec![], vec![]);
    for i in 0..runs {
        // Alternate which engine goes first.
        let (a, b) = if i % 2 == 0 {
            let a = scan(&lines, plain_full);
            (a, scan(&lines, plain_lite))
        } else {
            let b = scan(&lines, plain_lite);
            (scan(&lines, plain_full), b)
        };
        assert_eq!((a.0, b.0), (cf, cf));
        rf.push(a.1);
        rl.push(b.1);
        let (a, b) = if i % 2 == 0 {
            let a = scan(&lines, scorer_full);
            (a, scan(&lines, scorer_lite))
        } else {
            let b = scan(&lines, scorer_lite);
            (scan(&lines, scorer_full), b)
        };
        assert_eq!((a.0, b.0), (sf, sf));
        pf.push(a.1);
        pl.push(b.1);
        let a = scan(&wide, plain_full);
        let b = scan(&wide, plain_lite);
        assert_eq!((a.0, b.0), (wf, wf));
        nf.push(a.1);
        nl.push(b.1);
    }

    println!("median of {runs} runs:");
    let a = report("regex only", Full::NAME, n, &rf);
    let b = report("regex only", Lite::NAME, n, &rl);
    println!(
        "regex only:  regex-lite / regex = {:.2}",
        b.as_secs_f64() / a.as_secs_f64()
    );
    let a = report("scorer path", Full::NAME, n, &pf);
    let b = report("scorer path", Lite::NAME, n, &pl);
    println!(
        "scorer path: regex-lite / regex = {:.2}",
        b.as_secs_f64() / a.as_secs_f64()
    );
    let a = report("non-ASCII", Full::NAME, wide.len(), &nf);
    let b = report("non-ASCII", Lite::NAME, wide.len(), &nl);
    println!(
        "non-ASCII:   regex-lite / regex = {:.2}",
        b.as_secs_f64() / a.as_secs_f64()
    );
}
