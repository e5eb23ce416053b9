//! Remote cache benchmark: the generated 20-store monorepo built cold with
//! a remote cache (nginx with WebDAV, started here), then built from a
//! fresh clone at another path with an empty local cache and only the
//! remote warm. Reports the warm run's time against the cold run's time
//! without its build scripts. Each run composes first, then builds, so
//! that no composition hides under a script; the cold build uses `-j 1`,
//! so that its script times add up and can be subtracted. Needs nginx.

mod generate;
mod measure;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use measure::{git, run_strata};

struct Nginx(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx(port: u16) -> Nginx {
    let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nginx is not installed: install the Debian package nginx");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    std::fs::write(
        dir.path().join("nginx.conf"),
        format!(
            "daemon off;\nmaster_process off;\nerror_log {d}/logs/error.log;\npid {d}/nginx.pid;\nevents {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  server {{\n    listen 127.0.0.1:{port};\n    root {d}/data;\n    client_max_body_size 0;\n    location / {{ dav_methods PUT DELETE; create_full_put_path on; }}\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx(child, dir)
}

fn main() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = nginx(port);
    let url = format!("http://127.0.0.1:{port}");
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let first = tmp.path().join("first");
    let stores = generate::monorepo(&first);
    git(&first, &["init", "-q"]);
    git(&first, &["add", "-A"]);
    git(&first, &["commit", "-q", "-m", "bench"]);
    std::thread::sleep(Duration::from_millis(1100));

    let cold_compose = run_strata(&first, &["store", "compose", "--all"]);
    let cold = run_strata(
        &first,
        &[
            "store",
            "build",
            "--all",
            "--json",
            "-j",
            "1",
            "--remote-cache",
            &url,
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&cold.stdout).unwrap();
    let scripts: f64 = report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["apps"].as_array().unwrap())
        .filter_map(|a| a["seconds"].as_f64())
        .sum();

    let second = tmp.path().join("elsewhere/second");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            &format!("file://{}", first.display()),
            "elsewhere/second",
        ],
    );
    std::thread::sleep(Duration::from_millis(1100));
    let warm_compose = run_strata(&second, &["store", "compose", "--all"]);
    let warm = run_strata(
        &second,
        &["store", "build", "--all", "--json", "--remote-cache", &url],
    );
    let warm_report: serde_json::Value = serde_json::from_str(&warm.stdout).unwrap();
    assert_eq!(
        warm_report["scripts_run"], 0,
        "the warm checkout runs no build script"
    );
    let cold_total = cold_compose.wall.as_secs_f64() + cold.wall.as_secs_f64();
    let warm_total = warm_compose.wall.as_secs_f64() + warm.wall.as_secs_f64();
    let without_scripts = cold_total - scripts;
    println!(
        "remote cache benchmark: {} stores, {} build scripts in the cold run",
        stores.len(),
        report["scripts_run"]
    );
    println!(
        "  cold: compose {:.2} s + build (-j 1) {:.2} s, of which build scripts {:.2} s: {:.2} s without them; {:.1} KB uploaded",
        cold_compose.wall.as_secs_f64(),
        cold.wall.as_secs_f64(),
        scripts,
        without_scripts,
        report["remote_cache"]["uploaded"].as_f64().unwrap_or(0.0) / 1e3
    );
    println!(
        "  fresh clone, remote cache only: compose {:.2} s + build {:.2} s = {:.2} s, {:.1} KB downloaded   ratio {:.2} (target <= 1.10)",
        warm_compose.wall.as_secs_f64(),
        warm.wall.as_secs_f64(),
        warm_total,
        warm_report["remote_cache"]["downloaded"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e3,
        warm_total / without_scripts
    );
}
