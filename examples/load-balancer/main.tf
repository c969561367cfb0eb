# IAP on an external Application Load Balancer that fronts Cloud Run through a serverless NEG.
# The load balancer itself (NEG, backend service, URL map, HTTPS proxy, forwarding rule) is managed with
# the google provider; iaprun switches IAP on for the backend service, grants the IAP service agent
# roles/run.invoker on the Cloud Run service, and checks the setup (CDN, HTTP/2 on the classic load
# balancer, run.app bypass, HTTPS frontend, ...) at plan time.
terraform {
  required_providers {
    google = {
      source = "hashicorp/google"
    }
    iaprun = {
      source = "iaprun/iaprun"
    }
  }
}

variable "project" {
  type = string
}

variable "region" {
  type    = string
  default = "us-central1"
}

provider "google" {
  project = var.project
  region  = var.region
}

provider "iaprun" {
  project = var.project
  region  = var.region
}

resource "google_cloud_run_v2_service" "app" {
  name     = "app"
  location = var.region
  # Only the load balancer may reach the service: the run.app URL cannot bypass IAP.
  ingress = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
  template {
    containers {
      image = "us-docker.pkg.dev/cloudrun/container/hello"
    }
  }
}

resource "google_compute_region_network_endpoint_group" "app" {
  name                  = "app-neg"
  region                = var.region
  network_endpoint_type = "SERVERLESS"
  cloud_run {
    service = google_cloud_run_v2_service.app.name
  }
}

resource "google_compute_backend_service" "app" {
  name                  = "app-backend"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  backend {
    group = google_compute_region_network_endpoint_group.app.id
  }
}

resource "google_compute_url_map" "app" {
  name            = "app-map"
  default_service = google_compute_backend_service.app.id
}

resource "google_compute_managed_ssl_certificate" "app" {
  name = "app-cert"
  managed {
    domains = ["app.example.com"]
  }
}

resource "google_compute_target_https_proxy" "app" {
  name             = "app-proxy"
  url_map          = google_compute_url_map.app.id
  ssl_certificates = [google_compute_managed_ssl_certificate.app.id]
}

resource "google_compute_global_forwarding_rule" "app" {
  name                  = "app-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  port_range            = "443"
  target                = google_compute_target_https_proxy.app.id
}

resource "iaprun_backend_iap" "app" {
  backend_service = google_compute_backend_service.app.name
  # The Envoy-based load balancer: older docs warned that it drops X-Goog-IAP-JWT-Assertion.
  ignore_checks = ["envoy_jwt_header"]
  depends_on    = [google_compute_global_forwarding_rule.app]
}

resource "iaprun_access_binding" "app_users" {
  resource = iaprun_backend_iap.app.iap_resource_name
  members  = ["group:app-users@example.com"]
}
