use super::*;

const DATA: &str = "/tmp/outpost-config-test";

fn parse_env(text: &str, env: &Env) -> Result<Config, ConfigError> {
    let text = format!("{text}\n").replace("@DATA@", DATA);
    Config::parse(Path::new("/etc/outpost/outpost.toml"), &text, env)
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_env(text, &Env::default())
}

fn error_of(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

const BASE: &str = "[agent]\ndata_dir = \"@DATA@\"\n";

#[test]
fn minimal_file_works() {
    let c = parse("").unwrap();
    assert_eq!(c.agent.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.agent.device_id, "outpost", "no host name in the test env");
    assert_eq!(c.queue.when_full, WhenFull::Reject);
    assert!(c.plugins.active.is_empty());
    assert_eq!(c.agent.limits, IngestLimits::default());
}

#[test]
fn design_example_parses() {
    let c = parse(
        r#"
[agent]
listen   = "127.0.0.1:8080"
data_dir = "@DATA@"
device_id = "cam-01"

[plugins]
dir    = "./plugins"
active = ["event_sending_plugin_example", "request_monitoring_plugin"]

[plugins.settings.event_sending_plugin_example]
sink = "store"

[sinks.store]
type = "http"
url  = "http://127.0.0.1:5020/1/buckets/plugin_test_bucket/objects"

[sinks.cloud]
type  = "mqtt"
url   = "mqtt://127.0.0.1:1883"
topic = "outpost/{device_id}/events"
qos   = 1

[queue]
max_bytes = 536870912
when_full = "drop_oldest"
"#,
    )
    .unwrap();
    assert_eq!(c.agent.device_id, "cam-01");
    assert_eq!(c.queue.when_full, WhenFull::DropOldest);
    assert!(matches!(c.sinks["store"].kind, SinkKind::Http(_)));
    assert_eq!(
        c.sinks["cloud"].topic_template(),
        Some("outpost/{device_id}/events")
    );
    assert_eq!(
        c.plugins.settings_of("event_sending_plugin_example")["sink"],
        "store"
    );
}

#[test]
fn unknown_key_is_named() {
    let e = error_of(&format!("{BASE}listen_on = \"x\""));
    assert!(e.contains("agent.listen_on"), "{e}");
    assert!(e.contains("outpost.toml"), "{e}");
}

#[test]
fn bad_values_name_their_key() {
    let e = error_of(&format!(
        "{BASE}[sinks.store]\ntype = \"http\"\nurl = \"not a url\""
    ));
    assert!(e.contains("sinks.store.url"), "{e}");
    let e = error_of(&format!(
        "{BASE}[sinks.s]\ntype = \"http\"\nurl = \"http://h\"\ntimeout_ms = 0"
    ));
    assert!(
        e.contains("sinks.s.timeout_ms") && e.contains("positive"),
        "{e}"
    );
    let e = error_of(&format!(
        "{BASE}[sinks.s]\ntype = \"file\"\npath = \"x\"\nretry = {{ initial_ms = 5, max_ms = 1 }}"
    ));
    assert!(e.contains("sinks.s.retry"), "{e}");
    let e = error_of(&format!("{BASE}[sinks.s]\ntype = \"carrier-pigeon\""));
    assert!(e.contains("sinks.s.type"), "{e}");
    let e = error_of("[agent]\nlisten = \"localhost\"");
    assert!(e.contains("agent.listen"), "{e}");
    let e = error_of(&format!("{BASE}[queue]\nwhen_full = \"explode\""));
    assert!(
        e.contains("queue.when_full") && e.contains("explode"),
        "{e}"
    );
}

#[test]
fn undefined_sink_is_named() {
    let e = error_of(&format!(
        "{BASE}[plugins.settings.forward]\nsink = \"nowhere\""
    ));
    assert!(e.contains("plugins.settings.forward.sink"), "{e}");
    assert!(e.contains("nowhere"), "{e}");
}

#[test]
fn duplicate_plugin_is_named() {
    let e = error_of(&format!(
        "{BASE}[plugins]\nactive = [\"forward\", \"forward\"]"
    ));
    assert!(e.contains("plugins.active[1]"), "{e}");
}

#[test]
fn uncreatable_data_dir_is_named_at_start_up() {
    let c = parse("[agent]\ndata_dir = \"/proc/outpost-cannot-exist\"").unwrap();
    let e = c.prepare_dirs().unwrap_err().to_string();
    assert!(e.contains("agent.data_dir"), "{e}");
}

#[test]
fn missing_granted_dirs_name_their_own_key() {
    let c = parse(&format!(
        "{BASE}[plugins.sandbox.p]\nread_only_paths = {{ \"/nonexistent-outpost\" = \"/data\" }}"
    ))
    .unwrap();
    let e = c.check_files().unwrap_err().to_string();
    assert!(e.contains("plugins.sandbox.p.read_only_paths"), "{e}");
}

#[test]
fn auth_token_and_device_id_come_from_the_environment() {
    let env = Env::from_vars([(AUTH_TOKEN_ENV, "from-env")]);
    let c = parse_env("[agent]\nauth_token = \"from-file\"", &env).unwrap();
    assert_eq!(c.agent.auth_token.as_deref(), Some("from-env"));
    let c = parse("[agent]\nauth_token = \"from-file\"").unwrap();
    assert_eq!(c.agent.auth_token.as_deref(), Some("from-file"));
}

#[test]
fn variables_are_expanded_in_string_values() {
    let env = Env::from_vars([("CLOUD_TOKEN", "t0k3n-secret"), ("HOST", "127.0.0.1")]);
    let c = parse_env(
        &format!(
            "{BASE}[sinks.s]\ntype = \"http\"\nurl = \"http://${{HOST}}:${{PORT:-9000}}/in\"\n\
             headers = {{ Authorization = \"Bearer ${{CLOUD_TOKEN}}\" }}"
        ),
        &env,
    )
    .unwrap();
    let SinkKind::Http(h) = &c.sinks["s"].kind else {
        panic!()
    };
    assert_eq!(h.url.to_string(), "http://127.0.0.1:9000/in");
    assert_eq!(h.headers["authorization"], "Bearer t0k3n-secret");

    let e = parse_env(
        &format!("{BASE}[sinks.s]\ntype = \"http\"\nurl = \"http://h\"\nheaders = {{ A = \"${{NOPE}}\" }}"),
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("sinks.s.headers.A") && e.contains("`NOPE`"),
        "{e}"
    );
    assert!(e.contains("outpost.toml"), "{e}");

    // A bad value that came from a variable is shown as the variable.
    let env = Env::from_vars([("URL", "secret-host/x")]);
    let e = parse_env(
        &format!("{BASE}[sinks.s]\ntype = \"http\"\nurl = \"${{URL}}\""),
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(!e.contains("secret-host") && e.contains("${URL}"), "{e}");
}

#[test]
fn mqtt_sink_and_source_parse() {
    let c = parse(&format!(
        "{BASE}[plugins]\nactive = [\"p\"]\n\
         [sinks.cloud]\ntype = \"mqtt\"\nurl = \"mqtts://127.0.0.1:8883\"\ntopic = \"a/{{device_id}}\"\nprotocol = \"3.1.1\"\n\
         [sources.s]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1\"\ntopics = [\"x/#\"]\nplugin = \"p\"\n"
    ))
    .unwrap();
    let SinkKind::Mqtt(m) = &c.sinks["cloud"].kind else {
        panic!()
    };
    assert_eq!(m.connection.protocol, MqttProtocol::V311);
    assert_eq!(m.connection.qos, QoS::AtLeastOnce);
    assert!(m.connection.broker.tls && m.clean_session);
    assert_eq!(c.sources["s"].feed.deliver, SourceDelivery::OnMessage);
    let SourceKind::Mqtt(s) = &c.sources["s"].kind else {
        panic!()
    };
    assert_eq!(s.connection.broker.port, 1883);
    assert!(!s.clean_session, "sources keep their session by default");
}

#[test]
fn mqtt_errors_name_the_key_and_roles_keep_their_keys() {
    let sink = |extra: &str| {
        format!("{BASE}[sinks.c]\ntype = \"mqtt\"\nurl = \"mqtt://h\"\ntopic = \"t\"\n{extra}")
    };
    let e = |t: &str| error_of(t);
    assert!(e(&sink("qos = 3")).contains("sinks.c.qos"));
    assert!(e(&sink("topics = [\"x\"]")).contains("sinks.c.topics"));
    assert!(e(&sink("plugin = \"p\"")).contains("sinks.c.plugin"));
    assert!(e(&sink("password_env = \"OUTPOST_TEST_UNSET_VAR\"")).contains("sinks.c.password_env"));
    assert!(e(&format!(
        "{BASE}[sinks.c]\ntype = \"mqtt\"\nurl = \"http://h\"\ntopic = \"t\""
    ))
    .contains("sinks.c.url"));
    assert!(e(&format!(
        "{BASE}[sinks.c]\ntype = \"mqtt\"\nurl = \"mqtt://h\""
    ))
    .contains("topic"));

    let source = |extra: &str| {
        format!(
            "{BASE}[plugins]\nactive = [\"p\"]\n[sources.s]\ntype = \"mqtt\"\nurl = \"mqtt://h\"\n\
             topics = [\"x\"]\nplugin = \"p\"\n{extra}"
        )
    };
    assert!(parse(&source("")).is_ok());
    for sink_only in [
        "max_in_flight = 4",
        "ack_timeout_ms = 5",
        "topic = \"t\"",
        "retain = true",
    ] {
        let key = sink_only.split(' ').next().unwrap();
        let err = e(&source(sink_only));
        assert!(
            err.contains(&format!("sources.s.{key}")),
            "{sink_only}: {err}"
        );
    }
    assert!(e(&source("deliver = \"sending_event\"")).contains("sources.s.handler_id"));
    let wrong_plugin = source("").replace("plugin = \"p\"", "plugin = \"nope\"");
    assert!(e(&wrong_plugin).contains("sources.s.plugin"));
}

fn http_sink(c: &Config) -> &HttpSinkConfig {
    match &c.sinks["s"].kind {
        SinkKind::Http(h) => h,
        other => panic!("{other:?}"),
    }
}

fn https_sink(extra: &str) -> String {
    format!("{BASE}[sinks.s]\ntype = \"http\"\nurl = \"https://cloud.example/in\"\n{extra}")
}

#[test]
fn https_sink_with_tls_keys_and_compression() {
    let c = parse(&https_sink(
        "ca_file = \"/etc/ca.pem\"\nclient_cert = \"c.pem\"\nclient_key = \"k.pem\"\n\
         tls_server_name = \"ingest.example\"\ncompression = \"gzip\"",
    ))
    .unwrap();
    let h = http_sink(&c);
    assert_eq!(h.url.scheme_str(), Some("https"));
    assert_eq!(h.tls.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
    assert!(h.tls.client_cert.is_some() && h.tls.client_key.is_some());
    assert_eq!(
        format!("{:?}", h.tls_server_name.as_ref().unwrap()),
        "DnsName(\"ingest.example\")"
    );
    assert_eq!(h.compression, Compression::Gzip);
    assert_eq!(h.compression.content_encoding(), Some("gzip"));
    assert!(h.proxy.is_none());

    let c = parse(&https_sink("")).unwrap();
    assert_eq!(http_sink(&c).compression, Compression::None, "the default");
}

#[cfg(feature = "zstd")]
#[test]
fn zstd_compression_in_a_build_with_it() {
    let c = parse(&https_sink("compression = \"zstd\"")).unwrap();
    assert_eq!(http_sink(&c).compression, Compression::Zstd);
    assert_eq!(http_sink(&c).compression.content_encoding(), Some("zstd"));
}

#[test]
fn http_sink_key_errors_are_named() {
    let plain = |extra: &str| {
        error_of(&format!(
            "{BASE}[sinks.s]\ntype = \"http\"\nurl = \"http://h/\"\n{extra}"
        ))
    };
    for key in ["ca_file", "client_cert", "client_key", "tls_server_name"] {
        let e = plain(&format!("{key} = \"x\""));
        assert!(
            e.contains(&format!("sinks.s.{key}")) && e.contains("https://"),
            "{e}"
        );
    }
    let e = error_of(&https_sink("compression = \"brotli\""));
    assert!(
        e.contains("sinks.s.compression") && e.contains("gzip"),
        "{e}"
    );
    let e = error_of(&https_sink("tls_server_name = \"not a name!\""));
    assert!(e.contains("sinks.s.tls_server_name"), "{e}");
    let e = error_of(&format!(
        "{BASE}[sinks.s]\ntype = \"http\"\nurl = \"ftp://h/\""
    ));
    assert!(e.contains("sinks.s.url") && e.contains("https://"), "{e}");
    let e = error_of(&format!(
        "{BASE}[sinks.s]\ntype = \"http\"\nurl = \"https://user:hunter22@h/\""
    ));
    assert!(e.contains("sinks.s.url") && !e.contains("hunter22"), "{e}");
}

#[test]
fn missing_tls_files_of_an_http_sink_are_named() {
    let c = parse(&https_sink("ca_file = \"/nonexistent/ca.pem\"")).unwrap();
    let e = c.check_files().unwrap_err().to_string();
    assert!(e.contains("sinks.s.ca_file"), "{e}");
    let c = parse(&https_sink("client_cert = \"/etc/hostname\"")).unwrap();
    let e = c.check_files().unwrap_err().to_string();
    assert!(
        e.contains("sinks.s.client_cert") && e.contains("together"),
        "{e}"
    );
}

#[test]
fn proxy_key_is_validated_and_keeps_credentials_out_of_sight() {
    let c = parse(&https_sink(
        "proxy = \"http://alice:s3cr%40t@proxy.lan:3128\"",
    ))
    .unwrap();
    let p = http_sink(&c).proxy.as_ref().unwrap();
    assert_eq!(p.uri.to_string(), "http://proxy.lan:3128/");
    // base64("alice:s3cr@t")
    assert_eq!(p.auth.as_ref().unwrap(), "Basic YWxpY2U6czNjckB0");
    assert_eq!(p.source, "proxy");
    for shown in [format!("{p}"), format!("{p:?}"), format!("{c:?}")] {
        assert!(
            !shown.contains("YWxp") && !shown.contains("s3cr"),
            "{shown}"
        );
    }

    for (proxy, says) in [
        ("https://alice:s3cret@proxy.lan:3128", "TLS to the proxy"),
        ("socks5://alice:s3cret@proxy.lan:1080", "socks5"),
        ("http://alice:s3cret@proxy.lan", "no port"),
        ("http://alice:s3cret@", "not a proxy URL"),
    ] {
        let e = error_of(&https_sink(&format!("proxy = \"{proxy}\"")));
        assert!(
            e.contains("sinks.s.proxy") && e.contains(says),
            "{proxy}: {e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }
}

#[test]
fn proxy_comes_from_the_environment_unless_the_key_says_otherwise() {
    let env = Env::from_vars([
        ("HTTPS_PROXY", "http://u:pw@corp:3128"),
        ("http_proxy", "corp-plain:8080"),
        ("NO_PROXY", "localhost,10.0.0.0/8,.internal"),
    ]);
    let proxy_of = |text: &str, env: &Env| {
        let c = parse_env(text, env).unwrap();
        http_sink(&c)
            .proxy
            .as_ref()
            .map(|p| (p.uri.to_string(), p.source))
    };
    let sink = |url: &str, extra: &str| {
        format!("{BASE}[sinks.s]\ntype = \"http\"\nurl = \"{url}\"\n{extra}")
    };
    assert_eq!(
        proxy_of(&sink("https://cloud.example/in", ""), &env),
        Some(("http://corp:3128/".into(), "HTTPS_PROXY"))
    );
    assert_eq!(
        proxy_of(&sink("http://cloud.example/in", ""), &env),
        Some(("http://corp-plain:8080/".into(), "http_proxy")),
        "lower case and scheme-less values work"
    );
    for bypassed in ["https://10.1.2.3/in", "https://a.b.internal/in"] {
        assert_eq!(proxy_of(&sink(bypassed, ""), &env), None, "{bypassed}");
    }
    assert_eq!(
        proxy_of(&sink("https://cloud.example/in", "proxy = \"\""), &env),
        None,
        "an empty proxy key turns the environment off"
    );
    assert_eq!(
        proxy_of(
            &sink("https://10.1.2.3/in", "proxy = \"http://mine:1\""),
            &env
        ),
        Some(("http://mine:1/".into(), "proxy")),
        "the key wins, and NO_PROXY does not apply to it"
    );
    let all = Env::from_vars([("ALL_PROXY", "http://everything:3128")]);
    assert_eq!(
        proxy_of(&sink("https://cloud.example/in", ""), &all),
        Some(("http://everything:3128/".into(), "ALL_PROXY"))
    );

    let bad = Env::from_vars([("https_proxy", "socks5h://u:hunter22@corp:1080")]);
    let e = parse_env(&sink("https://cloud.example/in", ""), &bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sinks.s.proxy") && e.contains("https_proxy") && e.contains("proxy = \"\""),
        "{e}"
    );
    assert!(!e.contains("hunter22"), "{e}");
}

#[test]
fn an_unknown_table_is_named_once() {
    let e = error_of("[fleeet]\nserver = \"x\"");
    assert!(e.contains("key `fleeet`: unknown key"), "{e}");
    let e = error_of("[agent]\nlisten = \"127.0.0.1:1\"\nbogus = 1");
    assert!(e.contains("key `agent.bogus`: unknown key"), "{e}");
    let e = error_of("[agent]\nagent = 1");
    assert!(e.contains("key `agent.agent`: unknown key"), "{e}");
    let e = error_of("[queue]\nqueue = 1");
    assert!(e.contains("key `queue.queue`: unknown key"), "{e}");
}

#[test]
fn the_api_listens_on_tcp_or_a_unix_socket() {
    let c = parse(&format!("{BASE}listen = \"unix:/run/outpost/ingest.sock\"")).unwrap();
    assert_eq!(
        c.agent.listen,
        Endpoint::Unix("/run/outpost/ingest.sock".into())
    );
    let c = parse(&format!("{BASE}listen_unix = \"/run/outpost/i.sock\"")).unwrap();
    assert_eq!(c.agent.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(
        c.agent.listen_unix.as_deref(),
        Some(Path::new("/run/outpost/i.sock"))
    );
    let e = error_of(&format!("{BASE}listen = \"unix:relative.sock\""));
    assert!(e.contains("agent.listen") && e.contains("absolute"), "{e}");
    let e = error_of(&format!("{BASE}listen_unix = \"relative.sock\""));
    assert!(e.contains("agent.listen_unix"), "{e}");
}

#[test]
fn queue_sync_modes() {
    let c = parse("").unwrap();
    assert_eq!(c.queue.sync, SyncMode::Always);
    let c = parse("[queue]\nsync = \"interval\"\nsync_interval_ms = 50").unwrap();
    assert_eq!(c.queue.sync, SyncMode::Interval);
    assert_eq!(c.queue.sync_interval, std::time::Duration::from_millis(50));
    let e = error_of("[queue]\nsync = \"sometimes\"");
    assert!(e.contains("queue.sync"), "{e}");
    let e = error_of("[queue]\nsync_interval_ms = 0");
    assert!(
        e.contains("queue.sync_interval_ms") && e.contains("positive"),
        "{e}"
    );
}

#[cfg(feature = "redis")]
#[test]
fn redis_source_and_sink_parse_with_credentials_from_keys_over_the_url() {
    let env = Env::from_vars([("REDIS_PW", "from-env")]);
    let c = parse_env(
        &format!(
            "{BASE}[plugins]\nactive = [\"p\"]\n\
             [sinks.r]\ntype = \"redis\"\nurl = \"rediss://u%40x:p@127.0.0.1/2\"\nkey = \"out:{{device_id}}\"\nmaxlen = 1000\n\
             [sources.s]\ntype = \"redis\"\nurl = \"redis://a:b@127.0.0.1:7000\"\npassword_env = \"REDIS_PW\"\n\
             key = \"cams\"\nplugin = \"p\"\n"
        ),
        &env,
    )
    .unwrap();
    let SinkKind::Redis(sink) = &c.sinks["r"].kind else {
        panic!()
    };
    assert!(sink.connection.tls);
    assert_eq!(sink.connection.db, 2);
    assert_eq!(sink.connection.username.as_deref(), Some("u@x"));
    assert_eq!(sink.maxlen, Some(1000));
    assert!(
        !format!("{:?}", sink.connection).contains(":p@"),
        "no password in Debug"
    );
    let SourceKind::Redis(source) = &c.sources["s"].kind else {
        panic!()
    };
    assert_eq!(source.connection.port, 7000);
    assert_eq!(source.connection.username.as_deref(), Some("a"));
    assert_eq!(source.connection.password.as_deref(), Some("from-env"));
    let RedisMode::Stream { group, field, .. } = &source.mode else {
        panic!("stream is the default mode")
    };
    assert_eq!((group.as_str(), field.as_str()), ("outpost", "payload"));
}

#[cfg(feature = "redis")]
#[test]
fn redis_errors_name_the_key() {
    let source = |extra: &str| {
        format!(
            "{BASE}[plugins]\nactive = [\"p\"]\n[sources.s]\ntype = \"redis\"\nurl = \"redis://h\"\n\
             plugin = \"p\"\n{extra}"
        )
    };
    assert!(error_of(&source("key = \"k\"\ncount = 0")).contains("sources.s.count"));
    assert!(error_of(&source("mode = \"pubsub\"")).contains("sources.s.channels"));
    assert!(error_of(&source("key = \"k\"\nmode = \"queue\"")).contains("sources.s.mode"));
    assert!(error_of(&source("key = \"k\"\ntopic = \"t\"")).contains("sources.s.topic"));
    let e = error_of(&format!(
        "{BASE}[sinks.r]\ntype = \"redis\"\nurl = \"http://h\"\nkey = \"k\""
    ));
    assert!(e.contains("sinks.r.url") && e.contains("rediss://"), "{e}");
}

#[cfg(feature = "amqp")]
#[test]
fn amqp_source_and_sink_parse_with_vhost_and_credentials() {
    let c = parse(&format!(
        "{BASE}[plugins]\nactive = [\"p\"]\n\
         [sinks.a]\ntype = \"amqp\"\nurl = \"amqps://127.0.0.1/edge%2Fcams\"\nusername = \"u\"\npassword = \"p w\"\n\
         exchange = \"x\"\nrouting_key = \"{{device_id}}.{{handler_id}}\"\n\
         [sources.s]\ntype = \"amqp\"\nurl = \"amqp://127.0.0.1\"\nqueue = \"in\"\nplugin = \"p\"\n\
         bindings = [{{ exchange = \"amq.topic\", routing_key = \"cams.#\" }}]\n"
    ))
    .unwrap();
    let SinkKind::Amqp(sink) = &c.sinks["a"].kind else {
        panic!()
    };
    assert_eq!(sink.connection.vhost, "edge/cams");
    assert_eq!(sink.connection.port, 5671);
    assert!(
        sink.connection.uri.contains("u:p%20w@"),
        "credentials go into the URI"
    );
    assert!(
        !sink.connection.to_string().contains("p%20w"),
        "never shown"
    );
    assert!(sink.persistent);
    let SourceKind::Amqp(source) = &c.sources["s"].kind else {
        panic!()
    };
    assert_eq!(source.connection.vhost, "/");
    assert_eq!(source.prefetch, 64);
    assert_eq!(source.bindings.len(), 1);
    let e = error_of(&format!(
        "{BASE}[plugins]\nactive = [\"p\"]\n[sources.s]\ntype = \"amqp\"\nurl = \"amqp://h\"\n\
         queue = \"q\"\nplugin = \"p\"\nprefetch = 0"
    ));
    assert!(e.contains("sources.s.prefetch"), "{e}");
}

#[cfg(not(feature = "zstd"))]
#[test]
fn zstd_compression_the_build_lacks_is_refused_naming_the_key() {
    let e = error_of(&https_sink("compression = \"zstd\""));
    assert!(
        e.contains("sinks.s.compression") && e.contains("feature `zstd`"),
        "{e}"
    );
}

#[cfg(not(feature = "amqp"))]
#[test]
fn a_source_type_the_build_lacks_is_refused_naming_the_key() {
    let e = error_of(&format!(
        "{BASE}[plugins]\nactive = [\"p\"]\n[sources.s]\ntype = \"amqp\"\nurl = \"amqp://h\"\n\
         queue = \"q\"\nplugin = \"p\""
    ));
    assert!(
        e.contains("sources.s.type") && e.contains("feature `amqp`"),
        "{e}"
    );
}
