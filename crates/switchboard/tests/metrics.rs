//! The metrics an operator is given, against the real binary: after an
//! answered call with RTP, an API request and webhooks that cannot be
//! delivered, `GET /metrics` is a well-formed Prometheus text; every family
//! the Grafana dashboard (deploy/grafana/switchboard.json) queries is in it,
//! with the right type for how it is queried; every family it exports is
//! documented in docs/metrics.md and every family documented there is
//! exported; and the dashboard is a Grafana dashboard whose every panel
//! has a data source and a query.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::routes::{answered_call, cli, open_route, start};
use serde_json::Value;

/// The data source every panel and query must use: the dashboard's input.
const DATASOURCE: &str = "${DS_PROMETHEUS}";
/// The filter every selector must carry, so the `instance` variable works.
const INSTANCE_FILTER: &str = "instance=~\"$instance\"";
/// The dashboard's rows, in order (issue 16).
const ROWS: [&str; 7] = [
    "Overview",
    "SIP",
    "Media quality",
    "Rooms",
    "API",
    "Store & history",
    "Webhooks",
];

/// One sample line of a scrape.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape: the `# TYPE` of each family, the samples, and what is wrong
/// with the text itself.
struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
    problems: Vec<String>,
}

/// Parses a label set `a="x",b="y"` (values with `\"` and `\\` escapes).
fn labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        out.insert(key.trim().to_string(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(out)
}

fn parse_scrape(text: &str) -> Scrape {
    let mut scrape = Scrape {
        types: BTreeMap::new(),
        samples: Vec::new(),
        problems: Vec::new(),
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                scrape.problems.push(format!("bad TYPE line {line:?}"));
                continue;
            };
            if scrape
                .types
                .insert(name.to_string(), kind.to_string())
                .is_some()
            {
                // Prometheus refuses a scrape that declares a family twice.
                scrape.problems.push(format!("{name} has two TYPE lines"));
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(split) => split,
            None => {
                scrape.problems.push(format!("bad sample line {line:?}"));
                continue;
            }
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').and_then(labels)),
            None => (series, Some(BTreeMap::new())),
        };
        let (Some(labels), Ok(value)) = (labels, value.parse::<f64>()) else {
            scrape.problems.push(format!("bad sample line {line:?}"));
            continue;
        };
        scrape.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    for sample in &scrape.samples {
        if let Err(e) = family_of(&sample.name, &scrape.types) {
            scrape
                .problems
                .push(format!("sample {} has no family: {e}", sample.name));
        }
    }
    scrape
}

/// The family of a series name: the name itself, or for a histogram's
/// `_bucket`, `_sum` and `_count` series the histogram.
fn family_of(name: &str, types: &BTreeMap<String, String>) -> Result<String, String> {
    if types.contains_key(name) {
        return Ok(name.to_string());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            return match types.get(base).map(String::as_str) {
                Some("histogram") => Ok(base.to_string()),
                Some(kind) => Err(format!("{name}: {base} is a {kind}, not a histogram")),
                None => Err(format!("{name}: {base} is not exported")),
            };
        }
    }
    Err(format!("{name} is not exported"))
}

/// Every `switchboard_…` word of a text, where it starts.
fn metric_words(text: &str) -> Vec<(usize, String)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("switchboard_") {
        let start = from + at;
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |n| start + n);
        let glued =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !glued {
            out.push((start, text[start..end].to_string()));
        }
        from = end;
    }
    out
}

