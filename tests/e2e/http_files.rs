//! Static files of the `http` kind through the real binary with curl: entity tags and
//! preconditions, several ranges, gzip and brotli, a listing with hostile names, and
//! `cache_control`, all set in the configuration file; and `weft check` refusing the
//! file settings `weft run` refuses.

use std::net::SocketAddr;

use crate::check::both_refuse;
use crate::http::curl;
use crate::support::{App, free_port, spawn_app_with};

fn css() -> String {
    (0..200)
        .map(|i| format!(".c{i}{{padding:{i}px}}\n"))
        .collect()
}

fn start() -> (App, SocketAddr) {
    serving(
        |root| {
            std::fs::create_dir_all(root.join("dl")).unwrap();
            std::fs::write(root.join("site.css"), css()).unwrap();
            std::fs::write(root.join("digits.txt"), "0123456789").unwrap();
            std::fs::write(root.join("dl/<b onmouseover=x>.txt"), "x").unwrap();
        },
        "cache_control = \"public, max-age=600\"\ncompression = { min_bytes = 512 }\n",
    )
}

/// An HTTP service `web` listing the directories of its root, which `fill` makes;
/// `more` is TOML after its keys.
fn serving(fill: impl FnOnce(&std::path::Path), more: &str) -> (App, SocketAddr) {
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let app = spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir_all(&root).unwrap();
        fill(&root);
        format!(
            "\n[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\nroot = \"{root}\"\nlisting = true\n{more}",
            port = web.port(),
            root = root.display()
        )
    });
    (app, web)
}

/// The value of `name` in curl's dump of the response headers.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

#[test]
fn http_files_have_validators_ranges_codings_and_a_listing() {
    let (app, web) = start();

    let (code, head) = curl(web, &["-I"], "/digits.txt");
    assert_eq!(code, 200, "{}", app.log());
    // A file is not a directory.
    assert_eq!(curl(web, &[], "/digits.txt/").0, 404);
    let tag = header(&head, "etag").expect("an ETag");
    assert_eq!(
        header(&head, "cache-control").as_deref(),
        Some("public, max-age=600")
    );
    let (code, body) = curl(
        web,
        &["-H", &format!("If-None-Match: {tag}")],
        "/digits.txt",
    );
    assert_eq!((code, body.as_str()), (304, ""));
    let (code, _) = curl(web, &["-H", "If-Match: \"stale\""], "/digits.txt");
    assert_eq!(code, 412);

    let (code, body) = curl(web, &["-r", "0-1,8-9", "-D", "-"], "/digits.txt");
    assert_eq!(code, 206);
    assert!(
        body.contains("multipart/byteranges; boundary=") && body.contains("bytes 8-9/10"),
        "{body}"
    );

    let (code, body) = curl(web, &["--compressed", "-D", "-"], "/site.css");
    assert_eq!(code, 200);
    let (head, text) = body.split_once("\r\n\r\n").unwrap();
    assert!(header(head, "content-encoding").is_some(), "{head}");
    assert_eq!(
        header(head, "vary").as_deref(),
        Some("Accept-Encoding"),
        "{head}"
    );
    assert_eq!(text, css());
    let (_, head) = curl(web, &["-I", "-H", "Accept-Encoding: br"], "/site.css");
    assert_eq!(header(&head, "content-encoding").as_deref(), Some("br"));
    // Not compressed for HEAD only to count its bytes: no length is said.
    assert_eq!(header(&head, "content-length"), None, "{head}");
    assert!(header(&head, "etag").is_some(), "{head}");

    let (code, page) = curl(web, &[], "/dl/");
    assert_eq!(code, 200);
    assert!(page.contains("&lt;b onmouseover=x&gt;.txt"), "{page}");
    assert!(!page.contains("<b "), "{page}");

    // A listing's preconditions are evaluated as a file's (RFC 9110 §13.1: MUST), against
    // the page's own entity tag.
    let (code, head) = curl(web, &["-I"], "/dl/");
    assert_eq!(code, 200);
    let tag = header(&head, "etag").expect("a listing's ETag");
    for (asks, expected) in [
        (format!("If-None-Match: {tag}"), 304),
        ("If-None-Match: *".to_owned(), 304),
        ("If-None-Match: \"other\"".to_owned(), 200),
        (format!("If-Match: {tag}"), 200),
        ("If-Match: \"other\"".to_owned(), 412),
    ] {
        let (code, body) = curl(web, &["-H", &asks], "/dl/");
        assert_eq!(code, expected, "{asks}: {body}");
        assert_eq!(body.is_empty(), expected == 304, "{asks}: {body}");
    }
    // The listing changes with its directory, and so does its tag.
    std::fs::write(app.dir.path().join("public/dl/new.txt"), "n").unwrap();
    let (code, _) = curl(web, &["-H", &format!("If-None-Match: {tag}")], "/dl/");
    assert_eq!(code, 200, "a listing that changed is sent again");
}

