//! Range requests over real sockets (RFC 9110 §14): several ranges as
//! `multipart/byteranges`, and the requests the service will not split up (overlapping or
//! too many ranges) answered whole and counted.

mod support;

use support::Server;
use weft_web::WebConfig;

fn site() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("digits.txt"), "0123456789").unwrap();
    let big: Vec<u8> = (0..600 * 1024).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), big).unwrap();
    let server = Server::start(WebConfig {
        root: Some(root),
        ..WebConfig::default()
    });
    (dir, server)
}

fn ranged(server: &Server, path: &str, range: &str) -> support::Reply {
    server.connect().request(&format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nRange: {range}\r\n\r\n"
    ))
}

/// The parts of a `multipart/byteranges` body: (Content-Range, bytes).
fn parts(reply: &support::Reply) -> Vec<(String, Vec<u8>)> {
    let ct = reply.header("content-type").unwrap();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {ct}"));
    let delimiter = format!("\r\n--{boundary}");
    let mut body = b"\r\n".to_vec();
    body.extend_from_slice(&reply.body);
    let text = body;
    let mut out = Vec::new();
    let mut rest = &text[..];
    loop {
        let at = find(rest, delimiter.as_bytes()).expect("a delimiter");
        rest = &rest[at + delimiter.len()..];
        if rest.starts_with(b"--") {
            return out;
        }
        let head_end = find(rest, b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        rest = &rest[head_end + 4..];
        let next = find(rest, delimiter.as_bytes()).unwrap();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .unwrap()
            .to_owned();
        assert!(head.contains("Content-Type: "), "{head}");
        out.push((range, rest[..next].to_vec()));
        rest = &rest[next..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn several_ranges_come_as_multipart_byteranges() {
    let (_dir, server) = site();
    let reply = ranged(&server, "/digits.txt", "bytes=0-1, 4-5,-2");
    assert_eq!(reply.status, 206);
    assert!(reply.header("content-range").is_none());
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
    assert_eq!(
        parts(&reply),
        [
            ("bytes 0-1/10".to_owned(), b"01".to_vec()),
            ("bytes 4-5/10".to_owned(), b"45".to_vec()),
            ("bytes 8-9/10".to_owned(), b"89".to_vec()),
        ]
    );
}

#[test]
fn ranges_of_a_large_file_stream_as_parts() {
    let (_dir, server) = site();
    let reply = ranged(&server, "/big.bin", "bytes=10-19,500000-500009");
    assert_eq!(reply.status, 206);
    let expect = |from: usize| {
        (from..from + 10)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
    };
    let got = parts(&reply);
    assert_eq!(got[0], ("bytes 10-19/614400".into(), expect(10)));
    assert_eq!(
        got[1],
        ("bytes 500000-500009/614400".into(), expect(500_000))
    );
}

#[test]
fn unsatisfiable_ranges_are_dropped_and_one_left_is_a_single_part() {
    let (_dir, server) = site();
    let reply = ranged(&server, "/digits.txt", "bytes=50-60, 3-4");
    assert_eq!(reply.status, 206);
    assert_eq!(reply.header("content-range"), Some("bytes 3-4/10"));
    assert_eq!(reply.text(), "34");
    let none = ranged(&server, "/digits.txt", "bytes=50-60, 70-");
    assert_eq!(none.status, 416);
    assert_eq!(none.header("content-range"), Some("bytes */10"));
}

#[test]
fn overlapping_or_too_many_ranges_get_the_whole_file_and_are_counted() {
    let (_dir, server) = site();
    let overlapping = ranged(&server, "/digits.txt", "bytes=0-5,3-8");
    assert_eq!(
        (overlapping.status, overlapping.text().as_str()),
        (200, "0123456789")
    );
    let many = (0..40)
        .map(|i| format!("{i}-{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let reply = ranged(&server, "/big.bin", &format!("bytes={many}"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 600 * 1024);
    assert_eq!(server.recorded.refused("ranges"), 2);
}

/// The descriptors this process holds open on `path`.
fn open_on(path: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target == path)
        .count()
}

/// A request for many ranges of a file read from disk holds one descriptor, as one for
/// the whole file does: a descriptor a range let a few clients that stop reading take
/// every descriptor of the process.
#[test]
fn many_ranges_of_a_file_on_disk_hold_one_descriptor_and_come_whole() {
    let (dir, server) = site();
    let path = dir.path().join("public/huge.bin");
    let len = 16 << 20;
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &bytes).unwrap();
    let path = path.canonicalize().unwrap();
    let ranges: Vec<(usize, usize)> = (0..6).map(|i| (i << 21, (i << 21) + 2_000_000)).collect();
    let spec: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    let mut client = server.connect();
    client.send(
        format!(
            "GET /huge.bin HTTP/1.1\r\nHost: t\r\nRange: bytes={}\r\n\r\n",
            spec.join(",")
        )
        .as_bytes(),
    );
    // Unread, the answer stops once the socket's buffers are full, its file still open.
    weft_test_support::eventually("the file is open", || open_on(&path) > 0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        open_on(&path),
        1,
        "one descriptor for {} ranges",
        ranges.len()
    );
    let reply = client.read_reply(false);
    assert_eq!(reply.status, 206);
    let got = parts(&reply);
    assert_eq!(got.len(), ranges.len());
    for ((range, body), (a, b)) in got.iter().zip(&ranges) {
        assert_eq!(range, &format!("bytes {a}-{b}/{len}"));
        assert!(body[..] == bytes[*a..=*b], "the bytes of {range}");
    }
    weft_test_support::eventually("the file is closed", || open_on(&path) == 0);
}
