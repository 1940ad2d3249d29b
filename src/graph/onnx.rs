//! ONNX import: a `.onnx` file (parsed by the `onnx-protobuf` crate) lowered into the graph IR for the per-row
//! shape of its first input. Everything computed from constants and shapes alone (Shape, Constant,
//! ConstantOfShape, Cast, Gather on shapes, shape arithmetic, …) is folded here; the batch axis, whose size is
//! unknown at load, is carried through the folding as a marker value ([`BATCH`]), so `x.view(B, -1)` and
//! `x.reshape(x.shape[0], …)` resolve alike. Values that depend on the inputs keep their batch axis wherever the
//! network puts it (DiT's qkv permutes move it), and every op is lowered to primitives acting within a row.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use onnx_protobuf::{AttributeProto, Message, ModelProto, NodeProto, TensorProto};

use crate::error::{Error, Result};
use crate::graph::ir::{Graph, MatMul, MatrixLayout, Op, Stream, ValueId};
use crate::graph::layout::{self, AxisSlice, NearestMode, ResizeCoordinates};
use crate::ops::graph::{BinaryOp, Conv2d, UnaryFn};
use crate::reference::graph_ops::{broadcast_offset, SparseMap};

/// The batch dimension inside folded shape arithmetic: large enough that no per-row size reaches it, exact in f64
/// after multiplication by any per-row size.
pub const BATCH: i64 = 1 << 40;

/// Most elements one tensor (a folded constant, or one row of a value) may have: more is refused as a malformed
/// or hostile file rather than allocated.
pub const MAX_ELEMENTS: u64 = 1 << 24;

/// Oldest and newest default-domain opsets read.
pub const OPSETS: (i64, i64) = (11, 23);

/// A network read from an ONNX file, lowered for its input's per-row shape.
#[derive(Debug, Clone)]
pub struct OnnxNetwork {
    pub path: PathBuf,
    pub graph: Graph,
    /// The file's metadata_props.
    pub metadata: HashMap<String, String>,
    pub opset: i64,
    /// Names of the graph inputs: x and the time input.
    pub input_names: (String, String),
}

/// A folded tensor: ints and floats alike as f64 (ints exact below 2⁵³).
#[derive(Debug, Clone)]
struct Folded {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl Folded {
    fn scalar(v: f64) -> Self {
        Folded { shape: vec![], data: vec![v] }
    }

    fn ints(&self) -> Vec<i64> {
        self.data.iter().map(|&v| v as i64).collect()
    }
}

/// What an ONNX tensor name stands for during import.
#[derive(Debug, Clone)]
enum Sym {
    Folded(Folded),
    /// A value of the graph with its batch axis at `axis` of the full (ONNX) shape.
    Batched {
        id: ValueId,
        axis: usize,
    },
}

/// Reads an ONNX model file. `row_shape` overrides the per-row shape of x when the file leaves it symbolic.
pub fn load(path: &Path, row_shape: Option<&[usize]>) -> Result<OnnxNetwork> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes(path, &bytes, row_shape)
}

/// Reads an ONNX model from bytes (`path` names it in messages and locates external data).
pub fn from_bytes(path: &Path, bytes: &[u8], row_shape: Option<&[usize]>) -> Result<OnnxNetwork> {
    let bad = |message: String| Error::bad_file(path, message);
    let model = ModelProto::parse_from_bytes(bytes)
        .map_err(|e| bad(format!("not a readable ONNX model (protobuf: {e}); is the file truncated?")))?;
    let Some(graph) = model.graph.as_ref() else {
        return Err(bad("not an ONNX model: it has no graph".into()));
    };
    if graph.node.is_empty() {
        return Err(bad("not an ONNX model: its graph has no nodes".into()));
    }
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| bad("no opset for the default ONNX domain".into()))?;
    if opset < OPSETS.0 || opset > OPSETS.1 {
        return Err(bad(format!(
            "opset {opset} is not supported (opsets {} to {}; re-export with opset_version=21)",
            OPSETS.0, OPSETS.1
        )));
    }
    let metadata: HashMap<String, String> =
        model.metadata_props.iter().map(|p| (p.key.clone(), p.value.clone())).collect();

    let mut importer = Importer {
        path: path.to_path_buf(),
        opset,
        graph: Graph::default(),
        syms: HashMap::new(),
        node_name: String::new(),
    };
    for init in &graph.initializer {
        let folded = importer.tensor(init)?;
        importer.syms.insert(init.name.clone(), Sym::Folded(folded));
    }
    let inputs: Vec<_> = graph.input.iter().filter(|i| !importer.syms.contains_key(&i.name)).collect();
    if inputs.len() != 2 {
        return Err(bad(format!(
            "the graph has {} inputs ({}); a score network takes two: x [B, ...] and the time input [B]",
            inputs.len(),
            inputs.iter().map(|i| format!("`{}`", i.name)).collect::<Vec<_>>().join(", ")
        )));
    }
    let dims = |i: usize| -> Vec<Option<usize>> {
        let t = inputs[i].type_.tensor_type();
        t.shape
            .dim
            .iter()
            .map(|d| if d.has_dim_value() && d.dim_value() > 0 { Some(d.dim_value() as usize) } else { None })
            .collect()
    };
    let x_dims = dims(0);
    if x_dims.len() < 2 {
        return Err(bad(format!("input `{}` (x) must be [B, ...] with at least one per-row axis", inputs[0].name)));
    }
    let x_row: Vec<usize> = match row_shape {
        Some(s) => s.to_vec(),
        None => x_dims[1..].iter().map(|d| d.ok_or(())).collect::<std::result::Result<_, _>>().map_err(|_| {
            bad(format!("input `{}` (x) has symbolic per-row dimensions; give the per-row shape", inputs[0].name))
        })?,
    };
    if x_row.len() != x_dims.len() - 1 || x_row.iter().zip(&x_dims[1..]).any(|(&s, d)| d.is_some_and(|d| d != s)) {
        return Err(bad(format!(
            "input `{}` (x) is {:?} per row in the file, not {x_row:?}",
            inputs[0].name,
            &x_dims[1..]
        )));
    }
    let t_dims = dims(1);
    let t_row: Vec<usize> = match t_dims.len() {
        1 => vec![],
        2 if t_dims[1] == Some(1) => vec![1],
        _ => {
            return Err(bad(format!(
                "the time input `{}` must be [B] (or [B, 1]), found rank {}",
                inputs[1].name,
                t_dims.len()
            )))
        }
    };
    let x = importer.graph.add_value(inputs[0].name.clone(), x_row, Stream::Primal);
    let t = importer.graph.add_value(inputs[1].name.clone(), t_row, Stream::Primal);
    importer.graph.inputs = vec![x, t];
    importer.syms.insert(inputs[0].name.clone(), Sym::Batched { id: x, axis: 0 });
    importer.syms.insert(inputs[1].name.clone(), Sym::Batched { id: t, axis: 0 });

    for node in &graph.node {
        importer.node_name = if node.name.is_empty() {
            format!("{}#{}", node.op_type, node.output.join(","))
        } else {
            node.name.clone()
        };
        importer.node(node)?;
    }
    let Some(out) = graph.output.first() else {
        return Err(bad("the graph has no output".into()));
    };
    let (id, _) = match importer.syms.get(&out.name) {
        Some(Sym::Batched { id, axis }) => (*id, *axis),
        Some(Sym::Folded(_)) => return Err(bad(format!("output `{}` does not depend on the inputs", out.name))),
        None => return Err(bad(format!("output `{}` is not computed by any node", out.name))),
    };
    let out_shape = importer.graph.values[id].shape.clone();
    let x_shape = importer.graph.values[x].shape.clone();
    let output = if out_shape == x_shape {
        id
    } else if out_shape.iter().product::<usize>() == x_shape.iter().product::<usize>() {
        importer.graph.add_node("output", Op::Reshape, vec![id], x_shape)
    } else {
        return Err(bad(format!(
            "output `{}` is {out_shape:?} per row but x is {x_shape:?}: a score network's output has x's shape",
            out.name
        )));
    };
    importer.graph.output = output;
    Ok(OnnxNetwork {
        path: path.to_path_buf(),
        graph: importer.graph,
        metadata,
        opset,
        input_names: (inputs[0].name.clone(), inputs[1].name.clone()),
    })
}

struct Importer {
    path: PathBuf,
    opset: i64,
    graph: Graph,
    syms: HashMap<String, Sym>,
    node_name: String,
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// Normalises a possibly negative axis for rank `rank`.
fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (a >= 0 && a < rank as i64).then_some(a as usize)
}

impl Importer {
    /// Refuses a tensor of `shape` with more than [`MAX_ELEMENTS`] elements.
    fn sized(&self, what: &str, shape: &[usize]) -> Result<()> {
        let n = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        match n {
            Some(n) if n <= MAX_ELEMENTS => Ok(()),
            _ => Err(self.err(format!("{what} of shape {shape:?} is too large (over {MAX_ELEMENTS} elements)"))),
        }
    }

    fn err(&self, message: impl std::fmt::Display) -> Error {
        Error::bad_file(&self.path, format!("node `{}`: {message}", self.node_name))
    }

    // ---- tensors ----

