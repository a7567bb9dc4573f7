//! The Kubernetes artifacts of deploy/, exercised without a cluster:
//!
//! - each kustomize overlay (deploy/kubernetes/single, /replicas) renders
//!   with `kubectl kustomize`, and every rendered object (and the example
//!   Secret) validates strictly against the Kubernetes 1.30 schemas with
//!   `kubernetes-validate`, which does reject an unknown field;
//! - the manifests agree with the image (deploy/Dockerfile: ENTRYPOINT,
//!   USER, WORKDIR), with the configuration they mount (ports, data_dir,
//!   drain) and with Kamailio's probe interval;
//! - the container's command line as rendered (the Dockerfile's ENTRYPOINT,
//!   parsed from the file, plus the container's command/args, none today)
//!   runs against the built binary, with the rendered ConfigMap as its
//!   config file, the rendered environment (the example Secret's keys with
//!   test values, the node IP as 127.0.0.1) and only the ports, bind
//!   addresses and paths moved to ephemeral loopback ports and a temporary
//!   directory: it starts, its readiness probe answers 200, and after
//!   SIGTERM 503 while its liveness probe still answers 200, and it exits
//!   after drain.min_secs; the single overlay's store outlives a restart on
//!   its volume, the replicas overlay's two pods share Redis from the
//!   Secret, and the example Secret's placeholders stop a pod from starting;
//! - the old Helm chart's args (`serve --config ...` after an ENTRYPOINT
//!   that already says it) fail, and the chart no longer passes them.
//!
//! Kubernetes itself (scheduling, hostNetwork, volumes, probes, the grace
//! period) is not run here: see deploy/README.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::api::{KEY, SECRET};
use common::repo;
use serde::Deserialize;
use serde_json::Value;

/// The Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.30.0";

// ------------------------------------------------------------------ the image

/// What deploy/Dockerfile's final stage says about the container.
struct Image {
    entrypoint: Vec<String>,
    uid: u64,
    gid: u64,
    workdir: String,
    /// Where the binary is copied: its name is the ENTRYPOINT's program.
    binary: String,
}

fn image() -> Image {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    // Continuation lines joined, comments dropped, the last stage only.
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let last_stage = joined
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a final FROM stage");
    let mut entrypoint = None;
    let mut user = None;
    let mut workdir = None;
    let mut binary = None;
    for line in last_stage.lines().map(str::trim) {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match instruction.to_ascii_uppercase().as_str() {
            "ENTRYPOINT" => {
                // Exec form only: in shell form /bin/sh would be PID 1 and
                // Kubernetes' SIGTERM would never reach switchboard's drain.
                let argv: Vec<String> = serde_json::from_str(rest).unwrap_or_else(|e| {
                    panic!("ENTRYPOINT must be the exec (JSON) form, not {rest:?}: {e}")
                });
                entrypoint = Some(argv);
            }
            "USER" => user = Some(rest.to_string()),
            "WORKDIR" => workdir = Some(rest.to_string()),
            "COPY" if rest.contains("target/release/switchboard") => {
                binary = rest.split_whitespace().last().map(str::to_string);
            }
            "CMD" => panic!("a CMD would be appended to the ENTRYPOINT's arguments: {line}"),
            _ => {}
        }
    }
    let user = user.expect("a USER");
    let (uid, gid) = user
        .split_once(':')
        .unwrap_or_else(|| panic!("USER {user:?} should be numeric uid:gid"));
    let binary = binary.expect("the binary's COPY");
    Image {
        entrypoint: entrypoint.expect("an ENTRYPOINT"),
        uid: uid
            .parse()
            .unwrap_or_else(|_| panic!("USER {user:?}: runAsNonRoot needs a numeric uid")),
        gid: gid.parse().unwrap(),
        workdir: workdir.expect("a WORKDIR"),
        binary,
    }
}

// ---------------------------------------------------------------- rendering

