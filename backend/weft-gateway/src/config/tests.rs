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
    assert!(demo.demo.traffic, "the built-in demo makes its own traffic");
    let kinds: Vec<&str> = demo.services.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["echo", "discard", "tcp-proxy", "http", "dns"]);
    for service in &demo.services {
        for endpoint in &service.listen {
            assert!(endpoint.ends_with(":interface=127.0.0.1"), "{endpoint}");
        }
    }
    let ServiceKind::Http(http) = &demo.services[3].kind else {
        unreachable!()
    };
    let web = &http.web;
    let site = web.embedded.as_ref().expect("the site is built in");
    assert!(site.names().any(|n| n == "index.html"), "{site:?}");
    assert_eq!(web.routes[0].upstreams[0].authority(), "127.0.0.1:8081");
    let ServiceKind::Dns(dns) = &demo.services[4].kind else {
        unreachable!()
    };
    let origins: Vec<String> = dns
        .config
        .zones
        .zones()
        .iter()
        .map(|z| z.origin().to_string())
        .collect();
    assert_eq!(origins, ["weft.test."]);
    assert_eq!(dns.config.forward, ["127.0.0.1:5354".parse().unwrap()]);
}

#[test]
fn demo_traffic_is_off_unless_asked_for_and_its_ports_are_claimed() {
    assert!(!Config::parse("weft.toml", "").unwrap().demo.traffic);
    assert!(
        !Config::parse("weft.toml", "[demo]\ntraffic = false\n")
            .unwrap()
            .demo
            .traffic
    );
    assert!(
        Config::parse("weft.toml", "[demo]\ntraffic = true\n")
            .unwrap()
            .demo
            .traffic
    );
    let e = err("[demo]\ntrafic = true\n");
    assert_eq!(at(&e), (Some(2), Some("demo.trafic")), "{e}");
    let e = err("[demo]\ntraffic = \"yes\"\n");
    assert_eq!(at(&e), (Some(2), Some("demo.traffic")), "{e}");
    let e = err(
        "[demo]\ntraffic = true\n[[service]]\nname = \"api\"\nkind = \"echo\"\n\
         listen = \"tcp:8081\"\n",
    );
    assert_eq!(at(&e), (Some(2), Some("demo.traffic")), "{e}");
    assert!(e.message.contains("TCP port 8081"), "{e}");
    assert!(e.message.contains("service[0] (api)"), "{e}");
    // Without the demo's parts, the port is free for a service.
    Config::parse(
        "weft.toml",
        "[[service]]\nname = \"api\"\nkind = \"echo\"\nlisten = \"tcp:8081\"\n",
    )
    .unwrap();
}

#[test]
fn an_empty_file_gets_every_default() {
    let c = Config::parse("weft.toml", "").unwrap();
    assert_eq!(c.store.retention, Duration::from_secs(24 * 3600));
    assert_eq!(c.store.connections_per_second, 1000);
    assert_eq!(c.store.queries_per_second, 1000);
    assert_eq!(c.inspect.stall_after, Duration::from_secs(5));
    assert_eq!(c.inspect.slow_callback, Duration::from_millis(100));
    assert!(c.services.is_empty());
}

#[test]
fn an_unknown_key_names_its_line_and_the_key() {
    let e = err(
        "[store]\npath = \"x.db\"\n\n[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:0\"\nlisen = 1\n",
    );
    assert_eq!(at(&e), (Some(8), Some("service[0].lisen")), "{e}");
    assert!(
        e.message
            .starts_with("unknown key `lisen`; did you mean `listen`?"),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("weft.toml:8:1: service[0].lisen: unknown key"),
        "{e}"
    );
}

#[test]
fn toml_type_and_duplicate_key_errors_name_the_key() {
    let e = err("[store]\nretention = 24\n");
    assert_eq!(at(&e), (Some(2), Some("store.retention")), "{e}");
    assert_eq!(
        e.message, "expected a duration in quotes, such as \"5s\", found the number 24",
        "{e}"
    );
    let e = err("[inspect]\nsample = 0.5\nsample = 0.2\n");
    assert_eq!(at(&e), (Some(3), Some("inspect.sample")), "{e}");
    assert!(e.message.contains("duplicate key"), "{e}");
    let e = err(
        "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:1\"\ncache_size = \"big\"\n",
    );
    assert_eq!(at(&e), (Some(5), Some("service[0].cache_size")), "{e}");
    let e = err("[[service]]\nkind = \"echo\"\nlisten = \"tcp:1\"\n");
    assert_eq!(at(&e), (Some(1), Some("service[0]")), "{e}");
    assert!(e.message.contains("missing key `name`"), "{e}");
}

#[test]
fn a_bad_duration_names_its_line_and_key() {
    let e = err("[inspect]\nstall_after = \"5s\"\nslow_callback = \"fast\"\n");
    assert_eq!(at(&e), (Some(3), Some("inspect.slow_callback")));
    assert!(e.message.contains("\"fast\" is not a duration"), "{e}");
    let e = err("[store]\nretention = \"0s\"\n");
    assert_eq!(at(&e), (Some(2), Some("store.retention")));
}

