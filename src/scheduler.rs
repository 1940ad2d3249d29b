//! The host scheduler's planning half: memory budgets and chunk plans. Pure arithmetic, testable without a GPU.
//!
//! A job is a number of independent rows; each row needs some bytes of device memory while it is in flight,
//! and the job needs some fixed bytes (weights). The plan cuts the rows into chunks so that every buffer stays
//! within the device's binding limit, every dispatch within its workgroup-count limit, and the whole job within
//! the memory budget.

use std::ops::Range;

use crate::error::{Error, Result};

/// Budget used when the user gives none; wgpu reports no device memory size, so this is a fixed default.
pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;

/// Parses sizes such as `2MiB`, `512MiB`, `4GiB`, `1.5GB`, `65536` (bytes).
///
/// ```
/// use scorelens::scheduler::parse_memory_size;
/// assert_eq!(parse_memory_size("512MiB").unwrap(), 512 << 20);
/// assert_eq!(parse_memory_size("1.5GB").unwrap(), 1_500_000_000);
/// assert!(parse_memory_size("lots").is_err());
/// ```
pub fn parse_memory_size(text: &str) -> Result<u64> {
    let s = text.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        Error::InvalidArgument(format!("memory size {text:?}: expected a number with a unit such as 512MiB"))
    })?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        other => {
            return Err(Error::InvalidArgument(format!(
                "memory size {text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            )))
        }
    };
    let bytes = value * factor;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(Error::InvalidArgument(format!("memory size {text:?} must be at least one byte")));
    }
    Ok(bytes as u64)
}

/// What one row and the whole job cost on the device, and the limits that bound a chunk.
#[derive(Debug, Clone, Copy)]
pub struct RowCost {
    /// Device bytes per row summed over all of the job's per-row buffers (inputs, activations, outputs, staging).
    pub bytes_per_row: u64,
    /// The widest single per-row buffer, in bytes per row (bounded by the binding limit).
    pub widest_row_bytes: u64,
    /// Bytes that do not scale with rows (weights, tables).
    pub fixed_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct DeviceBounds {
    pub memory_budget: u64,
    pub max_binding_bytes: u64,
    /// The most rows one dispatch can cover (workgroup-count limit × rows per workgroup).
    pub max_rows_per_dispatch: u64,
}

/// Cuts `rows` into contiguous chunks of equal size (the last may be shorter) that fit `bounds`.
pub fn plan_chunks(rows: usize, cost: RowCost, bounds: DeviceBounds) -> Result<Vec<Range<usize>>> {
    if rows == 0 {
        return Ok(Vec::new());
    }
    let available = bounds.memory_budget.checked_sub(cost.fixed_bytes).filter(|a| *a > 0).ok_or_else(|| {
        Error::DoesNotFit(format!(
            "the model needs {} of device memory but the memory budget is {} (raise max_memory)",
            format_bytes(cost.fixed_bytes),
            format_bytes(bounds.memory_budget)
        ))
    })?;
    let by_budget = available / cost.bytes_per_row.max(1);
    let by_binding = bounds.max_binding_bytes / cost.widest_row_bytes.max(1);
    let per_chunk = by_budget.min(by_binding).min(bounds.max_rows_per_dispatch).min(rows as u64);
    if per_chunk == 0 {
        return Err(Error::DoesNotFit(format!(
            "one row needs {} of device memory but only {} is left in the budget after {} of weights (raise max_memory)",
            format_bytes(cost.bytes_per_row),
            format_bytes(available),
            format_bytes(cost.fixed_bytes)
        )));
    }
    let per_chunk = per_chunk as usize;
    Ok((0..rows).step_by(per_chunk).map(|start| start..(start + per_chunk).min(rows)).collect())
}

/// A byte count for messages, in binary units.
///
/// ```
/// assert_eq!(scorelens::scheduler::format_bytes(3 << 20), "3.0 MiB");
/// assert_eq!(scorelens::scheduler::format_bytes(17), "17 B");
/// ```
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Reports how far a job has come; the CLI draws a progress bar, libraries may ignore it.
pub trait Progress: Sync {
    fn start(&self, _what: &str, _total_rows: usize) {}
    fn advance(&self, _rows: usize) {}
    fn finish(&self) {}
}

/// A [`Progress`] that reports nothing.
pub struct Silent;
impl Progress for Silent {}

/// Settings every computing job takes.
#[derive(Clone, Copy)]
pub struct JobOptions<'a> {
    pub memory_budget: u64,
    pub progress: &'a dyn Progress,
}

impl Default for JobOptions<'_> {
    fn default() -> Self {
        JobOptions { memory_budget: DEFAULT_MEMORY_BUDGET, progress: &Silent }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_memory_size("2MiB").unwrap(), 2 << 20);
        assert_eq!(parse_memory_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_memory_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_memory_size("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_memory_size("65536").unwrap(), 65536);
        assert!(parse_memory_size("12 parsecs").is_err());
        assert!(parse_memory_size("MiB").is_err());
        assert!(parse_memory_size("0").is_err());
    }

    fn bounds(budget: u64) -> DeviceBounds {
        DeviceBounds { memory_budget: budget, max_binding_bytes: 1 << 20, max_rows_per_dispatch: 1 << 22 }
    }

    #[test]
    fn chunks_cover_every_row_once_and_respect_every_bound() {
        let cost = RowCost { bytes_per_row: 1000, widest_row_bytes: 300, fixed_bytes: 10_000 };
        for rows in [1usize, 7, 999, 1_000_000] {
            for budget in [20_000u64, 1 << 20, 1 << 30] {
                let chunks = plan_chunks(rows, cost, bounds(budget)).unwrap();
                let mut next = 0;
                for c in &chunks {
                    assert_eq!(c.start, next);
                    assert!(!c.is_empty());
                    let n = c.len() as u64;
                    assert!(n * cost.bytes_per_row + cost.fixed_bytes <= budget);
                    assert!(n * cost.widest_row_bytes <= 1 << 20);
                    next = c.end;
                }
                assert_eq!(next, rows);
            }
        }
    }

    #[test]
    fn too_small_a_budget_is_a_clear_error() {
        let cost = RowCost { bytes_per_row: 1000, widest_row_bytes: 300, fixed_bytes: 10_000 };
        let err = plan_chunks(10, cost, bounds(5_000)).unwrap_err().to_string();
        assert!(err.contains("raise max_memory"), "{err}");
        let err = plan_chunks(10, cost, bounds(10_500)).unwrap_err().to_string();
        assert!(err.contains("one row needs"), "{err}");
    }
}
