//! Answers compressed by the app (`Content-Encoding: gzip` or `deflate`) are compared by what
//! they say, not by their compressed bytes: two identical builds' gzip bodies differ in nothing a
//! user reads, yet byte for byte they are "not text" and any wrong value inside is invisible.

use std::borrow::Cow;
use std::io::Read;

use http::HeaderMap;

/// A content coding understudy can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    Deflate,
}

impl Coding {
    /// Its token in `Content-Encoding` and `Accept-Encoding`.
    fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// The answer's content coding: `Ok(None)` for none (or `identity`), `Ok(Some)` for one
/// understudy can undo, `Err` for any other or for stacked codings (compared as they came).
fn coding(headers: &HeaderMap) -> Result<Option<Coding>, ()> {
    let mut values = headers.get_all(http::header::CONTENT_ENCODING).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| ())?.trim();
    if values.next().is_some() || v.contains(',') {
        return Err(()); // stacked codings: compared as they are
    }
    if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") {
        Ok(Some(Coding::Gzip))
    } else if v.eq_ignore_ascii_case("deflate") {
        Ok(Some(Coding::Deflate))
    } else if v.is_empty() || v.eq_ignore_ascii_case("identity") {
        Ok(None)
    } else {
        Err(())
    }
}

/// `body` as it says, by its own coding (`None` when it is coded in a way understudy cannot
/// undo, broken, or past `max`).
pub fn plain<'a>(headers: &HeaderMap, body: &'a [u8], max: usize) -> Option<Cow<'a, [u8]>> {
    match coding(headers).ok()? {
        Some(c) => decode(c, body, max).map(Cow::Owned),
        None => Some(Cow::Borrowed(body)),
    }
}

/// Whether two answers are compared by what they say ([`plain`], when both decode whole within
/// the limit; a decompression bomb stops there): at least one carries a coding understudy can
/// undo, and neither one it cannot. One compressed and one not (a build that starts
/// compressing) are compared so too; otherwise the bodies are compared as they came.
pub fn decodable(running: &HeaderMap, other: &HeaderMap) -> bool {
    matches!((coding(running), coding(other)), (Ok(r), Ok(o)) if r.is_some() || o.is_some())
}

/// In which form a third answer's body (the witness, see [`crate::diff::diff_witnessed`]) is
/// set beside running's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// As it says ([`plain`]).
    Plain,
    /// As it came.
    AsCame,
}

/// Whether two answers differ in their coding only as the request allowed: one compressed with
/// a coding its `Accept-Encoding` allows and the other not (where it allows `identity`). Their
/// `Content-Encoding`, and `accept-encoding` in `Vary`, are then how the answer travelled, not
/// what it says. Decided by the headers alone: a body too large to keep, or empty, is no matter.
pub fn recoded_as_asked(running: &HeaderMap, other: &HeaderMap, accepted: Option<&[u8]>) -> bool {
    let (coded, other_plain) = match (coding(running), coding(other)) {
        (Ok(Some(c)), Ok(None)) => (c, true),
        (Ok(None), Ok(Some(c))) => (c, false),
        _ => return false,
    };
    let Some(accepted) = accepted.and_then(|a| std::str::from_utf8(a).ok()) else {
        return false;
    };
    allows(accepted, coded.token()) && (!other_plain || allows(accepted, "identity"))
}

/// Whether an `Accept-Encoding` value allows `token` (RFC 9110 §12.5.3): by its own weight when
/// named (`x-gzip` naming gzip), else by `*`'s, else only `identity` is allowed.
fn allows(accepted: &str, token: &str) -> bool {
    let mut star = None;
    for item in accepted.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let weight = parts.find_map(|p| {
            let (k, v) = p.split_once('=')?;
            let q = k.trim().eq_ignore_ascii_case("q");
            q.then(|| v.trim().parse::<f32>().unwrap_or(1.0))
        });
        let allowed = weight.unwrap_or(1.0) > 0.0;
        let names = |t: &str| {
            name.eq_ignore_ascii_case(t) || (t == "gzip" && name.eq_ignore_ascii_case("x-gzip"))
        };
        if names(token) {
            return allowed;
        }
        if name == "*" {
            star = Some(allowed);
        }
    }
    star.unwrap_or(token == "identity")
}

/// The request's `Accept-Encoding`, its lines joined as one list (a request may send several).
pub fn accept_encoding(request: &HeaderMap) -> Option<http::HeaderValue> {
    let mut lines = request.get_all(http::header::ACCEPT_ENCODING).iter();
    let first = lines.next()?;
    let mut joined = first.as_bytes().to_vec();
    for more in lines {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(more.as_bytes());
    }
    http::HeaderValue::from_bytes(&joined).ok()
}

