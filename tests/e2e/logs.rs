//! What the process writes for people and log shippers: JSON lines on stderr with
//! `[log] format = "json"` or `--log-format json` (the flag wins), and an HTTP access log
//! file in Combined Log Format that logrotate can rotate with SIGUSR1.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Map, Value};

use crate::assert_eventually;
use crate::http::curl;
use crate::support::{App, free_port, spawn_app_args, weft_bin};

/// An http service named `web` on `port` serving `hello.txt` (6 bytes), with `keys` added.
fn web_service(dir: &Path, port: u16, keys: &str) -> String {
    let root = dir.join("public");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), "hello\n").unwrap();
    format!(
        r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
root = "{root}"
{keys}
"#,
        root = root.display()
    )
}

fn start(args: &[&str], top: &str, web_keys: &str) -> (App, SocketAddr) {
    let port = free_port();
    let app = spawn_app_args(args, |dir| {
        format!("{}\n{top}\n", web_service(dir, port, web_keys))
    });
    let web: SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eventually!(
        TcpStream::connect(web).is_ok(),
        "web listens\n{}",
        app.log()
    );
    (app, web)
}

/// Every line of the process's stderr as a JSON object; fails naming a line that is not.
fn json_lines(log: &str) -> Vec<Map<String, Value>> {
    log.lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Object(object)) => object,
            _ => panic!("not a JSON object: {line:?}\n{log}"),
        })
        .collect()
}

/// `line[key]`, null when absent.
fn field<'a>(line: &'a Map<String, Value>, key: &str) -> &'a Value {
    line.get(key).unwrap_or(&Value::Null)
}

fn access_events(log: &str) -> Vec<Map<String, Value>> {
    json_lines(log)
        .into_iter()
        .filter(|l| field(l, "target") == "weft_web::access")
        .collect()
}

#[test]
fn log_format_json_writes_one_json_object_per_line_with_fields() {
    let (mut app, web) = start(&[], "[log]\nformat = \"json\"", "");
    assert_eq!(
        curl(web, &["-A", "probe/1"], "/hello.txt"),
        (200, "hello\n".into())
    );
    assert_eventually!(
        access_events(&app.log()).len() == 1,
        "an access event\n{}",
        app.log()
    );
    let lines = json_lines(&app.log());
    for line in &lines {
        for key in ["timestamp", "level", "target"] {
            assert!(line.contains_key(key), "{key} missing: {line:?}");
        }
    }
    assert!(
        lines.iter().any(|l| field(l, "message") == "serving"
            && field(l, "service") == "echo"
            && field(l, "level") == "INFO"),
        "the fields of an event are keys of its object\n{}",
        app.log()
    );
    let access = access_events(&app.log()).remove(0);
    assert_eq!(access["service"], "web");
    assert_eq!(access["client"], "127.0.0.1");
    assert_eq!(access["request"], "GET /hello.txt HTTP/1.1");
    assert_eq!(access["status"], 200);
    assert_eq!(access["bytes"], 6);
    assert_eq!(access["user_agent"], "probe/1");
    assert!(access["duration_ms"].is_number(), "{access:?}");
    assert!(
        !access.contains_key("message"),
        "fields, not a preformatted line: {access:?}"
    );

    let status = app.signal_and_wait("TERM");
    assert!(status.success(), "{}", app.log());
    assert!(
        json_lines(&app.log())
            .iter()
            .any(|l| field(l, "message") == "stopped"),
        "{}",
        app.log()
    );
}

#[test]
fn the_log_format_flag_wins_over_the_file() {
    let (app, _) = start(&["--log-format", "text"], "[log]\nformat = \"json\"", "");
    let log = app.log();
    assert!(log.contains("serving"), "{log}");
    assert!(
        log.lines().all(|l| !l.starts_with('{')),
        "text lines, as the flag says\n{log}"
    );
    drop(app);

    let (app, _) = start(&["--log-format", "json"], "", "");
    assert!(app.log().contains("serving"), "{}", app.log());
    json_lines(&app.log());
}

