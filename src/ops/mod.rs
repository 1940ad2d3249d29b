//! GPU operations: each records one kernel's dispatch from typed arguments. They know buffers and shapes,
//! nothing of models, files or the CLI.

pub mod attention;
pub mod gram;
pub mod graph;
pub mod kde;
pub mod lincomb;
pub mod matmul;
pub mod qr;

pub use matmul::{record_matmul, Epilogue, MatmulShape};
