#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
//! `deploy/` (docs/deploy.md): the Dockerfile linted by hadolint, the Kubernetes manifests
//! rendered by `kubectl kustomize` and checked for what a production gateway needs (two
//! replicas, probes, a locked-down security context, a grace period that covers the drain, the
//! gateway id from the pod's name, no secret in a literal, a PodDisruptionBudget), checkov
//! over the Dockerfile and the rendered manifests with every skip explained, and the key
//! settings of compose.yaml and the systemd unit (which `systemd-analyze verify` checks).
//!
//! hadolint and checkov come from PyPI, pinned in tests/python/deploy-requirements.txt and
//! installed by `scripts/python-venv deploy`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use yaml_rust2::{Yaml, YamlLoader};

/// `server.drain_seconds` when the configuration does not set it.
const DEFAULT_DRAIN_SECONDS: i64 = 30;
/// How long a gateway waits for open connections after the drain.
const CONNECTION_WAIT_SECONDS: i64 = 15;
/// The rendered kustomizations: the base and the example overlay.
const KUSTOMIZATIONS: [&str; 2] = ["deploy/kubernetes", "deploy/kubernetes/overlays/example"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs `scripts/python-venv deploy` and returns the venv's folder (hadolint, checkov).
fn deploy_venv() -> PathBuf {
    let out = run(Command::new(root().join("scripts/python-venv")).arg("deploy"));
    assert!(
        out.status.success(),
        "scripts/python-venv deploy failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn run(command: &mut Command) -> Output {
    command
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn shown(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---- YAML -----------------------------------------------------------------------------------

fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(text.clone()), Value::Number),
        Yaml::Integer(n) => json!(n),
        Yaml::String(s) => json!(s),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(n) => n.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => panic!("unexpected YAML key {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        Yaml::Alias(_) | Yaml::BadValue => panic!("unsupported YAML node {yaml:?}"),
    }
}

/// The documents of a YAML stream, empty ones left out.
fn yaml_docs(text: &str) -> Vec<Value> {
    YamlLoader::load_from_str(text)
        .unwrap_or_else(|e| panic!("invalid YAML: {e}"))
        .iter()
        .map(to_json)
        .filter(|v| !v.is_null())
        .collect()
}

/// `kubectl kustomize DIR`: the rendered text and its objects.
fn kustomize(dir: &str) -> (String, Vec<Value>) {
    let out = run(Command::new("kubectl").args(["kustomize", dir]));
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        shown(&out)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs = yaml_docs(&text);
    assert!(!docs.is_empty(), "kubectl kustomize {dir} rendered nothing");
    (text, docs)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "exactly one {kind}, found {}", found.len());
    found[0]
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

// ---- Secrets --------------------------------------------------------------------------------

/// Whether an environment variable or a configuration key names a secret.
fn sensitive(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "secret",
        "password",
        "passwd",
        "token",
        "database__url",
        "access_key",
        "private_key",
        "credential",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// Panics on a configuration key that holds a secret in the file itself rather than naming a
/// file (`KEY_file`). `allowed` lists `(dotted key, word its value must contain)` for values
/// that are clearly demo values.
fn assert_no_literal_secrets(what: &str, table: &toml::Table, allowed: &[(&str, &str)]) {
    fn walk(what: &str, table: &toml::Table, path: &mut Vec<String>, allowed: &[(&str, &str)]) {
        for (key, value) in table {
            path.push(key.clone());
            let dotted = path.join(".");
            match value {
                toml::Value::Table(inner) => walk(what, inner, path, allowed),
                toml::Value::Array(items) => {
                    for item in items {
                        if let toml::Value::Table(inner) = item {
                            walk(what, inner, path, allowed);
                        }
                    }
                }
                _ if key.ends_with("_file") => {}
                toml::Value::String(text) if sensitive(key) || dotted == "database.url" => {
                    let demo = allowed
                        .iter()
                        .any(|(k, word)| *k == dotted && text.to_ascii_lowercase().contains(word));
                    assert!(
                        demo,
                        "{what}: {dotted} holds a secret in the file; use {key}_file"
                    );
                }
                _ => {}
            }
            path.pop();
        }
    }
    walk(what, table, &mut Vec::new(), allowed);
}

fn toml_table(what: &str, text: &str) -> toml::Table {
    toml::from_str(text).unwrap_or_else(|e| panic!("{what}: invalid TOML: {e}"))
}

/// `server.drain_seconds` of a configuration, or its default.
fn drain_seconds(config: &toml::Table) -> i64 {
    config
        .get("server")
        .and_then(|s| s.get("drain_seconds"))
        .map_or(DEFAULT_DRAIN_SECONDS, |v| v.as_integer().unwrap())
}

fn port_of(listen: &str) -> i64 {
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

// ---- Kubernetes -----------------------------------------------------------------------------

/// The gateway's porthole.toml from the rendered ConfigMap the Deployment mounts.
fn config_of(docs: &[Value]) -> toml::Table {
    let deployment = one(docs, "Deployment");
    let config_maps: BTreeSet<&str> = array(&deployment["spec"]["template"]["spec"]["volumes"])
        .iter()
        .filter_map(|v| v["configMap"]["name"].as_str())
        .collect();
    let text = of_kind(docs, "ConfigMap")
        .into_iter()
        .filter(|c| config_maps.contains(c["metadata"]["name"].as_str().unwrap_or("")))
        .find_map(|c| c["data"]["porthole.toml"].as_str())
        .expect("a ConfigMap mounted by the Deployment holds porthole.toml");
    toml_table("ConfigMap porthole.toml", text)
}

/// Everything tests/deploy.rs asks of rendered manifests; panics naming the first miss.
fn check_manifests(docs: &[Value]) {
    let deployment = one(docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2, "two gateways");
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0,
        "a rolling update starts a new gateway before draining an old one"
    );
    let template = &deployment["spec"]["template"];
    let pod = &template["spec"];
    let containers: Vec<&Value> = array(&pod["containers"])
        .iter()
        .chain(array(&pod["initContainers"]))
        .collect();
    let gateway = array(&pod["containers"])
        .iter()
        .find(|c| c["name"] == "porthole")
        .expect("a container named porthole");

    // Probes.
    assert_eq!(gateway["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(gateway["readinessProbe"]["httpGet"]["path"], "/readyz");

    // Security context, on the pod and on every container.
    let pod_security = &pod["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true, "pod runAsNonRoot");
    assert_eq!(
        pod_security["seccompProfile"]["type"], "RuntimeDefault",
        "pod seccompProfile"
    );
    for container in &containers {
        let name = &container["name"];
        let security = &container["securityContext"];
        assert_eq!(security["runAsNonRoot"], true, "{name}: runAsNonRoot");
        assert_eq!(
            security["allowPrivilegeEscalation"], false,
            "{name}: allowPrivilegeEscalation"
        );
        assert_eq!(
            security["readOnlyRootFilesystem"], true,
            "{name}: readOnlyRootFilesystem"
        );
        assert!(
            array(&security["capabilities"]["drop"]).contains(&json!("ALL")),
            "{name}: capabilities drop ALL"
        );
        assert_eq!(
            security["seccompProfile"]["type"], "RuntimeDefault",
            "{name}: seccompProfile"
        );
        assert_ne!(security["privileged"], true, "{name}: privileged");
        assert!(
            container["resources"]["requests"]["memory"].is_string()
                && container["resources"]["limits"]["memory"].is_string(),
            "{name}: memory request and limit"
        );
    }
    assert_eq!(
        pod["automountServiceAccountToken"], false,
        "the gateway never calls the Kubernetes API"
    );

    // Stopping: the grace period covers the preStop sleep, the drain and the connection wait.
    let config = config_of(docs);
    let drain = drain_seconds(&config);
    let pre_stop = &gateway["lifecycle"]["preStop"];
    assert!(
        pre_stop.as_object().is_some_and(|o| !o.is_empty()),
        "a preStop hook (the load balancer stops sending before SIGTERM)"
    );
    let sleep = pre_stop["sleep"]["seconds"].as_i64().unwrap_or_else(|| {
        let command = array(&pre_stop["exec"]["command"]);
        match command {
            [s, n] if s == "sleep" => n.as_str().unwrap().parse().unwrap(),
            _ => 0,
        }
    });
    let grace = pod["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace >= drain + CONNECTION_WAIT_SECONDS + sleep,
        "terminationGracePeriodSeconds {grace} < drain {drain} + {CONNECTION_WAIT_SECONDS} + preStop {sleep}"
    );

    // The environment: the gateway's identity from the pod, secrets only from files.
    let env = array(&gateway["env"]);
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} is set"))
    };
    assert_eq!(
        var("PORTHOLE_SERVER__GATEWAY_ID")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name",
        "the gateway id is the pod's name"
    );
    let internal = var("PORTHOLE_SERVER__INTERNAL_URL")["value"]
        .as_str()
        .expect("internal_url is a value");
    assert!(internal.contains("$(POD_IP)"), "internal_url: {internal}");
    assert_eq!(
        var("POD_IP")["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    let volumes = array(&pod["volumes"]);
    let secret_volume = |name: &Value| {
        volumes.iter().any(|v| {
            v["name"] == *name
                && (v["secret"].is_object()
                    || v["csi"].is_object()
                    || (!array(&v["projected"]["sources"]).is_empty()
                        && array(&v["projected"]["sources"])
                            .iter()
                            .all(|s| s["secret"].is_object())))
        })
    };
    for container in &containers {
        let secret_mounts: Vec<&str> = array(&container["volumeMounts"])
            .iter()
            .filter(|m| secret_volume(&m["name"]))
            .filter_map(|m| m["mountPath"].as_str())
            .collect();
        for e in array(&container["env"]) {
            let name = e["name"].as_str().unwrap();
            if !sensitive(name) {
                continue;
            }
            if e["valueFrom"]["secretKeyRef"].is_object() {
                continue;
            }
            let value = e["value"].as_str().unwrap_or("");
            assert!(
                name.ends_with("_FILE")
                    && secret_mounts
                        .iter()
                        .any(|m| value.starts_with(&format!("{}/", m.trim_end_matches('/')))),
                "{}: {name} must come from a Secret (secretKeyRef, or _FILE naming a file of a \
                 mounted Secret), not {e}",
                container["name"]
            );
        }
    }
    assert_no_literal_secrets("ConfigMap porthole.toml", &config, &[]);
    for secret in of_kind(docs, "Secret") {
        for field in ["data", "stringData"] {
            assert!(
                secret[field].as_object().is_none_or(|o| o.is_empty()),
                "Secret {} has literal {field}: secrets are made outside the kustomization",
                secret["metadata"]["name"]
            );
        }
    }

    // The read-only root: the recordings spool is a writable volume.
    let spool = config
        .get("recordings")
        .and_then(|r| r.get("dir"))
        .and_then(|d| d.as_str())
        .expect("recordings.dir");
    let mount = array(&gateway["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"] == spool)
        .unwrap_or_else(|| panic!("recordings.dir {spool} is a volume"));
    assert_ne!(mount["readOnly"], true, "the spool is writable");
    assert!(
        volumes
            .iter()
            .any(|v| v["name"] == mount["name"] && v["emptyDir"].is_object()),
        "the spool is an emptyDir"
    );

    // Ports: the configuration's listen addresses are the container's ports.
    let port = |name: &str| {
        array(&gateway["ports"])
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("a container port named {name}"))
    };
    let listen = config["server"]["listen"].as_str().unwrap();
    assert_eq!(port_of(listen), port("http"), "server.listen");
    assert!(
        listen.starts_with("0.0.0.0:"),
        "server.listen reachable: {listen}"
    );
    let metrics = config["metrics"]["listen"].as_str().unwrap();
    assert_eq!(port_of(metrics), port("metrics"), "metrics.listen");

    // Voluntary disruptions leave a gateway.
    let pdb = one(docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let labels = template["metadata"]["labels"].as_object().unwrap();
    for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            labels.get(k),
            Some(v),
            "the PodDisruptionBudget selects the pods"
        );
    }

    // The AWS identity: IRSA on the pods' service account.
    let account = one(docs, "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .is_some_and(|a| a.starts_with("arn:aws:iam::") && a.contains(":role/")),
        "the service account names the gateway's role (IRSA)"
    );

    // No affinity needed; WebSocket-friendly timeouts; /internal/ refused from outside.
    let service = one(docs, "Service");
    assert_ne!(service["spec"]["sessionAffinity"], "ClientIP");
    let ingress = one(docs, "Ingress");
    let annotations = &ingress["metadata"]["annotations"];
    let nginx_read: i64 = annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        nginx_read >= 3600,
        "ingress-nginx read timeout {nginx_read}"
    );
    let alb = annotations["alb.ingress.kubernetes.io/load-balancer-attributes"]
        .as_str()
        .unwrap();
    let idle: i64 = alb
        .split(',')
        .find_map(|a| a.strip_prefix("idle_timeout.timeout_seconds="))
        .expect("the ALB's idle timeout")
        .parse()
        .unwrap();
    assert!(idle >= 3600, "ALB idle timeout {idle}");
    let paths: Vec<&Value> = array(&ingress["spec"]["rules"])
        .iter()
        .flat_map(|r| array(&r["http"]["paths"]))
        .collect();
    let internal = paths
        .iter()
        .find(|p| p["path"] == "/internal")
        .expect("a rule for /internal");
    assert_ne!(
        internal["backend"]["service"]["name"], service["metadata"]["name"],
        "/internal/ does not reach the gateways through the Ingress"
    );
}

#[test]
fn the_kubernetes_manifests_hold_what_production_needs() {
    for dir in KUSTOMIZATIONS {
        let (_, docs) = kustomize(dir);
        check_manifests(&docs);
    }
    // The overlay pins the image by digest (the base's checkov skip of CKV_K8S_43 says so).
    let (_, docs) = kustomize("deploy/kubernetes/overlays/example");
    let image = one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(image.contains("@sha256:"), "the overlay pins {image}");
}

#[test]
fn the_checks_catch_a_broken_deployment() {
    let (_, docs) = kustomize("deploy/kubernetes");
    let deployment_index = docs.iter().position(|d| d["kind"] == "Deployment").unwrap();
    type Break = Box<dyn Fn(&mut Vec<Value>, usize)>;
    let breaks: Vec<(&str, Break)> = vec![
        (
            "one replica",
            Box::new(|d, i| d[i]["spec"]["replicas"] = json!(1)),
        ),
        (
            "a writable root file system",
            Box::new(|d, i| {
                d[i]["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] =
                    json!(false);
            }),
        ),
        (
            "a grace period shorter than the drain",
            Box::new(|d, i| {
                d[i]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(30);
            }),
        ),
        (
            "no preStop",
            Box::new(|d, i| {
                d[i]["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = json!({});
            }),
        ),
        (
            "a secret in the environment",
            Box::new(|d, i| {
                d[i]["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "PORTHOLE_AUTH__JWT_SECRET", "value": "x".repeat(40)}));
            }),
        ),
        (
            "a _FILE outside the Secret's mount",
            Box::new(|d, i| {
                d[i]["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "PORTHOLE_X__TOKEN_FILE", "value": "/etc/porthole/t"}));
            }),
        ),
        (
            "a fixed gateway id",
            Box::new(|d, i| {
                for e in d[i]["spec"]["template"]["spec"]["containers"][0]["env"]
                    .as_array_mut()
                    .unwrap()
                {
                    if e["name"] == "PORTHOLE_SERVER__GATEWAY_ID" {
                        *e = json!({"name": "PORTHOLE_SERVER__GATEWAY_ID", "value": "porthole-1"});
                    }
                }
            }),
        ),
        (
            "a Secret with data",
            Box::new(|d, _| {
                d.push(json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "porthole-secrets"}, "data": {"jwt-secret": "eA=="}}));
            }),
        ),
        (
            "no PodDisruptionBudget",
            Box::new(|d, _| d.retain(|o| o["kind"] != "PodDisruptionBudget")),
        ),
        (
            "a secret in the ConfigMap",
            Box::new(|d, _| {
                for o in d.iter_mut().filter(|o| o["kind"] == "ConfigMap") {
                    let text = o["data"]["porthole.toml"].as_str().unwrap().to_owned();
                    o["data"]["porthole.toml"] = json!(text.replace(
                        "[auth]\n",
                        "[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n"
                    ));
                }
            }),
        ),
    ];
    for (what, break_it) in &breaks {
        let mut broken = docs.clone();
        break_it(&mut broken, deployment_index);
        assert_ne!(broken, docs, "{what}: the change did not apply");
        let caught = std::panic::catch_unwind(|| check_manifests(&broken)).is_err();
        assert!(caught, "{what} went unnoticed");
    }

    // The linters fail on what they should.
    let venv = deploy_venv();
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(
        &dockerfile,
        "FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n",
    )
    .unwrap();
    let out = run(Command::new(venv.join("bin/hadolint"))
        .args(["--failure-threshold", "warning"])
        .arg(&dockerfile));
    assert!(!out.status.success(), "hadolint passed a bad Dockerfile");
    let manifest = dir.path().join("bad.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers:\n    - name: x\n      image: x:latest\n      securityContext: {privileged: true}\n",
    )
    .unwrap();
    let reports = checkov(&venv, &[&manifest], &["kubernetes"]);
    assert!(
        reports
            .iter()
            .any(|r| r["summary"]["failed"].as_u64() > Some(0)),
        "checkov passed a privileged pod"
    );
}

// ---- checkov --------------------------------------------------------------------------------

/// Runs checkov on `files` (offline: --skip-download) and returns its JSON reports, one per
/// framework.
fn checkov(venv: &Path, files: &[&Path], frameworks: &[&str]) -> Vec<Value> {
    let mut command = Command::new(venv.join("bin/checkov"));
    for file in files {
        command.arg("-f").arg(file);
    }
    command
        .arg("--framework")
        .args(frameworks)
        .args(["--skip-download", "--output", "json"])
        .env("BC_SKIP_MAPPING", "TRUE");
    let out = run(&mut command);
    let reports = match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(Value::Array(list)) => list,
        Ok(one) => vec![one],
        Err(e) => panic!("checkov's output is not JSON ({e}): {}", shown(&out)),
    };
    let failed = reports
        .iter()
        .any(|r| r["summary"]["failed"].as_u64() > Some(0));
    assert_eq!(
        out.status.success(),
        !failed,
        "checkov's exit status and its report disagree: {}",
        shown(&out)
    );
    reports
}

/// The reasons written beside checkov skips: `checkov.io/skipN: CKV_…=reason` annotations and
/// `# checkov:skip=CKV_…:reason` comments, by check id. Panics on a skip without a reason.
fn skip_reasons(manifests: &[Value], dockerfile: &str) -> BTreeMap<String, String> {
    let mut reasons = BTreeMap::new();
    for object in manifests {
        let Some(annotations) = object["metadata"]["annotations"].as_object() else {
            continue;
        };
        for (key, value) in annotations {
            if !key.starts_with("checkov.io/skip") {
                continue;
            }
            let value = value.as_str().unwrap();
            let (id, reason) = value.split_once('=').unwrap_or((value, ""));
            assert!(
                reason.trim().len() >= 10,
                "{key} of {} skips {id} without a reason",
                object["metadata"]["name"]
            );
            reasons.insert(id.trim().to_owned(), reason.trim().to_owned());
        }
    }
    for line in dockerfile.lines() {
        if let Some(rest) = line.split_once("checkov:skip=").map(|(_, r)| r) {
            let (id, reason) = rest.split_once(':').unwrap_or((rest, ""));
            assert!(
                reason.trim().len() >= 10,
                "Dockerfile skips {id} without a reason"
            );
            reasons.insert(id.trim().to_owned(), reason.trim().to_owned());
        }
    }
    reasons
}

#[test]
fn checkov_passes_the_dockerfile_and_the_rendered_manifests() {
    let venv = deploy_venv();
    let dir = tempfile::tempdir().unwrap();
    let mut files = vec![root().join("deploy/Dockerfile")];
    let mut manifests = Vec::new();
    for (i, kustomization) in KUSTOMIZATIONS.iter().enumerate() {
        let (text, docs) = kustomize(kustomization);
        let file = dir.path().join(format!("rendered-{i}.yaml"));
        std::fs::write(&file, text).unwrap();
        files.push(file);
        manifests.extend(docs);
    }
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let reports = checkov(&venv, &paths, &["dockerfile", "kubernetes"]);

    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    for framework in ["dockerfile", "kubernetes"] {
        let report = reports
            .iter()
            .find(|r| r["check_type"] == framework)
            .unwrap_or_else(|| panic!("checkov reported nothing for {framework}: {reports:?}"));
        let summary = &report["summary"];
        assert!(
            summary["passed"].as_u64() > Some(10),
            "{framework}: checkov checked too little: {summary}"
        );
        assert_eq!(summary["parsing_errors"], 0, "{framework}: {summary}");
        for check in array(&report["results"]["failed_checks"]) {
            failures.push(format!(
                "{} {} ({} in {})",
                check["check_id"].as_str().unwrap_or("?"),
                check["check_name"].as_str().unwrap_or("?"),
                check["resource"].as_str().unwrap_or("?"),
                check["file_path"].as_str().unwrap_or("?")
            ));
        }
        for check in array(&report["results"]["skipped_checks"]) {
            skipped.push(check["check_id"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        failures.is_empty(),
        "checkov failed:\n{}",
        failures.join("\n")
    );

    let reasons = skip_reasons(&manifests, &read("deploy/Dockerfile"));
    for id in &skipped {
        assert!(
            reasons.contains_key(id),
            "checkov skipped {id} with no reason written beside the skip"
        );
    }
}

// ---- Dockerfile -----------------------------------------------------------------------------

#[test]
fn hadolint_finds_nothing_in_the_dockerfile() {
    let venv = deploy_venv();
    let out = run(Command::new(venv.join("bin/hadolint")).args([
        "--failure-threshold",
        "warning",
        "deploy/Dockerfile",
    ]));
    assert!(out.status.success(), "hadolint: {}", shown(&out));
    for line in read("deploy/Dockerfile").lines() {
        if let Some(rest) = line.split_once("hadolint ignore=").map(|(_, r)| r) {
            let reason = rest.split_once(char::is_whitespace).map_or("", |(_, r)| r);
            assert!(
                reason.trim().len() >= 10,
                "a hadolint ignore needs its reason on the line: {line}"
            );
        }
    }
}

/// The Dockerfile's instructions, continuation lines joined, comments left out.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[test]
fn the_image_is_built_from_source_and_runs_unprivileged() {
    let steps = instructions(&read("deploy/Dockerfile"));
    let stages: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.starts_with("FROM "))
        .map(|(i, _)| i)
        .collect();
    assert!(stages.len() >= 3, "web, build and runtime stages");
    for &i in &stages {
        let image = steps[i].split_whitespace().nth(1).unwrap();
        let tag = image.rsplit('/').next().unwrap();
        assert!(
            tag.contains(':') && !tag.ends_with(":latest"),
            "{image}: a pinned tag"
        );
    }
    let all = steps.join("\n");
    assert!(
        all.contains("scripts/web-build"),
        "the web stage builds the assets"
    );
    assert!(
        all.contains("cargo build --release --locked"),
        "a locked release build"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("COPY --from=web") && s.contains("web/dist")),
        "the assets go into the build (rust-embed)"
    );
    assert!(
        !steps.iter().any(|s| s.starts_with("ADD ")),
        "COPY, not ADD"
    );

    let runtime = &steps[*stages.last().unwrap()..];
    let user = runtime
        .iter()
        .rev()
        .find_map(|s| s.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u >= 1000),
        "a numeric, unprivileged USER (Kubernetes' runAsNonRoot checks it): {user}"
    );
    assert!(
        runtime
            .iter()
            .any(|s| s.starts_with("HEALTHCHECK ") && s.contains("/healthz")),
        "a HEALTHCHECK on /healthz"
    );
    assert!(
        runtime
            .iter()
            .any(|s| s.starts_with("COPY --from=build") && s.contains("porthole")),
        "the binary comes from the build stage"
    );
    // Environment set in the image would silently win over the operator's porthole.toml.
    assert!(
        !runtime
            .iter()
            .any(|s| s.starts_with("ENV ") && s.contains("PORTHOLE_")),
        "no PORTHOLE_* defaults in the image"
    );

    let ignore = read(".dockerignore");
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in [".git", "target", "web/dist"] {
        assert!(
            ignored.contains(&needed),
            ".dockerignore leaves out {needed}"
        );
    }
    assert!(
        ignored.iter().any(|l| l.ends_with("node_modules")),
        ".dockerignore leaves out node_modules"
    );
}

// ---- Docker Compose -------------------------------------------------------------------------

/// A compose `environment:` as a map (it may be a list of `KEY=VALUE`).
fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_owned)))
            .collect(),
        Value::Array(list) => list
            .iter()
            .map(|e| {
                let (k, v) = e.as_str().unwrap().split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Seconds of a compose duration (`60s`, `1m30s`).
fn duration_seconds(text: &str) -> i64 {
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
        } else {
            let n: i64 = std::mem::take(&mut number).parse().unwrap();
            total += n * match c {
                'h' => 3600,
                'm' => 60,
                's' => 1,
                _ => panic!("unexpected duration {text}"),
            };
        }
    }
    assert!(number.is_empty(), "a duration with a unit: {text}");
    total
}