/// A `weft run` started here rather than through `spawn_app`, ended when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn rust_log_chooses_what_a_json_log_holds() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "[dashboard]\nlisten = \"tcp:{}:interface=127.0.0.1\"\n\n[store]\npath = \"{}\"\n\n\
         [log]\nformat = \"json\"\n{}",
        free_port(),
        dir.path().join("history.db").display(),
        web_service(dir.path(), port, "")
    );
    std::fs::write(dir.path().join("weft.toml"), config).unwrap();
    let log_path = dir.path().join("weft.log");
    let _app = Running(
        Command::new(weft_bin())
            .args(["run", "--config"])
            .arg(dir.path().join("weft.toml"))
            .env("RUST_LOG", "warn,weft_web::access=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let web: SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eventually!(TcpStream::connect(web).is_ok(), "web listens\n{}", log());
    assert_eq!(curl(web, &[], "/hello.txt").0, 200);
    assert_eventually!(
        access_events(&log()).len() == 1,
        "the access target is let through at info\n{}",
        log()
    );
    let lines = json_lines(&log());
    assert!(
        lines
            .iter()
            .all(|l| field(l, "level") != "INFO" || field(l, "target") == "weft_web::access"),
        "no other info line, as RUST_LOG says\n{}",
        log()
    );
}

/// The lines of `path`, none if it does not exist.
fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_access_log_file_is_combined_log_format_and_sigusr1_reopens_it() {
    let port = free_port();
    let mut log = None;
    let app = spawn_app_args(&[], |dir| {
        let path = dir.join("access.log");
        log = Some(path.clone());
        web_service(
            dir,
            port,
            &format!("access_log = {:?}", path.display().to_string()),
        )
    });
    let (web, log) = (SocketAddr::from(([127, 0, 0, 1], port)), log.unwrap());
    let rotated = log.with_extension("log.1");
    assert_eventually!(
        TcpStream::connect(web).is_ok(),
        "web listens\n{}",
        app.log()
    );
    let get = || assert_eq!(curl(web, &["-A", "probe/1"], "/hello.txt").0, 200);

    for _ in 0..3 {
        get();
    }
    assert_eventually!(
        lines_of(&log).len() == 3,
        "three lines, flushed within a second: {:?}",
        lines_of(&log)
    );
    for line in lines_of(&log) {
        let (client, rest) = line.split_once(" - - [").expect(&line);
        assert_eq!(client, "127.0.0.1", "{line}");
        let (date, rest) = rest.split_once("] ").expect(&line);
        assert!(date.ends_with(" +0000") && date.len() == 26, "{date}");
        assert_eq!(rest, r#""GET /hello.txt HTTP/1.1" 200 6 "-" "probe/1""#);
    }
    assert!(
        !app.log().contains("weft_web::access"),
        "a service with a file logs to the file only\n{}",
        app.log()
    );

    // logrotate: rename, then SIGUSR1; lines in between go to the renamed file.
    std::fs::rename(&log, &rotated).unwrap();
    get();
    get();
    app.signal("USR1");
    assert_eventually!(log.exists(), "reopened at its path\n{}", app.log());
    for _ in 0..3 {
        get();
    }
    let mut app = app;
    let status = app.signal_and_wait("TERM");
    assert!(status.success(), "{}", app.log());
    // What was still buffered at exit is written too.
    assert_eq!(lines_of(&rotated).len(), 5, "{:?}", lines_of(&rotated));
    assert_eq!(lines_of(&log).len(), 3, "{:?}", lines_of(&log));
    assert!(app.log().contains("reopened"), "{}", app.log());
}

#[test]
fn an_access_log_that_cannot_be_written_is_counted_and_logged_once() {
    let (mut app, web) = start(&[], "", "access_log = \"/dev/full\"");
    for _ in 0..3 {
        assert_eq!(curl(web, &[], "/hello.txt").0, 200, "serving goes on");
    }
    let series = r#"weft_http_access_log_dropped_total{reason="write",service="web"}"#;
    assert_eventually!(
        app.metric(series) == Some(3.0),
        "three lines lost\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(
        app.metric(r#"weft_http_access_log_dropped_total{reason="queue_full",service="web"}"#),
        Some(0.0)
    );
    let errors = app
        .log()
        .lines()
        .filter(|l| l.contains("cannot write the access log"))
        .count();
    assert_eq!(errors, 1, "logged once\n{}", app.log());
    let status = app.signal_and_wait("TERM");
    assert!(status.success(), "{}", app.log());
}
