data "iaprun_audit" "project" {
  regions = ["us-central1", "europe-west1"]
}

# Services reachable from the internet without IAP, by name.
output "exposed_services" {
  value = distinct([
    for f in data.iaprun_audit.project.findings : f.service if contains(["no_iap", "unprotected_path", "run_app_bypass"], f.check)
  ])
}
