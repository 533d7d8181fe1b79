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
//! and every array index is `[*]`, so `items[0].price` and `items[7].price` are one path. Object key
//! order is never a difference. Array order is (elements are compared index by index, the longer
//! side's extra elements are [`DiffKind::Missing`] / [`DiffKind::Added`] at `path[*]`), unless the
//! array's path is in [`DiffOptions::unordered`]: then it is compared as a multiset, and the
//! elements left without an equal partner are paired up in order and compared field by field.
//! A path in [`DiffOptions::ignore`] is skipped with everything under it.
//!
//! # Text
//! Lines are compared by their index. Every differing line is reported at the one path `line[*]`
//! (extra lines as `Missing` / `Added`): a text answer has no structure to tell one line's role
//! from another's, and a line number would split what is one difference (a changed footer, a
//! shifted block) into as many paths as there are lengths of answer. The example shows the first
//! differing line.
//!
//! # Versions
//! Running's and testing's answers are expected to differ where they carry their own version: a
//! string (JSON string or text line) is equal when replacing every occurrence of running's version
//! in running's string by testing's version yields testing's string (`"app-1.0.0-abc"` against
//! `"app-1.1.0-abc"`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;

use serde::Serialize;
use serde_json::Value;

/// Longest example text kept per side, in bytes (cut at a character boundary).
pub const EXAMPLE_MAX: usize = 200;
/// Most distinct (path, kind) differences one [`diff`] reports; one broken answer can not make an
/// unbounded list, and the rest would only repeat the pattern.
pub const MAX_DIFFS_PER_PAIR: usize = 64;
/// Default bound of distinct (path, kind) entries per endpoint in [`DiffStats`].
pub const MAX_PATHS_PER_ENDPOINT: usize = 64;
/// Default bound of endpoints in [`DiffStats`].
pub const MAX_ENDPOINTS: usize = 256;

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
    /// Bodies over `DIFF_MAX_BODY` whose length or hash differ: they could not be compared field
    /// by field, so a version string cannot be told from a regression; reported, never counted.
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
            DiffKind::Uncompared => "too large to compare (length or hash)",
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
/// example, at most [`MAX_DIFFS_PER_PAIR`]. Empty means the answers are equivalent.
pub fn diff(running: &Answer, testing: &Answer, opts: &DiffOptions) -> Vec<Difference> {
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
    if let (Some(rh), Some(th)) = (running.headers, testing.headers) {
        diff_headers(rh, th, opts, (running.version, testing.version), &mut out);
    }
    if running.body == testing.body {
        return out.list;
    }
    if let Some((r, t)) = parse_both(running, testing) {
        let mut walker = Walker {
            opts,
            versions: (running.version, testing.version),
            out: Some(&mut out),
            found: false,
        };
        let mut path = String::with_capacity(64);
        path.push('$');
        walker.value(&mut path, &r, &t);
    } else if let (true, Ok(r), Ok(t)) = (
        is_text(rt) || is_text(tt) || (rt.is_empty() && tt.is_empty()),
        std::str::from_utf8(running.body),
        std::str::from_utf8(testing.body),
    ) {
        diff_lines(r, t, (running.version, testing.version), &mut out);
    } else {
        out.push("$body", DiffKind::Changed, || {
            (bytes_example(running.body), bytes_example(testing.body))
        });
    }
    out.list
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
    let r = serde_json::from_slice(running.body).ok()?;
    let t = serde_json::from_slice(testing.body).ok()?;
    Some((r, t))
}

/// The differences found so far, each (path, kind) once.
#[derive(Default)]
struct Out {
    list: Vec<Difference>,
}

