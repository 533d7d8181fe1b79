//! Arrays whose order does not matter (`DIFF_UNORDERED`), compared as multisets. Elements are
//! matched by a hash of what the walker compares (ignored paths left out, running's version read
//! as testing's, object keys in any order), so a shuffled array of n elements costs n hashes and
//! n walks, not the n·m walks of trying every pair: a 20 000-element array stalled all diffing.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde_json::Value;

use super::{path_in, push_key, Walker};

/// Testing's element indices per hash.
type Buckets = HashMap<u64, Vec<usize>>;
use crate::diff::DiffKind;

/// Elements with the same hash tried per running element and key: different values share a
/// hash only by chance (or, for [`Key::Coarse`], by a shared shape), so more tries would only let
/// a pathological answer cost time.
const CANDIDATES: usize = 4;

/// How strings enter an element's hash. Testing's elements are hashed [`Key::Exact`] and
/// [`Key::Coarse`]; running's are looked up by [`Key::Replaced`], then [`Key::Exact`] (a string
/// equal as it is, version and all), then [`Key::Coarse`] (strings of both kinds in one value).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    /// The string as it is.
    Exact,
    /// Running's version replaced by testing's: equal to testing's exact hash where the walker
    /// finds the strings equal by their versions.
    Replaced,
    /// Only what no replacement can change ([`Walker::coarse_string`]): shared by many values.
    Coarse,
}

impl Walker<'_, '_> {
    /// Match each running element with an equivalent testing element; the rest are paired up in
    /// order and compared, and what is still left over is missing or added. `path` ends in `[*]`.
    pub(super) fn multiset(&mut self, path: &mut String, ra: &[Value], ta: &[Value]) {
        // Per hash, testing's indices latest first, so the earliest is found from the end.
        let (mut exact, mut coarse) = (Buckets::new(), Buckets::new());
        for (i, t) in ta.iter().enumerate().rev() {
            let h = self.canonical_hash(path, t, Key::Exact);
            exact.entry(h).or_default().push(i);
            let h = self.canonical_hash(path, t, Key::Coarse);
            coarse.entry(h).or_default().push(i);
        }
        let mut taken = vec![false; ta.len()];
        let mut left = Vec::new();
        for r in ra {
            // The earliest equivalent of each lookup's candidates, as comparing in order would.
            let mut partner: Option<usize> = None;
            for key in [Key::Replaced, Key::Exact, Key::Coarse] {
                let buckets = if key == Key::Coarse {
                    &mut coarse
                } else {
                    &mut exact
                };
                let h = self.canonical_hash(path, r, key);
                let found = self.partner(path, r, ta, buckets.get_mut(&h), &taken);
                partner = match (partner, found) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
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

    /// The earliest of up to [`CANDIDATES`] testing elements not yet taken in `bucket` that is
    /// equivalent to `r`.
    fn partner(
        &self,
        path: &mut String,
        r: &Value,
        ta: &[Value],
        bucket: Option<&mut Vec<usize>>,
        taken: &[bool],
    ) -> Option<usize> {
        let b = bucket?;
        // Taken ones are dropped as they come to the end (the earliest, where they mostly are).
        while b.last().is_some_and(|&i| taken[i]) {
            b.pop();
        }
        b.iter()
            .rev()
            .copied()
            .filter(|&i| !taken[i])
            .take(CANDIDATES)
            .find(|&i| self.equivalent(path, r, &ta[i]))
    }

    /// A hash of `v` (at `path`) that two values the walker finds equivalent always share, on
    /// either side: the walker's rules, read as a canonical form, strings read by `key`.
    fn canonical_hash(&self, path: &mut String, v: &Value, key: Key) -> u64 {
        let mut h = DefaultHasher::new();
        self.hash_into(path, v, key, &mut h);
        h.finish()
    }

    fn hash_into(&self, path: &mut String, v: &Value, key: Key, h: &mut DefaultHasher) {
        if path_in(path, self.opts.ignore) {
            // Anything equals anything here.
            return 0u8.hash(h);
        }
        match v {
            Value::Null => 1u8.hash(h),
            Value::Bool(b) => (2u8, b).hash(h),
            Value::Number(n) => {
                // As the walker compares them: an integer is not a float, -0.0 is 0.
                let f = n.as_f64().unwrap_or(f64::NAN);
                (3u8, n.is_f64(), if f == 0.0 { 0 } else { f.to_bits() }).hash(h);
            }
            // An integer too large for u64 / i64, by its digits (never a version to replace).
            Value::String(s) if super::big::digits(v).is_some() => (3u8, false, s).hash(h),
            Value::String(s) => self.hash_string(s, key, h),
            Value::Array(a) => self.hash_array(path, a, key, h),
            Value::Object(o) => {
                // Keys in any order: the entries' hashes are summed.
                let (len, mut sum) = (path.len(), 0u64);
                for (k, v) in o {
                    push_key(path, k);
                    if !path_in(path, self.opts.ignore) {
                        let mut e = DefaultHasher::new();
                        k.hash(&mut e);
                        self.hash_into(path, v, key, &mut e);
                        sum = sum.wrapping_add(e.finish());
                    }
                    path.truncate(len);
                }
                (5u8, sum).hash(h);
            }
        }
    }

    /// An array's part of [`Walker::canonical_hash`]: in order, or summed when it is unordered.
    fn hash_array(&self, path: &mut String, a: &[Value], key: Key, h: &mut DefaultHasher) {
        let unordered = path_in(path, self.opts.unordered);
        let len = path.len();
        path.push_str("[*]");
        if path_in(path, self.opts.ignore) {
            6u8.hash(h);
        } else if unordered {
            let mut sum = 0u64;
            for v in a {
                sum = sum.wrapping_add(self.canonical_hash(path, v, key));
            }
            (7u8, a.len(), sum).hash(h);
        } else {
            (8u8, a.len()).hash(h);
            for v in a {
                self.hash_into(path, v, key, h);
            }
        }
        path.truncate(len);
    }

    /// A string's part of [`Walker::canonical_hash`], read by `key`.
    fn hash_string(&self, s: &str, key: Key, h: &mut DefaultHasher) {
        let (rv, tv) = self.versions;
        match key {
            Key::Replaced if !rv.is_empty() && rv != tv && s.contains(rv) => {
                (4u8, s.replace(rv, tv).as_str()).hash(h)
            }
            Key::Exact | Key::Replaced => (4u8, s).hash(h),
            Key::Coarse => (4u8, self.coarse_string(s)).hash(h),
        }
    }

    /// What of a string the coarse hash may use. A string equals its partner as it is or with running's
    /// version replaced by testing's (`app-1.0.0-x` and `app-1.1.0-x`, but also `1.0.0` and
    /// `1.0.0`), so one carrying either version gives only what no replacement can change: the
    /// text before the first and after the last character of either version.
    fn coarse_string<'s>(&self, s: &'s str) -> (&'s str, &'s str, bool) {
        let (rv, tv) = self.versions;
        if rv.is_empty() || rv == tv || !(s.contains(rv) || s.contains(tv)) {
            return (s, "", false);
        }
        if tv.is_empty() {
            // Running's version deleted: nothing of the string is certain to stay.
            return ("", "", true);
        }
        let in_version = |c: char| rv.contains(c) || tv.contains(c);
        let head = s.find(in_version).unwrap_or(s.len());
        let tail = s.rfind(in_version).map_or(s.len(), |i| {
            i + s[i..].chars().next().map_or(0, char::len_utf8)
        });
        (&s[..head], &s[tail..], true)
    }
}
