//! `weft check` and `weft --version`: exit codes and messages; `weft run` refuses what
//! `check` refuses, for the same reason, before it binds anything.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::assert_eventually;
use crate::support::{free_port, spawn_app_with, weft_bin};

/// `weft check` on `config`: its exit code, stdout and stderr.
pub(crate) fn check(config: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.toml");
    std::fs::write(&path, config).unwrap();
    let out = crate::support::weft_check([&path]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_valid_configuration_checks_ok() {
    let (code, out, _) = check("[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:7\"\n");
    assert_eq!(code, Some(0));
    assert!(out.contains(": ok (1 service)"), "{out}");
}

/// A full disk under stderr costs `run` its log lines, never its start; `check`, whose
/// verdict cannot be written, says so in its exit code (it panicked on both before).
#[test]
fn a_full_disk_under_stdout_or_stderr_neither_stops_run_nor_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("weft.toml");
    std::fs::write(
        &path,
        format!(
            "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:{port}:interface=127.0.0.1\"\n\
             [dashboard]\nlisten = \"tcp:0:interface=127.0.0.1\"\n"
        ),
    )
    .unwrap();
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let out = Command::new(weft_bin())
        .args(["check", "--no-ports"])
        .arg(&path)
        .stdout(full())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    let mut run = Command::new(weft_bin())
        .args(["run", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .stdout(full())
        .stderr(full())
        .spawn()
        .unwrap();
    assert_eventually!(
        TcpStream::connect(("127.0.0.1", port)).is_ok() || run.try_wait().unwrap().is_some(),
        "weft listens or exits"
    );
    assert!(
        run.try_wait().unwrap().is_none(),
        "run exited: {:?}",
        run.wait()
    );
    let _ = run.kill();
    let _ = run.wait();
}

/// A file that declares no service runs nothing; an empty one, or one cut off before its
/// first service, is refused by `check` and by `run` alike.
#[test]
fn a_file_that_declares_no_service_is_refused_by_check_and_run() {
    for text in ["", "[dashboard]\nlisten = \"tcp:0:interface=127.0.0.1\"\n"] {
        let (code, _, err) = check(text);
        assert_eq!(code, Some(1), "{text:?}");
        assert!(err.contains("declares no service"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.toml");
        std::fs::write(&path, text).unwrap();
        // `run` takes the file as `check` does, or after `--config`.
        for form in [&["run", "--config"][..], &["run"]] {
            let out = Command::new(weft_bin())
                .args(form)
                .arg(&path)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{form:?}: {out:?}");
            assert!(String::from_utf8_lossy(&out.stderr).contains("declares no service"));
        }
    }
}

/// The configuration the README shows first passes as it is written there.
#[test]
fn the_readmes_configuration_example_checks_ok() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let fence = "```toml\n[gateway]";
    let start = readme
        .find(fence)
        .expect("the README's configuration example")
        + 8;
    let end = start + readme[start..].find("```").unwrap();
    let (code, out, err) = check(&readme[start..end]);
    assert_eq!(code, Some(0), "{out}{err}");
}

#[test]
fn an_invalid_configuration_exits_1_naming_file_line_and_key() {
    let (code, _, err) =
        check("[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:8080\"\n");
    assert_eq!(code, Some(1));
    assert!(
        err.contains(
            "weft.toml:3:8: service[0].root: an http service needs `root` (static files), a \
             [[service.route]], or both"
        ),
        "{err}"
    );
    let (code, _, err) = check("[inspect]\nstall_after = \"soon\"\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("weft.toml:2:15: inspect.stall_after"), "{err}");
}

#[test]
fn a_missing_file_or_argument_fails() {
    let out = crate::support::weft_check(["/nonexistent.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(weft_bin()).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

/// `weft check` takes the file as `weft run` does, too.
#[test]
fn check_takes_the_file_with_config_as_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.toml");
    std::fs::write(
        &path,
        "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:7\"\n",
    )
    .unwrap();
    for flag in ["--config", "-c"] {
        let out = crate::support::weft_check([std::ffi::OsStr::new(flag), path.as_os_str()]);
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{flag}: {said}");
        assert!(said.contains(": ok (1 service)"), "{said}");
    }
    std::fs::write(&path, "[inspect]\nstall_after = \"soon\"\n").unwrap();
    let out = crate::support::weft_check([std::ffi::OsStr::new("--config"), path.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("weft.toml:2:15: inspect.stall_after"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(weft_bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("weft {}", env!("CARGO_PKG_VERSION"))
    );
}

/// A configuration that would bind the dashboard on a free loopback port and keep its
/// history in `dir`, so `weft run` shows whether it got that far.
pub(crate) fn preamble(dir: &Path) -> String {
    format!(
        "[dashboard]\nlisten = \"tcp:{}:interface=127.0.0.1\"\n\n[store]\npath = \"{}\"\n\n",
        free_port(),
        dir.join("history.db").display()
    )
}

/// The 1-based line of `config` holding `needle`.
fn line_of(config: &str, needle: &str) -> usize {
    config
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is not in\n{config}"))
        + 1
}

/// The `weft: ...` line a failed command printed.
fn reason_line(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find(|l| l.starts_with("weft: "))
        .map(str::to_owned)
}

/// `weft check FILE` and `weft run --config FILE` on `config` (written to `dir`): both
/// must exit 1 with the same reason, containing each of `expected`; and `run` must fail
/// before it listens anywhere or opens the history file. Returns the reason.
pub(crate) fn both_refuse(dir: &Path, config: &str, expected: &[&str]) -> String {
    both_refuse_from(None, dir, config, expected)
}

/// [`both_refuse`], both commands run in the working directory `cwd` (the test's own
/// when `None`).
fn both_refuse_from(cwd: Option<&Path>, dir: &Path, config: &str, expected: &[&str]) -> String {
    let path = dir.join("weft.toml");
    std::fs::write(&path, config).unwrap();
    let checked = match cwd {
        Some(cwd) => Command::new(weft_bin())
            .arg("check")
            .arg(&path)
            .current_dir(cwd)
            .output()
            .unwrap(),
        None => crate::support::weft_check([&path]),
    };
    let check_err = String::from_utf8_lossy(&checked.stderr).into_owned();
    assert_eq!(
        checked.status.code(),
        Some(1),
        "weft check accepted\n{config}\n{}{check_err}",
        String::from_utf8_lossy(&checked.stdout)
    );
    let reason = reason_line(&check_err).unwrap_or_else(|| panic!("no reason in\n{check_err}"));
    for fragment in expected {
        assert!(reason.contains(fragment), "{fragment:?} not in\n{reason}");
    }

    let log = dir.join("run.log");
    let mut run = Command::new(weft_bin());
    if let Some(cwd) = cwd {
        run.current_dir(cwd);
    }
    let mut run = run
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = run.kill();
            let _ = run.wait();
            panic!(
                "weft run was still running after 20 s with\n{config}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run_err = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{run_err}");
    assert_eq!(
        reason_line(&run_err).as_deref(),
        Some(reason.as_str()),
        "run and check name the same reason\n{run_err}"
    );
    assert!(
        !run_err
            .lines()
            .any(|l| !l.starts_with("weft: ") && l.contains("listening")),
        "run listened before refusing\n{run_err}"
    );
    assert!(
        !dir.join("history.db").exists(),
        "run opened the history before refusing"
    );
    reason
}

/// A file (its history in `dir`) with one http service serving `root` and logging to `log`.
fn web_logging_to(dir: &Path, root: &Path, log: &Path) -> String {
    format!(
        "{}[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:{}:interface=127.0.0.1\"\n\
         root = \"{}\"\naccess_log = \"{}\"\n",
        preamble(dir),
        free_port(),
        root.display(),
        log.display()
    )
}

fn echo(listen: &str) -> String {
    format!("[[service]]\nname = \"echo\"\nkind = \"echo\"\nlisten = {listen}\n")
}

#[test]
fn durations_longer_than_the_clock_can_hold_are_refused_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir(&root).unwrap();
    let config = format!(
        "{}[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:{}:interface=127.0.0.1\"\nroot = \"{}\"\n\
         limits = {{ request_timeout = \"500000000000years\" }}\n",
        preamble(dir.path()),
        free_port(),
        root.display()
    );
    let line = line_of(&config, "request_timeout");
    both_refuse(
        dir.path(),
        &config,
        &[
            &format!("weft.toml:{line}:"),
            "service[0].limits.request_timeout: ",
            "500000000000years",
            "at most \"10years\"",
        ],
    );

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[inspect]\nstall_after = \"300000000000years\"\n",
        preamble(dir.path())
    );
    both_refuse(
        dir.path(),
        &config,
        &[
            &format!("weft.toml:{}:", line_of(&config, "stall_after")),
            "inspect.stall_after: ",
        ],
    );
}

#[test]
fn body_buffers_smaller_in_all_than_one_request_s_are_refused_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:{}:interface=127.0.0.1\"\n\
         limits = {{ body_buffer_bytes = 4096, body_buffer_total_bytes = 1024 }}\n\
         [[service.route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\n",
        preamble(dir.path()),
        free_port(),
    );
    both_refuse(
        dir.path(),
        &config,
        &[
            &format!("weft.toml:{}:", line_of(&config, "body_buffer_total_bytes")),
            "service[0].limits.body_buffer_total_bytes: ",
            "at least limits.body_buffer_bytes (4096)",
        ],
    );
}

#[test]
fn a_body_file_dir_no_file_can_be_made_in_is_refused_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let config = format!(
        "{}[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:{}:interface=127.0.0.1\"\n\
         body_file_dir = {:?}\n\
         [[service.route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\n",
        preamble(dir.path()),
        free_port(),
        missing.display().to_string(),
    );
    both_refuse(
        dir.path(),
        &config,
        &[
            &format!("weft.toml:{}:", line_of(&config, "body_file_dir")),
            "service[0].body_file_dir: ",
            "cannot make a temporary file in it",
            "No such file or directory",
        ],
    );
}

#[test]
fn overlapping_stream_listeners_are_refused_naming_both() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}[[service]]\nname = \"sink\"\nkind = \"discard\"\nlisten = \"tcp:{port}:interface=127.0.0.1\"\n",
        preamble(dir.path()),
        echo(&format!("[\"tcp:{port}\", \"udp:{port}\"]")),
    );
    both_refuse(
        dir.path(),
        &config,
        &[
            &format!(
                "weft.toml:{}:",
                line_of(&config, &format!("listen = \"tcp:{port}:interface"))
            ),
            "service[1].listen: ",
            &format!("\"tcp:{port}:interface=127.0.0.1\""),
            &format!("\"tcp:{port}\" of service[0] (echo)"),
        ],
    );

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}",
        preamble(dir.path()),
        echo(&format!(
            "[\"tcp:{port}:interface=127.0.0.1\", \"tcp:{port}\"]"
        )),
    );
    both_refuse(
        dir.path(),
        &config,
        &[
            "service[0].listen: ",
            &format!("\"tcp:{port}\""),
            &format!("\"tcp:{port}:interface=127.0.0.1\" of service[0] (echo)"),
        ],
    );

    let dir = tempfile::tempdir().unwrap();
    let dashboard = free_port();
    let config = format!(
        "[dashboard]\nlisten = \"tcp:{dashboard}:interface=127.0.0.1\"\n[store]\npath = \"{}\"\n{}",
        dir.path().join("history.db").display(),
        echo(&format!("\"tcp:{dashboard}\"")),
    );
    both_refuse(
        dir.path(),
        &config,
        &[
            "service[0].listen: ",
            &format!("\"tcp:{dashboard}:interface=127.0.0.1\" of dashboard.listen"),
        ],
    );
}

