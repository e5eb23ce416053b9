//! Merkle trees of REAPI `Directory` messages: built from a list of files
//! (an action's input root, an output folder's `Tree`), and read back into
//! one. Names are checked both ways: no `/`, `.`, `..`, empty or NUL names,
//! no name used twice in one folder.

use std::collections::{BTreeMap, HashMap};

use prost::Message as _;

use super::{Digest, digest_of, message_digest, re};

/// A file or symlink of a tree, by its path relative to the tree's top.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A regular file.
    File {
        /// Its content's digest.
        digest: Digest,
        /// Whether it is executable.
        executable: bool,
    },
    /// A symbolic link.
    Symlink {
        /// Its target, as written.
        target: String,
    },
}

/// A tree of folders built from entries: the root folder's digest, and every
/// folder's message (the root's first), each with its digest.
#[derive(Clone, Debug)]
pub struct Built {
    /// The root folder's digest.
    pub root: Digest,
    /// Every distinct folder, the root first.
    pub directories: Vec<(Digest, re::Directory)>,
}

impl Built {
    /// The folders' encodings, as blobs to upload.
    pub fn blobs(&self) -> Vec<(Digest, Vec<u8>)> {
        self.directories
            .iter()
            .map(|(d, m)| (d.clone(), m.encode_to_vec()))
            .collect()
    }

    /// The REAPI `Tree` of these folders (root, then its descendants).
    pub fn tree(&self) -> re::Tree {
        let mut directories = self.directories.iter().map(|(_, m)| m.clone());
        re::Tree {
            root: directories.next(),
            children: directories.collect(),
        }
    }
}

#[derive(Default)]
struct Folder {
    files: BTreeMap<String, (Digest, bool)>,
    links: BTreeMap<String, String>,
    folders: BTreeMap<String, Folder>,
    /// Folders built before, by digest.
    mounted: BTreeMap<String, Digest>,
}

/// Whether `name` may name an entry of a folder.
fn good_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Builds the tree of `entries` (paths relative to its top, `/`-separated).
/// A path whose parts are not names, or used both as a folder and not, is
/// an error naming it.
pub fn build<'a>(entries: impl IntoIterator<Item = (&'a str, &'a Entry)>) -> Result<Built, String> {
    build_with(entries, &[])
}

/// Builds the tree of `entries` with folders built before placed at the
/// given paths (by digest: their messages are not in the result).
pub fn build_with<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a Entry)>,
    mounts: &[(&str, &Digest)],
) -> Result<Built, String> {
    let mut top = Folder::default();
    for (i, (a, _)) in mounts.iter().enumerate() {
        for (b, _) in &mounts[i + 1..] {
            let inside = |x: &str, y: &str| x == y || x.starts_with(&format!("{y}/"));
            if inside(a, b) || inside(b, a) {
                return Err(format!("{a} and {b} are mounted one in the other"));
            }
        }
    }
    for (path, digest) in mounts {
        let parts: Vec<&str> = path.split('/').collect();
        if parts.iter().any(|p| !good_name(p)) {
            return Err(format!("{path:?} is not a relative path of names"));
        }
        let (name, folders) = parts.split_last().expect("split gives one part");
        let mut at = &mut top;
        for part in folders {
            at = at.folders.entry((*part).to_string()).or_default();
        }
        at.mounted.insert((*name).to_string(), (*digest).clone());
    }
    for (path, entry) in entries {
        let parts: Vec<&str> = path.split('/').collect();
        if parts.iter().any(|p| !good_name(p)) {
            return Err(format!("{path:?} is not a relative path of names"));
        }
        let (name, folders) = parts.split_last().expect("split gives one part");
        let mut at = &mut top;
        for (i, part) in folders.iter().enumerate() {
            if at.files.contains_key(*part)
                || at.links.contains_key(*part)
                || at.mounted.contains_key(*part)
            {
                return Err(format!(
                    "{} is both a file and a folder",
                    parts[..=i].join("/")
                ));
            }
            at = at.folders.entry((*part).to_string()).or_default();
        }
        if at.folders.contains_key(*name)
            || at.files.contains_key(*name)
            || at.links.contains_key(*name)
            || at.mounted.contains_key(*name)
        {
            return Err(format!("{path} is listed twice, or as a file and a folder"));
        }
        match entry {
            Entry::File { digest, executable } => {
                at.files
                    .insert((*name).to_string(), (digest.clone(), *executable));
            }
            Entry::Symlink { target } => {
                at.links.insert((*name).to_string(), target.clone());
            }
        }
    }
    let mut directories = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let (root, message) = encode(top, &mut directories, &mut seen);
    directories.insert(0, (root.clone(), message));
    // The root may also appear among the descendants (an empty folder in
    // an empty tree); keep it once.
    let mut once = std::collections::HashSet::new();
    directories.retain(|(d, _)| once.insert(d.hash.clone()));
    Ok(Built { root, directories })
}

