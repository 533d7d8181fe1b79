//! Statistics for judging testing against running with a stated confidence. The scorer compares
//! confidence bounds rather than raw rates so that a handful of unlucky requests never rejects a
//! build, a real shift is caught as soon as the evidence for it is there, and too little evidence
//! either way is reported as "wait" instead of being guessed at.

/// Highest confidence honoured: at 1.0 the bounds become [0, 1] and nothing could ever decide.
const MAX_CONFIDENCE: f64 = 0.999_999;

/// Fewest samples per side for Mann–Whitney; below this the normal approximation misleads.
const MIN_LATENCY_SAMPLES: usize = 8;

/// The standard normal quantile for a one-sided bound at `confidence` (0.99 → 2.326), so callers
/// can state a confidence and get the multiplier the interval formulas need. `confidence` is
/// clamped into [0.5, 0.999999]; NaN is treated as the most cautious value, 0.999999.
pub fn z_one_sided(confidence: f64) -> f64 {
    let c = if confidence.is_nan() {
        MAX_CONFIDENCE
    } else {
        confidence.clamp(0.5, MAX_CONFIDENCE)
    };
    normal_quantile(c)
}

/// The standard normal CDF, accurate to about 1.2e-7 relative, which is ample for p-values that
/// are compared with thresholds. NaN gives 0.5, "no information", so no NaN leaks into verdicts.
pub fn normal_cdf(z: f64) -> f64 {
    if z.is_nan() {
        return 0.5;
    }
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Wilson score interval (lower, upper) for `k` successes out of `n` at quantile `z`: unlike the
/// plain p ± z·se it stays inside [0, 1] and is honest at 0 or n successes, which is where canary
/// error counts live. No evidence (`n == 0`) or a non-finite `z` gives (0.0, 1.0); `k > n` counts
/// as `k == n`.
pub fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    let z = z.abs();
    let z2 = z * z;
    if n == 0 || !z2.is_finite() {
        return (0.0, 1.0);
    }
    let k = k.min(n);
    let (kf, nf, ff) = (k as f64, n as f64, (n - k) as f64);
    // Both bounds in forms without subtractive cancellation: lower = 2k² / (n(2k + z² + z·s))
    // is the conjugate of (2k + z² − z·s) / (2(n + z²)), so k = 0 gives exactly 0.
    let s = (z2 + 4.0 * kf * ff / nf).sqrt();
    let lower = if k == 0 {
        0.0
    } else {
        2.0 * kf * kf / (nf * (2.0 * kf + z2 + z * s))
    };
    let upper = if k == n {
        1.0
    } else {
        (2.0 * kf + z2 + z * s) / (2.0 * (nf + z2))
    };
    // Denominators are positive for n > 0 and finite z, so neither bound can be NaN here; the
    // clamps only absorb rounding.
    let lower = lower.clamp(0.0, 1.0);
    let upper = upper.clamp(lower, 1.0);
    (lower, upper)
}

/// The outcome of comparing testing's rate of something bad with running's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum RateCheck {
    /// With the confidence asked for, testing's rate exceeds running's by more than the margin.
    Worse { low: f64, high: f64 },
    /// With that confidence, testing's rate is not more than the margin above running's.
    Fine { low: f64, high: f64 },
    /// Not enough evidence either way yet: wait.
    Undecided { low: f64, high: f64 },
}

/// Compares testing's bad rate with running's: Worse only once the difference is above `margin`
/// with `confidence`, Fine once it is at or below it, Undecided otherwise. (low, high) bounds
/// p_test − p_base by Newcombe's hybrid score method, each side a one-sided bound at `confidence`.
pub fn compare_rates(
    test_k: u64,
    test_n: u64,
    base_k: u64,
    base_n: u64,
    margin: f64,
    confidence: f64,
) -> RateCheck {
    let z = z_one_sided(confidence);
    let (low, high) = newcombe(test_k, test_n, base_k, base_n, z);
    classify(low, high, margin)
}