#[test]
fn an_interface_address_this_host_does_not_have_is_refused_by_check_and_run() {
    // 192.0.2.0/24 is for documentation: no interface has it, so bind refuses it
    // unless the host lets sockets bind addresses it does not have.
    let nonlocal = std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind")
        .is_ok_and(|v| v.trim() == "1");
    assert!(
        !nonlocal,
        "net.ipv4.ip_nonlocal_bind is on: any address binds here"
    );
    for listen in [
        format!("\"tcp:{}:interface=192.0.2.1\"", free_port()),
        format!("\"udp:{}:interface=192.0.2.1\"", free_port()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = format!("{}{}", preamble(dir.path()), echo(&listen));
        both_refuse(
            dir.path(),
            &config,
            &[
                &format!("weft.toml:{}:", line_of(&config, "interface=192.0.2.1")),
                "service[0].listen: ",
                "cannot listen on 192.0.2.1: ",
                "Cannot assign requested address",
            ],
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[dashboard]\nlisten = \"tcp:{}:interface=192.0.2.1\"\ntoken = \"t0k-0123456789abcdef\"\n[store]\npath = \"{}\"\n",
        free_port(),
        dir.path().join("history.db").display(),
    );
    both_refuse(
        dir.path(),
        &config,
        &[
            "weft.toml:2:",
            "dashboard.listen: ",
            "cannot listen on 192.0.2.1: ",
        ],
    );
}

#[test]
fn a_store_in_a_missing_directory_is_refused_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[dashboard]\nlisten = \"tcp:{}:interface=127.0.0.1\"\n[store]\npath = \"{}\"\n",
        free_port(),
        dir.path().join("missing").join("history.db").display()
    );
    both_refuse(
        dir.path(),
        &config,
        &[
            "weft.toml:4:8: store.path: ",
            &format!("{}", dir.path().join("missing").display()),
            "does not exist",
        ],
    );
}

