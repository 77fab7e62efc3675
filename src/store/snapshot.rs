//! Consistent copies of the store, for cloning a standby without replaying the log.
//!
//! - [`take`]: `VACUUM INTO` from a read-only connection: SQLite writes a compact, consistent
//!   copy of one read snapshot while the writer goes on committing (no lock on the writer, no
//!   page-level copying of a live WAL). Its length and SHA-256 travel with it.
//! - [`chunks`]: reads a snapshot back in bounded chunks, for streaming it.
//! - [`Receiver`]: writes arriving chunks to `DEST.partial` (mode 0600), refuses more bytes than
//!   announced, and on [`Receiver::finish`] checks length and digest, fsyncs, and renames into
//!   place, so a clone interrupted or corrupted on the way never leaves a store that looks whole.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

/// Why a snapshot could not be made or received.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// SQLite could not make the copy.
    #[error("cannot snapshot the store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// More bytes arrived than the sender announced.
    #[error("the snapshot is longer than the {expected} bytes announced")]
    TooLong {
        /// The announced length.
        expected: u64,
    },
    /// Fewer bytes arrived than announced.
    #[error("the snapshot ended after {got} of {expected} bytes")]
    Short {
        /// Bytes received.
        got: u64,
        /// The announced length.
        expected: u64,
    },
    /// The bytes do not hash to the announced digest.
    #[error(
        "the snapshot's SHA-256 does not match the one announced: it was corrupted on the way"
    )]
    Digest,
    /// The destination already holds a store.
    #[error("{0} already exists: a clone never overwrites a store")]
    Exists(PathBuf),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A snapshot file with its length and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Where it is.
    pub path: PathBuf,
    /// Its length in bytes.
    pub len: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

/// Makes a consistent copy of the store at `db` into the new file `out` (which must not exist).
pub fn take(db: &Path, out: &Path) -> Result<Snapshot, SnapshotError> {
    if out.exists() {
        return Err(SnapshotError::Exists(out.to_path_buf()));
    }
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let target = out
        .to_str()
        .ok_or_else(|| SnapshotError::Exists(out.to_path_buf()))?;
    conn.execute("VACUUM INTO ?1", [target])?;
    drop(conn);
    let (len, sha256) = digest_file(out)?;
    Ok(Snapshot {
        path: out.to_path_buf(),
        len,
        sha256,
    })
}

fn digest_file(path: &Path) -> Result<(u64, [u8; 32]), SnapshotError> {
    let mut file = File::open(path).map_err(io("cannot open", path))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io("cannot read", path))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, finish_digest(ctx)))
}

fn finish_digest(ctx: ring::digest::Context) -> [u8; 32] {
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Reads a snapshot back in chunks of at most `chunk` bytes.
pub fn chunks(
    snapshot: &Snapshot,
    chunk: usize,
) -> Result<impl Iterator<Item = Result<Vec<u8>, SnapshotError>>, SnapshotError> {
    let path = snapshot.path.clone();
    let mut file = File::open(&path).map_err(io("cannot open", &path))?;
    let chunk = chunk.max(1);
    Ok(std::iter::from_fn(move || {
        let mut buf = vec![0u8; chunk];
        let mut filled = 0;
        while filled < chunk {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Some(Err(io("cannot read", &path)(e))),
            }
        }
        (filled > 0).then(|| {
            buf.truncate(filled);
            Ok(buf)
        })
    }))
}

/// Receives a snapshot into `DEST.partial`, then renames it to `DEST` once whole and verified.
pub struct Receiver {
    dest: PathBuf,
    partial: PathBuf,
    file: File,
    ctx: ring::digest::Context,
    got: u64,
    expected_len: u64,
    expected_sha256: [u8; 32],
}

impl Receiver {
    /// Starts receiving a snapshot of `len` bytes hashing to `sha256` for `dest`. A leftover
    /// `DEST.partial` from an interrupted clone is replaced; an existing `DEST` is refused.
    pub fn new(dest: &Path, len: u64, sha256: [u8; 32]) -> Result<Receiver, SnapshotError> {
        if dest.exists() {
            return Err(SnapshotError::Exists(dest.to_path_buf()));
        }
        let mut partial = dest.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let file = opts.open(&partial).map_err(io("cannot create", &partial))?;
        Ok(Receiver {
            dest: dest.to_path_buf(),
            partial,
            file,
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            got: 0,
            expected_len: len,
            expected_sha256: sha256,
        })
    }

    /// Bytes received so far (for a progress bar).
    pub fn received(&self) -> u64 {
        self.got
    }

