//! JSON bodies compared field by field (see the [module doc](super#json)): a walker over both
//! values at once, the generalised paths it names, and the operator's path patterns.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;

use serde_json::Value;

use super::{fold_key, same_but_version, DiffKind, DiffOptions, Out, EXAMPLE_MAX};

mod big;
mod multiset;

pub(super) use big::parse;

/// Record every difference between running's JSON `r` and testing's `t` in `out`.
pub(super) fn diff_json(
    r: &Value,
    t: &Value,
    opts: &DiffOptions,
    versions: (&str, &str),
    out: &mut Out,
) {
    let mut walker = Walker {
        opts,
        versions,
        out: Some(out),
        found: false,
    };
    let mut path = String::with_capacity(64);
    path.push('$');
    walker.value(&mut path, r, t);
}

/// Walks two JSON values together. With `out` it records every difference; without, it only
/// finds whether there is one (`found`) and stops at the first.
pub(super) struct Walker<'o, 'a> {
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
            out.push(&fold_path(path), kind, || {
                (json_example(r), json_example(t))
            });
        }
    }

    /// A difference by the versions only: listed, but it does not make the values differ.
    fn expected(&mut self, path: &str, r: &Value, t: &Value) {
        if let Some(out) = self.out.as_deref_mut() {
            out.push(&fold_path(path), DiffKind::Expected, || {
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
            _ if big::digits(r).is_some() || big::digits(t).is_some() => self.big(path, r, t),
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
                // An integer that became a float (3 → 3.0) breaks a client reading an integer;
                // integers compare exactly (as i64/u64, not as f64, which would round 2^53 + 1).
                if rn.is_f64() != tn.is_f64() {
                    self.report(path, DiffKind::TypeChanged, Some(r), Some(t));
                } else if rn != tn {
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

    /// Where one side at least is an integer too large for `u64` / `i64` ([`big::digits`]):
    /// compared by its digits, exactly; against a float it is a type change, as 1 against 1.0.
    fn big(&mut self, path: &str, r: &Value, t: &Value) {
        let integer = |v: &Value| match v {
            Value::Number(n) => !n.is_f64(),
            _ => big::digits(v).is_some(),
        };
        if !integer(r) || !integer(t) {
            self.report(path, DiffKind::TypeChanged, Some(r), Some(t));
        } else if big::digits(r) != big::digits(t) {
            self.report(path, DiffKind::Changed, Some(r), Some(t));
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
        } else if ra.len() != ta.len() && self.out.is_none() {
            // A probe ([`Walker::equivalent`]) asks only whether they differ: they do. Walking on
            // would try the run again at every level of nesting, twice the work per level.
            self.found = true;
        } else if ra.len() != ta.len() && self.one_block(path, ra, ta) {
            // Reported as the elements missing or added where they were.
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

    /// Arrays of different lengths that agree but for one run of elements removed or inserted
    /// (the same elements before it and after it): that run is reported, missing or added,
    /// rather than every element after it as changed and the last ones as missing. `false`,
    /// with nothing reported, when they differ otherwise. `path` ends in `[*]`.
    fn one_block(&mut self, path: &mut String, ra: &[Value], ta: &[Value]) -> bool {
        let alike = |i: usize, j: usize| self.equivalent(path, &ra[i], &ta[j]);
        let Some((before, after)) = super::one_run_apart(ra.len(), ta.len(), alike) else {
            return false;
        };
        for r in &ra[before..ra.len() - after] {
            self.report(path, DiffKind::Missing, Some(r), None);
        }
        for t in &ta[before..ta.len() - after] {
            self.report(path, DiffKind::Added, None, Some(t));
        }
        true
    }

    /// Whether two values have no difference under the same rules (ignored paths, versions).
    pub(super) fn equivalent(&self, path: &mut String, r: &Value, t: &Value) -> bool {
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

/// Append `.key`, or `["key"]` when the key is not a plain identifier. The walker's path keeps
/// the key as it is, so an ignore entry naming one key matches that key only; a reported path
/// folds id keys ([`fold_path`]).
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

/// The path as reported: each key that is an id ([`fold_key`]) folded, so a map keyed by random
/// ids is one path, not a new path per id (which filled a pair's list before the fields after it).
fn fold_path(path: &str) -> Cow<'_, str> {
    let b = path.as_bytes();
    let (mut out, mut copied, mut i) = (None::<String>, 0, 0);
    while i < b.len() {
        match b[i] {
            b'.' => {
                let end = b[i + 1..]
                    .iter()
                    .position(|&c| c == b'.' || c == b'[')
                    .map_or(b.len(), |n| i + 1 + n);
                let (key, folded) = (&path[i + 1..end], fold_key(&path[i + 1..end]));
                if folded != key {
                    let o = out.get_or_insert_with(String::new);
                    o.push_str(&path[copied..=i]);
                    o.push_str(folded);
                    copied = end;
                }
                i = end;
            }
            b'[' if b.get(i + 1) == Some(&b'"') => {
                // A quoted key (JSON string): skip it whole, escapes included.
                i += 2;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(path),
        Some(mut o) => {
            o.push_str(&path[copied.min(path.len())..]);
            Cow::Owned(o)
        }
    }
}

/// Whether the generalised `path` is one of `patterns`, where an index in a pattern (`[3]`) is
/// read as `[*]` and a folded key in a pattern (`.{uuid}`, `.{n}`) matches every key that folds
/// so ([`fold_key`]); a concrete key matches itself only.
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
        if let Some((pi, qj)) = folded_key_matches(p, i, q, j) {
            (i, j) = (pi, qj);
            continue;
        }
        if p[i] != q[j] {
            return false;
        }
        i += 1;
        j += 1;
    }
    i == p.len() && j == q.len()
}

/// Where the pattern and the path go on after a key, when the pattern has a folded key
/// (`.{uuid}`) at `i` and the path at `j` a key that folds to it.
fn folded_key_matches(p: &[u8], i: usize, q: &[u8], j: usize) -> Option<(usize, usize)> {
    if p[i] != b'.' || q[j] != b'.' || p.get(i + 1) != Some(&b'{') {
        return None;
    }
    let token = &p[i + 1..i + 2 + p[i + 1..].iter().position(|&b| b == b'}')?];
    let key_len = q[j + 1..]
        .iter()
        .position(|&b| b == b'.' || b == b'[')
        .unwrap_or(q.len() - j - 1);
    let key = std::str::from_utf8(&q[j + 1..j + 1 + key_len]).ok()?;
    (fold_key(key).as_bytes() == token).then_some((i + 1 + token.len(), j + 1 + key_len))
}

/// A JSON value as text, at most [`EXAMPLE_MAX`] bytes, without serialising more than that.
fn json_example(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return String::new();
    };
    if let Some(d) = big::digits(v) {
        let mut end = d.len().min(EXAMPLE_MAX);
        while !d.is_char_boundary(end) {
            end -= 1;
        }
        return d[..end].to_string();
    }
    let mut w = Capped(Vec::with_capacity(64));
    // Fails only when the cap is reached, which is the point.
    let _ = serde_json::to_writer(&mut w, v);
    let mut bytes = w.0;
    while let Err(e) = std::str::from_utf8(&bytes) {
        bytes.truncate(e.valid_up_to());
    }
    big::unmarked(String::from_utf8(bytes).unwrap_or_default())
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
