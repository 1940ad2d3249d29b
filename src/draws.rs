//! Random draws keyed by row: a row's values depend on (seed, what they are for, the row's index in the whole
//! run, the draw event), never on how rows are batched, chunked, sharded or split over devices.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// Streams of [`row_rng`]: what the draws are for, so that different uses of one seed never share draws.
pub mod stream {
    /// x_T and the samplers' per-step noise ([`crate::sampler::SeededNoise`]).
    pub const SAMPLER_NOISE: u64 = 1;
    /// Random starting tangents of Lyapunov analysis.
    pub const LYAPUNOV_TANGENTS: u64 = 2;
    /// Starting directions of randomized SVD and subspace iteration.
    pub const LOWRANK_DIRECTIONS: u64 = 3;
    /// Starting directions of the symmetric part's block power iteration.
    pub const SYMMETRIC_DIRECTIONS: u64 = 4;
    /// Rademacher probes of Hutchinson-type estimators (divergence, non-conservativeness).
    pub const PROBES: u64 = 5;
    /// Random features of a known error field ([`crate::field::perturbed::RandomFeatureError`]).
    pub const ERROR_FIELD: u64 = 6;
}

/// SplitMix64's output function: a bijection of u64 that mixes every bit.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce5_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The generator of one row's draws: keyed by (seed, stream, row, event), each mixed by SplitMix64 into its own
/// 8 bytes of the 32-byte key, so distinct tuples never share a key. `row` is the row's index in the whole run
/// (not in a shard or a device's block), so its draws do not depend on how the rows are split.
pub fn row_rng(seed: u64, stream: u64, row: u64, event: u64) -> rand::rngs::StdRng {
    let mut key = [0u8; 32];
    for (lane, word) in key.chunks_mut(8).zip([seed, stream, row, event]) {
        lane.copy_from_slice(&splitmix64(word).to_le_bytes());
    }
    rand::rngs::StdRng::from_seed(key)
}

/// `per_row` standard normal values for each of `rows` rows starting at row `first_row`, [rows, per_row].
pub fn normal_rows(seed: u64, stream: u64, first_row: usize, rows: usize, per_row: usize) -> Vec<f32> {
    (0..rows)
        .flat_map(|r| {
            let mut rng = row_rng(seed, stream, (first_row + r) as u64, 0);
            (0..per_row).map(move |_| StandardNormal.sample(&mut rng)).collect::<Vec<f32>>()
        })
        .collect()
}

/// `per_row` Rademacher values (±1) for each of `rows` rows starting at row `first_row`, [rows, per_row].
pub fn rademacher_rows(seed: u64, stream: u64, first_row: usize, rows: usize, per_row: usize) -> Vec<f32> {
    (0..rows)
        .flat_map(|r| {
            let mut rng = row_rng(seed, stream, (first_row + r) as u64, 0);
            (0..per_row).map(move |_| if rng.random::<bool>() { 1.0 } else { -1.0 }).collect::<Vec<f32>>()
        })
        .collect()
}