/// A value below what its key can use is taken for a slip of the unit ("1ns" for "1s"):
/// refused, naming the floor and what the value would do.
#[test]
fn a_duration_too_short_to_be_of_use_is_refused_naming_the_floor() {
    let service = |keys: &str| {
        format!(
            "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:0\"\n{keys}\n\
             [[service.route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\n"
        )
    };
    for (text, key, floor) in [
        (
            "[store]\nretention = \"59s\"".to_owned(),
            "store.retention",
            "at least 1m: history would be pruned",
        ),
        (
            "[inspect]\nstall_after = \"1ms\"".to_owned(),
            "inspect.stall_after",
            "at least 10ms",
        ),
        (
            "[inspect]\nslow_callback = \"1ns\"".to_owned(),
            "inspect.slow_callback",
            "at least 1ms",
        ),
        (
            service("idle_timeout = \"1ns\""),
            "service[0].idle_timeout",
            "at least 100ms: a client would be cut off",
        ),
        (
            service("limits = { request_timeout = \"99ms\" }"),
            "service[0].limits.request_timeout",
            "at least 100ms",
        ),
        (
            service("limits = { upstream_timeout = \"9ms\" }"),
            "service[0].limits.upstream_timeout",
            "at least 10ms: an upstream's answer would be given up",
        ),
        (
            "[[service]]\nname = \"dns\"\nkind = \"dns\"\nlisten = \"udp:0\"\n\
             forward = [\"192.0.2.1\"]\ntimeout = \"1ms\"\n"
                .to_owned(),
            "service[0].timeout",
            "at least 10ms",
        ),
        (
            service("hsts_max_age = \"999ms\""),
            "service[0].hsts_max_age",
            "at least 1s: max-age counts whole seconds",
        ),
    ] {
        let e = err(&text);
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert!(e.message.contains(&format!("is too short: {floor}")), "{e}");
    }
    // At the floor, each is taken; "0s" still turns an idle timeout off.
    for ok in [
        "[store]\nretention = \"1m\"\n[inspect]\nstall_after = \"10ms\"\nslow_callback = \"1ms\""
            .to_owned(),
        service(
            "idle_timeout = \"100ms\"\nlimits = { request_timeout = \"100ms\", upstream_timeout = \"10ms\" }",
        ),
        service("idle_timeout = \"0s\""),
    ] {
        Config::parse("weft.toml", &ok).unwrap_or_else(|e| panic!("{e}\n{ok}"));
    }
}

