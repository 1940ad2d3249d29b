//! Small statistics of the demo's tables: means, medians, spreads, rank and linear correlations, pooled cosines,
//! nearest neighbours (brute force on the host; the demo's sizes are small), and the sections' clocks.

/// Wall and CPU seconds (this process, every thread: the software driver's too) since `start`, for the timings
/// the demo prints per section (the CPU time does not depend on what else the machine runs).
pub(crate) struct Clock {
    wall: std::time::Instant,
    cpu: f64,
}

fn cpu_now() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

impl Clock {
    pub fn start() -> Self {
        Clock { wall: std::time::Instant::now(), cpu: cpu_now() }
    }
    /// "12.3 s wall, 20.1 s CPU".
    pub fn lap(&self) -> String {
        format!("{:.1} s wall, {:.1} s CPU", self.wall.elapsed().as_secs_f64(), cpu_now() - self.cpu)
    }
}

/// Σᵢ⟨aᵢ, bᵢ⟩ / √(Σᵢ‖aᵢ‖² Σᵢ‖bᵢ‖²): how far the vectors a follow the vectors b, pooled over rows.
pub(crate) fn pooled_cos(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum();
    let nb: f64 = b.iter().map(|x| x * x).sum();
    dot / (na * nb).sqrt()
}

pub(crate) fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// The median of the finite values (NaN when there are none).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => 0.5 * (values[n / 2 - 1] + values[n / 2]),
    }
}

/// The sample standard deviation (n − 1); 0 for fewer than two values.
pub(crate) fn std_dev(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values.iter().copied());
    (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
}

/// Pearson's correlation of the pairs (NaN when either side is constant).
pub(crate) fn pearson(pairs: &[(f64, f64)]) -> f64 {
    let mx = mean(pairs.iter().map(|p| p.0));
    let my = mean(pairs.iter().map(|p| p.1));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    if sxx > 0.0 && syy > 0.0 {
        sxy / (sxx * syy).sqrt()
    } else {
        f64::NAN
    }
}

/// Ranks 1..n with ties given their mean rank.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = 0.5 * (i + j) as f64 + 1.0;
        for &o in &order[i..=j] {
            out[o] = rank;
        }
        i = j + 1;
    }
    out
}

/// Spearman's rank correlation (Pearson's of the mid-ranks).
pub(crate) fn spearman(pairs: &[(f64, f64)]) -> f64 {
    let rx = ranks(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
    let ry = ranks(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
    pearson(&rx.into_iter().zip(ry).collect::<Vec<_>>())
}

/// The area under the ROC curve of `a` against `b`: P(a > b) + ½ P(a = b) over all pairs (0.5: no separation).
pub(crate) fn auc(a: &[f64], b: &[f64]) -> f64 {
    let mut wins = 0.0;
    for &x in a {
        for &y in b {
            wins += if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (a.len() * b.len()).max(1) as f64
}

/// Distance from each row of `points` to its nearest row of `data` (rows of `d` values).
pub(crate) fn nearest_distances(points: &[f32], data: &[f32], d: usize) -> Vec<f64> {
    points
        .chunks(d)
        .map(|p| {
            data.chunks(d)
                .map(|q| p.iter().zip(q).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>())
                .fold(f64::INFINITY, f64::min)
                .sqrt()
        })
        .collect()
}

/// log of the training set smoothed by N(0, σ² I) at each row of `points`: log (1/N) Σᵢ N(x; xᵢ, σ² I), summed
/// stably (log-sum-exp).
pub(crate) fn smoothed_log_density(points: &[f32], data: &[f32], d: usize, sigma: f64) -> Vec<f64> {
    let n = (data.len() / d) as f64;
    let norm = -0.5 * d as f64 * (2.0 * std::f64::consts::PI * sigma * sigma).ln() - n.ln();
    points
        .chunks(d)
        .map(|p| {
            let exponents: Vec<f64> = data
                .chunks(d)
                .map(|q| {
                    -p.iter().zip(q).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>() / (2.0 * sigma * sigma)
                })
                .collect();
            let top = exponents.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            top + exponents.iter().map(|e| (e - top).exp()).sum::<f64>().ln() + norm
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_correlations_of_known_pairs() {
        // Monotone but not linear: Spearman 1, Pearson below 1.
        let pairs: Vec<(f64, f64)> = (1..=6).map(|i| (i as f64, (i as f64).powi(3))).collect();
        assert!((spearman(&pairs) - 1.0).abs() < 1e-12);
        assert!(pearson(&pairs) < 0.99);
        // Reversed: −1; with ties, the textbook value for x = (1, 2, 3, 4), y = (1, 1, 2, 3): ranks y = (1.5, 1.5, 3, 4),
        // Pearson of the ranks = 0.9486832980505138.
        let reversed: Vec<(f64, f64)> = pairs.iter().map(|&(x, y)| (x, -y)).collect();
        assert!((spearman(&reversed) + 1.0).abs() < 1e-12);
        let tied = [(1.0, 1.0), (2.0, 1.0), (3.0, 2.0), (4.0, 3.0)];
        assert!((spearman(&tied) - 0.9486832980505138).abs() < 1e-12);
        assert!((median(vec![3.0, 1.0, 2.0, 10.0]) - 2.5).abs() < 1e-12);
        assert!((median(vec![3.0, f64::NAN, 1.0, 2.0]) - 2.0).abs() < 1e-12);
        assert!((pooled_cos(&[1.0, 0.0, 0.0, 2.0], &[2.0, 0.0, 0.0, 4.0]) - 1.0).abs() < 1e-12);
        assert!(pooled_cos(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-12);
        assert!((std_dev(&[1.0, 2.0, 3.0, 4.0]) - 1.2909944487358056).abs() < 1e-12);
        // a = (2, 3), b = (1, 3): 2 > 1, 2 < 3, 3 > 1, 3 = 3: two wins and a tie of four pairs.
        assert!((auc(&[2.0, 3.0], &[1.0, 3.0]) - 2.5 / 4.0).abs() < 1e-12);
    }

    #[test]
    fn smoothed_log_density_of_one_point_is_the_gaussian() {
        // One training point at the origin in 2-D: log N(x; 0, σ² I) = −log(2πσ²) − |x|²/(2σ²).
        let sigma = 0.3;
        let got = smoothed_log_density(&[0.3, -0.4], &[0.0, 0.0], 2, sigma);
        let want = -(2.0 * std::f64::consts::PI * sigma * sigma).ln() - 0.25 / (2.0 * sigma * sigma);
        assert!((got[0] - want).abs() < 1e-6, "{} vs {want}", got[0]);
        // Two points, far apart: the mixture halves the density near one of them.
        let two = smoothed_log_density(&[0.3, -0.4], &[0.0, 0.0, 100.0, 100.0], 2, sigma);
        assert!((two[0] - (want - 2f64.ln())).abs() < 1e-6);
    }
}
