//! The picture of the engine's node graph (`store graph --nodes`): every
//! node a deploy would run, with its kind and the nodes it reads (its key
//! covers their outputs) or only runs after.

use serde::Serialize;
use strata_engine::{Engine, Node};

use crate::deployer::{DeployOptions, deploy_graph};
use crate::error::Result;
use crate::nodes::NodeKind;
use crate::workspace::Workspace;

/// One node of the picture.
#[derive(Debug, Serialize)]
pub struct PictureNode {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: NodeKind,
    /// The nodes whose outputs are part of its key.
    pub inputs: Vec<String>,
    /// The nodes it runs after without reading them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

/// The node graph of a deploy of the selected stores.
#[derive(Debug, Serialize)]
pub struct NodePicture {
    /// Every node, sorted by id.
    pub nodes: Vec<PictureNode>,
}

/// The picture of the graph `store deploy` would run with `options`.
pub fn node_picture(
    ws: &Workspace,
    engine: &Engine,
    options: &DeployOptions,
) -> Result<NodePicture> {
    let graph = deploy_graph(ws, engine, options)?;
    let mut nodes: Vec<PictureNode> = graph
        .edges()
        .into_iter()
        .map(|(node, inputs, after)| PictureNode {
            id: node.id().to_string(),
            kind: node.kind(),
            inputs: inputs.into_iter().map(str::to_string).collect(),
            after: after.into_iter().map(str::to_string).collect(),
        })
        .collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(NodePicture { nodes })
}

/// A quoted string for dot and Mermaid labels.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

impl NodePicture {
    /// Graphviz dot: an edge from each input (solid) or predecessor
    /// (dashed) to the node.
    pub fn dot(&self) -> String {
        let mut out = String::from("digraph nodes {\n  rankdir=LR;\n  node [shape=box];\n");
        for n in &self.nodes {
            out.push_str(&format!(
                "  {} [label={}];\n",
                quoted(&n.id),
                quoted(&format!("{}\n{}", n.kind, n.id))
            ));
        }
        for n in &self.nodes {
            for i in &n.inputs {
                out.push_str(&format!("  {} -> {};\n", quoted(i), quoted(&n.id)));
            }
            for a in &n.after {
                out.push_str(&format!(
                    "  {} -> {} [style=dashed];\n",
                    quoted(a),
                    quoted(&n.id)
                ));
            }
        }
        out.push_str("}\n");
        out
    }

    /// A Mermaid flowchart (nodes named `n0`, `n1`… with their ids as
    /// labels).
    pub fn mermaid(&self) -> String {
        let index: std::collections::HashMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut out = String::from("flowchart LR\n");
        for (i, n) in self.nodes.iter().enumerate() {
            out.push_str(&format!(
                "  n{i}[{}]\n",
                quoted(&format!("{}: {}", n.kind, n.id))
            ));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            for input in &n.inputs {
                out.push_str(&format!("  n{} --> n{i}\n", index[input.as_str()]));
            }
            for a in &n.after {
                out.push_str(&format!("  n{} -.-> n{i}\n", index[a.as_str()]));
            }
        }
        out
    }
}
