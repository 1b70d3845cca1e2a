//! Static files from a verified snapshot: Range, conditional GET, streaming.
//!
//! Names are checked by [`crate::repo::is_flat_name`] before a path is ever
//! built, and files are opened with `O_NOFOLLOW`, so neither `..` (plain or
//! encoded: `%` is not a name character) nor a symlink can lead out of the
//! snapshot. The body streams from disk in fixed-size chunks: memory does
//! not grow with file size. Files up to 64 KiB (metadata, small targets)
//! are kept in memory per snapshot after their first read ([`SmallFiles`]).
//!
//! Reads are synchronous on the worker thread, on purpose: see [`serve`].

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Frame;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use std::io::{Read, Seek};
use std::os::unix::fs::OpenOptionsExt;

/// The body type of every response.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A small in-memory body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A response with a small text body.
pub fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(full(msg.into() + "\n"));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

const CHUNK: usize = 256 * 1024;

/// IMF-fixdate (RFC 9110 5.6.7), written directly: chrono's strftime
/// parser showed up in profiles at tens of thousands of requests per second.
fn http_date(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().num_days_from_monday() as usize],
        t.day(),
        MONTHS[t.month0() as usize],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".json") {
        "application/json"
    } else if name.ends_with(".efi") {
        "application/efi"
    } else {
        "application/octet-stream"
    }
}

/// A byte range to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The whole file.
    Full,
    /// `start..=end`.
    Part(u64, u64),
    /// Not satisfiable.
    Unsatisfiable,
}

/// Parses a `Range` header against a file of `len` bytes. One range only;
/// a multi-range or malformed header is ignored (the whole file is sent,
/// as RFC 9110 allows).
pub fn parse_range(value: &str, len: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let digits = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|c| c.is_ascii_digit());
    if a.is_empty() {
        if !digits(b) {
            return Range::Full;
        }
        let n: u64 = b.parse().unwrap_or(0);
        if n == 0 || len == 0 {
            return Range::Unsatisfiable;
        }
        return Range::Part(len.saturating_sub(n), len - 1);
    }
    if !digits(a) || !(b.is_empty() || digits(b)) {
        return Range::Full;
    }
    let start: u64 = a.parse().unwrap_or(u64::MAX);
    if start >= len {
        return Range::Unsatisfiable;
    }
    let end = if b.is_empty() {
        len - 1
    } else {
        let e: u64 = b.parse().unwrap_or(u64::MAX);
        if e < start {
            return Range::Full;
        }
        e.min(len - 1)
    };
    Range::Part(start, end)
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t.trim_start_matches("W/") == etag
    })
}

/// Small files of one verified snapshot directory, kept in memory after
/// their first read: a request for a cached file costs no open, fstat,
/// read or close (together about 15% of bootd's CPU time per 1 KiB request
/// in profiles).
///
/// Safe because a snapshot directory never changes once verified (a new
/// publish is a new directory with a new cache), and what is cached is
/// read from that directory exactly as it would be served. Bounded by
/// [`CACHE_MAX_BYTES`] and [`CACHE_MAX_FILES`]; beyond those, files are
/// served from disk.
#[derive(Debug, Default)]
pub struct SmallFiles {
    files: std::sync::RwLock<std::collections::HashMap<String, Arc<Cached>>>,
}

/// At most this many bytes of file content per [`SmallFiles`].
pub const CACHE_MAX_BYTES: usize = 32 << 20;
/// At most this many files per [`SmallFiles`].
pub const CACHE_MAX_FILES: usize = 4096;

impl SmallFiles {
    fn get(&self, name: &str) -> Option<Arc<Cached>> {
        self.files.read().ok()?.get(name).cloned()
    }

    fn insert(&self, name: &str, file: &Arc<Cached>) {
        let Ok(mut files) = self.files.write() else {
            return;
        };
        let bytes: usize = files.values().map(|c| c.body.len()).sum();
        if files.len() < CACHE_MAX_FILES && bytes + file.body.len() <= CACHE_MAX_BYTES {
            files.entry(name.to_owned()).or_insert_with(|| file.clone());
        }
    }
}

