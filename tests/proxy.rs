//! In-process HTTP servers for fault injection only: a proxy in front of
//! the real registry that fails, cuts or challenges chosen requests, and a
//! stand-in for the hosted console that records deployment requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A request as the servers saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `GET`, `PUT`…
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names are lowercase.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(stream: &mut TcpStream) -> Option<(Seen, BufReader<TcpStream>)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let seen = Seen {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    Some((seen, reader))
}

fn read_body(seen: &mut Seen, reader: &mut BufReader<TcpStream>, limit: Option<usize>) -> bool {
    let len: usize = seen
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let take = limit.map_or(len, |l| l.min(len));
    let mut body = vec![0; take];
    if reader.read_exact(&mut body).is_err() {
        return false;
    }
    seen.body = body;
    take == len
}

fn respond(stream: &mut TcpStream, status: u16, headers: &[(String, String)], body: &[u8]) {
    // A HEAD answer keeps the length of what a GET would send.
    let length = headers
        .iter()
        .find(|(k, _)| k == "x-head-length")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| body.len().to_string());
    let mut out =
        format!("HTTP/1.1 {status} X\r\nContent-Length: {length}\r\nConnection: close\r\n");
    for (k, v) in headers.iter().filter(|(k, _)| k != "x-head-length") {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

/// Which faults the proxy injects.
#[derive(Default)]
pub struct Faults {
    /// Answer 500 to this many blob-upload requests (POST/PATCH/PUT on
    /// `/blobs/uploads/`) before letting them through.
    pub server_errors: AtomicUsize,
    /// Cut the connection, after reading part of the body, of this many
    /// upload requests that carry a body.
    pub cuts: AtomicUsize,
    /// Forward this many upload-finishing `PUT`s (with a `digest`) to the
    /// registry, then cut the connection before its answer: the blob is
    /// stored, the client does not know it.
    pub lost_answers: AtomicUsize,
    /// Fail every blob upload (for the never-a-tag-without-blobs check).
    pub fail_uploads: AtomicBool,
    /// Demand a bearer token (this proxy is its own token server); every
    /// this many requests, the token in use expires.
    pub bearer_every: AtomicUsize,
}

/// A proxy in front of `upstream` (host:port, plain HTTP).
pub struct Proxy {
    /// Its port.
    pub port: u16,
    /// The faults it injects.
    pub faults: Arc<Faults>,
    /// Every request it saw.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    /// Starts the proxy on a free loopback port.
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults = Arc::new(Faults::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let upstream = upstream.to_string();
        let (f, s) = (faults.clone(), seen.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let token = Arc::new(AtomicUsize::new(1));
            let count = Arc::new(AtomicUsize::new(0));
            for stream in listener.incoming().flatten() {
                let (f, s, client, upstream, token, count) = (
                    f.clone(),
                    s.clone(),
                    client.clone(),
                    upstream.clone(),
                    token.clone(),
                    count.clone(),
                );
                std::thread::spawn(move || {
                    handle(stream, port, &upstream, &client, &f, &s, &token, &count)
                });
            }
        });
        Proxy { port, faults, seen }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn take(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[allow(clippy::too_many_arguments)]
fn handle(
    mut stream: TcpStream,
    port: u16,
    upstream: &str,
    client: &reqwest::blocking::Client,
    faults: &Faults,
    seen: &Mutex<Vec<Seen>>,
    token: &AtomicUsize,
    count: &AtomicUsize,
) {
    let Some((mut request, mut reader)) = read_request(&mut stream) else {
        return;
    };
    let upload = request.path.contains("/blobs/uploads/");
    let has_body = request.header("content-length").is_some_and(|l| l != "0");
    if upload && has_body && take(&faults.cuts) {
        // Read part of the body, then drop the connection.
        read_body(&mut request, &mut reader, Some(1024));
        seen.lock().unwrap().push(request);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    if !read_body(&mut request, &mut reader, None) {
        return;
    }
    seen.lock().unwrap().push(request.clone());
    if request.path.starts_with("/token") {
        let t = format!("t{}", token.load(Ordering::SeqCst));
        respond(
            &mut stream,
            200,
            &[],
            format!("{{\"token\": \"{t}\"}}").as_bytes(),
        );
        return;
    }
    let every = faults.bearer_every.load(Ordering::SeqCst);
    if every > 0 {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        if n.is_multiple_of(every) {
            token.fetch_add(1, Ordering::SeqCst);
        }
        let want = format!("Bearer t{}", token.load(Ordering::SeqCst));
        if request.header("authorization") != Some(want.as_str()) {
            let challenge =
                format!("Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"proxy\"");
            respond(
                &mut stream,
                401,
                &[("WWW-Authenticate".into(), challenge)],
                b"{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}",
            );
            return;
        }
    }
    if upload
        && request.method != "GET"
        && (faults.fail_uploads.load(Ordering::SeqCst) || take(&faults.server_errors))
    {
        respond(
            &mut stream,
            500,
            &[],
            b"{\"errors\":[{\"code\":\"UNKNOWN\",\"message\":\"injected\"}]}",
        );
        return;
    }
    let url = format!("http://{upstream}{}", request.path);
    let mut forward = client.request(request.method.parse().unwrap(), &url);
    for (k, v) in &request.headers {
        if !matches!(
            k.as_str(),
            "host" | "authorization" | "connection" | "content-length"
        ) {
            forward = forward.header(k, v);
        }
    }
    let response = match forward.body(request.body.clone()).send() {
        Ok(r) => r,
        Err(_) => return,
    };
    if upload
        && request.method == "PUT"
        && request.path.contains("digest=")
        && take(&faults.lost_answers)
    {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    let status = response.status().as_u16();
    let mut headers = Vec::new();
    for (k, v) in response.headers() {
        let k = k.as_str().to_string();
        if k == "content-length" && request.method == "HEAD" {
            headers.push(("x-head-length".into(), v.to_str().unwrap_or("0").into()));
            continue;
        }
        if matches!(
            k.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            continue;
        }
        let mut v = v.to_str().unwrap_or("").to_string();
        // Keep clients talking to the proxy.
        if k == "location" {
            v = v.replace(
                &format!("http://{upstream}"),
                &format!("http://127.0.0.1:{port}"),
            );
        }
        headers.push((k, v));
    }
    let body = response.bytes().unwrap_or_default();
    respond(&mut stream, status, &headers, &body);
}

/// A stand-in for the hosted console: answers each POST with the next
/// status of `script` (then 200), and records what it got.
pub struct Console {
    /// Its port.
    pub port: u16,
    /// The requests.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Milliseconds to wait before each answer.
    pub delay_ms: Arc<AtomicUsize>,
}

impl Console {
    /// Starts it; `script` lists (status, body) answers to give first.
    pub fn start(script: Vec<(u16, &'static str)>) -> Console {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let delay_ms = Arc::new(AtomicUsize::new(0));
        let delay = delay_ms.clone();
        let script = Arc::new(Mutex::new(
            script
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let Some((mut request, mut reader)) = read_request(&mut stream) else {
                    continue;
                };
                read_body(&mut request, &mut reader, None);
                s.lock().unwrap().push(request);
                let (status, body) = script
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or((200, "{\"message\": \"deployment queued\"}"));
                // Answered on its own thread: a slow answer holds up no
                // other request.
                let wait = delay.load(Ordering::SeqCst) as u64;
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(wait));
                    respond(
                        &mut stream,
                        status,
                        &[("Content-Type".into(), "application/json".into())],
                        body.as_bytes(),
                    );
                });
            }
        });
        Console {
            port,
            seen,
            delay_ms,
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/deployments", self.port)
    }
}
