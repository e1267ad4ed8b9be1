//! The deploy files, run. Prometheus started the way `docker-compose.yml` starts it (its
//! flags, `deploy/prometheus.yml`, the token handed over as compose hands it) scrapes a
//! real `weft run` of `deploy/weft.toml`; Grafana's provisioning points at that Prometheus
//! and its dashboard at the provisioned data source.
//!
//! Only what cannot exist outside a container is rewritten: the scrape target's host name
//! becomes loopback, ports become free ones, container paths become files of the test.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde::Deserialize;
use serde_json::Value;

use crate::support::{free_port, repo_root, weft_bin};

/// `docker-compose.yml`, as much of it as the deploy relies on.
#[derive(Debug, Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
    #[serde(default)]
    secrets: BTreeMap<String, Secret>,
}

#[derive(Debug, Deserialize)]
struct Service {
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    /// Short syntax: `SOURCE:TARGET[:MODE]`.
    #[serde(default)]
    volumes: Vec<String>,
    /// Short syntax: each is mounted at `/run/secrets/NAME`.
    #[serde(default)]
    secrets: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Secret {
    /// The host environment variable whose value the secret holds.
    environment: Option<String>,
    file: Option<String>,
}

fn compose() -> Compose {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("docker-compose.yml: {e}"))
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Compose {
    fn service(&self, name: &str) -> &Service {
        self.services
            .get(name)
            .unwrap_or_else(|| panic!("docker-compose.yml has no service {name:?}"))
    }
}

impl Service {
    /// The host path (relative to the repository) mounted at `target`, if a file or
    /// directory of the repository is.
    fn mounted_at(&self, target: &str) -> Option<PathBuf> {
        self.volumes.iter().find_map(|v| {
            let mut parts = v.split(':');
            let (source, to) = (parts.next()?, parts.next()?);
            (to == target && source.starts_with("./")).then(|| repo_root().join(&source[2..]))
        })
    }

    /// Every repository file mounted at or below the container directory `dir`.
    fn mounted_below(&self, dir: &str) -> Vec<PathBuf> {
        self.volumes
            .iter()
            .filter_map(|v| {
                let mut parts = v.split(':');
                let (source, to) = (parts.next()?, parts.next()?);
                let inside = to.strip_prefix(dir)?.starts_with('/');
                (inside && source.starts_with("./")).then(|| repo_root().join(&source[2..]))
            })
            .collect()
    }