/// The default history file, `weft.db` in the working directory, is checked as a named
/// one is: a directory where its lock goes, or where the file goes, is refused by `check`
/// in the words `run` refuses it with (`check` passed the first, and named the second
/// by SQLite's I/O error).
#[test]
fn the_default_history_file_is_checked_as_a_named_one() {
    let (dir, cwd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = format!(
        "[dashboard]\nlisten = \"tcp:{}:interface=127.0.0.1\"\n{}",
        free_port(),
        echo(&format!("\"tcp:{}:interface=127.0.0.1\"", free_port()))
    );
    let lock = cwd.path().join("weft.db.lock");
    std::fs::create_dir(&lock).unwrap();
    let reason = both_refuse_from(
        Some(cwd.path()),
        dir.path(),
        &config,
        &[
            "store.path: weft.db.lock is not a regular file",
            "default history file",
        ],
    );
    assert!(
        reason.contains("weft.toml: store.path"),
        "the file, no line to point at: {reason}"
    );
    std::fs::remove_dir(&lock).unwrap();
    std::fs::create_dir(cwd.path().join("weft.db")).unwrap();
    both_refuse_from(
        Some(cwd.path()),
        dir.path(),
        &config,
        &["store.path: weft.db is a directory"],
    );
}

/// A port no listener holds but a connection does (one in TIME-WAIT after its client
/// closed first, the client's own local port) is refused by `check` and `run` naming
/// the connection and what to do, not as a port some process should stop holding.
#[test]
fn a_port_a_closed_connection_holds_is_refused_naming_the_connection() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    client
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let port = client.local_addr().unwrap().as_socket().unwrap().port();
    client
        .connect(&server.local_addr().unwrap().into())
        .unwrap();
    let (accepted, _) = server.accept().unwrap();
    // The client closes first: its side ends in TIME-WAIT once the server's close comes.
    drop(client);
    std::thread::sleep(Duration::from_millis(50));
    drop(accepted);
    std::thread::sleep(Duration::from_millis(50));
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[dashboard]\nlisten = \"tcp:{port}:interface=127.0.0.1\"\n[store]\npath = \"{}\"\n{}",
        dir.path().join("history.db").display(),
        echo(&format!("\"tcp:{}:interface=127.0.0.1\"", free_port()))
    );
    both_refuse(
        dir.path(),
        &config,
        &[
            &format!("TCP port {port} on 127.0.0.1 is held by no listener but by a connection"),
            ", in TIME-WAIT",
            "TIME-WAIT lasts a minute",
            "ip_local_port_range",
        ],
    );
}

/// A directory that exists but takes no new file (`/proc` refuses one even to root, where
/// the permission bits would let it write) is refused by `check` as `run` refuses it, for
/// the history file, a unix socket and an access log alike.
#[test]
fn a_directory_that_takes_no_new_file_is_refused_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let dashboard = format!(
        "[dashboard]\nlisten = \"tcp:{}:interface=127.0.0.1\"\n",
        free_port()
    );
    let store = format!(
        "[store]\npath = \"{}\"\n",
        dir.path().join("h.db").display()
    );
    both_refuse(
        dir.path(),
        &format!("{dashboard}[store]\npath = \"/proc/weft.db\"\n"),
        &["store.path: ", "cannot write in /proc"],
    );
    both_refuse(
        dir.path(),
        &format!(
            "{dashboard}{store}[[service]]\nname = \"e\"\nkind = \"echo\"\n\
             listen = \"unix:/proc/weft.sock\"\n"
        ),
        &["service[0].listen", "cannot make the socket in /proc"],
    );
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    both_refuse(
        dir.path(),
        &web_logging_to(dir.path(), &root, Path::new("/proc/weft-access.log")),
        &["access_log", "cannot create /proc/weft-access.log in /proc"],
    );
}

#[test]
fn tls_files_that_do_not_load_are_refused_naming_the_file_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    let ssl = |key: &Path, cert: &Path| {
        format!(
            "\"ssl:{}:interface=127.0.0.1:privateKey={}:certKey={}\"",
            free_port(),
            key.display(),
            cert.display()
        )
    };
    // The key file is missing.
    let config = format!(
        "{}{}",
        preamble(dir.path()),
        echo(&ssl(&key_pem, &cert_pem))
    );
    both_refuse(
        dir.path(),
        &config,
        &[
            "service[0].listen: ",
            "privateKey",
            &format!("{}", key_pem.display()),
        ],
    );
    // The certificate file holds no certificate.
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let config = format!("{}{}", preamble(dir.path()), echo(&ssl(&key_pem, &garbage)));
    both_refuse(
        dir.path(),
        &config,
        &[
            "service[0].listen: ",
            "certKey",
            &format!("{}", garbage.display()),
            "no CERTIFICATE",
        ],
    );
    // A tcp-proxy's trusted roots, loaded for every upstream connection.
    let config = format!(
        "{}[[service]]\nname = \"up\"\nkind = \"tcp-proxy\"\nlisten = \"tcp:{}:interface=127.0.0.1\"\n\
         upstream = \"ssl:localhost:{}:caCerts={}\"\n",
        preamble(dir.path()),
        free_port(),
        free_port(),
        dir.path().join("ca.pem").display()
    );
    both_refuse(
        dir.path(),
        &config,
        &["service[0].upstream: ", "caCerts", "ca.pem"],
    );
}

