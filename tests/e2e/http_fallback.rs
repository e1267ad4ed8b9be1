//! `fallback` on the `http` kind, on the real binary with curl: a single-page
//! application's own routes (paths no file is at) are answered with its page, while its
//! files are served as they are and other methods are refused as for any file.

use std::net::SocketAddr;

use crate::http::curl as get;
use crate::support::{free_port, spawn_app_with};

#[test]
fn paths_no_file_is_at_get_the_app_s_page_and_its_files_are_served() {
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _app = spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir_all(root.join("assets")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(root.join("index.html"), "<div id=app></div>\n").unwrap();
        std::fs::write(root.join("assets/app.js"), "start()\n").unwrap();
        format!(
            "[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\nroot = \"{root}\"\n\
             fallback = \"/index.html\"\ncache_control = \"public, max-age=31536000\"\n",
            port = web.port(),
            root = root.display(),
        )
    });
    let page = (200, "<div id=app></div>\n".to_owned());
    // The app's own routes, however deep, and a directory without an index, with its
    // slash or without (no redirect to a slash that leads nowhere).
    assert_eq!(get(web, &[], "/settings/profile?tab=2"), page);
    assert_eq!(get(web, &[], "/empty/"), page);
    assert_eq!(get(web, &[], "/empty"), page);
    // The page comes with `no-cache`, not the files' year: a URL answered with it may be
    // a file of the next deploy.
    let (_, head) = get(web, &["-I"], "/settings");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("cache-control: no-cache"), "{head}");
    let (_, file) = get(web, &["-I"], "/assets/app.js");
    assert!(
        file.to_ascii_lowercase()
            .contains("cache-control: public, max-age=31536000"),
        "{file}"
    );
    // Its files as they are.
    assert_eq!(
        get(web, &[], "/assets/app.js"),
        (200, "start()\n".to_owned())
    );
    // HEAD: the page's head alone.
    let (code, body) = get(web, &["-I"], "/deep/link");
    assert_eq!(code, 200);
    assert!(
        body.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{body}"
    );
    // Other methods are refused as for any file, and paths that climb out still are.
    assert_eq!(get(web, &["-X", "POST"], "/settings").0, 405);
    assert_eq!(get(web, &["--path-as-is"], "/../secret").0, 400);
}
