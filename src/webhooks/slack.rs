//! `WEBHOOK_FORMAT=slack`: each event as one line a person reads in a chat channel (what
//! happened, to which version, why), sent as the `{"text": ...}` payload that Slack, Mattermost
//! and Discord's Slack-compatible endpoint accept. The scorer's evaluation every
//! `EVALUATE_EVERY` is told only when its verdict changes, so a channel is not flooded.

use semver::Version;

use crate::events::{Event, Stamped, Topic, VerdictKind};
use crate::history::SwitchWhy;

/// Longest line sent, in characters: the reasons of a rejection can run long, a chat line should not.
const MAX_TEXT: usize = 600;

/// The line for `e` from understudy supervising `app`: such as
/// `understudy: myapp 1.2.0 rejected: 5xx rate 4.1 % vs 0.2 % on GET /api/orders`.
/// Slack's control characters (`&`, `<`, `>`) are escaped and markdown's are broken up (see
/// [`one_line`]), so a path from user traffic cannot become a link or a mention anywhere.
pub fn slack_text(app: &str, e: &Stamped) -> String {
    let what = match e.event.topic() {
        Topic::Build => build_line(&e.event),
        Topic::Instance => instance_line(&e.event),
        Topic::Verdict => verdict_line(&e.event),
        Topic::Disk | Topic::Supervision => supervision_line(&e.event),
    };
    one_line(&format!("understudy: {app} {what}"))
}

/// Zero width space: splits what chat markup would read as one token, and shows nothing.
const ZWSP: char = '\u{200B}';