#[test]
fn unix_listeners_check_their_directory_and_refuse_lockfile() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}",
        preamble(dir.path()),
        echo(&format!(
            "\"unix:{}\"",
            dir.path().join("missing").join("echo.sock").display()
        ))
    );
    both_refuse(
        dir.path(),
        &config,
        &["service[0].listen: ", "does not exist"],
    );
    let config = format!(
        "{}{}",
        preamble(dir.path()),
        echo(&format!(
            "\"unix:{}:lockfile=1\"",
            dir.path().join("echo.sock").display()
        ))
    );
    both_refuse(
        dir.path(),
        &config,
        &["service[0].listen: ", "lockfile=1", "not supported"],
    );
}

#[test]
fn toml_errors_name_the_key_path() {
    let cases: [(&str, &str, &str); 5] = [
        (
            "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:7\"\nlisen = 1\n",
            "lisen = 1",
            ":1: service[0].lisen: unknown key `lisen`; did you mean `listen`?",
        ),
        (
            "[store]\nretention = 24\n",
            "retention = 24",
            ":13: store.retention: expected a duration in quotes, such as \"5s\", found the number 24",
        ),
        (
            "[inspect]\nsample = 0.5\nsample = 0.2\n",
            "sample = 0.2",
            ":1: inspect.sample: duplicate key",
        ),
        (
            "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:7\"\n\
             limits = { max_header_bytes = \"big\" }\n",
            "max_header_bytes",
            ": service[0].limits.max_header_bytes: expected a whole number, found the string \"big\"",
        ),
        (
            "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:7\"\n\
             [[service.route]]\nprefix = \"/a/\"\nupstream = \"http://h:1\"\n\
             [[service.route]]\nprefix = 5\nupstream = \"http://h:1\"\n",
            "prefix = 5",
            ":10: service[0].route[1].prefix: expected a string, in quotes, found the number 5",
        ),
    ];
    for (body, at, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        // The preamble keeps `[store]` out of the way of the cases that use it.
        let config = if body.starts_with("[store]") {
            format!(
                "[dashboard]\nlisten = \"tcp:{}:interface=127.0.0.1\"\n{body}path = \"{}\"\n",
                free_port(),
                dir.path().join("history.db").display()
            )
        } else {
            format!("{}{body}", preamble(dir.path()))
        };
        let line = line_of(&config, at);
        both_refuse(
            dir.path(),
            &config,
            &[&format!("weft.toml:{line}"), expected],
        );
    }
}

#[test]
fn a_tcp_proxy_connects_upstream_from_its_bind_address() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    upstream.set_nonblocking(true).unwrap();
    let up = upstream.local_addr().unwrap().port();
    let port = free_port();
    let _app = spawn_app_with(|_| {
        format!(
            "[[service]]\nname = \"pg\"\nkind = \"tcp-proxy\"\nlisten = \"tcp:{port}:interface=127.0.0.1\"\n\
             upstream = \"tcp:127.0.0.1:{up}:bindAddress=127.0.0.2\"\n"
        )
    });
    let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut peer = None;
    assert_eventually!(
        {
            if let Ok((_, from)) = upstream.accept() {
                peer = Some(from);
            }
            peer.is_some()
        },
        "the proxy connects upstream"
    );
    assert_eq!(
        peer.unwrap().ip(),
        std::net::IpAddr::from([127, 0, 0, 2]),
        "the upstream sees the bind address"
    );
}

#[test]
fn durations_at_the_longest_accepted_run_and_serve() {
    // A DNS upstream that never answers: the forwarded query waits on `timeout`.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (web, dns) = (free_port(), free_port());
    let app = spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("index.html"), "hello\n").unwrap();
        format!(
            r#"
[inspect]
stall_after = "10years"
slow_callback = "10years"

[[service]]
name = "web"
kind = "http"
listen = "tcp:{web}:interface=127.0.0.1"
root = "{root}"
limits = {{ request_timeout = "10years", upstream_connect_timeout = "10years", upstream_timeout = "10years" }}

[[service]]
name = "dns"
kind = "dns"
listen = "udp:{dns}:interface=127.0.0.1"
forward = ["{upstream}"]
timeout = "10years"
{forward_ports}
"#,
            forward_ports = crate::support::FORWARD_PORTS,
            root = root.display(),
            upstream = silent.local_addr().unwrap()
        )
    });
    let get = || {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{web}/"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(get(), "hello\n", "{}", app.log());
    let _ = Command::new("dig")
        .args(["@127.0.0.1", "-p", &dns.to_string(), "+time=1", "+tries=1"])
        .arg("forwarded.example")
        .output()
        .expect("dig must be installed (scripts/test installs dnsutils)");
    let mut buf = [0; 512];
    silent
        .recv_from(&mut buf)
        .expect("the query was forwarded, its timeout armed");
    assert_eq!(get(), "hello\n", "{}", app.log());
    assert!(app.curl("/healthz").is_some());
    assert!(!app.log().contains("panicked"), "{}", app.log());
}

#[test]
fn a_bad_log_format_or_access_log_is_refused_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{}[log]\nformat = \"xml\"\n", preamble(dir.path()));
    let line = line_of(&config, "format = ");
    both_refuse(
        dir.path(),
        &config,
        &[
            &format!("weft.toml:{line}:"),
            "log.format: ",
            r#"expected "text" or "json""#,
        ],
    );

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir(&root).unwrap();
    let config = web_logging_to(dir.path(), &root, &dir.path().join("missing/access.log"));
    let line = line_of(&config, "access_log");
    both_refuse(
        dir.path(),
        &config,
        &[
            &format!("weft.toml:{line}:"),
            "service[0].access_log: ",
            "does not exist",
        ],
    );
    assert!(!dir.path().join("missing").exists(), "nothing was created");

    // The flag takes the same two names, for check as for run.
    let path = dir.path().join("weft.toml");
    for command in ["check", "run"] {
        let out = Command::new(weft_bin())
            .args([command, "--log-format", "xml"])
            .arg(if command == "run" { "--config" } else { "--" })
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(
            err.contains("invalid value 'xml' for '--log-format"),
            "{err}"
        );
    }
}

