//! A minimal HTTP/1.1 keep-alive client for the API benchmarks: one `TcpStream` per client,
//! requests written whole, answers read by `Content-Length` (the local API never chunks a
//! JSON answer). Cheap enough that the client side is not what a benchmark measures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::BenchError;

/// Largest answer header block or body the client reads: a node's whole replication timeline
/// (65,536 stamps of about 25 bytes of JSON each) must fit.
const MAX_ANSWER: usize = 16 << 20;

/// One keep-alive connection to the local API.
pub struct KeepAlive {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
    auth: String,
    request: Vec<u8>,
}

/// A status code and a body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl KeepAlive {
    /// Connects to `addr`; every request carries `Authorization: Bearer token`.
    pub fn connect(addr: SocketAddr, token: &str) -> Result<Self, BenchError> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map_err(BenchError::io(format!("connect to {addr}")))?;
        stream
            .set_nodelay(true)
            .map_err(BenchError::io("set TCP_NODELAY"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(BenchError::io("set a read timeout"))?;
        let writer = stream
            .try_clone()
            .map_err(BenchError::io("clone the stream"))?;
        Ok(Self {
            reader: BufReader::with_capacity(16 * 1024, stream),
            writer,
            host: addr.to_string(),
            auth: format!("Bearer {token}"),
            request: Vec::with_capacity(1024),
        })
    }

    /// `POST path` with a JSON body, on the kept-alive connection.
    pub fn post_json(&mut self, path: &str, body: &[u8]) -> Result<Answer, BenchError> {
        self.post_json_keyed(path, body, None)
    }

    /// [`Self::post_json`] with an `Idempotency-Key` header when `key` is given (what the
    /// CLI sends with every write).
    pub fn post_json_keyed(
        &mut self,
        path: &str,
        body: &[u8],
        key: Option<&str>,
    ) -> Result<Answer, BenchError> {
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n",
            self.host,
            self.auth,
            body.len()
        )
        .map_err(BenchError::io("format the request"))?;
        if let Some(key) = key {
            write!(self.request, "Idempotency-Key: {key}\r\n")
                .map_err(BenchError::io("format the request"))?;
        }
        self.request.extend_from_slice(b"\r\n");
        self.request.extend_from_slice(body);
        self.writer
            .write_all(&self.request)
            .map_err(BenchError::io("send the request"))?;
        self.read_answer()
    }

    /// `GET path`, on the kept-alive connection.
    pub fn get(&mut self, path: &str) -> Result<Answer, BenchError> {
        self.request.clear();
        write!(
            self.request,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\r\n",
            self.host, self.auth
        )
        .map_err(BenchError::io("format the request"))?;
        self.writer
            .write_all(&self.request)
            .map_err(BenchError::io("send the request"))?;
        self.read_answer()
    }

    fn read_answer(&mut self) -> Result<Answer, BenchError> {
        let mut line = String::new();
        let mut status = None;
        let mut length = None;
        let mut header_bytes = 0;
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(BenchError::io("read the answer"))?;
            header_bytes += n;
            if n == 0 || header_bytes > MAX_ANSWER {
                return Err(BenchError::Invalid(
                    "the node closed the connection or sent an oversized header".into(),
                ));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if status.is_none() {
                status = l.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
            } else if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                }
            }
        }
        let status = status
            .ok_or_else(|| BenchError::Invalid("no HTTP status line in the answer".into()))?;
        let length = length.unwrap_or(0);
        if length > MAX_ANSWER {
            return Err(BenchError::Invalid(format!(
                "answer body of {length} bytes"
            )));
        }
        let mut body = vec![0u8; length];
        self.reader
            .read_exact(&mut body)
            .map_err(BenchError::io("read the answer body"))?;
        Ok(Answer { status, body })
    }
}