    fn tensor(&self, t: &TensorProto) -> Result<Folded> {
        let bad = |m: String| Error::bad_file(&self.path, format!("tensor `{}`: {m}", t.name));
        if t.dims.iter().any(|&d| d < 0) {
            return Err(bad(format!("negative dimension in {:?}", t.dims)));
        }
        let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        let len = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| bad("too large".into()))?;
        let external;
        let raw: &[u8] = if t.data_location.value() == 1 {
            external = self.external_data(t)?;
            &external
        } else {
            &t.raw_data
        };
        let width = match t.data_type {
            1 | 6 => 4,  // float, int32
            7 | 11 => 8, // int64, double
            10 | 16 => 2,
            9 | 2 | 3 => 1, // bool, uint8, int8
            other => {
                return Err(bad(format!("data type {other} is not supported (float, double, half, int, bool are)")))
            }
        };
        let data: Vec<f64> = if !raw.is_empty() {
            if raw.len() != len * width {
                return Err(bad(format!("holds {} bytes, its shape {shape:?} needs {}", raw.len(), len * width)));
            }
            raw.chunks_exact(width)
                .map(|c| match t.data_type {
                    1 => f32::from_le_bytes(c.try_into().unwrap()) as f64,
                    6 => i32::from_le_bytes(c.try_into().unwrap()) as f64,
                    7 => i64::from_le_bytes(c.try_into().unwrap()) as f64,
                    11 => f64::from_le_bytes(c.try_into().unwrap()),
                    10 => half::f16::from_le_bytes(c.try_into().unwrap()).to_f64(),
                    16 => half::bf16::from_le_bytes(c.try_into().unwrap()).to_f64(),
                    3 => c[0] as i8 as f64,
                    _ => c[0] as f64,
                })
                .collect()
        } else {
            match t.data_type {
                1 => t.float_data.iter().map(|&v| v as f64).collect(),
                11 => t.double_data.clone(),
                7 => t.int64_data.iter().map(|&v| v as f64).collect(),
                10 => t.int32_data.iter().map(|&v| half::f16::from_bits(v as u16).to_f64()).collect(),
                16 => t.int32_data.iter().map(|&v| half::bf16::from_bits(v as u16).to_f64()).collect(),
                _ => t.int32_data.iter().map(|&v| v as f64).collect(),
            }
        };
        if data.len() != len {
            return Err(bad(format!("holds {} values, its shape {shape:?} needs {len}", data.len())));
        }
        Ok(Folded { shape, data })
    }

    /// The bytes of a tensor stored beside the model (the `.onnx.data` sidecar of large exports).
    fn external_data(&self, t: &TensorProto) -> Result<Vec<u8>> {
        let bad = |m: String| Error::bad_file(&self.path, format!("tensor `{}`: {m}", t.name));
        let entry = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.clone());
        let location = entry("location").ok_or_else(|| bad("external data without a location".into()))?;
        if Path::new(&location).is_absolute() || location.contains("..") {
            return Err(bad(format!("external data location {location:?} must be a file beside the model")));
        }
        let file = self.path.parent().unwrap_or(Path::new(".")).join(&location);
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        let parse = |key: &str| -> Result<Option<usize>> {
            entry(key).map(|v| v.parse::<usize>().map_err(|_| bad(format!("external data {key} {v:?}")))).transpose()
        };
        let offset = parse("offset")?.unwrap_or(0);
        let length = parse("length")?.unwrap_or(bytes.len().saturating_sub(offset));
        bytes.get(offset..offset.saturating_add(length)).map(<[u8]>::to_vec).ok_or_else(|| {
            bad(format!("external data {}..{} lies outside {}", offset, offset + length, file.display()))
        })
    }

    // ---- symbols ----

    fn sym(&self, node: &NodeProto, i: usize) -> Result<Sym> {
        let name =
            node.input.get(i).filter(|n| !n.is_empty()).ok_or_else(|| self.err(format!("input {i} is missing")))?;
        self.syms.get(name).cloned().ok_or_else(|| self.err(format!("input `{name}` is not defined before the node")))
    }

    fn opt_sym(&self, node: &NodeProto, i: usize) -> Result<Option<Sym>> {
        match node.input.get(i) {
            Some(n) if !n.is_empty() => self.sym(node, i).map(Some),
            _ => Ok(None),
        }
    }

    fn folded(&self, node: &NodeProto, i: usize, what: &str) -> Result<Folded> {
        match self.sym(node, i)? {
            Sym::Folded(f) => Ok(f),
            Sym::Batched { .. } => {
                Err(self.err(format!("{what} (input {i}) must be a constant, not computed from x or t")))
            }
        }
    }

    fn opt_ints(&self, node: &NodeProto, i: usize, what: &str) -> Result<Option<Vec<i64>>> {
        match self.opt_sym(node, i)? {
            None => Ok(None),
            Some(Sym::Folded(f)) => Ok(Some(f.ints())),
            Some(Sym::Batched { .. }) => Err(self.err(format!("{what} (input {i}) must be a constant"))),
        }
    }

    fn set(&mut self, node: &NodeProto, k: usize, sym: Sym) {
        if let Some(name) = node.output.get(k) {
            self.syms.insert(name.clone(), sym);
        }
    }

    /// The full (ONNX) shape, with [`BATCH`] on the batch axis.
    fn full_shape(&self, sym: &Sym) -> Vec<i64> {
        match sym {
            Sym::Folded(f) => f.shape.iter().map(|&d| d as i64).collect(),
            Sym::Batched { id, axis } => {
                let mut s: Vec<i64> = self.graph.values[*id].shape.iter().map(|&d| d as i64).collect();
                s.insert(*axis, BATCH);
                s
            }
        }
    }

    fn rank(&self, sym: &Sym) -> usize {
        self.full_shape(sym).len()
    }

    fn row_shape(&self, id: ValueId) -> Vec<usize> {
        self.graph.values[id].shape.clone()
    }

    fn push(&mut self, op: Op, inputs: Vec<ValueId>, shape: Vec<usize>) -> ValueId {
        let name = self.node_name.clone();
        self.graph.add_node(&name, op, inputs, shape)
    }

    fn constant(&mut self, label: &str, shape: Vec<usize>, data: &[f64]) -> ValueId {
        let name = format!("{}/{label}", self.node_name);
        self.graph.add_const(name, shape, data.iter().map(|&v| v as f32).collect())
    }

    /// A per-row sparse map applied to a batched value.
    fn map(&mut self, id: ValueId, map: SparseMap, shape: Vec<usize>) -> ValueId {
        self.push(Op::Linear(vec![Arc::new(map)]), vec![id], shape)
    }

    fn reshape_value(&mut self, id: ValueId, shape: Vec<usize>) -> ValueId {
        if self.graph.values[id].shape == shape {
            id
        } else {
            self.push(Op::Reshape, vec![id], shape)
        }
    }

    // ---- nodes ----

    fn node(&mut self, node: &NodeProto) -> Result<()> {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(
                self.err(format!("op `{}` of domain `{}` is not supported (custom op)", node.op_type, node.domain))
            );
        }
        let op = node.op_type.as_str();
        // Everything folds when every input is a constant.
        let all_folded = !node.input.is_empty()
            && node.input.iter().filter(|n| !n.is_empty()).all(|n| matches!(self.syms.get(n), Some(Sym::Folded(_))));
        match op {
            "Constant" => {
                let value = if let Some(a) = attr(node, "value") {
                    self.tensor(&a.t)?
                } else if let Some(a) = attr(node, "value_float") {
                    Folded::scalar(a.f as f64)
                } else if let Some(a) = attr(node, "value_int") {
                    Folded::scalar(a.i as f64)
                } else if let Some(a) = attr(node, "value_floats") {
                    Folded { shape: vec![a.floats.len()], data: a.floats.iter().map(|&v| v as f64).collect() }
                } else if let Some(a) = attr(node, "value_ints") {
                    Folded { shape: vec![a.ints.len()], data: a.ints.iter().map(|&v| v as f64).collect() }
                } else {
                    return Err(self.err("Constant without a numeric value"));
                };
                self.set(node, 0, Sym::Folded(value));
            }
            "Identity" | "Dropout" => {
                if op == "Dropout" {
                    if let Some(mode) = self.opt_ints(node, 2, "training_mode")? {
                        if mode.first().copied().unwrap_or(0) != 0 {
                            return Err(self.err("Dropout in training mode is random (export the model in eval mode)"));
                        }
                    }
                }
                let s = self.sym(node, 0)?;
                self.set(node, 0, s);
            }
            "Cast" | "CastLike" => {
                let s = self.sym(node, 0)?;
                let to = if op == "Cast" { attr_i(node, "to", 1) } else { 1 };
                let float = matches!(to, 1 | 10 | 11 | 16);
                let s = match s {
                    Sym::Folded(mut f) if !float => {
                        for v in &mut f.data {
                            *v = if to == 9 { (*v != 0.0) as i64 as f64 } else { v.trunc() };
                        }
                        Sym::Folded(f)
                    }
                    Sym::Batched { .. } if !float => {
                        return Err(self.err("casting a value computed from x or t to an integer type"));
                    }
                    other => other,
                };
                self.set(node, 0, s);
            }
            "Shape" => {
                let s = self.sym(node, 0)?;
                let full = self.full_shape(&s);
                let rank = full.len() as i64;
                let clampi = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
                let start = clampi(attr_i(node, "start", 0));
                let end = clampi(attr_i(node, "end", rank));
                let dims: Vec<f64> = full[start..end.max(start)].iter().map(|&d| d as f64).collect();
                self.set(node, 0, Sym::Folded(Folded { shape: vec![dims.len()], data: dims }));
            }
            "Size" => {
                let s = self.sym(node, 0)?;
                if let Sym::Batched { .. } = s {
                    return Err(self.err("Size of a batched value depends on the batch size"));
                }
                let n = self.full_shape(&s).iter().product::<i64>();
                self.set(node, 0, Sym::Folded(Folded::scalar(n as f64)));
            }
            "ConstantOfShape" => {
                let shape = self.folded(node, 0, "shape")?.ints();
                // A batch-sized constant broadcasts like one of size 1 along the batch axis.
                let shape: Vec<usize> = shape.iter().map(|&d| if d >= BATCH { 1 } else { d.max(0) as usize }).collect();
                self.sized("ConstantOfShape", &shape)?;
                let value = match attr(node, "value") {
                    Some(a) => self.tensor(&a.t)?.data.first().copied().unwrap_or(0.0),
                    None => 0.0,
                };
                let n = shape.iter().product();
                self.set(node, 0, Sym::Folded(Folded { shape, data: vec![value; n] }));
            }
            "Range" => {
                let (s, l, d) = (
                    self.folded(node, 0, "start")?.data[0],
                    self.folded(node, 1, "limit")?.data[0],
                    self.folded(node, 2, "delta")?.data[0],
                );
                if d == 0.0 {
                    return Err(self.err("Range with delta 0"));
                }
                let n = (((l - s) / d).ceil().max(0.0) as usize).min(1 << 24);
                let data: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
                self.set(node, 0, Sym::Folded(Folded { shape: vec![n], data }));
            }
            "Random" | "RandomNormal" | "RandomUniform" | "RandomNormalLike" | "RandomUniformLike" | "Bernoulli"
            | "Multinomial" => {
                return Err(self.err(format!(
                    "op `{op}` draws random numbers; a score network must be deterministic (export in eval mode)"
                )));
            }
            "Add" | "Sub" | "Mul" | "Div" | "Pow" => {
                let bop = match op {
                    "Add" => BinaryOp::Add,
                    "Sub" => BinaryOp::Sub,
                    "Mul" => BinaryOp::Mul,
                    "Div" => BinaryOp::Div,
                    _ => BinaryOp::Pow,
                };
                let (a, b) = (self.sym(node, 0)?, self.sym(node, 1)?);
                let out = self.binary(bop, a, b)?;
                self.set(node, 0, out);
            }
            // Variadic Max / Min of constants (shape arithmetic); Sum and Mean fold through `binary` below.
            "Max" | "Min" if all_folded => {
                let mut acc = self.folded(node, 0, "operand")?;
                for i in 1..node.input.len() {
                    let b = self.folded(node, i, "operand")?;
                    acc = fold_binary(&acc, &b, |x, y| if (op == "Max") == (x > y) { x } else { y })
                        .ok_or_else(|| self.err("shapes do not broadcast"))?;
                }
                self.set(node, 0, Sym::Folded(acc));
            }
            "Sum" | "Mean" => {
                let mut acc = self.sym(node, 0)?;
                for i in 1..node.input.len() {
                    let b = self.sym(node, i)?;
                    acc = self.binary(BinaryOp::Add, acc, b)?;
                }
                if op == "Mean" {
                    let n = Sym::Folded(Folded::scalar(node.input.len() as f64));
                    acc = self.binary(BinaryOp::Div, acc, n)?;
                }
                self.set(node, 0, acc);
            }
            "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Not" | "Floor"
            | "Ceil" | "Mod" | "Clip" | "Round" | "Sign"
                if all_folded =>
            {
                let out = self.fold_misc(node)?;
                self.set(node, 0, Sym::Folded(out));
            }
            "Where" => {
                let cond = self.folded(node, 0, "the condition of Where")?;
                let (a, b) = (self.sym(node, 1)?, self.sym(node, 2)?);
                // cond·a + (1 − cond)·b
                let mask = Folded {
                    shape: cond.shape.clone(),
                    data: cond.data.iter().map(|&c| (c != 0.0) as i64 as f64).collect(),
                };
                let inverse = Folded { shape: cond.shape.clone(), data: mask.data.iter().map(|&c| 1.0 - c).collect() };
                let ta = self.binary(BinaryOp::Mul, a, Sym::Folded(mask))?;
                let tb = self.binary(BinaryOp::Mul, b, Sym::Folded(inverse))?;
                let out = self.binary(BinaryOp::Add, ta, tb)?;
                self.set(node, 0, out);
            }
            "Relu" | "LeakyRelu" | "Sigmoid" | "Tanh" | "Erf" | "Exp" | "Log" | "Sin" | "Cos" | "Sqrt"
            | "Reciprocal" | "Neg" | "Abs" | "Softplus" | "Gelu" | "Elu" | "Selu" | "HardSigmoid" | "Mish"
            | "Swish" => {
                let f = match op {
                    "Relu" => UnaryFn::Relu,
                    "LeakyRelu" => UnaryFn::LeakyRelu(attr_f(node, "alpha", 0.01)),
                    "Sigmoid" => UnaryFn::Sigmoid,
                    "Tanh" => UnaryFn::Tanh,
                    "Erf" => UnaryFn::Erf,
                    "Exp" => UnaryFn::Exp,
                    "Log" => UnaryFn::Log,
                    "Sin" => UnaryFn::Sin,
                    "Cos" => UnaryFn::Cos,
                    "Sqrt" => UnaryFn::Sqrt,
                    "Reciprocal" => UnaryFn::Reciprocal,
                    "Neg" => UnaryFn::Neg,
                    "Abs" => UnaryFn::Abs,
                    "Softplus" => UnaryFn::Softplus,
                    "Gelu" => match attr_s(node, "approximate").as_deref() {
                        None | Some("none") => UnaryFn::Gelu,
                        Some("tanh") => UnaryFn::GeluTanh,
                        Some(other) => return Err(self.err(format!("Gelu approximate={other:?} is not supported"))),
                    },
                    _ => return Err(self.err(format!("op `{op}` is not supported"))),
                };
                let out = self.unary(f, self.sym(node, 0)?);
                self.set(node, 0, out);
            }
            "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => {
                let s = self.sym(node, 0)?;
                let full = self.full_shape(&s);
                let target: Vec<i64> = match op {
                    "Reshape" => {
                        let shape = self.folded(node, 1, "shape")?.ints();
                        let allowzero = attr_i(node, "allowzero", 0) != 0;
                        shape
                            .iter()
                            .enumerate()
                            .map(|(i, &d)| if d == 0 && !allowzero { full.get(i).copied().unwrap_or(0) } else { d })
                            .collect()
                    }
                    "Flatten" => {
                        let axis = norm_axis(attr_i(node, "axis", 1), full.len() + 1)
                            .ok_or_else(|| self.err("Flatten axis out of range"))?;
                        vec![full[..axis].iter().product(), full[axis..].iter().product()]
                    }
                    "Squeeze" => {
                        let axes = attr_ints(node, "axes").or(self.opt_ints(node, 1, "axes")?);
                        let axes: Vec<usize> = match axes {
                            Some(a) => a
                                .iter()
                                .map(|&x| norm_axis(x, full.len()).ok_or_else(|| self.err("Squeeze axis out of range")))
                                .collect::<Result<_>>()?,
                            None => (0..full.len()).filter(|&i| full[i] == 1).collect(),
                        };
                        full.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
                    }
                    _ => {
                        let axes = attr_ints(node, "axes")
                            .or(self.opt_ints(node, 1, "axes")?)
                            .ok_or_else(|| self.err("Unsqueeze without axes"))?;
                        let rank = full.len() + axes.len();
                        let mut axes: Vec<usize> = axes
                            .iter()
                            .map(|&x| norm_axis(x, rank).ok_or_else(|| self.err("Unsqueeze axis out of range")))
                            .collect::<Result<_>>()?;
                        axes.sort();
                        axes.dedup();
                        if axes.len() != rank - full.len() {
                            return Err(self.err("Unsqueeze with repeated axes"));
                        }
                        let mut out = full.clone();
                        for a in axes {
                            out.insert(a, 1);
                        }
                        out
                    }
                };
                let out = self.reshape(s, &target)?;
                self.set(node, 0, out);
            }
            "Transpose" => {
                let s = self.sym(node, 0)?;
                let rank = self.rank(&s);
                let perm: Vec<usize> = match attr_ints(node, "perm") {
                    Some(p) => p
                        .iter()
                        .map(|&a| norm_axis(a, rank).ok_or_else(|| self.err("Transpose perm out of range")))
                        .collect::<Result<_>>()?,
                    None => (0..rank).rev().collect(),
                };
                let out = self.transpose(s, &perm)?;
                self.set(node, 0, out);
            }
            "Slice" => {
                let s = self.sym(node, 0)?;
                let rank = self.rank(&s);
                let (starts, ends, axes, steps) = if self.opset < 10 {
                    (
                        attr_ints(node, "starts").unwrap_or_default(),
                        attr_ints(node, "ends").unwrap_or_default(),
                        attr_ints(node, "axes"),
                        None,
                    )
                } else {
                    (
                        self.opt_ints(node, 1, "starts")?.unwrap_or_default(),
                        self.opt_ints(node, 2, "ends")?.unwrap_or_default(),
                        self.opt_ints(node, 3, "axes")?,
                        self.opt_ints(node, 4, "steps")?,
                    )
                };
                let axes: Vec<i64> = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
                let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
                if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
                    return Err(self.err("Slice: starts, ends, axes and steps differ in length"));
                }
                let full = self.full_shape(&s);
                let mut sel: Vec<AxisSlice> =
                    full.iter().map(|&d| AxisSlice { start: 0, step: 1, len: d as usize }).collect();
                for i in 0..starts.len() {
                    let a = norm_axis(axes[i], rank).ok_or_else(|| self.err("Slice axis out of range"))?;
                    let dim = full[a];
                    let step = steps[i];
                    if step == 0 || step.unsigned_abs() > BATCH as u64 {
                        return Err(self.err(format!("Slice step {step}")));
                    }
                    let clampi = |v: i64, lo: i64, hi: i64| {
                        let v = if v < 0 { v + dim } else { v };
                        v.clamp(lo, hi)
                    };
                    let (start, end) = if step > 0 {
                        (clampi(starts[i], 0, dim), clampi(ends[i], 0, dim))
                    } else {
                        (clampi(starts[i], 0, dim - 1), clampi(ends[i], -1, dim - 1))
                    };
                    let len = if step > 0 {
                        (end - start + step - 1).div_euclid(step)
                    } else {
                        (start - end + (-step) - 1).div_euclid(-step)
                    };
                    if dim == BATCH {
                        if !(start == 0 && step == 1 && end >= BATCH) {
                            return Err(self.err("Slice along the batch axis (rows are independent points)"));
                        }
                        continue;
                    }
                    sel[a] = AxisSlice { start, step, len: len.max(0) as usize };
                }
                let out = self.select(s, &sel)?;
                self.set(node, 0, out);
            }
            "Split" => {
                let s = self.sym(node, 0)?;
                let full = self.full_shape(&s);
                let axis = norm_axis(attr_i(node, "axis", 0), full.len())
                    .ok_or_else(|| self.err("Split axis out of range"))?;
                if full[axis] == BATCH {
                    return Err(self.err("Split along the batch axis"));
                }
                let dim = full[axis] as usize;
                let parts = node.output.len();
                let sizes: Vec<usize> = match attr_ints(node, "split").or(self.opt_ints(node, 1, "split")?) {
                    Some(s) => s.iter().map(|&v| v.max(0) as usize).collect(),
                    None => {
                        let chunk = dim.div_ceil(parts.max(1));
                        (0..parts).map(|i| chunk.min(dim.saturating_sub(i * chunk))).collect()
                    }
                };
                if sizes.len() != parts || sizes.iter().sum::<usize>() != dim {
                    return Err(self.err(format!("Split sizes {sizes:?} do not cover axis {axis} of size {dim}")));
                }
                let mut start = 0;
                for (k, &len) in sizes.iter().enumerate() {
                    let mut sel: Vec<AxisSlice> =
                        full.iter().map(|&d| AxisSlice { start: 0, step: 1, len: d as usize }).collect();
                    sel[axis] = AxisSlice { start: start as i64, step: 1, len };
                    let out = self.select(s.clone(), &sel)?;
                    self.set(node, k, out);
                    start += len;
                }
            }
            "Concat" => {
                let parts: Vec<Sym> = (0..node.input.len()).map(|i| self.sym(node, i)).collect::<Result<_>>()?;
                let out = self.concat(node, parts)?;
                self.set(node, 0, out);
            }
            "Gather" => {
                let data = self.sym(node, 0)?;
                let indices = self.folded(node, 1, "the indices of Gather")?;
                let full = self.full_shape(&data);
                let axis = norm_axis(attr_i(node, "axis", 0), full.len())
                    .ok_or_else(|| self.err("Gather axis out of range"))?;
                let out = self.gather(data, axis, &indices)?;
                self.set(node, 0, out);
            }
            "Expand" => {
                let s = self.sym(node, 0)?;
                let shape = self.folded(node, 1, "shape")?.ints();
                let out = self.expand(s, &shape)?;
                self.set(node, 0, out);
            }
            "Tile" => {
                let s = self.sym(node, 0)?;
                let repeats = self.folded(node, 1, "repeats")?.ints();
                let out = self.tile(s, &repeats)?;
                self.set(node, 0, out);
            }
            "Pad" => {
                let s = self.sym(node, 0)?;
                let out = self.pad(node, s)?;
                self.set(node, 0, out);
            }
            "ReduceMean" | "ReduceSum" => {
                let s = self.sym(node, 0)?;
                let uses_input = op == "ReduceSum" && self.opset >= 13 || self.opset >= 18;
                let axes = if uses_input { self.opt_ints(node, 1, "axes")? } else { attr_ints(node, "axes") };
                let keep = attr_i(node, "keepdims", 1) != 0;
                let noop = attr_i(node, "noop_with_empty_axes", 0) != 0;
                let out = self.reduce(s, axes, keep, noop, op == "ReduceMean")?;
                self.set(node, 0, out);
            }
            "GlobalAveragePool" => {
                let s = self.sym(node, 0)?;
                let rank = self.rank(&s);
                let out = self.reduce(s, Some((2..rank as i64).collect()), true, false, true)?;
                self.set(node, 0, out);
            }
            "AveragePool" => {
                let s = self.sym(node, 0)?;
                let out = self.average_pool(node, s)?;
                self.set(node, 0, out);
            }
            "Resize" | "Upsample" => {
                let s = self.sym(node, 0)?;
                let out = self.resize(node, s)?;
                self.set(node, 0, out);
            }
            "Softmax" | "LogSoftmax" => {
                let s = self.sym(node, 0)?;
                let default_axis = if self.opset >= 13 { -1 } else { 1 };
                let out = self.softmax(s, attr_i(node, "axis", default_axis))?;
                let out = if op == "LogSoftmax" { self.unary(UnaryFn::Log, out) } else { out };
                self.set(node, 0, out);
            }
            "MatMul" => {
                let (a, b) = (self.sym(node, 0)?, self.sym(node, 1)?);
                let out = self.matmul(a, b, false, false)?;
                self.set(node, 0, out);
            }
            "Gemm" => {
                let (a, b) = (self.sym(node, 0)?, self.sym(node, 1)?);
                let (ta, tb) = (attr_i(node, "transA", 0) != 0, attr_i(node, "transB", 0) != 0);
                let mut out = self.matmul(a, b, ta, tb)?;
                let alpha = attr_f(node, "alpha", 1.0) as f64;
                if alpha != 1.0 {
                    out = self.binary(BinaryOp::Mul, out, Sym::Folded(Folded::scalar(alpha)))?;
                }
                if let Some(c) = self.opt_sym(node, 2)? {
                    let beta = attr_f(node, "beta", 1.0) as f64;
                    let c =
                        if beta != 1.0 { self.binary(BinaryOp::Mul, c, Sym::Folded(Folded::scalar(beta)))? } else { c };
                    out = self.binary(BinaryOp::Add, out, c)?;
                }
                self.set(node, 0, out);
            }
            "Einsum" => {
                let equation = attr_s(node, "equation").ok_or_else(|| self.err("Einsum without an equation"))?;
                let operands: Vec<Sym> = (0..node.input.len()).map(|i| self.sym(node, i)).collect::<Result<_>>()?;
                let out = self.einsum(&equation, operands)?;
                self.set(node, 0, out);
            }
            "Conv" | "ConvTranspose" => {
                let out = self.conv(node, op == "ConvTranspose")?;
                self.set(node, 0, out);
            }
            "GroupNormalization" | "InstanceNormalization" | "LayerNormalization" | "BatchNormalization" => {
                let out = self.normalization(node, op)?;
                self.set(node, 0, out);
            }
            "If" | "Loop" | "Scan" => return Err(self.err(format!("control flow (`{op}`) is not supported"))),
            _ => {
                return Err(
                    self.err(format!("op `{op}` is not supported (docs/networks.md lists the ops scorelens imports)"))
                )
            }
        }
        Ok(())
    }

    fn fold_misc(&self, node: &NodeProto) -> Result<Folded> {
        let op = node.op_type.as_str();
        let a = self.folded(node, 0, "operand")?;
        let unary = |f: fn(f64) -> f64| Folded { shape: a.shape.clone(), data: a.data.iter().map(|&v| f(v)).collect() };
        Ok(match op {
            "Not" => unary(|v| (v == 0.0) as i64 as f64),
            "Floor" => unary(f64::floor),
            "Ceil" => unary(f64::ceil),
            "Round" => unary(|v| v.round_ties_even()),
            "Sign" => unary(|v| {
                if v > 0.0 {
                    1.0
                } else if v < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }),
            "Clip" => {
                let lo = self
                    .opt_sym(node, 1)?
                    .map(|s| if let Sym::Folded(f) = s { f.data[0] } else { f64::NEG_INFINITY })
                    .unwrap_or(f64::NEG_INFINITY);
                let hi = self
                    .opt_sym(node, 2)?
                    .map(|s| if let Sym::Folded(f) = s { f.data[0] } else { f64::INFINITY })
                    .unwrap_or(f64::INFINITY);
                Folded { shape: a.shape.clone(), data: a.data.iter().map(|&v| v.clamp(lo.min(hi), hi)).collect() }
            }
            _ => {
                let b = self.folded(node, 1, "operand")?;
                let f: fn(f64, f64) -> f64 = match op {
                    "Equal" => |x, y| (x == y) as i64 as f64,
                    "Less" => |x, y| (x < y) as i64 as f64,
                    "Greater" => |x, y| (x > y) as i64 as f64,
                    "LessOrEqual" => |x, y| (x <= y) as i64 as f64,
                    "GreaterOrEqual" => |x, y| (x >= y) as i64 as f64,
                    "And" => |x, y| (x != 0.0 && y != 0.0) as i64 as f64,
                    "Or" => |x, y| (x != 0.0 || y != 0.0) as i64 as f64,
                    _ => |x: f64, y: f64| x - y * (x / y).floor(),
                };
                fold_binary(&a, &b, f).ok_or_else(|| self.err("shapes do not broadcast"))?
            }
        })
    }

    // ---- lowering helpers ----

    fn unary(&mut self, f: UnaryFn, s: Sym) -> Sym {
        match s {
            Sym::Folded(mut t) => {
                for v in &mut t.data {
                    *v = crate::reference::graph_ops::unary(f, false, *v);
                }
                Sym::Folded(t)
            }
            Sym::Batched { id, axis } => {
                let shape = self.row_shape(id);
                Sym::Batched { id: self.push(Op::Unary { f, derivative: false }, vec![id], shape), axis }
            }
        }
    }

    /// A constant aligned to a batched operand: right-aligned to the output rank `rank` with the batch axis at
    /// `axis`, that axis (size 1) removed.
    fn aligned_const(&mut self, f: &Folded, rank: usize, axis: usize) -> Result<ValueId> {
        let mut shape = vec![1usize; rank - f.shape.len()];
        shape.extend(&f.shape);
        if shape[axis] != 1 {
            return Err(self.err(format!(
                "a constant of shape {:?} varies along the batch axis (its size there must be 1)",
                f.shape
            )));
        }
        shape.remove(axis);
        Ok(self.constant("const", shape, &f.data))
    }

    fn binary(&mut self, op: BinaryOp, a: Sym, b: Sym) -> Result<Sym> {
        if let (Sym::Folded(fa), Sym::Folded(fb)) = (&a, &b) {
            let out = fold_binary(fa, fb, |x, y| crate::reference::graph_ops::binary(op, x, y))
                .ok_or_else(|| self.err(format!("shapes {:?} and {:?} do not broadcast", fa.shape, fb.shape)))?;
            return Ok(Sym::Folded(out));
        }
        // Scalar constants that have a unary form (Song's σ^(2t), x²).
        if op == BinaryOp::Pow {
            if let (Sym::Batched { .. }, Sym::Folded(p)) = (&a, &b) {
                if p.data.len() == 1 && self.rank(&a) >= p.shape.len() {
                    return Ok(self.unary(UnaryFn::PowConst(p.data[0] as f32), a));
                }
            }
            if let (Sym::Folded(c), Sym::Batched { .. }) = (&a, &b) {
                if c.data.len() == 1 && self.rank(&b) >= c.shape.len() {
                    if c.data[0] <= 0.0 {
                        return Err(self.err(format!("Pow with constant base {} ≤ 0", c.data[0])));
                    }
                    return Ok(self.unary(UnaryFn::ExpBase(c.data[0].ln() as f32), b));
                }
            }
        }
        let (ra, rb) = (self.rank(&a), self.rank(&b));
        let rank = ra.max(rb);
        let batch_axis = |s: &Sym, r: usize| match s {
            Sym::Batched { axis, .. } => Some(axis + rank - r),
            Sym::Folded(_) => None,
        };
        let axis = match (batch_axis(&a, ra), batch_axis(&b, rb)) {
            (Some(p), Some(q)) if p != q => {
                return Err(self.err(format!(
                    "operands' batch axes do not line up (shapes {:?} and {:?})",
                    self.full_shape(&a),
                    self.full_shape(&b)
                )))
            }
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => unreachable!(),
        };
        let mut ids = Vec::new();
        let mut shapes = Vec::new();
        for (s, r) in [(&a, ra), (&b, rb)] {
            match s {
                Sym::Batched { id, .. } => {
                    let mut shape = vec![1usize; rank - r];
                    shape.extend(self.row_shape(*id));
                    ids.push(*id);
                    shapes.push(shape);
                }
                Sym::Folded(f) => {
                    let id = self.aligned_const(f, rank, axis)?;
                    shapes.push(self.row_shape(id));
                    ids.push(id);
                }
            }
        }
        let out_shape = broadcast_shapes(&shapes[0], &shapes[1]).ok_or_else(|| {
            self.err(format!("shapes {:?} and {:?} do not broadcast", self.full_shape(&a), self.full_shape(&b)))
        })?;
        // Batched operands of lower rank are reshaped so both have the output's rank (the kernels broadcast
        // per-row shapes of equal rank).
        for k in 0..2 {
            if self.graph.values[ids[k]].stream != Stream::Const && self.graph.values[ids[k]].shape != shapes[k] {
                ids[k] = self.reshape_value(ids[k], shapes[k].clone());
            }
        }
        let id = self.push(Op::Binary(op), ids, out_shape);
        Ok(Sym::Batched { id, axis })
    }

    fn reshape(&mut self, s: Sym, target: &[i64]) -> Result<Sym> {
        let full = self.full_shape(&s);
        match s {
            Sym::Folded(mut f) => {
                let shape = infer_reshape(&f.shape, target)
                    .ok_or_else(|| self.err(format!("cannot reshape {:?} to {target:?}", f.shape)))?;
                f.shape = shape;
                Ok(Sym::Folded(f))
            }
            Sym::Batched { id, axis } => {
                let per_row = self.row_shape(id);
                let numel: usize = per_row.iter().product();
                let before: i64 = full[..axis].iter().product();
                // Where the batch axis lands: the entry that is -1 or BATCH with the same number of elements
                // before it.
                let mut q = None;
                let mut prefix = 1i64;
                for (i, &d) in target.iter().enumerate() {
                    if (d == -1 || d == BATCH) && prefix == before {
                        q = Some(i);
                        break;
                    }
                    prefix = prefix.saturating_mul(d.max(1));
                }
                let Some(q) = q else {
                    return Err(self.err(format!(
                        "Reshape of {full:?} to {target:?} merges or splits the batch axis (rows must stay separate points)",
                        full = full.iter().map(|&d| if d == BATCH { -1 } else { d }).collect::<Vec<_>>()
                    )));
                };
                let mut rest: Vec<i64> = target.iter().enumerate().filter(|&(i, _)| i != q).map(|(_, &d)| d).collect();
                if rest.iter().any(|&d| d >= BATCH || d < -1) {
                    return Err(self.err(format!("Reshape target {target:?} uses the batch size twice")));
                }
                if let Some(pos) = rest.iter().position(|&d| d == -1) {
                    let known: i64 = rest.iter().filter(|&&d| d != -1).product();
                    if known == 0 || numel as i64 % known != 0 {
                        return Err(self.err(format!("cannot reshape {per_row:?} per row to {target:?}")));
                    }
                    rest[pos] = numel as i64 / known;
                }
                let shape: Vec<usize> = rest.iter().map(|&d| d as usize).collect();
                if shape.iter().product::<usize>() != numel {
                    return Err(self.err(format!("cannot reshape {per_row:?} per row to {target:?}")));
                }
                let id = self.reshape_value(id, shape);
                Ok(Sym::Batched { id, axis: q })
            }
        }
    }

    fn transpose(&mut self, s: Sym, perm: &[usize]) -> Result<Sym> {
        let rank = self.rank(&s);
        let mut seen = vec![false; rank];
        if perm.len() != rank || perm.iter().any(|&p| p >= rank || std::mem::replace(&mut seen[p], true)) {
            return Err(self.err(format!("Transpose perm {perm:?} is not a permutation of {rank} axes")));
        }
        match s {
            Sym::Folded(f) => {
                let (shape, map) = layout::transpose(&f.shape, perm);
                Ok(Sym::Folded(Folded { shape, data: apply_map(&map, &f.data) }))
            }
            Sym::Batched { id, axis } => {
                let q =
                    perm.iter().position(|&p| p == axis).ok_or_else(|| self.err("Transpose perm misses an axis"))?;
                let row_perm: Vec<usize> =
                    perm.iter().filter(|&&p| p != axis).map(|&p| if p > axis { p - 1 } else { p }).collect();
                let shape = self.row_shape(id);
                if row_perm.iter().enumerate().all(|(i, &p)| i == p) {
                    return Ok(Sym::Batched { id, axis: q });
                }
                let (out_shape, map) = layout::transpose(&shape, &row_perm);
                Ok(Sym::Batched { id: self.map(id, map, out_shape), axis: q })
            }
        }
    }

    /// Strided selection along every axis (the batch axis is always selected whole).
    fn select(&mut self, s: Sym, sel: &[AxisSlice]) -> Result<Sym> {
        match s {
            Sym::Folded(f) => {
                let (shape, map) = layout::slice(&f.shape, sel);
                Ok(Sym::Folded(Folded { shape, data: apply_map(&map, &f.data) }))
            }
            Sym::Batched { id, axis } => {
                let row_sel: Vec<AxisSlice> =
                    sel.iter().enumerate().filter(|&(i, _)| i != axis).map(|(_, a)| *a).collect();
                let shape = self.row_shape(id);
                if row_sel.iter().zip(&shape).all(|(a, &d)| a.start == 0 && a.step == 1 && a.len == d) {
                    return Ok(Sym::Batched { id, axis });
                }
                let (out_shape, map) = layout::slice(&shape, &row_sel);
                Ok(Sym::Batched { id: self.map(id, map, out_shape), axis })
            }
        }
    }

    fn concat(&mut self, node: &NodeProto, parts: Vec<Sym>) -> Result<Sym> {
        let rank = self.rank(&parts[0]);
        let axis = norm_axis(attr_i(node, "axis", 0), rank).ok_or_else(|| self.err("Concat axis out of range"))?;
        if parts.iter().all(|p| matches!(p, Sym::Folded(_))) {
            let folded: Vec<Folded> =
                parts.into_iter().map(|p| if let Sym::Folded(f) = p { f } else { unreachable!() }).collect();
            return fold_concat(&folded, axis).ok_or_else(|| self.err("Concat of mismatched shapes"));
        }
        let batch_axis =
            parts.iter().find_map(|p| if let Sym::Batched { axis, .. } = p { Some(*axis) } else { None }).unwrap();
        if axis == batch_axis {
            return Err(self.err("Concat along the batch axis"));
        }
        let row_axis = if axis > batch_axis { axis - 1 } else { axis };
        let mut shapes = Vec::new();
        for p in &parts {
            let mut full = self.full_shape(p);
            if full.len() != rank {
                return Err(self.err("Concat of tensors of different ranks"));
            }
            if let Sym::Batched { axis: a, .. } = p {
                if *a != batch_axis {
                    return Err(self.err("Concat of values whose batch axes differ"));
                }
            } else if full.len() == rank {
                if full[batch_axis] != 1 {
                    return Err(self.err("Concat of a constant that varies along the batch axis"));
                }
                full[batch_axis] = BATCH;
            }
            full.remove(batch_axis);
            shapes.push(full.iter().map(|&d| d as usize).collect::<Vec<usize>>());
        }
        let same = |a: &[usize], b: &[usize]| {
            a.len() == b.len() && a.iter().zip(b).enumerate().all(|(i, (x, y))| i == row_axis || x == y)
        };
        if shapes.iter().any(|s| s.len() != rank - 1 || !same(s, &shapes[0])) {
            return Err(self.err(format!(
                "Concat of mismatched shapes {:?}",
                parts.iter().map(|p| self.full_shape(p)).collect::<Vec<_>>()
            )));
        }
        let mut out_shape = shapes[0].clone();
        out_shape[row_axis] = shapes.iter().map(|s| s[row_axis]).sum();
        let outputs: usize = out_shape.iter().product();
        let out_strides = layout::strides(&out_shape);
        let mut maps = Vec::new();
        let mut inputs = Vec::new();
        let mut constant: Option<Vec<f64>> = None;
        let mut offset = 0;
        for (p, shape) in parts.iter().zip(&shapes) {
            // The part's elements land at its offset along the axis.
            let mut place = Vec::new();
            layout::for_each_coord(shape, |i, c| {
                let mut c = c.to_vec();
                c[row_axis] += offset;
                place.push((c.iter().zip(&out_strides).map(|(a, b)| a * b).sum::<usize>(), i));
            });
            offset += shape[row_axis];
            match p {
                Sym::Batched { id, .. } => {
                    let triples = place.iter().map(|&(o, i)| (o, i, 1.0)).collect();
                    maps.push(Arc::new(SparseMap::from_triples(outputs, shape.iter().product(), triples)));
                    inputs.push(*id);
                }
                Sym::Folded(f) => {
                    let c = constant.get_or_insert_with(|| vec![0.0; outputs]);
                    for &(o, i) in &place {
                        c[o] = f.data[i];
                    }
                }
            }
        }
        let mut id = self.push(Op::Linear(maps), inputs, out_shape.clone());
        if let Some(c) = constant {
            let cid = self.constant("concat", out_shape.clone(), &c);
            id = self.push(Op::Binary(BinaryOp::Add), vec![id, cid], out_shape);
        }
        Ok(Sym::Batched { id, axis: batch_axis })
    }

    fn gather(&mut self, data: Sym, axis: usize, indices: &Folded) -> Result<Sym> {
        let full = self.full_shape(&data);
        if full[axis] == BATCH {
            return Err(self.err("Gather along the batch axis"));
        }
        let dim = full[axis];
        let idx: Vec<usize> = indices
            .ints()
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + dim } else { i };
                if j < 0 || j >= dim {
                    Err(self.err(format!("Gather index {i} out of range for size {dim}")))
                } else {
                    Ok(j as usize)
                }
            })
            .collect::<Result<_>>()?;
        match data {
            Sym::Folded(f) => {
                let mut out: Vec<usize> = f.shape.clone();
                out.splice(axis..axis + 1, indices.shape.iter().copied());
                self.sized("Gather", &out)?;
                let (shape, map) = layout::gather(&f.shape, axis, &idx, &indices.shape);
                Ok(Sym::Folded(Folded { shape, data: apply_map(&map, &f.data) }))
            }
            Sym::Batched { id, axis: b } => {
                let row_axis = if axis > b { axis - 1 } else { axis };
                let new_b = if axis < b { b + indices.shape.len() - 1 } else { b };
                let shape = self.row_shape(id);
                let mut out: Vec<usize> = shape.clone();
                out.splice(row_axis..row_axis + 1, indices.shape.iter().copied());
                self.sized("Gather", &out)?;
                let (out_shape, map) = layout::gather(&shape, row_axis, &idx, &indices.shape);
                Ok(Sym::Batched { id: self.map(id, map, out_shape), axis: new_b })
            }
        }
    }

    fn expand(&mut self, s: Sym, shape: &[i64]) -> Result<Sym> {
        if shape.iter().any(|&d| d < 0 || (d >= BATCH && d != BATCH))
            || shape.iter().filter(|&&d| d == BATCH).count() > 1
        {
            return Err(self.err(format!("Expand to {shape:?}")));
        }
        let full = self.full_shape(&s);
        let rank = full.len().max(shape.len());
        let pad = |v: &[i64]| -> Vec<i64> {
            let mut p = vec![1; rank - v.len()];
            p.extend_from_slice(v);
            p
        };
        let (a, b) = (pad(&full), pad(shape));
        let mut out = Vec::with_capacity(rank);
        for (&x, &y) in a.iter().zip(&b) {
            out.push(if x == y || y == 1 {
                x
            } else if x == 1 {
                y
            } else {
                return Err(self.err(format!("Expand of {full:?} to {shape:?}")));
            });
        }
        let sizes: Vec<usize> = out.iter().map(|&d| if d >= BATCH { 1 } else { d as usize }).collect();
        self.sized("Expand", &sizes)?;
        if let Sym::Batched { axis, .. } = &s {
            if out.iter().position(|&d| d == BATCH) != Some(axis + rank - full.len()) {
                return Err(self.err(format!("Expand of {full:?} to {shape:?} moves the batch axis")));
            }
        }
        match s {
            Sym::Folded(f) => {
                if out.contains(&BATCH) {
                    // Broadcast over the batch later, as a constant of size 1 there.
                    let out: Vec<i64> = out.iter().map(|&d| if d == BATCH { 1 } else { d }).collect();
                    return self.expand(Sym::Folded(f), &out);
                }
                let out_shape: Vec<usize> = out.iter().map(|&d| d as usize).collect();
                let map = crate::graph::linearize::broadcast_map(&f.shape, &out_shape);
                Ok(Sym::Folded(Folded { shape: out_shape, data: apply_map(&map, &f.data) }))
            }
            Sym::Batched { id, axis } => {
                let new_axis = axis + rank - full.len();
                let mut row: Vec<usize> = out.iter().map(|&d| d as usize).collect();
                row.remove(new_axis);
                let mut from = vec![1usize; rank - full.len()];
                from.extend(self.row_shape(id));
                let id = self.reshape_value(id, from.clone());
                if from == row {
                    return Ok(Sym::Batched { id, axis: new_axis });
                }
                let map = crate::graph::linearize::broadcast_map(&from, &row);
                Ok(Sym::Batched { id: self.map(id, map, row), axis: new_axis })
            }
        }
    }

    fn tile(&mut self, s: Sym, repeats: &[i64]) -> Result<Sym> {
        let full = self.full_shape(&s);
        if repeats.len() != full.len() || repeats.iter().any(|&r| r < 1) {
            return Err(self.err(format!("Tile repeats {repeats:?} for rank {}", full.len())));
        }
        let reps: Vec<usize> = repeats.iter().map(|&r| r as usize).collect();
        let sizes: Vec<usize> = full
            .iter()
            .zip(&reps)
            .map(|(&d, &r)| if d >= BATCH { 1 } else { (d as usize).saturating_mul(r) })
            .collect();
        self.sized("Tile", &sizes)?;
        match s {
            Sym::Folded(f) => {
                let (shape, map) = layout::tile(&f.shape, &reps);
                Ok(Sym::Folded(Folded { shape, data: apply_map(&map, &f.data) }))
            }
            Sym::Batched { id, axis } => {
                if reps[axis] != 1 {
                    return Err(self.err("Tile along the batch axis"));
                }
                let mut r = reps.clone();
                r.remove(axis);
                let shape = self.row_shape(id);
                let (out_shape, map) = layout::tile(&shape, &r);
                Ok(Sym::Batched { id: self.map(id, map, out_shape), axis })
            }
        }
    }

    fn pad(&mut self, node: &NodeProto, s: Sym) -> Result<Sym> {
        let mode = attr_s(node, "mode").unwrap_or_else(|| "constant".into());
        if mode != "constant" {
            return Err(self.err(format!("Pad mode {mode:?} is not supported (constant is)")));
        }
        let full = self.full_shape(&s);
        let rank = full.len();
        let (pads, value, axes) = if self.opset < 11 {
            (attr_ints(node, "pads").unwrap_or_default(), attr_f(node, "value", 0.0) as f64, None)
        } else {
            let pads = self.folded(node, 1, "pads")?.ints();
            let value = match self.opt_sym(node, 2)? {
                Some(Sym::Folded(f)) => f.data.first().copied().unwrap_or(0.0),
                Some(_) => return Err(self.err("Pad value must be a constant")),
                None => 0.0,
            };
            (pads, value, self.opt_ints(node, 3, "axes")?)
        };
        let axes: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&x| norm_axis(x, rank).ok_or_else(|| self.err("Pad axis out of range")))
                .collect::<Result<_>>()?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(self.err(format!("Pad has {} pads for {} axes", pads.len(), axes.len())));
        }
        let (mut before, mut after) = (vec![0i64; rank], vec![0i64; rank]);
        for (k, &a) in axes.iter().enumerate() {
            before[a] = pads[k];
            after[a] = pads[k + axes.len()];
        }
        if before.iter().chain(&after).any(|p| p.unsigned_abs() > MAX_ELEMENTS) {
            return Err(self.err(format!("Pad by {pads:?}")));
        }
        let sizes: Vec<usize> = (0..rank)
            .map(|a| if full[a] >= BATCH { 1 } else { (full[a] + before[a] + after[a]).max(0) as usize })
            .collect();
        self.sized("Pad", &sizes)?;
        match s {
            Sym::Folded(f) => {
                let (shape, map) = layout::pad(&f.shape, &before, &after);
                let mut data = apply_map(&map, &f.data);
                if value != 0.0 {
                    let (_, ones) = layout::pad(&f.shape, &before, &after);
                    let inside = apply_map(&ones, &vec![1.0; f.data.len()]);
                    for (d, i) in data.iter_mut().zip(inside) {
                        *d += value * (1.0 - i);
                    }
                }
                Ok(Sym::Folded(Folded { shape, data }))
            }
            Sym::Batched { id, axis } => {
                if before[axis] != 0 || after[axis] != 0 {
                    return Err(self.err("Pad along the batch axis"));
                }
                before.remove(axis);
                after.remove(axis);
                let shape = self.row_shape(id);
                let (out_shape, map) = layout::pad(&shape, &before, &after);
                let inside = apply_map(&map, &vec![1.0; shape.iter().product()]);
                let mut id = self.map(id, map, out_shape.clone());
                if value != 0.0 {
                    let fill: Vec<f64> = inside.iter().map(|i| value * (1.0 - i)).collect();
                    let c = self.constant("pad", out_shape.clone(), &fill);
                    id = self.push(Op::Binary(BinaryOp::Add), vec![id, c], out_shape);
                }
                Ok(Sym::Batched { id, axis })
            }
        }
    }

    fn reduce(&mut self, s: Sym, axes: Option<Vec<i64>>, keep: bool, noop: bool, mean: bool) -> Result<Sym> {
        let full = self.full_shape(&s);
        let rank = full.len();
        let axes: Vec<usize> = match axes {
            Some(a) if !a.is_empty() => a
                .iter()
                .map(|&x| norm_axis(x, rank).ok_or_else(|| self.err("reduction axis out of range")))
                .collect::<Result<_>>()?,
            _ if noop => return Ok(s),
            _ => (0..rank).collect(),
        };
        let Sym::Batched { id, axis } = s else {
            let Sym::Folded(f) = s else { unreachable!() };
            let weights: Vec<_> = (0..rank)
                .map(|a| {
                    if axes.contains(&a) {
                        layout::reduce_axis(f.shape[a], mean)
                    } else {
                        layout::identity_axis(f.shape[a])
                    }
                })
                .collect();
            let (shape, map) = layout::separable(&f.shape, &weights);
            let data = apply_map(&map, &f.data);
            let shape = if keep {
                shape
            } else {
                shape.iter().enumerate().filter(|(a, _)| !axes.contains(a)).map(|(_, &d)| d).collect()
            };
            return Ok(Sym::Folded(Folded { shape, data }));
        };
        if axes.contains(&axis) {
            return Err(self.err("reduction over the batch axis (rows are independent points)"));
        }
        let shape = self.row_shape(id);
        let row_axes: Vec<usize> = axes.iter().map(|&a| if a > axis { a - 1 } else { a }).collect();
        let weights: Vec<_> = (0..shape.len())
            .map(|a| {
                if row_axes.contains(&a) {
                    layout::reduce_axis(shape[a], mean)
                } else {
                    layout::identity_axis(shape[a])
                }
            })
            .collect();
        let (out_shape, map) = layout::separable(&shape, &weights);
        let mut id = self.map(id, map, out_shape.clone());
        let mut new_axis = axis;
        if !keep {
            let squeezed: Vec<usize> =
                out_shape.iter().enumerate().filter(|(a, _)| !row_axes.contains(a)).map(|(_, &d)| d).collect();
            new_axis = axis - axes.iter().filter(|&&a| a < axis).count();
            id = self.reshape_value(id, squeezed);
        }
        Ok(Sym::Batched { id, axis: new_axis })
    }

    /// The batched value of a 2-D spatial op: NCHW with the batch axis first, or an error naming the op.
    fn nchw(&mut self, s: Sym, what: &str) -> Result<(ValueId, [usize; 3], bool)> {
        match s {
            Sym::Batched { id, axis: 0 } => {
                let shape = self.row_shape(id);
                match shape.len() {
                    3 => Ok((id, [shape[0], shape[1], shape[2]], false)),
                    // 1-D: [C, L] as [C, 1, L].
                    2 => {
                        let id = self.reshape_value(id, vec![shape[0], 1, shape[1]]);
                        Ok((id, [shape[0], 1, shape[1]], true))
                    }
                    _ => Err(self.err(format!("{what} of a {}-D input (1-D and 2-D are supported)", shape.len() + 1))),
                }
            }
            Sym::Batched { .. } => Err(self.err(format!("{what} of a value whose batch axis is not first"))),
            Sym::Folded(_) => Err(self.err(format!("{what} of a constant"))),
        }
    }

    fn average_pool(&mut self, node: &NodeProto, s: Sym) -> Result<Sym> {
        let (id, [c, h, w], one_d) = self.nchw(s, "AveragePool")?;
        let kernel = attr_ints(node, "kernel_shape").ok_or_else(|| self.err("AveragePool without kernel_shape"))?;
        let spatial = 2 - one_d as usize;
        let lengths_ok = kernel.len() == spatial
            && kernel.iter().all(|&v| v > 0 && v <= MAX_ELEMENTS as i64)
            && attr_ints(node, "strides").is_none_or(|v| v.len() == spatial)
            && attr_ints(node, "pads").is_none_or(|v| v.len() == 2 * spatial);
        if !lengths_ok {
            return Err(self.err(format!("AveragePool attributes do not fit a {}-D input", spatial)));
        }
        let k: Vec<usize> =
            if one_d { vec![1, kernel[0] as usize] } else { kernel.iter().map(|&v| v as usize).collect() };
        let expand = |v: Option<Vec<i64>>, default: i64, n: usize| -> Vec<i64> {
            let v = v.unwrap_or_else(|| vec![default; n]);
            if one_d {
                std::iter::once(default).chain(v).collect()
            } else {
                v
            }
        };
        let strides = expand(attr_ints(node, "strides"), 1, k.len() - one_d as usize);
        let pads = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 2 * (k.len() - one_d as usize)]);
        let (pb, pa): (Vec<i64>, Vec<i64>) =
            if one_d { (vec![0, pads[0]], vec![0, pads[1]]) } else { (pads[..2].to_vec(), pads[2..].to_vec()) };
        if attr_s(node, "auto_pad").is_some_and(|p| p != "NOTSET")
            || attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&x| x != 1))
        {
            return Err(self.err("AveragePool with auto_pad or dilations is not supported"));
        }
        let ceil = attr_i(node, "ceil_mode", 0) != 0;
        let count_pad = attr_i(node, "count_include_pad", 0) != 0;
        let sizes = [h, w];
        let mut weights = vec![layout::identity_axis(c)];
        let mut out_hw = [0; 2];
        for a in 0..2 {
            if strides[a] <= 0 || pb[a] < 0 || pa[a] < 0 || pb[a].max(pa[a]) > MAX_ELEMENTS as i64 {
                return Err(self.err(format!("AveragePool: strides {strides:?}, pads {pads:?}")));
            }
            let span = sizes[a] as i64 + pb[a] + pa[a] - k[a] as i64;
            let mut out =
                if ceil { (span + strides[a] - 1).div_euclid(strides[a]) + 1 } else { span.div_euclid(strides[a]) + 1 };
            if ceil && (out - 1) * strides[a] >= sizes[a] as i64 + pb[a] {
                out -= 1;
            }
            out_hw[a] = out.max(0) as usize;
            if out_hw[a] as u64 > MAX_ELEMENTS || strides[a] <= 0 || pb[a] < 0 || pa[a] < 0 {
                return Err(
                    self.err(format!("AveragePool: output size {}, strides {strides:?}, pads {pads:?}", out_hw[a]))
                );
            }
            weights.push(layout::pool_axis(
                sizes[a],
                k[a],
                strides[a] as usize,
                pb[a] as usize,
                out_hw[a],
                count_pad,
                pa[a] as usize,
            ));
        }
        self.sized("AveragePool", &[c, out_hw[0], out_hw[1]])?;
        if k.contains(&0) {
            return Err(self.err("AveragePool with an empty kernel"));
        }
        let (shape, map) = layout::separable(&[c, h, w], &weights);
        let mut id = self.map(id, map, shape);
        if one_d {
            id = self.reshape_value(id, vec![c, out_hw[1]]);
        }
        Ok(Sym::Batched { id, axis: 0 })
    }

    fn resize(&mut self, node: &NodeProto, s: Sym) -> Result<Sym> {
        let full = self.full_shape(&s);
        let rank = full.len();
        let mode = attr_s(node, "mode").unwrap_or_else(|| "nearest".into());
        let (scales, sizes) = if node.op_type == "Upsample" {
            (Some(self.folded(node, 1, "scales")?.data), None)
        } else {
            let scales = match self.opt_sym(node, 2)? {
                Some(Sym::Folded(f)) if !f.data.is_empty() => Some(f.data),
                _ => None,
            };
            (scales, self.opt_ints(node, 3, "sizes")?.filter(|s| !s.is_empty()))
        };
        if attr_ints(node, "axes").is_some() {
            return Err(self.err("Resize with axes is not supported"));
        }
        let coordinates = match attr_s(node, "coordinate_transformation_mode").as_deref().unwrap_or("half_pixel") {
            "half_pixel" => ResizeCoordinates::HalfPixel,
            "pytorch_half_pixel" => ResizeCoordinates::PytorchHalfPixel,
            "align_corners" => ResizeCoordinates::AlignCorners,
            "asymmetric" => ResizeCoordinates::Asymmetric,
            other => return Err(self.err(format!("Resize coordinate_transformation_mode {other:?} is not supported"))),
        };
        let nearest = match mode.as_str() {
            "nearest" => Some(match attr_s(node, "nearest_mode").as_deref().unwrap_or("round_prefer_floor") {
                "round_prefer_floor" => NearestMode::RoundPreferFloor,
                "round_prefer_ceil" => NearestMode::RoundPreferCeil,
                "floor" => NearestMode::Floor,
                "ceil" => NearestMode::Ceil,
                other => return Err(self.err(format!("Resize nearest_mode {other:?}"))),
            }),
            "linear" => None,
            other => return Err(self.err(format!("Resize mode {other:?} is not supported (nearest and linear are)"))),
        };
        let Sym::Batched { id, axis } = s else { return Err(self.err("Resize of a constant")) };
        let mut weights = Vec::new();
        let mut out_shape = Vec::new();
        for a in 0..rank {
            if a == axis {
                continue;
            }
            let n = full[a] as usize;
            let (m, scale) = match (&scales, &sizes) {
                (Some(sc), _) if sc.len() == rank => ((n as f64 * sc[a]).floor() as usize, sc[a]),
                (_, Some(sz)) if sz.len() == rank => (sz[a] as usize, sz[a] as f64 / n as f64),
                _ => return Err(self.err("Resize needs scales or sizes for every axis")),
            };
            if a != axis && (scales.as_ref().is_some_and(|s| s.len() == rank && s[axis] != 1.0)) {
                return Err(self.err("Resize along the batch axis"));
            }
            if !(scale.is_finite() && scale > 0.0) || m as u64 > MAX_ELEMENTS {
                return Err(self.err(format!("Resize of axis {a} (size {n}) by {scale} to {m}")));
            }
            if m == n && scale == 1.0 {
                weights.push(layout::identity_axis(n));
            } else {
                weights.push(layout::resize_axis(n, m, scale, coordinates, nearest));
            }
            out_shape.push(m);
        }
        let shape = self.row_shape(id);
        self.sized("Resize", &out_shape)?;
        let (out, map) = layout::separable(&shape, &weights);
        debug_assert_eq!(out, out_shape);
        Ok(Sym::Batched { id: self.map(id, map, out), axis })
    }

    fn softmax(&mut self, s: Sym, axis: i64) -> Result<Sym> {
        let full = self.full_shape(&s);
        let a = norm_axis(axis, full.len()).ok_or_else(|| self.err("Softmax axis out of range"))?;
        let Sym::Batched { id, axis: b } = s else {
            return Err(self.err("Softmax of a constant (fold it before export)"));
        };
        if a == b {
            return Err(self.err("Softmax over the batch axis"));
        }
        let shape = self.row_shape(id);
        let ra = if a > b { a - 1 } else { a };
        let outer = shape[..ra].iter().product();
        let inner = shape[ra + 1..].iter().product();
        let id = self.push(Op::Softmax { outer, n: shape[ra], inner }, vec![id], shape);
        Ok(Sym::Batched { id, axis: b })
    }

    /// numpy matmul semantics; `ta`/`tb` transpose the last two axes of a / b first (Gemm).
    fn matmul(&mut self, a: Sym, b: Sym, ta: bool, tb: bool) -> Result<Sym> {
        if matches!((&a, &b), (Sym::Folded(_), Sym::Folded(_))) {
            return Err(self.err("a product of two constants (fold it before export)"));
        }
        // Batched operands are transposed explicitly: only constants are stored transposed.
        let swap_last = |me: &mut Self, s: Sym| -> Result<Sym> {
            let r = me.rank(&s);
            if r < 2 {
                return Ok(s);
            }
            let mut perm: Vec<usize> = (0..r).collect();
            perm.swap(r - 2, r - 1);
            me.transpose(s, &perm)
        };
        let (a, ta) = if ta && matches!(a, Sym::Batched { .. }) { (swap_last(self, a)?, false) } else { (a, ta) };
        let (b, tb) = if tb && matches!(b, Sym::Batched { .. }) { (swap_last(self, b)?, false) } else { (b, tb) };
        let (fa, fb) = (self.full_shape(&a), self.full_shape(&b));
        if fa.is_empty() || fb.is_empty() {
            return Err(self.err("MatMul of a scalar"));
        }
        let (a_vec, b_vec) = (fa.len() == 1, fb.len() == 1);
        // Each operand as leading axes and a matrix; where its batch axis is.
        #[derive(PartialEq, Clone, Copy)]
        enum At {
            None,
            Lead(usize),
            M,
            N,
        }
        let split =
            |me: &Self, s: &Sym, full: &[i64], vec: bool, is_a: bool, t: bool| -> Result<(Vec<i64>, i64, i64, At)> {
                let e: Vec<i64> = if !vec {
                    full.to_vec()
                } else if is_a {
                    vec![1, full[0]]
                } else {
                    vec![full[0], 1]
                };
                let r = e.len();
                let (rows, cols) = if t { (e[r - 1], e[r - 2]) } else { (e[r - 2], e[r - 1]) };
                let at = match s {
                    Sym::Folded(_) => At::None,
                    Sym::Batched { axis, .. } => {
                        let p = *axis + e.len() - full.len();
                        if p + 2 < r {
                            At::Lead(p)
                        } else if is_a && p == r - 2 {
                            At::M
                        } else if !is_a && p == r - 1 {
                            At::N
                        } else {
                            return Err(me.err(format!("MatMul contracting over the batch axis ({full:?})")));
                        }
                    }
                };
                Ok((e[..r - 2].to_vec(), rows, cols, at))
            };
        let (la, m, k, at_a) = split(self, &a, &fa, a_vec, true, ta)?;
        let (lb, k2, n, at_b) = split(self, &b, &fb, b_vec, false, tb)?;
        if k != k2 {
            return Err(self.err(format!("MatMul of {fa:?} by {fb:?}: inner sizes {k} and {k2} differ")));
        }
        let lead_rank = la.len().max(lb.len());
        let pad =
            |l: &[i64]| -> Vec<i64> { std::iter::repeat_n(1, lead_rank - l.len()).chain(l.iter().copied()).collect() };
        let (la, lb) = (pad(&la), pad(&lb));
        let shift = |at: At, l: usize| match at {
            At::Lead(p) => At::Lead(p + lead_rank - l),
            other => other,
        };
        let (at_a, at_b) = (shift(at_a, la.len()), shift(at_b, lb.len()));
        let mut lead = Vec::with_capacity(lead_rank);
        for (&x, &y) in la.iter().zip(&lb) {
            lead.push(if x == y || y == 1 {
                x
            } else if x == 1 {
                y
            } else {
                return Err(self.err(format!("MatMul leading axes of {fa:?} and {fb:?} do not broadcast")));
            });
        }
        let batch_lead = match (at_a, at_b) {
            (At::Lead(p), At::Lead(q)) if p != q => return Err(self.err("MatMul operands' batch axes do not line up")),
            (At::Lead(p), At::Lead(_) | At::None) | (At::None, At::Lead(p)) => Some(p),
            (At::M, At::None) | (At::None, At::N) => None,
            _ => return Err(self.err(format!("MatMul of {fa:?} by {fb:?}: batch axes in both operands' matrices"))),
        };
        let drop = |l: &[i64]| -> Vec<i64> {
            l.iter().enumerate().filter(|&(i, _)| Some(i) != batch_lead).map(|(_, &d)| d).collect()
        };
        let row_lead = drop(&lead);
        let lead_count: usize = row_lead.iter().map(|&d| d as usize).product();
        let (mu, nu, ku) =
            (if at_a == At::M { 1 } else { m as usize }, if at_b == At::N { 1 } else { n as usize }, k as usize);
        let mut operand = |s: &Sym, l: &[i64], size: usize, t: bool| -> Result<(ValueId, MatrixLayout)> {
            let own = drop(l);
            let lead_stride = if lead_count == 1 || own.iter().all(|&d| d == 1) {
                0
            } else if own == row_lead {
                size
            } else {
                return Err(self.err("MatMul with partly broadcast leading axes is not supported"));
            };
            let id = match s {
                Sym::Batched { id, .. } => *id,
                Sym::Folded(f) => self.constant("matmul", f.shape.clone(), &f.data),
            };
            Ok((id, MatrixLayout { lead_stride, transposed: t }))
        };
        let (ia, lay_a) = operand(&a, &la, mu * ku, ta)?;
        let (ib, lay_b) = operand(&b, &lb, ku * nu, tb)?;
        let mut row: Vec<usize> = row_lead.iter().map(|&d| d as usize).collect();
        if !a_vec && at_a != At::M {
            row.push(mu);
        }
        if !b_vec && at_b != At::N {
            row.push(nu);
        }
        let out_axis = match (batch_lead, at_a, at_b) {
            (Some(p), _, _) => p,
            (None, At::M, _) => lead_rank,
            _ => lead_rank + usize::from(!a_vec),
        };
        self.sized("MatMul output", &row)?;
        let spec = MatMul { m: mu, n: nu, k: ku, lead: lead_count, a: lay_a, b: lay_b };
        let id = self.push(Op::MatMul(spec), vec![ia, ib], row);
        Ok(Sym::Batched { id, axis: out_axis })
    }

    /// Two-operand einsum without ellipses, lowered to transposes, reshapes and a batched MatMul.
    fn einsum(&mut self, equation: &str, operands: Vec<Sym>) -> Result<Sym> {
        let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, out) = eq.split_once("->").ok_or_else(|| self.err(format!("Einsum {equation:?} without `->`")))?;
        let ins: Vec<&str> = lhs.split(',').collect();
        if eq.contains("...") {
            return Err(self.err(format!("Einsum {equation:?} with an ellipsis is not supported")));
        }
        if ins.len() == 1 {
            let sa: Vec<char> = ins[0].chars().collect();
            let so: Vec<char> = out.chars().collect();
            if sa.len() != so.len() {
                return Err(self.err(format!("Einsum {equation:?}: only permutations of one operand are supported")));
            }
            let perm: Vec<usize> = so
                .iter()
                .map(|c| {
                    sa.iter().position(|x| x == c).ok_or_else(|| self.err("Einsum output letter not in the input"))
                })
                .collect::<Result<_>>()?;
            return self.transpose(operands.into_iter().next().unwrap(), &perm);
        }
        if ins.len() != 2 || operands.len() != 2 {
            return Err(self.err(format!("Einsum {equation:?}: one or two operands are supported")));
        }
        let (sa, sb, so): (Vec<char>, Vec<char>, Vec<char>) =
            (ins[0].chars().collect(), ins[1].chars().collect(), out.chars().collect());
        let (fa, fb) = (self.full_shape(&operands[0]), self.full_shape(&operands[1]));
        if sa.len() != fa.len() || sb.len() != fb.len() {
            return Err(self.err(format!(
                "Einsum {equation:?} does not match operand ranks {} and {}",
                fa.len(),
                fb.len()
            )));
        }
        let repeated = |v: &[char]| v.iter().enumerate().any(|(i, c)| v[..i].contains(c));
        if repeated(&sa) || repeated(&sb) || repeated(&so) {
            return Err(
                self.err(format!("Einsum {equation:?}: a letter repeated within one term (traces) is not supported"))
            );
        }
        let in_a = |c: &char| sa.contains(c);
        let in_b = |c: &char| sb.contains(c);
        let in_o = |c: &char| so.contains(c);
        let mut batch = Vec::new();
        let mut contract = Vec::new();
        let mut free_a = Vec::new();
        let mut free_b = Vec::new();
        let mut seen = Vec::new();
        for c in sa.iter().chain(&sb) {
            if seen.contains(c) {
                continue;
            }
            seen.push(*c);
            match (in_a(c), in_b(c), in_o(c)) {
                (true, true, true) => batch.push(*c),
                (true, true, false) => contract.push(*c),
                (true, false, true) => free_a.push(*c),
                (false, true, true) => free_b.push(*c),
                _ => {
                    return Err(self
                        .err(format!("Einsum {equation:?}: letter {c} is summed within one operand (not supported)")))
                }
            }
        }
        let dim = |c: char| -> i64 {
            sa.iter()
                .position(|&x| x == c)
                .map(|i| fa[i])
                .unwrap_or_else(|| fb[sb.iter().position(|&x| x == c).unwrap()])
        };
        let order = |s: &[char], groups: &[&[char]]| -> Vec<usize> {
            groups.iter().flat_map(|g| g.iter().map(|c| s.iter().position(|x| x == c).unwrap())).collect()
        };
        let mut ops = operands.into_iter();
        let (a, b) = (ops.next().unwrap(), ops.next().unwrap());
        let a = self.transpose(a, &order(&sa, &[&batch, &free_a, &contract]))?;
        let b = self.transpose(b, &order(&sb, &[&batch, &contract, &free_b]))?;
        let prod = |g: &[char]| -> i64 { g.iter().map(|&c| dim(c)).product() };
        let batch_dims: Vec<i64> = batch.iter().map(|&c| dim(c)).collect();
        let (m, k, n) = (prod(&free_a), prod(&contract), prod(&free_b));
        let with = |extra: &[i64]| -> Vec<i64> { batch_dims.iter().chain(extra).copied().collect() };
        let a = self.reshape(a, &with(&[m, k]))?;
        let b = self.reshape(b, &with(&[k, n]))?;
        let c = self.matmul(a, b, false, false)?;
        let mut split: Vec<i64> = batch_dims.clone();
        split.extend(free_a.iter().map(|&c| dim(c)));
        split.extend(free_b.iter().map(|&c| dim(c)));
        let c = self.reshape(c, &split)?;
        let have: Vec<char> = batch.iter().chain(&free_a).chain(&free_b).copied().collect();
        let perm: Vec<usize> = so
            .iter()
            .map(|ch| {
                have.iter()
                    .position(|x| x == ch)
                    .ok_or_else(|| self.err(format!("Einsum {equation:?}: output letter {ch}")))
            })
            .collect::<Result<_>>()?;
        self.transpose(c, &perm)
    }

    fn conv(&mut self, node: &NodeProto, transposed: bool) -> Result<Sym> {
        let what = if transposed { "ConvTranspose" } else { "Conv" };
        let x = self.sym(node, 0)?;
        let (x, [c_in, h, w], one_d) = self.nchw(x, what)?;
        let weight = self.folded(node, 1, "the weight")?;
        if weight.shape.len() != if one_d { 3 } else { 4 } {
            return Err(self.err(format!("{what} weight of shape {:?}", weight.shape)));
        }
        let ws = if one_d { vec![weight.shape[0], weight.shape[1], 1, weight.shape[2]] } else { weight.shape.clone() };
        let groups = attr_i(node, "group", 1).max(1) as usize;
        let dims = 2 - one_d as usize;
        let lengths_ok = ["strides", "dilations", "output_padding"]
            .iter()
            .all(|a| attr_ints(node, a).is_none_or(|v| v.len() == dims))
            && attr_ints(node, "pads").is_none_or(|v| v.len() == 2 * dims)
            && attr_ints(node, "output_shape").is_none_or(|v| v.len() == dims || v.len() == dims + 2)
            && ["strides", "dilations", "output_padding", "pads"]
                .iter()
                .all(|a| attr_ints(node, a).is_none_or(|v| v.iter().all(|&x| x.unsigned_abs() <= MAX_ELEMENTS)))
            && ws.iter().all(|&d| d > 0);
        if !lengths_ok {
            return Err(
                self.err(format!("{what} attributes do not fit a {}-D input with weight {:?}", dims, weight.shape))
            );
        }
        let spatial = |name: &str, default: i64| -> Vec<usize> {
            let v = attr_ints(node, name).unwrap_or_else(|| vec![default; 2 - one_d as usize]);
            let v: Vec<usize> = v.iter().map(|&x| x.max(0) as usize).collect();
            if one_d {
                vec![default as usize, v[0]]
            } else {
                v
            }
        };
        let kernel = [ws[2], ws[3]];
        let stride = spatial("strides", 1);
        let dilation = spatial("dilations", 1);
        if stride.contains(&0) || dilation.contains(&0) || groups == 0 || c_in % groups != 0 {
            return Err(self.err(format!(
                "{what}: strides {stride:?}, dilations {dilation:?}, group {groups} for {c_in} channels"
            )));
        }
        let pads = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 2 * (2 - one_d as usize)]);
        let (mut pb, mut pa): (Vec<i64>, Vec<i64>) =
            if one_d { (vec![0, pads[0]], vec![0, pads[1]]) } else { (pads[..2].to_vec(), pads[2..].to_vec()) };
        let auto_pad = attr_s(node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
        let (c_out, expect_in) = if transposed { (ws[1] * groups, ws[0]) } else { (ws[0], ws[1] * groups) };
        if expect_in != c_in || ws[0] % groups != 0 {
            return Err(self.err(format!(
                "{what} weight {:?} does not fit {c_in} input channels in {groups} groups",
                weight.shape
            )));
        }
        let sizes = [h, w];
        let mut out = [0usize; 2];
        let output_padding = spatial("output_padding", 0);
        let output_shape = attr_ints(node, "output_shape");
        for a in 0..2 {
            let eff = (dilation[a] * (kernel[a] - 1) + 1) as i64;
            if transposed {
                let full = stride[a] as i64 * (sizes[a] as i64 - 1) + output_padding[a] as i64 + eff;
                let total = match &output_shape {
                    Some(os) => {
                        let target = if one_d {
                            if a == 0 {
                                1
                            } else {
                                os[os.len() - 1]
                            }
                        } else {
                            os[os.len() - 2 + a]
                        };
                        full - target
                    }
                    None if auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER" => {
                        full - sizes[a] as i64 * stride[a] as i64
                    }
                    None => pb[a] + pa[a],
                };
                if output_shape.is_some() || auto_pad.starts_with("SAME") {
                    let (lo, hi) = if auto_pad == "SAME_LOWER" {
                        (total - total / 2, total / 2)
                    } else {
                        (total / 2, total - total / 2)
                    };
                    pb[a] = lo;
                    pa[a] = hi;
                }
                out[a] = (full - pb[a] - pa[a]).max(0) as usize;
            } else {
                if auto_pad.starts_with("SAME") {
                    let target = (sizes[a] as i64 + stride[a] as i64 - 1) / stride[a] as i64;
                    let total = ((target - 1) * stride[a] as i64 + eff - sizes[a] as i64).max(0);
                    let (lo, hi) = if auto_pad == "SAME_LOWER" {
                        (total - total / 2, total / 2)
                    } else {
                        (total / 2, total - total / 2)
                    };
                    pb[a] = lo;
                    pa[a] = hi;
                } else if auto_pad == "VALID" {
                    pb[a] = 0;
                    pa[a] = 0;
                }
                let span = sizes[a] as i64 + pb[a] + pa[a] - eff;
                if span < 0 {
                    return Err(self.err(format!("{what}: the kernel is larger than the padded input {:?}", sizes)));
                }
                out[a] = (span / stride[a] as i64 + 1) as usize;
            }
            if pb[a] < 0 {
                return Err(self.err(format!("{what}: negative padding")));
            }
        }
        self.sized(what, &[c_out, out[0], out[1]])?;
        if pb.iter().chain(&pa).any(|p| p.unsigned_abs() > MAX_ELEMENTS) || kernel.contains(&0) {
            return Err(self.err(format!("{what}: pads {pb:?}/{pa:?}, kernel {kernel:?}")));
        }
        let spec = Conv2d {
            rows: 0,
            c_in,
            h_in: h,
            w_in: w,
            c_out,
            h_out: out[0],
            w_out: out[1],
            kernel,
            stride: [stride[0], stride[1]],
            pad: [pb[0] as usize, pb[1] as usize],
            dilation: [dilation[0], dilation[1]],
            groups,
            transposed,
        };
        let wid = self.constant("weight", ws.clone(), &weight.data);
        let mut id = self.push(Op::Conv(spec), vec![x, wid], vec![c_out, out[0], out[1]]);
        if let Some(bias) = self.opt_sym(node, 2)? {
            let Sym::Folded(bias) = bias else { return Err(self.err(format!("{what} bias must be a constant"))) };
            if bias.data.len() != c_out {
                return Err(self.err(format!("{what} bias of {} values for {c_out} channels", bias.data.len())));
            }
            let bid = self.constant("bias", vec![c_out, 1, 1], &bias.data);
            id = self.push(Op::Binary(BinaryOp::Add), vec![id, bid], vec![c_out, out[0], out[1]]);
        }
        if one_d {
            id = self.reshape_value(id, vec![c_out, out[1]]);
        }
        Ok(Sym::Batched { id, axis: 0 })
    }

    fn normalization(&mut self, node: &NodeProto, op: &str) -> Result<Sym> {
        let x = self.sym(node, 0)?;
        let eps = attr_f(node, "epsilon", 1e-5);
        let Sym::Batched { id, axis } = x else { return Err(self.err(format!("{op} of a constant"))) };
        let shape = self.row_shape(id);
        let full = self.full_shape(&Sym::Batched { id, axis });
        let const_input = |me: &Self, i: usize, what: &str| -> Result<Option<Folded>> {
            match me.opt_sym(node, i)? {
                None => Ok(None),
                Some(Sym::Folded(f)) => Ok(Some(f)),
                Some(_) => Err(me.err(format!("{op} {what} must be a constant"))),
            }
        };
        let channel_affine = |me: &mut Self,
                              id: ValueId,
                              scale: Option<Vec<f64>>,
                              bias: Option<Vec<f64>>,
                              shape: &[usize]|
         -> Result<ValueId> {
            let c = shape[0];
            if scale.as_ref().is_some_and(|v| v.len() != c) || bias.as_ref().is_some_and(|v| v.len() != c) {
                return Err(me.err(format!("per-channel parameters for {c} channels have another length")));
            }
            let mut cshape = vec![c];
            cshape.extend(std::iter::repeat_n(1, shape.len() - 1));
            let mut id = id;
            if let Some(s) = scale {
                let sid = me.constant("scale", cshape.clone(), &s);
                id = me.push(Op::Binary(BinaryOp::Mul), vec![id, sid], shape.to_vec());
            }
            if let Some(b) = bias {
                let bid = me.constant("bias", cshape.clone(), &b);
                id = me.push(Op::Binary(BinaryOp::Add), vec![id, bid], shape.to_vec());
            }
            Ok(id)
        };
        let id = match op {
            "LayerNormalization" => {
                let a = norm_axis(attr_i(node, "axis", -1), full.len())
                    .ok_or_else(|| self.err("LayerNormalization axis out of range"))?;
                if a <= axis {
                    return Err(self.err("LayerNormalization over the batch axis"));
                }
                let size: usize = shape[a - 1..].iter().product();
                let mut id = self.push(Op::Norm { size, eps }, vec![id], shape.clone());
                let norm_shape = shape[a - 1..].to_vec();
                for (i, bop) in [(1, BinaryOp::Mul), (2, BinaryOp::Add)] {
                    if let Some(p) = const_input(self, i, "scale/bias")? {
                        if p.data.len() != size {
                            return Err(
                                self.err(format!("LayerNormalization parameter of {} values for {size}", p.data.len()))
                            );
                        }
                        let pid = self.constant("affine", norm_shape.clone(), &p.data);
                        id = self.push(Op::Binary(bop), vec![id, pid], shape.clone());
                    }
                }
                id
            }
            _ => {
                if axis != 0 || shape.is_empty() {
                    return Err(self.err(format!("{op} of a value whose batch axis is not first")));
                }
                let c = shape[0];
                let spatial: usize = shape[1..].iter().product();
                let scale = const_input(self, 1, "scale")?.map(|f| f.data);
                let bias = const_input(self, 2, "bias")?.map(|f| f.data);
                match op {
                    "BatchNormalization" => {
                        let mean = const_input(self, 3, "mean")?
                            .ok_or_else(|| self.err("BatchNormalization without mean"))?
                            .data;
                        let var = const_input(self, 4, "var")?
                            .ok_or_else(|| self.err("BatchNormalization without var"))?
                            .data;
                        if attr_i(node, "training_mode", 0) != 0 {
                            return Err(self.err("BatchNormalization in training mode (export in eval mode)"));
                        }
                        let (scale, bias) = (scale.unwrap_or(vec![1.0; c]), bias.unwrap_or(vec![0.0; c]));
                        if [&scale, &bias, &mean, &var].iter().any(|v| v.len() != c) {
                            return Err(self.err(format!("BatchNormalization parameters for {c} channels")));
                        }
                        let a: Vec<f64> = (0..c).map(|i| scale[i] / (var[i] + eps as f64).sqrt()).collect();
                        let b: Vec<f64> = (0..c).map(|i| bias[i] - mean[i] * a[i]).collect();
                        channel_affine(self, id, Some(a), Some(b), &shape)?
                    }
                    "InstanceNormalization" => {
                        let nid = self.push(Op::Norm { size: spatial, eps }, vec![id], shape.clone());
                        channel_affine(self, nid, scale, bias, &shape)?
                    }
                    _ => {
                        let groups = attr_i(node, "num_groups", 0).max(0) as usize;
                        if groups == 0 || c % groups != 0 {
                            return Err(self.err(format!("GroupNormalization of {c} channels in {groups} groups")));
                        }
                        let nid = self.push(Op::Norm { size: c / groups * spatial, eps }, vec![id], shape.clone());
                        // Opset 18 gives scale and bias per group, opset 21 per channel.
                        let per_channel = |v: Option<Vec<f64>>| -> Result<Option<Vec<f64>>> {
                            match v {
                                Some(v) if v.len() == c => Ok(Some(v)),
                                Some(v) if v.len() == groups => Ok(Some((0..c).map(|i| v[i / (c / groups)]).collect())),
                                Some(v) => Err(self.err(format!(
                                    "GroupNormalization parameter of {} values for {c} channels",
                                    v.len()
                                ))),
                                None => Ok(None),
                            }
                        };
                        let (scale, bias) = (per_channel(scale)?, per_channel(bias)?);
                        channel_affine(self, nid, scale, bias, &shape)?
                    }
                }
            }
        };
        Ok(Sym::Batched { id, axis })
    }
}

