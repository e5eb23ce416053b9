//! Property: after any sequence of edits (files added, changed and deleted
//! at any layer, overrides and whole stores added and removed), an
//! incremental compose gives exactly what a fresh compose into an empty
//! `.out` gives, and what the independent oracle says.

use std::path::Path;

use proptest::prelude::*;
use strata_engine::Engine;
use strata_rules::Workspace;

use crate::util::{Repo, assert_trees_equal, oracle, tree};

const APPS: &[&str] = &["web", "api"];
const PATHS: &[&str] = &["a.ts", "src/b.ts", "src/c/d.ts", "e/f.ts", ".env.example"];
/// Store folders: the fixed ones, then two that come and go.
const STORES: &[(&str, &str)] = &[
    ("brand", "apps/stores/brand"),
    ("us", "apps/stores/brand/stores/us"),
    ("eu", "apps/stores/brand/stores/eu"),
    ("solo", "apps/stores/solo"),
    ("extra", "apps/stores/brand/stores/us/stores/extra"),
    ("top", "apps/stores/top"),
];

#[derive(Clone, Debug)]
enum Edit {
    /// Write a file in a base app (`layer` None) or a store's override folder.
    Write {
        layer: Option<usize>,
        app: usize,
        path: usize,
        content: u8,
    },
    /// Delete it (if it exists).
    Delete {
        layer: Option<usize>,
        app: usize,
        path: usize,
    },
    /// Toggle a dynamic store: add its folder and config entry, or remove both.
    ToggleStore { store: usize },
    /// Flip a base file's execute bit.
    Chmod { app: usize, path: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    let layer = prop::option::weighted(0.7, 0..STORES.len());
    prop_oneof![
        4 => (layer.clone(), 0..APPS.len(), 0..PATHS.len(), 0u8..4)
            .prop_map(|(layer, app, path, content)| Edit::Write { layer, app, path, content }),
        2 => (layer, 0..APPS.len(), 0..PATHS.len())
            .prop_map(|(layer, app, path)| Edit::Delete { layer, app, path }),
        1 => (4usize..6).prop_map(|store| Edit::ToggleStore { store }),
        1 => (0..APPS.len(), 0..PATHS.len()).prop_map(|(app, path)| Edit::Chmod { app, path }),
    ]
}

fn deployable(root: &Path) -> Vec<&'static str> {
    let mut ids = vec!["us", "eu", "solo"];
    for (id, dir) in &STORES[4..] {
        if root.join(dir).exists() {
            ids.push(id);
        }
    }
    ids
}

fn apply(repo: &Repo, edit: &Edit) {
    let dir = |layer: Option<usize>, app: usize| match layer {
        None => format!("apps/{}", APPS[app]),
        Some(s) => format!("{}/{}", STORES[s].1, APPS[app]),
    };
    match *edit {
        Edit::Write {
            layer,
            app,
            path,
            content,
        } => {
            // A dynamic store's folder only exists while the store does.
            if let Some(s) = layer
                && s >= 4
                && !repo.path().join(STORES[s].1).exists()
            {
                return;
            }
            repo.write(
                &format!("{}/{}", dir(layer, app), PATHS[path]),
                &format!("v{content}\n"),
            );
        }
        Edit::Delete { layer, app, path } => {
            let p = repo.path().join(dir(layer, app)).join(PATHS[path]);
            let _ = std::fs::remove_file(p);
        }
        Edit::ToggleStore { store } => {
            let folder = repo.path().join(STORES[store].1);
            if folder.exists() {
                std::fs::remove_dir_all(folder).unwrap();
            } else {
                repo.write(&format!("{}/web/a.ts", STORES[store].1), "store's own\n");
            }
            repo.config(&deployable(repo.path()));
        }
        Edit::Chmod { app, path } => {
            use std::os::unix::fs::PermissionsExt;
            let p = repo.path().join(dir(None, app)).join(PATHS[path]);
            if let Ok(meta) = std::fs::metadata(&p) {
                let mode = meta.permissions().mode() ^ 0o111;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
    }
}

fn base_repo() -> Repo {
    let repo = Repo::empty();
    for app in APPS {
        repo.write(
            &format!("apps/{app}/package.json"),
            &format!("{{\"name\": \"{app}\"}}\n"),
        );
        for path in PATHS {
            repo.write(&format!("apps/{app}/{path}"), "base\n");
        }
    }
    for (_, dir) in &STORES[..4] {
        std::fs::create_dir_all(repo.path().join(dir)).unwrap();
    }
    repo.config(&deployable(repo.path()));
    repo
}

fn compose(root: &Path, engine: &Engine) {
    let ws = Workspace::load(root).unwrap();
    strata_rules::compose(&ws, engine, &[], &|_| {}).unwrap();
}

/// A copy of the monorepo's inputs (not `.out` nor `.strata`) in a new dir.
fn fresh_copy(repo: &Repo) -> Repo {
    let copy = Repo::empty();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(repo.path().join("apps"))
        .arg(repo.path().join("alokai.config.json"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    copy
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn incremental_compose_equals_fresh_compose(edits in prop::collection::vec(edit(), 1..14)) {
        let repo = base_repo();
        let engine = Engine::open(&repo.path().join(".strata/db")).unwrap();
        compose(repo.path(), &engine);
        for (i, e) in edits.iter().enumerate() {
            apply(&repo, e);
            // Compose after some edits, not all, so that edits pile up.
            if i % 2 == 1 || i + 1 == edits.len() {
                compose(repo.path(), &engine);
                assert_trees_equal(&repo.out_tree(), &oracle(repo.path()));
            }
        }
        let copy = fresh_copy(&repo);
        let fresh_engine = Engine::open(&copy.path().join(".strata/db")).unwrap();
        compose(copy.path(), &fresh_engine);
        assert_trees_equal(&repo.out_tree(), &tree(&copy.path().join(".out")));
    }
}
