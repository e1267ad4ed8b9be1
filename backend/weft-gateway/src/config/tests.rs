//! Configuration errors a user sees: file, line, key, reason.

use std::time::Duration;

use super::*;

fn err(text: &str) -> ConfigError {
    Config::parse("weft.toml", text).expect_err("the configuration should be rejected")
}

fn at(e: &ConfigError) -> (Option<usize>, Option<&str>) {
    (e.line, e.key.as_deref())
}

#[test]
fn the_demo_configuration_is_valid_and_on_loopback() {
    let demo = Config::demo();
    assert_eq!(demo.dashboard.listen, "tcp:9180:interface=127.0.0.1");
    assert_eq!(demo.store.path, std::path::PathBuf::from("weft.db"));
    let echo = &demo.services[0];
    assert_eq!(echo.kind, ServiceKind::Echo);
    assert_eq!(
        echo.listen,
        [
            "tcp:8000:interface=127.0.0.1",
            "udp:8000:interface=127.0.0.1"
        ]
    );
    assert_eq!(demo.services[1].kind, ServiceKind::Discard);
}

#[test]
fn an_empty_file_gets_every_default() {
    let c = Config::parse("weft.toml", "").unwrap();
    assert_eq!(c.store.retention, Duration::from_secs(24 * 3600));
    assert_eq!(c.store.connections_per_second, 1000);
    assert_eq!(c.inspect.stall_after, Duration::from_secs(5));
    assert_eq!(c.inspect.slow_callback, Duration::from_millis(100));
    assert!(c.services.is_empty());
}

#[test]
fn an_unknown_key_names_its_line_and_the_key() {
    let e = err(
        "[store]\npath = \"x.db\"\n\n[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:0\"\nlisen = 1\n",
    );
    assert_eq!(e.line, Some(8), "{e}");
    assert!(e.message.contains("unknown field `lisen`"), "{e}");
    assert!(e.to_string().starts_with("weft.toml:8:1: "), "{e}");
}

#[test]
fn a_bad_duration_names_its_line_and_key() {
    let e = err("[inspect]\nstall_after = \"5s\"\nslow_callback = \"fast\"\n");
    assert_eq!(at(&e), (Some(3), Some("inspect.slow_callback")));
    assert!(e.message.contains("\"fast\" is not a duration"), "{e}");
    let e = err("[store]\nretention = \"0s\"\n");
    assert_eq!(at(&e), (Some(2), Some("store.retention")));
}

#[test]
fn durations_take_the_usual_units() {
    let c = Config::parse(
        "weft.toml",
        "[store]\nretention = \"1h 30m\"\nconnections_per_second = 0\n[inspect]\nstall_after = \"250ms\"\nsample = 1.0\n",
    )
    .unwrap();
    assert_eq!(c.store.retention, Duration::from_secs(5400));
    assert_eq!(c.store.connections_per_second, 0);
    assert_eq!(c.inspect.stall_after, Duration::from_millis(250));
    assert_eq!(c.inspect.sample, 1.0);
    let e = err("[inspect]\nsample = 1.5\n");
    assert_eq!(at(&e), (Some(2), Some("inspect.sample")));
}

#[test]
fn an_unknown_kind_lists_the_kinds() {
    let e = err("[[service]]\nname = \"x\"\nkind = \"gopher\"\nlisten = \"tcp:70\"\n");
    assert!(e.message.contains("unknown kind \"gopher\""), "{e}");
    assert!(e.message.contains("http, dns"), "{e}");
}

#[test]
fn a_token_can_come_from_the_environment() {
    // `set_var` needs `unsafe` in edition 2024; use a variable every process has.
    let c = Config::parse(
        "weft.toml",
        "[dashboard]\nlisten = \"tcp:9180\"\ntoken_env = \"PATH\"\n",
    )
    .unwrap();
    assert_eq!(c.dashboard.token, std::env::var("PATH").ok());
    let e = err("[dashboard]\ntoken_env = \"WEFT_SURELY_UNSET_VARIABLE\"\n");
    assert!(e.to_string().contains("WEFT_SURELY_UNSET_VARIABLE"), "{e}");
    assert!(e.to_string().contains("dashboard.token_env"), "{e}");
    let e = err("[dashboard]\ntoken = \"a\"\ntoken_env = \"PATH\"\n");
    assert!(e.to_string().contains("not both"), "{e}");
}

#[test]
fn a_dashboard_off_loopback_needs_a_token() {
    let e = err("[dashboard]\nlisten = \"tcp:9180\"\n");
    assert_eq!(at(&e), (Some(2), Some("dashboard.listen")));
    assert!(e.message.contains("set `token`"), "{e}");
    let c = Config::parse(
        "weft.toml",
        "[dashboard]\nlisten = \"tcp:9180\"\ntoken = \"t0k\"\n",
    )
    .unwrap();
    assert_eq!(c.dashboard.token.as_deref(), Some("t0k"));
    let e = err("[dashboard]\nlisten = \"udp:9180:interface=127.0.0.1\"\n");
    assert!(e.message.contains("tcp: endpoint"), "{e}");
}