/// Every panel of the dashboard, those inside collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The problems of the dashboard's shape: schema, input, variable, rows,
/// and every panel's data source and queries. Returns the queries.
fn check_shape(dashboard: &Value, problems: &mut Vec<String>) -> Vec<String> {
    if dashboard["schemaVersion"] != 39 {
        problems.push(format!(
            "dashboard schemaVersion is {}, not 39",
            dashboard["schemaVersion"]
        ));
    }
    let has_input = dashboard["__inputs"].as_array().is_some_and(|inputs| {
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus")
    });
    if !has_input {
        problems.push("dashboard has no DS_PROMETHEUS Prometheus input".into());
    }
    let variables = dashboard["templating"]["list"].as_array();
    match variables.and_then(|v| v.iter().find(|v| v["name"] == "instance")) {
        Some(variable) if variable["datasource"]["uid"] == DATASOURCE => {}
        Some(_) => problems.push(format!("the instance variable does not use {DATASOURCE}")),
        None => problems.push("dashboard has no instance variable".into()),
    }
    let all = panels(dashboard);
    let rows: Vec<&str> = all
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    if rows != ROWS {
        problems.push(format!("dashboard rows are {rows:?}, not {ROWS:?}"));
    }
    let mut ids = BTreeSet::new();
    let mut queries = Vec::new();
    for panel in &all {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        match panel["id"].as_u64() {
            Some(id) if ids.insert(id) => {}
            _ => problems.push(format!("panel {title:?}: missing or repeated id")),
        }
        if !panel["gridPos"]["w"].is_u64() || !panel["gridPos"]["h"].is_u64() {
            problems.push(format!("panel {title:?}: no gridPos"));
        }
        if panel["type"] == "row" {
            continue;
        }
        if panel["datasource"]["uid"] != DATASOURCE || panel["datasource"]["type"] != "prometheus" {
            problems.push(format!("panel {title:?}: data source is not {DATASOURCE}"));
        }
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if targets.is_empty() {
            problems.push(format!("panel {title:?}: no target"));
        }
        for target in targets {
            if target["datasource"]["uid"] != DATASOURCE {
                problems.push(format!(
                    "panel {title:?} target {}: data source is not {DATASOURCE}",
                    target["refId"]
                ));
            }
            match target["expr"].as_str() {
                Some(expr) if !expr.trim().is_empty() => queries.push(expr.to_string()),
                _ => problems.push(format!(
                    "panel {title:?} target {}: no expr",
                    target["refId"]
                )),
            }
        }
    }
    queries
}

/// The problems of one PromQL query against the scrape: families not
/// exported, selectors without the instance filter, and `rate()` of
/// anything but a counter or a histogram's series. Adds its families.
fn check_query(
    expr: &str,
    types: &BTreeMap<String, String>,
    named: &mut BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    for (at, name) in metric_words(expr) {
        match family_of(&name, types) {
            Ok(family) => {
                named.insert(family);
            }
            Err(e) => {
                problems.push(format!("dashboard: {e}"));
                continue;
            }
        }
        let after = &expr[at + name.len()..];
        let filtered = after
            .strip_prefix('{')
            .and_then(|s| s.split_once('}'))
            .is_some_and(|(selector, _)| selector.contains(INSTANCE_FILTER));
        if !filtered {
            problems.push(format!(
                "dashboard: {name} without {INSTANCE_FILTER} in {expr}"
            ));
        }
        let before = expr[..at].trim_end();
        let rated = ["rate(", "increase("].iter().any(|f| before.ends_with(f));
        let counted = types.get(&name).is_some_and(|k| k == "counter")
            || (name != family_of(&name, types).unwrap_or_default());
        if rated && !counted {
            problems.push(format!(
                "dashboard: rate of {name}, which is not a counter, in {expr}"
            ));
        }
    }
}

