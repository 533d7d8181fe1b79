//! How much of the answers the proxy keeps for diffing: what the scorer says when bodies went
//! uncompared must name the sizes in force, not copies of them in its text. The proxy depends on
//! the scorer (not the other way round), so they are defined here and `proxy::mirror`'s
//! `CAPTURE_BUDGET` and `COMPARED_BODY` are these.

/// Bytes of answer bodies held for diffing at once, across all captures: past it a body is
/// compared by length and fingerprint only (`proxy::mirror::CAPTURE_BUDGET`).
pub const DIFF_HELD: u64 = 32 << 20;

/// How much of a body its fingerprint covers, beside its length (`proxy::mirror::COMPARED_BODY`).
pub const FINGERPRINTED: u64 = 64 << 10;

/// A size as `.env` writes it: `256KiB`, `2MiB`, or bytes.
pub(super) fn size_text(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes as the scorer writes them.
    #[test]
    fn the_sizes_are_written_as_in_env() {
        assert_eq!(size_text(DIFF_HELD), "32MiB");
        assert_eq!(size_text(FINGERPRINTED), "64KiB");
        assert_eq!(size_text(1000), "1000 bytes");
    }
}
