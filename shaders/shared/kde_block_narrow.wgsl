// shared/kde_block_narrow.wgsl — the entry point, data-tile loads and register tile of the narrow Hessian-vector
// kernels (kde_hvp_project_narrow, kde_hvp_accumulate_narrow): 16 directions per workgroup instead of 64, so a
// Lanczos block of 8–16 vectors does not pay for 64.
//
// Bindings: none of its own; reads the including kernel's `data` (the tile [tile_rows, dim]) and `params`
//           (shared/kde_params.wgsl), and calls the kernel's `fn block(group, row0, col0, lid)`.
// Layout: a 16×4-thread workgroup (THREADS = 64 invocations, local index lid) computes a 16×64 output block
// (TILE_M = 16 directions × TILE_N = 64 columns); the thread at local (x, y) owns rows row0..row0+3 (row0 = 4y)
// and columns col0..col0+3 (col0 = 4x). Workgroup tiles tile_a [TILE_K][TILE_M] and tile_b [TILE_K][TILE_N].

const THREADS: u32 = 64u;
const TILE_M: u32 = 16u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

var<workgroup> tile_a: array<f32, 256>;  // [TILE_K][TILE_M]
var<workgroup> tile_b: array<f32, 1024>; // [TILE_K][TILE_N]

@compute @workgroup_size(16, 4, 1)
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

// Each thread's 4×4 outputs accumulated over one TILE_K-deep slice.
fn multiply_tiles(row0: u32, col0: u32, acc: ptr<function, array<vec4<f32>, 4>>) {
    for (var kk = 0u; kk < TILE_K; kk++) {
        let ao = kk * TILE_M + row0;
        let bo = kk * TILE_N + col0;
        let bv = vec4<f32>(tile_b[bo], tile_b[bo + 1u], tile_b[bo + 2u], tile_b[bo + 3u]);
        (*acc)[0] = fma(vec4<f32>(tile_a[ao]), bv, (*acc)[0]);
        (*acc)[1] = fma(vec4<f32>(tile_a[ao + 1u]), bv, (*acc)[1]);
        (*acc)[2] = fma(vec4<f32>(tile_a[ao + 2u]), bv, (*acc)[2]);
        (*acc)[3] = fma(vec4<f32>(tile_a[ao + 3u]), bv, (*acc)[3]);
    }
}
