# Quickstart: IAP directly on a Cloud Run service, and who may pass it.
# run.sh runs this against iaprun-emulator; against Google, set project and region to yours
# and remove IAPRUN_EMULATOR_HOST from the environment.
terraform {
  required_providers {
    iaprun = {
      source = "iaprun/iaprun"
    }
  }
}

provider "iaprun" {
  project = "quickstart-project"
  region  = "us-central1"
}

resource "iaprun_service_iap" "hello" {
  service = "hello"
}

resource "iaprun_access_binding" "engineering" {
  resource = iaprun_service_iap.hello.iap_resource_name
  members = [
    "group:engineering@example.com",
    "user:alice@example.com",
  ]
}

output "iap_resource_name" {
  value = iaprun_service_iap.hello.iap_resource_name
}

output "iap_service_agent" {
  value = iaprun_service_iap.hello.iap_service_agent
}
