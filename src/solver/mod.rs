//! Iterative eigensolvers on matrix-free operators.

pub mod lanczos;
