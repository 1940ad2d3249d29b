// shared/register_tile_128.wgsl — the register-blocked inner product of the 128×128 tiles, shared by
// matmul_tiled_128.wgsl and the convolution core (shared/conv_igemm_core_128.wgsl): a 16×16-thread workgroup holds a
// BIG_K-deep slice of a 128-row A tile and a 128-column B tile in workgroup memory as vec4, stored [kk][mm / 4] and
// [kk][nn / 4]; thread (tx, ty) accumulates the 8×8 outputs of rows {4ty..4ty+3, 64+4ty..64+4ty+3} and columns
// {4tx..4tx+3, 64+4tx..64+4tx+3} over the slice, acc[2r + h] holding row r of its 8 (r < 4: 4ty + r, else
// 64 + 4ty + r − 4) and column half h. stage_a_128 / stage_b_128 fill the tiles; tile_row_128 / tile_col_128 say
// where each accumulator element belongs.

const BIG_M: u32 = 128u;
const BIG_N: u32 = 128u;
const BIG_K: u32 = 8u;

var<workgroup> big_a: array<vec4<f32>, 256>; // [BIG_K][BIG_M / 4]
var<workgroup> big_b: array<vec4<f32>, 256>; // [BIG_K][BIG_N / 4]

fn multiply_tiles_128(tx: u32, ty: u32, acc: ptr<function, array<vec4<f32>, 16>>) {
    for (var kk = 0u; kk < BIG_K; kk++) {
        let a_lo = big_a[kk * 32u + ty];
        let a_hi = big_a[kk * 32u + 16u + ty];
        let b_lo = big_b[kk * 32u + tx];
        let b_hi = big_b[kk * 32u + 16u + tx];
        for (var r = 0u; r < 4u; r++) {
            (*acc)[2u * r] = fma(vec4<f32>(a_lo[r]), b_lo, (*acc)[2u * r]);
            (*acc)[2u * r + 1u] = fma(vec4<f32>(a_lo[r]), b_hi, (*acc)[2u * r + 1u]);
            (*acc)[8u + 2u * r] = fma(vec4<f32>(a_hi[r]), b_lo, (*acc)[8u + 2u * r]);
            (*acc)[8u + 2u * r + 1u] = fma(vec4<f32>(a_hi[r]), b_hi, (*acc)[8u + 2u * r + 1u]);
        }
    }
}

// Stores element (kk, mm) of the A tile and (kk, nn) of the B tile (the layout multiply_tiles_128 reads).
fn stage_a_128(kk: u32, mm: u32, value: f32) {
    big_a[kk * 32u + (mm >> 2u)][mm & 3u] = value;
}

fn stage_b_128(kk: u32, nn: u32, value: f32) {
    big_b[kk * 32u + (nn >> 2u)][nn & 3u] = value;
}

// The tile row of accumulator row r (0…7) of thread row ty, and the tile column of element j of column half h of
// thread column tx: where acc[2r + h][j] belongs.
fn tile_row_128(r: u32, ty: u32) -> u32 {
    return (r >> 2u) * 64u + 4u * ty + (r & 3u);
}

fn tile_col_128(h: u32, j: u32, tx: u32) -> u32 {
    return h * 64u + 4u * tx + j;
}
