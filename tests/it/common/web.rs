//! A small HTTP/1.1 client for the web console tests: cookies kept per client, form posts,
//! raw status, headers and body (no redirects followed, so tests see them).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use super::TestNode;

/// One answer.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased, in order (a name may repeat).
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Resp {
    /// The first header of that name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The value of hidden input `name` in the body (first one).
    pub fn hidden(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&needle)
            .unwrap_or_else(|| panic!("no {name} field in {}", self.body))
            + needle.len();
        self.body[start..].split('"').next().unwrap().to_string()
    }
}

/// Percent-encodes a form value.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A browser-like client: one cookie jar, optional bearer token.
pub struct WebClient {
    /// The console's address.
    pub addr: SocketAddr,
    /// Cookies set by the console.
    pub cookies: BTreeMap<String, String>,
    /// Sent as `Authorization: Bearer` when set.
    pub token: Option<String>,
}

impl WebClient {
    /// A client of the node's console (address from `run/node.json`).
    pub fn new(node: &TestNode) -> Self {
        Self {
            addr: web_addr(node),
            cookies: BTreeMap::new(),
            token: None,
        }
    }

    /// One request.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut s = std::net::TcpStream::connect(self.addr).expect("connect web");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            head.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
        }
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        for (k, v) in &headers {
            if k == "set-cookie" {
                let pair = v.split(';').next().unwrap_or("");
                if let Some((name, value)) = pair.split_once('=') {
                    if value.is_empty() || v.contains("Max-Age=0") {
                        self.cookies.remove(name);
                    } else {
                        self.cookies.insert(name.to_string(), value.to_string());
                    }
                }
            }
        }
        let body = if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> Resp {
        self.request("GET", path, "", &[])
    }

    /// `POST path` with form fields.
    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        self.request("POST", path, &body.join("&"), &[])
    }

    /// Logs in through the login form; returns the final answer of the POST.
    pub fn login(&mut self, name: &str, password: &str) -> Resp {
        let form = self.get("/login");
        assert_eq!(form.status, 200, "{form:?}");
        let csrf = form.hidden("csrf");
        self.post(
            "/login",
            &[
                ("csrf", &csrf),
                ("name", name),
                ("password", password),
                ("next", "/"),
            ],
        )
    }

    /// The CSRF token of this session (from a page's forms).
    pub fn csrf(&mut self) -> String {
        self.get("/tickets/new").hidden("csrf")
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// The web console's address from `run/node.json`.
pub fn web_addr(node: &TestNode) -> SocketAddr {
    let info = ttx::node::RuntimeInfo::read(&node.data()).expect("node.json");
    let url = info.web_url.expect("web console enabled");
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .expect("web address")
}

/// Sets operator `name`'s password with `ttx operator passwd` (password on stdin).
pub fn set_password(node: &TestNode, name: &str, password: &str) {
    node.cli_with(
        &["operator", "passwd", name],
        None,
        Some(format!("{password}\n").as_bytes()),
    )
    .ok();
}

/// Adds an operator and returns its token.
pub fn add_operator(node: &TestNode, name: &str, role: &str) -> String {
    let out = node.cli(&["operator", "add", name, "--role", role]);
    out.ok()
        .lines()
        .nth(1)
        .expect("token line")
        .trim()
        .to_string()
}
