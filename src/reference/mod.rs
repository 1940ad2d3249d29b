//! Plain-Rust f64 references of every kernel and model forward, with the same loop shapes as the WGSL, used by
//! the tests (and as the CPU answer where a GPU result is checked).
#![allow(clippy::needless_range_loop)] // Keeps the loops comparable to the shaders.

pub mod attention;
pub mod flow;
pub mod gram;
pub mod graph;
pub mod graph_ops;
pub mod kde;
pub mod matmul;
pub mod mlp;
pub mod unet;
