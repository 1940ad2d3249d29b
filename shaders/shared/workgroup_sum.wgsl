// shared/workgroup_sum.wgsl — a tree sum of one vec2 per thread over a 256-thread workgroup, for the kernels that
// reduce two statistics at once (groupnorm_tangent_stats.wgsl, groupnorm_adjoint_stats.wgsl). Every thread of the
// workgroup must call it (it synchronises); every thread gets the total.

const SUM_THREADS: u32 = 256u;
var<workgroup> partial_sums: array<vec2<f32>, 256>;

fn workgroup_sum2(lid: u32, value: vec2<f32>) -> vec2<f32> {
    partial_sums[lid] = value;
    workgroupBarrier();
    for (var stride = SUM_THREADS / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) { partial_sums[lid] += partial_sums[lid + stride]; }
        workgroupBarrier();
    }
    let total = partial_sums[0];
    workgroupBarrier();
    return total;
}