#[test]
fn http_file_settings_are_refused_by_check_and_run_alike() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:{}\"\nroot = {:?}\n\
         compression = {{ min_bytes = 4096, max_bytes = 1024 }}\n",
        free_port(),
        dir.path().display().to_string()
    );
    both_refuse(
        dir.path(),
        &config,
        &["service[0].compression.min_bytes", "must not exceed"],
    );
}

/// A directory of 50,000 names is listed on the blocking pool, not the reactor: asked
/// for again and again, it never holds the reactor past the slow-callback threshold, and
/// the page lists the first 5,000 and says how many more there are.
#[test]
fn a_large_directory_is_listed_off_the_reactor() {
    let (app, web) = serving(
        |root| {
            let big = root.join("big");
            std::fs::create_dir_all(&big).unwrap();
            for i in 0..50_000 {
                std::fs::File::create(big.join(format!("file-{i:05}.txt"))).unwrap();
            }
        },
        "\n[inspect]\nslow_callback = \"20ms\"\n",
    );
    for _ in 0..4 {
        let (code, page) = curl(web, &[], "/big/");
        assert_eq!(code, 200, "{}", app.log());
        assert!(
            page.contains("\"file-04999.txt\""),
            "the first 5,000 in order"
        );
        assert!(!page.contains("\"file-05000.txt\""));
        assert!(
            page.contains("<p>45000 more not listed.</p>"),
            "{}",
            &page[page.len() - 200..]
        );
    }
    // On the reactor, each listing held it about 100 ms on a debug build: the slow
    // detector named the request's task four times.
    assert_eq!(
        app.metric(r#"weft_deferred_detections_total{detector="slow",service="web"}"#)
            .unwrap_or(0.0),
        0.0,
        "the reactor was not held\n{}",
        app.log()
    );
}

/// A file of weft's own given a name inside a root after the start (a hard link, as a
/// bind mount would do it) is not served by any method, nor as a precompressed sibling:
/// the configuration's check refuses such a root, but a name made later is no path it
/// can see. The configuration (with the dashboard's token), the history file and its
/// lock were served 200.
#[test]
fn weft_s_own_files_linked_into_a_root_while_it_runs_are_not_served() {
    let (app, web) = crate::http_peers::web_service("compression = { precompressed = true }");
    let root = app.dir.path().join("public");
    std::fs::write(root.join("a.css"), "body { color: red }\n".repeat(100)).unwrap();
    let own = [
        (app.config_path(), "conf.txt"),
        (app.dir.path().join("history.db"), "db.bin"),
        (app.dir.path().join("history.db.lock"), "lock.txt"),
        (app.config_path(), "a.css.gz"),
    ];
    for (file, name) in &own {
        std::fs::hard_link(file, root.join(name)).unwrap();
    }
    for name in ["/conf.txt", "/db.bin", "/lock.txt", "/a.css.gz"] {
        for method in ["-G", "-I"] {
            let (code, _) = curl(web, &[method], name);
            assert_eq!(code, 404, "{method} {name}");
        }
    }
    // The file the sibling stands beside is served as it is, never as the sibling.
    let (code, body) = curl(web, &["--compressed"], "/a.css");
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("body { color: red }"), "{body}");
    assert_eq!(
        crate::http_peers::curl_status(web, "127.0.0.1", "/f.txt", &[]),
        200
    );
    assert!(
        app.log().contains("a request reached a file of weft's own"),
        "{}",
        app.log()
    );
}

/// A private file stays so for the life of the process, and a path already answered
/// stops being served once its file is known private: the configuration renamed into
/// place anew (as editors and `sed -i` write it) left its old file, still linked inside
/// the root, served 200 with its secrets; and a link made in the second before the new
/// file was looked up, and answered then, was served on from the cache.
#[test]
fn a_private_file_stays_private_after_its_path_names_another_and_cached_answers_follow() {
    let (app, web) = crate::http_peers::web_service("");
    let root = app.dir.path().join("public");
    let config = app.config_path();
    std::fs::hard_link(&config, root.join("old.toml")).unwrap();
    assert_eq!(curl(web, &[], "/old.toml").0, 404);
    // Written anew and renamed into place: the old file keeps the old name inside root.
    let rewrite = || {
        let text = std::fs::read_to_string(&config).unwrap();
        let next = config.with_extension("new");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &config).unwrap();
    };
    rewrite();
    // The new file linked in at once, and asked for before it is looked up.
    std::fs::hard_link(&config, root.join("new.toml")).unwrap();
    let _ = curl(web, &[], "/new.toml");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(
        curl(web, &[], "/old.toml").0,
        404,
        "the old file stays private"
    );
    assert_eq!(
        curl(web, &[], "/new.toml").0,
        404,
        "a cached answer follows"
    );
    assert_eq!(curl(web, &[], "/f.txt").0, 200);
}