/// `text` as one escaped line of at most [`MAX_TEXT`] characters. Users' paths, reasons and diff
/// values are in it, and understudy's own words use none of these characters, so the whole line
/// is neutralised: Slack's `<!channel>`, `<@U1>` and `<url|text>` escaped as Slack asks; a zero
/// width space after each `@` (Discord's and Mattermost's `@everyone`, `@here`, `@channel`, which
/// ping without brackets), after each `]` (a masked link `[text](url)` needs `](`) and after a
/// scheme's `:` (an `https://` autolink); backticks, which open code blocks, as `ˋ`.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_TEXT * 2));
    for (i, (at, c)) in text.char_indices().enumerate() {
        if i == MAX_TEXT {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' | ']' => out.extend([c, ZWSP]),
            ':' if text[at + 1..].starts_with("//") => out.extend([c, ZWSP]),
            '`' => out.push('ˋ'),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Which events a chat is told: all but repeats. A `scored` event is told when its verdict is
/// promote or reject and differs from the last one told for that version (a paused build is
/// scored every `EVALUATE_EVERY`; `wait` is followed by what happens next anyway), and a
/// `rejected` (files filed away) is not told after the `rejecting` of the same version, which
/// gave the same reasons.
#[derive(Debug, Default)]
pub struct Told {
    last_verdict: Option<(Version, VerdictKind)>,
    rejecting: Option<Version>,
}

impl Told {
    /// Whether `e` is worth a line; remembers what it lets through.
    pub fn worth_telling(&mut self, e: &Event) -> bool {
        match e {
            Event::Scored {
                version, verdict, ..
            } => {
                let now = (version.clone(), *verdict);
                if *verdict == VerdictKind::Wait || self.last_verdict.as_ref() == Some(&now) {
                    return false;
                }
                self.last_verdict = Some(now);
                true
            }
            Event::Rejecting { version, .. } => {
                self.rejecting = Some(version.clone());
                true
            }
            Event::Rejected { version, .. } => {
                let said = self.rejecting.as_ref() == Some(version);
                if said {
                    self.rejecting = None;
                }
                !said
            }
            _ => true,
        }
    }
}

/// `from` as a person reads it: the version, or `nothing` before the first build.
fn or_nothing(v: &Option<Version>) -> String {
    v.as_ref()
        .map_or_else(|| "nothing".to_string(), Version::to_string)
}

/// A build's way in and out: found, installed, rejected, rolled back, archived.
fn build_line(e: &Event) -> String {
    match e {
        Event::BuildFound { file, version } => format!("{version} found: {file}"),
        Event::BuildWaiting {
            file,
            version,
            reason,
        } => format!("{version} ({file}) waits: {reason}"),
        Event::BuildIgnored { file, reason } => format!("{file} ignored: {reason}"),
        Event::BuildRecovered { version, outcome } => {
            format!("{version} at start: {outcome}")
        }
        Event::Installed { version } => format!("{version} installed, about to start"),
        Event::RolledBack { from, to } => {
            format!("rolled back to {to} (from {})", or_nothing(from))
        }
        Event::Rejected { version, reasons } => format!(
            "{version} rejected, its files moved to rejected/: {}",
            reasons.join("; ")
        ),
        Event::Archived { version, zip } => format!("{version} archived as {}", zip.display()),
        Event::ArchiveDeleted { zip, reason } => {
            format!("archive {} deleted: {reason}", zip.display())
        }
        Event::RejectedDeleted { dir, reason } => {
            format!("rejected build {} deleted: {reason}", dir.display())
        }
        other => other_line(other),
    }
}

/// An instance's life: started, ready, exited, stopped, restarted, unresponsive, a hook.
fn instance_line(e: &Event) -> String {
    match e {
        Event::Started {
            role,
            version,
            number,
            port,
        } => format!("{version} started as {role} (instance {number}, port {port})"),
        Event::Ready { role, version, .. } => format!("{version} is ready as {role}"),
        Event::Exited {
            role,
            version,
            status,
        } => format!("{version} ({role}) exited: {status}"),
        Event::Stopped { version, number } => format!("{version} instance {number} stopped"),
        Event::RestartScheduled {
            version,
            attempt,
            delay_ms,
            reason,
        } => format!("{version} failed: {reason}; restart {attempt} in {delay_ms} ms"),
        Event::HeartbeatLost {
            role,
            version,
            misses,
            reason,
        } => format!("{version} ({role}) stopped answering: {misses} heartbeats missed ({reason})"),
        Event::HookRan {
            hook,
            version,
            ok: true,
            ..
        } => format!("{version}: hook {hook} succeeded"),
        Event::HookRan {
            hook,
            version,
            detail,
            ..
        } => format!("{version}: hook {hook} failed: {detail}"),
        other => other_line(other),
    }
}

/// A verdict and what follows it: scores, promotions, the guard, the operator's pause and schedule.
fn verdict_line(e: &Event) -> String {
    match e {
        Event::Scored {
            version,
            score,
            pairs,
            summary,
            ..
        } => format!("{version} scored {score} over {pairs} pairs: {summary}"),
        Event::Promoting { version } => format!("{version} passed; promoting it"),
        Event::CanaryStep {
            version,
            step,
            steps,
            share,
        } => format!("{version} serves {share} of users (canary step {step} of {steps})"),
        Event::CanaryHeld { version, why, .. } => format!("{version}'s canary holds: {why}"),
        Event::Promoted { from, to, why } => {
            let why = match why {
                SwitchWhy::First => "the first build",
                SwitchWhy::Automatic => "it passed its scoring",
                SwitchWhy::Operator => "an operator promoted it",
                SwitchWhy::Scheduled => "as scheduled",
                SwitchWhy::Rollback => "a rollback",
                SwitchWhy::CrashLoop => "the version before kept crashing",
                SwitchWhy::Canary => "it passed its scoring and every canary step",
            };
            format!(
                "{to} promoted, now serving users ({why}); was {}",
                or_nothing(from)
            )
        }
        Event::PromotionFailed { version, reasons } => format!(
            "{version} promotion failed, running untouched: {}",
            reasons.join("; ")
        ),
        Event::GuardTripped {
            version,
            to,
            reason,
        } => format!("{version} did worse after its promotion; rolling back to {to}: {reason}"),
        Event::Paused => {
            "paused by an operator: nothing is promoted or rejected until resumed".to_string()
        }
        Event::Resumed => "resumed by an operator: decisions are automatic again".to_string(),
        Event::Scheduled { id, version, at } => format!(
            "{} scheduled for promotion at {at} (schedule #{id})",
            version
                .as_ref()
                .map_or_else(|| "the build under test".to_string(), Version::to_string)
        ),
        Event::ScheduleHeld { id, reason } => {
            format!("scheduled promotion #{id} is due but holds: {reason}")
        }
        Event::ScheduleEnded {
            id,
            outcome,
            reason,
        } => format!("scheduled promotion #{id} {outcome}: {reason}"),
        other => other_line(other),
    }
}

/// What the supervisor decided that no other event says, and the disk.
fn supervision_line(e: &Event) -> String {
    match e {
        Event::Rejecting { version, reasons } => {
            format!("{version} rejected: {}", reasons.join("; "))
        }
        Event::SwitchCompleted {
            kind,
            version,
            from,
        } => format!(
            "{version} serves: its {kind}, interrupted by a restart, was completed (was {})",
            or_nothing(from)
        ),
        Event::SwitchUndone {
            kind,
            version,
            serving,
        } => format!(
            "{version}: its {kind}, interrupted by a restart, was undone; {} keeps serving",
            or_nothing(serving)
        ),
        Event::CrashLooping {
            version,
            failures,
            retry_every_ms,
        } => format!(
            "{version} keeps crashing ({failures} failures in a row): retried every {retry_every_ms} ms; a newer build dropped now replaces it"
        ),
        Event::CrashLoopReplaced {
            version,
            replaced,
            failures,
        } => format!("{version} replaces {replaced}, which failed {failures} times in a row"),
        Event::SecondaryGivenUp { version, reason } => format!(
            "{version}: running's secondary was given up ({reason}); differences are judged without noise cancellation"
        ),
        Event::SecondaryRestarted {
            version,
            failures,
            reason,
        } => format!(
            "{version}: running's secondary failed ({reason}) and is started again (failure {failures} of 3 before it is given up)"
        ),
        other => supervision_tail(other),
    }
}

/// The rest of [`supervision_line`]: filing, a failed rollback, the guard's end, the disk.
fn supervision_tail(e: &Event) -> String {
    match e {
        Event::FilingFailed {
            version,
            attempt,
            error,
            retrying,
        } => format!(
            "{version} could not be filed away (attempt {attempt}): {error}; {}",
            if *retrying {
                "retrying at the next collection"
            } else {
                "given up, its folder stays"
            }
        ),
        Event::FilingCalledOff {
            version,
            what,
            reason,
        } => format!("{version}: its {what} is called off, its folder stays: {reason}"),
        Event::RollbackFailed { version, reason } => {
            format!("rollback to {version} failed, the promoted version keeps serving: {reason}")
        }
        Event::GuardEnded { version, from } => {
            format!("{version} held through its rollback window; {from} is filed away")
        }
        Event::DiskFull { why } => format!("cannot save its state (still serving users): {why}"),
        Event::DiskRecovered => "saves its state again".to_string(),
        Event::OverBudget { why } => format!("over its disk budget, archives kept: {why}"),
        Event::WithinBudget => "back within its disk budget".to_string(),
        other => other_line(other),
    }
}

/// An event no family above names (a new kind): its name, so nothing is sent empty.
fn other_line(e: &Event) -> String {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v["event"].as_str().map(str::to_string))
        .unwrap_or_else(|| "event".to_string())
}

#[cfg(test)]
mod tests;
