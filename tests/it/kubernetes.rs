//! The Kubernetes example (`examples/kubernetes/`) holds together: every manifest
//! parses, the sidecar reads the ConfigMap and the Secret where the Deployment
//! mounts them, the config loads as the crate loads it and names key files that the
//! Secret provides, and ingress-nginx asks the sidecar's `/auth` on its port.

use std::{collections::BTreeMap, path::Path};

use serde_yaml::Value;
use zitadel_system_auth::{Config, config::KeySource};

fn manifest(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/kubernetes")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text<'v>(value: &'v Value, path: &[&str]) -> &'v str {
    let mut value = value;
    for key in path {
        value = &value[*key];
    }
    value
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string: {value:?}"))
}

#[test]
fn the_kubernetes_example_holds_together() {
    let configmap = manifest("configmap.yaml");
    let secret = manifest("secret.yaml");
    let deployment = manifest("deployment.yaml");
    let service = manifest("service.yaml");
    let ingress = manifest("ingress.yaml");
    for (value, kind) in [
        (&configmap, "ConfigMap"),
        (&secret, "Secret"),
        (&deployment, "Deployment"),
        (&service, "Service"),
        (&ingress, "Ingress"),
    ] {
        assert_eq!(text(value, &["kind"]), kind);
    }

    // The sidecar container: `serve` with a config file in a mounted volume.
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers");
    let sidecar = containers
        .iter()
        .find(|c| {
            c["args"]
                .as_sequence()
                .is_some_and(|a| a.first().and_then(Value::as_str) == Some("serve"))
        })
        .expect("a container running `serve`");
    let args: Vec<&str> = sidecar["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config_path = args
        .iter()
        .find_map(|a| a.strip_prefix("--config="))
        .expect("--config=");
    let listen = args
        .iter()
        .find_map(|a| a.strip_prefix("--listen="))
        .expect("--listen=");
    let port: u64 = listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let mounts: BTreeMap<&str, &str> = sidecar["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .map(|m| (text(m, &["name"]), text(m, &["mountPath"])))
        .collect();
    let volumes: BTreeMap<&str, &Value> = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .map(|v| (text(v, &["name"]), v))
        .collect();
    let mount_of = |source: &str, name: &str| -> &str {
        let (volume, _) = volumes
            .iter()
            .find(|(_, v)| {
                v[source]["name"].as_str() == Some(name)
                    || v[source]["secretName"].as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("no volume of {source} {name}"));
        mounts
            .get(volume)
            .copied()
            .unwrap_or_else(|| panic!("volume {volume} is not mounted"))
    };
    let config_dir = mount_of("configMap", text(&configmap, &["metadata", "name"]));
    let keys_dir = mount_of("secret", text(&secret, &["metadata", "name"]));

    // The config file is where --config says, and loads as the crate loads it.
    let (dir, file) = config_path.rsplit_once('/').expect("a path");
    assert_eq!(dir, config_dir);
    let config = Config::from_yaml(text(&configmap, &["data", file])).expect("the config loads");
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    assert!(!config.users().is_empty());
    let provided: Vec<&str> = secret["stringData"]
        .as_mapping()
        .expect("stringData")
        .keys()
        .filter_map(Value::as_str)
        .collect();
    for user in config.users() {
        let KeySource::Path(path) = user.key() else {
            panic!("{} should read a key file", user.id());
        };
        let path = path.to_str().expect("UTF-8");
        let (dir, file) = path.rsplit_once('/').expect("a path");
        assert_eq!(dir, keys_dir, "{}", user.id());
        assert!(provided.contains(&file), "the Secret lacks {file}");
    }

    // The Service exposes the sidecar's port; ingress-nginx asks its /auth.
    let service_port = service["spec"]["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .find(|p| p["targetPort"].as_str() == Some("auth"))
        .and_then(|p| p["port"].as_u64())
        .expect("the auth port");
    assert_eq!(service_port, port);
    let annotations = &ingress["metadata"]["annotations"];
    let auth_url = text(annotations, &["nginx.ingress.kubernetes.io/auth-url"]);
    let service_name = text(&service, &["metadata", "name"]);
    assert!(
        auth_url.starts_with(&format!("http://{service_name}.")),
        "{auth_url}"
    );
    assert!(auth_url.ends_with(&format!(":{port}/auth")), "{auth_url}");
    let handed: Vec<&str> = text(
        annotations,
        &["nginx.ingress.kubernetes.io/auth-response-headers"],
    )
    .split(',')
    .collect();
    assert_eq!(handed, ["x-zitadel-system-user", "x-zitadel-system-roles"]);
    // The audience tokens need is the host the Ingress serves.
    let host = text(&ingress["spec"]["rules"][0], &["host"]);
    assert_eq!(config.audience(), format!("https://{host}"));
}
