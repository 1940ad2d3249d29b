// shared/kde_block.wgsl — the entry point and the data-tile loads of the 16×16-thread kde kernels (kde_distances,
// kde_mean_update, kde_covariance, kde_hvp_project, kde_hvp_accumulate).
//
// Bindings: none of its own; reads the including kernel's `data` (the tile [tile_rows, dim]) and `params`
//           (shared/kde_params.wgsl), and calls the kernel's `fn block(group, row0, col0, lid)`.
// Layout: row-major data. A 16×16-thread workgroup (THREADS invocations, local index lid) computes a 64×64 output
// block; the thread at local (x, y) owns its rows row0..row0+3 and columns col0..col0+3, row0 = 4y, col0 = 4x.

const THREADS: u32 = 256u;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    block(group, local.y * 4u, local.x * 4u, lid);
}

// α·data[i, k] − centre for a point of the tile (i < tile_rows, k < dim), 0 outside it (the padding of a block).
fn centred_data(i: u32, k: u32, centre: f32) -> f32 {
    if (i < params.tile_rows && k < params.dim) { return params.alpha * data[i * params.dim + k] - centre; }
    return 0.0;
}
