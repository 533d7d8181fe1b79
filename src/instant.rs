//! Instants understudy accepts from outside (`PROMOTE_AT`, `promote --at`, `?at=` of history, the
//! lines of `history.jsonl`): one parser, bounded. RFC 3339 admits offsets that carry a valid
//! local date past year 9999 in UTC (`9999-12-31T23:59:59-23:59`), and converting such a date
//! panicked (`time`: overflow adding duration to date), which stopped understudy; so every instant
//! is checked to lie between [`EARLIEST`] and [`LATEST`] in UTC before it is used.

use std::time::SystemTime;

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// The earliest instant accepted.
pub const EARLIEST: &str = "1970-01-01T00:00:00Z";

/// The latest instant accepted.
pub const LATEST: &str = "9999-12-31T23:59:59Z";

/// How far ahead a promotion may be scheduled (`promote --at`, `PROMOTE_AT`): a year and a day, so
/// a yearly window fits and a mistyped year (2062 for 2026) is refused rather than holding the
/// build from automatic promotion for decades.
pub const MAX_AHEAD: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

/// Why a text is not an instant understudy accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstantError {
    /// Not RFC 3339 at all.
    #[error("{text:?} is not an RFC 3339 instant such as 2026-12-01T03:00:00Z ({why})")]
    NotRfc3339 {
        /// The text given.
        text: String,
        /// What the parser said.
        why: String,
    },
    /// RFC 3339, but outside the range understudy handles.
    #[error("{text:?} is outside the range understudy accepts, {EARLIEST} to {LATEST} in UTC")]
    OutOfRange {
        /// The text given.
        text: String,
    },
}

/// Parse an RFC 3339 instant such as `2026-12-01T03:00:00Z`, within [`EARLIEST`]..=[`LATEST`].
pub fn parse(text: &str) -> Result<SystemTime, InstantError> {
    let t = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|e| InstantError::NotRfc3339 {
        text: text.to_string(),
        why: why_not(text.trim(), &e),
    })?;
    let out_of_range = || InstantError::OutOfRange {
        text: text.to_string(),
    };
    let utc = t
        .checked_to_offset(UtcOffset::UTC)
        .ok_or_else(out_of_range)?;
    if utc.year() < 1970 || utc.year() > 9999 {
        return Err(out_of_range());
    }
    Ok(SystemTime::from(utc))
}

/// What the parser said of `text`, in words for the commonest slip: a local time without its
/// zone (`2026-12-07T10:00:00`), which RFC 3339 does not allow.
fn why_not(text: &str, e: &time::error::Parse) -> String {
    let zoneless = text
        .get(10..11)
        .is_some_and(|t| t.eq_ignore_ascii_case("T"))
        && text
            .get(19..)
            .is_some_and(|rest| !rest.contains(['Z', 'z', '+', '-']));
    match zoneless {
        true => "it has no time zone: add Z for UTC (2026-12-07T10:00:00Z) or an offset (+01:00)"
            .to_string(),
        false => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_time_without_a_zone_is_told_to_add_one() {
        let e = parse("2026-12-07T10:00:00").unwrap_err().to_string();
        assert!(e.contains("no time zone: add Z"), "{e}");
        let e = parse("2026-12-07T10:00:00.5").unwrap_err().to_string();
        assert!(e.contains("no time zone: add Z"), "{e}");
        let e = parse("tomorrow at ten").unwrap_err().to_string();
        assert!(!e.contains("time zone"), "{e}");
        // Never a panic on a slice through a character.
        let _ = parse("2026-12-07T10:00:0é");
    }

    #[test]
    fn instants_in_range_parse_and_the_rest_are_errors_never_panics() {
        assert!(parse("2026-12-01T03:00:00Z").is_ok());
        assert!(parse(" 2026-12-01T03:00:00+02:00 ").is_ok());
        assert!(parse(LATEST).is_ok());
        assert!(parse(EARLIEST).is_ok());
        for out in [
            "9999-12-31T23:59:59-23:59",
            "0000-01-01T00:00:00+23:59",
            "1969-12-31T23:59:59Z",
        ] {
            let e = parse(out).unwrap_err();
            assert!(matches!(e, InstantError::OutOfRange { .. }), "{out}: {e}");
            assert!(e.to_string().contains(LATEST), "{e}");
        }
        assert!(matches!(
            parse("tomorrow"),
            Err(InstantError::NotRfc3339 { .. })
        ));
    }

    proptest::proptest! {
        /// Whatever the text, parsing answers (never panics), and what it accepts converts back.
        #[test]
        fn arbitrary_instants_never_panic(
            y in 0i32..=9999, mo in 1u8..=12, d in 1u8..=31, h in 0u8..=23, mi in 0u8..=59,
            s in 0u8..=60, oh in 0u8..=23, om in 0u8..=59, sign in proptest::bool::ANY,
            junk in "\\PC{0,12}",
        ) {
            let sign = if sign { '+' } else { '-' };
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{sign}{oh:02}:{om:02}");
            if let Ok(t) = parse(&text) {
                let back = OffsetDateTime::from(t);
                proptest::prop_assert!((1970..=9999).contains(&back.year()));
            }
            let _ = parse(&junk);
            let _ = parse(&format!("{text}{junk}"));
        }
    }
}
