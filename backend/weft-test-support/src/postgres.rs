//! A throwaway PostgreSQL server for tests of the shared history store.
//!
//! [`Postgres::start`] runs Debian's `postgresql` binaries (`/usr/lib/postgresql/*/bin`):
//! `initdb` into a fresh directory under the system's temp dir, then `pg_ctl` serving on
//! a free loopback port with its unix socket in that directory, trusting the local user
//! `weft`. `initdb` refuses to run as root, so as root the cluster belongs to `nobody`.
//! Dropping it stops the server and removes the directory. Nothing is skipped: a machine
//! without PostgreSQL fails the test, naming the package (`scripts/test` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::net::free_port;

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// `Some("nobody")` when the tests run as root.
    owner: Option<&'static str>,
}

/// The newest installed server's binaries.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): \
             `apt-get install -y postgresql`, which scripts/test does"
        )
    })
}

impl Postgres {
    /// Creates and starts a cluster; panics naming what failed.
    pub fn start() -> Postgres {
        static N: AtomicU32 = AtomicU32::new(0);
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "weft-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        let owner = running_as_root().then_some("nobody");
        if let Some(owner) = owner {
            run(Command::new("chown").arg(owner).arg(&dir), "chown");
        }
        let pg = Postgres {
            dir,
            bin,
            port: free_port(),
            owner,
        };
        let data = pg.data();
        pg.run_tool(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "weft",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        pg.start_again();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The loopback port it serves on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `postgres://` URL of a fresh database named `name` on this server.
    pub fn create_database(&self, name: &str) -> String {
        self.run_tool(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "weft",
                name,
            ],
        );
        self.url(name)
    }

    /// Runs the SQL `statement` in database `name` (`psql`, as the `weft` role).
    pub fn sql(&self, name: &str, statement: &str) {
        run(&mut self.psql(name, statement), "psql");
    }

    /// Starts running the SQL `statement` in database `name`, returning at once: a
    /// session that holds a lock while the test goes on.
    pub fn sql_in_background(&self, name: &str, statement: &str) -> std::process::Child {
        self.psql(name, statement)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("psql runs")
    }

    /// Waits (up to 10 s) until a session other than the asking one holds a granted lock
    /// on `table` in database `name`: a lock taken through
    /// [`sql_in_background`](Self::sql_in_background), which returns before `psql` has
    /// even connected.
    pub fn wait_for_lock(&self, name: &str, table: &str) {
        let query = format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON l.relation = c.oid \
             WHERE c.relname = '{table}' AND l.granted AND l.pid <> pg_backend_pid()"
        );
        let began = std::time::Instant::now();
        loop {
            let out = self
                .psql(name, &query)
                .arg("-At")
                .output()
                .expect("psql runs");
            if String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
                > 0
            {
                return;
            }
            assert!(
                began.elapsed() < std::time::Duration::from_secs(10),
                "no session took a lock on {table} within 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn psql(&self, name: &str, statement: &str) -> Command {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                "weft",
                "-d",
                name,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                statement,
            ]);
        command
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://weft@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server at once (`immediate`: as a crash or a lost host would), keeping
    /// its data.
    pub fn stop(&self) {
        self.run_tool(
            "pg_ctl",
            &[
                "-D",
                path_str(&self.data()),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Freezes the server and its backends (SIGSTOP) until the guard goes: connected
    /// clients get no answer and no error, as behind a network partition.
    pub fn pause(&self) -> Paused<'_> {
        self.signal_all("-STOP");
        Paused(self)
    }

    /// Sends `signal` (`kill`'s spelling) to the server and every backend it runs.
    fn signal_all(&self, signal: &str) {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .expect("the server is running");
        let pid = pid_file
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let _ = Command::new("pkill").args([signal, "-P", &pid]).output();
        run(Command::new("kill").args([signal, &pid]), "kill");
    }

    /// Starts the (stopped) server again on the same port, and waits until it accepts
    /// connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60",
            self.port,
            path_str(&self.dir)
        );
        let log = self.dir.join("server.log");
        self.run_tool(
            "pg_ctl",
            &[
                "-D",
                path_str(&self.data()),
                "-l",
                path_str(&log),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    /// Runs one of the server's tools as the cluster's owner; panics with its output.
    fn run_tool(&self, tool: &str, args: &[&str]) -> Output {
        let program = self.bin.join(tool);
        let mut command = match self.owner {
            Some(owner) => {
                let mut c = Command::new("runuser");
                c.args(["-u", owner, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        command.args(args).current_dir(&self.dir);
        run(&mut command, tool)
    }
}

/// A server frozen by [`Postgres::pause`]; it goes on when this is dropped.
pub struct Paused<'a>(&'a Postgres);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.signal_all("-CONT");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(self.bin.join("pg_ctl"))
            .args(["-D", path_str(&self.data()), "-m", "immediate", "stop"])
            .output();
        // The server runs as its owner; pg_ctl as root may not signal it, so ask as the owner.
        if let Some(owner) = self.owner {
            let _ = Command::new("runuser")
                .args(["-u", owner, "--"])
                .arg(self.bin.join("pg_ctl"))
                .args(["-D", path_str(&self.data()), "-m", "immediate", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

fn running_as_root() -> bool {
    // `id -u` rather than a libc binding: the support crate stays free of unsafe and of
    // system bindings.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
