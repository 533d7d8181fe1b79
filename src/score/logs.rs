//! Counting error and warn lines in an instance's logs: JSON lines by their level field
//! (`level`, `severity`, `lvl`; names or numeric levels such as 50/40), plain lines by regex.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use regex::Regex;

/// Largest chunk read from one file per poll, so a flood of logs cannot stall the scorer.
const MAX_READ_PER_POLL: u64 = 8 * 1024 * 1024;

/// How a line is judged.
pub struct LevelRules {
    plain_error: Option<Regex>,
    plain_warn: Option<Regex>,
}

/// A line's severity, as far as scoring cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Counts as an error.
    Error,
    /// Counts as a warning.
    Warn,
    /// Does not count.
    Other,
}

impl LevelRules {
    /// Rules with the configured plain-line regexes (validated at config load; empty means none).
    pub fn new(error: &str, warn: &str) -> LevelRules {
        LevelRules {
            plain_error: Regex::new(error).ok().filter(|_| !error.is_empty()),
            plain_warn: Regex::new(warn).ok().filter(|_| !warn.is_empty()),
        }
    }

    /// Classify one line: a JSON object by its level field ([`json_level`]), any other line by
    /// the plain-line regexes.
    pub fn classify(&self, line: &str) -> Level {
        let t = line.trim();
        if let Some(level) = json_level(t) {
            return level;
        }
        if self.plain_error.as_ref().is_some_and(|r| r.is_match(t)) {
            Level::Error
        } else if self.plain_warn.as_ref().is_some_and(|r| r.is_match(t)) {
            Level::Warn
        } else {
            Level::Other
        }
    }
}

/// The level of a JSON object line, by its level field (a missing or odd one is `Other`); `None`
/// for any other line, which the plain-line regexes judge. Public so `benches/logscan.rs` can
/// time the scorer's own JSON half beside another regex engine.
pub fn json_level(line: &str) -> Option<Level> {
    let t = line.trim();
    if !t.starts_with('{') {
        return None;
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(t) else {
        return None;
    };
    let level = ["level", "severity", "lvl", "log.level", "levelname"]
        .iter()
        .find_map(|k| {
            map.iter()
                .find(|(mk, _)| mk.eq_ignore_ascii_case(k))
                .map(|(_, v)| v)
        });
    Some(match level {
        Some(serde_json::Value::String(s)) => level_name(s),
        Some(serde_json::Value::Number(n)) => match n.as_f64() {
            Some(n) if n >= 50.0 => Level::Error,
            Some(n) if n >= 40.0 => Level::Warn,
            _ => Level::Other,
        },
        _ => Level::Other,
    })
}

fn level_name(s: &str) -> Level {
    match s.trim().to_ascii_lowercase().as_str() {
        "error" | "err" | "fatal" | "critical" | "crit" | "panic" | "alert" | "emerg"
        | "emergency" | "severe" => Level::Error,
        "warn" | "warning" => Level::Warn,
        _ => Level::Other,
    }
}

/// Follows the log files of one instance folder (`logs/json/*`, `logs/*`, `stderr`), counting
/// error and warn lines in what is appended.
pub struct LogTail {
    dir: PathBuf,
    offsets: HashMap<PathBuf, Followed>,
    errors: u64,
    warns: u64,
    /// The last error line counted (cut to [`EXAMPLE_MAX`] bytes) and its file's name, for a
    /// rejection to show.
    last_error: Option<(String, String)>,
}

/// The most of an error line kept as the example a rejection shows.
const EXAMPLE_MAX: usize = 300;

impl LogTail {
    /// Count everything, including what was logged at startup.
    pub fn from_start(dir: PathBuf) -> LogTail {
        LogTail {
            dir,
            offsets: HashMap::new(),
            errors: 0,
            warns: 0,
            last_error: None,
        }
    }

    /// Count only lines appended from now on.
    pub fn from_now(dir: PathBuf) -> LogTail {
        let offsets = log_files(&dir)
            .into_iter()
            .filter_map(|p| {
                let off = std::fs::metadata(&p).ok()?.len();
                Some((
                    p,
                    Followed {
                        off,
                        mid_line: false,
                    },
                ))
            })
            .collect();
        LogTail {
            dir,
            offsets,
            errors: 0,
            warns: 0,
            last_error: None,
        }
    }

    /// The last error line counted, and the file (in the instance folder) it was in.
    pub fn last_error(&self) -> Option<&(String, String)> {
        self.last_error.as_ref()
    }

    /// The instance folder followed.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Follow another instance folder from now on, keeping the totals (a restarted running).
    pub fn follow(&mut self, dir: PathBuf) {
        let fresh = LogTail::from_now(dir);
        self.dir = fresh.dir;
        self.offsets = fresh.offsets;
    }

    /// Read what was appended and return the running totals (errors, warns).
    pub fn poll(&mut self, rules: &LevelRules) -> (u64, u64) {
        for path in log_files(&self.dir) {
            let mut at = self.offsets.get(&path).copied().unwrap_or_default();
            let Some((buf, full, from)) = read_from(&path, at.off) else {
                continue;
            };
            if from != at.off {
                // Truncated (the collection rotates `stderr` so): read on from its new start.
                at = Followed::default();
            }
            let (consumed, lines, mid_line) = complete_lines(&buf, full, at.mid_line);
            let (text, mut last) = (String::from_utf8_lossy(lines), None);
            for line in text.lines() {
                match rules.classify(line) {
                    Level::Error => {
                        self.errors += 1;
                        last = Some(line);
                    }
                    Level::Warn => self.warns += 1,
                    Level::Other => {}
                }
            }
            if let Some(line) = last {
                let mut cut = line.len().min(EXAMPLE_MAX);
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                let line = line[..cut].to_string();
                let file = path.strip_prefix(&self.dir).unwrap_or(&path);
                self.last_error = Some((line, file.display().to_string()));
            }
            let off = at.off + consumed as u64;
            self.offsets.insert(path, Followed { off, mid_line });
        }
        (self.errors, self.warns)
    }
}

/// Where a log file is followed from.
#[derive(Debug, Clone, Copy, Default)]
struct Followed {
    /// Bytes already counted.
    off: u64,
    /// Inside a line longer than `MAX_READ_PER_POLL`, already counted by its beginning.
    mid_line: bool,
}

/// Of `buf` (read from a log, `full` when the read stopped at `MAX_READ_PER_POLL`): how many
/// bytes are done with, the complete lines among them to count, and whether a long line goes
/// on past them. A line still being written waits for the next poll; a line longer than the
/// bound is counted once, by its first `MAX_READ_PER_POLL` bytes, and the rest of it skipped, so
/// one huge line can neither stall the count nor be counted twice.
fn complete_lines(buf: &[u8], full: bool, mid_line: bool) -> (usize, &[u8], bool) {
    let newline = |b: &[u8]| b.iter().position(|c| *c == b'\n');
    let start = match (mid_line, newline(buf)) {
        (false, _) => 0,
        (true, Some(i)) => i + 1,
        (true, None) => return (buf.len(), &[], true),
    };
    match buf[start..].iter().rposition(|c| *c == b'\n') {
        Some(e) => (start + e + 1, &buf[start..start + e + 1], false),
        None if full && start == 0 => (buf.len(), buf, true),
        None => (start, &[], false),
    }
}

/// Every file an instance logs to: `stdout` and `stderr` (console logging, where most apps write
/// by default) and the files under `logs/` and `logs/json/`.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.join("stdout"), dir.join("stderr")];
    for sub in [dir.join("logs"), dir.join("logs").join("json")] {
        if let Ok(rd) = std::fs::read_dir(&sub) {
            out.extend(
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.is_file()),
            );
        }
    }
    out
}