/// With `--log-format json`, the line that says why `run` or `check` failed is JSON like
/// every other line of the log, so a log shipper gets it too: a configuration that does
/// not parse (before the log is set up) and a listener that cannot bind (after).
#[test]
fn a_json_log_says_why_the_gateway_could_not_start_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = 7\n",
    )
    .unwrap();
    let unbindable = dir.path().join("unbindable.toml");
    std::fs::write(
        &unbindable,
        format!(
            "[dashboard]\nlisten = \"tcp:{}:interface=127.0.0.1\"\n[store]\npath = \"{}\"\n\
             [[service]]\nname = \"e\"\nkind = \"echo\"\n\
             listen = \"tcp:{}:interface=192.0.2.254\"\n",
            free_port(),
            dir.path().join("h.db").display(),
            free_port()
        ),
    )
    .unwrap();
    for (command, config) in [("check", &broken), ("run", &broken), ("run", &unbindable)] {
        let out = Command::new(weft_bin())
            .args([command, "--log-format", "json", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        let lines: Vec<serde_json::Value> = stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l:?}")))
            .collect();
        let last = lines.last().expect("a line says why");
        assert_eq!(last["level"], "ERROR", "{command}: {last}");
        assert!(
            last["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{command}: {last}"
        );
    }
    // The file's `[log] format = "json"`, without the flag, once the file is read: a port
    // another program holds is said in JSON by `check` as by `run` (`check` said it in
    // text).
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held = dir.path().join("held.toml");
    std::fs::write(
        &held,
        format!(
            "[log]\nformat = \"json\"\n[dashboard]\nlisten = \"tcp:{}:interface=127.0.0.1\"\n\
             [store]\npath = \"{}\"\n{}",
            free_port(),
            dir.path().join("h.db").display(),
            echo(&format!(
                "\"tcp:{}:interface=127.0.0.1\"",
                holder.local_addr().unwrap().port()
            ))
        ),
    )
    .unwrap();
    // And a file refused for another of its settings still says how it logs.
    let refused = dir.path().join("refused.toml");
    std::fs::write(
        &refused,
        "[log]\nformat = \"json\"\n[[service]]\nname = \"w\"\nkind = \"http\"\n\
         listen = \"tcp:8080\"\nroot = \"nowhere\"\n",
    )
    .unwrap();
    let said: Vec<serde_json::Value> = [
        ("check", &held),
        ("run", &held),
        ("check", &refused),
        ("run", &refused),
    ]
    .into_iter()
    .map(|(command, file)| {
        let out = weft_on(command, file);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|_| panic!("{command}: not JSON: {last:?}"))
    })
    .collect();
    // `check`'s and `run`'s line for each file: the same, and the right reason.
    for (pair, reason) in said.chunks(2).zip(["in use", "service[0].root"]) {
        assert!(
            pair[0]["message"]
                .as_str()
                .is_some_and(|m| m.contains(reason)),
            "{}",
            pair[0]
        );
        assert_eq!(pair[0]["message"], pair[1]["message"]);
    }
}

/// `check` refuses a history file `run` would refuse to open: one with a SQLite header
/// and no database behind it. It reads the file without writing or locking it.
#[test]
fn check_refuses_a_history_file_run_could_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(std::iter::repeat_n(0xa5u8, 4096));
    std::fs::write(&db, &bytes).unwrap();
    let (code, _, err) = check(&format!(
        "[store]\npath = \"{}\"\n\n[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:7\"\n",
        db.display()
    ));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("store.path") && err.contains("not a database"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        bytes,
        "the file is left as it was"
    );
}

/// A history file holding another program's tables is refused by `check` and by `run`,
/// in the same words, and left as it was: `run` must not migrate weft's tables into it.
#[test]
fn a_history_file_of_another_program_is_refused_by_check_and_run_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("other.db");
    // An empty file is a new database to SQLite.
    std::fs::write(&db, b"").unwrap();
    crate::support::query(&db, async |c| {
        sqlx::query("CREATE TABLE t (x)")
            .execute(&mut *c)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *c)
            .await
            .unwrap();
    });
    let tables = || -> Vec<String> {
        crate::support::query(&db, async |c| {
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(c)
                .await
                .unwrap()
        })
    };
    assert_eq!(tables(), ["t"]);
    let config = format!(
        "[dashboard]\nlisten = \"tcp:{}:interface=127.0.0.1\"\n[store]\npath = \"{}\"\n{}",
        free_port(),
        db.display(),
        echo(&format!("\"tcp:{}:interface=127.0.0.1\"", free_port()))
    );
    both_refuse(
        dir.path(),
        &config,
        &["store.path: ", "holds another program's tables"],
    );
    assert_eq!(tables(), ["t"], "the file is left as it was");
}

/// A history file or access log named through a link into a directory that is not there
/// (a volume not mounted yet): `run` could not make the file, so `check` refuses it too,
/// naming the key, the link and the missing directory.
#[test]
fn a_link_into_a_missing_directory_as_history_file_or_access_log_is_refused_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let (root, gone) = (dir.path().join("public"), dir.path().join("unmounted"));
    std::fs::create_dir(&root).unwrap();
    let (db, log) = (dir.path().join("history.db"), dir.path().join("access.log"));
    std::os::unix::fs::symlink(gone.join("weft.db"), &db).unwrap();
    let config = web_logging_to(dir.path(), &root, &log);
    let missing = format!("whose directory {} does not exist", gone.display());
    both_refuse(
        dir.path(),
        &config,
        &[
            "store.path: ",
            &format!(
                "{} is a link to {}",
                db.display(),
                gone.join("weft.db").display()
            ),
            &missing,
        ],
    );

    std::fs::remove_file(&db).unwrap();
    std::os::unix::fs::symlink(gone.join("access.log"), &log).unwrap();
    both_refuse(dir.path(), &config, &["service[0].access_log: ", &missing]);

    // A loop of links leads nowhere either.
    std::fs::remove_file(&log).unwrap();
    let other = dir.path().join("other.log");
    std::os::unix::fs::symlink(&other, &log).unwrap();
    std::os::unix::fs::symlink(&log, &other).unwrap();
    both_refuse(
        dir.path(),
        &config,
        &["service[0].access_log: ", "leads round a loop of links"],
    );
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(gone.join("access.log"), &log).unwrap();

    // Mounted, both links lead somewhere: the file is accepted and served.
    std::fs::create_dir(&gone).unwrap();
    std::os::unix::fs::symlink(gone.join("weft.db"), &db).unwrap();
    let path = dir.path().join("weft.toml");
    let checked = crate::support::weft_check([&path]);
    assert!(checked.status.success(), "{checked:?}");
}

