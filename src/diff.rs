//! Judging answers: [`diff`] compares running's and testing's answer to the same mirrored request
//! and names each difference by a generalised path (`$.items[*].price`) and a [`DiffKind`], so the
//! same difference across many pairs aggregates in a [`DiffStats`] instead of drowning the
//! operator in one line per request.
//!
//! Pure: no I/O, no async. Bodies arrive already capped by the caller.
//!
//! The rules, in order:
//! - the status codes (`$status`) and the media types (`$content_type`, parameters such as
//!   `charset` left out) are compared first;
//! - byte-equal bodies are equal, without parsing;
//! - bodies that both parse as JSON are compared field by field ([JSON rules](#json));
//! - `text/*` bodies (UTF-8) are compared line by line ([text rules](#text));
//! - anything else is equal or not by its bytes (`$body`, [`DiffKind::Changed`]).
//!
//! # JSON
//! A path starts at `$`; an object key is `.key` (or `["key"]` when it is not a plain identifier)
//! and every array index is `[*]`, so `items[0].price` and `items[7].price` are one path; a key that
//! is unmistakably an id (all digits or a uuid: [`fold_key`]) is folded (`$.nonces.{uuid}`), and a
//! path pattern matches folded keys only where it is itself written folded. Object key order is
//! never a difference. An integer is not a float (`1` against `1.0`, `100` against `1e2`: a type
//! change); integers compare exactly whatever their size, floats as `f64` (`1.0` equals `1.00`). One pair lists at most [`MAX_DIFFS_PER_PAIR`] counting differences, the
//! last place saying the list was cut ([`CUT_PATH`], of the kind first dropped); version-only
//! ones are bounded apart and never cut it. Array order is (elements are compared index by index,
//! the longer side's extra elements are [`DiffKind::Missing`] / [`DiffKind::Added`] at
//! `path[*]`), unless the array's path is in [`DiffOptions::unordered`]: then it is compared as a
//! multiset, and the elements left without an equal partner are paired up in order and compared
//! field by field.
//! A path in [`DiffOptions::ignore`] is skipped with everything under it.
//!
//! # Text
//! Lines are compared by their index, except where the answers' line counts differ around one
//! run of lines removed or inserted: that run is then reported, not every line after it. Every
//! differing line is reported at the one path `line[*]` (extra lines as `Missing` / `Added`): a text answer has no structure to tell one line's role
//! from another's, and a line number would split what is one difference (a changed footer, a
//! shifted block) into as many paths as there are lengths of answer. The example shows the first
//! differing line. Where a third answer to the same request is expected ([`diff_witnessed`]), a
//! line on which all three answers differ from each other is volatile in this pair (a per-request
//! token, a clock to the millisecond) and is reported at [`VOLATILE_LINES`]: a page carrying a
//! CSRF token would otherwise differ at `line[*]` in every pair, on running's own secondary as
//! well, and that noise would hide any other line the new build breaks. Any other differing line
//! stays at `line[*]`, so a line with a few values (a banner picked at random) is judged against
//! running's own rate as before: were it volatile whenever the witness differed, testing's
//! `line[*]` and the noise's would become events that exclude each other, and identical builds
//! were rejected. A pair whose witness is missing compares no lines (nothing tells a token
//! from a change, and counting them would weigh one side only).
//!
//! # Versions
//! Running's and testing's answers are expected to differ where they carry their own version: a
//! string (JSON string or text line) is equal when replacing every occurrence of running's version
//! in running's string by testing's version yields testing's string (`"app-1.0.0-abc"` against
//! `"app-1.1.0-abc"`).

use serde::Serialize;
use serde_json::Value;