/// Compares testing's bad rate with a fixed `ceiling` when there is no baseline to compare with:
/// Worse once the Wilson lower bound is above it, Fine once the upper bound is at or below it.
pub fn compare_rate_to(test_k: u64, test_n: u64, ceiling: f64, confidence: f64) -> RateCheck {
    let (low, high) = wilson(test_k, test_n, z_one_sided(confidence));
    classify(low, high, ceiling)
}

/// Whether testing's latencies are shifted above running's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MannWhitney {
    /// U statistic of testing over running.
    pub u: f64,
    /// Normal-approximation z with tie correction (positive: testing slower).
    pub z: f64,
    /// One-sided p-value that testing is not slower.
    pub p_slower: f64,
    /// Probability that a random testing latency exceeds a random running one (ties count half).
    pub effect: f64,
}

/// Mann–Whitney U test of testing's latencies against running's: rank-based, so a few huge
/// outliers cannot fake or hide a shift the way they would move a mean. NaN samples are ignored;
/// None when either side has fewer than 8 samples left.
pub fn mann_whitney(running: &[f64], testing: &[f64]) -> Option<MannWhitney> {
    // Adding 0.0 turns −0.0 into 0.0 so the total order below sees them as one value.
    let mut all: Vec<(f64, bool)> = running
        .iter()
        .map(|&v| (v, false))
        .chain(testing.iter().map(|&v| (v, true)))
        .filter(|(v, _)| !v.is_nan())
        .map(|(v, is_test)| (v + 0.0, is_test))
        .collect();
    let m = all.iter().filter(|(_, is_test)| *is_test).count();
    let n = all.len() - m;
    if n < MIN_LATENCY_SAMPLES || m < MIN_LATENCY_SAMPLES {
        return None;
    }
    all.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));

    let mut test_rank_sum = 0.0;
    let mut tie_sum = 0.0;
    let mut groups = 0usize;
    let mut i = 0;
    while i < all.len() {
        let mut j = i + 1;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        // Positions i..j hold ranks i+1..=j; each gets their average.
        let average_rank = (i + 1 + j) as f64 / 2.0;
        let in_test = all[i..j].iter().filter(|(_, is_test)| *is_test).count();
        test_rank_sum += average_rank * in_test as f64;
        let t = (j - i) as f64;
        tie_sum += t * t * t - t;
        groups += 1;
        i = j;
    }

    let (nf, mf) = (n as f64, m as f64);
    let total = nf + mf;
    let pairs = nf * mf;
    let u = test_rank_sum - mf * (mf + 1.0) / 2.0;
    // One value throughout means no ordering information at all: variance is exactly zero,
    // which the formula would only approach through rounding.
    let variance = if groups < 2 {
        0.0
    } else {
        (pairs / 12.0 * ((total + 1.0) - tie_sum / (total * (total - 1.0)))).max(0.0)
    };
    let (z, p_slower) = if variance > 0.0 {
        let z = (u - pairs / 2.0 - 0.5) / variance.sqrt();
        (z, normal_cdf(-z))
    } else {
        (0.0, 0.5)
    };
    Some(MannWhitney {
        u,
        z,
        p_slower,
        effect: u / pairs,
    })
}

/// Whether testing answered the same copies slower than the secondary did.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Wilcoxon {
    /// Pairs with a difference (ties at zero are left out, as the test does).
    pub n: usize,
    /// Normal-approximation z with tie correction (positive: testing slower).
    pub z: f64,
    /// One-sided p-value that testing is not slower.
    pub p_slower: f64,
    /// Share of the non-tied pairs where testing was the slower one.
    pub slower_share: f64,
}