/// What a response needs to know about a file.
#[derive(Debug)]
struct Validators {
    len: u64,
    mtime: i64,
    etag: HeaderValue,
    last_modified: HeaderValue,
    content_type: &'static str,
}

impl Validators {
    fn of(meta: &std::fs::Metadata, name: &str) -> Validators {
        let len = meta.len();
        let mtime = DateTime::from_timestamp(meta.mtime(), 0).unwrap_or_default();
        let etag = format!(
            "\"{:x}-{:x}-{:x}\"",
            len,
            meta.mtime() as u64 ^ ((meta.mtime_nsec() as u64) << 32),
            meta.ino()
        );
        Validators {
            len,
            mtime: mtime.timestamp(),
            // Hex digits and quotes; an IMF-fixdate: both always valid.
            etag: HeaderValue::try_from(etag).unwrap_or(HeaderValue::from_static("\"\"")),
            last_modified: HeaderValue::try_from(http_date(mtime))
                .unwrap_or(HeaderValue::from_static("")),
            content_type: content_type(name),
        }
    }
}

/// A small file's validators and content.
#[derive(Debug)]
struct Cached {
    validators: Validators,
    body: Bytes,
}

/// What to answer, from the validators and the request's conditional and
/// Range headers.
enum Answer {
    NotModified,
    Unsatisfiable,
    Send {
        status: StatusCode,
        start: u64,
        count: u64,
    },
}

fn answer(v: &Validators, headers: &HeaderMap) -> Answer {
    let etag = v.etag.to_str().unwrap_or_default();
    // RFC 9110 13.2.2: If-None-Match first; If-Modified-Since only without it.
    let not_modified = match headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        Some(list) => etag_matches(list, etag),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
            .is_some_and(|since| v.mtime <= since.timestamp()),
    };
    if not_modified {
        return Answer::NotModified;
    }
    let mut range = headers
        .get(header::RANGE)
        .and_then(|h| h.to_str().ok())
        .map(|h| parse_range(h, v.len))
        .unwrap_or(Range::Full);
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        if if_range.trim() != etag {
            range = Range::Full;
        }
    }
    match range {
        Range::Full => Answer::Send {
            status: StatusCode::OK,
            start: 0,
            count: v.len,
        },
        Range::Part(s, e) => Answer::Send {
            status: StatusCode::PARTIAL_CONTENT,
            start: s,
            count: e - s + 1,
        },
        Range::Unsatisfiable => Answer::Unsatisfiable,
    }
}

/// The response for `v` and `headers`, its body from `body(start, count)`
/// when there is one to send (an error there is a 500 saying what failed).
fn respond(
    v: &Validators,
    method: &Method,
    headers: &HeaderMap,
    cache_control: &'static str,
    body: impl FnOnce(u64, u64) -> Result<Body, &'static str>,
) -> Response<Body> {
    let mut resp = Response::builder()
        .header(header::ETAG, v.etag.clone())
        .header(header::LAST_MODIFIED, v.last_modified.clone())
        .header(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"))
        .header(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
    let (status, start, count) = match answer(v, headers) {
        Answer::NotModified => {
            return resp
                .status(StatusCode::NOT_MODIFIED)
                .body(full(Bytes::new()))
                .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response"));
        }
        Answer::Unsatisfiable => {
            return resp
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{}", v.len))
                .body(full(Bytes::new()))
                .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response"));
        }
        Answer::Send {
            status,
            start,
            count,
        } => (status, start, count),
    };
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{}", start + count - 1, v.len),
        );
    }
    resp = resp
        .status(status)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static(v.content_type),
        )
        .header(header::CONTENT_LENGTH, count);
    if method == Method::HEAD || count == 0 {
        return resp
            .body(full(Bytes::new()))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response"));
    }
    match body(start, count) {
        Ok(b) => resp
            .body(b)
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response")),
        Err(what) => text(StatusCode::INTERNAL_SERVER_ERROR, what),
    }
}