/// Whether the two answers' `Vary` differ only in `accept-encoding`, which a compression
/// middleware adds to every answer, compressed or not, for caches: set aside.
pub fn vary_differs_in_coding_only(running: &HeaderMap, other: &HeaderMap) -> bool {
    let sorted = |h: &HeaderMap, keep_coding: bool| {
        let mut v: Vec<String> = vary_tokens(h)
            .filter(|t| keep_coding || !t.eq_ignore_ascii_case("accept-encoding"))
            .map(str::to_ascii_lowercase)
            .collect();
        v.sort();
        v
    };
    sorted(running, true) != sorted(other, true) && sorted(running, false) == sorted(other, false)
}

/// The names `Vary` lists, over all its lines.
fn vary_tokens(h: &HeaderMap) -> impl Iterator<Item = &str> {
    h.get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// `headers` without the `accept-encoding` token of `Vary` (the header dropped when nothing
/// else is left in it), and without `Content-Encoding` too when `recoded` ([`recoded_as_asked`]).
pub fn without_coding(headers: &HeaderMap, recoded: bool) -> HeaderMap {
    let mut h = headers.clone();
    if recoded {
        h.remove(http::header::CONTENT_ENCODING);
    }
    let vary: Vec<String> = vary_tokens(&h)
        .filter(|t| !t.eq_ignore_ascii_case("accept-encoding"))
        .map(str::to_string)
        .collect();
    h.remove(http::header::VARY);
    if let Ok(v) = http::HeaderValue::from_str(&vary.join(", ")) {
        if !vary.is_empty() {
            h.insert(http::header::VARY, v);
        }
    }
    h
}

/// The form a third answer's body (the witness) takes beside running's: as it says when
/// running's is compared so (`decoded`, or never coded), whatever the witness's own coding
/// (testing's gzip answer witnessing the secondary's plain one); as it came when running's did
/// and both are coded alike; `None` when it cannot be set beside running's.
pub fn witness_form(running: &HeaderMap, decoded: bool, witness: &HeaderMap) -> Option<Form> {
    if decoded || coding(running) == Ok(None) {
        return Some(Form::Plain);
    }
    (coding(witness) == coding(running)).then_some(Form::AsCame)
}

/// `body` decoded, or `None` when it is not well-formed or decodes past `max` bytes.
fn decode(c: Coding, body: &[u8], max: usize) -> Option<Vec<u8>> {
    if body.is_empty() {
        return Some(Vec::new()); // a HEAD's or a 204's, sent with its coding
    }
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    let read = match c {
        Coding::Gzip => flate2::read::MultiGzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        // HTTP's "deflate" is zlib-wrapped (RFC 9110 §8.4.1.2); some servers send it raw.
        Coding::Deflate => match flate2::read::ZlibDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out)
        {
            Ok(n) => Ok(n),
            Err(_) => {
                out.clear();
                flate2::read::DeflateDecoder::new(body)
                    .take(limit)
                    .read_to_end(&mut out)
            }
        },
    };
    (read.is_ok() && out.len() <= max).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn zlib(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    /// Both bodies as they say, when [`decodable`], as the mirror's judge composes them.
    fn decoded(
        r: (&HeaderMap, &[u8]),
        o: (&HeaderMap, &[u8]),
        max: usize,
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        if !decodable(r.0, o.0) {
            return None;
        }
        Some((
            plain(r.0, r.1, max)?.into_owned(),
            plain(o.0, o.1, max)?.into_owned(),
        ))
    }

    fn coded(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_ENCODING, v.parse().unwrap());
        h
    }

    #[test]
    fn both_sides_with_the_same_coding_are_decoded() {
        let (a, b) = (gzip(b"{\"price\":3}"), gzip(b"{\"price\":30}"));
        let got = decoded((&coded("gzip"), &a), (&coded("GZIP"), &b), 1024);
        assert_eq!(
            got,
            Some((b"{\"price\":3}".to_vec(), b"{\"price\":30}".to_vec()))
        );
        let (a, b) = (zlib(b"x"), zlib(b"y"));
        let got = decoded((&coded("deflate"), &a), (&coded("deflate"), &b), 1024);
        assert_eq!(got, Some((b"x".to_vec(), b"y".to_vec())));
    }

    #[test]
    fn one_side_compressed_is_compared_by_what_it_says() {
        let (a, none) = (gzip(b"{\"price\":3}"), HeaderMap::new());
        let got = decoded((&none, b"{\"price\":3}"), (&coded("gzip"), &a), 1024);
        assert_eq!(
            got,
            Some((b"{\"price\":3}".to_vec(), b"{\"price\":3}".to_vec()))
        );
        let got = decoded((&coded("gzip"), &a), (&coded("identity"), b"x"), 1024);
        assert_eq!(got, Some((b"{\"price\":3}".to_vec(), b"x".to_vec())));
        let g = coded("gzip");
        assert_eq!(witness_form(&g, true, &none), Some(Form::Plain));
        // The noise's side: running and the secondary plain, testing's gzip answer the witness.
        assert_eq!(witness_form(&none, false, &g), Some(Form::Plain));
        assert_eq!(plain(&g, &a, 1024).as_deref(), Some(&b"{\"price\":3}"[..]));
        // Running's compared as it came: a witness coded alike is too, another one is not.
        assert_eq!(
            witness_form(&coded("br"), false, &coded("br")),
            Some(Form::AsCame)
        );
        assert_eq!(witness_form(&coded("br"), false, &g), None);
    }

    #[test]
    fn a_coding_differs_as_asked_only_where_the_request_accepted_it() {
        let (g, none) = (coded("gzip"), HeaderMap::new());
        assert!(recoded_as_asked(&none, &g, Some(b"gzip, deflate, br")));
        assert!(recoded_as_asked(&g, &none, Some(b"br;q=1.0, *;q=0.5")));
        assert!(recoded_as_asked(&none, &g, Some(b"GZIP")));
        assert!(
            !recoded_as_asked(&none, &g, None),
            "the user did not ask for it"
        );
        assert!(!recoded_as_asked(&none, &g, Some(b"br")));
        assert!(!recoded_as_asked(&none, &g, Some(b"gzip;q=0")));
        assert!(
            !recoded_as_asked(&none, &g, Some(b"gzip;q=0, *")),
            "named beats *"
        );
        assert!(
            !recoded_as_asked(&none, &g, Some(b"gzip;Q=0")),
            "q in any case"
        );
        assert!(recoded_as_asked(&none, &g, Some(b"x-gzip")));
        assert!(
            !recoded_as_asked(&g, &none, Some(b"gzip, identity;q=0")),
            "plain refused"
        );
        assert!(recoded_as_asked(&none, &g, Some(b"gzip, identity;q=0")));
        let mut lines = HeaderMap::new();
        lines.append(http::header::ACCEPT_ENCODING, "br".parse().unwrap());
        lines.append(http::header::ACCEPT_ENCODING, "gzip".parse().unwrap());
        let joined = accept_encoding(&lines).unwrap();
        assert_eq!(joined, "br, gzip");
        assert!(recoded_as_asked(&none, &g, Some(joined.as_bytes())));
        let mut vary = HeaderMap::new();
        vary.insert(http::header::VARY, "Accept-Encoding".parse().unwrap());
        assert!(vary_differs_in_coding_only(&none, &vary));
        assert!(!vary_differs_in_coding_only(&vary, &vary));
        let mut origin = HeaderMap::new();
        origin.insert(http::header::VARY, "Origin".parse().unwrap());
        assert!(!vary_differs_in_coding_only(&none, &origin));
        assert_eq!(
            decoded((&none, b""), (&g, b""), 1024),
            Some((vec![], vec![]))
        );
        assert!(!recoded_as_asked(&g, &g, Some(b"gzip")), "not a difference");
        assert!(!recoded_as_asked(&none, &coded("br"), Some(b"br")));
        let mut h = coded("gzip");
        h.insert(
            http::header::VARY,
            "Accept-Encoding, Origin".parse().unwrap(),
        );
        let left = without_coding(&h, true);
        assert_eq!(left.get(http::header::CONTENT_ENCODING), None);
        assert_eq!(left.get(http::header::VARY).unwrap(), "Origin");
        h.insert(http::header::VARY, "accept-encoding".parse().unwrap());
        assert_eq!(without_coding(&h, true).get(http::header::VARY), None);
        let kept = without_coding(&h, false);
        assert_eq!(kept.get(http::header::CONTENT_ENCODING).unwrap(), "gzip");
    }

    #[test]
    fn different_codings_bombs_and_broken_bodies_are_compared_as_they_came() {
        let a = gzip(b"same");
        let none = HeaderMap::new();
        assert_eq!(decoded((&none, b"same"), (&none, b"same"), 1024), None);
        assert_eq!(decoded((&coded("br"), &a), (&coded("br"), &a), 1024), None);
        assert_eq!(decoded((&coded("br"), &a), (&none, b"same"), 1024), None);
        assert_eq!(
            decoded((&coded("gzip"), &a), (&coded("br"), &a), 1024),
            None
        );
        let bomb = gzip(&vec![0u8; 1 << 20]);
        assert_eq!(
            decoded((&coded("gzip"), &bomb), (&coded("gzip"), &bomb), 4096),
            None
        );
        let broken = &a[..a.len() / 2];
        assert_eq!(
            decoded((&coded("gzip"), broken), (&coded("gzip"), &a), 1024),
            None
        );
        let stacked = coded("gzip, gzip");
        assert_eq!(decoded((&stacked, &a), (&stacked, &a), 1024), None);
    }
}
