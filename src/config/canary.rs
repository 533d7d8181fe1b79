//! The canary phase's keys: the shares of users testing serves after the shadow verdict, how long
//! each share is judged, and what decides which users they are.

use std::time::Duration;

use http::HeaderName;

use super::parse::{invalid, Raw, MAX_WINDOW};
use super::ConfigError;

/// Most canary steps: each needs its own window of evidence, so more would only delay.
const MAX_STEPS: usize = 10;

/// The canary phase: empty `steps` means the full switch right after the shadow verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryConfig {
    /// Shares of users served by testing, in basis points (1..=9999), strictly growing.
    pub steps: Vec<u32>,
    /// How long each step is judged before the next (`CANARY_STEP_WINDOW`).
    pub step_window: Duration,
    /// What decides which users a step's share is (`CANARY_STICKY`).
    pub sticky: Sticky,
}

/// The key whose hash places a user: one user sees one version within a step, and a user on
/// testing stays there as the share grows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// The client's IP address.
    Ip,
    /// The value of this request header.
    Header(HeaderName),
    /// The value of this cookie.
    Cookie(String),
}

/// Read `CANARY_STEPS`, `CANARY_STEP_WINDOW` and `CANARY_STICKY`.
pub(super) fn canary(raw: &Raw) -> Result<CanaryConfig, ConfigError> {
    Ok(CanaryConfig {
        steps: steps(raw.get("CANARY_STEPS"))
            .map_err(|why| invalid("CANARY_STEPS", raw.get("CANARY_STEPS"), &why))?,
        step_window: raw.duration("CANARY_STEP_WINDOW", Duration::from_secs(1), MAX_WINDOW)?,
        sticky: sticky(raw.get("CANARY_STICKY")).ok_or_else(|| {
            invalid(
                "CANARY_STICKY",
                raw.get("CANARY_STICKY"),
                "ip, header:NAME or cookie:NAME (a header name, or a cookie name of letters, digits and -_.)",
            )
        })?,
    })
}

/// "5%,25%,50%" as basis points, growing, each above 0 and below 100 %. A share under 1 written
/// without `%` is refused: other share keys are fractions, so `0.05` most likely means 5 %, and
/// read as 0.05 % it would hold the canary on almost no users.
fn steps(v: &str) -> Result<Vec<u32>, String> {
    let expected = "shares growing from above 0% to below 100%, such as 5%,25%,50% (at most 10)";
    let mut out: Vec<u32> = Vec::new();
    for part in super::parse::comma_list(v) {
        let (number, percent) = match part.strip_suffix('%') {
            Some(n) => (n.trim(), true),
            None => (part.trim(), false),
        };
        let pct = super::parse::parse_number(number, 0.01, 99.99).ok_or(expected)?;
        if !percent && pct < 1.0 {
            // As a share: basis points are whole, so 0.07 reads 7%, not 7.000000000000001%.
            let meant = (pct * 10_000.0).round() / 100.0;
            return Err(format!(
                "percentages, not fractions: {number} would be {number}% of users; write \
                 {meant}% for that share, or {number}% if so few is meant"
            ));
        }
        let bp = (pct * 100.0).round() as u32;
        if out.last().is_some_and(|&last| bp <= last) || out.len() == MAX_STEPS {
            return Err(expected.to_string());
        }
        out.push(bp);
    }
    Ok(out)
}

fn sticky(v: &str) -> Option<Sticky> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("ip") {
        return Some(Sticky::Ip);
    }
    if let Some(name) = v.strip_prefix("header:") {
        return HeaderName::from_bytes(name.trim().as_bytes())
            .ok()
            .map(Sticky::Header);
    }
    let name = v.strip_prefix("cookie:")?.trim();
    let fine = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    (!name.is_empty() && name.len() <= 64 && name.chars().all(fine))
        .then(|| Sticky::Cookie(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_growing_shares_in_basis_points() {
        assert_eq!(steps("5%,25%,50%").unwrap(), vec![500, 2500, 5000]);
        assert_eq!(steps("").unwrap(), Vec::<u32>::new());
        assert_eq!(steps(" 20 , 50% ").unwrap(), vec![2000, 5000]);
        for bad in [
            "50%,25%",
            "0%",
            "100%",
            "abc",
            "5%,5%",
            "-5%",
            "1,2,3,4,5,6,7,8,9,10,11",
            "0.05,0.25,0.5",
        ] {
            assert!(steps(bad).is_err(), "{bad}");
        }
        // Fractions are refused saying what they would mean; with `%` a small share is taken.
        let why = steps("0.05,0.25").unwrap_err();
        assert!(
            why.contains("0.05% of users") && why.contains("write 5%"),
            "{why}"
        );
        for (v, meant) in [
            ("0.07", "write 7%"),
            ("0.29", "write 29%"),
            ("0.125", "write 12.5%"),
        ] {
            let why = steps(v).unwrap_err();
            assert!(why.contains(meant), "{v}: {why}");
        }
        assert_eq!(steps("0.5%,1,20").unwrap(), vec![50, 100, 2000]);
    }

    #[test]
    fn sticky_keys() {
        assert_eq!(sticky("ip"), Some(Sticky::Ip));
        assert_eq!(
            sticky("header:X-User"),
            Some(Sticky::Header(HeaderName::from_static("x-user")))
        );
        assert_eq!(sticky("cookie:sid"), Some(Sticky::Cookie("sid".into())));
        for bad in ["", "header:", "header:a b", "cookie:", "cookie:a;b", "user"] {
            assert_eq!(sticky(bad), None, "{bad}");
        }
    }
}
