//! `store graph`: the store tree (deployable and template stores) with the
//! base apps, as Graphviz dot, Mermaid or JSON.

use serde::Serialize;

use crate::workspace::Workspace;

/// The tree as data.
#[derive(Debug, Serialize)]
pub struct TreeView {
    /// The base apps.
    pub base_apps: Vec<String>,
    /// Every store, parents before children.
    pub stores: Vec<TreeStore>,
}

/// One store of the tree.
#[derive(Debug, Serialize)]
pub struct TreeStore {
    /// Its id.
    pub id: String,
    /// Its folder.
    pub dir: String,
    /// Its parent store.
    pub parent: Option<String>,
    /// `deployable` or `template`.
    pub kind: &'static str,
}

/// The store tree of `ws`.
pub fn tree(ws: &Workspace) -> TreeView {
    TreeView {
        base_apps: ws.base_apps.clone(),
        stores: ws
            .stores()
            .iter()
            .map(|s| TreeStore {
                id: s.id.clone(),
                dir: s.dir.clone(),
                parent: s.parent.clone(),
                kind: if s.deployable {
                    "deployable"
                } else {
                    "template"
                },
            })
            .collect(),
    }
}

impl TreeView {
    /// Graphviz dot: base apps as boxes, template stores dashed.
    pub fn dot(&self) -> String {
        let mut out =
            String::from("digraph stores {\n  rankdir=LR;\n  node [fontname=\"sans-serif\"];\n");
        out.push_str("  subgraph cluster_base {\n    label=\"base apps\";\n");
        for app in &self.base_apps {
            out.push_str(&format!("    {:?} [shape=box];\n", format!("app:{app}")));
        }
        out.push_str("  }\n");
        for s in &self.stores {
            let style = if s.kind == "template" {
                "dashed"
            } else {
                "solid"
            };
            out.push_str(&format!(
                "  {:?} [label={:?}, style={style}];\n",
                s.id,
                format!("{}\n{}", s.id, s.kind)
            ));
        }
        for s in &self.stores {
            match &s.parent {
                Some(p) => out.push_str(&format!("  {p:?} -> {:?};\n", s.id)),
                None => {
                    for app in &self.base_apps {
                        out.push_str(&format!("  {:?} -> {:?};\n", format!("app:{app}"), s.id));
                    }
                }
            }
        }
        out.push_str("}\n");
        out
    }

    /// A Mermaid flowchart.
    pub fn mermaid(&self) -> String {
        let node = |s: &str| s.replace(['-', '.'], "_");
        let mut out = String::from("flowchart LR\n");
        for app in &self.base_apps {
            out.push_str(&format!("  app_{}[\"{app}\"]\n", node(app)));
        }
        for s in &self.stores {
            let shape = if s.kind == "template" {
                format!("([\"{} (template)\"])", s.id)
            } else {
                format!("[\"{}\"]", s.id)
            };
            out.push_str(&format!("  store_{}{shape}\n", node(&s.id)));
        }
        for s in &self.stores {
            match &s.parent {
                Some(p) => {
                    out.push_str(&format!("  store_{} --> store_{}\n", node(p), node(&s.id)))
                }
                None => {
                    for app in &self.base_apps {
                        out.push_str(&format!("  app_{} --> store_{}\n", node(app), node(&s.id)));
                    }
                }
            }
        }
        out
    }
}