/// Longest example text kept per side, in bytes (cut at a character boundary).
pub const EXAMPLE_MAX: usize = 200;
/// Most distinct (path, kind) counting differences one [`diff`] reports; one broken answer can
/// not make an unbounded list. The last place is [`CUT_PATH`] when the list was cut. Entries that
/// never count (versions, uncompared) are bounded apart by the same number and never cut it.
pub const MAX_DIFFS_PER_PAIR: usize = 64;
/// The path of the difference standing for all those past [`MAX_DIFFS_PER_PAIR`] in one pair,
/// naming the first not kept: judged like any other (against running's own cut answers), so the
/// cap never hides a regression silently (a wrong price behind 80 differences was promoted).
pub const CUT_PATH: &str = "$more_differences";
/// The path of text lines that differ where the witness differs from running too (see the
/// module doc): judged apart from `line[*]`, so a per-request token cannot hide a broken line.
pub const VOLATILE_LINES: &str = "line[volatile]";
/// The path of every other differing text line.
const LINES: &str = "line[*]";

/// The third answer to the same request that tells a volatile text line from a changed one (see
/// the module doc): testing's when the secondary is judged, the secondary's when testing is.
#[derive(Debug, Clone, Copy)]
pub enum Witness<'a> {
    /// None is expected (no secondary runs): every differing line is at `line[*]`.
    Off,
    /// One was expected but did not answer alike (failed, another status, not kept): nothing
    /// tells which lines vary, so the lines of this pair are not compared.
    Missing,
    /// Its body, in the form running's is compared in.
    Body(&'a [u8]),
}
/// Default bound of distinct (path, kind) entries per endpoint in [`DiffStats`].
pub const MAX_PATHS_PER_ENDPOINT: usize = 64;
/// Default bound of endpoints in [`DiffStats`].
pub const MAX_ENDPOINTS: usize = 256;
/// The one row past the endpoint bound, shared by every further endpoint: their differences are
/// still counted (and judged), only no longer apart.
pub const OTHER_ENDPOINTS: &str = "(other endpoints)";

/// One side's answer, as the judge needs it: borrowed, so judging copies nothing.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// HTTP status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// The body, already capped by the caller.
    pub body: &'a [u8],
    /// The version of the instance that answered (`1.0.0`), so version strings are not differences.
    pub version: &'a str,
    /// Response headers compared (`Content-Type` is compared on its own, as `$content_type`);
    /// `None` compares none.
    pub headers: Option<&'a http::HeaderMap>,
}

/// What the operator said about their answers (`DIFF_IGNORE`, `DIFF_UNORDERED`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DiffOptions<'a> {
    /// Paths known to be noise (`$.meta.request_id`, `$.items[*].updated_at`); an index in an
    /// entry is read as `[*]`. Everything under an ignored path is ignored too.
    pub ignore: &'a [String],
    /// Array paths whose order does not matter (`$.tags`, `$.items[*].tags`).
    pub unordered: &'a [String],
    /// Response headers never compared, lower case (`DIFF_IGNORE_HEADERS`); `set-cookie` here
    /// means its values are not compared, the cookie names still are.
    pub ignore_headers: &'a [String],
}

/// How testing's answer differs from running's at one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// Both have a value of the same type, but not the same value.
    Changed,
    /// Running has it, testing does not.
    Missing,
    /// Testing has it, running does not.
    Added,
    /// Both have a value, of different JSON types (a number became a string).
    TypeChanged,
    /// The values differ only by the versions they carry (`"v": "1.0.0"` vs `"v": "1.1.0"`):
    /// shown to the operator as expected, never counted against testing.
    Expected,
    /// Bodies over `DIFF_MAX_BODY` (or past the capture budget), compared by fingerprint only: a
    /// version string cannot be told from a regression, so reported, never counted, and the pair
    /// is no evidence about the bodies (see [`EndpointDiffs::uncompared`]).
    Uncompared,
}

impl DiffKind {
    /// Whether this kind counts against testing (not [`DiffKind::Expected`] nor
    /// [`DiffKind::Uncompared`]).
    pub fn counts(self) -> bool {
        !matches!(self, DiffKind::Expected | DiffKind::Uncompared)
    }

    /// The word shown in tables and reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Changed => "changed",
            DiffKind::Missing => "missing",
            DiffKind::Added => "added",
            DiffKind::TypeChanged => "type changed",
            DiffKind::Expected => "version (expected)",
            DiffKind::Uncompared => "too large to compare (fingerprint only)",
        }
    }
}