/// Serves `root/sub/name` (name already checked to be flat) for GET or
/// HEAD; `cache` holds that directory's small files.
pub async fn serve(
    root: &Path,
    sub: &str,
    cache: &SmallFiles,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
    cache_control: &'static str,
) -> Response<Body> {
    if let Some(c) = cache.get(name) {
        return respond(&c.validators, method, headers, cache_control, |s, n| {
            Ok(full(c.body.slice(s as usize..(s + n) as usize)))
        });
    }
    let path = root.join(sub).join(name);
    // Synchronous open/fstat/read: the files are bootd's own verified
    // snapshot, normally in the page cache, where a read is a memcpy; a
    // thread hand-off per call (tokio::fs) costs more than the read itself.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path);
    let mut file = match file {
        Ok(f) => f,
        Err(_) => return text(StatusCode::NOT_FOUND, "not found"),
    };
    let meta = match file.metadata() {
        Ok(m) if m.is_file() => m,
        _ => return text(StatusCode::NOT_FOUND, "not found"),
    };
    let validators = Validators::of(&meta, name);
    if validators.len <= SMALL {
        let mut body = vec![0; validators.len as usize];
        if file.read_exact(&mut body).is_err() {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "read failed");
        }
        let c = Arc::new(Cached {
            validators,
            body: Bytes::from(body),
        });
        cache.insert(name, &c);
        return respond(&c.validators, method, headers, cache_control, |s, n| {
            Ok(full(c.body.slice(s as usize..(s + n) as usize)))
        });
    }
    respond(
        &validators,
        method,
        headers,
        cache_control,
        |start, count| {
            if start > 0 && file.seek(std::io::SeekFrom::Start(start)).is_err() {
                return Err("seek failed");
            }
            Ok(FileBody {
                file,
                remaining: count,
            }
            .boxed_unsync())
        },
    )
}

/// Files up to this size are read in one go (and cached, see [`SmallFiles`]).
const SMALL: u64 = 64 * 1024;

/// Streams `remaining` bytes of a file in [`CHUNK`]-sized frames: memory
/// stays at the chunks hyper has not sent yet, whatever the file size.
struct FileBody {
    file: std::fs::File,
    remaining: u64,
}

/// Chunk buffers that hyper has sent and dropped, kept for the next reads
/// on this serving thread. A fresh 256 KiB buffer per chunk cost page
/// faults, `madvise` and zeroing: about a tenth of the CPU time of a large
/// download in profiles. Bounded: at most [`POOL_MAX`] buffers per thread.
mod pool {
    use std::cell::RefCell;

    pub(super) const POOL_MAX: usize = 8;

