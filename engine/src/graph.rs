//! The DAG: nodes with string ids, and edges that are inputs (part of the
//! dependent's key) or only an order (run after).

use std::collections::HashMap;

use petgraph::Direction;
use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::error::{Error, Result};
use crate::node::Node;

/// What an edge `a -> b` means.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Edge {
    /// `a`'s output is an input of `b`: part of `b`'s key.
    Input,
    /// `b` runs only after `a` succeeded, but does not read it (a barrier:
    /// for example, no output is written until every input is checked).
    Order,
}

/// A graph of nodes; an edge `a -> b` means `b` depends on `a`.
pub struct Graph<N> {
    dag: DiGraph<N, Edge>,
    ids: HashMap<String, NodeIndex>,
}

impl<N: Node> Default for Graph<N> {
    fn default() -> Self {
        Graph {
            dag: DiGraph::new(),
            ids: HashMap::new(),
        }
    }
}

impl<N: Node> Graph<N> {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node; its id must be new.
    pub fn add(&mut self, node: N) -> Result<()> {
        let id = node.id().to_string();
        if self.ids.contains_key(&id) {
            return Err(Error::DuplicateNode { node: id });
        }
        let index = self.dag.add_node(node);
        self.ids.insert(id, index);
        Ok(())
    }

    /// Records that `node` reads the output of `dependency`.
    pub fn depend(&mut self, node: &str, dependency: &str) -> Result<()> {
        self.edge(node, dependency, Edge::Input)
    }

    /// Records that `node` runs only after `before` succeeded, without
    /// reading it.
    pub fn order(&mut self, node: &str, before: &str) -> Result<()> {
        self.edge(node, before, Edge::Order)
    }

    fn edge(&mut self, node: &str, dependency: &str, kind: Edge) -> Result<()> {
        let to = self.index(node).ok_or_else(|| Error::MissingDependency {
            node: node.to_string(),
            dependency: dependency.to_string(),
        })?;
        let from = self
            .index(dependency)
            .ok_or_else(|| Error::MissingDependency {
                node: node.to_string(),
                dependency: dependency.to_string(),
            })?;
        // An input edge is also an order; never weaken one to the other.
        if let Some(existing) = self.dag.find_edge(from, to)
            && self.dag[existing] == Edge::Input
        {
            return Ok(());
        }
        self.dag.update_edge(from, to, kind);
        Ok(())
    }

    /// Whether a node with this id exists.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.dag.node_count()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.dag.node_count() == 0
    }

    /// Every node, each with the ids of its inputs (sorted) and of the
    /// nodes it only runs after: the picture of the graph.
    pub fn edges(&self) -> Vec<(&N, Vec<&str>, Vec<&str>)> {
        self.dag
            .node_indices()
            .map(|index| {
                let inputs: Vec<&str> = self
                    .inputs(index)
                    .into_iter()
                    .map(|i| self.dag[i].id())
                    .collect();
                let mut after: Vec<&str> = self
                    .dag
                    .edges_directed(index, Direction::Incoming)
                    .filter(|e| *e.weight() == Edge::Order)
                    .map(|e| self.dag[e.source()].id())
                    .collect();
                after.sort();
                (&self.dag[index], inputs, after)
            })
            .collect()
    }

    pub(crate) fn index(&self, id: &str) -> Option<NodeIndex> {
        self.ids.get(id).copied()
    }

    pub(crate) fn node(&self, index: NodeIndex) -> &N {
        &self.dag[index]
    }

    /// The inputs of a node, sorted by id so that keys do not depend on the
    /// order edges were added.
    pub(crate) fn inputs(&self, index: NodeIndex) -> Vec<NodeIndex> {
        let mut deps: Vec<NodeIndex> = self
            .dag
            .edges_directed(index, Direction::Incoming)
            .filter(|e| *e.weight() == Edge::Input)
            .map(|e| e.source())
            .collect();
        deps.sort_by(|a, b| self.dag[*a].id().cmp(self.dag[*b].id()));
        deps
    }

    /// Every node `index` waits for (inputs and orders).
    pub(crate) fn predecessors(&self, index: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.dag.neighbors_directed(index, Direction::Incoming)
    }

    /// Every node waiting for `index`.
    pub(crate) fn successors(&self, index: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.dag.neighbors_directed(index, Direction::Outgoing)
    }

    /// Fails when the graph has a cycle.
    pub(crate) fn check_acyclic(&self) -> Result<()> {
        toposort(&self.dag, None)
            .map(|_| ())
            .map_err(|cycle| Error::Cycle {
                node: self.dag[cycle.node_id()].id().to_string(),
            })
    }
}
