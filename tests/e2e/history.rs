//! History across runs and files: a file an older release wrote is served after an upgrade,
//! what a killed process left open is closed at the next start, a file deleted at run time
//! gets its services back, a file another program holds locked at start is written once it
//! is let go, and a second process on a file in use is refused.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::assert_eventually;
use crate::support::{App, free_port, query, spawn_app, spawn_app_with, weft_bin};

/// The file `weft 0.1.0` wrote (`backend/weft-store/tests/data/README.md`).
const RELEASED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../backend/weft-store/tests/data/history-v0.1.0.db"
);

fn json(app: &App, path: &str) -> Value {
    let body = app
        .curl(path)
        .unwrap_or_else(|| panic!("{path} answers\n{}", app.log()));
    serde_json::from_str(&body).unwrap()
}

fn items(app: &App, path: &str) -> Vec<Value> {
    json(app, path)["items"].as_array().unwrap().clone()
}

/// The connection ids the released file holds, read from a copy of it (opening the file in
/// WAL mode would write beside it).
fn released_connection_ids() -> HashSet<i64> {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("released.db");
    std::fs::copy(RELEASED, &copy).unwrap();
    query(&copy, async |c| {
        let ids: Vec<(i64,)> = sqlx::query_as("SELECT id FROM connections")
            .fetch_all(c)
            .await
            .unwrap();
        ids.into_iter().map(|(id,)| id).collect()
    })
}

#[test]
fn a_history_file_written_by_0_1_0_is_served_after_the_upgrade() {
    let app = spawn_app_with(|dir: &Path| {
        std::fs::copy(RELEASED, dir.join("history.db")).unwrap();
        String::new()
    });

    let closed = items(&app, "/api/connections?state=closed&limit=1000");
    let ids: HashSet<i64> = closed.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    let released = released_connection_ids();
    assert_eq!(released.len(), 64);
    assert_eq!(
        ids, released,
        "every connection 0.1.0 recorded, and only those"
    );
    let reset: Vec<&Value> = closed
        .iter()
        .filter(|c| c["close_reason"] == "reset")
        .collect();
    assert_eq!(reset.len(), 3, "{reset:?}");
    assert!(
        reset
            .iter()
            .all(|c| c["service"] == "echo" && c["bytes_in"] == 1)
    );

    let chain = json(&app, "/api/deferreds/73");
    assert_eq!(chain["label"], "dns upstream query");
    assert_eq!(chain["stalled"], true);
    let outcomes: Vec<&str> = chain["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["err", "ok"]);
    assert_eq!(items(&app, "/api/deferreds?state=stalled").len(), 6);

    let services = json(&app, "/api/services");
    let web = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web")
        .expect("the http service 0.1.0 recorded");
    assert_eq!(web["kind"], "http");
    assert_eq!(web["endpoints"][0], "tcp:27080:interface=127.0.0.1");

    // New rows continue above the old ones instead of overwriting them.
    let mut s = std::net::TcpStream::connect(app.echo).unwrap();
    std::io::Write::write_all(&mut s, b"x").unwrap();
    assert_eventually!(
        items(&app, "/api/connections?state=open&service=echo&limit=10")
            .iter()
            .any(|c| c["transport"] == "tcp" && c["id"].as_i64() > Some(80)),
        "the new connection is numbered above the file's"
    );
}

#[test]
fn connections_a_killed_process_left_open_are_closed_as_process_ended_at_the_next_start() {
    let mut app = spawn_app();
    let held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(app.echo).unwrap();
            s.write_all(b"x").unwrap();
            s.read_exact(&mut [0]).unwrap();
            s
        })
        .collect();
    // The periodic snapshot writes open connections about once a second.
    let open_tcp = |app: &App| {
        query(&app.db, async |c| {
            sqlx::query_as::<_, (i64,)>(
                "SELECT count(*) FROM connections WHERE closed_at_ms IS NULL AND transport = 'tcp'",
            )
            .fetch_one(c)
            .await
            .unwrap()
            .0
        })
    };
    assert_eventually!(open_tcp(&app) == 3, "the open connections reach the file");
    // Alive for a while past the last activity its rows record: the next start closes
    // them when the process was last seen alive (its heartbeat, about a second before its
    // death at most; 2.5 s allowed on a loaded machine), not at that last activity (4 s
    // short).
    std::thread::sleep(std::time::Duration::from_millis(4000));
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    app.signal_and_wait("KILL");
    drop(held);
    assert_eq!(open_tcp(&app), 3, "a killed process closes nothing");

    app.restart();
    let closed = items(&app, "/api/connections?state=closed&service=echo&limit=100");
    let ended: Vec<&Value> = closed
        .iter()
        .filter(|c| c["close_reason"] == "process_ended")
        .collect();
    assert_eq!(
        ended.iter().filter(|c| c["transport"] == "tcp").count(),
        3,
        "{closed:?}"
    );
    assert!(
        ended.iter().any(|c| c["transport"] == "udp"),
        "the old run's UDP endpoint too: {closed:?}"
    );
    for c in &ended {
        assert!(
            c["closed_at_ms"].as_i64() >= c["opened_at_ms"].as_i64(),
            "{c}"
        );
        assert!(
            c["closed_at_ms"].as_i64() >= Some(killed_ms - 2500),
            "closed within its last second alive ({killed_ms}): {c}"
        );
        let detail = json(&app, &format!("/api/connections/{}", c["id"]));
        assert_eq!(detail["state"], "closed", "{detail}");
    }
    // Only this run's UDP endpoint is open now, in the file as in the API.
    assert_eq!(open_tcp(&app), 0);
    let open = items(&app, "/api/connections?state=open&limit=100");
    assert!(
        open.iter()
            .all(|c| c["close_reason"].is_null() && !ended.iter().any(|e| e["id"] == c["id"])),
        "{open:?}"
    );
}

