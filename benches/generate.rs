//! The generated monorepo the benchmarks run on: 4 brands x 5 regions = 20
//! deployable stores under template brands, three base apps, overrides at
//! the brand and the store level.
// Each benchmark binary uses a part of this shared module.
#![allow(dead_code)]

use std::path::Path;

/// Files in each base app: the frontend, the middleware, the tests.
pub const APPS: &[(&str, usize)] = &[
    ("storefront-unified-nextjs", 2000),
    ("storefront-middleware", 500),
    ("playwright", 250),
];
/// Overrides in each store's own folder.
pub const OVERRIDES_PER_STORE: usize = 20;

/// Build scripts: small, quick stand-ins that lay out their outputs as the
/// real tools do (a Next.js standalone folder, a middleware `lib/`).
const BUILD_SCRIPTS: &[(&str, &str)] = &[
    (
        "storefront-unified-nextjs",
        r#"import { mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
let bytes = 0;
for (const mod of readdirSync("src")) bytes += statSync(`src/${mod}`).size;
mkdirSync(".next/standalone/.next/server", { recursive: true });
mkdirSync(".next/static", { recursive: true });
writeFileSync(".next/standalone/.next/server/page.html", `<p>${bytes}</p>`);
writeFileSync(".next/static/app.css", "body {}");
// The traced runtime, as Next.js writes it beside a standalone server.
for (const name of ["next", "react"]) {
  mkdirSync(`.next/standalone/node_modules/${name}`, { recursive: true });
  writeFileSync(`.next/standalone/node_modules/${name}/package.json`, JSON.stringify({ name, main: "index.js" }));
  writeFileSync(`.next/standalone/node_modules/${name}/index.js`, "module.exports = {};");
}
writeFileSync(".next/standalone/server.js", "require('next'); require('node:http').createServer((q, s) => s.end('ok')).listen(process.env.PORT);");
"#,
    ),
    (
        "storefront-middleware",
        r#"import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
mkdirSync("lib", { recursive: true });
writeFileSync("lib/index.mjs", `export const modules = ${JSON.stringify(readdirSync("src"))};`);
"#,
    ),
];

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
    write(
        &root.join("package-lock.json"),
        b"{\"lockfileVersion\": 3, \"packages\": {}}\n",
    );
    for (app, files) in APPS {
        let base = root.join("apps").join(app);
        let scripts = match BUILD_SCRIPTS.iter().find(|(a, _)| a == app) {
            Some((_, script)) => {
                write(&base.join("build.mjs"), script.as_bytes());
                "\"scripts\": { \"build\": \"node build.mjs\" }"
            }
            None => "\"scripts\": {}",
        };
        write(
            &base.join("package.json"),
            format!("{{\n  \"name\": \"{app}\",\n  \"version\": \"1.0.0\",\n  {scripts}\n}}\n")
                .as_bytes(),
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

/// Gives the middleware production dependencies: `packages` packages of
/// `files` files each in the root `node_modules`, the same for every store
/// (so their image layer is shared).
pub fn dependencies(root: &Path, packages: usize, files: usize) {
    let mut deps = Vec::new();
    for p in 0..packages {
        let name = format!("dep-{p:02}");
        let dir = root.join("node_modules").join(&name);
        write(
            &dir.join("package.json"),
            format!("{{\"name\": \"{name}\", \"version\": \"1.0.{p}\"}}\n").as_bytes(),
        );
        for f in 0..files {
            write(
                &dir.join(format!("lib/file{f:03}.js")),
                &body(p * 1000 + f, 1000 + (f * 131) % 7000),
            );
        }
        deps.push(format!("\"{name}\": \"^1.0.0\""));
    }
    let package = root.join("apps/storefront-middleware/package.json");
    write(
        &package,
        format!(
            "{{\n  \"name\": \"storefront-middleware\",\n  \"version\": \"1.0.0\",\n  \"scripts\": {{ \"build\": \"node build.mjs\" }},\n  \"dependencies\": {{ {} }}\n}}\n",
            deps.join(", ")
        )
        .as_bytes(),
    );
}
