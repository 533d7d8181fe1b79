//! The record of what served users when: `.understudy/history.jsonl`, one switch per line,
//! appended and fsynced as each switch happens and never rewritten, so "which version answered
//! at 03:12 last night?" has an answer that survives restarts and crashes.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use semver::Version;
use serde::{Deserialize, Serialize};

/// Why the version serving users changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchWhy {
    /// The first build to serve in this base dir.
    First,
    /// Testing passed its scoring.
    Automatic,
    /// An operator's promote.
    Operator,
    /// A promotion scheduled for this instant (effective dating).
    Scheduled,
    /// An operator's (or the guard's) rollback to an earlier version.
    Rollback,
    /// A newer build replaced a running version that kept crashing.
    CrashLoop,
    /// Testing passed its scoring and every canary step (`CANARY_STEPS`).
    Canary,
}

impl std::fmt::Display for SwitchWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SwitchWhy::First => "first",
            SwitchWhy::Automatic => "automatic",
            SwitchWhy::Operator => "operator",
            SwitchWhy::Scheduled => "scheduled",
            SwitchWhy::Rollback => "rollback",
            SwitchWhy::CrashLoop => "crash_loop",
            SwitchWhy::Canary => "canary",
        })
    }
}

/// One change of the version serving users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switch {
    /// When users started being served by `to`, RFC 3339 (UTC).
    pub at: String,
    /// The version that served before, if any.
    pub from: Option<Version>,
    /// The version that serves from `at` on.
    pub to: Version,
    /// Why.
    pub why: SwitchWhy,
    /// A canary step's share of users, on a line that changes no version (`from` and `to` are
    /// running): from `at` on, `share.version` serves `share.percent` % of users (0: the canary
    /// ended, every user back on `to`). Absent on the lines of switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<Share>,
}

/// The share of users a canary step gives the build under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// The build under test.
    pub version: Version,
    /// Percent of users it serves (0 once the canary ended without a promotion).
    pub percent: f64,
}

impl Eq for Share {}

impl Switch {
    /// Whether this line records a canary step's share, not a switch of the version serving.
    pub fn is_share(&self) -> bool {
        self.share.is_some()
    }

    /// The switch instant, if its text parses.
    pub fn instant(&self) -> Option<SystemTime> {
        parse_rfc3339(&self.at)
    }
}

/// After a switch from `from` for `why`: what a plain rollback brings back, and what it must
/// not (the version a rollback just threw out): `(previous, rolled_back_from)`.
pub fn after_switch(from: Option<Version>, why: SwitchWhy) -> (Option<Version>, Option<Version>) {
    match why {
        SwitchWhy::Rollback => (None, from),
        _ => (from, None),
    }
}

/// Parse an RFC 3339 instant such as `2026-12-01T03:00:00Z` (bounded: see [`crate::instant`]).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    crate::instant::parse(s).ok()
}

/// Append `switch` as one line and fsync it before returning.
pub fn append(path: &Path, switch: &Switch) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut line = serde_json::to_vec(switch).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    // A line torn by a crash must not swallow this one.
    let len = f.metadata()?.len();
    if len > 0 {
        use std::os::unix::fs::FileExt;
        let mut last = [0u8];
        f.read_at(&mut last, len - 1)?;
        if last[0] != b'\n' {
            line.insert(0, b'\n');
        }
    }
    f.write_all(&line)?;
    f.sync_data()
}

/// Every switch recorded in `path`, oldest first; a missing file is an empty history and a
/// damaged line (a crash mid-append) is skipped.
pub fn read(path: &Path) -> std::io::Result<Vec<Switch>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The switch in force at `at`: the last one that happened at or before it, and the canary
/// share in force then, if a step gave the build under test one.
pub fn serving_at(switches: &[Switch], at: SystemTime) -> (Option<&Switch>, Option<&Share>) {
    let mut before = switches
        .iter()
        .rev()
        .filter(|s| s.instant().is_some_and(|t| t <= at));
    let Some(last) = before.next() else {
        return (None, None);
    };
    let share = last.share.as_ref().filter(|s| s.percent > 0.0);
    (Some(last), share)
}