/// A history file another program holds locked (`sqlite3 weft.db 'BEGIN EXCLUSIVE;'`)
/// when the gateway starts does not stop it: it serves at once, history reads on (the
/// file is WAL), what it cannot write is dropped and counted, and once the lock is let go
/// the file is opened: what a killed process left open is closed then, and new history is
/// written.
#[test]
fn a_history_file_locked_by_another_program_at_start_is_served_without_it_until_let_go() {
    let mut app = spawn_app();
    let mut held = TcpStream::connect(app.echo).unwrap();
    held.write_all(b"x").unwrap();
    held.read_exact(&mut [0]).unwrap();
    assert_eventually!(
        tcp_rows(&app.db) == [(None, None)],
        "the open connection reaches the file"
    );
    let last_id = items(&app, "/api/connections?state=open&limit=100")
        .iter()
        .filter_map(|c| c["id"].as_i64())
        .max()
        .unwrap();
    app.signal_and_wait("KILL");
    drop(held);

    let lock = crate::support::Locked::hold(&app.db);
    app.restart();
    let mut during = TcpStream::connect(app.echo).unwrap();
    during.write_all(b"x").unwrap();
    during.read_exact(&mut [0]).unwrap();
    drop(during);
    // The file is read while locked: numbering goes on above the last run's.
    let listed = items(&app, "/api/connections?limit=100");
    assert!(
        !listed.is_empty() && listed.iter().all(|c| c["id"].as_i64() > Some(last_id)),
        "ids above {last_id}: {listed:?}"
    );
    assert_eventually!(
        app.metric("weft_store_write_errors_total").unwrap_or(0.0) >= 1.0,
        "a batch that could not be written is counted\n{}",
        app.log()
    );
    assert!(
        app.log()
            .contains("the history file is locked by another program; serving without"),
        "{}",
        app.log()
    );
    assert_eq!(tcp_rows(&app.db).len(), 1, "nothing written while locked");

    drop(lock);
    let mut after = TcpStream::connect(app.echo).unwrap();
    after.write_all(b"x").unwrap();
    after.read_exact(&mut [0]).unwrap();
    drop(after);
    assert_eventually!(
        {
            let rows = tcp_rows(&app.db);
            rows.iter()
                .any(|(_, why)| why.as_deref() == Some("process_ended"))
                && rows
                    .iter()
                    .any(|(_, why)| why.as_deref() == Some("peer_closed"))
        },
        "the killed run's connection is closed and the new one written: {:?}\n{}",
        tcp_rows(&app.db),
        app.log()
    );
    assert!(
        app.log()
            .contains("the history file is open; writing history"),
        "{}",
        app.log()
    );
}

