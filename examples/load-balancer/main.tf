# IAP on an external Application Load Balancer that fronts Cloud Run through a serverless NEG.
#
# The load balancer itself (serverless NEG, backend service, URL map, HTTPS proxy, forwarding rule) is
# built with the google provider or gcloud: README.md next to this file shows it. iaprun then switches
# IAP on for the backend service, provisions the IAP service agent, grants it roles/run.invoker on every
# Cloud Run service behind the backend's NEGs, and checks the whole setup at plan time: Cloud CDN, HTTP/2
# on the classic load balancer, a run.app URL that bypasses IAP, a missing HTTPS frontend, a NEG that
# points at a missing service, ...
terraform {
  required_version = ">= 1.0"
  required_providers {
    iaprun = {
      source = "iaprun/iaprun"
    }
  }
}

variable "project" {
  description = "Project of the load balancer and the Cloud Run service."
  type        = string
}

variable "region" {
  description = "The provider's default region."
  type        = string
  default     = "us-central1"
}

variable "backend_service" {
  description = "Name of the global backend service that fronts Cloud Run."
  type        = string
  default     = "app-backend"
}

provider "iaprun" {
  project = var.project
  region  = var.region
}

resource "iaprun_backend_iap" "app" {
  backend_service = var.backend_service
  # The Envoy-based load balancer (EXTERNAL_MANAGED): older docs warned that it drops the
  # X-Goog-IAP-JWT-Assertion header. Verify your app sees it, then turn the warning off.
  ignore_checks = ["envoy_jwt_header"]
}

resource "iaprun_access_binding" "app_users" {
  resource = iaprun_backend_iap.app.iap_resource_name
  members  = ["group:app-users@example.com"]
}

output "iap_resource_name" {
  description = "The IAP resource of the backend service."
  value       = iaprun_backend_iap.app.iap_resource_name
}

output "protected_services" {
  description = "The Cloud Run services behind the backend service, as location/name."
  value       = iaprun_backend_iap.app.cloud_run_services
}