/// Wilcoxon signed-rank test on paired latencies (testing, secondary) of the same copies: each
/// pair cancels what the copy itself cost, so it sees a shift with far fewer samples than an
/// unpaired test. NaN pairs are ignored; None with fewer than 8 non-tied pairs.
pub fn wilcoxon_signed_rank(pairs: &[(f64, f64)]) -> Option<Wilcoxon> {
    let mut d: Vec<f64> = pairs
        .iter()
        .map(|(t, s)| t - s)
        .filter(|x| !x.is_nan() && *x != 0.0)
        .collect();
    let n = d.len();
    if n < MIN_LATENCY_SAMPLES {
        return None;
    }
    d.sort_unstable_by(|a, b| a.abs().total_cmp(&b.abs()));
    let (mut w_plus, mut tie_sum, mut i) = (0.0, 0.0, 0);
    while i < n {
        let mut j = i + 1;
        while j < n && d[j].abs() == d[i].abs() {
            j += 1;
        }
        let average_rank = (i + 1 + j) as f64 / 2.0;
        w_plus += average_rank * d[i..j].iter().filter(|x| **x > 0.0).count() as f64;
        let t = (j - i) as f64;
        tie_sum += t * t * t - t;
        i = j;
    }
    let nf = n as f64;
    let mean = nf * (nf + 1.0) / 4.0;
    let variance = (nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_sum / 48.0).max(0.0);
    let (z, p_slower) = if variance > 0.0 {
        let z = (w_plus - mean - 0.5) / variance.sqrt();
        (z, normal_cdf(-z))
    } else {
        (0.0, 0.5)
    };
    Some(Wilcoxon {
        n,
        z,
        p_slower,
        slower_share: d.iter().filter(|x| **x > 0.0).count() as f64 / nf,
    })
}

/// The fewest paired samples (of [`wilcoxon_signed_rank`], up to 1 000) with which it could
/// find a shift at `alpha`, every one of them shifted: below it, waiting for more is the only
/// way to a verdict. `None` when not even 1 000 could (alpha zero or NaN).
pub fn fewest_to_tell(alpha: f64) -> Option<usize> {
    (MIN_LATENCY_SAMPLES..=1000).find(|&n| {
        let all_shifted: Vec<(f64, f64)> = (1..=n).map(|i| (i as f64, 0.0)).collect();
        wilcoxon_signed_rank(&all_shifted).is_some_and(|w| w.p_slower < alpha)
    })
}

/// Sorts an interval for a difference against the margin it must stay under.
fn classify(low: f64, high: f64, margin: f64) -> RateCheck {
    if low > margin {
        RateCheck::Worse { low, high }
    } else if high <= margin {
        RateCheck::Fine { low, high }
    } else {
        RateCheck::Undecided { low, high }
    }
}

/// Newcombe's hybrid score interval (method 10) for p1 − p2, built from the two Wilson intervals.
fn newcombe(k1: u64, n1: u64, k2: u64, n2: u64, z: f64) -> (f64, f64) {
    let (p1, p2) = (proportion(k1, n1), proportion(k2, n2));
    let (l1, u1) = wilson(k1, n1, z);
    let (l2, u2) = wilson(k2, n2, z);
    let d = p1 - p2;
    let low = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let high = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    (low.clamp(-1.0, 1.0), high.clamp(-1.0, 1.0))
}

/// k/n, with no evidence taken as the middle of its Wilson interval (0, 1).
fn proportion(k: u64, n: u64) -> f64 {
    if n == 0 {
        0.5
    } else {
        k.min(n) as f64 / n as f64
    }
}

/// erfc by the Chebyshev fit of Numerical Recipes (`erfcc`), fractional error below 1.2e-7.
fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * (-x * x + poly).exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Evaluates c[0] + c[1]·x + c[2]·x² + … by Horner's rule.
fn horner(coefficients: &[f64], x: f64) -> f64 {
    coefficients.iter().rev().fold(0.0, |acc, c| acc * x + c)
}