/// Two tcp-proxies on unix sockets, each the other's upstream: every connection would beget
/// another until the process ran out of file descriptors (unix peers have no per-peer
/// cap). `check` and `run` refuse the file, naming the ring.
#[test]
fn tcp_proxies_that_lead_to_each_other_are_refused_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let proxy = |name: &str, listen: &Path, upstream: &Path| {
        format!(
            "[[service]]\nname = \"{name}\"\nkind = \"tcp-proxy\"\nlisten = \"unix:{}\"\n\
             upstream = \"unix:{}\"\n",
            listen.display(),
            upstream.display()
        )
    };
    let config = format!(
        "{}{}{}",
        preamble(dir.path()),
        proxy("p", &a, &b),
        proxy("q", &b, &a)
    );
    both_refuse(
        dir.path(),
        &config,
        &[
            "service[0].upstream: these two forward round a loop: service[0] (p) -> service[1] \
             (q) -> service[0] (p)",
        ],
    );
}

/// A DNS service forwarding to a service of the file that cannot answer it, an echo
/// service's UDP port or a DNS service listening on TCP alone: every question would wait
/// out its timeout. `check` and `run` refuse the file, naming what is there.
#[test]
fn forwarding_to_a_service_that_is_no_dns_server_over_udp_is_refused_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let (echo, tcp_only) = (free_port(), free_port());
    let echoing = format!(
        "{}[[service]]\nname = \"echo\"\nkind = \"echo\"\nlisten = \"udp:{echo}:interface=127.0.0.1\"\n\n\
         [[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = \"udp:{dns}:interface=127.0.0.1\"\n\
         forward = [\"127.0.0.1:{echo}\"]\n",
        preamble(dir.path()),
        dns = free_port(),
    );
    both_refuse(
        dir.path(),
        &echoing,
        &[&format!(
            "service[1].forward: 127.0.0.1:{echo} is a UDP listener of service[0] (echo), of kind \
             \"echo\", not a DNS service: every question would wait out its timeout"
        )],
    );
    let tcp = format!(
        "{}[[service]]\nname = \"inner\"\nkind = \"dns\"\nlisten = \"tcp:{tcp_only}:interface=127.0.0.1\"\n\
         forward = [\"192.0.2.53\"]\n\n\
         [[service]]\nname = \"outer\"\nkind = \"dns\"\nlisten = \"udp:{dns}:interface=127.0.0.1\"\n\
         forward = [\"127.0.0.1:{tcp_only}\"]\n",
        preamble(dir.path()),
        dns = free_port(),
    );
    both_refuse(
        dir.path(),
        &tcp,
        &[&format!(
            "service[1].forward: service[0] (inner) listens at 127.0.0.1:{tcp_only} on TCP alone"
        )],
    );
}

/// On a host with `net.ipv4.ip_nonlocal_bind=1` (keepalived and HAProxy hosts, to bind an
/// address not yet theirs) every address binds, so a socket bound is no sign the address
/// is this host's: a forward to a public resolver is no loop there, and a proxy to its own
/// listener still is. Run in a network namespace of its own (`unshare --net
/// --map-root-user`), where the setting is the namespace's alone.
#[test]
fn forwarding_to_another_host_is_no_loop_where_any_address_binds() {
    // A system that forbids unprivileged user namespaces (some container runtimes) cannot
    // run this; the check itself is the same everywhere.
    let namespaces = Command::new("unshare")
        .args(["--net", "--map-root-user", "true"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !namespaces {
        eprintln!("skipped: `unshare --net --map-root-user` is not allowed here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}[[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = \"udp:53\"\n\
         forward = [\"9.9.9.9\"]\n\n[[service]]\nname = \"pg\"\nkind = \"tcp-proxy\"\n\
         listen = \"tcp:15432\"\nupstream = \"tcp:198.51.100.7:5432\"\n",
        preamble(dir.path())
    );
    let path = dir.path().join("weft.toml");
    let check = |config: &str| {
        std::fs::write(&path, config).unwrap();
        let script = format!(
            "echo 1 > /proc/sys/net/ipv4/ip_nonlocal_bind && exec {} check --config {}",
            weft_bin().display(),
            path.display()
        );
        let out = Command::new("unshare")
            .args(["--net", "--map-root-user", "sh", "-c", &script])
            .output()
            .expect("unshare (util-linux) runs");
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !said.contains("unshare:") && !said.contains("ip_nonlocal_bind"),
            "a network namespace of its own is needed: {said}"
        );
        (out.status.code(), said)
    };
    let (code, said) = check(&config);
    assert_eq!(code, Some(0), "{said}");
    let looped = config.replace("198.51.100.7:5432", "127.0.0.1:15432");
    let (code, said) = check(&looped);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("own listener"), "{said}");
}

/// A listener whose port another program holds: `check` refuses it naming the program,
/// and `run` says so once, each cause given once.
#[test]
fn a_port_in_use_is_refused_by_check_naming_its_holder_and_stops_run_with_each_cause_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = format!(
        "{}{}",
        preamble(dir.path()),
        echo(&format!("\"tcp:{port}:interface=127.0.0.1\""))
    );
    let path = dir.path().join("weft.toml");
    std::fs::write(&path, config).unwrap();
    let checked = crate::support::weft_check([&path]);
    let said = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "service[0] (echo): \"tcp:{port}:interface=127.0.0.1\": cannot listen: TCP port \
             {port} on 127.0.0.1 is in use by process {} (",
            std::process::id()
        )),
        "{said}"
    );
    // Wanted on every address, held on one: the message says where it is held.
    let everywhere = dir.path().join("everywhere.toml");
    let config = format!(
        "{}{}",
        preamble(dir.path()),
        echo(&format!("\"tcp:{port}\""))
    );
    std::fs::write(&everywhere, config).unwrap();
    let checked = crate::support::weft_check([&everywhere]);
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(
        said.contains(&format!("TCP port {port} on 0.0.0.0 is in use by process "))
            && said.contains(&format!("listening at 127.0.0.1:{port};")),
        "{said}"
    );
    let out = Command::new(weft_bin())
        .args(["run", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let reason = reason_line(&stderr).unwrap_or_else(|| panic!("no reason in\n{stderr}"));
    // In check's words, naming the holder, once; and before the dashboard was started.
    let said = format!(
        "cannot listen: TCP port {port} on 127.0.0.1 is in use by process {} (",
        std::process::id()
    );
    assert_eq!(reason.matches(&said).count(), 1, "{reason}");
    assert!(!stderr.contains("dashboard on http"), "{stderr}");
    drop(taken);
}

/// The ports of the gateway running a file are no reason to refuse that file (a reload
/// keeps them): `check` notes them and passes.
#[test]
fn the_ports_the_gateway_running_the_file_holds_are_noted_not_refused() {
    let port = free_port();
    let app = spawn_app_with(|_| {
        format!(
            "[[service]]\nname = \"more\"\nkind = \"echo\"\nlisten = \"udp:{port}:interface=127.0.0.1\"\n"
        )
    });
    let path = app.dir.path().join("weft.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    let out = crate::support::weft_check([&path]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let pid = app.child.id();
    for port in [
        format!("TCP port {} on 127.0.0.1", app.dashboard.port()),
        format!("UDP port {port} on 127.0.0.1"),
    ] {
        assert!(
            said.contains(&format!(
                "{port} is held by process {pid}, the gateway running this configuration"
            )),
            "{port}: {said}"
        );
    }
    assert!(!said.contains("moves the dashboard"), "{said}");

    // A new file checked before it takes the running one's place (same history): the
    // gateway is the one writing that history, not one running this file.
    let next = app.dir.path().join("next.toml");
    std::fs::copy(&path, &next).unwrap();
    let out = crate::support::weft_check([&next]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!(
            "UDP port {port} on 127.0.0.1 is held by process {pid}, the gateway writing this \
             configuration's history (a reload keeps it)"
        )),
        "{said}"
    );

    // The dashboard moved and its port given to a service: a reload keeps the dashboard
    // where it is, so the note says a reload would fail on that port, as it does.
    let dashboard = app.dashboard.port();
    app.edit_config(|text| {
        text.replace(
            &format!("tcp:{dashboard}:"),
            &format!("tcp:{}:", free_port()),
        ) + &format!(
            "[[service]]\nname = \"was-dashboard\"\nkind = \"echo\"\n\
             listen = \"tcp:{dashboard}:interface=127.0.0.1\"\n"
        )
    });
    let out = crate::support::weft_check([&path]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!(
            "service[2] (was-dashboard): \"tcp:{dashboard}:interface=127.0.0.1\": TCP port \
             {dashboard} on 127.0.0.1 is held by process {pid}, the gateway running this \
             configuration (a reload keeps it); but this file moves the dashboard, which takes \
             a restart: if the running dashboard is what holds it, a reload fails on it, so \
             restart instead"
        )),
        "{said}"
    );
    assert!(
        !said.contains(&format!("UDP port {port} on 127.0.0.1 is held by process {pid}, the gateway running this configuration (a reload keeps it); but")),
        "a dashboard is not on UDP: {said}"
    );
    app.reload_by_signal("failed");
    // The reload says why.
    let running = format!("tcp:{dashboard}:interface=127.0.0.1");
    let why = format!(
        "service \"was-dashboard\": cannot listen on {running}: the running dashboard listens \
         there ({running}), and a reload does not move the dashboard; restart to move it"
    );
    let message = |reply: crate::support::Reply| {
        assert_eq!(reply.status, 409, "{reply:?}");
        let answer: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        answer["message"].as_str().unwrap().to_owned()
    };
    let said = message(app.reload_by_post());
    let file = path.display();
    assert!(said.starts_with(&format!("{file}: {why}")), "{said}");

    // So it does for a file that swaps the dashboard's port with a service's.
    std::fs::write(&path, &original).unwrap();
    let echo = app.echo.port();
    app.edit_config(|text| {
        text.replace(&format!("tcp:{dashboard}:"), "tcp:SWAP:")
            .replace(&format!("tcp:{echo}:"), &format!("tcp:{dashboard}:"))
            .replace("tcp:SWAP:", &format!("tcp:{echo}:"))
    });
    let said = message(app.reload_by_post());
    assert!(
        said.starts_with(&format!(
            "{file}: service \"echo\": cannot listen on {running}: the running dashboard \
             listens there"
        )),
        "{said}"
    );
}