fn encode(
    folder: Folder,
    out: &mut Vec<(Digest, re::Directory)>,
    seen: &mut std::collections::HashSet<String>,
) -> (Digest, re::Directory) {
    let mut message = re::Directory::default();
    for (name, (digest, executable)) in folder.files {
        message.files.push(re::FileNode {
            name,
            digest: Some(digest),
            is_executable: executable,
            node_properties: None,
        });
    }
    for (name, target) in folder.links {
        message.symlinks.push(re::SymlinkNode {
            name,
            target,
            node_properties: None,
        });
    }
    for (name, child) in folder.folders {
        let (digest, child_message) = encode(child, out, seen);
        if seen.insert(digest.hash.clone()) {
            out.push((digest.clone(), child_message));
        }
        message.directories.push(re::DirectoryNode {
            name,
            digest: Some(digest),
        });
    }
    for (name, digest) in folder.mounted {
        message.directories.push(re::DirectoryNode {
            name,
            digest: Some(digest),
        });
    }
    // By name, as REAPI requires.
    message.directories.sort_by(|a, b| a.name.cmp(&b.name));
    let (digest, _) = message_digest(&message);
    (digest, message)
}

/// The most entries a tree read back may hold (folders shared by digest
/// could otherwise expand without bound).
const MOST_ENTRIES: usize = 10_000_000;

/// The entries of the tree whose root folder is `root`, its other folders
/// found by digest in `folders`; each path prefixed with `prefix/` (none
/// when empty).
pub fn entries(
    prefix: &str,
    root: &re::Directory,
    folders: &HashMap<String, re::Directory>,
    out: &mut BTreeMap<String, Entry>,
) -> Result<(), String> {
    walk(prefix, root, folders, out, 0)
}

fn walk(
    prefix: &str,
    folder: &re::Directory,
    folders: &HashMap<String, re::Directory>,
    out: &mut BTreeMap<String, Entry>,
    depth: usize,
) -> Result<(), String> {
    if depth > 256 {
        return Err(format!("{prefix}: folders nested too deep"));
    }
    let join = |name: &str| -> Result<String, String> {
        if !good_name(name) {
            return Err(format!("{prefix}: {name:?} is not a name"));
        }
        Ok(if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        })
    };
    let mut add = |path: String, entry: Entry| -> Result<(), String> {
        if out.len() >= MOST_ENTRIES {
            return Err(format!("more than {MOST_ENTRIES} entries"));
        }
        if out.insert(path.clone(), entry).is_some() {
            return Err(format!("{path} is listed twice"));
        }
        Ok(())
    };
    for file in &folder.files {
        let digest = file
            .digest
            .clone()
            .ok_or_else(|| format!("{prefix}/{}: a file without a digest", file.name))?;
        add(
            join(&file.name)?,
            Entry::File {
                digest,
                executable: file.is_executable,
            },
        )?;
    }
    for link in &folder.symlinks {
        add(
            join(&link.name)?,
            Entry::Symlink {
                target: link.target.clone(),
            },
        )?;
    }
    for child in &folder.directories {
        let path = join(&child.name)?;
        let digest = child
            .digest
            .as_ref()
            .ok_or_else(|| format!("{path}: a folder without a digest"))?;
        let message = folders
            .get(&digest.hash)
            .ok_or_else(|| format!("{path}: folder {} is not in the tree", digest.hash))?;
        walk(&path, message, folders, out, depth + 1)?;
    }
    Ok(())
}

/// The folders of a `Tree` message, by digest (each digest computed here,
/// so a folder is found only under its own content).
pub fn tree_folders(tree: &re::Tree) -> HashMap<String, re::Directory> {
    tree.children
        .iter()
        .map(|d| (digest_of(&d.encode_to_vec()).hash, d.clone()))
        .collect()
}

