// shared/coop_matrix_enable.wgsl — the directive a cooperative-matrix kernel (matmul_coop.wgsl) opens with: WGSL
// directives must precede every declaration, so this file comes first in the kernel's concatenation.
// `enable wgpu_cooperative_matrix` turns on naga's coop_mat8x8<f32, A|B|C> types and coopLoadT / coopMultiplyAdd /
// coopStoreT (wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX; 8×8 f32 only in wgpu 30).

enable wgpu_cooperative_matrix;
