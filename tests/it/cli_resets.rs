//! The CLI against a node whose connection is reset mid-request (a node killed during an
//! upload): a failure (exit 1), with the write retried under the same Idempotency-Key.

use std::io::Read;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use crate::common::{run, ttx};

/// Accepts connections, reads the start of each request and resets it (SO_LINGER 0), keeping
/// the Idempotency-Key each attempt carried.
fn resetting_server() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let keys = Arc::new(Mutex::new(Vec::new()));
    let seen = keys.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut buf = vec![0u8; 16 * 1024];
            let n = s.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("idempotency-key: "))
                .unwrap_or("-")
                .to_string();
            seen.lock().unwrap().push(key);
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt on a socket we own, with a correctly sized struct.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &linger as *const libc::linger as *const libc::c_void,
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
            drop(s);
        }
    });
    (addr, keys)
}

/// Before: exit 2 (the code for bad input) and no retry, so a script that retries on 1
/// dropped the write. Now: every attempt carries the same key, and the CLI exits 1.
#[test]
fn a_reset_connection_is_a_failure_and_the_write_is_retried_with_the_same_key() {
    let (addr, keys) = resetting_server();
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("token");
    std::fs::write(&token, "ttx_0000\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    // `ttx new` against the API at `api`, with the token file.
    let new_against = |api: std::net::SocketAddr| {
        let mut c = ttx();
        c.env("XDG_CONFIG_HOME", tmp.path()).args([
            "--api",
            &format!("http://{api}"),
            "--token-file",
            token.to_str().unwrap(),
            "new",
            "fibre cut",
        ]);
        run(c, None)
    };
    let out = new_against(addr);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("lost"), "{out:?}");
    let keys = keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(
        keys[0] != "-" && keys.iter().all(|k| k == &keys[0]),
        "{keys:?}"
    );

    // A refused connection is a failure too (exit 1), with a hint to start the node.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = new_against(closed);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("connection refused"), "{out:?}");
}