/// An action result's outputs, as REAPI writes them: top-level files in
/// `output_files`, top-level symlinks in `output_symlinks`, each top-level
/// folder an `output_directories` entry whose `Tree` is one of the returned
/// blobs.
pub struct Outputs {
    /// Top-level files.
    pub files: Vec<re::OutputFile>,
    /// Top-level symlinks.
    pub symlinks: Vec<re::OutputSymlink>,
    /// Top-level folders.
    pub directories: Vec<re::OutputDirectory>,
    /// The `Tree` messages the folders name, encoded.
    pub trees: Vec<(Digest, Vec<u8>)>,
}

/// Splits `entries` into an action result's outputs.
pub fn outputs(entries: &BTreeMap<String, Entry>) -> Result<Outputs, String> {
    let mut files = Vec::new();
    let mut symlinks = Vec::new();
    let mut groups: BTreeMap<&str, Vec<(&str, &Entry)>> = BTreeMap::new();
    for (path, entry) in entries {
        match path.split_once('/') {
            Some((top, rest)) => groups.entry(top).or_default().push((rest, entry)),
            None => match entry {
                Entry::File { digest, executable } => files.push(re::OutputFile {
                    path: path.clone(),
                    digest: Some(digest.clone()),
                    is_executable: *executable,
                    contents: Vec::new(),
                    node_properties: None,
                }),
                Entry::Symlink { target } => symlinks.push(re::OutputSymlink {
                    path: path.clone(),
                    target: target.clone(),
                    node_properties: None,
                }),
            },
        }
    }
    let mut directories = Vec::new();
    let mut trees = Vec::new();
    for (top, inner) in groups {
        if entries.contains_key(top) {
            return Err(format!("{top} is both a file and a folder"));
        }
        let built = build(inner).map_err(|e| format!("{top}/{e}"))?;
        let (digest, bytes) = message_digest(&built.tree());
        directories.push(re::OutputDirectory {
            path: top.to_string(),
            tree_digest: Some(digest.clone()),
            is_topologically_sorted: false,
            root_directory_digest: Some(built.root.clone()),
        });
        trees.push((digest, bytes));
    }
    Ok(Outputs {
        files,
        symlinks,
        directories,
        trees,
    })
}

