//! The request path's cheap clock, for ages that need no finer grain than a few milliseconds (an
//! idle pooled connection's, the replay recorder's pace): the coarse monotonic clock is the
//! kernel's last tick, read from the vDSO without the timestamp-counter read `Instant::now`
//! makes. Latencies and timeouts keep the precise clock.

use std::time::Duration;

/// Time since boot, up to one kernel tick (1–10 ms) behind; never goes back.
pub fn now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into a valid local. CLOCK_MONOTONIC_COARSE exists
    // on every Linux since 2.6.32; on an error `ts` stays zero, which only makes nothing age.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0).min(999_999_999);
    Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::since_boot as precise;

    #[test]
    fn the_coarse_clock_is_the_precise_one_at_most_a_tick_behind() {
        // A tick is 10 ms at the slowest kernel rate (HZ=100); 20 ms leaves room for a late read.
        const TICK: Duration = Duration::from_millis(20);
        let mut last = Duration::ZERO;
        for _ in 0..3 {
            let (before, coarse, after) = (precise(), now(), precise());
            assert!(coarse <= after, "{coarse:?} is ahead of {after:?}");
            assert!(
                coarse + TICK >= before,
                "{coarse:?} lags {before:?} by over a tick"
            );
            assert!(coarse >= last, "it went back");
            last = coarse;
            std::thread::sleep(Duration::from_millis(15));
        }
    }
}
