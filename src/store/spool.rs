//! The standby's receipt spool: shipped batches made durable on arrival, before they are
//! applied.
//!
//! A standby with `replication.receipt_spool = true` acknowledges a batch as *durable* once it
//! is here (one `write` and one `fdatasync` for every batch that arrived together), and applies
//! it to the store beside that, as PostgreSQL's walreceiver flushes WAL before the startup process replays it. The
//! primary's answers then wait for one small append on the standby, not for its SQLite
//! transaction. The store's own head stays the *applied* position.
//!
//! Whatever is spooled past the head is applied before it could be missed:
//! - when the follower starts a stream (after a restart or a dropped stream), before it
//!   subscribes from its head;
//! - when the node is promoted, in the promotion's own transaction before `EpochStarted`
//!   ([`crate::store::WriteOp::Promote`]).
//!
//! Both run whether the option is on or off, so switching it off on a standby whose spool
//! still holds events loses nothing.
//!
//! The file is `ttx.db-spool` beside the store (mode 0600). Each record is
//!
//! ```text
//! len u32 LE | crc32 u32 LE | first u64 LE | last u64 LE | payload (len bytes)
//! ```
//!
//! where the payload is the codec's encoding of the batch's `Vec<Envelope>` (the bytes the
//! stream carried), `first..=last` its positions and the CRC-32 covers `first`, `last` and the
//! payload. A record cut short or failing its CRC is a torn tail (a crash mid-append, never
//! acknowledged): reading stops there and the file is cut back to the last whole record
//! before anything is appended. The file is emptied once everything in it is applied and it
//! has grown past [`RECYCLE_BYTES`].

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::wire::codec;
use crate::wire::envelope::Envelope;

/// Bytes of a record's header.
const HEADER: usize = 24;
/// The spool is emptied once it is this long and everything in it is applied.
pub const RECYCLE_BYTES: u64 = 8 * 1024 * 1024;
/// The largest record read back (a batch is at most one frame).
const MAX_RECORD: u32 = crate::wire::FRAME_CEILING;

/// Why the spool could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The file system refused.
    #[error("the standby's receipt spool {path}: {what}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A batch to spool does not follow the last one spooled.
    #[error(
        "the standby's receipt spool: batch {first}..={last} does not follow position {after}"
    )]
    OutOfOrder {
        /// The batch's first position.
        first: u64,
        /// Its last position.
        last: u64,
        /// The last position spooled.
        after: u64,
    },
    /// A whole record whose payload does not decode to the positions its header names.
    #[error("the standby's receipt spool {path} holds a record that does not decode at byte {offset}: move it aside to start the standby without it (the primary ships those events again)")]
    Corrupt {
        /// The file.
        path: String,
        /// Where the record starts.
        offset: u64,
    },
}

/// The spool of one store (see the module doc).
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The file, opened at the first append (a primary never creates one).
    file: Option<File>,
    /// Bytes of whole records in the file (the file is cut back to this before appending).
    len: u64,
    /// The last position in the file (0: empty).
    last: u64,
}