#[test]
fn durations_take_the_usual_units() {
    let c = Config::parse(
        "weft.toml",
        "[store]\nretention = \"1h 30m\"\nconnections_per_second = 0\nqueries_per_second = 7\n[inspect]\nstall_after = \"250ms\"\nsample = 1.0\n",
    )
    .unwrap();
    assert_eq!(c.store.retention, Duration::from_secs(5400));
    assert_eq!(c.store.connections_per_second, 0);
    assert_eq!(c.store.queries_per_second, 7);
    assert_eq!(c.inspect.stall_after, Duration::from_millis(250));
    assert_eq!(c.inspect.sample, 1.0);
    let e = err("[inspect]\nsample = 1.5\n");
    assert_eq!(at(&e), (Some(2), Some("inspect.sample")));
    // A unit twice is a slip, not a sum; spaces around the value are refused.
    for (value, says) in [
        ("1h1h", r#"the unit "h" comes twice"#),
        ("1h 2hours", r#"the unit "hours" comes twice"#),
        (" 5s", "spaces around it"),
        ("5s ", "spaces around it"),
        ("0", r#""0" has no unit; write it with one, such as "0s""#),
        // A number parted from its unit, or from the next number (read as one: 3500 ms).
        ("5 s", r#""5" is not a number with its unit"#),
        ("3 500ms", r#""3" is not a number with its unit"#),
        ("1h 30", r#""30" is not a number with its unit"#),
    ] {
        let e = err(&format!("[store]\nretention = {value:?}\n"));
        assert_eq!(at(&e), (Some(2), Some("store.retention")), "{e}");
        assert!(e.to_string().contains(says), "{value:?}: {e}");
    }
}

#[test]
fn the_caps_per_second_of_samples_and_failures_default_and_are_bounded() {
    let defaults = Config::parse("weft.toml", "").unwrap().inspect;
    assert_eq!(
        (defaults.sample_per_second, defaults.failed_per_second),
        (200, 200)
    );
    for (name, uncapped) in [
        ("sample_per_second", (0, 200)),
        ("failed_per_second", (200, 0)),
    ] {
        let c = Config::parse("weft.toml", &format!("[inspect]\n{name} = 0\n")).unwrap();
        let caps = (c.inspect.sample_per_second, c.inspect.failed_per_second);
        assert_eq!(caps, uncapped, "{name}");
        for bad in ["-1", "1000001"] {
            let e = err(&format!("[inspect]\n{name} = {bad}\n"));
            let key = format!("inspect.{name}");
            assert_eq!(at(&e), (Some(2), Some(key.as_str())), "{e}");
        }
    }
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
    let e = err("[dashboard]\ntoken = \"a-token-of-twenty-one\"\ntoken_env = \"PATH\"\n");
    assert!(e.to_string().contains("not both"), "{e}");
}

#[test]
fn a_token_that_could_never_be_presented_is_refused() {
    for token in ["tök", "abc; def", " spaced ", "a,b", "q\\\"uote"] {
        let e = err(&format!("[dashboard]\ntoken = {token:?}\n"));
        assert!(e.to_string().contains("cannot carry"), "{token}: {e}");
        assert!(e.to_string().contains("dashboard.token"), "{token}: {e}");
    }
    let c = Config::parse(
        "weft.toml",
        "[dashboard]\ntoken = \"s3cr3t-Tok_en.~+/=:!\"\n",
    );
    assert!(c.is_ok(), "{c:?}");
}

#[test]
fn a_token_too_short_to_resist_guessing_is_refused() {
    let e = err("[dashboard]\ntoken = \"s3cret\"\n");
    assert_eq!(at(&e), (Some(2), Some("dashboard.token")));
    assert!(e.message.contains("6 characters long"), "{e}");
    assert!(e.message.contains("openssl rand"), "{e}");
    let c = Config::parse("weft.toml", "[dashboard]\ntoken = \"0123456789abcdef\"\n");
    assert!(c.is_ok(), "16 characters are enough: {c:?}");
}

#[test]
fn a_dashboard_off_loopback_needs_a_token() {
    let e = err("[dashboard]\nlisten = \"tcp:9180\"\n");
    assert_eq!(at(&e), (Some(2), Some("dashboard.listen")));
    assert!(e.message.contains("set `token`"), "{e}");
    let c = Config::parse(
        "weft.toml",
        "[dashboard]\nlisten = \"tcp:9180\"\ntoken = \"t0k-0123456789abcdef\"\n",
    )
    .unwrap();
    assert_eq!(c.dashboard.token.as_deref(), Some("t0k-0123456789abcdef"));
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
fn the_dashboards_connection_caps_default_safe_and_are_checked() {
    let demo = Config::demo();
    assert_eq!(
        (
            demo.dashboard.max_connections,
            demo.dashboard.max_connections_per_peer
        ),
        (1024, 64)
    );
    let c = Config::parse(
        "weft.toml",
        "[dashboard]\nmax_connections = 100\nmax_connections_per_peer = 0\n",
    )
    .unwrap();
    assert_eq!(
        (
            c.dashboard.max_connections,
            c.dashboard.max_connections_per_peer
        ),
        (100, 0)
    );
    for (key, n, range) in [
        ("max_connections", "0", "between 1 and 100000"),
        ("max_connections", "100001", "between 1 and 100000"),
        ("max_connections_per_peer", "-1", "between 0 and 100000"),
    ] {
        let e = err(&format!("[dashboard]\n{key} = {n}\n"));
        let path = format!("dashboard.{key}");
        assert_eq!(at(&e), (Some(2), Some(path.as_str())), "{key} = {n}");
        assert!(e.message.contains(range), "{e}");
    }
    // A cap per peer written above the total caps nothing; the default one is only not
    // reached.
    let e = err("[dashboard]\nmax_connections = 10\nmax_connections_per_peer = 11\n");
    assert_eq!(
        at(&e),
        (Some(3), Some("dashboard.max_connections_per_peer")),
        "{e}"
    );
    assert!(
        e.message.contains("above the total (max_connections = 10)"),
        "{e}"
    );
    let c = Config::parse("weft.toml", "[dashboard]\nmax_connections = 10\n").unwrap();
    assert_eq!(c.dashboard.max_connections_per_peer, 64);
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
    assert!(
        e.message
            .contains("\"tcp:8000\" overlaps \"tcp:8000\" of service[0] (a)"),
        "{e}"
    );
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
fn the_label_of_work_outside_any_service_is_not_a_service_name() {
    let e = err("[[service]]\nname = \"reactor\"\nkind = \"echo\"\nlisten = \"tcp:1\"\n");
    assert_eq!(at(&e), (Some(2), Some("service[0].name")));
    assert!(e.message.contains("reserved"), "{e}");
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
fn a_tcp_proxy_upstream_no_connection_could_be_made_to_is_refused() {
    let proxy = |listen: &str, upstream: &str| {
        Config::parse(
            "weft.toml",
            &format!(
                "[[service]]\nname = \"pg\"\nkind = \"tcp-proxy\"\nlisten = \"{listen}\"\n\
                 upstream = \"{upstream}\"\n"
            ),
        )
    };
    for (listen, upstream) in [
        ("tcp:15432", "tcp:127.0.0.1:15432"),
        ("tcp:15432", "tcp:localhost:15432"),
        ("tcp:15432:interface=127.0.0.1", "tcp:127.0.0.1:15432"),
    ] {
        let e = proxy(listen, upstream).expect_err(upstream);
        assert_eq!(at(&e), (Some(5), Some("service[0].upstream")), "{e}");
        assert!(e.message.contains("own listener"), "{e}");
    }
    let e = proxy("tcp:15432", "tcp:127.0.0.1:0").unwrap_err();
    assert!(e.message.contains("\"0\" is no port to connect to"), "{e}");
    // The same socket however its path is spelled.
    let cwd = std::env::current_dir().unwrap();
    let here = cwd.join("pg.sock").display().to_string();
    for (listen, upstream) in [
        ("unix:/tmp/pg.sock", "unix:/tmp/pg.sock".to_owned()),
        ("unix:/tmp/pg.sock", "unix:/tmp/../tmp/pg.sock".to_owned()),
        ("unix:pg.sock", format!("unix:{here}")),
    ] {
        let e = proxy(listen, &upstream).unwrap_err();
        assert!(e.message.contains("own listener"), "{upstream}: {e}");
    }
    // A local address no interface has (RFC 5737): no connection could be made from it.
    let e = proxy("tcp:15432", "tcp:127.0.0.1:5432:bindAddress=198.51.100.7").unwrap_err();
    assert!(
        e.message
            .contains("cannot connect from bindAddress 198.51.100.7"),
        "{e}"
    );
    assert!(proxy("tcp:15432", "tcp:127.0.0.1:5432:bindAddress=127.0.0.1").is_ok());
    // Many hosts, or none a stream reaches, to connect to or from.
    for upstream in [
        "tcp:255.255.255.255:5432",
        "tcp:224.0.0.1:5432",
        "tcp:127.0.0.1:5432:bindAddress=224.0.0.1",
    ] {
        let e = proxy("tcp:15432", upstream).unwrap_err();
        assert!(
            e.message.contains("multicast or broadcast"),
            "{upstream}: {e}"
        );
    }
    // Written as a listener is: the error shows how a client endpoint is written, as a
    // TOML string takes it (each backslash doubled).
    for (upstream, written) in [
        ("tcp:5432:interface=10.0.0.5", "\"tcp:10.0.0.5:5432\""),
        ("tcp:5432", "\"tcp:127.0.0.1:5432\""),
        // As TOML writes it: each backslash doubled.
        (r"tcp6:5432:interface=\\:\\:1", r#""tcp:\\:\\:1:5432""#),
    ] {
        let e = proxy("tcp:15432", upstream).unwrap_err();
        assert!(
            e.message.ends_with(&format!(
                "a client endpoint names the host to connect to, as {written}"
            )),
            "{e}"
        );
    }
    // Another port, or another host's: fine.
    for upstream in [
        "tcp:127.0.0.1:5432",
        "tcp:192.0.2.1:15432",
        "tcp:db.example:15432",
    ] {
        assert!(proxy("tcp:15432", upstream).is_ok(), "{upstream}");
    }
    assert!(proxy("tcp:15432:interface=127.0.0.1", "tcp:127.0.0.2:15432").is_ok());
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
fn a_service_name_is_one_short_line_and_not_the_demo_s_while_its_traffic_runs() {
    let service = |name: &str| {
        format!("[[service]]\nname = \"{name}\"\nkind = \"echo\"\nlisten = \"tcp:7000\"\n")
    };
    // A name goes into metric labels, log lines and the dashboard's addresses: one short
    // line (markup and quotes are escaped where it is shown).
    let long = "a".repeat(65);
    // Nor one that looks like another, or like nothing: spaces around it, invisible,
    // direction-changing or space-like characters.
    for name in [
        "",
        "  ",
        "line\\nbreak",
        "tab\\there",
        "del\\u007f",
        &long,
        " a",
        "a ",
        "\u{202e}echo",
        "\u{200b}",
        "a\u{2066}b",
        "no\u{a0}break",
        "\u{feff}web",
        "ec\u{3164}ho",
        "\u{3164}",
        "ec\u{34f}ho",
        "ec\u{fe0f}ho",
        "ec\u{2800}ho",
    ] {
        let e = err(&service(name));
        assert_eq!(at(&e).1, Some("service[0].name"), "{name:?}: {e}");
    }
    for name in [
        "edge-1.web_2",
        "a b",
        "x\\\"y",
        "<b>",
        "caf\u{e9}",
        &"a".repeat(64),
    ] {
        let c = Config::parse("weft.toml", &service(name));
        assert!(c.is_ok(), "{name:?}: {c:?}");
    }

    // The demo's services report under their names while its traffic runs.
    for name in ["demo-api", "demo-dns", "traffic"] {
        let text = format!("[demo]\ntraffic = true\n{}", service(name));
        let e = err(&text);
        assert_eq!(at(&e).1, Some("service[0].name"), "{name}: {e}");
        assert!(e.message.contains("the demo's"), "{e}");
        assert!(Config::parse("weft.toml", &service(name)).is_ok(), "{name}");
    }
}

#[test]
fn only_a_regular_file_is_read_as_the_configuration() {
    // `/dev/zero` would be read until memory ran out; a named pipe would hold the check,
    // the start or a reload until something wrote to it.
    let e = Config::load(std::path::Path::new("/dev/zero")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/dev/zero: cannot read the configuration: not a regular file"
    );
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("weft.toml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let e = Config::load(&fifo).unwrap_err();
    assert!(e.to_string().ends_with("not a regular file"), "{e}");
}

#[test]
fn a_syntax_error_names_its_line() {
    let e = err("[store]\npath = \"unterminated\n");
    assert_eq!(e.line, Some(2), "{e}");
}

fn echo(listen: &str) -> String {
    format!("[[service]]\nname = \"echo\"\nkind = \"echo\"\nlisten = {listen}\n")
}

#[test]
fn overlapping_listeners_are_refused_in_one_service_across_services_and_with_the_dashboard() {
    let e = err(&echo(
        r#"["tcp:8000", "udp:8000", "tcp:8000:interface=127.0.0.1"]"#,
    ));
    assert_eq!(at(&e), (Some(4), Some("service[0].listen")), "{e}");
    assert!(
        e.message.starts_with(
            "\"tcp:8000:interface=127.0.0.1\" overlaps \"tcp:8000\" of service[0] (echo)"
        ),
        "{e}"
    );
    let e = err(&format!(
        "[dashboard]\nlisten = \"tcp:9180:interface=127.0.0.1\"\n{}",
        echo("\"tcp:9180\"")
    ));
    assert_eq!(at(&e), (Some(6), Some("service[0].listen")), "{e}");
    assert!(
        e.message
            .contains("\"tcp:9180:interface=127.0.0.1\" of dashboard.listen"),
        "{e}"
    );
    // Side by side, as the system binds them.
    Config::parse(
        "weft.toml",
        &echo(r#"["tcp:8000:interface=127.0.0.1", "tcp:8000:interface=127.0.0.2", "udp:8000", "tcp6:8000"]"#),
    )
    .unwrap();
}

#[test]
fn every_duration_is_bounded_so_timers_cannot_overflow_the_clock() {
    let longest = "\"10years\"";
    let keys = [
        ("[store]\nretention = {}\n", "store.retention"),
        ("[inspect]\nstall_after = {}\n", "inspect.stall_after"),
        ("[inspect]\nslow_callback = {}\n", "inspect.slow_callback"),
        (
            "[[service]]\nname = \"w\"\nkind = \"http\"\nlisten = \"tcp:1\"\nlimits = { request_timeout = {} }\n\
             [[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n",
            "service[0].limits.request_timeout",
        ),
        (
            "[[service]]\nname = \"w\"\nkind = \"http\"\nlisten = \"tcp:1\"\nlimits = { upstream_timeout = {} }\n\
             [[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n",
            "service[0].limits.upstream_timeout",
        ),
        (
            "[[service]]\nname = \"w\"\nkind = \"http\"\nlisten = \"tcp:1\"\n\
             limits = { upstream_connect_timeout = {} }\n\
             [[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n",
            "service[0].limits.upstream_connect_timeout",
        ),
        (
            "[[service]]\nname = \"d\"\nkind = \"dns\"\nlisten = \"udp:1\"\nforward = \"127.0.0.1\"\ntimeout = {}\n",
            "service[0].timeout",
        ),
    ];
    for (template, key) in keys {
        Config::parse("weft.toml", &template.replace("{}", longest))
            .unwrap_or_else(|e| panic!("{key} = {longest}: {e}"));
        for too_long in ["\"10years 1s\"", "\"500000000000years\""] {
            let text = template.replace("{}", too_long);
            let e = err(&text);
            let line = text.lines().position(|l| l.contains(too_long)).unwrap() + 1;
            assert_eq!(at(&e), (Some(line), Some(key)), "{e}");
            assert!(
                e.message.ends_with("is too long: at most \"10years\""),
                "{e}"
            );
        }
    }
    assert_eq!(MAX_DURATION, humantime::parse_duration("10years").unwrap());
}

#[test]
fn the_store_directory_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing").join("weft.db");
    let e = err(&format!("[store]\npath = \"{}\"\n", missing.display()));
    assert_eq!(at(&e), (Some(2), Some("store.path")), "{e}");
    assert!(
        e.message.starts_with(&format!(
            "the directory {} does not exist",
            dir.path().join("missing").display()
        )),
        "{e}"
    );
    let e = err(&format!("[store]\npath = \"{}\"\n", dir.path().display()));
    assert!(e.message.contains("is a directory"), "{e}");
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not a database").unwrap();
    let e = err(&format!("[store]\npath = \"{}\"\n", notes.display()));
    assert!(e.message.contains("is not a SQLite database"), "{e}");
    // A FIFO would hang the check that reads its header (and `run`'s open); a directory
    // where the lock file goes would fail `run` only.
    let fifo = dir.path().join("pipe.db");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    let e = err(&format!("[store]\npath = \"{}\"\n", fifo.display()));
    assert!(e.message.contains("is not a regular file"), "{e}");
    std::fs::create_dir(dir.path().join("locked.db.lock")).unwrap();
    let locked = dir.path().join("locked.db");
    let e = err(&format!("[store]\npath = \"{}\"\n", locked.display()));
    assert!(
        e.message.contains("locked.db.lock is not a regular file"),
        "{e}"
    );
    let fresh = dir.path().join("weft.db");
    let c = Config::parse(
        "weft.toml",
        &format!("[store]\npath = \"{}\"\n", fresh.display()),
    )
    .unwrap();
    assert_eq!(c.store.path, fresh, "the file itself is created at run");
}

#[test]
fn a_unix_listener_needs_its_directory_and_no_file_in_the_way() {
    let dir = tempfile::tempdir().unwrap();
    let e = err(&echo(&format!(
        "\"unix:{}\"",
        dir.path().join("missing").join("s.sock").display()
    )));
    assert_eq!(at(&e), (Some(4), Some("service[0].listen")), "{e}");
    assert!(e.message.contains("does not exist"), "{e}");
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "keep me").unwrap();
    let e = err(&echo(&format!("\"unix:{}\"", file.display())));
    assert!(e.message.contains("is not a socket"), "{e}");
    let e = err(&echo(&format!(
        "\"unix:{}:lockfile=1\"",
        dir.path().join("s.sock").display()
    )));
    assert!(e.message.contains("lockfile=1"), "{e}");
    Config::parse(
        "weft.toml",
        &echo(&format!("\"unix:{}\"", dir.path().join("s.sock").display())),
    )
    .unwrap();
}

#[test]
fn tls_files_are_loaded_as_listening_and_connecting_load_them() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    let ssl = |key: &std::path::Path, cert: &std::path::Path| {
        echo(&format!(
            "\"ssl:8443:privateKey={}:certKey={}\"",
            key.display(),
            cert.display()
        ))
    };
    let e = err(&ssl(&key_pem, &cert_pem));
    assert_eq!(at(&e), (Some(4), Some("service[0].listen")), "{e}");
    assert!(
        e.message.contains(&format!(
            "cannot load its privateKey: {}",
            key_pem.display()
        )),
        "{e}"
    );
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    Config::parse("weft.toml", &ssl(&key_pem, &cert_pem)).unwrap();
    let e = err(&ssl(&key_pem, &key_pem));
    assert!(
        e.message
            .contains("cannot load its privateKey (also its certKey)")
            && e.message.contains("no CERTIFICATE"),
        "{e}"
    );

    let proxy = |upstream: &str| {
        format!(
            "[[service]]\nname = \"up\"\nkind = \"tcp-proxy\"\nlisten = \"tcp:1\"\nupstream = \"{upstream}\"\n"
        )
    };
    let e = err(&proxy(&format!(
        "ssl:localhost:443:caCerts={}",
        dir.path().join("ca.pem").display()
    )));
    assert_eq!(at(&e), (Some(5), Some("service[0].upstream")), "{e}");
    assert!(e.message.contains("cannot load its caCerts"), "{e}");
    Config::parse(
        "weft.toml",
        &proxy(&format!("ssl:localhost:443:caCerts={}", cert_pem.display())),
    )
    .unwrap();
}

#[test]
fn the_log_format_is_text_or_json() {
    let format = |text: &str| Config::parse("weft.toml", text).unwrap().log.format;
    assert_eq!(format(""), LogFormat::Text);
    assert_eq!(format("[log]\nformat = \"json\"\n"), LogFormat::Json);
    assert_eq!(format("[log]\nformat = \"text\"\n"), LogFormat::Text);
    let e = err("[store]\n\n[log]\nformat = \"xml\"\n");
    assert_eq!(at(&e), (Some(4), Some("log.format")), "{e}");
    assert!(e.message.contains(r#"expected "text" or "json""#), "{e}");
    let e = err("[log]\nlevel = \"debug\"\n");
    assert_eq!(at(&e), (Some(2), Some("log.level")), "{e}");
}

#[test]
fn a_fleet_gateway_names_its_instance_and_the_shared_database() {
    let c = Config::parse(
        "weft.toml",
        "[gateway]\ninstance = \"edge-1.eu\"\n[store]\nurl = \"postgres://weft:pw@db:5432/weft\"\n",
    )
    .unwrap();
    assert_eq!(c.gateway.instance, "edge-1.eu");
    assert_eq!(
        c.store.url.as_deref(),
        Some("postgres://weft:pw@db:5432/weft")
    );
    let plain = Config::parse("weft.toml", "").unwrap();
    assert_eq!(plain.gateway.instance, weft_store::default_instance());
    assert_eq!(plain.store.url, None);

    for (text, key) in [
        ("[gateway]\ninstance = \"\"\n", "gateway.instance"),
        ("[gateway]\ninstance = \"edge 1\"\n", "gateway.instance"),
        ("[gateway]\nname = \"x\"\n", "gateway.name"),
        ("[store]\nurl = \"mysql://db/weft\"\n", "store.url"),
        (
            "[store]\nurl = \"postgres://db:notaport/weft\"\n",
            "store.url",
        ),
        (
            "[store]\npath = \"weft.db\"\nurl = \"postgres://db/weft\"\n",
            "store.url",
        ),
    ] {
        let e = err(text);
        assert_eq!(at(&e).1, Some(key), "{text}: {e}");
    }
    let long = format!(
        "[gateway]\ninstance = \"{}\"\n",
        "a".repeat(MAX_INSTANCE_LEN + 1)
    );
    assert_eq!(at(&err(&long)).1, Some("gateway.instance"));
}

#[test]
fn the_process_connection_cap_is_a_number_or_auto() {
    let cap = |text: &str| {
        Config::parse(
            "weft.toml",
            &format!("[gateway]\nmax_connections = {text}\n"),
        )
        .map(|c| c.gateway.max_connections)
    };
    assert_eq!(cap("\"auto\"").unwrap(), None);
    assert_eq!(cap("5000").unwrap(), Some(5000));
    assert_eq!(
        Config::parse("weft.toml", "")
            .unwrap()
            .gateway
            .max_connections,
        None
    );
    for bad in ["0", "-1", "\"many\"", "1.5", "100000001"] {
        let e = cap(bad).unwrap_err();
        assert_eq!(
            at(&e),
            (Some(2), Some("gateway.max_connections")),
            "{bad}: {e}"
        );
        assert!(e.message.contains("\"auto\""), "{bad}: {e}");
    }
}

#[test]
fn settings_that_take_no_effect_are_warned_of_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display();
    let text = format!(
        "[[service]]\nname = \"w\"\nkind = \"http\"\nlisten = \"tcp:0\"\nroot = \"{root}\"\n\
         hsts_max_age = \"1d\"\nbody_file_dir = \"{root}\"\n"
    );
    let c = Config::parse("weft.toml", &text).unwrap();
    let said: Vec<_> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(
        said[0].starts_with("weft.toml:6:16: service[0].hsts_max_age: takes no effect"),
        "{said:?}"
    );
    assert!(
        said[1].starts_with("weft.toml:7:17: service[0].body_file_dir: takes no effect"),
        "{said:?}"
    );
    // With a route the directory is used.
    let routed =
        format!("{text}[[service.route]]\nprefix = \"/api/\"\nupstream = \"http://127.0.0.1:9\"\n");
    let c = Config::parse("weft.toml", &routed).unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
}

/// Certificates clients will refuse are warned of, not refused (a renewal may be on its
/// way): an expired one, on a listener or among `tls_certificates`, and an SNI name the
/// certificate chosen for it does not carry.
#[test]
fn certificates_clients_refuse_are_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, names: Vec<String>, expired: bool| {
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (
            dir.path().join(format!("{name}.pem")),
            dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.display().to_string(), k.display().to_string())
    };
    let (old_cert, old_key) = write("old", vec!["localhost".into()], true);
    let (a_cert, a_key) = write("a", vec!["a.example".into(), "*.b.example".into()], false);
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    let root = site.display();
    let text = format!(
        "[[service]]\nname = \"w\"\nkind = \"http\"\nroot = \"{root}\"\n\
         listen = \"ssl:0:privateKey={old_key}:certKey={old_cert}\"\n\
         tls_certificates = [\n  {{ names = [\"a.example\", \"x.b.example\", \"c.example\"], \
         cert = \"{a_cert}\", key = \"{a_key}\" }},\n  \
         {{ names = [\"localhost\"], cert = \"{old_cert}\", key = \"{old_key}\" }},\n]\n"
    );
    let c = Config::parse("weft.toml", &text).unwrap();
    let said: Vec<_> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(said.len(), 3, "{said:?}");
    let find = |key: &str| {
        said.iter()
            .find(|w| w.contains(key))
            .unwrap_or_else(|| panic!("no warning for {key}: {said:?}"))
    };
    let names = find("service[0].tls_certificates[0].names[2]");
    assert!(names.starts_with("weft.toml:7:"), "{names}");
    assert!(
        names.contains("\"c.example\" is not a name of the certificate")
            && names.contains("it carries a.example, *.b.example"),
        "{names}"
    );
    let expired = find("service[0].tls_certificates[1].cert");
    assert!(
        expired.contains("expired at 2021-01-01T00:00:00Z: clients refuse it"),
        "{expired}"
    );
    let listener = find("service[0].listen");
    assert!(listener.starts_with("weft.toml:5:"), "{listener}");
    assert!(listener.contains("expired at 2021-01-01"), "{listener}");
}

#[test]
fn a_bad_item_of_a_list_written_over_lines_is_named_at_its_own_line() {
    let e = err(
        "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = [\n  \"tcp:1\",\n  \"udp:2\",\n  \"tcp:99999\",\n]\n",
    );
    assert_eq!(at(&e), (Some(7), Some("service[0].listen")), "{e}");
    assert!(e.to_string().starts_with("weft.toml:7:3: "), "{e}");
}

#[test]
fn an_item_of_the_wrong_type_in_a_list_is_named_at_its_own_line() {
    let e = err("[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = [\n  \"tcp:1\",\n  42,\n]\n");
    assert_eq!(at(&e), (Some(6), Some("service[0].listen[1]")), "{e}");
    assert!(e.message.contains("must be an endpoint string"), "{e}");
}

/// A root that holds the configuration, the history file (or one SQLite keeps beside it),
/// a TLS key or a zone would serve it to anyone: refused, naming the file and what it is.
/// A certificate is public, and a hidden directory is never served.
/// An error page is read once and sent to every client its status answers: one that is
/// a file of weft's own under another name (here a hard link; a bind mount, which no
/// link search finds, alike) is refused by the file it is.
#[test]
fn an_error_page_that_is_a_private_file_under_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(d.join("site/errors")).unwrap();
    let file = d.join("weft.toml");
    let text = format!(
        "[store]\npath = \"{db}\"\n[[service]]\nname = \"w\"\nkind = \"http\"\n\
         root = \"{site}\"\nlisten = \"tcp:0\"\n\
         error_pages = {{ 404 = \"/errors/404.html\" }}\n",
        db = d.join("weft.db").display(),
        site = d.join("site").display(),
    );
    std::fs::write(&file, &text).unwrap();
    std::fs::hard_link(&file, d.join("site/errors/404.html")).unwrap();
    let e = Config::parse(&file.display().to_string(), &text).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("service[0].error_pages"), "{e}");
    assert!(e.message.contains("under another name"), "{e}");
}

#[test]
fn a_root_that_would_serve_weft_s_own_private_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().canonicalize().unwrap();
    let site = d.join("site");
    std::fs::create_dir_all(site.join(".weft")).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (site.join("cert.pem"), d.join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    let zone = d.join("t.zone");
    std::fs::write(
        &zone,
        "$ORIGIN t.\n$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n",
    )
    .unwrap();
    let config = |db: &std::path::Path, key: &std::path::Path, zone: &std::path::Path| {
        format!(
            "[store]\npath = \"{}\"\n\
             [[service]]\nname = \"d\"\nkind = \"dns\"\nlisten = \"udp:0:interface=127.0.0.1\"\n\
             zones = [\"{}\"]\n\
             [[service]]\nname = \"w\"\nkind = \"http\"\nroot = \"{}\"\n\
             listen = \"ssl:0:privateKey={}:certKey={}\"\n",
            db.display(),
            zone.display(),
            site.display(),
            key.display(),
            cert_pem.display(),
        )
    };
    // The certificate in the root is served, as any public file.
    Config::parse("weft.toml", &config(&d.join("weft.db"), &key_pem, &zone)).unwrap();
    let served_key = site.join("key.pem");
    std::fs::copy(&key_pem, &served_key).unwrap();
    let served_zone = site.join("t.zone");
    std::fs::copy(&zone, &served_zone).unwrap();
    for (db, key, zone, what) in [
        (
            site.join("weft.db"),
            &key_pem,
            &zone,
            "/weft.db (the history store's file)",
        ),
        (
            site.join("h/weft.db"),
            &key_pem,
            &zone,
            "/h/weft.db (the history store's file)",
        ),
        (
            d.join("weft.db"),
            &served_key,
            &zone,
            "/key.pem (service[1]'s TLS key)",
        ),
        (
            d.join("weft.db"),
            &key_pem,
            &served_zone,
            "/t.zone (service[0]'s zone file)",
        ),
    ] {
        if let Some(parent) = db.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let e = err(&config(&db, key, zone));
        assert_eq!(e.key.as_deref(), Some("service[1].root"), "{e}");
        assert!(
            e.message.contains(&format!("would serve {what} to anyone")),
            "{what}: {e}"
        );
    }
    // SQLite's journal is made beside the file, even where the file is outside: by
    // name, under a hidden directory, nothing is served.
    Config::parse(
        "weft.toml",
        &config(&site.join(".weft/weft.db"), &key_pem, &zone),
    )
    .unwrap();
    // A root written through `..` is the directory it leads to.
    let through = site.join(".weft/..");
    let text = config(&site.join("weft.db"), &key_pem, &zone).replace(
        &format!("root = \"{}\"", site.display()),
        &format!("root = \"{}\"", through.display()),
    );
    assert!(text.contains("/.weft/.."), "{text}");
    let e = err(&text);
    assert!(
        e.message
            .contains("would serve /weft.db (the history store's file)"),
        "{e}"
    );
    // Through a directory that does not exist yet (weft makes a secondary copy's), a
    // path is where it will be: `new/..` is no hidden name to hide it behind.
    assert_eq!(
        super::preflight::resolved(&site.join("new/../x/../example.zone")),
        site.join("example.zone")
    );
    assert_eq!(
        super::preflight::resolved(&site.join("new/..")),
        site.clone()
    );
    // The configuration file itself.
    let e = Config::parse(
        &site.join("weft.toml").display().to_string(),
        &config(&d.join("weft.db"), &key_pem, &zone),
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("would serve /weft.toml (the configuration file)"),
        "{e}"
    );
    // A reload does not move history: the file the process writes may not be served
    // either, wherever the new file says history goes.
    let e = Config::parse_for_reload(
        "weft.toml",
        &config(&d.join("elsewhere.db"), &key_pem, &zone),
        Some(&site.join("running.db")),
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("would serve /running.db (the history store's file)"),
        "{e}"
    );
    // A hard link of the key, inside the root.
    std::fs::remove_file(&served_key).unwrap();
    std::fs::hard_link(&key_pem, site.join("copy.pem")).unwrap();
    let e = err(&config(&d.join("weft.db"), &key_pem, &zone));
    assert!(
        e.message.contains("copy.pem, a hard link of") && e.message.contains("TLS key"),
        "{e}"
    );
}

#[test]
fn an_access_log_on_a_file_weft_reads_a_socket_or_a_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().canonicalize().unwrap();
    let zone = d.join("t.zone");
    std::fs::write(
        &zone,
        "$ORIGIN t.\n$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n",
    )
    .unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (d.join("cert.pem"), d.join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    let site = d.join("site");
    std::fs::create_dir(&site).unwrap();
    let (db, sock) = (d.join("weft.db"), d.join("w.sock"));
    let config = |log: &std::path::Path, socket: &std::path::Path| {
        format!(
            "[store]\npath = \"{}\"\n\
             [[service]]\nname = \"d\"\nkind = \"dns\"\nlisten = \"udp:0:interface=127.0.0.1\"\n\
             zones = [\"{}\"]\n\
             [[service]]\nname = \"w\"\nkind = \"http\"\nroot = \"{}\"\n\
             listen = [\"ssl:0:privateKey={}:certKey={}\", \"unix:{}\"]\n\
             access_log = \"{}\"\n",
            db.display(),
            zone.display(),
            site.display(),
            key_pem.display(),
            cert_pem.display(),
            socket.display(),
            log.display()
        )
    };
    for (log, what) in [
        (&zone, "service[0]'s zone file"),
        (&key_pem, "service[1]'s TLS key"),
        (&cert_pem, "service[1]'s TLS certificate"),
        (&sock, "service[1]'s unix socket"),
        (&site.join("access.log"), "inside service[1]'s root"),
    ] {
        let e = err(&config(log, &sock));
        assert_eq!(e.key.as_deref(), Some("service[1].access_log"), "{e}");
        assert!(e.message.contains(what), "{what}: {e}");
    }
    Config::parse("weft.toml", &config(&d.join("access.log"), &sock)).unwrap();
    // A hard link into the root, from outside it.
    std::fs::write(site.join("served.txt"), "x").unwrap();
    std::fs::hard_link(site.join("served.txt"), d.join("linked.log")).unwrap();
    let e = err(&config(&d.join("linked.log"), &sock));
    assert!(
        e.message.contains("inside service[1]'s root (a hard link)"),
        "{e}"
    );
    // One whose other name is outside every root is a log like any other.
    std::fs::hard_link(d.join("linked.log"), d.join("backup.log")).unwrap();
    std::fs::remove_file(site.join("served.txt")).unwrap();
    Config::parse("weft.toml", &config(&d.join("linked.log"), &sock)).unwrap();
    // A file a zone includes.
    std::fs::write(d.join("more.zone"), "www A 192.0.2.2\n").unwrap();
    let mut with_include = std::fs::read_to_string(&zone).unwrap();
    with_include.push_str("$INCLUDE more.zone\n");
    std::fs::write(&zone, with_include).unwrap();
    let e = err(&config(&d.join("more.zone"), &sock));
    assert!(
        e.message.contains("service[0]'s zone file (included)"),
        "{e}"
    );
    // Hidden files are never served.
    Config::parse("weft.toml", &config(&site.join(".logs/access.log"), &sock)).unwrap_err();
    std::fs::create_dir(site.join(".logs")).unwrap();
    Config::parse("weft.toml", &config(&site.join(".logs/access.log"), &sock)).unwrap();
    // ... with a second name outside the root, it is still not served.
    std::fs::write(site.join(".logs/access.log"), "").unwrap();
    std::fs::hard_link(site.join(".logs/access.log"), d.join("copy.log")).unwrap();
    Config::parse("weft.toml", &config(&site.join(".logs/access.log"), &sock)).unwrap();
    // A file a zone includes that holds no records is the zone's all the same.
    std::fs::write(d.join("empty.zone"), "; nothing yet\n").unwrap();
    let mut with_empty = std::fs::read_to_string(&zone).unwrap();
    with_empty.push_str("$INCLUDE empty.zone\n");
    std::fs::write(&zone, with_empty).unwrap();
    let e = err(&config(&d.join("empty.zone"), &sock));
    assert!(
        e.message.contains("service[0]'s zone file (included)"),
        "{e}"
    );
    // A socket where the history file is to be made.
    let e = err(&config(&d.join("access.log"), &db));
    assert_eq!(e.key.as_deref(), Some("service[1].listen"), "{e}");
    assert!(e.message.contains("history store's file"), "{e}");
}

#[test]
fn a_signed_zone_is_warned_of_what_validating_resolvers_would_find_bogus() {
    let dir = tempfile::tempdir().unwrap();
    let zone = |name: &str, extra: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "$ORIGIN t.\n$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n{extra}"
            ),
        )
        .unwrap();
        path
    };
    let warnings = |path: &std::path::Path| -> Vec<String> {
        let text = format!(
            "[[service]]\nname = \"d\"\nkind = \"dns\"\nlisten = \"udp:0:interface=127.0.0.1\"\n\
             zones = [\"{}\"]\n",
            path.display()
        );
        let config = Config::parse("weft.toml", &text).unwrap();
        config.warnings.iter().map(ToString::to_string).collect()
    };
    let sig = |expires: &str| format!("ns RRSIG A 8 2 60 {expires} 20260101000000 12345 t. AAAA\n");
    // A signature time as a zone file writes it, `days` from now.
    let stamp = |days: u64| -> String {
        let at = std::time::SystemTime::now() + std::time::Duration::from_secs(days * 24 * 3600);
        humantime::format_rfc3339_seconds(at)
            .to_string()
            .chars()
            .filter(char::is_ascii_digit)
            .collect()
    };
    let chain = "@ NSEC ns.t. NS SOA RRSIG NSEC\nns NSEC t. A RRSIG NSEC\n";
    assert_eq!(warnings(&zone("plain.zone", "")), Vec::<String>::new());
    let fine = zone("fine.zone", &format!("{}{chain}", sig(&stamp(30))));
    assert_eq!(warnings(&fine), Vec::<String>::new());
    // Signatures and no chain: no denial can be proved.
    let said = warnings(&zone("unchained.zone", &sig(&stamp(30))));
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("service[0].zones")
            && said[0].contains("zone t. is signed")
            && said[0].contains("no NSEC or NSEC3 records"),
        "{said:?}"
    );
    // A signature past its expiration, and one a day from it.
    let said = warnings(&zone(
        "expired.zone",
        &format!("{}{chain}", sig("20200101000000")),
    ));
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("the signature of ns.t. A expired at 2020-01-01T00:00:00Z"),
        "{said:?}"
    );
    let said = warnings(&zone(
        "expiring.zone",
        &format!("{}{chain}", sig(&stamp(1))),
    ));
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("the signature of ns.t. A expires at "),
        "{said:?}"
    );
    // NSEC3 with a salt and extra iterations (RFC 9276 section 3.1 asks for neither).
    let nsec3 = |iterations: u16, salt: &str| {
        let hash = "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom";
        format!(
            "{}@ NSEC3PARAM 1 0 {iterations} {salt}\n{hash} NSEC3 1 0 {iterations} {salt} {hash} A\n",
            sig(&stamp(30))
        )
    };
    let said = warnings(&zone("salted.zone", &nsec3(10, "aabbccdd")));
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("its NSEC3 chain has 10 extra iterations and a salt of 4 bytes"),
        "{said:?}"
    );
    assert_eq!(
        warnings(&zone("plain3.zone", &nsec3(0, "-"))),
        Vec::<String>::new()
    );
    // A signature not valid yet (a signer whose clock runs ahead).
    let early = sig(&stamp(30)).replace("20260101000000", &stamp(2));
    let said = warnings(&zone("early.zone", &format!("{early}{chain}")));
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("the signature of ns.t. A is not valid until "),
        "{said:?}"
    );
}
