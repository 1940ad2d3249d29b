//! Who writes and who reads each value of a node list: what every fusion pass (crate::graph::fuse,
//! crate::graph::attention) asks before it takes a value into a fused chain.

use std::collections::{HashMap, HashSet};

use crate::graph::ir::{Graph, NodeId, ValueId};

/// The producer and readers of each value within a node list, and which values are read after it.
pub struct Uses<'a> {
    producer: HashMap<ValueId, NodeId>,
    readers: HashMap<ValueId, Vec<NodeId>>,
    /// Values read after the list.
    kept: &'a HashSet<ValueId>,
    /// The graph's output (read after every list).
    output: ValueId,
}

impl<'a> Uses<'a> {
    pub fn of(g: &Graph, nodes: &[NodeId], kept: &'a HashSet<ValueId>) -> Self {
        let producer = nodes.iter().map(|&n| (g.nodes[n].output, n)).collect();
        let mut readers: HashMap<ValueId, Vec<NodeId>> = HashMap::new();
        for &n in nodes {
            for &i in &g.nodes[n].inputs {
                readers.entry(i).or_default().push(n);
            }
        }
        Uses { producer, readers, kept, output: g.output }
    }

    /// The node of the list that writes v.
    pub fn producer(&self, v: ValueId) -> Option<NodeId> {
        self.producer.get(&v).copied()
    }

    /// The nodes of the list that read v, in list order.
    pub fn readers(&self, v: ValueId) -> &[NodeId] {
        self.readers.get(&v).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The one node of the list reading v (once), when v is not read after the list: v may be fused away into it.
    pub fn only(&self, v: ValueId) -> Option<NodeId> {
        match self.readers(v) {
            &[n] if !self.kept.contains(&v) && v != self.output => Some(n),
            _ => None,
        }
    }
}
