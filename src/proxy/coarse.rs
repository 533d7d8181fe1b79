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

    #[test]
    fn the_coarse_clock_moves_on_with_the_precise_one() {
        let (c0, p0) = (now(), std::time::Instant::now());
        assert!(c0 > Duration::ZERO, "the clock reads zero");
        while p0.elapsed() < Duration::from_millis(30) {
            std::hint::spin_loop();
        }
        let moved = now().saturating_sub(c0);
        // Both clocks count the same time; the coarse one lags by at most a tick at each end.
        assert!(
            moved >= Duration::from_millis(10) && moved <= Duration::from_millis(60),
            "{moved:?}"
        );
    }
}