/// An overlay as `kubectl kustomize` renders it.
struct Rendered {
    text: String,
    docs: Vec<Value>,
}

fn kustomize(overlay: &str) -> Rendered {
    let dir = repo().join("deploy/kubernetes").join(overlay);
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run kubectl ({e}): install the Debian package kubernetes-client \
                 (tests/deps/deploy.apt)"
            )
        });
    assert!(
        output.status.success(),
        "kubectl kustomize {overlay} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    Rendered {
        docs: yaml_docs(&text),
        text,
    }
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

impl Rendered {
    fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .docs
            .iter()
            .map(|d| d["kind"].as_str().unwrap().to_string())
            .collect();
        kinds.sort();
        kinds
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in\n{}", self.text))
    }

    fn workload(&self) -> &Value {
        let found: Vec<&Value> = self
            .docs
            .iter()
            .filter(|d| d["kind"] == "StatefulSet" || d["kind"] == "Deployment")
            .collect();
        assert_eq!(found.len(), 1, "one workload in\n{}", self.text);
        found[0]
    }

    fn pod(&self) -> &Value {
        &self.workload()["spec"]["template"]["spec"]
    }

    fn container(&self) -> &Value {
        self.pod()["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "switchboard")
            .expect("a container named switchboard")
    }

    /// The configuration file the container mounts, parsed.
    fn config(&self) -> Value {
        let (cm, key) = self.mounted_config();
        serde_norway::from_str(cm["data"][&key].as_str().unwrap()).unwrap()
    }

    /// The ConfigMap mounted where the ENTRYPOINT's --config points, and
    /// the key of the file.
    fn mounted_config(&self) -> (&Value, String) {
        let argv = image().entrypoint;
        let path = argv
            .iter()
            .skip_while(|a| *a != "--config")
            .nth(1)
            .expect("the ENTRYPOINT names --config");
        let (dir, file) = path.rsplit_once('/').unwrap();
        let mount = self.container()["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == dir)
            .unwrap_or_else(|| panic!("nothing mounted at {dir}, where --config {path} is"));
        let volume = self.volume(mount["name"].as_str().unwrap());
        let name = volume["configMap"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{dir} should be a ConfigMap: {volume}"));
        (self.named("ConfigMap", name), file.to_string())
    }

    fn volume(&self, name: &str) -> Value {
        if let Some(v) = self.pod()["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == name)
        {
            return v.clone();
        }
        let claim = self.workload()["spec"]["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"));
        serde_json::json!({"name": name, "volumeClaimTemplate": claim})
    }

    /// The volume mounted at the longest mount path above `path`.
    fn volume_holding(&self, path: &str) -> (String, Value) {
        let mount = self.container()["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| {
                let at = m["mountPath"].as_str().unwrap();
                path == at || path.starts_with(&format!("{}/", at.trim_end_matches('/')))
            })
            .max_by_key(|m| m["mountPath"].as_str().unwrap().len())
            .unwrap_or_else(|| panic!("no volume holds {path}"));
        (
            mount["mountPath"].as_str().unwrap().to_string(),
            self.volume(mount["name"].as_str().unwrap()),
        )
    }

    fn env_names(&self) -> Vec<String> {
        self.container()["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn secret_key_of(&self, env: &str) -> Option<String> {
        self.container()["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == env)
            .and_then(|e| e["valueFrom"]["secretKeyRef"]["key"].as_str())
            .map(str::to_string)
    }
}

/// `kubernetes-validate` (PyPI, tests/deps/deploy.pip) on a file: strict
/// (unknown fields are errors) against KUBERNETES_VERSION.
fn validate(file: &Path) -> Result<String, String> {
    let output = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--quiet", "-k"])
        .arg(KUBERNETES_VERSION)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e})"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !said.contains("No module named kubernetes_validate"),
        "install kubernetes-validate from PyPI (tests/deps/deploy.pip): {said}"
    );
    if output.status.success() && !said.contains("ERROR") && !said.contains("FATAL") {
        Ok(said)
    } else {
        Err(said)
    }
}

