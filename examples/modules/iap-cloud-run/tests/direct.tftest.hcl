# `terraform test` for the module in direct mode (IAP on the Cloud Run service itself), offline:
# run against iaprun-emulator started with tests/emulator-seed.json, IAPRUN_EMULATOR_HOST pointing
# at it (docs/emulator.md, "Test your module offline"). Needs Terraform 1.6 or later.

provider "iaprun" {
  project = "module-test-project"
  region  = "us-central1"
}

variables {
  mode    = "direct"
  service = "app"
}

run "direct_mode_protects_the_service" {
  variables {
    members = ["group:engineering@example.com", "user:alice@example.com"]
  }

  assert {
    condition     = output.iap_resource_name == "projects/123123123123/iap_web/cloud_run-us-central1/services/app"
    error_message = "IAP resource name: ${output.iap_resource_name}"
  }
  assert {
    condition     = output.cloud_run_services == ["us-central1/app"]
    error_message = "Protected services: ${jsonencode(output.cloud_run_services)}"
  }
  assert {
    condition     = iaprun_service_iap.this[0].iap_service_agent == "service-123123123123@gcp-sa-iap.iam.gserviceaccount.com"
    error_message = "IAP service agent: ${iaprun_service_iap.this[0].iap_service_agent}"
  }
  assert {
    condition     = length(iaprun_backend_iap.this) == 0
    error_message = "Direct mode created a backend_iap."
  }
}

run "members_change_in_place" {
  variables {
    members = ["user:bob@example.com"]
  }

  assert {
    condition     = iaprun_access_binding.users.members == toset(["user:bob@example.com"])
    error_message = "Members: ${jsonencode(iaprun_access_binding.users.members)}"
  }
}

run "an_unknown_mode_is_rejected" {
  command = plan
  variables {
    mode    = "sideways"
    members = ["user:bob@example.com"]
  }
  expect_failures = [var.mode]
}
