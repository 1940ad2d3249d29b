// shared/segment_sum.wgsl — a tree sum of one vec2 per thread within aligned segments of LANES threads of a
// 256-thread workgroup, for the graph engine's per-group reductions (graph_norm.wgsl, graph_norm_tangent.wgsl,
// graph_softmax_tangent.wgsl): each segment reduces one line (group), so short lines share a workgroup and long
// ones get all 256 threads. LANES (override, a power of two from 1 to 256) is chosen by the host from the line
// length. Every thread of the workgroup must call segment_sum2 (it synchronises); each gets its segment's total.

override LANES: u32 = 256u;
const SEGMENT_THREADS: u32 = 256u;
var<workgroup> segment_partials: array<vec2<f32>, 256>;

fn segment_sum2(lid: u32, value: vec2<f32>) -> vec2<f32> {
    segment_partials[lid] = value;
    workgroupBarrier();
    let lane = lid % LANES;
    for (var stride = LANES / 2u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) { segment_partials[lid] += segment_partials[lid + stride]; }
        workgroupBarrier();
    }
    let total = segment_partials[lid - lane];
    workgroupBarrier();
    return total;
}
