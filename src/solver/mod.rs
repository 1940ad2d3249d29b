//! Solvers on batches of linear operators reached only through their products: block Krylov singular triplets
//! and the symmetric part's eigenpairs ([`block_krylov`]), on any [`operator::BatchOperator`].

pub mod block_krylov;
pub mod operator;