    /// Writes the next chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        if self.got + chunk.len() as u64 > self.expected_len {
            return Err(SnapshotError::TooLong {
                expected: self.expected_len,
            });
        }
        self.file
            .write_all(chunk)
            .map_err(io("cannot write", &self.partial))?;
        self.ctx.update(chunk);
        self.got += chunk.len() as u64;
        Ok(())
    }

    /// Checks length and digest, makes the file durable and renames it into place. On any
    /// error the partial file is removed and `DEST` does not exist.
    pub fn finish(self) -> Result<PathBuf, SnapshotError> {
        let partial = self.partial.clone();
        let result = self.verify_and_install();
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result
    }

    fn verify_and_install(self) -> Result<PathBuf, SnapshotError> {
        if self.got != self.expected_len {
            return Err(SnapshotError::Short {
                got: self.got,
                expected: self.expected_len,
            });
        }
        if finish_digest(self.ctx) != self.expected_sha256 {
            return Err(SnapshotError::Digest);
        }
        self.file
            .sync_all()
            .map_err(io("cannot sync", &self.partial))?;
        drop(self.file);
        if self.dest.exists() {
            return Err(SnapshotError::Exists(self.dest));
        }
        std::fs::rename(&self.partial, &self.dest).map_err(io("cannot rename", &self.partial))?;
        if let Some(dir) = self.dest.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("cannot sync", dir))?;
        }
        Ok(self.dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real store file with `n` rows, in WAL mode like the node's.
    fn store(dir: &Path, n: i64) -> PathBuf {
        let db = dir.join("ttx.db");
        let mut conn = Connection::open(&db).unwrap();
        conn.pragma_update(None, "journal_mode", "wal").unwrap();
        conn.execute_batch("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)")
            .unwrap();
        let tx = conn.transaction().unwrap();
        for k in 0..n {
            tx.execute("INSERT INTO t VALUES (?1, ?2)", (k, "x".repeat(100)))
                .unwrap();
        }
        tx.commit().unwrap();
        db
    }

    fn count(db: &Path) -> i64 {
        let conn = Connection::open(db).unwrap();
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    fn send(snap: &Snapshot, dest: &Path, chunk: usize) -> Result<PathBuf, SnapshotError> {
        let mut rx = Receiver::new(dest, snap.len, snap.sha256)?;
        for c in chunks(snap, chunk)? {
            rx.push(&c?)?;
        }
        rx.finish()
    }

    #[test]
    fn a_snapshot_of_a_store_being_written_is_consistent() {
        let tmp = tempfile::tempdir().unwrap();
        let db = store(tmp.path(), 1000);
        // Keep writing while the snapshot is taken.
        let writer_db = db.clone();
        let writer = std::thread::spawn(move || {
            let conn = Connection::open(&writer_db).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .unwrap();
            for k in 1000..3000 {
                conn.execute("INSERT INTO t VALUES (?1, 'y')", [k]).unwrap();
            }
        });
        let snap = take(&db, &tmp.path().join("snap.db")).unwrap();
        writer.join().unwrap();
        let n = count(&snap.path);
        assert!((1000..=3000).contains(&n), "{n}");
        // It is a prefix: the rows it has are exactly 0..n.
        let conn = Connection::open(&snap.path).unwrap();
        let max: i64 = conn
            .query_row("SELECT max(k) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(max, n - 1);
        assert!(take(&db, &snap.path).is_err(), "never overwrites");
    }

    #[test]
    fn chunks_rebuild_the_same_file() {
        let tmp = tempfile::tempdir().unwrap();
        let snap = take(&store(tmp.path(), 500), &tmp.path().join("snap.db")).unwrap();
        let dest = tmp.path().join("clone.db");
        send(&snap, &dest, 4096).unwrap();
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&snap.path).unwrap()
        );
        assert_eq!(count(&dest), 500);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A second clone into the same place is refused.
        assert!(matches!(
            send(&snap, &dest, 4096),
            Err(SnapshotError::Exists(_))
        ));
    }

    #[test]
    fn a_truncated_corrupted_or_overlong_transfer_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let snap = take(&store(tmp.path(), 200), &tmp.path().join("snap.db")).unwrap();
        let bytes = std::fs::read(&snap.path).unwrap();
        let dest = tmp.path().join("clone.db");
        let partial = tmp.path().join("clone.db.partial");

        let mut rx = Receiver::new(&dest, snap.len, snap.sha256).unwrap();
        rx.push(&bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(rx.finish(), Err(SnapshotError::Short { .. })));
        assert!(!dest.exists() && !partial.exists());

        let mut bad = bytes.clone();
        bad[100] ^= 0xff;
        let mut rx = Receiver::new(&dest, snap.len, snap.sha256).unwrap();
        rx.push(&bad).unwrap();
        assert!(matches!(rx.finish(), Err(SnapshotError::Digest)));
        assert!(!dest.exists() && !partial.exists());

        let mut rx = Receiver::new(&dest, snap.len, snap.sha256).unwrap();
        rx.push(&bytes).unwrap();
        assert!(matches!(
            rx.push(b"more"),
            Err(SnapshotError::TooLong { .. })
        ));
        drop(rx);
        // An interrupted clone's leftover partial file is replaced by the next attempt.
        send(&snap, &dest, 1 << 16).unwrap();
        assert_eq!(count(&dest), 200);
    }
}