    /// The value of `--name=value` in the command.
    fn flag(&self, name: &str) -> Option<&str> {
        self.command
            .iter()
            .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
    }
}

/// `deploy/weft.toml` with free loopback ports and its history in `dir`; its dashboard
/// address, echo address and token variable.
struct WeftConfig {
    path: PathBuf,
    dashboard: SocketAddr,
    echo: SocketAddr,
    token_env: String,
}

/// `endpoint` (`tcp:PORT[:...]`) on `port`, and the port it had.
fn with_port(endpoint: &str, port: u16) -> (String, u16) {
    let mut parts: Vec<&str> = endpoint.split(':').collect();
    let old = parts[1]
        .parse()
        .unwrap_or_else(|_| panic!("{endpoint}: no port"));
    let port = port.to_string();
    parts[1] = &port;
    (parts.join(":"), old)
}

fn weft_config(source: &Path, dir: &Path) -> (WeftConfig, u16) {
    let text = std::fs::read_to_string(source).unwrap();
    let mut config: toml::Table = text.parse().unwrap();
    let dashboard_port = free_port();
    let dashboard = config["dashboard"].as_table_mut().unwrap();
    let (listen, deployed_port) = with_port(dashboard["listen"].as_str().unwrap(), dashboard_port);
    dashboard.insert("listen".into(), listen.into());
    let token_env = dashboard["token_env"]
        .as_str()
        .expect("deploy/weft.toml reads the token from the environment (token_env)")
        .to_owned();
    let store = config["store"].as_table_mut().unwrap();
    let db = store["path"].as_str().unwrap();
    assert!(
        db.starts_with("/var/lib/weft/"),
        "the history is kept in /var/lib/weft, the compose volume and the systemd \
         StateDirectory: {db}"
    );
    store.insert(
        "path".into(),
        dir.join("weft.db").display().to_string().into(),
    );
    let mut echo = None;
    for service in config["service"].as_array_mut().unwrap() {
        let service = service.as_table_mut().unwrap();
        let port = free_port();
        let listen: Vec<toml::Value> = match &service["listen"] {
            toml::Value::String(one) => vec![one.as_str().into()],
            toml::Value::Array(many) => many.clone(),
            other => panic!("listen = {other}"),
        };
        let listen: Vec<String> = listen
            .iter()
            .map(|e| with_port(e.as_str().unwrap(), port).0)
            .collect();
        if service["kind"].as_str() == Some("echo") {
            echo = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        service.insert("listen".into(), listen.into());
    }
    let path = dir.join("weft.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let config = WeftConfig {
        path,
        dashboard: ([127, 0, 0, 1], dashboard_port).into(),
        echo: echo.expect("deploy/weft.toml runs an echo service"),
        token_env,
    };
    (config, deployed_port)
}

/// Kills the process when the test ends, passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `curl` `url` with `args`: the status code and the body (status 0: no answer).
fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl must be installed (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_owned())
}

/// A PromQL query through Prometheus' HTTP API: the whole answer.
fn query(prometheus: SocketAddr, promql: &str) -> Value {
    let url = format!("http://{prometheus}/api/v1/query");
    let (_, body) = curl(
        &url,
        &["--get", "--data-urlencode", &format!("query={promql}")],
    );
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// The value of the first sample `promql` gives, if any.
fn sample(prometheus: SocketAddr, promql: &str) -> Option<f64> {
    let answer = query(prometheus, promql);
    answer["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
}

/// Waits up to 60 s for `f` (Prometheus takes a few seconds to start on a busy machine).
fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>, context: impl Fn() -> String) -> T {
    weft_test_support::wait_for(60, what, f, context)
}

#[test]
fn prometheus_as_compose_starts_it_scrapes_weft_with_the_token() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED: no prometheus binary on PATH (scripts/test installs Debian's \
             `prometheus` package); the compose deploy was not run"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let compose = compose();
    let weft_service = compose.service("weft");
    let prom_service = compose.service("prometheus");

    // weft as compose runs it: its command, deploy/weft.toml, the token in its environment.
    let weft_config_target = weft_service
        .command
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("the weft service runs with --config");
    let weft_source = weft_service
        .mounted_at(weft_config_target)
        .expect("deploy/weft.toml is mounted where the weft service reads its config");
    assert!(
        weft_service
            .volumes
            .iter()
            .any(|v| v.split(':').nth(1) == Some("/var/lib/weft")),
        "the history directory is a volume: {:?}",
        weft_service.volumes
    );
    let (weft, deployed_port) = weft_config(&weft_source, dir.path());
    assert!(
        weft_service.environment.contains_key(&weft.token_env),
        "compose gives weft {} (its token_env)",
        weft.token_env
    );
    let token = format!("deploy-test-token-{}", std::process::id());
    let args: Vec<String> = weft_service
        .command
        .iter()
        .map(|a| {
            if a == weft_config_target {
                weft.path.display().to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    let weft_log = dir.path().join("weft.log");
    let _weft = Running(
        Command::new(weft_bin())
            .args(&args)
            .env(&weft.token_env, &token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&weft_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let weft_says = || std::fs::read_to_string(&weft_log).unwrap_or_default();
    let readyz = format!("http://{}/readyz", weft.dashboard);
    wait_for(
        "weft ready",
        || (curl(&readyz, &[]).0 == 200).then_some(()),
        weft_says,
    );

    // Without the token /metrics is refused, so `up == 1` below means the token got
    // through; with it, the dashboard answers to the name Prometheus knows it by.
    let metrics = format!("http://{}/metrics", weft.dashboard);
    assert_eq!(curl(&metrics, &[]).0, 401, "{}", weft_says());
    let bearer = format!("Authorization: Bearer {token}");
    let as_compose = format!("Host: weft:{}", weft.dashboard.port());
    assert_eq!(
        curl(&metrics, &["-H", &bearer, "-H", &as_compose]).0,
        200,
        "the dashboard answers Host weft (allowed_hosts)\n{}",
        weft_says()
    );
    let mut echo = TcpStream::connect(weft.echo).unwrap();
    std::io::Write::write_all(&mut echo, b"scrape me").unwrap();

    // Prometheus: compose's flags, with the paths and the listen address of this test.
    let config_target = prom_service
        .flag("--config.file")
        .expect("compose gives prometheus --config.file");
    let config_source = prom_service
        .mounted_at(config_target)
        .expect("deploy/prometheus.yml is mounted at --config.file");
    let mut config = yaml(&config_source);
    let token_file = dir.path().join("weft_token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let jobs = config["scrape_configs"]
        .as_array_mut()
        .expect("prometheus.yml has scrape_configs");
    assert!(!jobs.is_empty());
    for job in jobs.iter_mut() {
        let secret_path = job["authorization"]["credentials_file"]
            .as_str()
            .expect("the scrape job reads the token from authorization.credentials_file")
            .to_owned();
        let name = secret_path
            .strip_prefix("/run/secrets/")
            .unwrap_or_else(|| panic!("{secret_path}: not a compose secret"));
        assert!(
            prom_service.secrets.iter().any(|s| s == name),
            "compose grants the prometheus service the secret {name:?}"
        );
        let secret = compose
            .secrets
            .get(name)
            .unwrap_or_else(|| panic!("docker-compose.yml defines no secret {name:?}"));
        assert_eq!(
            secret.environment.as_deref(),
            Some(weft.token_env.as_str()),
            "the secret {name:?} holds weft's token (file: {:?})",
            secret.file
        );
        job["authorization"]["credentials_file"] = token_file.display().to_string().into();
        for targets in job["static_configs"].as_array_mut().unwrap() {
            for target in targets["targets"].as_array_mut().unwrap() {
                let (host, port) = target.as_str().unwrap().rsplit_once(':').unwrap();
                assert!(
                    compose.services.contains_key(host),
                    "{host}: the target is a compose service"
                );
                assert_eq!(port, deployed_port.to_string(), "the dashboard's port");
                *target = weft.dashboard.to_string().into();
            }
        }
        if job.get("scrape_interval").is_some() {
            job["scrape_interval"] = "1s".into();
        }
    }
    config["global"]["scrape_interval"] = "1s".into();
    let config_copy = dir.path().join("prometheus.yml");
    // JSON is YAML: Prometheus reads it as it reads the original.
    std::fs::write(&config_copy, config.to_string()).unwrap();

    let prometheus: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut flags: Vec<String> = prom_service
        .command
        .iter()
        .filter(|a| {
            !a.starts_with("--web.listen-address")
                && !a.starts_with("--storage.tsdb.path")
                && !a.starts_with("--config.file")
        })
        .cloned()
        .collect();
    flags.push(format!("--config.file={}", config_copy.display()));
    flags.push(format!(
        "--storage.tsdb.path={}",
        dir.path().join("tsdb").display()
    ));
    flags.push(format!("--web.listen-address={prometheus}"));
    let prom_log = dir.path().join("prometheus.log");
    let mut prom = Running(
        Command::new("prometheus")
            .args(&flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&prom_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let prom_says = || {
        let targets = curl(&format!("http://{prometheus}/api/v1/targets"), &[]).1;
        format!(
            "flags: {flags:?}\ntargets: {targets}\nprometheus log:\n{}\nweft log:\n{}",
            std::fs::read_to_string(&prom_log).unwrap_or_default(),
            weft_says()
        )
    };
    let started = Instant::now();
    wait_for(
        "up{job=\"weft\"} == 1",
        || {
            if let Ok(Some(status)) = prom.0.try_wait() {
                panic!("prometheus exited with {status}\n{}", prom_says());
            }
            (sample(prometheus, "up{job=\"weft\"}") == Some(1.0)).then_some(())
        },
        prom_says,
    );
    let opened = wait_for(
        "the echo connection in a weft_ series",
        || {
            sample(
                prometheus,
                r#"weft_connections_opened_total{service="echo",transport="tcp"}"#,
            )
            .filter(|n| *n >= 1.0)
        },
        prom_says,
    );
    eprintln!(
        "prometheus scraped weft (opened = {opened}) {:?} after it started",
        started.elapsed()
    );

    // Every panel of the provisioned dashboard is a query this Prometheus accepts.
    for (title, expr) in dashboard_queries(&compose) {
        let answer = query(prometheus, &expr);
        assert_eq!(
            answer["status"], "success",
            "panel {title:?}: {expr}\n{answer}"
        );
    }
}

/// Each panel's title and query, from every dashboard compose mounts for Grafana.
fn dashboard_queries(compose: &Compose) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for dashboard in grafana(compose).dashboards {
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    queries.push((panel["title"].to_string(), expr.to_owned()));
                }
            }
        }
    }
    assert!(!queries.is_empty(), "the dashboards query nothing");
    queries
}

/// Grafana's provisioning as compose mounts it.
struct Grafana {
    /// Provisioned data sources: uid -> the whole entry.
    datasources: BTreeMap<String, Value>,
    /// The dashboards, parsed.
    dashboards: Vec<Value>,
}

/// Where Grafana reads provisioning files in its image.
const PROVISIONING: &str = "/etc/grafana/provisioning";

fn grafana(compose: &Compose) -> Grafana {
    let service = compose.service("grafana");
    let provisioning = service
        .mounted_at(PROVISIONING)
        .expect("the provisioning directory is mounted where Grafana reads it");
    let mut datasources = BTreeMap::new();
    let mut dashboards = Vec::new();
    let mut files = 0;
    for kind in std::fs::read_dir(&provisioning).unwrap() {
        let kind = kind.unwrap().path();
        for file in std::fs::read_dir(&kind).unwrap() {
            let file = file.unwrap().path();
            let doc = yaml(&file);
            files += 1;
            assert_eq!(doc["apiVersion"], 1, "{}", file.display());
            match kind.file_name().unwrap().to_str().unwrap() {
                "datasources" => {
                    for source in doc["datasources"].as_array().unwrap() {
                        let uid = source["uid"].as_str().expect("a data source has a uid");
                        datasources.insert(uid.to_owned(), source.clone());
                    }
                }
                "dashboards" => {
                    for provider in doc["providers"].as_array().unwrap() {
                        let path = provider["options"]["path"].as_str().unwrap();
                        let mounted = service.mounted_below(path);
                        assert!(!mounted.is_empty(), "no dashboard is mounted in {path}");
                        for json in mounted {
                            let text = std::fs::read_to_string(&json).unwrap();
                            dashboards.push(
                                serde_json::from_str(&text)
                                    .unwrap_or_else(|e| panic!("{}: {e}", json.display())),
                            );
                        }
                    }
                }
                other => panic!("{}: unknown provisioning kind {other}", file.display()),
            }
        }
    }
    assert!(files >= 2, "provisioning has data sources and dashboards");
    Grafana {
        datasources,
        dashboards,
    }
}

/// Every `datasource` reference in `value`, at any depth (panels, targets, variables).
fn datasource_refs<'a>(value: &'a Value, found: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "datasource" {
                    found.push(v);
                } else {
                    datasource_refs(v, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| datasource_refs(v, found)),
        _ => {}
    }
}

#[test]
fn grafana_provisioning_points_the_dashboard_at_the_provisioned_prometheus() {
    let compose = compose();
    let grafana = grafana(&compose);
    assert!(
        !grafana.datasources.is_empty(),
        "no data source is provisioned"
    );
    assert!(
        !grafana.dashboards.is_empty(),
        "no dashboard is provisioned"
    );

    // The data source reaches Prometheus where compose runs it.
    let prom_listen = compose
        .service("prometheus")
        .flag("--web.listen-address")
        .unwrap_or("0.0.0.0:9090");
    let prom_port = prom_listen.rsplit_once(':').unwrap().1;
    for (uid, source) in &grafana.datasources {
        let url = source["url"].as_str().unwrap();
        let authority = url.strip_prefix("http://").unwrap().trim_end_matches('/');
        let (host, port) = authority.rsplit_once(':').unwrap();
        if source["type"] == "prometheus" {
            assert_eq!(host, "prometheus", "data source {uid}: {url}");
            assert!(
                compose.services.contains_key(host),
                "{host} is a compose service"
            );
            assert_eq!(port, prom_port, "data source {uid}: {url}");
        }
    }

    for dashboard in &grafana.dashboards {
        let mut refs = Vec::new();
        datasource_refs(dashboard, &mut refs);
        assert!(
            !refs.is_empty(),
            "{} names no data source",
            dashboard["uid"]
        );
        for r in refs {
            let uid = r["uid"]
                .as_str()
                .unwrap_or_else(|| panic!("a data source reference without uid: {r}"));
            let source = grafana.datasources.get(uid).unwrap_or_else(|| {
                panic!(
                    "dashboard {} uses data source uid {uid:?}; provisioned: {:?}",
                    dashboard["uid"],
                    grafana.datasources.keys().collect::<Vec<_>>()
                )
            });
            assert_eq!(r["type"], source["type"], "data source {uid}: {r}");
        }
    }
}
