//! Small statistics for the findings of arXiv 2508.07581 and 2602.06021.

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

pub(crate) fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|a| a.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Ranks 1..n, ties given their mean rank.
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
        for &k in &order[i..=j] {
            out[k] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    out
}

pub(crate) fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (mean(a), mean(b));
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// Spearman's rank correlation.
pub(crate) fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// Σᵢ⟨aᵢ, bᵢ⟩ / √(Σᵢ‖aᵢ‖² Σᵢ‖bᵢ‖²) over rows of `dim`: how far the vectors a follow the vectors b, pooled.
pub(crate) fn pooled_cos(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum();
    let nb: f64 = b.iter().map(|x| x * x).sum();
    dot / (na * nb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_statistics() {
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 25.0, 400.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // ties share their mean rank: ranks (1.5, 1.5, 3) against (1, 2, 3)
        let r = spearman(&[5.0, 5.0, 7.0], &[1.0, 2.0, 3.0]);
        assert!((r - 0.75f64.sqrt() ).abs() < 1e-12, "{r}");
        assert!((pooled_cos(&[1.0, 0.0, 0.0, 2.0], &[2.0, 0.0, 0.0, 4.0]) - 1.0).abs() < 1e-12);
    }
}