#[test]
fn every_overlay_renders_and_validates_strictly_against_kubernetes_1_30() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    for (overlay, expected) in [
        (
            "single",
            vec!["ConfigMap", "Service", "Service", "StatefulSet"],
        ),
        (
            "replicas",
            vec!["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"],
        ),
    ] {
        let rendered = kustomize(overlay);
        assert_eq!(rendered.kinds(), expected, "{}", rendered.text);
        let file = dir.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &rendered.text).unwrap();
        validate(&file).unwrap_or_else(|e| panic!("{overlay}: {e}\n{}", rendered.text));
    }
    validate(&repo().join("deploy/kubernetes/secret.example.yaml")).unwrap();
    // The validator is strict: a misspelt field in the pod spec fails.
    let rendered = kustomize("replicas");
    let misspelt = rendered.text.replace(
        "terminationGracePeriodSeconds:",
        "terminationGracePeriodSecond:",
    );
    assert_ne!(misspelt, rendered.text);
    let file = dir.path().join("misspelt.yaml");
    std::fs::write(&file, misspelt).unwrap();
    let said = validate(&file).expect_err("a misspelt field must not validate");
    assert!(said.contains("terminationGracePeriodSecond"), "{said}");
    println!(
        "rendered and validated both overlays and the example Secret in {:.1?}",
        started.elapsed()
    );
}

