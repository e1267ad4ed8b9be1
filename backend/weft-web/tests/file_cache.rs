//! Hot files are kept in memory and revalidated with one `stat` per request, or once per
//! `REVALIDATE_EVERY` while requests for them come fast: a file changed on disk is served
//! fresh by the very next request, however it was changed, or, under load, by every
//! request that starts that long after the change.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::Server;
use weft_web::WebConfig;

/// Requests `path` (each answer must be `expect`) until the file has been unchanged for
/// longer than the service waits before it keeps a file's bytes, and once more after
/// that, so the answers that follow come from memory if they can.
fn settle(server: &Server, file: &Path, path: &str, expect: &[u8]) {
    let meta = std::fs::metadata(file).unwrap();
    let changed = UNIX_EPOCH
        + Duration::new(
            u64::try_from(meta.ctime()).unwrap(),
            u32::try_from(meta.ctime_nsec()).unwrap(),
        );
    // The filesystem's own clock decides when a file has settled: nothing to pause.
    let settled = changed + Duration::from_millis(1500);
    loop {
        let reply = server.get(path);
        assert_eq!(reply.status, 200);
        assert!(reply.body == expect, "{path} is served as it is on disk");
        if SystemTime::now() > settled {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.get(path).body == expect);
}

fn set_modified(file: &Path, mtime: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

#[test]
fn a_kept_file_changed_on_disk_is_served_fresh_by_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir_all(&root).unwrap();
    let page = root.join("page.html");
    std::fs::write(&page, "version 1").unwrap();
    // Beyond what is read on the reactor thread, within what is kept.
    let big = root.join("big.bin");
    std::fs::write(&big, vec![1u8; 600 * 1024]).unwrap();
    let server = Server::start(WebConfig {
        root: Some(root.clone()),
        ..WebConfig::default()
    });

    settle(&server, &page, "/page.html", b"version 1");
    // Rewritten in place with its size and modification time kept (`cp -p`).
    let mtime = std::fs::metadata(&page).unwrap().modified().unwrap();
    std::fs::write(&page, "version 2").unwrap();
    set_modified(&page, mtime);
    assert_eq!(server.get("/page.html").text(), "version 2");

    settle(&server, &page, "/page.html", b"version 2");
    // Replaced by a rename, same size and time.
    let next = root.join("next.tmp");
    std::fs::write(&next, "version 3").unwrap();
    set_modified(&next, mtime);
    std::fs::rename(&next, &page).unwrap();
    assert_eq!(server.get("/page.html").text(), "version 3");

    settle(&server, &page, "/page.html", b"version 3");
    // Turned into a symlink out of the root: refused, as it would be at first sight.
    std::fs::write(dir.path().join("secret.txt"), "version 4").unwrap();
    std::fs::remove_file(&page).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), &page).unwrap();
    assert_eq!(server.get("/page.html").status, 404);
    std::fs::remove_file(&page).unwrap();
    assert_eq!(server.get("/page.html").status, 404);

    settle(&server, &big, "/big.bin", &vec![1u8; 600 * 1024]);
    std::fs::write(&big, vec![2u8; 600 * 1024]).unwrap();
    assert!(server.get("/big.bin").body == vec![2u8; 600 * 1024]);
    let range = server
        .connect()
        .request("GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-3\r\n\r\n");
    assert_eq!(range.status, 206);
    assert_eq!(range.body, [2, 2, 2, 2]);
}

#[test]
fn a_hot_file_changed_on_disk_is_served_fresh_within_the_revalidation_interval() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir_all(&root).unwrap();
    let page = root.join("page.html");
    std::fs::write(&page, "version 1").unwrap();
    let server = Server::start(WebConfig {
        root: Some(root.clone()),
        ..WebConfig::default()
    });
    settle(&server, &page, "/page.html", b"version 1");

    let mut client = server.connect();
    let mut get = || client.request("GET /page.html HTTP/1.1\r\nHost: t\r\n\r\n");
    // Hot: far more requests than HOT_REQUESTS within an interval.
    for _ in 0..20 * weft_web::HOT_REQUESTS {
        assert_eq!(get().text(), "version 1");
    }
    std::fs::write(&page, "version 2, longer").unwrap();
    let changed = Instant::now();
    loop {
        let sent = Instant::now();
        let reply = get();
        if reply.text() == "version 2, longer" {
            break;
        }
        assert_eq!(reply.text(), "version 1", "{reply:?}");
        assert!(
            sent.duration_since(changed) < weft_web::REVALIDATE_EVERY,
            "a request sent {:?} after the change was answered with the old version",
            sent.duration_since(changed)
        );
    }
    for _ in 0..10 {
        assert_eq!(get().text(), "version 2, longer");
    }
}
