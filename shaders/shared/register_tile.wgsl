// shared/register_tile.wgsl — the register-blocked inner product shared by matmul_tiled.wgsl and the convolution
// core (shared/conv_igemm_core.wgsl): a 16×16-thread workgroup holds a TILE_K-deep slice of a 64-row A tile and a
// 64-column B tile in workgroup memory, stored [kk][mm] and [kk][nn]; each thread accumulates its 4×4 outputs
// (rows row0..row0+3, columns col0..col0+3) over the slice.

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

var<workgroup> tile_a: array<f32, 1024>; // [TILE_K][TILE_M]
var<workgroup> tile_b: array<f32, 1024>; // [TILE_K][TILE_N]

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