impl Out {
    /// Record a difference unless its (path, kind) is already there or the list is full; the
    /// examples are only built when it is recorded.
    fn push(&mut self, path: &str, kind: DiffKind, examples: impl FnOnce() -> (String, String)) {
        if self.list.len() >= MAX_DIFFS_PER_PAIR
            || self.list.iter().any(|d| d.kind == kind && d.path == path)
        {
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

    fn full(&self) -> bool {
        self.list.len() >= MAX_DIFFS_PER_PAIR
    }
}

/// Walks two JSON values together. With `out` it records every difference; without, it only
/// finds whether there is one (`found`) and stops at the first.
struct Walker<'o, 'a> {
    opts: &'a DiffOptions<'a>,
    versions: (&'a str, &'a str),
    out: Option<&'o mut Out>,
    found: bool,
}

impl Walker<'_, '_> {
    fn done(&self) -> bool {
        match &self.out {
            Some(out) => out.full(),
            None => self.found,
        }
    }

    fn report(&mut self, path: &str, kind: DiffKind, r: Option<&Value>, t: Option<&Value>) {
        self.found = true;
        if let Some(out) = self.out.as_deref_mut() {
            out.push(path, kind, || (json_example(r), json_example(t)));
        }
    }

    /// A difference by the versions only: listed, but it does not make the values differ.
    fn expected(&mut self, path: &str, r: &Value, t: &Value) {
        if let Some(out) = self.out.as_deref_mut() {
            out.push(path, DiffKind::Expected, || {
                (json_example(Some(r)), json_example(Some(t)))
            });
        }
    }

    fn value(&mut self, path: &mut String, r: &Value, t: &Value) {
        if self.done() || path_in(path, self.opts.ignore) {
            return;
        }
        match (r, t) {
            (Value::Object(ro), Value::Object(to)) => {
                let len = path.len();
                for (k, rv) in ro {
                    push_key(path, k);
                    match to.get(k) {
                        Some(tv) => self.value(path, rv, tv),
                        None if !path_in(path, self.opts.ignore) => {
                            self.report(path, DiffKind::Missing, Some(rv), None)
                        }
                        None => {}
                    }
                    path.truncate(len);
                    if self.done() {
                        return;
                    }
                }
                for (k, tv) in to {
                    if !ro.contains_key(k) {
                        push_key(path, k);
                        if !path_in(path, self.opts.ignore) {
                            self.report(path, DiffKind::Added, None, Some(tv));
                        }
                        path.truncate(len);
                        if self.done() {
                            return;
                        }
                    }
                }
            }
            (Value::Array(ra), Value::Array(ta)) => self.array(path, ra, ta),
            (Value::String(rs), Value::String(ts)) => {
                if rs == ts {
                } else if same_but_version(rs, ts, self.versions) {
                    self.expected(path, r, t);
                } else {
                    self.report(path, DiffKind::Changed, Some(r), Some(t));
                }
            }
            (Value::Number(rn), Value::Number(tn)) => {
                let float = rn.is_f64() || tn.is_f64();
                if rn != tn && !(float && rn.as_f64() == tn.as_f64()) {
                    self.report(path, DiffKind::Changed, Some(r), Some(t));
                }
            }
            _ if std::mem::discriminant(r) == std::mem::discriminant(t) => {
                if r != t {
                    self.report(path, DiffKind::Changed, Some(r), Some(t));
                }
            }
            _ => self.report(path, DiffKind::TypeChanged, Some(r), Some(t)),
        }
    }

    fn array(&mut self, path: &mut String, ra: &[Value], ta: &[Value]) {
        let unordered = path_in(path, self.opts.unordered);
        let len = path.len();
        path.push_str("[*]");
        if path_in(path, self.opts.ignore) {
            path.truncate(len);
            return;
        }
        if unordered {
            self.multiset(path, ra, ta);
        } else {
            for (r, t) in ra.iter().zip(ta) {
                self.value(path, r, t);
                if self.done() {
                    break;
                }
            }
            for r in ra.iter().skip(ta.len()) {
                self.report(path, DiffKind::Missing, Some(r), None);
            }
            for t in ta.iter().skip(ra.len()) {
                self.report(path, DiffKind::Added, None, Some(t));
            }
        }
        path.truncate(len);
    }

    /// Match each running element with an equivalent testing element; the rest are paired up in
    /// order and compared, and what is still left over is missing or added. `path` ends in `[*]`.
    fn multiset(&mut self, path: &mut String, ra: &[Value], ta: &[Value]) {
        let mut taken = vec![false; ta.len()];
        let mut left = Vec::new();
        for r in ra {
            let partner = (0..ta.len()).find(|&i| !taken[i] && self.equivalent(path, r, &ta[i]));
            match partner {
                Some(i) => taken[i] = true,
                None => left.push(r),
            }
        }
        if left.is_empty() && taken.iter().all(|&t| t) {
            return;
        }
        self.found = true;
        if self.out.is_none() {
            return;
        }
        let mut rest = ta
            .iter()
            .zip(&taken)
            .filter(|(_, &taken)| !taken)
            .map(|(t, _)| t);
        for r in left {
            match rest.next() {
                Some(t) => self.value(path, r, t),
                None => self.report(path, DiffKind::Missing, Some(r), None),
            }
        }
        for t in rest {
            self.report(path, DiffKind::Added, None, Some(t));
        }
    }

    /// Whether two values have no difference under the same rules (ignored paths, versions).
    fn equivalent(&self, path: &mut String, r: &Value, t: &Value) -> bool {
        let mut probe = Walker {
            opts: self.opts,
            versions: self.versions,
            out: None,
            found: false,
        };
        let len = path.len();
        probe.value(path, r, t);
        path.truncate(len);
        !probe.found
    }
}

/// Append `.key`, or `["key"]` when the key is not a plain identifier.
fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        path.push('.');
        path.push_str(key);
    } else {
        path.push('[');
        // Writing JSON of a string into a String cannot fail.
        let _ = write!(path, "{}", Value::from(key));
        path.push(']');
    }
}