    thread_local! {
        static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// A chunk buffer whose first `len` bytes are the data; back to the
    /// pool when the last `Bytes` pointing into it is dropped.
    pub(super) struct Chunk {
        buf: Vec<u8>,
        len: usize,
    }

    impl Chunk {
        /// A buffer of [`super::CHUNK`] initialised bytes (zeroed only when new).
        pub(super) fn take() -> Vec<u8> {
            FREE.try_with(|f| f.try_borrow_mut().ok()?.pop())
                .ok()
                .flatten()
                .unwrap_or_else(|| vec![0; super::CHUNK])
        }

        pub(super) fn new(buf: Vec<u8>, len: usize) -> Chunk {
            Chunk { buf, len }
        }
    }

    impl AsRef<[u8]> for Chunk {
        fn as_ref(&self) -> &[u8] {
            &self.buf[..self.len]
        }
    }

    impl Drop for Chunk {
        fn drop(&mut self) {
            let buf = std::mem::take(&mut self.buf);
            // On a thread being torn down the buffer is simply freed.
            let _gone = FREE.try_with(|f| {
                if let Ok(mut f) = f.try_borrow_mut() {
                    if f.len() < POOL_MAX {
                        f.push(buf);
                    }
                }
            });
        }
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        let want = self.remaining.min(CHUNK as u64) as usize;
        let mut buf = pool::Chunk::take();
        let n = match self.file.read(&mut buf[..want]) {
            Ok(0) => {
                return std::task::Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shrank while being served",
                ))))
            }
            Ok(n) => n,
            Err(e) => return std::task::Poll::Ready(Some(Err(e))),
        };
        self.remaining -= n as u64;
        let chunk = Bytes::from_owner(pool::Chunk::new(buf, n));
        std::task::Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Range::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Range::Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Range::Part(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), Range::Part(0, 99));
        assert_eq!(parse_range("bytes=50-1000", 100), Range::Part(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Range::Full);
        assert_eq!(parse_range("bytes=9-3", 100), Range::Full);
        assert_eq!(parse_range("items=0-1", 100), Range::Full);
        assert_eq!(parse_range("bytes=a-b", 100), Range::Full);
        assert_eq!(parse_range("bytes=99999999999999999999-", 100), Range::Full);
    }

    #[test]
    fn http_dates_match_strftime() {
        for secs in [0i64, 784_111_777, 1_700_000_000, 4_102_444_799] {
            let t = DateTime::from_timestamp(secs, 0).unwrap();
            assert_eq!(
                http_date(t),
                t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
            );
            let back = DateTime::parse_from_rfc2822(&http_date(t)).unwrap();
            assert_eq!(back.timestamp(), secs);
        }
    }

    async fn get(
        root: &Path,
        cache: &SmallFiles,
        name: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(k, HeaderValue::from_str(v).unwrap());
        }
        let r = serve(root, "metadata", cache, name, &Method::GET, &h, "no-cache").await;
        let (parts, body) = r.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, body)
    }

    #[test]
    fn a_cached_file_answers_like_the_file_on_disk() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("metadata")).unwrap();
            std::fs::write(dir.path().join("metadata/a.json"), b"0123456789").unwrap();
            let big = vec![7u8; SMALL as usize + 1];
            std::fs::write(dir.path().join("metadata/big.json"), &big).unwrap();
            let cache = SmallFiles::default();
            let first = get(dir.path(), &cache, "a.json", &[]).await;
            assert_eq!(first.0, StatusCode::OK);
            assert!(cache.get("a.json").is_some());
            let again = get(dir.path(), &cache, "a.json", &[]).await;
            assert_eq!((first.0, &first.1, &first.2), (again.0, &again.1, &again.2));
            let etag = first.1[header::ETAG].to_str().unwrap().to_owned();
            let part = get(
                dir.path(),
                &cache,
                "a.json",
                &[(header::RANGE, "bytes=2-4")],
            )
            .await;
            assert_eq!(part.0, StatusCode::PARTIAL_CONTENT);
            assert_eq!(&part.2[..], b"234");
            assert_eq!(part.1[header::CONTENT_RANGE], "bytes 2-4/10");
            let cond = get(
                dir.path(),
                &cache,
                "a.json",
                &[(header::IF_NONE_MATCH, &etag)],
            )
            .await;
            assert_eq!(cond.0, StatusCode::NOT_MODIFIED);
            // Larger files stream from disk and are not cached.
            let b = get(dir.path(), &cache, "big.json", &[]).await;
            assert_eq!((b.0, b.2.len()), (StatusCode::OK, big.len()));
            assert!(cache.get("big.json").is_none());
            assert_eq!(
                get(dir.path(), &cache, "missing.json", &[]).await.0,
                StatusCode::NOT_FOUND
            );
        });
    }

    #[test]
    fn etag_lists() {
        assert!(etag_matches("\"a\", \"b\"", "\"b\""));
        assert!(etag_matches("W/\"b\"", "\"b\""));
        assert!(etag_matches("*", "\"b\""));
        assert!(!etag_matches("\"c\"", "\"b\""));
    }
}