#[test]
fn the_dashboard_names_it_answers_to_and_its_live_clients_are_checked() {
    let c = Config::parse(
        "weft.toml",
        "[dashboard]\nallowed_hosts = [\"weft.lan\", \"Proxy.Example:8443\"]\nmax_live_clients = 8\n",
    )
    .unwrap();
    let hosts: Vec<String> = c
        .dashboard
        .allowed_hosts
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(hosts, ["weft.lan", "proxy.example:8443"]);
    assert_eq!(c.dashboard.max_live_clients, 8);
    let demo = Config::demo();
    assert!(demo.dashboard.allowed_hosts.is_empty());
    assert_eq!(demo.dashboard.max_live_clients, 256);

    let e = err("[dashboard]\nallowed_hosts = [\"weft.lan\", \"http://weft.lan/\"]\n");
    assert_eq!(at(&e), (Some(2), Some("dashboard.allowed_hosts[1]")));
    assert!(e.message.contains("no scheme, no path"), "{e}");
    for n in ["0", "-1", "100001"] {
        let e = err(&format!("[dashboard]\nmax_live_clients = {n}\n"));
        assert_eq!(at(&e), (Some(2), Some("dashboard.max_live_clients")), "{n}");
        assert!(e.message.contains("between 1 and 100000"), "{e}");
    }
}

#[test]
fn endpoints_are_checked() {
    let e =
        err("[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = [\"tcp:8000\", \"tcp:nope\"]\n");
    assert_eq!(at(&e), (Some(4), Some("service[0].listen")));
    let e = err("[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = 8000\n");
    assert!(e.message.contains("endpoint string or a list"), "{e}");
    let e = err(
        "[[service]]\nname = \"a\"\nkind = \"echo\"\nlisten = \"tcp:8000\"\n\
         [[service]]\nname = \"b\"\nkind = \"discard\"\nlisten = \"tcp:8000\"\n",
    );
    assert_eq!(at(&e), (Some(8), Some("service[1].listen")));
    assert!(e.message.contains("also used by service[0] (a)"), "{e}");
}

#[test]
fn service_names_are_unique() {
    let e = err(
        "[[service]]\nname = \"a\"\nkind = \"echo\"\nlisten = \"tcp:1\"\n\
         [[service]]\nname = \"a\"\nkind = \"echo\"\nlisten = \"tcp:2\"\n",
    );
    assert_eq!(at(&e), (Some(6), Some("service[1].name")));
}

#[test]
fn a_tcp_proxy_needs_a_stream_listener_and_an_upstream() {
    let ok = Config::parse(
        "weft.toml",
        "[[service]]\nname = \"pg\"\nkind = \"tcp-proxy\"\nlisten = \"tcp:15432\"\nupstream = \"tcp:127.0.0.1:5432\"\n",
    )
    .unwrap();
    assert_eq!(
        ok.services[0].kind,
        ServiceKind::TcpProxy(crate::services::tcp_proxy::TcpProxyConfig {
            upstream: "tcp:127.0.0.1:5432".into()
        })
    );
    let e = err("[[service]]\nname = \"pg\"\nkind = \"tcp-proxy\"\nlisten = \"tcp:15432\"\n");
    assert_eq!(at(&e), (Some(3), Some("service[0].upstream")));
    let e = err(
        "[[service]]\nname = \"pg\"\nkind = \"tcp-proxy\"\nlisten = \"udp:15432\"\nupstream = \"tcp:h:1\"\n",
    );
    assert_eq!(at(&e), (Some(4), Some("service[0].listen")));
    let e = err(
        "[[service]]\nname = \"pg\"\nkind = \"tcp-proxy\"\nlisten = \"tcp:1\"\nupstream = \"tcp:nohost\"\n",
    );
    assert_eq!(at(&e), (Some(5), Some("service[0].upstream")));
}

#[test]
fn a_key_of_another_kind_is_named() {
    let e = err(
        "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:1\"\nupstream = \"tcp:h:1\"\n",
    );
    assert_eq!(at(&e), (Some(5), Some("service[0].upstream")));
    assert!(e.message.contains("not a setting of kind \"echo\""), "{e}");
}

#[test]
fn a_missing_file_is_named() {
    let e = Config::load(std::path::Path::new("/nonexistent/weft.toml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/weft.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn a_syntax_error_names_its_line() {
    let e = err("[store]\npath = \"unterminated\n");
    assert_eq!(e.line, Some(2), "{e}");
}