#[test]
fn a_history_file_deleted_at_run_time_is_recreated_with_the_services() {
    let app = spawn_app();
    let echo = |app: &App| {
        json(app, "/api/services")
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "echo")
            .cloned()
    };
    assert_eventually!(
        echo(&app).is_some_and(|s| s["kind"] == "echo"),
        "the service is listed"
    );
    for suffix in ["", "-wal", "-shm"] {
        let mut path = app.db.clone().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
    // The writer notices at its next commit; the open UDP endpoint is written every second.
    assert_eventually!(
        app.metric("weft_store_reopens_total") == Some(1.0),
        "the file is recreated\n{}",
        app.log()
    );
    let service = echo(&app).expect("still listed");
    assert_eq!(service["kind"], "echo", "{service}");
    let endpoints: Vec<&str> = service["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    let port = app.echo.port();
    assert_eq!(
        endpoints,
        [
            format!("tcp:{port}:interface=127.0.0.1"),
            format!("udp:{port}:interface=127.0.0.1")
        ]
    );
    // In the new file itself, for whoever reads it next.
    let stored: Option<(String, String)> = query(&app.db, async |c| {
        sqlx::query_as("SELECT kind, endpoints_json FROM services WHERE name = 'echo'")
            .fetch_optional(c)
            .await
            .unwrap()
    });
    let (kind, endpoints_json) = stored.expect("the new file has the service");
    assert_eq!(kind, "echo");
    assert!(
        endpoints_json.contains(&format!("udp:{port}")),
        "{endpoints_json}"
    );
}

/// `(closed_at_ms, close_reason)` of every TCP connection of the file.
fn tcp_rows(db: &Path) -> Vec<(Option<i64>, Option<String>)> {
    query(db, async |c| {
        sqlx::query_as("SELECT closed_at_ms, close_reason FROM connections WHERE transport = 'tcp'")
            .fetch_all(c)
            .await
            .unwrap()
    })
}

#[test]
fn a_second_run_on_a_history_file_in_use_exits_before_serving_and_leaves_the_first_alone() {
    let app = spawn_app();
    let mut held = TcpStream::connect(app.echo).unwrap();
    held.write_all(b"x").unwrap();
    held.read_exact(&mut [0]).unwrap();
    assert_eventually!(
        tcp_rows(&app.db) == [(None, None)],
        "the open connection reaches the file"
    );

    // Another gateway on the same file, with ports of its own.
    let dir = tempfile::tempdir().unwrap();
    let (status, log, config, (dashboard, echo)) = run_beside(&app, dir.path());
    assert!(!status.success(), "{status:?}\n{log}");
    assert!(
        log.contains(&app.db.display().to_string())
            && log.contains(&format!("process {}", app.child.id())),
        "the error names the file and the process using it:\n{log}"
    );
    for port in [dashboard, echo] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "the second process bound port {port}:\n{log}"
        );
    }

    // `check` does not take the lock, and says who holds it.
    let checked = crate::support::weft_check([&config]);
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{said}");
    assert!(
        said.contains(&format!("in use by process {}", app.child.id())),
        "{said}"
    );

    // The first serves on, and its rows are its own: open until it closes them itself.
    assert_eq!(tcp_rows(&app.db), [(None, None)]);
    held.write_all(b"y").unwrap();
    held.read_exact(&mut [0]).unwrap();
    assert!(app.curl("/healthz").is_some());
    drop(held);
    assert_eventually!(
        tcp_rows(&app.db)
            .first()
            .is_some_and(|(at, why)| at.is_some() && why.as_deref() == Some("peer_closed")),
        "the first process records its own close: {:?}",
        tcp_rows(&app.db)
    );

    // The history files deleted by hand (`rm weft.db*`), the lock goes with them: the
    // first takes it again at once (within a second), and a second gateway is still
    // refused.
    let lock = format!("{}.lock", app.db.display());
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", app.db.display()));
    }
    assert_eventually!(
        std::fs::read_to_string(&lock).is_ok_and(|pid| pid.trim() == app.child.id().to_string()),
        "the lock is taken again\n{}",
        app.log()
    );
    let dir = tempfile::tempdir().unwrap();
    let (status, log, ..) = run_beside(&app, dir.path());
    assert!(
        !status.success(),
        "a second writer started: {status:?}\n{log}"
    );
    assert!(
        log.contains(&format!("process {}", app.child.id())),
        "{log}"
    );
}

/// Runs another gateway on `app`'s history file, with ports of its own and its files in
/// `dir`, until it exits (15 s at most): how it ended, its log, its configuration file and
/// its ports (dashboard, echo).
fn run_beside(app: &App, dir: &Path) -> (ExitStatus, String, PathBuf, (u16, u16)) {
    let (dashboard, echo) = (free_port(), free_port());
    let config = dir.join("weft.toml");
    std::fs::write(
        &config,
        format!(
            "[dashboard]\nlisten = \"tcp:{dashboard}:interface=127.0.0.1\"\n\n[store]\npath = \"{}\"\n\n\
             [[service]]\nname = \"echo\"\nkind = \"echo\"\nlisten = \"tcp:{echo}:interface=127.0.0.1\"\n",
            app.db.display()
        ),
    )
    .unwrap();
    let mut second = Command::new(weft_bin())
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("weft.log")).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = second.kill();
            let _ = second.wait();
            panic!(
                "the second process is still running on a file in use; the first's rows now: {:?}",
                tcp_rows(&app.db)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(dir.join("weft.log")).unwrap();
    (status, log, config, (dashboard, echo))
}