// Wichura's AS241 (PPND16) coefficients, lowest order first, as published.
#[allow(clippy::excessive_precision)]
const AS241_A: [f64; 8] = [
    3.3871328727963666080e0,
    1.3314166789178437745e2,
    1.9715909503065514427e3,
    1.3731693765509461125e4,
    4.5921953931549871457e4,
    6.7265770927008700853e4,
    3.3430575583588128105e4,
    2.5090809287301226727e3,
];
#[allow(clippy::excessive_precision)]
const AS241_B: [f64; 8] = [
    1.0,
    4.2313330701600911252e1,
    6.8718700749205790830e2,
    5.3941960214247511077e3,
    2.1213794301586595867e4,
    3.9307895800092710610e4,
    2.8729085735721942674e4,
    5.2264952788528545610e3,
];
#[allow(clippy::excessive_precision)]
const AS241_C: [f64; 8] = [
    1.42343711074968357734e0,
    4.63033784615654529590e0,
    5.76949722146069140550e0,
    3.64784832476320460504e0,
    1.27045825245236838258e0,
    2.41780725177450611770e-1,
    2.27238449892691845833e-2,
    7.74545014278341407640e-4,
];
#[allow(clippy::excessive_precision)]
const AS241_D: [f64; 8] = [
    1.0,
    2.05319162663775882187e0,
    1.67638483018380384940e0,
    6.89767334985100004550e-1,
    1.48103976427480074590e-1,
    1.51986665636164571966e-2,
    5.47593808499534494600e-4,
    1.05075007164441684324e-9,
];
#[allow(clippy::excessive_precision)]
const AS241_E: [f64; 8] = [
    6.65790464350110377720e0,
    5.46378491116411436990e0,
    1.78482653991729133580e0,
    2.96560571828504891230e-1,
    2.65321895265761230930e-2,
    1.24266094738807843860e-3,
    2.71155556874348757815e-5,
    2.01033439929228813265e-7,
];
#[allow(clippy::excessive_precision)]
const AS241_F: [f64; 8] = [
    1.0,
    5.99832206555887937690e-1,
    1.36929880922735805310e-1,
    1.48753612908506148525e-2,
    7.86869131145613259100e-4,
    1.84631831751005468180e-5,
    1.42151175831644588870e-7,
    2.04426310338993978564e-15,
];

