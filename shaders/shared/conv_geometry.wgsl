// shared/conv_geometry.wgsl — the index arithmetic shared by the 3×3 convolution cores (shared/conv_igemm_core.wgsl,
// 64×64 tiles, and shared/conv_igemm_core_128.wgsl, 128×128 tiles): the parameters, the decomposition of a GEMM row
// m into (row, i, j) over params.batch rows of class_h × class_w outputs and of a GEMM column k into a tap
// (th, tw, ci) and its weight column, and the input and output pixels these address.

struct Params {
    batch: u32, hin: u32, win: u32, c1: u32,
    c2: u32, cout: u32, hout: u32, wout: u32,
    stride: u32, m: u32, k: u32, norm_offset1: u32,
    norm_offset2: u32, bias_offset: u32, bias_stride: u32, phase_h: u32,
    phase_w: u32, taps_h: u32, taps_w: u32, class_h: u32,
    class_w: u32, group_rows: u32, stats_offset1: u32, stats_offset2: u32,
    tstats_offset1: u32, tstats_offset2: u32, groups1: u32, groups2: u32,
    grad_stride1: u32, grad_offset1: u32, grad_stride2: u32, grad_offset2: u32,
}

override TRANSPOSED: bool = false;


// The input pixel (row·Hin + hi)·Win + wi that tap (th, tw) of class output (i, j) reads, or -1 outside the input.
fn input_pixel(row: u32, i: u32, j: u32, th: u32, tw: u32) -> i32 {
    var hi: u32;
    var wi: u32;
    if (TRANSPOSED) {
        if (i < th || j < tw) { return -1; }
        hi = i - th;
        wi = j - tw;
        if (hi >= params.hin || wi >= params.win) { return -1; }
    } else {
        hi = i * params.stride + th;
        wi = j * params.stride + tw;
    }
    return i32((row * params.hin + hi) * params.win + wi);
}

// The output pixel (row·Hout + ho)·Wout + wo of class row m.
fn output_pixel(m: u32) -> u32 {
    let per_row = params.class_h * params.class_w;
    let row = m / per_row;
    let r = m - row * per_row;
    let i = r / params.class_w;
    let j = r - i * params.class_w;
    var ho = i;
    var wo = j;
    if (TRANSPOSED) {
        ho = i * params.stride + params.phase_h;
        wo = j * params.stride + params.phase_w;
    }
    return (row * params.hout + ho) * params.wout + wo;
}

// GEMM row m as (row, i, j): class output (i, j) of batch row `row`.
fn class_row(m: u32) -> vec3<u32> {
    let per_row = params.class_h * params.class_w;
    let row = m / per_row;
    let p = m - row * per_row;
    let i = p / params.class_w;
    return vec3<u32>(row, i, p - i * params.class_w);
}

// GEMM column k as tap (th, tw, ci) of cin = C1 + C2 channels, and w: the column (kh·3 + kw)·cin + ci of the weight
// row that multiplies it (kh = th, or phase_h + S·th for a transposed convolution's phase class).
struct ConvTap { th: u32, tw: u32, ci: u32, w: u32 }

fn conv_tap(k: u32, cin: u32) -> ConvTap {
    let tap = k / cin;
    let ci = k - tap * cin;
    let th = tap / params.taps_w;
    let tw = tap - th * params.taps_w;
    var kh = th;
    var kw = tw;
    if (TRANSPOSED) {
        kh = params.phase_h + params.stride * th;
        kw = params.phase_w + params.stride * tw;
    }
    return ConvTap(th, tw, ci, (kh * 3u + kw) * cin + ci);
}
