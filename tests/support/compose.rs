//! Worlds built inside the Terraform configuration under test: `terraform_data` resources whose
//! `local-exec` provisioners call the emulator's REST API with curl, standing in for the google
//! provider (which cannot be installed offline). Terraform 1.4+ (`terraform_data`).

use serde_json::{json, Value};

use super::terraform::{terraform_binaries, Terraform};

/// The Terraform binaries that have `terraform_data` (1.4 and later).
pub fn terraform_with_terraform_data() -> Vec<Terraform> {
    let found: Vec<Terraform> = terraform_binaries()
        .into_iter()
        .filter(|t| t.minor_version() >= (1, 4))
        .collect();
    assert!(
        !found.is_empty(),
        "composition tests need Terraform 1.4+ (terraform_data) on PATH"
    );
    found
}

/// One REST call a provisioner makes; it waits for the operation the call starts.
#[derive(Clone, Debug)]
pub struct Rest {
    pub method: &'static str,
    pub path: String,
    pub body: Option<Value>,
}

/// A REST call.
pub fn rest(method: &'static str, path: impl Into<String>, body: Option<Value>) -> Rest {
    Rest {
        method,
        path: path.into(),
        body,
    }
}

/// Creates a Cloud Run service (`extra` fields merge over a minimal one behind the load balancer).
pub fn create_run_service(project: &str, region: &str, name: &str, extra: Value) -> Rest {
    let mut body = json!({
        "ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
        "template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    rest(
        "POST",
        format!("/v2/projects/{project}/locations/{region}/services?serviceId={name}"),
        Some(body),
    )
}

/// Deletes a Cloud Run service.
pub fn delete_run_service(project: &str, region: &str, name: &str) -> Rest {
    rest(
        "DELETE",
        format!("/v2/projects/{project}/locations/{region}/services/{name}"),
        None,
    )
}

/// A serverless NEG in `region` for Cloud Run service `service`.
pub fn create_neg(project: &str, region: &str, name: &str, service: &str) -> Rest {
    rest(
        "POST",
        format!("/compute/v1/projects/{project}/regions/{region}/networkEndpointGroups"),
        Some(
            json!({"name": name, "networkEndpointType": "SERVERLESS", "cloudRun": {"service": service}}),
        ),
    )
}

/// A global backend service over serverless NEGs of `region`; `extra` merges over it.
pub fn create_backend(
    project: &str,
    region: &str,
    name: &str,
    negs: &[&str],
    extra: Value,
) -> Rest {
    let mut body = json!({
        "name": name,
        "loadBalancingScheme": "EXTERNAL_MANAGED",
        "protocol": "HTTPS",
        "backends": negs.iter().map(|n| json!({"group": format!("projects/{project}/regions/{region}/networkEndpointGroups/{n}")})).collect::<Vec<_>>(),
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    rest(
        "POST",
        format!("/compute/v1/projects/{project}/global/backendServices"),
        Some(body),
    )
}

/// URL map, target HTTPS proxy and forwarding rule in front of a global backend service.
pub fn create_https_frontend(project: &str, backend: &str, scheme: &str) -> Vec<Rest> {
    let base = format!("/compute/v1/projects/{project}/global");
    vec![
        rest(
            "POST",
            format!("{base}/urlMaps"),
            Some(
                json!({"name": format!("{backend}-map"), "defaultService": format!("global/backendServices/{backend}")}),
            ),
        ),
        rest(
            "POST",
            format!("{base}/targetHttpsProxies"),
            Some(
                json!({"name": format!("{backend}-proxy"), "urlMap": format!("global/urlMaps/{backend}-map"), "sslCertificates": ["global/sslCertificates/cert"]}),
            ),
        ),
        rest(
            "POST",
            format!("{base}/forwardingRules"),
            Some(
                json!({"name": format!("{backend}-https"), "loadBalancingScheme": scheme, "target": format!("global/targetHttpsProxies/{backend}-proxy")}),
            ),
        ),
    ]
}

/// Deletes what `create_https_frontend` and `create_backend` + `create_neg` made, in order.
pub fn delete_load_balancer(
    project: &str,
    region: &str,
    backend: &str,
    negs: &[&str],
) -> Vec<Rest> {
    let base = format!("/compute/v1/projects/{project}/global");
    let mut calls = vec![
        rest(
            "DELETE",
            format!("{base}/forwardingRules/{backend}-https"),
            None,
        ),
        rest(
            "DELETE",
            format!("{base}/targetHttpsProxies/{backend}-proxy"),
            None,
        ),
        rest("DELETE", format!("{base}/urlMaps/{backend}-map"), None),
        rest("DELETE", format!("{base}/backendServices/{backend}"), None),
    ];
    for neg in negs {
        calls.push(rest(
            "DELETE",
            format!("/compute/v1/projects/{project}/regions/{region}/networkEndpointGroups/{neg}"),
            None,
        ));
    }
    calls
}

/// A shell script making `calls` against `base_url` with curl, failing on the first error and
/// waiting for every operation a call starts (Cloud Run `:wait`, compute `/wait`).
pub fn curl_script(base_url: &str, calls: &[Rest]) -> String {
    let base = base_url.trim_end_matches('/');
    let mut script = format!(
        r#"set -e
E='{base}'
call() {{
  body="$3"
  case "$1 $2" in
    PATCH\ /compute/*)
      # compute's PATCH needs the current fingerprint
      fp=$(curl -sS --fail-with-body -H 'Authorization: Bearer terraform-data' "$E$2" | jq -r .fingerprint)
      body=$(printf '%s' "$body" | jq -c --arg fp "$fp" '. + {{fingerprint: $fp}}');;
  esac
  if [ -n "$body" ]; then
    out=$(curl -sS --fail-with-body -X "$1" -H 'Authorization: Bearer terraform-data' -H 'Content-Type: application/json' "$E$2" -d "$body")
  else
    out=$(curl -sS --fail-with-body -X "$1" -H 'Authorization: Bearer terraform-data' "$E$2")
  fi
  link=$(printf '%s' "$out" | jq -r 'if (.kind // "") == "compute#operation" then .selfLink else empty end')
  name=$(printf '%s' "$out" | jq -r 'if (.name // "" | test("^projects/.*/operations/")) and (.done != true) then .name else empty end')
  if [ -n "$link" ]; then curl -sS --fail-with-body -X POST -H 'Authorization: Bearer terraform-data' "$E/compute/v1/${{link#*/compute/v1/}}/wait" >/dev/null; fi
  if [ -n "$name" ]; then curl -sS --fail-with-body -X POST -H 'Authorization: Bearer terraform-data' -H 'Content-Type: application/json' "$E/v2/$name:wait" -d '{{"timeout":"60s"}}' >/dev/null; fi
}}
"#
    );
    for c in calls {
        let body = c.body.as_ref().map(|b| b.to_string()).unwrap_or_default();
        assert!(
            !body.contains('\''),
            "bodies are single-quoted in the script"
        );
        script.push_str(&format!("call {} '{}' '{}'\n", c.method, c.path, body));
    }
    script
}

/// Text for a Terraform heredoc: `${` and `%{` are template syntax there.
fn heredoc_escape(text: &str) -> String {
    text.replace("${", "$${").replace("%{", "%%{")
}

/// A `terraform_data` resource that makes `create` calls when created and `destroy` calls when
/// destroyed; `body` is extra HCL inside the block (`depends_on`, `triggers_replace`, `input`).
pub fn rest_resource(
    name: &str,
    base_url: &str,
    create: &[Rest],
    destroy: &[Rest],
    body: &str,
) -> String {
    let mut hcl = format!("resource \"terraform_data\" \"{name}\" {{\n{body}\n");
    hcl.push_str(&format!(
        "  provisioner \"local-exec\" {{\n    command = <<-EOT\n{}\nEOT\n  }}\n",
        heredoc_escape(&curl_script(base_url, create))
    ));
    if !destroy.is_empty() {
        hcl.push_str(&format!(
            "  provisioner \"local-exec\" {{\n    when    = destroy\n    command = <<-EOT\n{}\nEOT\n  }}\n",
            heredoc_escape(&curl_script(base_url, destroy))
        ));
    }
    hcl.push_str("}\n");
    hcl
}

/// Mutating calls in a request log that only the provider makes (world building by curl only
/// inserts and deletes): IAP flags, grants, bindings, agent provisioning.
pub fn provider_mutations(requests: &[iaprun::emulator::RequestRecord]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| {
            r.method == "PATCH"
                || r.path.ends_with(":setIamPolicy")
                || r.path.ends_with(":generateServiceIdentity")
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// Cloud Run services behind one global load balancer, one per key of `var.services` (a set of
/// names): for each a service and a serverless NEG `{name}-neg` (`for_each`); the backend service
/// `backend` with an HTTPS frontend; and `terraform_data.backend_negs`, which sets the backend's
/// NEG list in place when the set changes, as google_compute_backend_service's `backend` blocks do.
/// Destroy removes the frontend and the backend before the NEGs and the services.
pub fn services_behind_load_balancer(base_url: &str, backend: &str) -> String {
    const KEY: &str = "each-key";
    let (project, region) = (super::world::PROJECT, super::world::REGION);
    let per_key = |hcl: String| hcl.replace(KEY, "${self.input}");
    let run = per_key(rest_resource(
        "run",
        base_url,
        &[create_run_service(project, region, KEY, json!({}))],
        &[delete_run_service(project, region, KEY)],
        "  for_each = var.services\n  input    = each.key",
    ));
    let neg_path = |neg: &str| {
        format!("/compute/v1/projects/{project}/regions/{region}/networkEndpointGroups/{neg}")
    };
    let neg = per_key(rest_resource(
        "neg",
        base_url,
        &[create_neg(project, region, &format!("{KEY}-neg"), KEY)],
        &[rest("DELETE", neg_path(&format!("{KEY}-neg")), None)],
        "  for_each = var.services\n  input    = terraform_data.run[each.key].output",
    ));
    let mut create = vec![create_backend(project, region, backend, &[], json!({}))];
    create.extend(create_https_frontend(project, backend, "EXTERNAL_MANAGED"));
    let lb = rest_resource(
        "lb",
        base_url,
        &create,
        &delete_load_balancer(project, region, backend, &[]),
        "  depends_on = [terraform_data.neg]",
    );
    let groups = format!(
        "${{jsonencode([for s in sort(tolist(var.services)) : {{ group = \"projects/{project}/regions/{region}/networkEndpointGroups/${{terraform_data.neg[s].output}}-neg\" }}])}}"
    );
    let negs = rest_resource(
        "backend_negs",
        base_url,
        &[rest(
            "PATCH",
            format!("/compute/v1/projects/{project}/global/backendServices/{backend}"),
            Some(json!({"backends": "backend-groups"})),
        )],
        &[],
        "  triggers_replace = [for s in sort(tolist(var.services)) : terraform_data.neg[s].id]\n  depends_on       = [terraform_data.lb]\n  lifecycle {\n    create_before_destroy = true\n  }",
    )
    .replace("\"backend-groups\"", &groups);
    format!("variable \"services\" {{\n  type = set(string)\n}}\n\n{run}\n{neg}\n{lb}\n{negs}")
}
