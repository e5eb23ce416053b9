//! The DAG: nodes with string ids and dependency edges, ordered in waves.

use std::collections::HashMap;

use petgraph::Direction;
use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::{Error, Result};
use crate::node::Node;

/// A graph of nodes; an edge `a -> b` means `b` depends on `a`.
pub struct Graph<N> {
    dag: DiGraph<N, ()>,
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

    /// Records that `node` depends on `dependency`.
    pub fn depend(&mut self, node: &str, dependency: &str) -> Result<()> {
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
        self.dag.update_edge(from, to, ());
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

    pub(crate) fn index(&self, id: &str) -> Option<NodeIndex> {
        self.ids.get(id).copied()
    }

    pub(crate) fn node(&self, index: NodeIndex) -> &N {
        &self.dag[index]
    }

    /// The direct dependencies of a node, sorted by id so that keys do not
    /// depend on the order edges were added.
    pub(crate) fn dependencies(&self, index: NodeIndex) -> Vec<NodeIndex> {
        let mut deps: Vec<NodeIndex> = self
            .dag
            .neighbors_directed(index, Direction::Incoming)
            .collect();
        deps.sort_by(|a, b| self.dag[*a].id().cmp(self.dag[*b].id()));
        deps
    }

    /// The nodes grouped so that every node comes in a later wave than all
    /// of its dependencies; the nodes of one wave can run in parallel.
    pub(crate) fn waves(&self) -> Result<Vec<Vec<NodeIndex>>> {
        let order = toposort(&self.dag, None).map_err(|cycle| Error::Cycle {
            node: self.dag[cycle.node_id()].id().to_string(),
        })?;
        let mut depth = vec![0usize; self.dag.node_count()];
        let mut waves: Vec<Vec<NodeIndex>> = Vec::new();
        for index in order {
            let d = self
                .dag
                .neighbors_directed(index, Direction::Incoming)
                .map(|dep| depth[dep.index()] + 1)
                .max()
                .unwrap_or(0);
            depth[index.index()] = d;
            if waves.len() <= d {
                waves.resize_with(d + 1, Vec::new);
            }
            waves[d].push(index);
        }
        Ok(waves)
    }
}
