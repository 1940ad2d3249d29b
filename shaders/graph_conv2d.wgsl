// graph_conv2d.wgsl — the graph engine's 2-D convolution or transposed convolution of NCHW rows, constant weight.
//
// Convolution: out[r, o, y, x] = Σ_{c ∈ group(o), i, j} w[o, c − c₀, i, j] · in[r, c, y·sy − py + i·dy, x·sx − px + j·dx],
// w [c_out, c_in / groups, kh, kw]. Transposed (params.transposed = 1): out[r, o, y, x] = Σ_{c ∈ group(o), i, j}
// w[c, o − o₀, i, j] · in[r, c, (y + py − i·dy) / sy, (x + px − j·dx) / sx] over the taps whose divisions are exact
// and in range, w [c_in, c_out / groups, kh, kw]. Taps outside the input read zero. As reference::graph_ops.
//
// Bindings (group 0): 0 x (read, [rows, c_in, h_in, w_in]), 1 w (read, as above),
//                     2 out (read_write, [rows, c_out, h_out, w_out]; not x),
//                     3 params (uniform Params: the sizes, kernel, stride, padding, dilation, groups, transposed,
//                     total = rows · c_out · h_out · w_out, grid_width).
// Layout: NCHW rows, batch-major. A 2-D grid of 256-thread workgroups, one thread per output element (direct
// gather): t = gid.y · grid_width + gid.x, decomposed as (r, o, y, x) with x fastest.

struct Params {
    rows: u32, c_in: u32, h_in: u32, w_in: u32,
    c_out: u32, h_out: u32, w_out: u32, groups: u32,
    kh: u32, kw: u32, sy: u32, sx: u32,
    py: u32, px: u32, dy: u32, dx: u32,
    transposed: u32, total: u32, grid_width: u32, pad0: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y * params.grid_width + gid.x;
    if (t >= params.total) { return; }
    let ox = t % params.w_out;
    let oy = (t / params.w_out) % params.h_out;
    let o = (t / (params.w_out * params.h_out)) % params.c_out;
    let r = t / (params.w_out * params.h_out * params.c_out);
    let cin_g = params.c_in / params.groups;
    let cout_g = params.c_out / params.groups;
    let g = o / cout_g;
    let plane = params.h_in * params.w_in;
    let x_row = r * params.c_in * plane;
    let h_in = i32(params.h_in);
    let w_in = i32(params.w_in);
    let sy = i32(params.sy);
    let sx = i32(params.sx);
    var acc = 0.0;
    for (var c = g * cin_g; c < (g + 1u) * cin_g; c = c + 1u) {
        let x_plane = x_row + c * plane;
        // Weight (c, i, j) of this output channel starts at w_base + i·kw + j.
        var w_base: u32;
        if (params.transposed != 0u) {
            w_base = (c * cout_g + (o - g * cout_g)) * params.kh * params.kw;
        } else {
            w_base = (o * cin_g + (c - g * cin_g)) * params.kh * params.kw;
        }
        for (var i = 0u; i < params.kh; i = i + 1u) {
            var iy: i32;
            if (params.transposed != 0u) {
                let ny = i32(oy + params.py) - i32(i * params.dy);
                if (ny < 0 || ny % sy != 0) { continue; }
                iy = ny / sy;
            } else {
                iy = i32(oy * params.sy + i * params.dy) - i32(params.py);
            }
            if (iy < 0 || iy >= h_in) { continue; }
            for (var j = 0u; j < params.kw; j = j + 1u) {
                var ix: i32;
                if (params.transposed != 0u) {
                    let nx = i32(ox + params.px) - i32(j * params.dx);
                    if (nx < 0 || nx % sx != 0) { continue; }
                    ix = nx / sx;
                } else {
                    ix = i32(ox * params.sx + j * params.dx) - i32(params.px);
                }
                if (ix < 0 || ix >= w_in) { continue; }
                acc = fma(w[w_base + i * params.kw + j], x[x_plane + u32(iy) * params.w_in + u32(ix)], acc);
            }
        }
    }
    out[t] = acc;
}