#[test]
fn compose_runs_the_gateway_on_postgres_with_secrets_from_files() {
    let compose = yaml_docs(&read("deploy/compose.yaml")).remove(0);
    let services = &compose["services"];
    let gateway = &services["porthole"];
    let postgres = &services["postgres"];
    let emulator = &services["emulator"];

    // The configuration files it may name exist and hold no secret (the emulator's demo keys,
    // clearly marked, aside).
    let env = environment(gateway);
    let config = env.get("PORTHOLE_CONFIG").expect("PORTHOLE_CONFIG");
    assert!(
        config.starts_with("/etc/porthole/") && config.contains(":-porthole.toml}"),
        "{config}"
    );
    let mut drain = 0;
    for name in ["porthole.toml", "porthole-emulator.toml"] {
        let table = toml_table(name, &read(&format!("deploy/compose/{name}")));
        assert_no_literal_secrets(
            name,
            &table,
            &[
                ("aws.access_key_id", "demo"),
                ("aws.secret_access_key", "demo"),
            ],
        );
        assert!(
            table["server"]["listen"]
                .as_str()
                .unwrap()
                .starts_with("0.0.0.0:8080"),
            "{name}: reachable on the published port"
        );
        drain = drain.max(drain_seconds(&table));
    }
    assert!(
        gateway["volumes"]
            .as_array()
            .unwrap()
            .contains(&json!("./compose:/etc/porthole:ro"))
    );

    // Locked down; stops within the drain.
    assert_eq!(gateway["read_only"], true);
    let user = gateway["user"].as_str().expect("user");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "not root: {user}"
    );
    assert!(array(&gateway["cap_drop"]).contains(&json!("ALL")));
    assert!(array(&gateway["security_opt"]).contains(&json!("no-new-privileges:true")));
    let grace = duration_seconds(gateway["stop_grace_period"].as_str().unwrap());
    assert!(
        grace >= drain + CONNECTION_WAIT_SECONDS,
        "stop_grace_period {grace}s < drain {drain} + {CONNECTION_WAIT_SECONDS}"
    );
    assert_eq!(
        gateway["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
    assert!(postgres["healthcheck"]["test"].is_array());
    for port in array(&gateway["ports"]) {
        assert!(
            port.as_str().unwrap().starts_with("127.0.0.1:"),
            "published on loopback only (TLS goes in front): {port}"
        );
    }
    assert_eq!(env["PORTHOLE_SERVER__GATEWAY_ID"], "porthole-1");
    assert!(env.contains_key("PORTHOLE_SERVER__INTERNAL_URL"));

    // Secrets: files only, each declared, each mounted where the variable says.
    let declared = compose["secrets"].as_object().expect("top-level secrets");
    for (name, secret) in declared {
        let file = secret["file"]
            .as_str()
            .unwrap_or_else(|| panic!("secret {name} comes from a file"));
        assert!(
            file.starts_with("./secrets/"),
            "{name}: {file} in deploy/secrets"
        );
    }
    assert!(
        read(".gitignore")
            .lines()
            .any(|l| l.trim() == "/deploy/secrets/"),
        "deploy/secrets/ is never committed"
    );
    for (service_name, service) in services.as_object().unwrap() {
        let mounted: Vec<&str> = array(&service["secrets"])
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        for name in &mounted {
            assert!(
                declared.contains_key(*name),
                "{service_name}: secret {name} undeclared"
            );
        }
        for (key, value) in environment(service) {
            if !sensitive(&key) {
                continue;
            }
            let file = value.strip_prefix("/run/secrets/");
            assert!(
                key.ends_with("_FILE") && file.is_some_and(|f| mounted.contains(&f)),
                "{service_name}: {key} must name a mounted secret file, not {value:?}"
            );
        }
    }

    // The emulator: only with its profile, and reachable by the gateway alone.
    assert_eq!(emulator["profiles"], json!(["emulator"]));
    let command: Vec<&str> = array(&emulator["command"])
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(command.first(), Some(&"emulator"));
    let listen = command
        .windows(2)
        .find(|w| w[0] == "--listen")
        .map(|w| w[1])
        .expect("--listen");
    let emulator_config = toml_table(
        "porthole-emulator.toml",
        &read("deploy/compose/porthole-emulator.toml"),
    );
    let endpoint = emulator_config["aws"]["endpoint_url"].as_str().unwrap();
    if emulator["network_mode"] == "service:porthole" {
        assert!(
            listen.starts_with("127.0.0.1:"),
            "in the gateway's namespace, on loopback"
        );
        assert_eq!(endpoint, format!("http://{listen}"));
    } else {
        assert!(
            command.contains(&"--allow-remote"),
            "another container reaches it only with --allow-remote"
        );
    }
}

// ---- systemd --------------------------------------------------------------------------------

/// The unit's `[Service]` settings, in order (a key may repeat).
fn service_settings(unit: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in unit.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        if section == "Service" {
            let (key, value) = line.split_once('=').expect("KEY=VALUE");
            out.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

/// Seconds of a systemd time span (`60`, `60s`, `1min 30s`).
fn timespan_seconds(text: &str) -> i64 {
    let mut total = 0;
    for part in text.split_whitespace() {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        let unit = &part[digits.len()..];
        let n: i64 = digits.parse().unwrap();
        total += n * match unit {
            "" | "s" | "sec" => 1,
            "m" | "min" => 60,
            "h" | "hr" => 3600,
            _ => panic!("unexpected time span {text}"),
        };
    }
    total
}

#[test]
fn the_systemd_unit_is_hardened_and_stops_within_the_drain() {
    let unit = read("deploy/systemd/porthole.service");
    let settings = service_settings(&unit);
    let get = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let only = |key: &str| -> &str {
        let values = get(key);
        assert_eq!(values.len(), 1, "{key} set once");
        values[0]
    };
    assert!(
        only("DynamicUser") == "yes" || get("User").iter().any(|u| *u != "root"),
        "an unprivileged user"
    );
    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("KillSignal", "SIGTERM"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(only(key), value, "{key}");
    }
    assert!(!only("StateDirectory").is_empty(), "StateDirectory");
    assert!(
        !only("RestrictAddressFamilies").is_empty(),
        "RestrictAddressFamilies"
    );
    assert!(
        get("SystemCallFilter").contains(&"@system-service"),
        "SystemCallFilter=@system-service"
    );
    let stop = timespan_seconds(only("TimeoutStopSec"));
    assert!(
        stop >= DEFAULT_DRAIN_SECONDS + CONNECTION_WAIT_SECONDS,
        "TimeoutStopSec {stop} < drain {DEFAULT_DRAIN_SECONDS} + {CONNECTION_WAIT_SECONDS}"
    );
    assert!(only("ExecStart").contains(" serve "), "runs porthole serve");

    // Secrets: credentials, named by the _FILE variables; nothing secret in the unit itself.
    let credentials: Vec<&str> = get("LoadCredential")
        .into_iter()
        .chain(get("LoadCredentialEncrypted"))
        .map(|c| c.split(':').next().unwrap())
        .collect();
    let mut file_vars = 0;
    for assignment in get("Environment") {
        let (name, value) = assignment.split_once('=').unwrap();
        if !sensitive(name) {
            continue;
        }
        let credential = value.strip_prefix("%d/");
        assert!(
            name.ends_with("_FILE") && credential.is_some_and(|c| credentials.contains(&c)),
            "{name} must name a credential (%d/NAME with LoadCredential=NAME:…), not {value:?}"
        );
        file_vars += 1;
    }
    assert!(
        file_vars >= 3,
        "the database URL, the JWT and cluster secrets come from credentials"
    );

    // systemd's own checks, where systemd is installed.
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!("systemd-analyze is not installed: the unit was not verified by systemd");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("porthole.service");
    // verify wants ExecStart's program to exist: the porthole binary of this build.
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/porthole", env!("CARGO_BIN_EXE_porthole")),
    )
    .unwrap();
    let out = run(Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&copy));
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify: {}",
        shown(&out)
    );
    let out = run(Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&copy));
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for porthole.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("systemd-analyze security: {}", shown(&out)));
    assert!(
        exposure <= 2.0,
        "systemd-analyze security rates the unit {exposure} (at most 2.0): {text}"
    );
}