/// The numbers the manifests, the config they mount, the image and
/// Kamailio must agree on.
#[test]
fn the_manifests_fit_the_image_the_config_the_drain_and_kamailio() {
    let image = image();
    assert_eq!(
        image.entrypoint[0],
        Path::new(&image.binary)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
    );
    let kamailio = std::fs::read_to_string(repo().join("deploy/kamailio/kamailio.cfg")).unwrap();
    let ping_interval: u64 = kamailio
        .lines()
        .find_map(|l| l.strip_prefix("#!trydef PING_INTERVAL "))
        .expect("kamailio.cfg's PING_INTERVAL")
        .trim()
        .parse()
        .unwrap();
    for overlay in ["single", "replicas"] {
        let r = kustomize(overlay);
        let config = r.config();
        let pod = r.pod();
        let c = r.container();
        let at = |what: &str| format!("{overlay}: {what}");

        // The image's ENTRYPOINT is the command line.
        assert!(c.get("command").is_none(), "{}", at("command"));
        assert!(
            c.get("args").is_none(),
            "{}",
            at("args repeat the ENTRYPOINT")
        );

        // The image's user, and volumes it can write.
        let sc = &pod["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{}", at("runAsNonRoot"));
        assert_eq!(sc["runAsUser"], image.uid, "{}", at("runAsUser"));
        assert_eq!(sc["runAsGroup"], image.gid, "{}", at("runAsGroup"));
        assert_eq!(sc["fsGroup"], image.gid, "{}", at("fsGroup"));

        // SIP and RTP on the node.
        assert_eq!(pod["hostNetwork"], true, "{}", at("hostNetwork"));
        assert_eq!(
            pod["dnsPolicy"],
            "ClusterFirstWithHostNet",
            "{}",
            at("dnsPolicy")
        );
        let env = r.env_names();
        for name in [
            "SWITCHBOARD_SIP__ADVERTISE__HOST",
            "SWITCHBOARD_MEDIA__RTP_PORT_FIRST",
            "SWITCHBOARD_MEDIA__RTP_PORT_LAST",
        ] {
            assert!(env.contains(&name.to_string()), "{}", at(name));
        }
        let port = |name: &str| -> u64 {
            let p = c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{}", at(name)));
            assert_eq!(p["hostPort"], p["containerPort"], "{}", at(name));
            p["containerPort"].as_u64().unwrap()
        };
        assert_eq!(port("sip-udp"), config["sip"]["udp_port"].as_u64().unwrap());
        assert_eq!(port("sip-tcp"), config["sip"]["tcp_port"].as_u64().unwrap());
        assert_eq!(port("api"), config["api"]["port"].as_u64().unwrap());

        // The API key from the Secret in both; the nonce key too (one for
        // all replicas; the placeholder stops a pod).
        for (name, key) in [
            ("LIVEKIT_API_KEY", "api-key"),
            ("LIVEKIT_API_SECRET", "api-secret"),
            ("SWITCHBOARD_CALLS__AUTH_NONCE_KEY", "nonce-key"),
        ] {
            assert_eq!(r.secret_key_of(name).as_deref(), Some(key), "{}", at(name));
        }

        // Readiness is /healthz (503 while draining), liveness is not.
        let ready = &c["readinessProbe"]["httpGet"];
        assert_eq!(ready["path"], "/healthz", "{}", at("readiness"));
        assert_eq!(ready["port"], "api", "{}", at("readiness port"));
        let live = &c["livenessProbe"]["httpGet"];
        assert_ne!(
            live["path"],
            "/healthz",
            "{}",
            at("liveness would restart a draining pod")
        );
        assert_eq!(live["port"], "api", "{}", at("liveness port"));

        // The drain fits: the grace period covers the preStop pause and the
        // longest drain with time to exit; the shortest drain lets two
        // readiness probes and two Kamailio probes see the 503.
        let pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", at("preStop exec")));
        assert_eq!(pre_stop[0], "sleep", "{}", at("preStop"));
        let pause: u64 = pre_stop[1].as_str().unwrap().parse().unwrap();
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        let min = config["drain"]["min_secs"].as_u64().unwrap();
        let max = config["drain"]["max_secs"].as_u64().unwrap();
        assert!(
            grace >= pause + max + 5,
            "{}",
            at(&format!(
                "grace {grace} < preStop {pause} + drain.max_secs {max} + 5"
            ))
        );
        let period = c["readinessProbe"]["periodSeconds"].as_u64().unwrap();
        let threshold = c["readinessProbe"]["failureThreshold"].as_u64().unwrap();
        assert!(
            min >= 2 * period * threshold,
            "{}",
            at("drain.min_secs vs readiness")
        );
        assert!(
            min >= 2 * ping_interval,
            "{}",
            at("drain.min_secs vs Kamailio's probe")
        );

        // data_dir is on a volume, resolved from the image's WORKDIR.
        let data_dir = config["data_dir"].as_str().unwrap();
        let data_dir = if data_dir.starts_with('/') {
            data_dir.to_string()
        } else {
            format!("{}/{}", image.workdir, data_dir.trim_start_matches("./"))
        };
        let (_, volume) = r.volume_holding(&data_dir);
        match overlay {
            // The embedded store must outlive the pod.
            "single" => {
                assert_eq!(r.workload()["kind"], "StatefulSet");
                assert_eq!(r.workload()["spec"]["replicas"], 1);
                assert!(
                    volume.get("volumeClaimTemplate").is_some(),
                    "single: data_dir {data_dir} is on {volume}, not a PersistentVolumeClaim"
                );
                for v in r.pod()["volumes"].as_array().into_iter().flatten() {
                    assert!(v.get("emptyDir").is_none(), "single: {v}");
                }
                assert_eq!(config["store"]["url"], Value::Null);
                assert!(r.secret_key_of("SWITCHBOARD_STORE__URL").is_none());
            }
            // The store is Redis (from the Secret); several replicas, one
            // at a time disrupted.
            _ => {
                assert_eq!(r.workload()["kind"], "Deployment");
                assert!(r.workload()["spec"]["replicas"].as_u64().unwrap() >= 2);
                assert_eq!(
                    r.secret_key_of("SWITCHBOARD_STORE__URL").as_deref(),
                    Some("redis-url")
                );
                let pdb = r
                    .docs
                    .iter()
                    .find(|d| d["kind"] == "PodDisruptionBudget")
                    .unwrap();
                assert_eq!(pdb["spec"]["maxUnavailable"], 1);
                let labels = &r.workload()["spec"]["template"]["metadata"]["labels"];
                for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
                    assert_eq!(&labels[k], v, "the PDB selects the pods");
                }
                let anti = &pod["affinity"]["podAntiAffinity"]
                    ["requiredDuringSchedulingIgnoredDuringExecution"][0];
                assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
            }
        }
    }
}