/// Waits until the scrape shows the call ended answered and its RTP
/// counted (a moment after), then returns it.
fn scrape_after_the_call(sb: &common::Switchboard) -> String {
    let api = sb.api.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = common::api::metrics_blocking(api);
        let samples = parse_scrape(&text).samples;
        let counted = |name: &str, label: &str, value: &str| {
            samples.iter().any(|s| {
                s.name == name
                    && s.labels.get(label).map(String::as_str) == Some(value)
                    && s.value >= 1.0
            })
        };
        if counted("switchboard_calls_ended_total", "result", "answered")
            && counted("switchboard_rtp_packets_total", "direction", "received")
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the call never ended answered with its RTP counted in /metrics:\n{text}\n{}",
            sb.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_dashboard_and_the_doc_name_exactly_the_families_the_server_exports() {
    // Webhooks to a port nothing listens on: the webhook families exist,
    // and deliveries fail and are retried.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let urls = format!("[http://{closed}/hook]");
    let sb = start(&[
        ("SWITCHBOARD_CALLS__ANSWER", "immediate"),
        ("SWITCHBOARD_WEBHOOKS__URLS", &urls),
        ("SWITCHBOARD_WEBHOOKS__INITIAL_BACKOFF_MS", "100"),
        ("SWITCHBOARD_WEBHOOKS__MAX_BACKOFF_MS", "500"),
    ]);
    open_route(&sb, "");

    let (mut uac, rtp) = answered_call(&sb);
    for i in 0..10u16 {
        uac.send_rtp(rtp, i, u32::from(i) * 160);
        std::thread::sleep(Duration::from_millis(20));
    }
    let bye = uac.in_dialog("BYE", "", "");
    assert_eq!(
        uac.response_to(bye, "BYE", Duration::from_secs(3)).status(),
        200
    );
    let trunks = cli(&sb, &["sip", "inbound", "list"]);
    assert!(trunks.contains("ST_"), "{trunks}");

    let text = scrape_after_the_call(&sb);
    let scrape = parse_scrape(&text);
    let mut problems = scrape.problems.clone();

    // What the call and the request did is in it.
    let total = |name: &str, want: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                want.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    };
    let seen = [
        (
            "an answered inbound call",
            total(
                "switchboard_calls_ended_total",
                &[("direction", "inbound"), ("result", "answered")],
            ),
            1.0,
        ),
        (
            "its setup time",
            total(
                "switchboard_call_setup_seconds_count",
                &[("direction", "inbound")],
            ),
            1.0,
        ),
        (
            "its RTP packets",
            total(
                "switchboard_rtp_packets_total",
                &[("direction", "received")],
            ),
            10.0,
        ),
        (
            "INVITEs received",
            total(
                "switchboard_sip_requests_total",
                &[("direction", "received"), ("method", "INVITE")],
            ),
            1.0,
        ),
        (
            "the trunk list request",
            total(
                "switchboard_api_requests_total",
                &[
                    ("route", "livekit.SIP/ListSIPInboundTrunk"),
                    ("code", "200"),
                ],
            ),
            1.0,
        ),
    ];
    for (what, value, least) in seen {
        if value < least {
            problems.push(format!(
                "scrape: {what} counted {value}, at least {least} expected"
            ));
        }
    }

    // (c) The dashboard is a Grafana dashboard, every panel queries.
    let path = common::repo().join("deploy/grafana/switchboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let queries = check_shape(&dashboard, &mut problems);
    assert!(!queries.is_empty(), "the dashboard has no query");

    // (a) Every family the dashboard queries is exported.
    let mut on_dashboard = BTreeSet::new();
    for expr in &queries {
        check_query(expr, &scrape.types, &mut on_dashboard, &mut problems);
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .unwrap_or(&Vec::new())
    {
        let query = variable["definition"].as_str().unwrap_or_default();
        for (_, name) in metric_words(query) {
            if let Err(e) = family_of(&name, &scrape.types) {
                problems.push(format!("dashboard variable: {e}"));
            }
        }
    }

    // (b) The doc and the scrape name the same families.
    let doc = std::fs::read_to_string(common::repo().join("docs/metrics.md")).unwrap();
    let mut documented = BTreeSet::new();
    for (_, name) in metric_words(&doc) {
        match family_of(&name, &scrape.types) {
            Ok(family) => {
                documented.insert(family);
            }
            Err(e) => problems.push(format!("docs/metrics.md names {e}")),
        }
    }
    for family in scrape.types.keys() {
        if !family.starts_with("switchboard_") {
            problems.push(format!(
                "{family} is exported without the switchboard_ prefix"
            ));
        } else if !documented.contains(family) {
            problems.push(format!("{family} is exported but not in docs/metrics.md"));
        }
    }

    problems.dedup();
    assert!(
        problems.is_empty(),
        "{} problems:\n  {}\n\nexported families: {:?}\ndashboard families: {}",
        problems.len(),
        problems.join("\n  "),
        scrape.types.keys().collect::<Vec<_>>(),
        on_dashboard.len()
    );
}
