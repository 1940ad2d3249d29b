// shared/kde_block.wgsl — the entry point and the data-tile loads of the tiled kde kernels (kde_distances,
// kde_mean_update, kde_covariance, kde_hvp_project, kde_hvp_accumulate).
//
// Bindings: none of its own; reads the including kernel's `data` (the tile [tile_rows, dim]) and `params`
//           (shared/kde_params.wgsl), and calls the kernel's `fn block(group, row0, col0, lid)`.
// Layout: row-major data. A 16 × (BLOCK_ROWS/4)-thread workgroup (THREADS invocations, local index lid) computes
// a BLOCK_ROWS × 64 output block; the thread at local (x, y) owns rows row0..row0+3 and columns col0..col0+3,
// row0 = 4y, col0 = 4x. BLOCK_ROWS (override) is 64 — a 16×16 workgroup and a 64×64 block, the shape of
// shared/register_tile.wgsl — for every kernel but the H·V pair, whose host sets 16 for narrow blocks of
// directions (a Lanczos block of 8–16 vectors then pays for 16 directions, not 64); their workgroup tiles keep
// register_tile's 64-wide layout, of which the first BLOCK_ROWS columns are used.

override BLOCK_ROWS: u32 = 64u;
override THREADS: u32 = 4u * BLOCK_ROWS;

@compute @workgroup_size(16, BLOCK_ROWS / 4u, 1)
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
