# `terraform test` for the module with a mocked provider (Terraform 1.7 or later): no emulator and
# no Google project. The mock invents every computed value; the access members check that
# `resource` is an IAP resource name, so the IAP resources get one as their mock default.

mock_provider "iaprun" {
  mock_resource "iaprun_service_iap" {
    defaults = {
      iap_resource_name = "projects/123123123123/iap_web/cloud_run-us-central1/services/app"
    }
  }
  mock_resource "iaprun_backend_iap" {
    defaults = {
      iap_resource_name  = "projects/123123123123/iap_web/compute/services/app-backend"
      cloud_run_services = ["us-central1/lb-app"]
    }
  }
}

run "direct_mode_with_a_mocked_provider" {
  variables {
    mode    = "direct"
    service = "app"
    members = ["group:engineering@example.com", "user:alice@example.com"]
  }

  assert {
    condition     = length(iaprun_access_member.users) == 2
    error_message = "Members: ${jsonencode(keys(iaprun_access_member.users))}"
  }
  assert {
    condition     = output.iap_resource_name == "projects/123123123123/iap_web/cloud_run-us-central1/services/app"
    error_message = "IAP resource name: ${output.iap_resource_name}"
  }
}

run "backend_mode_with_a_mocked_provider" {
  variables {
    mode            = "backend"
    backend_service = "app-backend"
    members         = ["group:admins@example.com"]
  }

  assert {
    condition     = output.cloud_run_services == ["us-central1/lb-app"]
    error_message = "Protected services: ${jsonencode(output.cloud_run_services)}"
  }
}