/// Whether `v` served users at or after `since` (`None`: ever), as the history says: a build
/// of `v` that started after `v`'s last switch never served, though an earlier build of `v` did.
pub fn served_since(switches: &[Switch], v: &Version, since: Option<SystemTime>) -> bool {
    switches
        .iter()
        .filter(|s| !s.is_share() && &s.to == v)
        .any(|s| since.is_none_or(|t| s.instant().is_some_and(|at| at >= t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sw(at: &str, to: &str) -> Switch {
        Switch {
            at: at.into(),
            from: None,
            to: Version::parse(to).unwrap(),
            why: SwitchWhy::Automatic,
            share: None,
        }
    }

    #[test]
    fn the_version_at_an_instant_is_the_last_switch_before_it() {
        let h = vec![
            sw("2026-12-01T01:00:00Z", "1.0.0"),
            sw("2026-12-01T02:00:00Z", "1.1.0"),
        ];
        let at = |s| {
            serving_at(&h, parse_rfc3339(s).unwrap())
                .0
                .map(|s| s.to.to_string())
        };
        assert_eq!(at("2026-12-01T00:59:59Z"), None);
        assert_eq!(at("2026-12-01T01:00:00Z").as_deref(), Some("1.0.0"));
        assert_eq!(at("2026-12-01T01:59:59Z").as_deref(), Some("1.0.0"));
        assert_eq!(at("2026-12-01T03:00:00Z").as_deref(), Some("1.1.0"));
    }

    /// A switch to a version before a build of it started says nothing of that build.
    #[test]
    fn served_since_counts_only_switches_from_that_instant_on() {
        let h = vec![
            sw("2026-12-01T01:00:00Z", "1.1.0"),
            sw("2026-12-01T02:00:00Z", "1.0.0"),
        ];
        let v = Version::parse("1.1.0").unwrap();
        let t = |s| Some(parse_rfc3339(s).unwrap());
        assert!(served_since(&h, &v, None));
        assert!(served_since(&h, &v, t("2026-12-01T00:59:00Z")));
        assert!(served_since(&h, &v, t("2026-12-01T01:00:00Z")));
        assert!(!served_since(&h, &v, t("2026-12-01T01:00:01Z")));
        assert!(!served_since(&h, &Version::parse("2.0.0").unwrap(), None));
    }

    #[test]
    fn appends_survive_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h/history.jsonl");
        append(&path, &sw("2026-12-01T01:00:00Z", "1.0.0")).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"at\":\"2026-")
            .unwrap();
        append(&path, &sw("2026-12-01T02:00:00Z", "1.1.0")).unwrap();
        let h = read(&path).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].to.to_string(), "1.0.0");
        assert_eq!(h[1].to.to_string(), "1.1.0");
    }

    /// A canary step's share is in force from its line until the next line: another step, its
    /// end (0 %), or the switch that promotes the build.
    #[test]
    fn a_canary_share_is_in_force_until_the_next_line() {
        let share = |at: &str, percent: f64| Switch {
            from: Some(Version::parse("1.0.0").unwrap()),
            why: SwitchWhy::Canary,
            share: Some(Share {
                version: Version::parse("1.1.0").unwrap(),
                percent,
            }),
            ..sw(at, "1.0.0")
        };
        let h = vec![
            sw("2026-12-01T01:00:00Z", "1.0.0"),
            share("2026-12-01T02:00:00Z", 10.0),
            share("2026-12-01T03:00:00Z", 0.0),
            share("2026-12-01T04:00:00Z", 50.0),
            sw("2026-12-01T05:00:00Z", "1.1.0"),
        ];
        let at = |s| {
            let (switch, share) = serving_at(&h, parse_rfc3339(s).unwrap());
            let to = switch.map(|s| s.to.to_string()).unwrap_or_default();
            (to, share.map(|s| (s.version.to_string(), s.percent)))
        };
        let canary = |p| Some(("1.1.0".to_string(), p));
        assert_eq!(at("2026-12-01T01:30:00Z"), ("1.0.0".into(), None));
        assert_eq!(at("2026-12-01T02:30:00Z"), ("1.0.0".into(), canary(10.0)));
        assert_eq!(at("2026-12-01T03:30:00Z"), ("1.0.0".into(), None));
        assert_eq!(at("2026-12-01T04:30:00Z"), ("1.0.0".into(), canary(50.0)));
        assert_eq!(at("2026-12-01T05:30:00Z"), ("1.1.0".into(), None));
        // Written and read back: the share survives, and a switch's line carries none.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        for s in &h {
            append(&path, s).unwrap();
        }
        assert_eq!(read(&path).unwrap(), h);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("share").count(), 3, "{text}");
    }
}