// ------------------------------------------------- the rendered command line

/// The example Secret's values, placeholders replaced by test values
/// (every placeholder must get one here, so a new Secret key is noticed).
fn secret(redis_url: &str) -> (String, BTreeMap<String, String>) {
    let text =
        std::fs::read_to_string(repo().join("deploy/kubernetes/secret.example.yaml")).unwrap();
    let doc: Value = serde_norway::from_str(&text).unwrap();
    let mut values = BTreeMap::new();
    for (k, v) in doc["stringData"].as_object().unwrap() {
        let v = v.as_str().unwrap();
        assert!(
            v.contains("REPLACE-ME"),
            "{k}: the example holds placeholders only"
        );
        let test_value = match k.as_str() {
            "api-key" => KEY.to_string(),
            "api-secret" => SECRET.to_string(),
            "nonce-key" => "5be1c0de".repeat(8),
            "redis-url" => redis_url.to_string(),
            other => panic!("no test value for the Secret's key {other}"),
        };
        values.insert(k.clone(), test_value);
    }
    (
        doc["metadata"]["name"].as_str().unwrap().to_string(),
        values,
    )
}

fn placeholders() -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(repo().join("deploy/kubernetes/secret.example.yaml")).unwrap();
    let doc: Value = serde_norway::from_str(&text).unwrap();
    doc["stringData"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// Expands `$(NAME)` with the variables defined so far, as Kubernetes does
/// in env values, command and args.
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = value.to_string();
    for (name, v) in env {
        out = out.replace(&format!("$({name})"), v);
    }
    out
}

/// The container's command line and environment as Kubernetes would start
/// them, with the pod's volumes as directories under `root`.
struct Launch {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    data_dir: PathBuf,
}

fn launch(r: &Rendered, secret: &(String, BTreeMap<String, String>), root: &Path) -> Launch {
    let image = image();
    let c = r.container();
    // Every mount is a directory under root; ConfigMaps get their files.
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for m in c["volumeMounts"].as_array().unwrap() {
        let at = m["mountPath"].as_str().unwrap().to_string();
        let local = root.join(at.trim_start_matches('/'));
        std::fs::create_dir_all(&local).unwrap();
        let volume = r.volume(m["name"].as_str().unwrap());
        if let Some(name) = volume["configMap"]["name"].as_str() {
            let cm = r.named("ConfigMap", name);
            for (file, content) in cm["data"].as_object().unwrap() {
                std::fs::write(local.join(file), content.as_str().unwrap()).unwrap();
            }
        }
        mounts.push((at, local));
    }
    let map_path = |path: &str| -> PathBuf {
        let (at, local) = mounts
            .iter()
            .filter(|(at, _)| path == at || path.starts_with(&format!("{at}/")))
            .max_by_key(|(at, _)| at.len())
            .unwrap_or_else(|| panic!("{path} is on no volume: the container could not keep it"));
        local.join(path[at.len()..].trim_start_matches('/'))
    };
    let mut env: Vec<(String, String)> = Vec::new();
    assert!(
        c.get("envFrom").is_none(),
        "envFrom is not mapped by this test"
    );
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = if let Some(v) = e["value"].as_str() {
            expand(v, &env)
        } else if let Some(field) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match field {
                "status.hostIP" | "status.podIP" => "127.0.0.1".to_string(),
                other => panic!("no stand-in for fieldRef {other}"),
            }
        } else if let Some(key) = e["valueFrom"]["secretKeyRef"]["key"].as_str() {
            assert_eq!(
                e["valueFrom"]["secretKeyRef"]["name"].as_str(),
                Some(secret.0.as_str()),
                "{name} reads a Secret other than the example's"
            );
            secret
                .1
                .get(key)
                .unwrap_or_else(|| panic!("{name}: the example Secret has no key {key}"))
                .clone()
        } else {
            panic!("no stand-in for {e}");
        };
        env.push((name, value));
    }
    let mut argv: Vec<String> = match c["command"].as_array() {
        Some(command) => command
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect(),
        None => image.entrypoint.clone(),
    };
    argv.extend(
        c["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap().to_string()),
    );
    let argv = argv.iter().map(|a| expand(a, &env)).collect();
    let config = r.config();
    let data_dir = config["data_dir"].as_str().unwrap();
    let data_dir = if data_dir.starts_with('/') {
        data_dir.to_string()
    } else {
        format!("{}/{}", image.workdir, data_dir.trim_start_matches("./"))
    };
    Launch {
        argv,
        env,
        cwd: map_path(&image.workdir),
        data_dir: map_path(&data_dir),
    }
    .with_paths_mapped(&mounts)
}

