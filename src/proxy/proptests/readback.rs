//! Reading back what the engine wrote, with httparse alone.

use super::*;

/// A head as httparse reads it: the start line's two words (method and path, or status and
/// reason) and the headers, in order.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Reread {
    pub(super) first: String,
    pub(super) second: String,
    pub(super) headers: Vec<(String, String)>,
}

pub(super) fn pairs(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            let v = String::from_utf8_lossy(h.value).into_owned();
            (h.name.to_string(), v)
        })
        .collect()
}

/// `out` read as one whole HTTP/1.1 request head, nothing before or after it.
pub(super) fn reread_request(out: &[u8]) -> Result<Reread, TestCaseError> {
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut headers);
    let text = String::from_utf8_lossy(out);
    match req.parse(out) {
        Ok(httparse::Status::Complete(n)) if n == out.len() => {}
        other => return Err(TestCaseError::fail(format!("{other:?}: {text:?}"))),
    }
    prop_assert_eq!(req.version, Some(1), "{:?}", text);
    Ok(Reread {
        first: req.method.unwrap_or_default().to_string(),
        second: req.path.unwrap_or_default().to_string(),
        headers: pairs(req.headers),
    })
}

/// `out` read as one whole HTTP/1.1 answer head, nothing before or after it.
pub(super) fn reread_answer(out: &[u8]) -> Result<Reread, TestCaseError> {
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut res = httparse::Response::new(&mut headers);
    let text = String::from_utf8_lossy(out);
    match res.parse(out) {
        Ok(httparse::Status::Complete(n)) if n == out.len() => {}
        other => return Err(TestCaseError::fail(format!("{other:?}: {text:?}"))),
    }
    prop_assert_eq!(res.version, Some(1), "{:?}", text);
    Ok(Reread {
        first: res.code.unwrap_or_default().to_string(),
        second: res.reason.unwrap_or_default().to_string(),
        headers: pairs(res.headers),
    })
}

/// `head::parse` with the usual bounds and [`PEER`]; the rewritten head as text.
pub(super) fn parse_request(raw: &[u8], peer: &[u8]) -> (Parsed, Vec<u8>) {
    let mut out = Vec::new();
    let parsed = head::parse(raw, head::SLOTS, peer, false, &mut out);
    (parsed, out)
}

/// The request [`head::parse`] forwards, or the test fails with what it said instead.
pub(super) fn forwarded(
    raw: &[u8],
    peer: &[u8],
) -> Result<(head::RequestHead, Vec<u8>), TestCaseError> {
    match parse_request(raw, peer) {
        (Parsed::Request(r), out) => Ok((r, out)),
        (other, _) => Err(TestCaseError::fail(format!(
            "{other:?} for {:?}",
            String::from_utf8_lossy(raw)
        ))),
    }
}

/// The answer [`answer::parse`] relays, or the test fails with what it said instead.
pub(super) fn relayed(
    raw: &[u8],
    asker: Asker,
) -> Result<(answer::Answer, Vec<u8>), TestCaseError> {
    let mut out = Vec::new();
    match answer::parse(raw, asker, &mut out) {
        Ok(Some(a)) => Ok((a, out)),
        other => Err(TestCaseError::fail(format!(
            "{other:?} for {:?}",
            String::from_utf8_lossy(raw)
        ))),
    }
}
