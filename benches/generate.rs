//! The generated monorepo the benchmarks run on: 4 brands x 5 regions = 20
//! deployable stores under template brands, three base apps, overrides at
//! the brand and the store level.

use std::path::Path;

/// Files in each base app: the frontend, the middleware, the tests.
pub const APPS: &[(&str, usize)] = &[
    ("storefront-unified-nextjs", 2000),
    ("storefront-middleware", 500),
    ("playwright", 250),
];
/// Overrides in each store's own folder.
pub const OVERRIDES_PER_STORE: usize = 20;

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// The relative path of file `i` of a base app.
pub fn file_path(i: usize) -> String {
    format!("src/mod{:02}/part{}/file{i:04}.ts", i / 100, (i / 20) % 5)
}

fn body(seed: usize, len: usize) -> Vec<u8> {
    let line =
        format!("export const value{seed} = {seed}; // filler to make a realistic source line\n");
    line.as_bytes().iter().copied().cycle().take(len).collect()
}

/// Writes the monorepo at `root`; returns the deployable store ids.
pub fn monorepo(root: &Path) -> Vec<String> {
    write(
        &root.join(".gitignore"),
        b"node_modules/\n.out/\n.strata/\n",
    );
    for (app, files) in APPS {
        let base = root.join("apps").join(app);
        write(
            &base.join("package.json"),
            format!("{{\n  \"name\": \"{app}\",\n  \"version\": \"1.0.0\",\n  \"scripts\": {{ \"build\": \"node build.mjs\" }}\n}}\n").as_bytes(),
        );
        write(&base.join(".gitignore"), b".next/\nlib/\n");
        for i in 0..*files {
            // Sizes from 200 B to about 6 KB.
            write(&base.join(file_path(i)), &body(i, 200 + (i * 37) % 6000));
        }
    }
    let mut stores = Vec::new();
    let mut config = String::from("{\n  \"stores\": {\n");
    for b in 0..4 {
        let brand = format!("brand{b}");
        let brand_dir = root.join("apps/stores").join(&brand);
        for k in 0..10 {
            let i = (b * 97 + k * 13) % 2000;
            write(
                &brand_dir
                    .join("storefront-unified-nextjs")
                    .join(file_path(i)),
                &body(1000 + i, 300),
            );
        }
        for r in 0..5 {
            let id = format!("{brand}-region{r}");
            let dir = brand_dir.join("stores").join(&id);
            for k in 0..OVERRIDES_PER_STORE {
                let (app, n) = if k % 4 == 3 { APPS[1] } else { APPS[0] };
                let i = (b * 31 + r * 17 + k * 7) % n;
                write(&dir.join(app).join(file_path(i)), &body(5000 + i, 250));
            }
            if !stores.is_empty() {
                config.push_str(",\n");
            }
            config.push_str(&format!(
                "    \"{id}\": {{ \"deployment\": {{ \"framework\": \"nextjs\" }} }}"
            ));
            stores.push(id);
        }
    }
    config.push_str("\n  }\n}\n");
    write(&root.join("alokai.config.json"), config.as_bytes());
    stores
}