/// The standard normal quantile by Wichura's AS241 (PPND16), about 1e-16 relative, so no
/// refinement step is needed. Endpoints give ±infinity; callers pass clamped probabilities.
fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() {
        return 0.0;
    }
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        return q * horner(&AS241_A, r) / horner(&AS241_B, r);
    }
    let r = (-(if q < 0.0 { p } else { 1.0 - p }).ln()).sqrt();
    let value = if r <= 5.0 {
        let r = r - 1.6;
        horner(&AS241_C, r) / horner(&AS241_D, r)
    } else {
        let r = r - 5.0;
        horner(&AS241_E, r) / horner(&AS241_F, r)
    };
    if q < 0.0 {
        -value
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every moment slower, 8 tell a shift at 1 %; shared by three, at 1/3 %, it takes 10.
    #[test]
    fn the_fewest_samples_that_can_tell_a_shift() {
        assert_eq!(fewest_to_tell(0.01), Some(8));
        assert_eq!(fewest_to_tell(0.01 / 3.0), Some(10));
        assert_eq!(fewest_to_tell(0.0), None);
        assert_eq!(fewest_to_tell(f64::NAN), None);
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    fn bounds(c: RateCheck) -> (f64, f64) {
        match c {
            RateCheck::Worse { low, high }
            | RateCheck::Fine { low, high }
            | RateCheck::Undecided { low, high } => (low, high),
        }
    }

    #[test]
    fn quantiles() {
        // Reference values from Python's statistics.NormalDist().inv_cdf.
        for (c, want) in [
            (0.5, 0.0),
            (0.95, 1.6448536269514715),
            (0.975, 1.9599639845400536),
            (0.99, 2.3263478740408408),
            (0.999999, 4.753424308817089),
        ] {
            let got = z_one_sided(c);
            assert!(close(got, want, 1e-12), "z({c}) = {got}, want {want}");
        }
        assert!(close(normal_quantile(1e-10), -6.361340902404056, 1e-12));
        assert!(close(normal_quantile(0.01), -2.3263478740408408, 1e-12));
        // Clamping, including NaN as the most cautious level.
        assert_eq!(z_one_sided(0.1), 0.0);
        assert_eq!(z_one_sided(-3.0), 0.0);
        assert_eq!(z_one_sided(1.0), z_one_sided(MAX_CONFIDENCE));
        assert_eq!(z_one_sided(f64::INFINITY), z_one_sided(MAX_CONFIDENCE));
        assert_eq!(z_one_sided(f64::NAN), z_one_sided(MAX_CONFIDENCE));
    }

    #[test]
    fn cdf() {
        // Reference values from Python's statistics.NormalDist().cdf; relative accuracy 1.2e-7.
        for (z, want) in [
            (-5.0, 2.8665157186802404e-07),
            (-3.0, 0.0013498980316301035),
            (-1.0, 0.15865525393145707),
            (0.0, 0.5),
            (0.5, 0.6914624612740131),
            (2.0, 0.9772498680518208),
        ] {
            let got = normal_cdf(z);
            assert!(
                (got - want).abs() <= 2e-7 * want,
                "cdf({z}) = {got}, want {want}"
            );
        }
        for c in [0.6, 0.9, 0.975, 0.99, 0.9999] {
            assert!(close(normal_cdf(z_one_sided(c)), c, 2e-7));
        }
        assert_eq!(normal_cdf(f64::INFINITY), 1.0);
        assert_eq!(normal_cdf(f64::NEG_INFINITY), 0.0);
        assert_eq!(normal_cdf(f64::NAN), 0.5);
    }

    #[test]
    fn wilson_known_values() {
        let (lo, hi) = wilson(0, 10, 1.96);
        assert_eq!(lo, 0.0);
        assert!(close(hi, 0.27754, 1e-4), "{hi}");
        let (lo, hi) = wilson(81, 263, 1.96);
        assert!(close(lo, 0.25529, 1e-4), "{lo}");
        assert!(close(hi, 0.36621, 1e-4), "{hi}");
        // Symmetry: k successes is n − k failures.
        let (lo, hi) = wilson(10, 10, 1.96);
        assert_eq!(hi, 1.0);
        assert!(close(lo, 1.0 - 0.27754, 1e-4));
    }

    #[test]
    fn wilson_degenerate_inputs() {
        assert_eq!(wilson(0, 0, 1.96), (0.0, 1.0));
        assert_eq!(wilson(5, 0, 1.96), (0.0, 1.0));
        assert_eq!(wilson(3, 10, f64::NAN), (0.0, 1.0));
        assert_eq!(wilson(3, 10, f64::INFINITY), (0.0, 1.0));
        assert_eq!(wilson(3, 10, 1e300), (0.0, 1.0));
        assert_eq!(wilson(20, 10, 1.96), wilson(10, 10, 1.96));
        assert_eq!(wilson(3, 10, -1.96), wilson(3, 10, 1.96));
        assert_eq!(wilson(3, 10, 0.0), (0.3, 0.3));
        assert_eq!(wilson(0, 10, 0.0), (0.0, 0.0));
        for (k, n) in [(0, u64::MAX), (1, u64::MAX), (u64::MAX, u64::MAX), (7, 1)] {
            let (lo, hi) = wilson(k, n, 2.33);
            assert!(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi && hi <= 1.0);
        }
    }

    #[test]
    fn newcombe_paper_example() {
        // Newcombe (1998), example (a): 56/70 vs 48/80, 95% two-sided → 0.0524 to 0.3339.
        let (lo, hi) = bounds(compare_rates(56, 70, 48, 80, 0.0, 0.975));
        assert!(close(lo, 0.0524, 1e-4), "{lo}");
        assert!(close(hi, 0.3339, 1e-4), "{hi}");
    }

    #[test]
    fn a_few_unlucky_requests_do_not_reject() {
        let c = compare_rates(2, 200, 0, 200, 0.01, 0.99);
        assert!(matches!(c, RateCheck::Undecided { .. }), "{c:?}");
        let (lo, hi) = bounds(c);
        assert!(close(lo, -0.017467, 1e-5) && close(hi, 0.043586, 1e-5));
    }

    #[test]
    fn a_real_shift_rejects() {
        let c = compare_rates(60, 300, 0, 300, 0.01, 0.99);
        assert!(matches!(c, RateCheck::Worse { .. }), "{c:?}");
        assert!(close(bounds(c).0, 0.14865, 1e-5));
    }

    #[test]
    fn clean_with_enough_evidence_is_fine() {
        let c = compare_rates(0, 1000, 0, 1000, 0.01, 0.99);
        assert!(matches!(c, RateCheck::Fine { .. }), "{c:?}");
        assert!(close(bounds(c).1, 0.0053828, 1e-6));
    }

    #[test]
    fn clean_with_little_evidence_waits() {
        let c = compare_rates(0, 5, 0, 5, 0.01, 0.99);
        assert!(matches!(c, RateCheck::Undecided { .. }), "{c:?}");
    }

    #[test]
    fn rates_with_no_evidence_or_odd_inputs_never_decide_wrongly() {
        for c in [
            compare_rates(0, 0, 0, 0, 0.01, 0.99),
            compare_rates(0, 0, 0, 1000, 0.01, 0.99),
            compare_rates(1000, 1000, 0, 0, 0.01, 0.99),
            compare_rates(3, 100, 1, 100, f64::NAN, 0.99),
            compare_rates(3, 100, 1, 100, 0.01, f64::NAN),
        ] {
            assert!(matches!(c, RateCheck::Undecided { .. }), "{c:?}");
            let (lo, hi) = bounds(c);
            assert!(lo.is_finite() && hi.is_finite() && -1.0 <= lo && lo <= hi && hi <= 1.0);
        }
        let c = compare_rates(u64::MAX, u64::MAX, 0, u64::MAX, 0.01, 0.99);
        assert!(matches!(c, RateCheck::Worse { .. }), "{c:?}");
        let c = compare_rates(500, 100, 0, 1000, 0.01, 0.99);
        assert!(matches!(c, RateCheck::Worse { .. }), "{c:?}");
    }

    #[test]
    fn rate_against_a_ceiling() {
        let c = compare_rate_to(0, 1000, 0.01, 0.99);
        assert!(matches!(c, RateCheck::Fine { .. }), "{c:?}");
        let c = compare_rate_to(30, 100, 0.05, 0.99);
        assert!(matches!(c, RateCheck::Worse { .. }), "{c:?}");
        let c = compare_rate_to(1, 20, 0.05, 0.99);
        assert!(matches!(c, RateCheck::Undecided { .. }), "{c:?}");
        assert_eq!(
            compare_rate_to(0, 0, 0.05, 0.99),
            RateCheck::Undecided {
                low: 0.0,
                high: 1.0
            }
        );
        let (lo, hi) = bounds(compare_rate_to(81, 263, 0.5, 0.975));
        assert!(close(lo, 0.25529, 1e-4) && close(hi, 0.36621, 1e-4));
    }

    #[test]
    fn rate_check_serializes() {
        let json = serde_json::to_string(&RateCheck::Fine {
            low: 0.0,
            high: 0.5,
        })
        .unwrap();
        assert_eq!(json, r#"{"Fine":{"low":0.0,"high":0.5}}"#);
    }

    #[test]
    fn mann_whitney_textbook_example() {
        // U counts testing-over-running pairs, ties half: 1.5 + 3.5 + 5.5 + 7.5 + 4·8 = 50.
        // z and p computed independently (Python) with the same tie and continuity corrections.
        let running = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let testing = [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0];
        let mw = mann_whitney(&running, &testing).unwrap();
        assert_eq!(mw.u, 50.0);
        assert_eq!(mw.effect, 50.0 / 64.0);
        assert!(close(mw.z, 1.8432970685270014, 1e-12), "{}", mw.z);
        assert!(close(mw.p_slower, 0.032642824464027054, 1e-8));
        // Swapping the sides mirrors U.
        let back = mann_whitney(&testing, &running).unwrap();
        assert_eq!(back.u, 64.0 - 50.0);
    }

    #[test]
    fn mann_whitney_same_distribution() {
        // Interleaved: testing is every odd millisecond, running every even one.
        let running: Vec<f64> = (0..500).map(|i| (2 * i) as f64).collect();
        let testing: Vec<f64> = (0..500).map(|i| (2 * i + 1) as f64).collect();
        let mw = mann_whitney(&running, &testing).unwrap();
        assert!(mw.p_slower > 0.3, "{mw:?}");
        assert!(close(mw.effect, 0.5, 0.01), "{mw:?}");
        // The same values in another order: identical samples.
        let shuffled: Vec<f64> = (0..500).map(|i| running[(i * 7) % 500]).collect();
        let mw = mann_whitney(&running, &shuffled).unwrap();
        assert_eq!(mw.effect, 0.5);
        assert!(mw.p_slower > 0.5 && mw.p_slower < 0.51, "{mw:?}");
    }

    #[test]
    fn mann_whitney_clear_shift() {
        // Deterministic xorshift jitter: running uniform on [10, 30) ms, testing 15 ms later.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let running: Vec<f64> = (0..400).map(|_| 10.0 + 20.0 * next()).collect();
        let testing: Vec<f64> = (0..400).map(|_| 25.0 + 20.0 * next()).collect();
        let mw = mann_whitney(&running, &testing).unwrap();
        assert!(mw.p_slower < 1e-6, "{mw:?}");
        assert!(mw.effect > 0.9, "{mw:?}");
        assert!(mw.z > 5.0, "{mw:?}");
    }

    #[test]
    fn mann_whitney_all_ties_and_odd_inputs() {
        let same = [5.0; 20];
        let mw = mann_whitney(&same, &same[..10]).unwrap();
        assert_eq!(mw.z, 0.0);
        assert_eq!(mw.p_slower, 0.5);
        assert_eq!(mw.effect, 0.5);
        assert_eq!(mw.u, 100.0);
        // −0.0 and 0.0 are the same latency.
        let zeros = [0.0; 8];
        let neg = [-0.0; 8];
        assert_eq!(mann_whitney(&zeros, &neg).unwrap().z, 0.0);

        let short = [1.0; 7];
        assert_eq!(mann_whitney(&short, &same), None);
        assert_eq!(mann_whitney(&same, &short), None);
        assert_eq!(mann_whitney(&[], &[]), None);
        // NaNs are dropped, and what remains may be too little.
        let mut with_nan = vec![f64::NAN; 8];
        with_nan.extend([1.0; 7]);
        assert_eq!(mann_whitney(&same, &with_nan), None);

        let running: Vec<f64> = (0..10).map(f64::from).collect();
        let mut testing: Vec<f64> = (0..10).map(|i| f64::from(i) + 0.5).collect();
        testing.extend([f64::INFINITY, f64::NAN, f64::NEG_INFINITY]);
        let mw = mann_whitney(&running, &testing).unwrap();
        for v in [mw.u, mw.z, mw.p_slower, mw.effect] {
            assert!(v.is_finite(), "{mw:?}");
        }
    }

    #[test]
    fn wilcoxon_sees_a_paired_shift_that_noise_would_hide() {
        // Each copy costs 1–50 ms; testing adds 10 % on every one of them.
        let pairs: Vec<(f64, f64)> = (0..60)
            .map(|i| {
                let s = 0.001 + (i * 37 % 50) as f64 * 0.001;
                (s * 1.1, s)
            })
            .collect();
        let w = wilcoxon_signed_rank(&pairs).unwrap();
        assert!(w.p_slower < 0.001 && w.slower_share == 1.0, "{w:?}");
        // The same spread, unpaired, leaves Mann-Whitney unsure.
        let (t, s): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        let mw = mann_whitney(&s, &t).unwrap();
        assert!(mw.p_slower > 0.05, "{mw:?}");
    }

    #[test]
    fn wilcoxon_finds_no_shift_between_equals_and_needs_enough_pairs() {
        let same: Vec<(f64, f64)> = (0..100)
            .map(|i| {
                let s = 0.002 + (i % 7) as f64 * 1e-4;
                if i % 2 == 0 {
                    (s, s + 1e-5)
                } else {
                    (s + 1e-5, s)
                }
            })
            .collect();
        let w = wilcoxon_signed_rank(&same).unwrap();
        assert!(w.p_slower > 0.3, "{w:?}");
        assert!(
            wilcoxon_signed_rank(&[(1.0, 1.0); 50]).is_none(),
            "all tied"
        );
        assert!(wilcoxon_signed_rank(&[(2.0, 1.0); 5]).is_none(), "too few");
        assert!(wilcoxon_signed_rank(&[(f64::NAN, 1.0); 50]).is_none());
    }
}