/// One difference in one pair: where, what kind, and an example to show the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The generalised path (`$.items[*].price`, `line[*]`, `$body`, `$status`).
    pub path: String,
    /// What kind of difference.
    pub kind: DiffKind,
    /// Running's value as text (JSON for JSON values), at most [`EXAMPLE_MAX`] bytes; empty when
    /// running has none.
    pub running: String,
    /// Testing's value as text, like `running`.
    pub testing: String,
}

/// Compare running's answer with testing's; returns each distinct (path, kind) once with its first
/// example, at most [`MAX_DIFFS_PER_PAIR`] counting ones and as many others. Empty means the
/// answers are equivalent.
pub fn diff(running: &Answer, testing: &Answer, opts: &DiffOptions) -> Vec<Difference> {
    diff_witnessed(running, testing, Witness::Off, opts)
}

/// As [`diff`], with a third answer to the very same request: text lines on which all three
/// differ are volatile in this pair ([`VOLATILE_LINES`]). The rule is symmetric, so testing's
/// differences and running's noise are classed alike.
pub fn diff_witnessed(
    running: &Answer,
    testing: &Answer,
    witness: Witness,
    opts: &DiffOptions,
) -> Vec<Difference> {
    let mut out = Out::default();
    if running.status != testing.status {
        out.push("$status", DiffKind::Changed, || {
            (running.status.to_string(), testing.status.to_string())
        });
    }
    let (rt, tt) = (
        media_type(running.content_type),
        media_type(testing.content_type),
    );
    if !rt.eq_ignore_ascii_case(tt) {
        out.push("$content_type", DiffKind::Changed, || {
            (cut(rt).to_string(), cut(tt).to_string())
        });
    }
    let versions = (
        spelled(running.version, running),
        spelled(testing.version, testing),
    );
    if let (Some(rh), Some(th)) = (running.headers, testing.headers) {
        diff_headers(rh, th, opts, versions, &mut out);
    }
    if running.body == testing.body {
        return out.list;
    }
    if let Some((r, t)) = parse_both(running, testing) {
        json::diff_json(&r, &t, opts, versions, &mut out);
    } else if let (true, Ok(r), Ok(t)) = (
        is_text(rt) || is_text(tt) || (rt.is_empty() && tt.is_empty()),
        std::str::from_utf8(running.body),
        std::str::from_utf8(testing.body),
    ) {
        diff_lines((r, t, witness), versions, &mut out);
    } else {
        out.push("$body", DiffKind::Changed, || {
            (bytes_example(running.body), bytes_example(testing.body))
        });
    }
    out.list
}

/// The spelling of `version` the answer `a` carries: whole (`1.4.0-rc.1+build.7`), without its
/// build metadata (`1.4.0-rc.1`), or its core (`1.4.0`). A build named with a CI stamp
/// (`app-1.4.0+g1234`) usually reports less than its name says; its version is still no difference.
fn spelled<'v>(version: &'v str, a: &Answer) -> &'v str {
    let no_build = version.split('+').next().unwrap_or(version);
    let core = no_build.split('-').next().unwrap_or(no_build);
    if core.len() == version.len() {
        return version;
    }
    [version, no_build, core]
        .into_iter()
        .find(|v| carries(a, v))
        .unwrap_or(version)
}

/// Whether `v` (not empty) occurs in `a`'s body or one of its headers' values.
fn carries(a: &Answer, v: &str) -> bool {
    let v = v.as_bytes();
    let within = |hay: &[u8]| !v.is_empty() && hay.windows(v.len()).any(|w| w == v);
    within(a.body)
        || a.headers
            .is_some_and(|h| h.values().any(|x| within(x.as_bytes())))
}

/// The media type without parameters: `application/json; charset=utf-8` → `application/json`.
fn media_type(ct: Option<&str>) -> &str {
    ct.map_or("", |c| c.split(';').next().unwrap_or("").trim())
}

fn is_text(media: &str) -> bool {
    media.len() >= 5 && media[..5].eq_ignore_ascii_case("text/")
}