// ---- The gateway reads these configurations -------------------------------------------------

/// `porthole::gateway::config` accepts each shipped configuration with the environment its
/// deployment gives it (secrets as files).
#[test]
fn the_gateway_accepts_the_shipped_configurations() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    for name in [
        "database-url",
        "jwt-secret",
        "cluster-secret",
        "metrics-bearer-token",
        "oidc-client-secret",
        "postgres-password",
    ] {
        let value = if name == "database-url" {
            "postgres://porthole:pw@db.example:5432/porthole".to_owned()
        } else {
            "0123456789abcdef".repeat(3)
        };
        std::fs::write(secrets.join(name), format!("{value}\n")).unwrap();
    }
    let here = format!("{}/", secrets.display());
    let relocate = |text: &str| {
        text.replace("/run/secrets/porthole/", &here)
            .replace("/run/secrets/", &here)
    };

    for kustomization in KUSTOMIZATIONS {
        let (_, docs) = kustomize(kustomization);
        let deployment = one(&docs, "Deployment");
        let gateway = &deployment["spec"]["template"]["spec"]["containers"][0];
        let config = of_kind(&docs, "ConfigMap")
            .into_iter()
            .find_map(|c| c["data"]["porthole.toml"].as_str())
            .unwrap()
            .to_owned();
        let env: Vec<(String, String)> = array(&gateway["env"])
            .iter()
            .map(|e| {
                let name = e["name"].as_str().unwrap().to_owned();
                let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                    Some("metadata.name") => "porthole-7d9f-abcde".to_owned(),
                    Some("status.podIP") => "10.0.3.7".to_owned(),
                    Some(other) => panic!("unexpected fieldRef {other}"),
                    None => relocate(e["value"].as_str().unwrap()).replace("$(POD_IP)", "10.0.3.7"),
                };
                (name, value)
            })
            .collect();
        let parsed = porthole::gateway::config::Config::from_toml_and_env(&relocate(&config), env)
            .unwrap_or_else(|e| panic!("{kustomization}: {e}"));
        assert_eq!(parsed.server.gateway_id, "porthole-7d9f-abcde");
    }

    let compose = yaml_docs(&read("deploy/compose.yaml")).remove(0);
    let env: Vec<(String, String)> = environment(&compose["services"]["porthole"])
        .into_iter()
        .filter(|(k, _)| k != "PORTHOLE_CONFIG")
        .map(|(k, v)| (k, relocate(&v)))
        .collect();
    for name in ["porthole.toml", "porthole-emulator.toml"] {
        let text = read(&format!("deploy/compose/{name}"));
        porthole::gateway::config::Config::from_toml_and_env(&text, env.clone())
            .unwrap_or_else(|e| panic!("deploy/compose/{name}: {e}"));
    }
}
