// kde_point_covariance_combine.wgsl — sums the slices of one data tile's covariance
// (kde_point_covariance_rows.wgsl) into each query point's covariance.
//
// For b < rows and e < dim²: cov[b·dim² + e] (+)= Σⱼ partial_cov[(j·rows + b)·dim² + e], j < ⌈tile_rows / SLICE⌉,
// overwritten when `first`, accumulated otherwise.
//
// Bindings (group 0): 0 partial_cov (read, [slices, rows, dim, dim]), 1 cov (read_write, [rows, dim, dim]),
//                     2 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. 64-thread workgroups, one thread per entry e of query point b = workgroup y.
// Dispatch (⌈dim² / 64⌉, rows, 1). SLICE (512) matches kde_point_covariance_rows.wgsl.

@group(0) @binding(0) var<storage, read> partial_cov: array<f32>;
@group(0) @binding(1) var<storage, read_write> cov: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

const SLICE: u32 = 512u;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let b = id.y;
    let e = id.x;
    let entries = params.dim * params.dim;
    if (e >= entries || b >= params.rows) { return; }
    let slices = (params.tile_rows + SLICE - 1u) / SLICE;
    var total = 0.0;
    for (var j = 0u; j < slices; j++) { total += partial_cov[(j * params.rows + b) * entries + e]; }
    let index = b * entries + e;
    if (params.first == 0u) { total += cov[index]; }
    cov[index] = total;
}
