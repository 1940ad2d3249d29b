// shared/attention_common.wgsl — the parameters and operand addressing of the fused attention kernels
// (graph_attention.wgsl, graph_attention_tangent.wgsl, graph_attention_score_adjoint.wgsl).
//
// An operand is described by Operand (rep, stride, lead, transposed): the matrix of output row r and head l starts
// at element (r / rep) · stride + l · lead of its buffer (stride 0: a constant shared by every row; lead 0: one
// matrix for every head), stored row-major, or transposed (the matrix [a, b] stored as [b, a]).
// Threads: one per (row r, head l, query i, chunk of CHUNK output columns); thread = ((r · lead + l) · lq + i) ·
// chunks + chunk < params.threads, on a 2-D grid of 64-thread workgroups (thread = (wid.y · grid_width + wid.x) ·
// 64 + lid): thread_index and work_item below.

struct Operand { rep: u32, stride: u32, lead: u32, transposed: u32 }

struct Params {
    threads: u32, grid_width: u32, lead: u32, lq: u32,
    lk: u32, dk: u32, dv: u32, chunks: u32,
    scale: f32, present: u32, pad0: u32, pad1: u32,
    q: Operand, k: Operand, v: Operand, p: Operand,
    dq: Operand, dk_: Operand, dv_: Operand,
}

// Output columns one thread accumulates (its private accumulators).
const CHUNK: u32 = 16u;

// Start of the matrix of output row r, head l in an operand.
fn matrix_base(o: Operand, r: u32, l: u32) -> u32 {
    return (r / o.rep) * o.stride + l * o.lead;
}

// Offset of element (a, b) of an [rows_a, cols_b] matrix stored as the operand says.
fn matrix_at(o: Operand, a: u32, b: u32, rows_a: u32, cols_b: u32) -> u32 {
    return select(a * cols_b + b, b * rows_a + a, o.transposed != 0u);
}

// Index of the thread of local index lid in workgroup wid on the 2-D grid of 64-thread workgroups.
fn thread_index(wid: vec3<u32>, lid: u32, grid_width: u32) -> u32 {
    return (wid.y * grid_width + wid.x) * 64u + lid;
}

// What one thread computes: output row r, head l, query i, chunk of output columns (0 when chunks = 1), and
// out_row = (r · lead + l) · lq + i, the index of its row of the [rows, lead, lq, ·] contiguous output.
struct WorkItem { r: u32, l: u32, i: u32, chunk: u32, out_row: u32 }

// The work item of a thread: thread = ((r · lead + l) · lq + i) · chunks + chunk.
fn work_item(thread: u32, pr: Params) -> WorkItem {
    let out_row = thread / pr.chunks;
    let head = out_row / pr.lq;
    return WorkItem(head / pr.lead, head % pr.lead, out_row % pr.lq, thread % pr.chunks, out_row);
}
