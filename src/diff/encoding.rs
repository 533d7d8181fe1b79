//! Answers compressed by the app (`Content-Encoding: gzip` or `deflate`) are compared by what
//! they say, not by their compressed bytes: two identical builds' gzip bodies differ in nothing a
//! user reads, yet byte for byte they are "not text" and any wrong value inside is invisible.

use std::io::Read;

use http::HeaderMap;

/// A content coding understudy can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    Deflate,
}

/// The answer's one content coding, if it is one understudy can undo.
fn coding(headers: &HeaderMap) -> Option<Coding> {
    let mut values = headers.get_all(http::header::CONTENT_ENCODING).iter();
    let v = values.next()?.to_str().ok()?.trim();
    if values.next().is_some() || v.contains(',') {
        return None; // stacked codings: compared as they are
    }
    if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") {
        Some(Coding::Gzip)
    } else if v.eq_ignore_ascii_case("deflate") {
        Some(Coding::Deflate)
    } else {
        None
    }
}

/// Both bodies decoded, when both answers carry the same coding understudy can undo and each
/// decodes whole to at most `max` bytes (a decompression bomb stops at `max`); otherwise `None`,
/// and the bodies are compared as they came.
pub fn decoded(
    running: (&HeaderMap, &[u8]),
    other: (&HeaderMap, &[u8]),
    max: usize,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let c = coding(running.0)?;
    if coding(other.0) != Some(c) {
        return None;
    }
    Some((decode(c, running.1, max)?, decode(c, other.1, max)?))
}

/// A third answer's body (the witness, see [`crate::diff::diff_witnessed`]) in the form
/// running's is compared in: decoded when running's was (`decoded`), as it came when running's
/// did; `None` when its coding is not running's, so it cannot be set beside it.
pub fn like_running<'a>(
    running: &HeaderMap,
    decoded: bool,
    witness: (&HeaderMap, &'a [u8]),
    max: usize,
) -> Option<std::borrow::Cow<'a, [u8]>> {
    let c = coding(running);
    if coding(witness.0) != c {
        return None;
    }
    match c {
        Some(c) if decoded => decode(c, witness.1, max).map(std::borrow::Cow::Owned),
        _ => Some(std::borrow::Cow::Borrowed(witness.1)),
    }
}

/// `body` decoded, or `None` when it is not well-formed or decodes past `max` bytes.
fn decode(c: Coding, body: &[u8], max: usize) -> Option<Vec<u8>> {
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
    fn different_codings_bombs_and_broken_bodies_are_compared_as_they_came() {
        let a = gzip(b"same");
        let none = HeaderMap::new();
        assert_eq!(decoded((&coded("gzip"), &a), (&none, b"same"), 1024), None);
        assert_eq!(decoded((&coded("br"), &a), (&coded("br"), &a), 1024), None);
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
