//! A real OCI registry for the tests: Debian's `docker-registry` (the CNCF
//! distribution registry), started on a free loopback port with a config
//! written to a temp dir, stopped on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::free_port;

/// A running registry.
pub struct RegistryServer {
    child: Child,
    /// Its port.
    pub port: u16,
    _dir: tempfile::TempDir,
    _certs: Option<tempfile::TempDir>,
}

/// Where the binary is.
pub fn registry_binary() -> &'static str {
    for candidate in ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"] {
        if Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!(
        "docker-registry is not installed: install the Debian package docker-registry (scripts/test does)"
    );
}

/// Checks a peer tool is installed; panics naming its Debian package.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is not installed: install the Debian package {package} (scripts/test does)"
    );
}

impl RegistryServer {
    /// An open registry (no auth, plain HTTP).
    pub fn start() -> RegistryServer {
        Self::start_with("")
    }

    /// A registry that requires basic auth from `htpasswd` (a bcrypt line).
    pub fn start_with_htpasswd(htpasswd: &str) -> RegistryServer {
        Self::start_with(htpasswd)
    }

    /// A registry behind TLS (a CA and a certificate for 127.0.0.1 made
    /// with openssl), requiring basic auth from `htpasswd`. Returns it and
    /// the CA certificate's path.
    pub fn start_tls(htpasswd: &str) -> (RegistryServer, std::path::PathBuf) {
        require("openssl", "openssl");
        let certs = tempfile::tempdir().unwrap();
        let d = certs.path();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=strata test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            d.join("server.crt").display(),
            d.join("server.key").display()
        );
        let mut server = Self::start_inner(htpasswd, &tls);
        let ca = server._dir.path().join("ca.crt");
        std::fs::copy(d.join("ca.crt"), &ca).unwrap();
        server._certs = Some(certs);
        (server, ca)
    }

    fn start_with(htpasswd: &str) -> RegistryServer {
        Self::start_inner(htpasswd, "")
    }

    fn start_inner(htpasswd: &str, tls: &str) -> RegistryServer {
        let binary = registry_binary();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut auth = String::new();
        if !htpasswd.is_empty() {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, htpasswd).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                file.display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls}{auth}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = RegistryServer {
            child,
            port,
            _dir: dir,
            _certs: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs skopeo; panics with its output unless it succeeds.
pub fn skopeo(args: &[&str]) -> String {
    require("skopeo", "skopeo");
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `skopeo inspect` of an image in a plain-HTTP registry, as JSON.
pub fn inspect(image: &str) -> serde_json::Value {
    serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]))
    .unwrap()
}

/// Unpacks `reference` of the OCI layout at `layout` with umoci into
/// `into`; the bundle's folder (its files are under `rootfs/`).
pub fn unpack_layout(layout: &Path, reference: &str, into: &Path) -> std::path::PathBuf {
    require("umoci", "umoci");
    let bundle = into.join("b");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{reference}", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci unpack failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bundle
}

/// Unpacks `image` (from a registry) with umoci; returns the bundle folder.
pub fn unpack(image: &str, into: &Path) -> std::path::PathBuf {
    unpack_with(image, into, None)
}

/// [`unpack`] from a registry that wants `user:password`.
pub fn unpack_with(image: &str, into: &Path, creds: Option<&str>) -> std::path::PathBuf {
    require("umoci", "umoci");
    let layout = into.join("layout");
    let creds = creds.map(|c| format!("--src-creds={c}"));
    let mut args = vec!["copy", "--src-tls-verify=false"];
    args.extend(creds.as_deref());
    let (from, to) = (
        format!("docker://{image}"),
        format!("oci:{}:img", layout.display()),
    );
    args.extend([from.as_str(), to.as_str()]);
    skopeo(&args);
    unpack_layout(&layout, "img", into)
}
