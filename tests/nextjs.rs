//! A real Next.js 16 app (`output: 'standalone'`), installed with npm,
//! composed for two stores that override one component each: both build,
//! and each store's `.deploy/server.js` serves its own component.

use std::process::Command;

use crate::fixtures::status;
use crate::util::{Repo, Server, git};

const APP: &str = "apps/storefront-unified-nextjs";

fn npm_install(repo: &Repo) {
    let out = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
        .args(["next@16", "react@19", "react-dom@19"])
        .current_dir(repo.path())
        .env("NEXT_TELEMETRY_DISABLED", "1")
        .output()
        .expect("npm is installed (Debian package: npm)");
    assert!(
        out.status.success(),
        "npm install next react react-dom failed (the npm registry must be reachable):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_stores_of_a_real_next_app_each_serve_their_own_component() {
    let repo = Repo::empty();
    repo.write(".gitignore", "node_modules/\n.out/\n.strata/\n");
    repo.write(
        "package.json",
        "{\n  \"name\": \"demo\",\n  \"private\": true\n}\n",
    );
    // Next finds the monorepo's root by its lockfile and stops at the git
    // repository: both must be there.
    git(repo.path(), &["init", "-q"]);
    npm_install(&repo);

    repo.write(&format!("{APP}/package.json"), "{\n  \"name\": \"storefront-unified-nextjs\",\n  \"private\": true,\n  \"scripts\": {\n    \"build\": \"next build\"\n  }\n}\n");
    repo.write(&format!("{APP}/.gitignore"), ".next/\nnext-env.d.ts\n");
    repo.write(
        &format!("{APP}/next.config.mjs"),
        "const nextConfig = { output: 'standalone' };\nexport default nextConfig;\n",
    );
    repo.write(
        &format!("{APP}/pages/index.js"),
        "import Banner from '../components/banner';\n\nexport default function Home() {\n  return (\n    <main>\n      <Banner />\n    </main>\n  );\n}\n",
    );
    repo.write(
        &format!("{APP}/pages/ssr.js"),
        "import Banner from '../components/banner';\n\nexport async function getServerSideProps() {\n  return { props: { at: Date.now() } };\n}\n\nexport default function Ssr({ at }) {\n  return <main><Banner /><p>{at}</p></main>;\n}\n",
    );
    repo.write(
        &format!("{APP}/components/banner.js"),
        "export default function Banner() {\n  return <h1>Base banner</h1>;\n}\n",
    );
    repo.write(&format!("{APP}/public/hello.txt"), "hello from the base\n");
    for store in ["store-a", "store-b"] {
        repo.write(
            &format!("apps/stores/{store}/storefront-unified-nextjs/components/banner.js"),
            &format!(
                "export default function Banner() {{\n  return <h1>Welcome to {store}</h1>;\n}}\n"
            ),
        );
    }
    repo.write(
        "apps/stores/store-b/storefront-unified-nextjs/public/hello.txt",
        "hello from store-b\n",
    );
    repo.config(&["store-a", "store-b"]);

    let (code, report, stderr) = repo.build_json(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        status(&report, "store-a", "storefront-unified-nextjs", "deploy"),
        "prepared"
    );
    for (store, hello) in [
        ("store-a", "hello from the base"),
        ("store-b", "hello from store-b"),
    ] {
        let deploy = repo
            .path()
            .join(format!(".out/{store}/storefront-unified-nextjs/.deploy"));
        assert!(deploy.join("server.js").is_file() && deploy.join("node_modules/next").is_dir());
        assert!(
            deploy.join(".next/static").is_dir(),
            "static assets are copied beside the server"
        );
        assert!(
            !deploy.join("pages").exists() && !deploy.join("components").exists(),
            "no sources"
        );
        let server = Server::start(&deploy);
        let page = server.get("/");
        assert!(
            page.contains(&format!("Welcome to {store}")),
            "{store}: {page}"
        );
        assert!(server.get("/ssr").contains(&format!("Welcome to {store}")));
        assert_eq!(server.get("/hello.txt").trim(), hello);
    }

    // A second build runs no build script.
    let (code, report, _) = repo.build_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(report["scripts_run"], 0, "{report}");
}
