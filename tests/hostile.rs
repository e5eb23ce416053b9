//! Registries that are not what they say: a malformed URL (refused before
//! any work, exit code 2, `--dry-run` too), a port nobody listens on, a
//! server that answers 200 with noise to everything, and one that never
//! answers. None of them may end in a reported success or a deployment.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use crate::util::{Repo, example};

fn deploy(repo: &Repo, registry: &str, extra: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--root")
        .arg(repo.path())
        .args(["store", "deploy", "--registry", registry])
        .args(["--base-image", "scratch", "-s", "sports"])
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn committed() -> Repo {
    let repo = example();
    repo.git_init();
    repo
}

#[test]
fn malformed_registry_urls_are_refused_before_any_work() {
    let repo = committed();
    for url in [
        "http://",
        "ht!tp://x",
        "ftp://host",
        "host:notaport",
        "http://host:99999",
        "http://[::1",
        "http://host/with space",
        "http://host/UPPER",
    ] {
        for extra in [&[][..], &["--dry-run"][..]] {
            let (code, output) = deploy(&repo, url, extra, &[]);
            assert_eq!(code, 2, "{url:?} {extra:?}: {output}");
            assert!(output.contains("registry"), "{url:?}: {output}");
            assert!(
                !repo.path().join(".out").exists(),
                "{url:?}: work was done before the URL was checked"
            );
        }
    }
}

#[test]
fn a_port_nobody_listens_on_is_a_failure_not_a_deployment() {
    let repo = committed();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (code, output) = deploy(&repo, &format!("http://127.0.0.1:{port}"), &[], &[]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("unreachable"), "{output}");
    assert!(output.contains("deployed 0 of 1 store to"), "{output}");
    assert!(!repo.path().join(".out/sports/deployment.json").exists());
}

/// Answers every request with 200 and bytes of noise.
fn noise_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut n: u64 = 0x2545F4914F6CDD1D;
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 65536];
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(200)));
            let _ = stream.read(&mut buf);
            let mut noise = Vec::new();
            for _ in 0..37 {
                n ^= n << 13;
                n ^= n >> 7;
                n ^= n << 17;
                noise.extend_from_slice(&n.to_le_bytes());
            }
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    noise.len()
                )
                .as_bytes(),
            );
            let _ = stream.write_all(&noise);
        }
    });
    port
}

#[test]
fn a_server_answering_noise_is_not_a_registry() {
    let repo = committed();
    let port = noise_server();
    let (code, output) = deploy(&repo, &format!("http://127.0.0.1:{port}"), &[], &[]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("container registry"), "{output}");
    assert!(!repo.path().join(".out/sports/deployment.json").exists());
    // And the next run does not call it unchanged.
    let (code, output) = deploy(&repo, &format!("http://127.0.0.1:{port}"), &[], &[]);
    assert_eq!(code, 1, "{output}");
    assert!(
        !output.contains("unchanged since the last deployment"),
        "{output}"
    );
}

#[test]
fn a_registry_that_never_answers_times_out() {
    let repo = committed();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let (code, output) = deploy(
        &repo,
        &format!("http://127.0.0.1:{port}"),
        &[],
        &[("STRATA_REGISTRY_TIMEOUT", "1")],
    );
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("did not answer in time"), "{output}");
}