/// Whether the generalised `path` is one of `patterns`, where an index in a pattern (`[3]`) is
/// read as `[*]`.
fn path_in(path: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| path_matches(p, path))
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let (p, q) = (pattern.as_bytes(), path.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < p.len() && j < q.len() {
        if p[i] == b'[' && q[j..].starts_with(b"[*]") {
            let digits = p[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits > 0 && p.get(i + 1 + digits) == Some(&b']') {
                i += digits + 2;
                j += 3;
                continue;
            }
        }
        if p[i] != q[j] {
            return false;
        }
        i += 1;
        j += 1;
    }
    i == p.len() && j == q.len()
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

/// Text bodies, line by line at the path `line[*]` (see the module doc).
fn diff_lines(r: &str, t: &str, versions: (&str, &str), out: &mut Out) {
    let (mut rl, mut tl) = (r.lines(), t.lines());
    loop {
        match (rl.next(), tl.next()) {
            (Some(a), Some(b)) => {
                let kind = if a == b {
                    continue;
                } else if same_but_version(a, b, versions) {
                    DiffKind::Expected
                } else {
                    DiffKind::Changed
                };
                out.push("line[*]", kind, || (cut(a).to_string(), cut(b).to_string()));
            }
            (Some(a), None) => {
                out.push("line[*]", DiffKind::Missing, || {
                    (cut(a).to_string(), String::new())
                });
                return;
            }
            (None, Some(b)) => {
                out.push("line[*]", DiffKind::Added, || {
                    (String::new(), cut(b).to_string())
                });
                return;
            }
            (None, None) => return,
        }
    }
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

/// A JSON value as text, at most [`EXAMPLE_MAX`] bytes, without serialising more than that.
fn json_example(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return String::new();
    };
    let mut w = Capped(Vec::with_capacity(64));
    // Fails only when the cap is reached, which is the point.
    let _ = serde_json::to_writer(&mut w, v);
    let mut bytes = w.0;
    while let Err(e) = std::str::from_utf8(&bytes) {
        bytes.truncate(e.valid_up_to());
    }
    String::from_utf8(bytes).unwrap_or_default()
}

/// A writer that keeps the first [`EXAMPLE_MAX`] bytes and then refuses more.
struct Capped(Vec<u8>);

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = EXAMPLE_MAX - self.0.len();
        if room == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let n = buf.len().min(room);
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How often one difference was seen on one endpoint, with one example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStats {
    /// Pairs that had this difference.
    pub pairs: u64,
    /// The first such difference, so the operator sees what it looks like.
    pub example: Difference,
}

/// The differences seen on one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndpointDiffs {
    /// Pairs compared on this endpoint (with or without differences), so a count has a base.
    pub pairs: u64,
    /// Per (path, kind), at most the stats' path bound.
    pub paths: BTreeMap<(String, DiffKind), PathStats>,
    /// Differences not kept because `paths` was full: the bound is visible, not silent.
    pub overflow: u64,
}

/// What the scorer holds: per endpoint and (path, kind), how many pairs differed, with bounded
/// memory however varied the answers are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffStats {
    /// Per endpoint key (`GET /users/{n}`).
    pub endpoints: BTreeMap<String, EndpointDiffs>,
    /// Pairs of endpoints not kept because `endpoints` was full.
    pub endpoint_overflow: u64,
    max_endpoints: usize,
    max_paths: usize,
}

