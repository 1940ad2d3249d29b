// shared/workgroup_sum_subgroup.wgsl — the variant of shared/workgroup_sum.wgsl on subgroup operations (needs
// wgpu::Features::SUBGROUP): the sum of one vec2 per thread over the workgroup, every thread getting the total.
// Each subgroup adds its values with subgroupAdd and its first lane writes the partial to workgroup memory (one slot
// per subgroup); after one barrier every subgroup adds the partials again (lane i takes slots i, i + size, …, then
// subgroupAdd), so every thread gets the same total in the same order. Any subgroup size works (1 … 256). Every
// thread of the workgroup must call it, in uniform control flow.

var<workgroup> subgroup_partials: array<vec2<f32>, 256>;

struct Lanes {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) size: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
}

fn workgroup_sum2(lanes: Lanes, value: vec2<f32>) -> vec2<f32> {
    let mine = subgroupAdd(value);
    if (lanes.lane == 0u) { subgroup_partials[lanes.subgroup] = mine; }
    workgroupBarrier();
    var part = vec2<f32>(0.0);
    for (var i = lanes.lane; i < lanes.subgroups; i += lanes.size) { part += subgroup_partials[i]; }
    let total = subgroupAdd(part);
    workgroupBarrier();
    return total;
}