/// A tmpfs of `size` mounted on `at` for as long as it lives; `None` where mounting is
/// not allowed (not root, or no mount namespace of our own).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).ok()?;
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success()
            .then(|| Self(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A disk too full at start to make the history file does not stop the gateway: it
/// serves, says why history is not written, counts what it drops, and writes history once
/// there is room (it refused to start).
#[test]
fn a_disk_full_at_start_leaves_history_unwritten_until_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    // Larger than the 16 MiB the writer leaves free: once emptied, history fits.
    let Some(disk) = Tmpfs::mount(&dir.path().join("small"), "24m") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    // Full: not even the lock file's process id fits.
    let mut fillers = Vec::new();
    for i in 0.. {
        let path = disk.0.join(format!("filler-{i}"));
        fillers.push(path.clone());
        if std::fs::write(&path, vec![0u8; 32 * 1024]).is_err() {
            break;
        }
    }
    let last = fillers.last().unwrap().clone();
    let mut room = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    while std::io::Write::write(&mut room, &[0u8; 512]).is_ok_and(|n| n > 0) {}
    let echo = free_port();
    let db = disk.0.join("weft.db");
    let config = dir.path().join("weft.toml");
    std::fs::write(
        &config,
        format!(
            "[dashboard]\nlisten = \"tcp:0:interface=127.0.0.1\"\n\n[store]\npath = \"{}\"\n\n\
             [[service]]\nname = \"echo\"\nkind = \"echo\"\nlisten = \"tcp:{echo}:interface=127.0.0.1\"\n",
            db.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("weft.log");
    let mut run = Command::new(weft_bin())
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eventually!(
        TcpStream::connect(("127.0.0.1", echo)).is_ok() || run.try_wait().unwrap().is_some(),
        "serving or gone"
    );
    assert!(run.try_wait().unwrap().is_none(), "exited:\n{}", said());
    assert!(
        said().contains("the disk holding the history file is full"),
        "{}",
        said()
    );
    for filler in &fillers {
        std::fs::remove_file(filler).unwrap();
    }
    let mut client = TcpStream::connect(("127.0.0.1", echo)).unwrap();
    client.write_all(b"x").unwrap();
    client.read_exact(&mut [0]).unwrap();
    drop(client);
    assert_eventually!(
        said().contains("the history file is open; writing history") && !tcp_rows(&db).is_empty(),
        "history written once there is room\n{}",
        said()
    );
    let _ = run.kill();
    let _ = run.wait();
}

/// History stays in the file its path led to at start: a symlink on the way re-pointed
/// while the gateway runs (here into a served root) moves nothing, where the writer,
/// finding no file at the path, made history anew where the link then led.
#[test]
fn a_link_on_the_history_path_re_pointed_while_running_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["private", "public"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    std::os::unix::fs::symlink(d.join("private"), d.join("current")).unwrap();
    let (dashboard, echo) = (free_port(), free_port());
    let config = d.join("weft.toml");
    std::fs::write(
        &config,
        format!(
            "[dashboard]\nlisten = \"tcp:{dashboard}:interface=127.0.0.1\"\n\
             [store]\npath = \"{}\"\n\
             [[service]]\nname = \"echo\"\nkind = \"echo\"\n\
             listen = \"tcp:{echo}:interface=127.0.0.1\"\n\
             [[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{}:interface=127.0.0.1\"\nroot = \"{}\"\n",
            d.join("current/h.db").display(),
            free_port(),
            d.join("public").display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(weft_bin())
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let round_trip = || {
        TcpStream::connect(("127.0.0.1", echo)).is_ok_and(|mut s| {
            let mut b = [0; 1];
            s.write_all(b"x").is_ok() && s.read_exact(&mut b).is_ok()
        })
    };
    assert_eventually!(
        round_trip() && d.join("private/h.db").exists(),
        "serving, history in private/"
    );
    std::fs::remove_file(d.join("current")).unwrap();
    std::os::unix::fs::symlink(d.join("public"), d.join("current")).unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(round_trip());
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let served: Vec<_> = std::fs::read_dir(d.join("public"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(served.is_empty(), "history moved into the root: {served:?}");
    assert!(d.join("private/h.db").exists());
}