impl Default for DiffStats {
    fn default() -> Self {
        DiffStats::with_limits(MAX_ENDPOINTS, MAX_PATHS_PER_ENDPOINT)
    }
}

impl DiffStats {
    /// Stats keeping at most `max_endpoints` endpoints and `max_paths` (path, kind) per endpoint.
    pub fn with_limits(max_endpoints: usize, max_paths: usize) -> Self {
        DiffStats {
            endpoints: BTreeMap::new(),
            endpoint_overflow: 0,
            max_endpoints,
            max_paths,
        }
    }

    /// Count one compared pair of `endpoint` with its differences (as [`diff`] returned them; a
    /// (path, kind) repeated in `diffs` counts once).
    pub fn record(&mut self, endpoint: &str, diffs: &[Difference]) {
        if !self.endpoints.contains_key(endpoint) {
            if self.endpoints.len() >= self.max_endpoints {
                self.endpoint_overflow += 1;
                return;
            }
            self.endpoints
                .insert(endpoint.to_string(), EndpointDiffs::default());
        }
        let Some(e) = self.endpoints.get_mut(endpoint) else {
            return;
        };
        e.pairs += 1;
        for (i, d) in diffs.iter().enumerate() {
            if diffs[..i]
                .iter()
                .any(|p| p.kind == d.kind && p.path == d.path)
            {
                continue;
            }
            // The key is built once per difference; a lookup by borrowed parts would need a
            // custom key type for little gain at these sizes.
            let key = (d.path.clone(), d.kind);
            if let Some(p) = e.paths.get_mut(&key) {
                p.pairs += 1;
            } else if e.paths.len() < self.max_paths {
                e.paths.insert(
                    key,
                    PathStats {
                        pairs: 1,
                        example: d.clone(),
                    },
                );
            } else {
                e.overflow += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json");

    /// A difference as the tables list it: (path, kind).
    type Found = (String, DiffKind);
    /// Name, running's body, testing's body, ignore, unordered, the differences expected.
    type JsonCase = (
        &'static str,
        &'static str,
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        Vec<Found>,
    );

    fn answer<'a>(ct: Option<&'a str>, body: &'a str, version: &'a str) -> Answer<'a> {
        Answer {
            status: 200,
            content_type: ct,
            body: body.as_bytes(),
            version,
            headers: None,
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// `(path, kind)` of each difference between two JSON bodies under the options.
    fn json_diffs(
        r: &str,
        t: &str,
        ignore: &[&str],
        unordered: &[&str],
    ) -> Vec<(String, DiffKind)> {
        let (ignore, unordered) = (strings(ignore), strings(unordered));
        let opts = DiffOptions {
            ignore: &ignore,
            unordered: &unordered,
            ignore_headers: &[],
        };
        diff(&answer(JSON, r, "1.0.0"), &answer(JSON, t, "1.1.0"), &opts)
            .into_iter()
            .map(|d| (d.path, d.kind))
            .collect()
    }

    fn p(path: &str, kind: DiffKind) -> (String, DiffKind) {
        (path.to_string(), kind)
    }

    use DiffKind::*;

    #[test]
    fn json_rules() {
        #[rustfmt::skip]
        let cases: &[JsonCase] = &[
            ("key order", r#"{"a":1,"b":2}"#, r#"{"b":2,"a":1}"#, &[], &[], vec![]),
            ("nested key order", r#"{"o":{"x":[1,{"p":1,"q":2}]}}"#, r#"{"o":{"x":[1,{"q":2,"p":1}]}}"#, &[], &[], vec![]),
            ("changed", r#"{"a":1}"#, r#"{"a":2}"#, &[], &[], vec![p("$.a", Changed)]),
            ("missing", r#"{"a":1,"b":2}"#, r#"{"a":1}"#, &[], &[], vec![p("$.b", Missing)]),
            ("added", r#"{"a":1}"#, r#"{"a":1,"c":3}"#, &[], &[], vec![p("$.c", Added)]),
            ("type changed", r#"{"a":1}"#, r#"{"a":"1"}"#, &[], &[], vec![p("$.a", TypeChanged)]),
            ("null to object", r#"{"a":null}"#, r#"{"a":{}}"#, &[], &[], vec![p("$.a", TypeChanged)]),
            ("bool changed", r#"{"a":true}"#, r#"{"a":false}"#, &[], &[], vec![p("$.a", Changed)]),
            ("1 and 1.0 are equal", r#"{"a":1}"#, r#"{"a":1.0}"#, &[], &[], vec![]),
            ("root scalar", "1", "2", &[], &[], vec![p("$", Changed)]),
            ("odd key", r#"{"a b":1}"#, r#"{"a b":2}"#, &[], &[], vec![p(r#"$["a b"]"#, Changed)]),
            ("array order matters", "[1,2]", "[2,1]", &[], &[], vec![p("$[*]", Changed)]),
            ("unordered array", r#"{"t":[1,2,2]}"#, r#"{"t":[2,1,2]}"#, &[], &["$.t"], vec![]),
            ("unordered is a multiset", r#"{"t":[1,2,2]}"#, r#"{"t":[2,1,1]}"#, &[], &["$.t"], vec![p("$.t[*]", Changed)]),
            ("unordered missing", r#"{"t":[1,2,3]}"#, r#"{"t":[3,1]}"#, &[], &["$.t"], vec![p("$.t[*]", Missing)]),
            ("unordered added", r#"{"t":[1]}"#, r#"{"t":[1,4]}"#, &[], &["$.t"], vec![p("$.t[*]", Added)]),
            ("unordered objects compared field by field",
                r#"{"i":[{"id":1,"p":5},{"id":2,"p":6}]}"#, r#"{"i":[{"id":2,"p":6},{"id":1,"p":7}]}"#,
                &[], &["$.i"], vec![p("$.i[*].p", Changed)]),
            ("nested unordered path", r#"{"i":[{"t":["a","b"]}]}"#, r#"{"i":[{"t":["b","a"]}]}"#, &[], &["$.i[*].t"], vec![]),
            ("other arrays stay ordered", r#"{"t":[1,2],"u":[1,2]}"#, r#"{"t":[2,1],"u":[2,1]}"#, &[], &["$.t"], vec![p("$.u[*]", Changed)]),
            ("ordered extra elements", "[1,2,3]", "[1]", &[], &[], vec![p("$[*]", Missing)]),
            ("ordered added elements", "[1]", "[1,2]", &[], &[], vec![p("$[*]", Added)]),
            ("indices generalised, one entry per path",
                r#"{"items":[{"price":1},{"price":2},{"price":3}]}"#, r#"{"items":[{"price":9},{"price":2},{"price":8}]}"#,
                &[], &[], vec![p("$.items[*].price", Changed)]),
            ("ignore exact", r#"{"meta":{"request_id":"a","n":1}}"#, r#"{"meta":{"request_id":"b","n":1}}"#, &["$.meta.request_id"], &[], vec![]),
            ("ignore missing and added", r#"{"x":1}"#, r#"{"y":1}"#, &["$.x", "$.y"], &[], vec![]),
            ("ignore subtree", r#"{"meta":{"a":1,"b":[1]}}"#, r#"{"meta":{"a":2,"b":[]}}"#, &["$.meta"], &[], vec![]),
            ("ignore generalised", r#"{"items":[{"u":1,"v":1},{"u":2,"v":1}]}"#, r#"{"items":[{"u":3,"v":1},{"u":4,"v":2}]}"#,
                &["$.items[*].u"], &[], vec![p("$.items[*].v", Changed)]),
            ("ignore entry with an index reads as [*]", r#"{"items":[{"u":1},{"u":2}]}"#, r#"{"items":[{"u":3},{"u":4}]}"#, &["$.items[0].u"], &[], vec![]),
            ("ignore inside unordered matching", r#"{"i":[{"id":1,"at":1},{"id":2,"at":2}]}"#, r#"{"i":[{"id":2,"at":5},{"id":1,"at":6}]}"#,
                &["$.i[*].at"], &["$.i"], vec![]),
            ("ignore array elements", r#"{"a":[1,2]}"#, r#"{"a":[3]}"#, &["$.a[*]"], &[], vec![]),
            ("version in JSON string", r#"{"v":"1.0.0"}"#, r#"{"v":"1.1.0"}"#, &[], &[], vec![p("$.v", Expected)]),
            ("version inside a string", r#"{"build":"app-1.0.0-abc"}"#, r#"{"build":"app-1.1.0-abc"}"#, &[], &[], vec![p("$.build", Expected)]),
            ("version twice", r#"{"b":"1.0.0/1.0.0"}"#, r#"{"b":"1.1.0/1.1.0"}"#, &[], &[], vec![p("$.b", Expected)]),
            ("versions in unordered elements still match", r#"{"t":[{"v":"1.0.0","n":1},{"v":"x","n":2}]}"#, r#"{"t":[{"v":"x","n":2},{"v":"1.1.0","n":1}]}"#, &[], &["$.t"], vec![]),
            ("version plus another change", r#"{"build":"app-1.0.0-abc"}"#, r#"{"build":"app-1.1.0-xyz"}"#, &[], &[], vec![p("$.build", Changed)]),
            ("version only half replaced", r#"{"b":"1.0.0/1.0.0"}"#, r#"{"b":"1.1.0/1.0.0"}"#, &[], &[], vec![p("$.b", Changed)]),
            ("wrong version", r#"{"v":"1.0.0"}"#, r#"{"v":"1.2.0"}"#, &[], &[], vec![p("$.v", Changed)]),
            ("several kinds", r#"{"a":1,"b":2,"c":[1]}"#, r#"{"a":2,"c":"x","d":0}"#, &[], &[],
                vec![p("$.a", Changed), p("$.b", Missing), p("$.c", TypeChanged), p("$.d", Added)]),
        ];
        for (name, r, t, ignore, unordered, want) in cases {
            let mut got = json_diffs(r, t, ignore, unordered);
            got.sort();
            let mut want = want.clone();
            want.sort();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn json_without_json_content_type_when_both_parse() {
        let r = answer(Some("text/plain"), r#"{"a":1,"b":2}"#, "1.0.0");
        let t = answer(Some("text/plain"), r#"{"b":2,"a":1}"#, "1.1.0");
        assert_eq!(diff(&r, &t, &DiffOptions::default()), vec![]);
    }

    #[test]
    fn text_rules() {
        let text = Some("text/plain; charset=utf-8");
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, Vec<Found>)] = &[
            ("equal after line endings", "a\nb\n", "a\r\nb", vec![]),
            ("changed line", "a\nb\nc", "a\nB\nc", vec![p("line[*]", Changed)]),
            ("many changed lines aggregate", "a\nb\nc", "x\ny\nz", vec![p("line[*]", Changed)]),
            ("missing line", "a\nb", "a", vec![p("line[*]", Missing)]),
            ("added line", "a", "a\nb", vec![p("line[*]", Added)]),
            ("version in a line", "version 1.0.0\nok", "version 1.1.0\nok", vec![p("line[*]", Expected)]),
            ("version and change in a line", "version 1.0.0 up", "version 1.1.0 down", vec![p("line[*]", Changed)]),
        ];
        for (name, r, t, want) in cases {
            let got: Vec<_> = diff(
                &answer(text, r, "1.0.0"),
                &answer(text, t, "1.1.0"),
                &DiffOptions::default(),
            )
            .into_iter()
            .map(|d| (d.path, d.kind))
            .collect();
            assert_eq!(&got, want, "{name}");
        }
        let d = diff(
            &answer(text, "a\nold", "1.0.0"),
            &answer(text, "a\nnew", "1.1.0"),
            &DiffOptions::default(),
        );
        assert_eq!(
            (d[0].running.as_str(), d[0].testing.as_str()),
            ("old", "new")
        );
    }

    #[test]
    fn text_without_a_content_type_is_text() {
        let d = diff(
            &answer(None, "hello from 1.0.0 GET /\n", "1.0.0"),
            &answer(None, "hello from 1.1.0 GET /\n", "1.1.0"),
            &DiffOptions::default(),
        );
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].path.as_str(), d[0].kind), ("line[*]", Expected));
        assert!(!d[0].kind.counts());
    }

    #[test]
    fn headers_are_compared_minus_the_ignored_ones() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = http::HeaderMap::new();
            for (k, v) in pairs {
                m.append(*k, http::HeaderValue::from_static(v));
            }
            m
        };
        let rh = h(&[
            ("date", "Mon"),
            ("cache-control", "no-store"),
            ("x-version", "1.0.0"),
            ("set-cookie", "sid=abc; Path=/"),
            ("x-gone", "1"),
            ("connection", "keep-alive"),
        ]);
        let th = h(&[
            ("date", "Tue"),
            ("cache-control", "max-age=60"),
            ("x-version", "1.1.0"),
            ("set-cookie", "sid=xyz; Path=/"),
            ("x-new", "1"),
        ]);
        let ignore = strings(&["date", "set-cookie"]);
        let opts = DiffOptions {
            ignore_headers: &ignore,
            ..DiffOptions::default()
        };
        let r = Answer {
            headers: Some(&rh),
            ..answer(None, "same", "1.0.0")
        };
        let t = Answer {
            headers: Some(&th),
            ..answer(None, "same", "1.1.0")
        };
        let mut got: Vec<_> = diff(&r, &t, &opts)
            .into_iter()
            .map(|d| (d.path, d.kind))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                p("$header.cache-control", Changed),
                p("$header.x-gone", Missing),
                p("$header.x-new", Added),
                p("$header.x-version", Expected),
            ]
        );
        // A cookie that is no longer set is named even though values are ignored.
        let th2 = h(&[("set-cookie", "other=1")]);
        let t2 = Answer {
            headers: Some(&th2),
            ..answer(None, "same", "1.1.0")
        };
        let r2h = h(&[("set-cookie", "sid=1")]);
        let r2 = Answer {
            headers: Some(&r2h),
            ..answer(None, "same", "1.0.0")
        };
        let d = diff(&r2, &t2, &opts);
        assert_eq!(d[0].path, "$header.set-cookie");
        assert_eq!(
            (d[0].running.as_str(), d[0].testing.as_str()),
            ("sid", "other")
        );
    }

    #[test]
    fn other_bodies_by_bytes() {
        let bin = Some("application/octet-stream");
        let same = diff(
            &answer(bin, "\u{1}abc", "1.0.0"),
            &answer(bin, "\u{1}abc", "1.1.0"),
            &DiffOptions::default(),
        );
        assert_eq!(same, vec![]);
        let r = Answer {
            body: &[0xff, 0x00, 1],
            ..answer(bin, "", "1.0.0")
        };
        let t = Answer {
            body: &[0xff, 0x00, 2],
            ..answer(bin, "", "1.1.0")
        };
        let d = diff(&r, &t, &DiffOptions::default());
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].path.as_str(), d[0].kind), ("$body", Changed));
        assert_eq!(d[0].running, "<3 bytes, not text>");
        // JSON declared but broken: compared by bytes.
        let d = diff(
            &answer(JSON, "{broken", "1.0.0"),
            &answer(JSON, "{broke", "1.1.0"),
            &DiffOptions::default(),
        );
        assert_eq!((d[0].path.as_str(), d[0].kind), ("$body", Changed));
        // No version awareness for bytes that are not text.
        let d = diff(
            &answer(bin, "1.0.0", "1.0.0"),
            &answer(bin, "1.1.0", "1.1.0"),
            &DiffOptions::default(),
        );
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn status_and_content_type() {
        let r = answer(Some("application/json; charset=utf-8"), "{}", "1.0.0");
        let t = Answer {
            status: 500,
            ..answer(Some("APPLICATION/JSON"), "{}", "1.1.0")
        };
        let d = diff(&r, &t, &DiffOptions::default());
        assert_eq!(d.len(), 1);
        assert_eq!(
            (
                d[0].path.as_str(),
                d[0].running.as_str(),
                d[0].testing.as_str()
            ),
            ("$status", "200", "500")
        );
        let t = answer(Some("text/html"), "{}", "1.1.0");
        let d = diff(&r, &t, &DiffOptions::default());
        assert_eq!(d[0].path, "$content_type");
        assert_eq!(d[0].testing, "text/html");
    }

    #[test]
    fn examples_are_cut_to_200_bytes() {
        let long = "é".repeat(300); // 600 bytes
        let r = format!(r#"{{"s":"{long}","o":{{"big":"{long}"}}}}"#);
        let t = r#"{"s":"short"}"#;
        let d = diff(
            &answer(JSON, &r, "1.0.0"),
            &answer(JSON, t, "1.1.0"),
            &DiffOptions::default(),
        );
        assert_eq!(d.len(), 2);
        let d: BTreeMap<_, _> = d.into_iter().map(|x| (x.path.clone(), x)).collect();
        let d = [&d["$.s"], &d["$.o"]];
        for x in d {
            assert!(x.running.len() <= EXAMPLE_MAX && x.running.len() >= EXAMPLE_MAX - 4);
        }
        assert!(d[0].running.starts_with("\"éé"));
        assert_eq!(d[0].testing, "\"short\"");
        assert_eq!(d[1].testing, "");
        // Text lines and raw bodies too.
        let text = Some("text/plain");
        let d = diff(
            &answer(text, &long, "1.0.0"),
            &answer(text, "x", "1.1.0"),
            &DiffOptions::default(),
        );
        assert_eq!(d[0].running.len(), EXAMPLE_MAX);
        let bin = Some("application/octet-stream");
        let d = diff(
            &answer(bin, &long, "1.0.0"),
            &answer(bin, "x", "1.1.0"),
            &DiffOptions::default(),
        );
        assert_eq!(d[0].running.len(), EXAMPLE_MAX);
    }

    #[test]
    fn one_pair_reports_a_bounded_list() {
        let r: serde_json::Map<String, Value> = (0..200)
            .map(|i| (format!("k{i}"), Value::from(i)))
            .collect();
        let r = Value::Object(r).to_string();
        let d = diff(
            &answer(JSON, &r, "1.0.0"),
            &answer(JSON, "{}", "1.1.0"),
            &DiffOptions::default(),
        );
        assert_eq!(d.len(), MAX_DIFFS_PER_PAIR);
    }

    fn difference(path: &str, kind: DiffKind) -> Difference {
        Difference {
            path: path.to_string(),
            kind,
            running: "r".to_string(),
            testing: "t".to_string(),
        }
    }

    #[test]
    fn stats_count_pairs_per_path() {
        let mut s = DiffStats::default();
        let a = difference("$.a", Changed);
        s.record("GET /x", &[a.clone(), a.clone()]);
        s.record("GET /x", &[]);
        s.record("GET /x", &[a.clone(), difference("$.b", Missing)]);
        let e = &s.endpoints["GET /x"];
        assert_eq!(e.pairs, 3);
        assert_eq!(e.paths[&("$.a".to_string(), Changed)].pairs, 2);
        assert_eq!(e.paths[&("$.a".to_string(), Changed)].example, a);
        assert_eq!(e.paths[&("$.b".to_string(), Missing)].pairs, 1);
        assert_eq!(e.overflow, 0);
    }

    #[test]
    fn stats_are_bounded() {
        let mut s = DiffStats::with_limits(2, 3);
        for i in 0..5 {
            s.record("GET /x", &[difference(&format!("$.k{i}"), Added)]);
        }
        s.record("GET /x", &[difference("$.k0", Added)]);
        let e = &s.endpoints["GET /x"];
        assert_eq!(e.paths.len(), 3);
        assert_eq!(e.overflow, 2);
        assert_eq!(e.pairs, 6);
        assert_eq!(e.paths[&("$.k0".to_string(), Added)].pairs, 2);
        s.record("GET /y", &[]);
        s.record("GET /z", &[]);
        s.record("GET /z", &[]);
        assert_eq!(s.endpoints.len(), 2);
        assert_eq!(s.endpoint_overflow, 2);
        let d = DiffStats::default();
        assert_eq!(
            (d.max_endpoints, d.max_paths),
            (MAX_ENDPOINTS, MAX_PATHS_PER_ENDPOINT)
        );
    }
}