/// A reload takes over a listener's socket only at the same address: a service moved from
/// `127.0.0.1` to every address of its port (or back) cannot listen beside its running
/// socket, so `check` refuses the file while the gateway runs it, and the reload says why
/// and keeps serving.
#[test]
fn a_listener_moved_to_another_address_of_its_port_is_refused_by_check_and_the_reload() {
    let app = spawn_app_with(|_| String::new());
    assert_eventually!(app.get("/readyz").status == 200, "ready\n{}", app.log());
    let path = app.dir.path().join("weft.toml");
    let echo = app.echo.port();
    let (narrow, wide) = (
        format!("tcp:{echo}:interface=127.0.0.1"),
        format!("tcp:{echo}"),
    );
    app.edit_config(|text| text.replace(&format!("\"{narrow}\""), &format!("\"{wide}\"")));
    let out = crate::support::weft_check([&path]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    let pid = app.child.id();
    assert!(
        said.contains(&format!(
            "TCP port {echo} on 0.0.0.0 is held by process {pid}, the gateway running this \
             configuration, listening at 127.0.0.1:{echo}: a reload keeps a listener only at \
             the same address"
        )),
        "{said}"
    );
    let reply = app.reload_by_post();
    assert_eq!(reply.status, 409, "{reply:?}");
    let answer: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "{}: service \"echo\": cannot listen on {wide}: service \"echo\" listens on the same \
             port at another address ({narrow}) until the reload is done",
            path.display()
        )),
        "{message}"
    );
    crate::reload::open_echo(app.echo);
}

/// The dashboard moved to another address of its port is no listener a reload binds: a
/// reload leaves the dashboard where it is and says a restart applies it, so `check`
/// accepts the file.
#[test]
fn a_dashboard_moved_to_another_address_of_its_port_is_left_to_a_restart() {
    let app =
        crate::support::spawn_app_configured(r#"token = "s3cret-0123456789ab""#, |_| String::new());
    let path = app.dir.path().join("weft.toml");
    let port = app.dashboard.port();
    app.edit_config(|text| {
        text.replace(
            &format!("\"tcp:{port}:interface=127.0.0.1\""),
            &format!("\"tcp:{port}\""),
        )
    });
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&format!("\"tcp:{port}\"")), "{text}");
    let out = crate::support::weft_check([&path]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
}