impl Launch {
    /// Absolute paths in the command line point into the volumes' directories.
    fn with_paths_mapped(mut self, mounts: &[(String, PathBuf)]) -> Launch {
        for arg in self.argv.iter_mut().skip(1) {
            if let Some((at, local)) = mounts
                .iter()
                .filter(|(at, _)| arg.starts_with(&format!("{at}/")))
                .max_by_key(|(at, _)| at.len())
            {
                *arg = local
                    .join(arg[at.len()..].trim_start_matches('/'))
                    .to_string_lossy()
                    .into_owned();
            }
        }
        self
    }
}

/// A process started from a [`Launch`], killed when dropped.
struct Pod {
    child: Child,
    log: PathBuf,
    api: SocketAddr,
}

/// Runs the launch's command line with the built binary for the image's
/// program; only the ports (ephemeral), bind addresses (loopback), data_dir
/// (its volume's directory) and a ready file are set on top.
fn run(launch: &Launch, root: &Path, name: &str) -> Result<Pod, String> {
    let image = image();
    assert_eq!(launch.argv[0], image.entrypoint[0]);
    let ready = root.join(format!("{name}.ready.json"));
    let log = root.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .args(&launch.argv[1..])
        .current_dir(&launch.cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .env("SWITCHBOARD_SIP__BIND", "127.0.0.1")
        .env("SWITCHBOARD_SIP__UDP_PORT", "0")
        .env("SWITCHBOARD_SIP__TCP_PORT", "0")
        .env("SWITCHBOARD_API__BIND", "127.0.0.1")
        .env("SWITCHBOARD_API__PORT", "0")
        .env("SWITCHBOARD_MEDIA__BIND", "127.0.0.1")
        .env("SWITCHBOARD_DATA_DIR", &launch.data_dir)
        .env("SWITCHBOARD_READY_FILE", &ready)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            let json: Value = serde_json::from_str(&text).unwrap();
            let api = json["api"].as_str().unwrap().parse().unwrap();
            return Ok(Pod { child, log, api });
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!(
                "exited with {status}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        assert!(
            Instant::now() < deadline,
            "did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Pod {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> u16 {
        http_status(self.api, path)
    }

    fn probe(&self, r: &Rendered, probe: &str) -> u16 {
        let path = r.container()[probe]["httpGet"]["path"].as_str().unwrap();
        self.get(path)
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `switchboard <args>` against this pod with the Secret's API key.
    fn cli(&self, secret: &BTreeMap<String, String>, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(args)
            .env("LIVEKIT_URL", format!("http://{}", self.api))
            .env("LIVEKIT_API_KEY", &secret["api-key"])
            .env("LIVEKIT_API_SECRET", &secret["api-secret"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "switchboard {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_status(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

/// SIGTERM as Kubernetes sends it after the preStop hook: readiness turns
/// 503 at once, liveness stays 200, and the process exits 0 once
/// drain.min_secs has passed (no call is up). Returns when it exited.
fn drains_like_a_pod(pod: &mut Pod, r: &Rendered) -> Duration {
    let min = Duration::from_secs(r.config()["drain"]["min_secs"].as_u64().unwrap());
    pod.sigterm();
    let term = Instant::now();
    let deadline = term + Duration::from_secs(2);
    while pod.probe(r, "readinessProbe") != 503 {
        assert!(Instant::now() < deadline, "readiness never answered 503");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        pod.probe(r, "livenessProbe"),
        200,
        "liveness while draining"
    );
    let status = pod
        .wait_exit(min + Duration::from_secs(5))
        .unwrap_or_else(|| panic!("did not exit after the drain:\n{}", pod.log()));
    let took = term.elapsed();
    assert!(status.success(), "{status}\n{}", pod.log());
    assert!(took >= min, "exited after {took:?}, before drain.min_secs");
    assert!(pod.log().contains("drained; exiting"), "{}", pod.log());
    took
}

#[test]
fn the_single_overlay_command_line_serves_drains_and_keeps_its_store_on_its_volume() {
    let r = kustomize("single");
    let root = tempfile::tempdir().unwrap();
    let secret = secret("redis://unused.invalid/");
    let launch = launch(&r, &secret, root.path());
    let started = Instant::now();
    let mut pod = run(&launch, root.path(), "single").unwrap_or_else(|e| panic!("{e}"));
    let start_took = started.elapsed();
    assert_eq!(pod.probe(&r, "readinessProbe"), 200);
    assert_eq!(pod.probe(&r, "livenessProbe"), 200);
    // The rendered ConfigMap is what it read: JSON logs.
    let first_line = pod.log().lines().next().unwrap_or_default().to_string();
    assert!(first_line.starts_with('{'), "log.format json: {first_line}");
    // The Secret's API key works; the trunk lands on the volume.
    let out = pod.cli(
        &secret.1,
        &[
            "sip",
            "inbound",
            "create",
            r#"{"trunk": {"name": "on-the-volume", "numbers": ["+15550100"]}}"#,
        ],
    );
    let id = out.trim().strip_prefix("SIPTrunkID: ").unwrap().to_string();
    assert!(
        std::fs::read_dir(&launch.data_dir).unwrap().count() > 0,
        "nothing in data_dir {}",
        launch.data_dir.display()
    );
    let drained = drains_like_a_pod(&mut pod, &r);
    drop(pod);
    // It wrote nowhere but data_dir (readOnlyRootFilesystem holds): every
    // file under the pod's directories is the ConfigMap's or in data_dir.
    let config_dir = root.path().join("etc/switchboard");
    let mut stack = vec![root.path().join("var"), root.path().join("etc")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                assert!(
                    path.starts_with(&launch.data_dir) || path.starts_with(&config_dir),
                    "written outside data_dir: {}",
                    path.display()
                );
            }
        }
    }
    // The pod comes back (anywhere: the claim follows it) with its trunks.
    let pod = run(&launch, root.path(), "single-again").unwrap_or_else(|e| panic!("{e}"));
    let listed = pod.cli(&secret.1, &["sip", "inbound", "list", "--json"]);
    assert!(listed.contains(&id), "{listed}");
    println!(
        "single: started in {start_took:.1?} from {:?}; drained and exited {drained:.1?} after SIGTERM",
        launch.argv
    );
}

#[test]
fn the_replicas_overlay_command_line_shares_the_secrets_redis_and_refuses_placeholders() {
    let r = kustomize("replicas");
    let redis = common::redis::Redis::start();
    let secret = secret(&redis.url());
    let root_a = tempfile::tempdir().unwrap();
    let root_b = tempfile::tempdir().unwrap();
    let a = launch(&r, &secret, root_a.path());
    let b = launch(&r, &secret, root_b.path());
    let started = Instant::now();
    let mut pod_a = run(&a, root_a.path(), "a").unwrap_or_else(|e| panic!("{e}"));
    let pod_b = run(&b, root_b.path(), "b").unwrap_or_else(|e| panic!("{e}"));
    let start_took = started.elapsed();
    for pod in [&pod_a, &pod_b] {
        assert_eq!(pod.probe(&r, "readinessProbe"), 200);
        assert_eq!(pod.probe(&r, "livenessProbe"), 200);
    }
    // A trunk made through one replica is served by the other: both use
    // the Secret's Redis.
    let out = pod_a.cli(
        &secret.1,
        &[
            "sip",
            "inbound",
            "create",
            r#"{"trunk": {"name": "shared", "numbers": ["+15550100"]}}"#,
        ],
    );
    let id = out.trim().strip_prefix("SIPTrunkID: ").unwrap().to_string();
    let version = common::api::store_version(pod_a.api);
    common::api::wait_for_routing(pod_b.api, version);
    let listed = pod_b.cli(&secret.1, &["sip", "inbound", "list", "--json"]);
    assert!(listed.contains(&id), "{listed}");
    let drained = drains_like_a_pod(&mut pod_a, &r);
    assert_eq!(
        pod_b.probe(&r, "readinessProbe"),
        200,
        "the other replica stays ready"
    );

    // The example Secret's placeholders stop the pod at start (the Redis
    // URL aside, which the placeholder would send to DNS).
    let root_c = tempfile::tempdir().unwrap();
    let mut as_committed = ("switchboard".to_string(), placeholders());
    as_committed.1.insert("redis-url".into(), redis.url());
    let c = launch(&r, &as_committed, root_c.path());
    // Call settings are checked before anything listens: the process exits
    // without ever writing its ready file.
    let refused = match run(&c, root_c.path(), "placeholders") {
        Err(said) => said,
        Ok(pod) => panic!(
            "a pod with the example Secret's placeholders became ready:\n{}",
            pod.log()
        ),
    };
    assert!(
        refused.contains("auth_nonce_key must be 64 hex characters"),
        "{refused}"
    );
    println!(
        "replicas: two started in {start_took:.1?} from {:?}; one drained and exited {drained:.1?} after SIGTERM",
        a.argv
    );
}

/// The chart passed `args: ["serve", "--config", ...]` to an image whose
/// ENTRYPOINT already ends in them: the container's command line would
/// have been `switchboard serve --config F serve --config F`, which the
/// CLI refuses, so the pod would have exited at once. The chart (kept,
/// deprecated in favour of deploy/kubernetes) passes no args now.
#[test]
fn the_helm_charts_old_args_would_have_failed_and_are_gone() {
    let image = image();
    let old_args = ["serve", "--config", "/etc/switchboard/switchboard.yaml"];
    let config = repo().join("config/switchboard.yaml");
    let argv: Vec<String> = image
        .entrypoint
        .iter()
        .cloned()
        .chain(old_args.iter().map(|a| a.to_string()))
        .map(|a| {
            if a == "/etc/switchboard/switchboard.yaml" {
                config.to_string_lossy().into_owned()
            } else {
                a
            }
        })
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(&argv[1..])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unexpected argument 'serve'"),
        "{output:?}"
    );

    let template =
        std::fs::read_to_string(repo().join("deploy/helm/switchboard/templates/deployment.yaml"))
            .unwrap();
    for line in template.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        assert!(
            !line.starts_with("args:") && !line.starts_with("command:"),
            "the chart overrides the ENTRYPOINT again: {line}"
        );
    }
    // The embedded store is on a claim, not an emptyDir that loses every
    // trunk when the pod moves (emptyDir is left for Redis deployments).
    assert!(template.contains("persistentVolumeClaim"), "{template}");
}