/// Up to `MAX_READ_PER_POLL` bytes of `path` from `off` (from its start when it is now shorter:
/// truncated), whether the read stopped at that bound, and where it started; `None` when
/// nothing was appended.
fn read_from(path: &Path, off: u64) -> Option<(Vec<u8>, bool, u64)> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let off = if len < off { 0 } else { off };
    if len <= off {
        return None;
    }
    f.seek(SeekFrom::Start(off)).ok()?;
    let mut buf = Vec::new();
    let want = (len - off).min(MAX_READ_PER_POLL);
    f.take(want).read_to_end(&mut buf).ok()?;
    let full = buf.len() as u64 == MAX_READ_PER_POLL;
    Some((buf, full, off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        let r = LevelRules::new(r"(?i)\berror\b", r"(?i)\bwarn(ing)?\b");
        assert_eq!(r.classify(r#"{"level":"ERROR","msg":"x"}"#), Level::Error);
        assert_eq!(r.classify(r#"{"Severity":"warning"}"#), Level::Warn);
        assert_eq!(
            r.classify(r#"{"lvl":"info","msg":"error in text"}"#),
            Level::Other
        );
        assert_eq!(r.classify(r#"{"level":50}"#), Level::Error);
        assert_eq!(r.classify(r#"{"level":40}"#), Level::Warn);
        assert_eq!(r.classify(r#"{"level":30}"#), Level::Other);
        assert_eq!(r.classify("2024 ERROR boom"), Level::Error);
        assert_eq!(r.classify("WARNING: disk"), Level::Warn);
        assert_eq!(r.classify("all fine"), Level::Other);
        // A JSON object is judged by its level field alone, any other line by the regexes.
        assert_eq!(json_level(r#" {"msg":"error"} "#), Some(Level::Other));
        assert_eq!(json_level(r#"{"level":"warn"}"#), Some(Level::Warn));
        assert_eq!(json_level(r#"{not json, error"#), None);
        assert_eq!(r.classify(r#"{not json, error"#), Level::Error);
        assert_eq!(json_level("[1, 2]"), None);

        // The defaults; `\b` and `(?i)` are Unicode-aware.
        let r = LevelRules::new(
            r"(?i)\b(error|fatal|panic|exception)\b",
            r"(?i)\bwarn(ing)?\b",
        );
        assert_eq!(r.classify("user josé: Exception in thread"), Level::Error);
        assert_eq!(r.classify("took 3µs, [Warning] pool low"), Level::Warn);
        assert_eq!(
            r.classify("errors=0 warnings=0 panicked-task"),
            Level::Other
        );
        assert_eq!(r.classify("éerror"), Level::Other);
    }

    #[test]
    fn tail_counts_only_complete_appended_lines() {
        let dir = std::env::temp_dir().join(format!("understudy-logs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("logs/json")).unwrap();
        let f = dir.join("logs/json/app.log");
        std::fs::write(&f, "{\"level\":\"error\"}\n").unwrap();
        let rules = LevelRules::new("", "");
        let mut from_now = LogTail::from_now(dir.clone());
        let mut from_start = LogTail::from_start(dir.clone());
        use std::io::Write;
        let mut h = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
        h.write_all(b"{\"level\":\"warn\"}\n{\"level\":\"error\"")
            .unwrap();
        assert_eq!(from_now.poll(&rules), (0, 1));
        assert_eq!(from_start.poll(&rules), (1, 1));
        h.write_all(b",\"msg\":\"boom\"}\n").unwrap();
        assert_eq!(from_now.poll(&rules), (1, 1));
        // The last error line counted is kept, with its file, as a rejection's example.
        let (line, file) = from_now.last_error().unwrap();
        assert_eq!(
            (line.as_str(), file.as_str()),
            (
                "{\"level\":\"error\",\"msg\":\"boom\"}",
                "logs/json/app.log"
            )
        );

        // A restarted instance: its startup lines do not count, the totals carry on.
        let other = dir.join("2");
        std::fs::create_dir_all(other.join("logs/json")).unwrap();
        std::fs::write(other.join("logs/json/app.log"), "{\"level\":\"error\"}\n").unwrap();
        from_now.follow(other.clone());
        std::fs::OpenOptions::new()
            .append(true)
            .open(other.join("logs/json/app.log"))
            .unwrap()
            .write_all(b"{\"level\":\"warn\"}\n")
            .unwrap();
        assert_eq!(from_now.poll(&rules), (1, 2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The collection rotates a long `stderr` by copying its tail aside and truncating it: the
    /// lines the child appends then, at its new start, count.
    #[test]
    fn a_truncated_log_is_read_on_from_its_new_start() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("stderr");
        let mut child = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&f)
            .unwrap();
        child.write_all(&[b'x'; 4096]).unwrap();
        child.write_all(b"\nERROR first\n").unwrap();
        let rules = LevelRules::new(r"\bERROR\b", "");
        let mut tail = LogTail::from_start(dir.path().to_path_buf());
        assert_eq!(tail.poll(&rules), (1, 0));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert_eq!(tail.poll(&rules), (1, 0), "nothing new yet");
        child.write_all(b"ERROR after the rotation\n").unwrap();
        assert_eq!(tail.poll(&rules), (2, 0));
    }

    /// A line longer than the read bound neither stalls the count nor is counted twice.
    #[test]
    fn a_line_longer_than_the_read_bound_is_counted_once_and_passed() {
        let full = MAX_READ_PER_POLL as usize;
        let long = [&b"error "[..], &vec![b'a'; full - 6]].concat();
        assert_eq!(complete_lines(&long, true, false), (full, &long[..], true));
        // Its rest, then the next line: the rest is skipped, the next line counted.
        let rest = b"aaaa\nwarn x\npart";
        assert_eq!(
            complete_lines(rest, false, true),
            (12, &b"warn x\n"[..], false)
        );
        assert_eq!(complete_lines(&long, true, true), (full, &b""[..], true));
        // Ordinary reads: up to the last newline; a partial line waits.
        assert_eq!(
            complete_lines(b"a\nb", false, false),
            (2, &b"a\n"[..], false)
        );
        assert_eq!(complete_lines(b"ab", false, false), (0, &b""[..], false));

        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let file = dir.path().join("logs/app.log");
        let mut text = long.clone();
        text.extend_from_slice(&vec![b'a'; full + 10]);
        text.extend_from_slice(b"\nwarn: disk\n");
        std::fs::write(&file, &text).unwrap();
        let rules = LevelRules::new(r"(?i)\berror\b", r"(?i)\bwarn\b");
        let mut tail = LogTail::from_start(dir.path().to_path_buf());
        let mut counts = (0, 0);
        for _ in 0..4 {
            counts = tail.poll(&rules);
        }
        assert_eq!(counts, (1, 1));
        assert_eq!(tail.offsets[&file].off, text.len() as u64);
    }
}