/// Both bodies as JSON, when both parse. A body that cannot be JSON (first byte) is not parsed.
fn parse_both(running: &Answer, testing: &Answer) -> Option<(Value, Value)> {
    fn plausible(body: &[u8]) -> bool {
        body.iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| b"{[\"-0123456789tfn".contains(b))
    }
    if !plausible(running.body) || !plausible(testing.body) {
        return None;
    }
    Some((json::parse(running.body)?, json::parse(testing.body)?))
}

/// The differences found so far, each (path, kind) once. Counting differences and the others
/// ([`DiffKind::Expected`], [`DiffKind::Uncompared`]) are bounded apart: version-only entries,
/// which running's own noise never has, must not fill the list and cut a good answer.
#[derive(Default)]
struct Out {
    list: Vec<Difference>,
    /// Entries in `list` that count against testing (the cut row included).
    counting: usize,
}

impl Out {
    /// Record a difference unless its (path, kind) is already there or its part of the list is
    /// full; the examples are only built when it is recorded. The last counting place is the
    /// cut row, of the kind of the first counting difference dropped.
    fn push(&mut self, path: &str, kind: DiffKind, examples: impl FnOnce() -> (String, String)) {
        let full = if kind.counts() {
            self.full()
        } else {
            self.list.len() - self.counting >= MAX_DIFFS_PER_PAIR
        };
        if full || self.list.iter().any(|d| d.kind == kind && d.path == path) {
            return;
        }
        if kind.counts() {
            self.counting += 1;
        }
        if kind.counts() && self.counting == MAX_DIFFS_PER_PAIR {
            let kept = MAX_DIFFS_PER_PAIR - 1;
            let first = format!("{kept} kept, the rest not: from {path} ({})", kind.as_str());
            self.list.push(Difference {
                path: CUT_PATH.to_string(),
                kind,
                running: String::new(),
                testing: cut(&first).to_string(),
            });
            return;
        }
        let (running, testing) = examples();
        self.list.push(Difference {
            path: path.to_string(),
            kind,
            running,
            testing,
        });
    }

    /// Whether no further counting difference can be recorded (the walk may stop).
    fn full(&self) -> bool {
        self.counting >= MAX_DIFFS_PER_PAIR
    }
}

/// One URL path segment, folded when it is an id (`{n}`, `{uuid}`, `{id}`): `/users/42` and
/// `/users/43` are one endpoint. JSON object keys use the narrower [`fold_key`].
pub fn fold_id(seg: &str) -> &str {
    if seg.is_empty() {
        return seg;
    }
    if seg.bytes().all(|b| b.is_ascii_digit()) {
        return "{n}";
    }
    let is_hexish = |b: u8| b.is_ascii_hexdigit() || b == b'-';
    if seg.len() == 36
        && seg.bytes().all(is_hexish)
        && seg.bytes().filter(|b| *b == b'-').count() == 4
    {
        return "{uuid}";
    }
    let has_digit = seg.bytes().any(|b| b.is_ascii_digit());
    if seg.len() >= 8
        && has_digit
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return "{id}";
    }
    seg
}

/// One JSON object key, folded only when it is unmistakably an id (`{n}`: all digits, `{uuid}`),
/// as [`fold_id`] folds them: a map keyed by random ids is one path, while field names with
/// digits (`address_line1`, `p95Latency`, `sha256sum`) stay apart, and so do their ignore entries.
pub fn fold_key(key: &str) -> &str {
    match fold_id(key) {
        folded @ ("{n}" | "{uuid}") => folded,
        _ => key,
    }
}

/// Whether `r` becomes `t` when every occurrence of running's version in it is replaced by
/// testing's (or they are equal). Allocates nothing.
fn same_but_version(r: &str, t: &str, (rv, tv): (&str, &str)) -> bool {
    if r == t {
        return true;
    }
    if rv.is_empty() || rv == tv || !r.contains(rv) {
        return false;
    }
    let mut parts = r.split(rv);
    let Some(mut rest) = parts.next().and_then(|first| t.strip_prefix(first)) else {
        return false;
    };
    for part in parts {
        match rest.strip_prefix(tv).and_then(|s| s.strip_prefix(part)) {
            Some(s) => rest = s,
            None => return false,
        }
    }
    rest.is_empty()
}

