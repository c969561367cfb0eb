# `terraform test` for the module in backend mode (IAP on the load balancer's backend service in
# front of Cloud Run "lb-app"), offline against iaprun-emulator started with tests/emulator-seed.json
# (docs/emulator.md, "Test your module offline"). Needs Terraform 1.6 or later.

provider "iaprun" {
  project = "module-test-project"
  region  = "us-central1"
}

run "backend_mode_protects_the_load_balancer" {
  variables {
    mode            = "backend"
    backend_service = "app-backend"
    members         = ["group:admins@example.com"]
    # The seeded load balancer is Envoy-based (EXTERNAL_MANAGED); its JWT header warning is known.
    ignore_checks = ["envoy_jwt_header"]
  }

  assert {
    condition     = output.iap_resource_name == "projects/123123123123/iap_web/compute/services/app-backend"
    error_message = "IAP resource name: ${output.iap_resource_name}"
  }
  assert {
    condition     = output.cloud_run_services == ["us-central1/lb-app"]
    error_message = "Protected services: ${jsonencode(output.cloud_run_services)}"
  }
  assert {
    condition     = output.iap_id == "projects/module-test-project/global/backendServices/app-backend"
    error_message = "IAP id: ${output.iap_id}"
  }
}