/// numpy broadcasting of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let get = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| {
            let (x, y) = (get(a, i), get(b, i));
            if x == y || y == 1 {
                Some(x)
            } else if x == 1 {
                Some(y)
            } else {
                None
            }
        })
        .collect()
}

fn fold_binary(a: &Folded, b: &Folded, f: impl Fn(f64, f64) -> f64) -> Option<Folded> {
    let shape = broadcast_shapes(&a.shape, &b.shape)?;
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| f(a.data[broadcast_offset(&shape, &a.shape, i)], b.data[broadcast_offset(&shape, &b.shape, i)]))
        .collect();
    Some(Folded { shape, data })
}

fn fold_concat(parts: &[Folded], axis: usize) -> Option<Sym> {
    let first = &parts.first()?.shape;
    if parts.iter().any(|p| {
        p.shape.len() != first.len() || p.shape.iter().zip(first).enumerate().any(|(i, (a, b))| i != axis && a != b)
    }) {
        return None;
    }
    let mut shape = parts[0].shape.clone();
    shape[axis] = parts.iter().map(|p| p.shape.get(axis).copied().unwrap_or(0)).sum();
    let outer: usize = shape[..axis].iter().product();
    let mut data = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for p in parts {
            let inner: usize = p.shape[axis..].iter().product();
            data.extend_from_slice(p.data.get(o * inner..(o + 1) * inner)?);
        }
    }
    Some(Sym::Folded(Folded { shape, data }))
}

fn infer_reshape(from: &[usize], target: &[i64]) -> Option<Vec<usize>> {
    let n: usize = from.iter().product();
    let known: i64 = target.iter().filter(|&&d| d != -1).product();
    target
        .iter()
        .map(|&d| if d == -1 { (known > 0).then(|| n / known as usize) } else { (d >= 0).then_some(d as usize) })
        .collect::<Option<Vec<_>>>()
        .filter(|s| s.iter().product::<usize>() == n)
}

fn apply_map(map: &SparseMap, x: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; map.outputs];
    crate::reference::graph_ops::record_sparse_map(1, map, x, &mut out, false);
    out
}