/// Text bodies, line by line at the path `line[*]`, or [`VOLATILE_LINES`] where the witness's
/// line is neither running's nor testing's (see the module doc).
fn diff_lines((r, t, w): (&str, &str, Witness), versions: (&str, &str), out: &mut Out) {
    let witness = match w {
        Witness::Off => None,
        // A witness that is not UTF-8 text tells nothing either.
        Witness::Missing => return,
        Witness::Body(b) => match std::str::from_utf8(b) {
            Ok(w) => Some(w),
            Err(_) => return,
        },
    };
    if one_block_of_lines((r, t, witness), versions, out) {
        return;
    }
    let (mut rl, mut tl, mut wl) = (r.lines(), t.lines(), witness.map(str::lines));
    loop {
        // The witness's line here (`None` past its end), when there is a witness.
        let w = wl.as_mut().map(|l| l.next());
        let at = |kind: DiffKind, r: Option<&str>, t: Option<&str>| match w {
            Some(w) if kind.counts() && w != r && w != t => VOLATILE_LINES,
            _ => LINES,
        };
        match (rl.next(), tl.next()) {
            (Some(a), Some(b)) => {
                let kind = if a == b {
                    continue;
                } else if same_but_version(a, b, versions) {
                    DiffKind::Expected
                } else {
                    DiffKind::Changed
                };
                out.push(at(kind, Some(a), Some(b)), kind, || {
                    (cut(a).to_string(), cut(b).to_string())
                });
            }
            (Some(a), None) => {
                out.push(
                    at(DiffKind::Missing, Some(a), None),
                    DiffKind::Missing,
                    || (cut(a).to_string(), String::new()),
                );
                return;
            }
            (None, Some(b)) => {
                out.push(at(DiffKind::Added, None, Some(b)), DiffKind::Added, || {
                    (String::new(), cut(b).to_string())
                });
                return;
            }
            (None, None) => return,
        }
    }
}

/// Two sequences of lengths `r` and `t` that agree (`alike(i, j)`) element for element but for
/// one run removed or inserted: how many agree before that run and after it. `None` when they
/// differ otherwise. The one alignment rule of JSON arrays and text lines.
pub(crate) fn one_run_apart(
    r: usize,
    t: usize,
    mut alike: impl FnMut(usize, usize) -> bool,
) -> Option<(usize, usize)> {
    let shorter = r.min(t);
    let mut before = 0;
    while before < shorter && alike(before, before) {
        before += 1;
    }
    let mut after = 0;
    while after < shorter - before && alike(r - 1 - after, t - 1 - after) {
        after += 1;
    }
    (before + after >= shorter).then_some((before, after))
}

/// Answers whose line counts differ but agree around one run of lines removed or inserted (an
/// error banner added): that run is reported, `Missing` or `Added` at `line[*]`, instead of
/// every line after it as changed. Lines agree when equal, equal but for the versions, or when
/// the witness (line for line running's shape, else this is not tried) differs from running
/// there: such a line varies from answer to answer, and is reported as the index walk would.
/// `false`, with nothing reported, when the answers differ otherwise.
fn one_block_of_lines(
    (r, t, witness): (&str, &str, Option<&str>),
    versions: (&str, &str),
    out: &mut Out,
) -> bool {
    let (rl, tl): (Vec<&str>, Vec<&str>) = (r.lines().collect(), t.lines().collect());
    if rl.len() == tl.len() {
        return false;
    }
    let wl: Option<Vec<&str>> = witness.map(|w| w.lines().collect());
    if wl.as_ref().is_some_and(|w| w.len() != rl.len()) {
        return false; // the witness's shape differs too: line counts vary from answer to answer
    }
    let varies = |i: usize| wl.as_ref().is_some_and(|w| w[i] != rl[i]);
    let alike = |i: usize, j: usize| {
        rl[i] == tl[j] || same_but_version(rl[i], tl[j], versions) || varies(i)
    };
    let Some((before, after)) = one_run_apart(rl.len(), tl.len(), alike) else {
        return false;
    };
    let aligned = (0..before).map(|i| (i, i));
    let aligned = aligned.chain((0..after).map(|k| (rl.len() - 1 - k, tl.len() - 1 - k)));
    for (i, j) in aligned {
        let (a, b) = (rl[i], tl[j]);
        if a == b {
            continue;
        }
        let kind = if same_but_version(a, b, versions) {
            DiffKind::Expected
        } else {
            DiffKind::Changed
        };
        let all_three = wl.as_ref().is_some_and(|w| w[i] != a && w[i] != b);
        let path = if kind.counts() && all_three {
            VOLATILE_LINES
        } else {
            LINES
        };
        out.push(path, kind, || (cut(a).to_string(), cut(b).to_string()));
    }
    // The witness has running's shape: it lacks an inserted line and has a removed one, as
    // running does, so neither is volatile.
    for a in &rl[before..rl.len() - after] {
        out.push(LINES, DiffKind::Missing, || {
            (cut(a).to_string(), String::new())
        });
    }
    for b in &tl[before..tl.len() - after] {
        out.push(LINES, DiffKind::Added, || {
            (String::new(), cut(b).to_string())
        });
    }
    true
}