/// The entries of an action result, its folders' `Tree` messages read
/// through `tree` (by digest). Paths are relative, `/`-separated, checked.
#[allow(deprecated)] // servers before REAPI v2.1 write the older lists
pub fn result_entries(
    result: &re::ActionResult,
    mut tree: impl FnMut(&Digest) -> Result<re::Tree, String>,
) -> Result<BTreeMap<String, Entry>, String> {
    let mut out = BTreeMap::new();
    let check = |path: &str| -> Result<(), String> {
        if path.split('/').any(|p| !good_name(p)) {
            return Err(format!("{path:?} is not a relative path of names"));
        }
        Ok(())
    };
    for file in &result.output_files {
        check(&file.path)?;
        let digest = file
            .digest
            .clone()
            .ok_or_else(|| format!("{}: a file without a digest", file.path))?;
        if out
            .insert(
                file.path.clone(),
                Entry::File {
                    digest,
                    executable: file.is_executable,
                },
            )
            .is_some()
        {
            return Err(format!("{} is listed twice", file.path));
        }
    }
    let links = result
        .output_symlinks
        .iter()
        .chain(&result.output_file_symlinks)
        .chain(&result.output_directory_symlinks);
    for link in links {
        check(&link.path)?;
        let entry = Entry::Symlink {
            target: link.target.clone(),
        };
        // The deprecated lists repeat what `output_symlinks` says.
        if let Some(before) = out.insert(link.path.clone(), entry.clone())
            && before != entry
        {
            return Err(format!("{} is listed twice", link.path));
        }
    }
    for folder in &result.output_directories {
        let digest = folder
            .tree_digest
            .as_ref()
            .ok_or_else(|| format!("{}: a folder without a tree", folder.path))?;
        let tree = tree(digest)?;
        let root = tree
            .root
            .as_ref()
            .ok_or_else(|| format!("{}: a tree without a root", folder.path))?;
        if !folder.path.is_empty() {
            check(&folder.path)?;
        }
        let mut inner = BTreeMap::new();
        entries(&folder.path, root, &tree_folders(&tree), &mut inner)?;
        for (path, entry) in inner {
            if out.insert(path.clone(), entry).is_some() {
                return Err(format!("{path} is listed twice"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str, executable: bool) -> Entry {
        Entry::File {
            digest: digest_of(text.as_bytes()),
            executable,
        }
    }

    #[test]
    fn outputs_read_back_as_they_were_written() {
        let mut entries = BTreeMap::new();
        entries.insert("top.txt".to_string(), file("a", false));
        entries.insert(
            "link".to_string(),
            Entry::Symlink {
                target: "top.txt".into(),
            },
        );
        entries.insert(".next/server/page.js".to_string(), file("b", false));
        entries.insert(".next/server/app/x.js".to_string(), file("c", true));
        entries.insert(".next/cache/same/y".to_string(), file("d", false));
        entries.insert(".next/other/same/y".to_string(), file("d", false));
        entries.insert(
            ".next/l".to_string(),
            Entry::Symlink {
                target: "server".into(),
            },
        );
        entries.insert("lib/index.js".to_string(), file("e", false));
        let out = outputs(&entries).unwrap();
        assert_eq!(out.files.len(), 1);
        assert_eq!(out.symlinks.len(), 1);
        assert_eq!(
            out.directories
                .iter()
                .map(|d| d.path.as_str())
                .collect::<Vec<_>>(),
            [".next", "lib"]
        );
        let trees: HashMap<String, Vec<u8>> = out
            .trees
            .iter()
            .map(|(d, b)| (d.hash.clone(), b.clone()))
            .collect();
        let result = re::ActionResult {
            output_files: out.files,
            output_symlinks: out.symlinks,
            output_directories: out.directories,
            ..Default::default()
        };
        let back = result_entries(&result, |d| {
            let bytes = trees.get(&d.hash).ok_or("missing")?;
            assert_eq!(digest_of(bytes), *d);
            re::Tree::decode(bytes.as_slice()).map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(back, entries);
    }

    #[test]
    fn equal_trees_have_equal_digests_whatever_the_order() {
        let a = [
            ("x/1", file("1", false)),
            ("x/2", file("2", false)),
            ("y", file("3", true)),
        ];
        let mut b = a.clone();
        b.reverse();
        let built_a = build(a.iter().map(|(p, e)| (*p, e))).unwrap();
        let built_b = build(b.iter().map(|(p, e)| (*p, e))).unwrap();
        assert_eq!(built_a.root, built_b.root);
        let c = [
            ("x/1", file("1", false)),
            ("x/2", file("2", true)),
            ("y", file("3", true)),
        ];
        assert_ne!(
            build(c.iter().map(|(p, e)| (*p, e))).unwrap().root,
            built_a.root
        );
    }

    #[test]
    fn a_mounted_folder_is_the_folder_built_in_place() {
        let whole = [
            ("a/x", file("1", false)),
            ("m/deep/y", file("2", false)),
            ("z", file("3", false)),
        ];
        let inner = [("deep/y", file("2", false))];
        let mounted = build(inner.iter().map(|(p, e)| (*p, e))).unwrap();
        let rest = [("a/x", file("1", false)), ("z", file("3", false))];
        let with = build_with(rest.iter().map(|(p, e)| (*p, e)), &[("m", &mounted.root)]).unwrap();
        let built = build(whole.iter().map(|(p, e)| (*p, e))).unwrap();
        assert_eq!(with.root, built.root);
        let clash = [("m", file("1", false))];
        assert!(build_with(clash.iter().map(|(p, e)| (*p, e)), &[("m", &mounted.root)]).is_err());
    }

    #[test]
    fn bad_names_and_clashes_are_errors() {
        let f = file("1", false);
        for bad in [
            vec!["../x"],
            vec!["a//b"],
            vec!["/a"],
            vec!["a", "a/b"],
            vec!["a/b", "a"],
        ] {
            assert!(build(bad.iter().map(|p| (*p, &f))).is_err(), "{bad:?}");
        }
        let evil = re::Directory {
            files: vec![re::FileNode {
                name: "..".into(),
                digest: Some(digest_of(b"")),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut out = BTreeMap::new();
        assert!(entries("", &evil, &HashMap::new(), &mut out).is_err());
    }
}