impl Spool {
    /// The spool of the store at `database` (`DATABASE-spool`); nothing is opened yet.
    pub fn beside(database: &Path) -> Spool {
        Spool {
            path: PathBuf::from(format!("{}-spool", database.display())),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn io(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
        move |source| SpoolError::Io {
            path: self.path.display().to_string(),
            what,
            source,
        }
    }

    /// Appends `batches` (encoded here: [`Self::append_records`]), for tests.
    #[cfg(test)]
    pub fn append(&self, batches: &[Vec<Envelope>]) -> Result<u64, SpoolError> {
        let records: Vec<Record> = batches.iter().filter_map(|b| Record::of(b)).collect();
        self.append_records(&records)
    }

    /// Appends `records` (each following the last position spooled, unless the spool is
    /// empty) and makes them durable with one `fdatasync`. Returns the last position now
    /// spooled.
    pub fn append_records(&self, records: &[Record]) -> Result<u64, SpoolError> {
        let mut inner = self.lock();
        self.ready(&mut inner)?;
        let mut buf = Vec::new();
        let mut last = inner.last;
        for record in records {
            if last != 0 && record.first != last + 1 {
                return Err(SpoolError::OutOfOrder {
                    first: record.first,
                    last: record.last,
                    after: last,
                });
            }
            buf.extend_from_slice(&record.bytes);
            last = record.last;
        }
        if buf.is_empty() {
            return Ok(inner.last);
        }
        let file = inner.file.as_mut().expect("opened by ready");
        file.write_all(&buf).map_err(self.io("append"))?;
        file.sync_data().map_err(self.io("fdatasync"))?;
        inner.len += buf.len() as u64;
        inner.last = last;
        Ok(last)
    }

    /// Opens the file for appending (once), cut back to its whole records.
    fn ready(&self, inner: &mut Inner) -> Result<(), SpoolError> {
        if inner.file.is_some() {
            return Ok(());
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.path)
            .map_err(self.io("open"))?;
        let scan = self.scan(&mut file)?;
        file.set_len(scan.len)
            .map_err(self.io("cut the torn tail"))?;
        file.seek(SeekFrom::Start(scan.len))
            .map_err(self.io("seek"))?;
        inner.len = scan.len;
        inner.last = scan.last;
        inner.file = Some(file);
        Ok(())
    }

    /// The spooled events past `head`, in order: from `head + 1` on, each record's events
    /// that follow the last one taken (records at or below `head` are skipped; a gap ends the
    /// run, which the applier would refuse anyway). Empty when there is no spool.
    pub fn pending_after(&self, head: u64) -> Result<Vec<Envelope>, SpoolError> {
        let mut inner = self.lock();
        let mut opened;
        let file = match inner.file.as_mut() {
            Some(f) => f,
            None => match File::open(&self.path) {
                Ok(f) => {
                    opened = f;
                    &mut opened
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(self.io("open")(e)),
            },
        };
        let scan = self.scan(file)?;
        let len = inner.len;
        if let Some(f) = inner.file.as_mut() {
            f.seek(SeekFrom::Start(len)).map_err(self.io("seek"))?;
        }
        let mut next = head + 1;
        let mut out = Vec::new();
        for batch in scan.batches {
            for env in batch {
                if env.position < next {
                    continue;
                }
                if env.position > next {
                    tracing::warn!(
                        at = next,
                        found = env.position,
                        "the receipt spool skips positions; what follows the gap is not applied from it"
                    );
                    return Ok(out);
                }
                next += 1;
                out.push(env);
            }
        }
        Ok(out)
    }

    /// The last position spooled (0: nothing), as of the last append or scan.
    pub fn last(&self) -> u64 {
        self.lock().last
    }

    /// Bytes of whole records in the file, as of the last append or scan.
    pub fn len(&self) -> u64 {
        self.lock().len
    }

    /// Whether the spool holds nothing (as of the last append or scan).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves the file aside (`DATABASE-spool.refused-MILLIS`, kept for an operator) when the
    /// store refused its events; the next append starts a new file. Where it went.
    pub fn set_aside(&self) -> Result<PathBuf, SpoolError> {
        let mut inner = self.lock();
        inner.file = None;
        inner.len = 0;
        inner.last = 0;
        let kept = PathBuf::from(format!(
            "{}.refused-{}",
            self.path.display(),
            crate::model::clock::now()
        ));
        std::fs::rename(&self.path, &kept).map_err(self.io("move aside"))?;
        Ok(kept)
    }

    /// Empties the spool when everything in it is at or below `applied` and it is at least
    /// `min_bytes` long (`0`: whenever it holds anything). Whether it was emptied.
    pub fn recycle(&self, applied: u64, min_bytes: u64) -> Result<bool, SpoolError> {
        let mut inner = self.lock();
        if inner.file.is_none() {
            if !self.path.exists() {
                return Ok(false);
            }
            self.ready(&mut inner)?;
        }
        if inner.len == 0 || inner.len < min_bytes || inner.last > applied {
            return Ok(false);
        }
        let file = inner.file.as_mut().expect("opened");
        file.set_len(0).map_err(self.io("empty"))?;
        file.seek(SeekFrom::Start(0)).map_err(self.io("seek"))?;
        file.sync_data().map_err(self.io("fdatasync"))?;
        inner.len = 0;
        inner.last = 0;
        Ok(true)
    }

    /// Reads the file from the start: its whole records, where they end, their last position.
    fn scan(&self, file: &mut File) -> Result<Scan, SpoolError> {
        file.seek(SeekFrom::Start(0)).map_err(self.io("seek"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(self.io("read"))?;
        let mut scan = Scan::default();
        let mut at = 0usize;
        while let Some(record) = bytes.get(at..at + HEADER) {
            let word = |i: usize| u32::from_le_bytes(record[i..i + 4].try_into().expect("4"));
            let long = |i: usize| u64::from_le_bytes(record[i..i + 8].try_into().expect("8"));
            let (len, crc, first, last) = (word(0), word(4), long(8), long(16));
            if len > MAX_RECORD {
                break;
            }
            let Some(payload) = bytes.get(at + HEADER..at + HEADER + len as usize) else {
                break;
            };
            if checksum(first, last, payload) != crc {
                break;
            }
            let batch: Vec<Envelope> = codec::decode(payload).map_err(|_| SpoolError::Corrupt {
                path: self.path.display().to_string(),
                offset: at as u64,
            })?;
            let named = batch.first().map(|e| e.position) == Some(first)
                && batch.last().map(|e| e.position) == Some(last);
            if !named {
                return Err(SpoolError::Corrupt {
                    path: self.path.display().to_string(),
                    offset: at as u64,
                });
            }
            at += HEADER + len as usize;
            scan.last = last;
            scan.batches.push(batch);
        }
        if at < bytes.len() {
            tracing::warn!(
                spool = %self.path.display(),
                whole = at,
                bytes = bytes.len(),
                "the receipt spool ends in a torn record (never acknowledged): it is cut there"
            );
        }
        scan.len = at as u64;
        Ok(scan)
    }
}

/// One batch as the spool holds it (header and payload), encoded off the spool's lock (the
/// follower encodes as it reads the stream, and spools and applies in parallel).
#[derive(Debug, Clone)]
pub struct Record {
    first: u64,
    last: u64,
    bytes: Vec<u8>,
}

impl Record {
    /// The record of a non-empty batch (`None` for an empty one).
    pub fn of(batch: &[Envelope]) -> Option<Record> {
        let (first, last) = (batch.first()?.position, batch.last()?.position);
        // A batch that came off a frame encodes again within the codec's limit.
        let payload = codec::encode(&batch).ok()?;
        let mut bytes = Vec::with_capacity(HEADER + payload.len());
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&checksum(first, last, &payload).to_le_bytes());
        bytes.extend_from_slice(&first.to_le_bytes());
        bytes.extend_from_slice(&last.to_le_bytes());
        bytes.extend_from_slice(&payload);
        Some(Record { first, last, bytes })
    }

    /// The batch's last position.
    pub fn last(&self) -> u64 {
        self.last
    }
}

/// A record's CRC-32: over its positions and its payload.
fn checksum(first: u64, last: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&first.to_le_bytes());
    hasher.update(&last.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// What [`Spool::scan`] found.
#[derive(Default)]
struct Scan {
    batches: Vec<Vec<Envelope>>,
    len: u64,
    last: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(from: u64, to: u64) -> Vec<Envelope> {
        (from..=to)
            .map(|p| crate::wire::envelope::sample(p, 2))
            .collect()
    }

    fn positions(v: &[Envelope]) -> Vec<u64> {
        v.iter().map(|e| e.position).collect()
    }

    #[test]
    fn appended_batches_read_back_past_the_head_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ttx.db");
        let spool = Spool::beside(&db);
        assert!(spool.pending_after(0).unwrap().is_empty());
        assert_eq!(spool.append(&[batch(1, 3), batch(4, 4)]).unwrap(), 4);
        assert_eq!(spool.append(&[batch(5, 7)]).unwrap(), 7);
        assert_eq!(
            positions(&spool.pending_after(2).unwrap()),
            vec![3, 4, 5, 6, 7]
        );
        drop(spool);
        let again = Spool::beside(&db);
        assert_eq!(positions(&again.pending_after(0).unwrap()).len(), 7);
        assert_eq!(again.append(&[batch(8, 8)]).unwrap(), 8);
        assert!(again.pending_after(8).unwrap().is_empty());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(again.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_batch_that_does_not_follow_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::beside(&dir.path().join("ttx.db"));
        spool.append(&[batch(1, 2)]).unwrap();
        let err = spool.append(&[batch(4, 5)]).unwrap_err();
        assert!(
            err.to_string().contains("does not follow position 2"),
            "{err}"
        );
        assert_eq!(positions(&spool.pending_after(0).unwrap()), vec![1, 2]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_what_came_before_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ttx.db");
        let spool = Spool::beside(&db);
        spool.append(&[batch(1, 2), batch(3, 5)]).unwrap();
        let path = spool.path().to_path_buf();
        drop(spool);
        let whole = std::fs::read(&path).unwrap();
        // Cut inside the second record, then flip a byte of a copy's second record.
        std::fs::write(&path, &whole[..whole.len() - 3]).unwrap();
        let cut = Spool::beside(&db);
        assert_eq!(positions(&cut.pending_after(0).unwrap()), vec![1, 2]);
        assert_eq!(cut.append(&[batch(3, 3)]).unwrap(), 3);
        assert_eq!(positions(&cut.pending_after(0).unwrap()), vec![1, 2, 3]);
        drop(cut);
        let mut flipped = whole.clone();
        let n = flipped.len();
        flipped[n - 1] ^= 0xff;
        std::fs::write(&path, &flipped).unwrap();
        let bad = Spool::beside(&db);
        assert_eq!(positions(&bad.pending_after(0).unwrap()), vec![1, 2]);
    }

    #[test]
    fn a_spool_set_aside_is_kept_under_a_new_name_and_a_new_one_starts() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::beside(&dir.path().join("ttx.db"));
        spool.append(&[batch(5, 6)]).unwrap();
        let kept = spool.set_aside().unwrap();
        assert!(kept.to_string_lossy().contains("ttx.db-spool.refused-"));
        assert!(kept.exists() && !spool.path().exists());
        assert!(spool.pending_after(0).unwrap().is_empty());
        assert_eq!(spool.append(&[batch(1, 1)]).unwrap(), 1);
        assert!(std::fs::metadata(&kept).unwrap().len() > HEADER as u64);
    }

    #[test]
    fn recycling_waits_until_everything_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::beside(&dir.path().join("ttx.db"));
        assert!(!spool.recycle(0, 0).unwrap());
        spool.append(&[batch(1, 4)]).unwrap();
        assert!(!spool.recycle(3, 0).unwrap());
        assert!(!spool.recycle(4, 1 << 20).unwrap());
        assert!(spool.recycle(4, 0).unwrap());
        assert!(spool.pending_after(0).unwrap().is_empty());
        // After emptying, the next batch need not follow the old last position.
        assert_eq!(spool.append(&[batch(9, 9)]).unwrap(), 9);
    }
}
