//! Solvers on batches of linear operators reached only through their products: block Krylov singular triplets
//! and the symmetric part's eigenpairs ([`block_krylov`], on any [`operator::BatchOperator`]), and block Lanczos
//! for the leading eigenpairs of many symmetric operators at once ([`lanczos`], the smoothed density's Hessians).

pub mod block_krylov;
pub mod lanczos;
pub mod operator;
pub mod resident_krylov;