/// A port below `net.ipv4.ip_unprivileged_port_start` is refused by `check` when this
/// user may not bind it, as `run` is: said with the ways to allow it. Run as root, the
/// check runs as `nobody` (through `setpriv`).
#[test]
fn a_privileged_port_this_user_may_not_bind_is_refused_by_check_and_run() {
    use std::os::unix::fs::PermissionsExt;
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(start > 1, "every port is unprivileged here");
    let port = start - 1;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = format!(
        "{}{}",
        preamble(dir.path()),
        echo(&format!("\"tcp:{port}:interface=127.0.0.1\""))
    );
    let path = dir.path().join("weft.toml");
    std::fs::write(&path, config).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let as_user = |args: &[&str]| {
        let root = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
        let mut c = if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(weft_bin());
            c
        } else {
            Command::new(weft_bin())
        };
        c.args(args)
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let checked = as_user(&["check", "--"]);
    let said = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(1), "{said}");
    for part in [
        &format!("\"tcp:{port}:interface=127.0.0.1\": this process may not listen on port {port}"),
        &format!("ports below {start} (net.ipv4.ip_unprivileged_port_start) need privilege"),
        "cap_net_bind_service=+ep",
    ] {
        assert!(said.contains(part), "{part}: {said}");
    }
    // Checked elsewhere than where it runs, the ports are left alone.
    let elsewhere = as_user(&["check", "--no-ports", "--"]);
    assert_eq!(
        elsewhere.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&elsewhere.stderr)
    );
    let ran = as_user(&["run", "--config"]);
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
}

/// A unix socket another process listens on is refused by `check`, naming the process,
/// and by `run`, which leaves it to its owner rather than replacing it as a stale file.
#[test]
fn a_unix_socket_another_process_serves_is_refused_by_check_and_run_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let live = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let config = format!(
        "{}{}",
        preamble(dir.path()),
        echo(&format!("\"unix:{}\"", sock.display()))
    );
    let path = dir.path().join("weft.toml");
    std::fs::write(&path, config).unwrap();
    let checked = crate::support::weft_check([&path]);
    let said = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "cannot listen: the unix socket {} is in use by process {} (",
            sock.display(),
            std::process::id()
        )),
        "{said}"
    );
    let out = Command::new(weft_bin())
        .args(["run", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // In check's words, before anything was bound.
    assert!(
        stderr.contains(&format!(
            "cannot listen: the unix socket {} is in use by process {} (",
            sock.display(),
            std::process::id()
        )),
        "{stderr}"
    );
    // Still the test's: a client reaches it.
    std::os::unix::net::UnixStream::connect(&sock).unwrap();
    live.accept().unwrap();
}

/// A "file" that is a device or a pipe is refused at once, by `check` and `run`, before
/// anything reads it for its `[log]` or anything else: `/dev/zero` would never end, a
/// FIFO with no writer never begin.
#[test]
fn a_configuration_that_is_no_regular_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("weft.toml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for file in [Path::new("/dev/zero"), &fifo] {
        for command in ["check", "run"] {
            let started = Instant::now();
            let out = weft_on(command, file);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{command} {file:?}: {stderr}");
            assert!(stderr.contains("not a regular file"), "{stderr}");
            assert!(started.elapsed() < Duration::from_secs(5));
        }
    }
}

/// More listeners than the open-files limit leaves room for: `check` refuses the file,
/// naming the limit, and `run` refuses it alike before it binds anything, where it bound
/// the first couple of hundred and stopped at a bare "Too many open files".
#[test]
fn listeners_past_the_open_files_limit_are_refused_by_check_and_run_alike() {
    let dir = tempfile::tempdir().unwrap();
    let dashboard = free_port();
    let ports: Vec<u16> = (0..300).map(|_| free_port()).collect();
    let file = dir.path().join("weft.toml");
    echo_services(&file, "", dashboard, &ports);
    for command in ["check", "run"] {
        let out = under_open_files_limit(256, command, &file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains("need 301 open files")
                && stderr.contains("the open files limit is 256"),
            "{command}: {stderr}"
        );
        assert!(
            TcpStream::connect(("127.0.0.1", ports[0])).is_err(),
            "{command} bound nothing"
        );
    }
}

/// A reload adding listeners past what the open-files limit leaves room for is refused,
/// `invalid`, as `check` refuses the file, and changes nothing: it was applied part way,
/// one reactor on the new settings and the other on the old, and counted `ok`.
#[test]
fn a_reload_past_the_open_files_limit_is_refused_as_check_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let dashboard = free_port();
    let ports: Vec<u16> = (0..40).map(|_| free_port()).collect();
    let file = dir.path().join("weft.toml");
    let write = |services: usize| {
        echo_services(
            &file,
            "[gateway]\nreactors = 2\n",
            dashboard,
            &ports[..services],
        );
    };
    write(10);
    /// Ends the gateway however the test ends.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Killed(
        under_open_files_limit(128, "run", &file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert_eventually!(
        TcpStream::connect(("127.0.0.1", ports[9])).is_ok(),
        "serving ten echo services"
    );
    // 40 listeners on each of 2 reactors: 81 with the dashboard's, 64 more kept: past 128.
    write(40);
    assert!(
        Command::new("kill")
            .args(["-HUP", &child.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let metrics = || {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{dashboard}/metrics"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eventually!(
        metrics().contains(r#"weft_config_reloads_total{result="invalid"} 1"#),
        "the reload refused as invalid\n{}",
        metrics()
    );
    assert!(
        TcpStream::connect(("127.0.0.1", ports[39])).is_err(),
        "nothing of it applied"
    );
}

/// Writes to `file` a configuration of `extra` tables, a dashboard on `dashboard`, history
/// beside `file`, and an echo service on each of `ports`.
fn echo_services(file: &Path, extra: &str, dashboard: u16, ports: &[u16]) {
    let history = file.with_file_name("weft.db");
    let mut text = format!(
        "{extra}[dashboard]\nlisten = \"tcp:{dashboard}:interface=127.0.0.1\"\n\
         [store]\npath = \"{}\"\n",
        history.display()
    );
    for (i, port) in ports.iter().enumerate() {
        text.push_str(&format!(
            "[[service]]\nname = \"e{i}\"\nkind = \"echo\"\nlisten = \"tcp:{port}:interface=127.0.0.1\"\n"
        ));
    }
    std::fs::write(file, text).unwrap();
}

/// `weft COMMAND --config FILE` under an open-files limit of `files` (soft and hard).
fn under_open_files_limit(files: u32, command: &str, file: &Path) -> Command {
    let mut weft = Command::new("bash");
    weft.arg("-c")
        .arg(format!(
            r#"ulimit -n {files} && exec "$0" "$1" --config "$2""#
        ))
        .arg(weft_bin())
        .arg(command)
        .arg(file)
        .stdin(Stdio::null());
    weft
}

/// `weft COMMAND --config FILE`, run to its end.
fn weft_on(command: &str, file: &Path) -> std::process::Output {
    Command::new(weft_bin())
        .args([command, "--config"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}
