// shared/workgroup_sum.wgsl — a tree sum of one vec2 per thread over a 256-thread workgroup, for the kernels that
// reduce two statistics at once (groupnorm_tangent_stats.wgsl, groupnorm_adjoint_stats.wgsl). Every thread of the
// workgroup must call it (it synchronises); every thread gets the total. The kernels take their thread ids as
// `lanes: Lanes`; shared/workgroup_sum_subgroup.wgsl is the drop-in variant on subgroup operations.

const SUM_THREADS: u32 = 256u;
var<workgroup> partial_sums: array<vec2<f32>, 256>;

struct Lanes {
    @builtin(local_invocation_index) lid: u32,
}

fn workgroup_sum2(lanes: Lanes, value: vec2<f32>) -> vec2<f32> {
    let lid = lanes.lid;
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