/// Headers never compared whatever the operator lists: they describe the connection or the
/// transfer, not the answer.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-type",
    "x-understudy-mirror",
];

/// Response headers, at `$header.<name>` (lower case); several values of one name compare as
/// one list. `Set-Cookie` in the ignore list compares cookie names only.
fn diff_headers(
    rh: &http::HeaderMap,
    th: &http::HeaderMap,
    opts: &DiffOptions,
    versions: (&str, &str),
    out: &mut Out,
) {
    let ignored =
        |name: &str| HOP_BY_HOP.contains(&name) || opts.ignore_headers.iter().any(|i| i == name);
    let names = rh.keys().chain(th.keys().filter(|k| !rh.contains_key(*k)));
    for name in names {
        let n = name.as_str();
        let cookie_names_only = n == "set-cookie" && ignored(n);
        if ignored(n) && !cookie_names_only {
            continue;
        }
        let values = |h: &http::HeaderMap| -> Option<String> {
            let mut all = h.get_all(name).iter().peekable();
            all.peek()?;
            let mut joined = String::new();
            for v in all {
                let v = String::from_utf8_lossy(v.as_bytes());
                let v = if cookie_names_only {
                    v.split('=').next().unwrap_or("").trim().to_string()
                } else {
                    v.into_owned()
                };
                if !joined.is_empty() {
                    joined.push_str(", ");
                }
                joined.push_str(&v);
            }
            Some(joined)
        };
        let path = format!("$header.{n}");
        match (values(rh), values(th)) {
            (Some(r), Some(t)) if r == t => {}
            (Some(r), Some(t)) => {
                let kind = if same_but_version(&r, &t, versions) {
                    DiffKind::Expected
                } else {
                    DiffKind::Changed
                };
                out.push(&path, kind, || (cut(&r).to_string(), cut(&t).to_string()));
            }
            (Some(r), None) => out.push(&path, DiffKind::Missing, || {
                (cut(&r).to_string(), String::new())
            }),
            (None, Some(t)) => out.push(&path, DiffKind::Added, || {
                (String::new(), cut(&t).to_string())
            }),
            (None, None) => {}
        }
    }
}

/// `s` cut to at most [`EXAMPLE_MAX`] bytes, at a character boundary.
fn cut(s: &str) -> &str {
    if s.len() <= EXAMPLE_MAX {
        return s;
    }
    let mut end = EXAMPLE_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A body that is not text or JSON: its text when it is UTF-8, else its size.
fn bytes_example(body: &[u8]) -> String {
    let head = &body[..body.len().min(EXAMPLE_MAX)];
    match std::str::from_utf8(head) {
        Ok(s) => s.to_string(),
        Err(e) if e.error_len().is_none() && body.len() > EXAMPLE_MAX => {
            // Cut inside a character at the limit: the text up to it.
            String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned()
        }
        Err(_) => format!("<{} bytes, not text>", body.len()),
    }
}

pub mod encoding;
mod json;
mod stats;
pub use stats::{DiffStats, EndpointDiffs, PathStats};

#[cfg(test)]
mod tests;
